"""The data-set part of a stored file in normal mode (``-B``): what DCMTK's storescp would write.

The received data set is parsed into a tree of element headers; large values stay in the source
file as (offset, length) spans and are copied, never held whole. When DCMTK's re-encoding would
reproduce the received bytes (SPEC §2.7, §6.6), they are stream-copied; otherwise the tree is
re-encoded with DCMTK's rules for sequence/item lengths, group lengths, padding, new-VR demotion
(``-u``), UN conversion (``+uc``), byte order and deflate.
"""

from __future__ import annotations

import contextlib
import io
import logging
import mmap
import struct
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import BinaryIO, Final, TypeAlias

from pydicom.datadict import dictionary_VR, private_dictionary_VR
from pydicom.uid import generate_uid

from storescpd.fsio import copy_file_bytes
from storescpd.worker.meta import preamble_and_meta

log = logging.getLogger(__name__)

IMPLICIT_LE: Final = "1.2.840.10008.1.2"
EXPLICIT_LE: Final = "1.2.840.10008.1.2.1"
DEFLATED_LE: Final = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE: Final = "1.2.840.10008.1.2.2"
PRIVATE_GENERIC_FILE_SOP_CLASS: Final = "1.2.276.0.7230010.3.1.0.1"
"""DCMTK's SOP class for a file whose data set has none (its dcmuid.h, a fact we match)."""
WRITE_XFER: Final = {
    "little": EXPLICIT_LE,
    "big": EXPLICIT_BE,
    "implicit": IMPLICIT_LE,
    "deflated": DEFLATED_LE,
}

