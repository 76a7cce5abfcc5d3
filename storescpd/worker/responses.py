"""C-STORE and C-ECHO command sets encoded and decoded with ``struct``, once per message.

pynetdicom builds every response as a pydicom ``Dataset`` and encodes it twice (once to learn
the group length), and decodes every request into a ``Dataset`` before copying its elements
into a primitive; for a storage SCP that is most of the cost of a message. This module makes
the same bytes, and reads the same values, directly: Implicit VR Little Endian (PS3.7 6.3.1),
elements in tag order, UIDs padded with NUL to even length, the group length first. It covers
plain messages only; a response carrying an Error Comment or Offending Element, and a request
with anything unusual in it, are left to pynetdicom. Pure: no I/O.
"""

from __future__ import annotations

import re
import struct
from typing import Final

C_STORE_RQ: Final = 0x0001
C_ECHO_RQ: Final = 0x0030
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


# The request parameters read here, by element of group 0000: the primitive's attribute names
# (pydicom's keywords, as pynetdicom copies them) and whether the value is a UID or a US.
_REQUEST_ELEMENTS: Final = {
    0x0002: ("AffectedSOPClassUID", True),
    0x0110: ("MessageID", False),
    0x0700: ("Priority", False),
    0x1000: ("AffectedSOPInstanceUID", True),
    0x1031: ("MoveOriginatorMessageID", False),
}
_ECHO_PARAMETERS: Final = frozenset({"AffectedSOPClassUID", "MessageID"})
_PLAIN_UID = re.compile(rb"[0-9.]+\0?")  # as pydicom reads it: the padding NUL stripped


def decode_request(data: bytes) -> tuple[int, bool, dict[str, str | int]] | None:
    """Read a plain C-STORE-RQ or C-ECHO-RQ command set.

    Returns the Command Field, whether a data set follows, and the values pynetdicom would set
    on its primitive, by attribute name; or ``None`` for anything else (another command, an
    element not listed here, a UID that is not digits and dots, a US that is not two bytes), to
    be decoded by pynetdicom, which then behaves as it always has.
    """
    parameters: dict[str, str | int] = {}
    field = data_set_type = None
    pos, end = 0, len(data)
    while pos < end:
        if pos + 8 > end:
            return None
        group, element, length = _HEADER.unpack_from(data, pos)
        pos += 8
        value = data[pos : pos + length]
        pos += length
        if group != 0x0000 or len(value) != length:
            return None
        if element == 0x0000:
            if length != 4:
                return None
            continue  # the group length, which the wire guard checks
        if element in (0x0100, 0x0800):
            if length != 2:
                return None
            if element == 0x0100:
                field = int.from_bytes(value, "little")
            else:
                data_set_type = int.from_bytes(value, "little")
            continue
        known = _REQUEST_ELEMENTS.get(element)
        if known is None:
            return None
        name, is_uid = known
        if is_uid:
            if not _PLAIN_UID.fullmatch(value):
                return None
            parameters[name] = value.rstrip(b"\0").decode("ascii")
        elif length == 2:
            parameters[name] = int.from_bytes(value, "little")
        else:
            return None
    if data_set_type is None:
        return None
    if field == C_ECHO_RQ and not parameters.keys() <= _ECHO_PARAMETERS:
        return None
    if field not in (C_STORE_RQ, C_ECHO_RQ):
        return None
    return field, data_set_type != NO_DATA_SET, parameters
