"""C-STORE-RSP and C-ECHO-RSP command sets encoded with ``struct``, once per response.

pynetdicom builds every response as a pydicom ``Dataset`` and encodes it twice (once to learn
the group length); for a storage SCP that is most of the cost of answering. This module makes
the same bytes directly: Implicit VR Little Endian (PS3.7 6.3.1), elements in tag order, UIDs
padded with NUL to even length, the group length first. It covers the plain responses only; a
response carrying an Error Comment or Offending Element is left to pynetdicom. Pure: no I/O.
"""

from __future__ import annotations

import struct
from typing import Final

C_STORE_RSP: Final = 0x8001
C_ECHO_RSP: Final = 0x8030
NO_DATA_SET: Final = 0x0101

_HEADER = struct.Struct("<HHI")
_US = struct.Struct("<HHIH")


def _uid(element: int, value: str) -> bytes:
    raw = value.encode("ascii")
    if len(raw) % 2:
        raw += b"\0"
    return _HEADER.pack(0x0000, element, len(raw)) + raw


def _us(element: int, value: int) -> bytes:
    return _US.pack(0x0000, element, 2, value)


def encode_response(
    command_field: int,
    message_id: int,
    status: int,
    sop_class_uid: str | None,
    sop_instance_uid: str | None = None,
) -> bytes:
    """The encoded command set of a response without a data set.

    Parameters
    ----------
    command_field : int
        :data:`C_STORE_RSP` or :data:`C_ECHO_RSP`.
    message_id : int
        Message ID Being Responded To (0000,0120).
    status : int
        Status (0000,0900).
    sop_class_uid, sop_instance_uid : str or None
        Affected SOP Class/Instance UID (0000,0002)/(0000,1000); ``None`` leaves the element out.

    Raises
    ------
    UnicodeEncodeError
        A UID is not ASCII (let pynetdicom encode such a response).
    struct.error
        A number does not fit its 16-bit field.
    """
    body = b"".join(
        (
            _uid(0x0002, sop_class_uid) if sop_class_uid is not None else b"",
            _us(0x0100, command_field),
            _us(0x0120, message_id),
            _us(0x0800, NO_DATA_SET),
            _us(0x0900, status),
            _uid(0x1000, sop_instance_uid) if sop_instance_uid is not None else b"",
        )
    )
    return _HEADER.pack(0x0000, 0x0000, 4) + struct.pack("<I", len(body)) + body
