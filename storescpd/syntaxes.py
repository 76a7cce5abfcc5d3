"""Transfer syntaxes DCMTK 3.6.7 knows, and storescp's preference list for each ``+x`` option.

The preference lists reproduce SPEC Appendix B: the acceptor takes the first entry of the list
that the requestor proposed, whatever the requestor's own order. Pure: stdlib only, no I/O.
"""

from __future__ import annotations

import sys

VERIFICATION = "1.2.840.10008.1.1"

LITTLE_ENDIAN_IMPLICIT = "1.2.840.10008.1.2"
LITTLE_ENDIAN_EXPLICIT = "1.2.840.10008.1.2.1"
BIG_ENDIAN_EXPLICIT = "1.2.840.10008.1.2.2"
DEFLATED_LITTLE_ENDIAN_EXPLICIT = "1.2.840.10008.1.2.1.99"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
JPEG_LS_NEAR_LOSSLESS = "1.2.840.10008.1.2.4.81"
JPEG_2000_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG_2000 = "1.2.840.10008.1.2.4.91"
MPEG2_MAIN_MAIN = "1.2.840.10008.1.2.4.100"
MPEG2_MAIN_HIGH = "1.2.840.10008.1.2.4.101"
MPEG4_HP41 = "1.2.840.10008.1.2.4.102"
MPEG4_HP41_BD = "1.2.840.10008.1.2.4.103"
MPEG4_HP42_2D = "1.2.840.10008.1.2.4.104"
MPEG4_HP42_3D = "1.2.840.10008.1.2.4.105"
MPEG4_HP42_STEREO = "1.2.840.10008.1.2.4.106"
HEVC_MAIN = "1.2.840.10008.1.2.4.107"
HEVC_MAIN10 = "1.2.840.10008.1.2.4.108"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"

# Encapsulated pixel data: the image is compressed, the data set around it is explicit LE.
ENCAPSULATED: tuple[str, ...] = (
    JPEG_BASELINE,
    JPEG_EXTENDED,
    JPEG_LOSSLESS_SV1,
    JPEG_LS_LOSSLESS,
    JPEG_LS_NEAR_LOSSLESS,
    JPEG_2000_LOSSLESS,
    JPEG_2000,
    MPEG2_MAIN_MAIN,
    MPEG2_MAIN_HIGH,
    MPEG4_HP41,
    MPEG4_HP41_BD,
    MPEG4_HP42_2D,
    MPEG4_HP42_3D,
    MPEG4_HP42_STEREO,
    HEVC_MAIN,
    HEVC_MAIN10,
    RLE_LOSSLESS,
)
COMPRESSED: frozenset[str] = frozenset(ENCAPSULATED)

UNCOMPRESSED: tuple[str, ...] = (
    LITTLE_ENDIAN_IMPLICIT,
    LITTLE_ENDIAN_EXPLICIT,
    BIG_ENDIAN_EXPLICIT,
    DEFLATED_LITTLE_ENDIAN_EXPLICIT,
)

# The 21 transfer syntaxes of DCMTK 3.6.7; nothing newer (HTJ2K, JPEG XL, ...) is accepted.
ALL: tuple[str, ...] = (*UNCOMPRESSED, *ENCAPSULATED)

# The fixed fallback after a named preference; unlike the default it ignores host byte order.
_EXPLICIT_FIRST = (LITTLE_ENDIAN_EXPLICIT, BIG_ENDIAN_EXPLICIT, LITTLE_ENDIAN_IMPLICIT)

# `+x?` options that put one syntax in front of the fixed fallback, keyed by long name.
_PREFERRED: dict[str, str] = {
    "prefer-lossless": JPEG_LOSSLESS_SV1,
    "prefer-jpeg8": JPEG_BASELINE,
    "prefer-jpeg12": JPEG_EXTENDED,
    "prefer-j2k-lossless": JPEG_2000_LOSSLESS,
    "prefer-j2k-lossy": JPEG_2000,
    "prefer-jls-lossless": JPEG_LS_LOSSLESS,
    "prefer-jls-lossy": JPEG_LS_NEAR_LOSSLESS,
    "prefer-mpeg2": MPEG2_MAIN_MAIN,
    "prefer-mpeg2-high": MPEG2_MAIN_HIGH,
    "prefer-mpeg4": MPEG4_HP41,
    "prefer-mpeg4-bd": MPEG4_HP41_BD,
    "prefer-mpeg4-2-2d": MPEG4_HP42_2D,
    "prefer-mpeg4-2-3d": MPEG4_HP42_3D,
    "prefer-mpeg4-2-st": MPEG4_HP42_STEREO,
    "prefer-hevc": HEVC_MAIN,
    "prefer-hevc10": HEVC_MAIN10,
    "prefer-rle": RLE_LOSSLESS,
    "prefer-deflated": DEFLATED_LITTLE_ENDIAN_EXPLICIT,
}

