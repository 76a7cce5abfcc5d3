"""The DICOM Part 10 preamble and file meta information (group 0002) that storescpd writes.

Built directly with ``struct`` because it runs once per stored object; the layout follows what
DCMTK's storescp writes (SPEC §6.2, §6.5): group length, version ``00\\01``, Media Storage SOP
Class/Instance UID, Transfer Syntax UID, our Implementation Class UID and Version Name, and the
calling AE title as Source Application Entity Title. Pure: no I/O.
"""

from __future__ import annotations

import struct
from typing import Final

IMPLEMENTATION_CLASS_UID: Final = "1.2.826.0.1.3680043.8.498.47146358884675958188383781678678224939"
IMPLEMENTATION_VERSION_NAME: Final = "STORESCPD_010"
BIT_PRESERVING_VERSION_NAME: Final = "STORESCPD_BP010"

PREAMBLE: Final = bytes(128) + b"DICM"

# Explicit VR Little Endian headers: VRs with a 2-byte length, and those with reserved + 4 bytes.
_SHORT = struct.Struct("<HH2sH")
_LONG = struct.Struct("<HH2s2xI")


def _text(value: str, pad: bytes) -> bytes:
    """Encode a value, padded to even length with the byte the standard prescribes for its VR."""
    # latin-1 keeps any byte a peer sent (values come from the received data set unchanged).
    raw = value.encode("latin-1", errors="replace")
    return raw + pad if len(raw) % 2 else raw


def _element(element: int, vr: bytes, value: bytes) -> bytes:
    return _SHORT.pack(0x0002, element, vr, len(value)) + value


def preamble_and_meta(
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax: str,
    source_ae_title: str,
    version_name: str = IMPLEMENTATION_VERSION_NAME,
) -> bytes:
    """Return the 128-byte preamble, ``DICM`` and a complete group 0002.

    Parameters
    ----------
    sop_class_uid, sop_instance_uid : str
        Media Storage SOP Class/Instance UID (0002,0002)/(0002,0003); in normal mode taken from the
        data set, in bit-preserving mode from the request.
    transfer_syntax : str
        Transfer Syntax UID (0002,0010) of the data set that follows.
    source_ae_title : str
        The association's calling AE title, written as (0002,0016); omitted when empty.
    version_name : str
        Implementation Version Name (0002,0013); :data:`BIT_PRESERVING_VERSION_NAME` for ``+B``.
    """
    body = b"".join(
        (
            _LONG.pack(0x0002, 0x0001, b"OB", 2) + b"\x00\x01",
            _element(0x0002, b"UI", _text(sop_class_uid, b"\x00")),
            _element(0x0003, b"UI", _text(sop_instance_uid, b"\x00")),
            _element(0x0010, b"UI", _text(transfer_syntax, b"\x00")),
            _element(0x0012, b"UI", _text(IMPLEMENTATION_CLASS_UID, b"\x00")),
            _element(0x0013, b"SH", _text(version_name, b" ")),
            _element(0x0016, b"AE", _text(source_ae_title, b" ")) if source_ae_title else b"",
        )
    )
    group_length = _SHORT.pack(0x0002, 0x0000, b"UL", 4) + struct.pack("<I", len(body))
    return PREAMBLE + group_length + body