# Explicit VRs with a reserved field and a 4-byte length (PS3.5 7.1.2).
LONG_VRS: Final = frozenset(
    {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
)
# VRs DCMTK stops writing under -u; with UN disabled too, each falls back to OB.
NEW_VRS: Final = frozenset({"UN", "UT", "UC", "UR", "OD", "OF", "OL", "OV", "SV", "UV"})
# Word size of binary values, for byte-order conversion.
WORD_SIZE: Final = {
    "US": 2, "SS": 2, "OW": 2, "AT": 2,
    "UL": 4, "SL": 4, "FL": 4, "OF": 4, "OL": 4,
    "FD": 8, "OD": 8, "SV": 8, "UV": 8, "OV": 8,
}  # fmt: skip

ITEM: Final = 0xFFFEE000
ITEM_END: Final = 0xFFFEE00D
SEQUENCE_END: Final = 0xFFFEE0DD
PADDING: Final = 0xFFFCFFFC
PIXEL_DATA: Final = 0x7FE00010
PIXEL_REPRESENTATION: Final = 0x00280103
OVERLAY_DATA: Final = 0x60003000
WAVEFORM_BITS: Final = 0x003A021A
# Waveform Data, Waveform Padding Value, Channel Minimum/Maximum Value: OB or OW by bits allocated.
WAVEFORM_VALUES: Final = frozenset({0x54001010, 0x5400100A, 0x54000110, 0x54000112})
# Elements whose "US or SS" follows Pixel Representation (PS3.5 8.1.2; DCMTK's list).
SIGNED_WITH_PIXELS: Final = frozenset(
    {0x00280120, 0x00280121, 0x00281080, 0x00281081, 0x00189219, 0x00280106, 0x00280107,
     0x00280108, 0x00280109, 0x00283002, 0x00409211, 0x00409216}
)  # fmt: skip
UNDEFINED: Final = 0xFFFFFFFF
MAX_NESTING: Final = 128
"""Sequences nested deeper are refused: the parser and the encoder recurse once per level, and a
peer must not be able to exhaust the stack (DCMTK fixed the same in 885ff0f, SPEC §15)."""
INLINE_LIMIT: Final = 4096  # values up to this size are read into memory; larger ones stay spans
COPY_CHUNK: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class OutputFormat:
    """storescp's output options (SPEC §2.7); the defaults are storescp's."""

    write_xfer: str = "same"  # "same"|"little"|"big"|"implicit"|"deflated"  (+t= +te +tb +ti +td)
    enable_new_vr: bool = True  # +u / -u
    group_length: str = "recalc"  # +g= recalc if present / +g create / -g remove
    length_explicit: bool = True  # +e / -e  (sequences and items)
    padding: tuple[int, int] | None = None  # +p f i; -p none
    convert_un: bool = False  # +uc / -uc
    compression_level: int = 6  # +cl, for deflated output
    write_file: bool = True  # +F (preamble + meta) / -F (data set only)


class UnreadableDataset(Exception):
    """The received bytes are not a data set in the negotiated transfer syntax."""


class ConversionImpossible(Exception):
    """The data set cannot be written in the requested form (e.g. compressed to uncompressed)."""


@dataclass(frozen=True, slots=True)
class Identity:
    """What the C-STORE handler needs from the data set."""

    sop_class_uid: str | None
    sop_instance_uid: str | None
    study_instance_uid: str | None
    patient_name: bytes | None
    specific_character_set: str | None
    raw: bool
    series_date: str | None = None  # for storescpd-dcmrecv's +ssd


@dataclass(frozen=True, slots=True)
class Syntax:
    implicit: bool
    little: bool
    deflated: bool = False
    encapsulated: bool = False


SYNTAXES: Final = {
    IMPLICIT_LE: Syntax(implicit=True, little=True),
    EXPLICIT_LE: Syntax(implicit=False, little=True),
    EXPLICIT_BE: Syntax(implicit=False, little=False),
    DEFLATED_LE: Syntax(implicit=False, little=True, deflated=True),
}
ENCAPSULATED: Final = Syntax(implicit=False, little=True, encapsulated=True)


@dataclass(frozen=True, slots=True)
class Span:
    """A value left in the source file."""

    offset: int
    length: int


Value: TypeAlias = "bytes | Span"


@dataclass(slots=True)
class Item:
    elements: list[Element]
    undefined: bool = False


@dataclass(slots=True)
class Element:
    tag: int
    vr: str
    value: Value | None = None  # leaf value
    items: list[Item] | None = None  # SQ (or UN read as a sequence)
    fragments: list[Value] | None = None  # encapsulated pixel data
    undefined: bool = False  # the length field was undefined
    little: bool = True  # byte order of the leaf value as stored
    swap_vr: str = ""  # VR that decides byte swapping (kept when -u relabels)


# ----------------------------------------------------------------------------- parsing

# Header fields by byte order (True: little endian), compiled once: the parser runs per element.
_TAG: Final = {True: struct.Struct("<HH"), False: struct.Struct(">HH")}
_U16: Final = {True: struct.Struct("<H"), False: struct.Struct(">H")}
_U32: Final = {True: struct.Struct("<I"), False: struct.Struct(">I")}
_NOTED: Final = frozenset({PIXEL_REPRESENTATION, WAVEFORM_BITS})  # see _Parser._note


class _Parser:
    """Reads element headers from a seekable stream, leaving large values where they are."""

    def __init__(self, src: BinaryIO, end: int) -> None:
        self.src = src
        self.end = end
        self.creators: dict[tuple[int, int], str] = {}
        self.pixel_representation = 0
        self.waveform_bits: int | None = None
        self.depth = 0  # sequences open around the element being read

    def read(self, n: int) -> bytes:
        data = self.src.read(n)
        if len(data) != n:
            raise UnreadableDataset("data set ends inside an element")
        return data

    def value(self, length: int) -> Value:
        pos = self.src.tell()
        if pos + length > self.end:
            raise UnreadableDataset(f"value of {length} bytes runs past the end of the data set")
        if length <= INLINE_LIMIT:
            return self.read(length)
        self.src.seek(pos + length)
        return Span(pos, length)

    def elements(self, syn: Syntax, stop: int | None) -> tuple[list[Element], bool]:
        """Elements up to ``stop`` (or EOF), or up to an item delimiter when ``stop`` is None.

        Returns the elements and whether an item delimiter ended them.
        """
        out: list[Element] = []
        limit = self.end if stop is None else stop
        tag_struct = _TAG[syn.little]
        tell = self.src.tell
        while tell() < limit:
            group, elem = tag_struct.unpack(self.read(4))
            tag = group << 16 | elem
            if tag == ITEM_END and stop is None:
                self.read(4)
                return out, True
            if group == 0xFFFE:
                raise UnreadableDataset(f"unexpected delimiter or item tag {tag:08X}")
            out.append(self.element(syn, tag))
        if self.src.tell() != limit:
            raise UnreadableDataset("element runs past the end of its item")
        return out, False

    def element(self, syn: Syntax, tag: int) -> Element:
        if syn.implicit:
            vr = implicit_vr(tag, self.creators, self.pixel_representation, self.waveform_bits)
            (length,) = _U32[syn.little].unpack(self.read(4))
        else:
            head = self.read(4)  # VR, then a 2-byte length or 2 reserved bytes
            vr = head[:2].decode("latin-1")
            if vr in LONG_VRS or not vr.isalpha() or not vr.isupper():
                (length,) = _U32[syn.little].unpack(self.read(4))
            else:
                (length,) = _U16[syn.little].unpack_from(head, 2)
        node = Element(tag, vr, undefined=length == UNDEFINED, little=syn.little, swap_vr=vr)
        if tag == PIXEL_DATA and length == UNDEFINED:
            node.fragments = self.fragments(syn)
        elif vr == "SQ" or length == UNDEFINED:
            # An undefined-length UN (or implicit unknown) holds implicit little endian items.
            inner = syn if vr == "SQ" else SYNTAXES[IMPLICIT_LE]
            if self.depth == MAX_NESTING:
                raise UnreadableDataset(f"sequences nested deeper than {MAX_NESTING} levels")
            self.depth += 1
            node.items = self.sequence(inner, length)
            self.depth -= 1
        else:
            node.value = self.value(length)
            if tag >> 16 & 1 or tag in _NOTED:
                self._note(tag, vr, node.value, syn)
        return node

    def sequence(self, syn: Syntax, length: int) -> list[Item]:
        items: list[Item] = []
        stop = None if length == UNDEFINED else self.src.tell() + length
        end = "<" if syn.little else ">"
        while stop is None or self.src.tell() < stop:
            tag_bytes = self.read(8)
            group, elem, item_length = struct.unpack(end + "HHI", tag_bytes)
            tag = group << 16 | elem
            if tag == SEQUENCE_END and stop is None:
                return items
            if tag != ITEM:
                raise UnreadableDataset(f"expected an item in a sequence, found {tag:08X}")
            undefined = item_length == UNDEFINED
            item_stop = None if undefined else self.src.tell() + item_length
            elements, _ = self.elements(syn, item_stop)
            items.append(Item(elements, undefined))
        if self.src.tell() != stop:
            raise UnreadableDataset("item runs past the end of its sequence")
        return items

    def fragments(self, syn: Syntax) -> list[Value]:
        out: list[Value] = []
        while True:
            group, elem, length = struct.unpack("<HHI", self.read(8))
            tag = group << 16 | elem
            if tag == SEQUENCE_END:
                return out
            if tag != ITEM or length == UNDEFINED:
                raise UnreadableDataset("malformed encapsulated pixel data")
            out.append(self.value(length))

    def _note(self, tag: int, vr: str, value: Value, syn: Syntax) -> None:
        """Remember what later implicit VR lookups depend on."""
        group, elem = tag >> 16, tag & 0xFFFF
        if not isinstance(value, bytes):
            return
        if group & 1 and 0x10 <= elem <= 0xFF:
            self.creators[(group, elem)] = value.decode("latin-1").strip(" \0")
        elif tag in (PIXEL_REPRESENTATION, WAVEFORM_BITS) and len(value) == 2:
            (number,) = struct.unpack("<H" if syn.little else ">H", value)
            if tag == PIXEL_REPRESENTATION:
                self.pixel_representation = number
            else:
                self.waveform_bits = number


def implicit_vr(
    tag: int,
    creators: dict[tuple[int, int], str],
    pixel_rep: int = 0,
    waveform_bits: int | None = None,
) -> str:
    """The VR DCMTK gives an element read without one (dictionary, private dictionary, UN)."""
    group, elem = tag >> 16, tag & 0xFFFF
    if elem == 0:
        return "UL"
    try:
        if group & 1:
            if 0x10 <= elem <= 0xFF:
                return "LO"
            creator = creators.get((group, elem >> 8))
            if creator is None:
                return "UN"
            vr = private_dictionary_VR(tag, creator)
        else:
            vr = dictionary_VR(tag)
    except KeyError:
        return "UN"
    return _resolve(tag, vr, pixel_rep, waveform_bits)


def _resolve(tag: int, vr: str, pixel_rep: int, waveform_bits: int | None) -> str:
    """DCMTK's choice for a dictionary VR with alternatives (``US or SS``, ``OB or OW``)."""
    if " or " not in vr:
        return vr
    if vr == "US or SS":
        return "SS" if pixel_rep == 1 and tag in SIGNED_WITH_PIXELS else "US"
    if vr == "OB or OW":
        if tag == PIXEL_DATA or tag & 0xFF00FFFF == OVERLAY_DATA:
            return "OW"
        if tag in WAVEFORM_VALUES and waveform_bits is not None:
            return "OB" if waveform_bits == 8 else "OW"
        return "OB"
    return "OW"


# ----------------------------------------------------------------------------- deciding


def _needs_rewrite(elements: list[Element], fmt: OutputFormat, syn: Syntax) -> bool:
    if fmt.group_length == "create" and elements:
        return True
    for elem in elements:
        if elem.tag == PADDING or elem.tag & 0xFFFF == 0:
            return True  # padding is dropped; group lengths are recalculated or dropped
        if not syn.implicit and (
            (not fmt.enable_new_vr and elem.vr in NEW_VRS)
            or (fmt.convert_un and elem.vr == "UN" and elem.value is not None)
            or (elem.items is not None and elem.vr != "SQ")
        ):
            return True
        if elem.items is not None:
            if elem.undefined == fmt.length_explicit:
                return True
            for item in elem.items:
                if item.undefined == fmt.length_explicit:
                    return True
                if _needs_rewrite(item.elements, fmt, syn):
                    return True
    return False


# ----------------------------------------------------------------------------- the fast look

IDENTITY_TAGS: Final = frozenset(
    {0x00080005, 0x00080016, 0x00080018, 0x0020000D, 0x00100010, 0x00080021}
)
"""Top-level elements whose values the C-STORE handler needs (see :func:`_identity`)."""

_HEAD: Final = struct.Struct("<HH2sH")  # tag, VR, short length (explicit little endian)
_HEAD_IMPLICIT: Final = struct.Struct("<HHI")
_LONG: Final = struct.Struct("<I")
_SHORT_VRS: Final = frozenset(
    vr.encode() for vr in ("AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO",
                           "LT", "PN", "SH", "SL", "SS", "ST", "TM", "UI", "UL", "US")
)  # fmt: skip
_LONG_VR_BYTES: Final = frozenset(vr.encode() for vr in LONG_VRS)
_public_sq: dict[int, bool] = {}


class _NotRaw(Exception):
    """The fast look cannot vouch for a raw copy: the full parser decides."""


def _is_public_sq(tag: int) -> bool:
    known = _public_sq.get(tag)
    if known is None:
        try:
            known = dictionary_VR(tag) == "SQ"
        except KeyError:
            known = False
        if len(_public_sq) < 8192:  # a peer inventing tags must not grow it without end
            _public_sq[tag] = known
    return known


_private_sq: dict[tuple[int, str], bool] = {}


def _is_private_sq(tag: int, creator: str) -> bool:
    key = (tag & 0xFFFF00FF, creator)  # the creator's block does not change the VR
    known = _private_sq.get(key)
    if known is None:
        try:
            known = private_dictionary_VR(tag, creator) == "SQ"
        except KeyError:
            known = False
        if len(_private_sq) < 8192:
            _private_sq[key] = known
    return known


class _RawLook:
    """Walks an in-memory little endian data set without building a tree, to confirm that
    DCMTK would write it back byte for byte (what :func:`_needs_rewrite` says of the full
    parse) and to pick up the identity values. Anything unusual raises :class:`_NotRaw`:
    it may be stricter than the full parser, never more lenient.

    Only for output formats :func:`_fast_look_applies` accepts.
    """

    def __init__(self, buf: memoryview, implicit: bool, length_explicit: bool) -> None:
        self.buf = buf
        self.implicit = implicit
        self.length_explicit = length_explicit
        self.creators: dict[tuple[int, int], str] = {}
        self.found: dict[int, bytes] = {}

    def elements(self, pos: int, stop: int | None, depth: int) -> int:
        """Check the elements from ``pos`` up to ``stop``, or up to an item delimiter when
        ``stop`` is None; return where they (and the delimiter) end."""
        if self.implicit:
            return self._implicit_elements(pos, stop, depth)
        return self._explicit_elements(pos, stop, depth)

    def _implicit_elements(self, pos: int, stop: int | None, depth: int) -> int:
        buf = self.buf
        limit = len(buf) if stop is None else stop
        while pos < limit:
            if pos + 8 > limit:
                raise _NotRaw
            group, elem, length = _HEAD_IMPLICIT.unpack_from(buf, pos)
            pos += 8
            if group == 0xFFFE:
                if stop is None and elem == 0xE00D:
                    return pos
                raise _NotRaw  # a stray delimiter
            tag = group << 16 | elem
            if elem == 0 or tag == PADDING:
                raise _NotRaw  # group lengths are recalculated, padding is dropped
            if length == UNDEFINED:
                vr = b"SQ"  # an SQ, or UN holding implicit items
            elif group & 1:
                vr = self._private(group, elem, pos, length)
            else:
                vr = b"SQ" if _is_public_sq(tag) else b""
            pos = self._value(pos, tag, vr, length, limit, depth)
        if stop is None or pos != stop:
            raise _NotRaw
        return pos

    def _explicit_elements(self, pos: int, stop: int | None, depth: int) -> int:
        """Most elements take the first branch: a VR with a 2-byte length, checked in the
        order that is quickest for them."""
        buf = self.buf
        limit = len(buf) if stop is None else stop
        found = self.found if depth == 0 else None
        head = _HEAD.unpack_from
        short_vrs = _SHORT_VRS
        while pos < limit:
            if pos + 8 > limit:
                raise _NotRaw
            group, elem, vr, length = head(buf, pos)
            pos += 8
            tag = group << 16 | elem
            if vr in short_vrs and group != 0xFFFE and elem and tag != PADDING:
                end = pos + length
                if end > limit:
                    raise _NotRaw
                if found is not None and tag in IDENTITY_TAGS:
                    found[tag] = bytes(buf[pos:end])
                pos = end
                continue
            if group == 0xFFFE:
                if stop is None and elem == 0xE00D:
                    return pos
                raise _NotRaw  # a stray delimiter
            if elem == 0 or tag == PADDING:
                raise _NotRaw  # group lengths are recalculated, padding is dropped
            if vr not in _LONG_VR_BYTES or pos + 4 > limit:
                raise _NotRaw  # an unknown VR: the full parser knows what to make of it
            (length,) = _LONG.unpack_from(buf, pos)
            pos = self._value(pos + 4, tag, vr, length, limit, depth)
        if stop is None or pos != stop:
            raise _NotRaw
        return pos

    def _value(self, pos: int, tag: int, vr: bytes, length: int, limit: int, depth: int) -> int:
        """Check the value of an element whose header ends at ``pos``; return where it ends."""
        if tag == PIXEL_DATA and length == UNDEFINED:
            return self.fragments(pos, limit)
        if vr == b"SQ":
            if depth == MAX_NESTING or (length == UNDEFINED) == self.length_explicit:
                raise _NotRaw
            return self.sequence(pos, length, limit, depth + 1)
        if length == UNDEFINED:
            raise _NotRaw  # items under another VR are written as SQ
        end = pos + length
        if end > limit:
            raise _NotRaw
        if depth == 0 and tag in IDENTITY_TAGS and vr != b"UN":
            self.found[tag] = bytes(self.buf[pos:end])
        return end

    def _private(self, group: int, elem: int, pos: int, length: int) -> bytes:
        """The implicit VR of a private element, as far as it matters here (SQ or not)."""
        if 0x10 <= elem <= 0xFF:
            if length <= INLINE_LIMIT:
                value = bytes(self.buf[pos : pos + length])
                self.creators[(group, elem)] = value.decode("latin-1").strip(" \0")
            return b"LO"
        creator = self.creators.get((group, elem >> 8))
        if creator is None:
            return b"UN"
        return b"SQ" if _is_private_sq(group << 16 | elem, creator) else b""

    def sequence(self, pos: int, length: int, limit: int, depth: int) -> int:
        """Check a sequence's items; only the length form the output keeps is accepted."""
        buf = self.buf
        if length != UNDEFINED:
            stop = pos + length
            if stop > limit:
                raise _NotRaw
            while pos < stop:
                if pos + 8 > stop:
                    raise _NotRaw
                group, elem, item_length = _HEAD_IMPLICIT.unpack_from(buf, pos)
                pos += 8
                if group != 0xFFFE or elem != 0xE000 or item_length == UNDEFINED:
                    raise _NotRaw
                end = pos + item_length
                if end > stop:
                    raise _NotRaw
                pos = self.elements(pos, end, depth)
            return pos
        while True:
            if pos + 8 > limit:
                raise _NotRaw
            group, elem, item_length = _HEAD_IMPLICIT.unpack_from(buf, pos)
            pos += 8
            if group != 0xFFFE:
                raise _NotRaw
            if elem == 0xE0DD:
                return pos
            if elem != 0xE000 or item_length != UNDEFINED:
                raise _NotRaw
            pos = self.elements(pos, None, depth)

    def fragments(self, pos: int, limit: int) -> int:
        buf = self.buf
        while True:
            if pos + 8 > limit:
                raise _NotRaw
            group, elem, length = _HEAD_IMPLICIT.unpack_from(buf, pos)
            pos += 8
            if group == 0xFFFE and elem == 0xE0DD:
                return pos
            if group != 0xFFFE or elem != 0xE000 or length == UNDEFINED:
                raise _NotRaw
            pos += length
            if pos > limit:
                raise _NotRaw


def _fast_look_applies(fmt: OutputFormat, in_syn: Syntax, same_syntax: bool) -> bool:
    """Whether :class:`_RawLook` may decide: output options that keep a data set as received
    unless it holds padding, group lengths or the other length form of sequences."""
    return (
        same_syntax
        and in_syn.little
        and not in_syn.deflated
        and not fmt.padding
        and fmt.group_length != "create"
        and fmt.enable_new_vr
        and not fmt.convert_un
    )


def _raw_identity(buf: memoryview, syn: Syntax, fmt: OutputFormat) -> dict[int, bytes] | None:
    """The identity values of a data set that is written back as received, or None when the
    full parser must look (the data set needs re-encoding, or is unusual or broken)."""
    look = _RawLook(buf, syn.implicit, fmt.length_explicit)
    try:
        look.elements(0, len(buf), 0)
    except (_NotRaw, struct.error):
        return None
    return look.found


# ----------------------------------------------------------------------------- encoding


@dataclass(slots=True)
class _Encoder:
    """Re-encodes a parsed tree for one output syntax and format."""

    src: BinaryIO
    syn: Syntax
    fmt: OutputFormat
    creators: dict[tuple[int, int], str]
    sizes: dict[int, int] = field(default_factory=dict)  # id(node) -> encoded size

    def header_size(self, vr: str) -> int:
        return 8 if self.syn.implicit or vr not in LONG_VRS else 12

    def prepare(self, elements: list[Element], pad: int, lead: int) -> list[Element]:
        """Apply DCMTK's group-length, padding and VR rules to one item; compute sizes."""
        out: list[Element] = []
        for elem in elements:
            if elem.tag == PADDING:
                continue
            if elem.tag & 0xFFFF == 0 and self.fmt.group_length in ("remove", "create"):
                continue
            out.append(self.convert(elem))
        if self.fmt.group_length == "create":
            groups = sorted({e.tag >> 16 for e in out})
            out += [Element(g << 16, "UL", value=b"\0\0\0\0", swap_vr="UL") for g in groups]
            out.sort(key=lambda e: e.tag)
        for elem in out:
            self.measure(elem)
        self.fill_group_lengths(out)
        if pad:
            out = self.padded(out, pad, lead)
        return out

    def convert(self, elem: Element) -> Element:
        vr = elem.vr
        node = replace(elem)
        if self.fmt.convert_un and vr == "UN" and not elem.undefined and elem.value is not None:
            node = self.un_to_dictionary(node)
            vr = node.vr
        if node.items is not None:
            vr = "SQ"
            sub_pad = self.fmt.padding[1] if self.fmt.padding else 0
            node.items = [
                Item(self.prepare(i.elements, sub_pad, 0), not self.fmt.length_explicit)
                for i in node.items
            ]
        if not self.fmt.enable_new_vr and vr in NEW_VRS:
            vr = "OB"
        node.vr = vr
        return node

    def un_to_dictionary(self, elem: Element) -> Element:
        known = implicit_vr(elem.tag, self.creators, 0)
        if known == "UN":
            return elem
        data = _load(self.src, elem.value) if elem.value is not None else b""
        if known == "SQ":
            inner = _Parser(io.BytesIO(data), len(data))
            items = inner.sequence(SYNTAXES[IMPLICIT_LE], len(data))
            return replace(elem, vr="SQ", value=None, items=items, swap_vr="SQ")
        return replace(elem, vr=known, value=data, little=True, swap_vr=known)

    def measure(self, elem: Element) -> int:
        size = self.header_size(elem.vr)
        if elem.items is not None:
            for item in elem.items:
                size += 8 + sum(self.sizes[id(e)] for e in item.elements)
                size += 8 if item.undefined else 0
            size += 0 if self.fmt.length_explicit else 8
        elif elem.fragments is not None:
            size += sum(8 + _length(f) for f in elem.fragments) + 8
        else:
            size += _length(elem.value)
        self.sizes[id(elem)] = size
        return size

    def fill_group_lengths(self, elements: list[Element]) -> None:
        totals: dict[int, int] = {}
        for elem in elements:
            if elem.tag & 0xFFFF:
                totals[elem.tag >> 16] = totals.get(elem.tag >> 16, 0) + self.sizes[id(elem)]
        for elem in elements:
            if elem.tag & 0xFFFF == 0:
                elem.vr = elem.swap_vr = "UL"
                elem.value = struct.pack("<I", totals.get(elem.tag >> 16, 0))
                elem.little = True
                self.sizes[id(elem)] = self.header_size("UL") + 4

    def padded(self, elements: list[Element], pad: int, lead: int) -> list[Element]:
        used = lead + sum(self.sizes[id(e)] for e in elements)
        room = pad - used % pad
        if room == pad:
            return elements
        header = self.header_size("OB")
        while room < header:
            room += pad
        trailer = Element(PADDING, "OB", value=bytes(room - header), swap_vr="OB")
        self.sizes[id(trailer)] = room
        return [*elements, trailer]

    def emit(self, elements: list[Element]) -> Iterator[bytes]:
        for elem in elements:
            yield from self.emit_element(elem)

    def emit_element(self, elem: Element) -> Iterator[bytes]:
        size = self.sizes[id(elem)]
        head = self.header_size(elem.vr)
        if elem.items is not None:
            length = UNDEFINED if not self.fmt.length_explicit else size - head
            yield self.header(elem.tag, elem.vr, length)
            for item in elem.items:
                content = sum(self.sizes[id(e)] for e in item.elements)
                yield self.tag_length(ITEM, UNDEFINED if item.undefined else content)
                yield from self.emit(item.elements)
                if item.undefined:
                    yield self.tag_length(ITEM_END, 0)
            if not self.fmt.length_explicit:
                yield self.tag_length(SEQUENCE_END, 0)
        elif elem.fragments is not None:
            yield self.header(elem.tag, elem.vr, UNDEFINED)
            for fragment in elem.fragments:
                yield self.tag_length(ITEM, _length(fragment))
                yield from _chunks(self.src, fragment)
            yield self.tag_length(SEQUENCE_END, 0)
        else:
            assert elem.value is not None
            yield self.header(elem.tag, elem.vr, size - head)
            word = WORD_SIZE.get(elem.swap_vr, 1) if elem.little != self.syn.little else 1
            for chunk in _chunks(self.src, elem.value):
                yield _swapped(chunk, word) if word > 1 else chunk

    def header(self, tag: int, vr: str, length: int) -> bytes:
        end = "<" if self.syn.little else ">"
        if self.syn.implicit:
            return struct.pack(end + "HHI", tag >> 16, tag & 0xFFFF, length)
        if vr in LONG_VRS:
            return struct.pack(end + "HH2s2xI", tag >> 16, tag & 0xFFFF, vr.encode(), length)
        if length > 0xFFFF:
            raise ConversionImpossible(f"value of ({tag >> 16:04X},{tag & 0xFFFF:04X}) too long")
        return struct.pack(end + "HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), length)

    def tag_length(self, tag: int, length: int) -> bytes:
        end = "<" if self.syn.little else ">"
        return struct.pack(end + "HHI", tag >> 16, tag & 0xFFFF, length)


def _length(value: Value | None) -> int:
    if value is None:
        return 0
    return value.length if isinstance(value, Span) else len(value)


def _load(src: BinaryIO, value: Value) -> bytes:
    return b"".join(_chunks(src, value))


def _chunks(src: BinaryIO, value: Value) -> Iterator[bytes]:
    if isinstance(value, bytes):
        yield value
        return
    src.seek(value.offset)
    left = value.length
    while left:
        # Whole words per chunk, so byte swapping never splits a value.
        data = src.read(min(left, COPY_CHUNK))
        if not data:
            raise UnreadableDataset("source ended while copying a value")
        left -= len(data)
        yield data


def _swapped(data: bytes, word: int) -> bytes:
    usable = len(data) - len(data) % word
    out = bytearray(data)
    for i in range(word):
        out[i:usable:word] = data[word - 1 - i : usable : word]
    return bytes(out)


# ----------------------------------------------------------------------------- the writer


def _identity(elements: list[Element], src: BinaryIO, raw: bool, convert_un: bool) -> Identity:
    """The values the C-STORE handler checks; one received as UN counts only under ``+uc``,
    because DCMTK keeps it UN and then finds no SOP Class/Instance UID (0xC000)."""
    found: dict[int, bytes] = {}
    for elem in elements:
        if elem.tag in IDENTITY_TAGS and elem.value is not None and (
            elem.vr != "UN" or convert_un
        ):
            found[elem.tag] = _load(src, elem.value)
    return _identity_of(found, raw=raw)


def _identity_of(found: dict[int, bytes], *, raw: bool) -> Identity:
    def text(tag: int, strip: str = "\0") -> str | None:
        value = found.get(tag)
        return None if value is None else value.decode("latin-1").rstrip(strip)

    return Identity(
        sop_class_uid=text(0x00080016),
        sop_instance_uid=text(0x00080018),
        study_instance_uid=text(0x0020000D),
        patient_name=found.get(0x00100010),
        specific_character_set=text(0x00080005, " \0"),
        raw=raw,
        series_date=text(0x00080021, " \0"),
    )


def _meta_for(ident: Identity, out_ts: str, source_ae_title: str) -> bytes:
    # DCMTK fills what the data set lacks: its private generic class and a new UID
    return preamble_and_meta(
        ident.sop_class_uid or PRIVATE_GENERIC_FILE_SOP_CLASS,
        ident.sop_instance_uid or str(generate_uid()),
        out_ts,
        source_ae_title,
    )


def _output_syntax(network_ts: str, fmt: OutputFormat) -> tuple[str, Syntax]:
    if fmt.write_xfer == "same":
        return network_ts, SYNTAXES.get(network_ts, ENCAPSULATED)
    ts = WRITE_XFER[fmt.write_xfer]
    return ts, SYNTAXES[ts]


def _inflate(src: BinaryIO, spool: BinaryIO) -> None:
    """Inflate a deflated data set into ``spool`` chunk by chunk (memory is bounded)."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        while chunk := src.read(COPY_CHUNK):
            spool.write(inflater.decompress(chunk))
        spool.write(inflater.flush())
    except zlib.error as err:
        raise UnreadableDataset(f"cannot inflate data set: {err}") from err
    spool.seek(0)


def write_normal(
    src: BinaryIO, network_ts: str, out: BinaryIO, fmt: OutputFormat, source_ae_title: str
) -> Identity:
    """Write the complete output file for one received data set, as storescp ``-B`` would.

    Parameters
    ----------
    src : BinaryIO
        Seekable, positioned at the data set's first byte; the data set runs to EOF.
    network_ts : str
        The transfer syntax UID accepted for the presentation context.
    out : BinaryIO
        The (temporary) output file.
    fmt : OutputFormat
        storescp's output options.
    source_ae_title : str
        Calling AE title, written as (0002,0016).

    Raises
    ------
    UnreadableDataset
        The bytes cannot be parsed (answer 0xC000).
    ConversionImpossible
        The data set cannot be written as asked (answer 0xA700).
    """
    in_syn = SYNTAXES.get(network_ts, ENCAPSULATED)
    out_ts, _ = _output_syntax(network_ts, fmt)
    if in_syn.encapsulated and out_ts != network_ts:
        raise ConversionImpossible(f"cannot convert compressed {network_ts} to {out_ts}")
    if fmt.padding and (fmt.padding[0] % 2 or fmt.padding[1] % 2):
        raise ConversionImpossible("padding lengths must be even")
    if not in_syn.deflated:
        return _write(src, network_ts, out, fmt, source_ae_title)
    with tempfile.SpooledTemporaryFile(max_size=8 << 20) as spool:
        _inflate(src, spool)  # type: ignore[arg-type]
        return _write(spool, network_ts, out, fmt, source_ae_title)  # type: ignore[arg-type]


def kept_as_received(network_ts: str, fmt: OutputFormat) -> bool:
    """Whether a data set received in ``network_ts`` may be written back byte for byte after
    its file meta, which its request then predicts (:func:`identity_as_received` confirms
    it once the whole data set is in)."""
    in_syn = SYNTAXES.get(network_ts, ENCAPSULATED)
    out_ts, _ = _output_syntax(network_ts, fmt)
    return _fast_look_applies(fmt, in_syn, out_ts == network_ts)


def identity_as_received(
    fd: int, offset: int, network_ts: str, fmt: OutputFormat
) -> Identity | None:
    """The identity of the data set that fills the file ``fd`` from ``offset`` on, when it is
    written back as received (:class:`_RawLook`, over a read-only mapping); None when the
    full parser must decide, or the file cannot be mapped."""
    in_syn = SYNTAXES.get(network_ts, ENCAPSULATED)
    try:
        mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):  # ValueError: an empty file
        return None
    try:
        with memoryview(mapped) as whole, whole[offset:] as view:
            found = _raw_identity(view, in_syn, fmt)
    finally:
        with contextlib.suppress(BufferError):  # a view still held: the mapping goes with it
            mapped.close()
    return None if found is None else _identity_of(found, raw=True)


def _write(
    data: BinaryIO, network_ts: str, out: BinaryIO, fmt: OutputFormat, source_ae_title: str
) -> Identity:
    in_syn = SYNTAXES.get(network_ts, ENCAPSULATED)
    out_ts, out_syn = _output_syntax(network_ts, fmt)
    if isinstance(data, io.BytesIO) and _fast_look_applies(fmt, in_syn, out_ts == network_ts):
        with data.getbuffer() as buf, buf[data.tell() :] as view:
            found = _raw_identity(view, in_syn, fmt)
            if found is not None:
                ident = _identity_of(found, raw=True)
                if fmt.write_file:
                    out.write(_meta_for(ident, out_ts, source_ae_title))
                out.write(view)
                return ident
    start = data.tell()
    end = data.seek(0, 2)
    data.seek(start)
    parse_syn = replace(in_syn, deflated=False)
    parser = _Parser(data, end)
    try:
        elements, _ = parser.elements(parse_syn, end)
    except (struct.error, UnicodeDecodeError) as err:
        raise UnreadableDataset(str(err)) from err
    raw = (
        out_ts == network_ts
        and not in_syn.deflated
        and not fmt.padding
        and not _needs_rewrite(elements, fmt, in_syn)
    )
    ident = _identity(elements, data, raw, fmt.convert_un)
    meta = b""
    if fmt.write_file:
        meta = _meta_for(ident, out_ts, source_ae_title)
        out.write(meta)
    if raw:
        if copy_file_bytes(data, out, start, end - start):
            return ident
        data.seek(start)
        for chunk in _chunks(data, Span(start, end - start)):
            out.write(chunk)
        return ident
    encoder = _Encoder(data, replace(out_syn, deflated=False), fmt, parser.creators)
    _reencode(encoder, elements, out_syn.deflated, out, len(meta))
    return ident


def _reencode(
    encoder: _Encoder, elements: list[Element], deflate: bool, out: BinaryIO, lead: int
) -> None:
    fmt = encoder.fmt
    pad = fmt.padding[0] if fmt.padding else 0
    tree = encoder.prepare(elements, pad, lead)
    if not deflate:
        for chunk in encoder.emit(tree):
            out.write(chunk)
        return
    deflater = zlib.compressobj(fmt.compression_level, zlib.DEFLATED, -zlib.MAX_WBITS)
    for chunk in encoder.emit(tree):
        out.write(deflater.compress(chunk))
    out.write(deflater.flush())
