"""The hand-encoded C-STORE/C-ECHO responses are byte for byte what pynetdicom encodes, and\nthe hand-decoded requests read as pynetdicom decodes them or are left to it."""

from __future__ import annotations

import struct
from io import BytesIO

import pytest
from pynetdicom.dimse_messages import C_ECHO_RQ as EchoRequest
from pynetdicom.dimse_messages import C_ECHO_RSP as EchoMessage
from pynetdicom.dimse_messages import C_STORE_RQ as StoreRequest
from pynetdicom.dimse_messages import C_STORE_RSP as StoreMessage
from pynetdicom.dimse_primitives import C_ECHO, C_STORE
from pynetdicom.dsutils import decode, encode

from storescpd.worker.responses import (
    C_ECHO_RSP,
    C_STORE_RQ,
    C_STORE_RSP,
    decode_request,
    encode_response,
)

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


def _pynetdicom_request(primitive: C_STORE | C_ECHO) -> bytes:
    message = StoreRequest() if isinstance(primitive, C_STORE) else EchoRequest()
    message.primitive_to_message(primitive)
    return bytes(encode(message.command_set, True, True))


def _store_request(msg_id: int, sop_instance: str, priority: int = 2) -> C_STORE:
    rq = C_STORE()
    rq.MessageID = msg_id
    rq.AffectedSOPClassUID = CT
    rq.AffectedSOPInstanceUID = sop_instance
    rq.Priority = priority
    rq.DataSet = BytesIO(b"\x08\x00\x18\x00\x00\x00\x00\x00")  # an empty element
    return rq


@pytest.mark.parametrize("msg_id", [0, 1, 65535])
@pytest.mark.parametrize("priority", [0, 1, 2])
@pytest.mark.parametrize("sop_instance", ["1.2.3", "1.2.3.4", "1"])
def test_store_request_reads_as_pynetdicom_decodes_it(
    msg_id: int, priority: int, sop_instance: str
) -> None:
    encoded = _pynetdicom_request(_store_request(msg_id, sop_instance, priority))
    decoded = decode_request(encoded)
    assert decoded is not None
    field, has_data_set, parameters = decoded
    theirs = decode(BytesIO(encoded), True, True)
    assert field == C_STORE_RQ == theirs.CommandField
    assert has_data_set
    assert parameters == {
        "AffectedSOPClassUID": str(theirs.AffectedSOPClassUID),
        "MessageID": theirs.MessageID,
        "Priority": theirs.Priority,
        "AffectedSOPInstanceUID": str(theirs.AffectedSOPInstanceUID),
    }


def test_echo_request_has_no_data_set() -> None:
    rq = C_ECHO()
    rq.MessageID = 5
    rq.AffectedSOPClassUID = "1.2.840.10008.1.1"
    assert decode_request(_pynetdicom_request(rq)) == (
        0x0030,
        False,
        {"AffectedSOPClassUID": "1.2.840.10008.1.1", "MessageID": 5},
    )


def test_move_originator_message_id_is_read() -> None:
    rq = _store_request(3, "1.2.3")
    rq.MoveOriginatorMessageID = 9
    decoded = decode_request(_pynetdicom_request(rq))
    assert decoded is not None and decoded[2]["MoveOriginatorMessageID"] == 9


def _element(element: int, value: bytes) -> bytes:
    return struct.pack("<HHI", 0x0000, element, len(value)) + value


def _command(*elements: bytes) -> bytes:
    body = b"".join(elements)
    return _element(0x0000, struct.pack("<I", len(body))) + body


_US = {0x0100: b"\x01\x00", 0x0110: b"\x07\x00", 0x0700: b"\x02\x00", 0x0800: b"\x00\x00"}


@pytest.mark.parametrize(
    "command",
    [
        # A UID pynetdicom must judge: path characters, a space, a second value, none.
        _command(_element(0x0002, CT.encode()), *(_element(e, v) for e, v in _US.items()),
                 _element(0x1000, b"../../x\0")),
        _command(_element(0x0002, CT.encode() + b" "), *(_element(e, v) for e, v in _US.items())),
        _command(_element(0x0002, b"1.2\\3.4\0"), *(_element(e, v) for e, v in _US.items())),
        _command(_element(0x0002, b""), *(_element(e, v) for e, v in _US.items())),
        # A Move Originator AE Title, an element of no C-STORE-RQ, a US of four bytes.
        _command(_element(0x0002, CT.encode()), *(_element(e, v) for e, v in _US.items()),
                 _element(0x1030, b"MOVER ")),
        _command(_element(0x0002, CT.encode()), *(_element(e, v) for e, v in _US.items()),
                 _element(0x0901, b"\x01\x00")),
        _command(_element(0x0002, CT.encode()), _element(0x0110, b"\x07\x00\x00\x00"),
                 _element(0x0100, b"\x01\x00"), _element(0x0800, b"\x00\x00")),
        # No Command Data Set Type; another command; an element of another group; cut short.
        _command(_element(0x0002, CT.encode()), _element(0x0100, b"\x01\x00")),
        _command(_element(0x0002, CT.encode()), _element(0x0100, b"\x20\x00"),
                 _element(0x0800, b"\x01\x01")),
        _command(_element(0x0002, CT.encode()), _element(0x0100, b"\x01\x00"),
                 _element(0x0800, b"\x00\x00")) + struct.pack("<HHI", 8, 0x18, 0),
        _command(_element(0x0002, CT.encode()), _element(0x0100, b"\x01\x00"))[:-1],
    ],
)
def test_anything_unusual_is_left_to_pynetdicom(command: bytes) -> None:
    assert decode_request(command) is None


def test_an_echo_with_a_priority_is_left_to_pynetdicom() -> None:
    command = _command(_element(0x0002, b"1.2.840.10008.1.1\0"), _element(0x0100, b"\x30\x00"),
                       _element(0x0110, b"\x01\x00"), _element(0x0700, b"\x00\x00"),
                       _element(0x0800, b"\x01\x01"))
    assert decode_request(command) is None
