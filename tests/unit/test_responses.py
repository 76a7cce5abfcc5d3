"""The hand-encoded C-STORE/C-ECHO responses are byte for byte what pynetdicom encodes."""

from __future__ import annotations

import pytest
from pynetdicom.dimse_messages import C_ECHO_RSP as EchoMessage
from pynetdicom.dimse_messages import C_STORE_RSP as StoreMessage
from pynetdicom.dimse_primitives import C_ECHO, C_STORE
from pynetdicom.dsutils import encode

from storescpd.worker.responses import C_ECHO_RSP, C_STORE_RSP, encode_response

CT = "1.2.840.10008.5.1.4.1.1.2"


def _pynetdicom_store(msg_id: int, status: int, sop_class: str, sop_instance: str) -> bytes:
    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = msg_id
    rsp.AffectedSOPClassUID = sop_class
    rsp.AffectedSOPInstanceUID = sop_instance
    rsp.Status = status
    message = StoreMessage()
    message.primitive_to_message(rsp)
    return bytes(encode(message.command_set, True, True))


@pytest.mark.parametrize("msg_id", [0, 1, 7, 65535])
@pytest.mark.parametrize("status", [0x0000, 0xA700, 0xA900, 0xC000, 0xB000, 0xFFFF])
@pytest.mark.parametrize(
    "sop_instance", ["1.2.3.4", "1.2.3", "1.2.826.0.1.3680043.8.498." + "1" * 37, "1"]
)
@pytest.mark.parametrize("sop_class", [CT, "1.2.840.10008.5.1.4.1.1.7"])
def test_store_response_matches_pynetdicom(
    msg_id: int, status: int, sop_instance: str, sop_class: str
) -> None:
    ours = encode_response(C_STORE_RSP, msg_id, status, sop_class, sop_instance)
    assert ours == _pynetdicom_store(msg_id, status, sop_class, sop_instance)


@pytest.mark.parametrize("msg_id", [1, 300])
def test_echo_response_matches_pynetdicom(msg_id: int) -> None:
    rsp = C_ECHO()
    rsp.MessageIDBeingRespondedTo = msg_id
    rsp.AffectedSOPClassUID = "1.2.840.10008.1.1"
    rsp.Status = 0
    message = EchoMessage()
    message.primitive_to_message(rsp)
    theirs = bytes(encode(message.command_set, True, True))
    assert encode_response(C_ECHO_RSP, msg_id, 0, "1.2.840.10008.1.1") == theirs


def test_missing_uid_leaves_the_element_out() -> None:
    with_uid = encode_response(C_STORE_RSP, 1, 0, CT, "1.2")
    without = encode_response(C_STORE_RSP, 1, 0, CT, None)
    assert len(with_uid) - len(without) == 8 + 4
    assert b"\x00\x00\x00\x10" not in without[8:]


def test_non_ascii_uid_is_refused() -> None:
    with pytest.raises(UnicodeEncodeError):
        encode_response(C_STORE_RSP, 1, 0, CT, "1.2.\u00e9")