# `+xa`: every compressed syntax DCMTK knows, in DCMTK's order, before the uncompressed ones.
_ACCEPT_ALL_HEAD = (
    JPEG_2000,
    JPEG_2000_LOSSLESS,
    JPEG_EXTENDED,
    JPEG_BASELINE,
    JPEG_LOSSLESS_SV1,
    JPEG_LS_NEAR_LOSSLESS,
    JPEG_LS_LOSSLESS,
    RLE_LOSSLESS,
    MPEG2_MAIN_MAIN,
    MPEG2_MAIN_HIGH,
    MPEG4_HP41,
    MPEG4_HP41_BD,
    MPEG4_HP42_2D,
    MPEG4_HP42_3D,
    MPEG4_HP42_STEREO,
    HEVC_MAIN,
    HEVC_MAIN10,
    DEFLATED_LITTLE_ENDIAN_EXPLICIT,
)

PREFER_OPTIONS: tuple[str, ...] = (
    "prefer-uncompr",
    "prefer-little",
    "prefer-big",
    *_PREFERRED,
    "implicit",
    "accept-all",
)


def preference_list(prefer: str, *, byteorder: str = sys.byteorder) -> tuple[str, ...]:
    """The transfer syntaxes storescp accepts, best first, for one ``+x`` option.

    Parameters
    ----------
    prefer : str
        The option's long name without dashes, e.g. ``"prefer-uncompr"`` (the default, ``+x=``),
        ``"prefer-j2k-lossless"`` (``+xv``), ``"implicit"`` (``+xi``), ``"accept-all"`` (``+xa``).
    byteorder : str
        ``"little"`` or ``"big"``; only the default and ``accept-all`` put the host's explicit
        syntax first (SPEC Appendix B).

    Raises
    ------
    ValueError
        For a name that is not one of :data:`PREFER_OPTIONS`.
    """
    local_first = _local_explicit_first(byteorder)
    if prefer == "prefer-uncompr":
        return local_first
    if prefer == "prefer-little":
        return _EXPLICIT_FIRST
    if prefer == "prefer-big":
        return (BIG_ENDIAN_EXPLICIT, LITTLE_ENDIAN_EXPLICIT, LITTLE_ENDIAN_IMPLICIT)
    if prefer == "implicit":
        return (LITTLE_ENDIAN_IMPLICIT,)
    if prefer == "accept-all":
        return _ACCEPT_ALL_HEAD + local_first
    if prefer in _PREFERRED:
        return (_PREFERRED[prefer], *_EXPLICIT_FIRST)
    raise ValueError(f"unknown transfer syntax preference: {prefer!r}")


def _local_explicit_first(byteorder: str) -> tuple[str, ...]:
    if byteorder == "big":
        return (BIG_ENDIAN_EXPLICIT, LITTLE_ENDIAN_EXPLICIT, LITTLE_ENDIAN_IMPLICIT)
    return _EXPLICIT_FIRST


def is_compressed(ts: str) -> bool:
    """True for a syntax with encapsulated (compressed) pixel data."""
    return ts in COMPRESSED


def is_deflated(ts: str) -> bool:
    """True for Deflated Explicit VR Little Endian (the whole data set is zlib-compressed)."""
    return ts == DEFLATED_LITTLE_ENDIAN_EXPLICIT


def is_implicit(ts: str) -> bool:
    """True for Implicit VR Little Endian, the only implicit-VR syntax."""
    return ts == LITTLE_ENDIAN_IMPLICIT


def is_little_endian(ts: str) -> bool:
    """True for every syntax but Explicit VR Big Endian (all others encode little endian)."""
    return ts != BIG_ENDIAN_EXPLICIT
