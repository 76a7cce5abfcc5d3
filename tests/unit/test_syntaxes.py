"""Transfer-syntax tables against SPEC Appendix B, and the helpers against pydicom's view."""

from __future__ import annotations

import sys

import pytest
from pydicom.uid import UID

from storescpd import syntaxes
from storescpd.syntaxes import (
    ALL,
    COMPRESSED,
    PREFER_OPTIONS,
    VERIFICATION,
    is_compressed,
    is_deflated,
    is_implicit,
    is_little_endian,
    preference_list,
)

# Literal UIDs, so the expectations do not share a typo with the module.
LEI = "1.2.840.10008.1.2"
LEE = "1.2.840.10008.1.2.1"
BEE = "1.2.840.10008.1.2.2"
DEF = "1.2.840.10008.1.2.1.99"
RLE = "1.2.840.10008.1.2.5"


def enc(suffix: str) -> str:
    return "1.2.840.10008.1.2.4." + suffix


FALLBACK = (LEE, BEE, LEI)

# SPEC Appendix B, little-endian host.
LITTLE_ENDIAN_HOST = [
    ("prefer-uncompr", (LEE, BEE, LEI)),
    ("prefer-little", (LEE, BEE, LEI)),
    ("prefer-big", (BEE, LEE, LEI)),
    ("implicit", (LEI,)),
    ("prefer-lossless", (enc("70"), *FALLBACK)),
    ("prefer-jpeg8", (enc("50"), *FALLBACK)),
    ("prefer-jpeg12", (enc("51"), *FALLBACK)),
    ("prefer-j2k-lossless", (enc("90"), *FALLBACK)),
    ("prefer-j2k-lossy", (enc("91"), *FALLBACK)),
    ("prefer-jls-lossless", (enc("80"), *FALLBACK)),
    ("prefer-jls-lossy", (enc("81"), *FALLBACK)),
    ("prefer-mpeg2", (enc("100"), *FALLBACK)),
    ("prefer-mpeg2-high", (enc("101"), *FALLBACK)),
    ("prefer-mpeg4", (enc("102"), *FALLBACK)),
    ("prefer-mpeg4-bd", (enc("103"), *FALLBACK)),
    ("prefer-mpeg4-2-2d", (enc("104"), *FALLBACK)),
    ("prefer-mpeg4-2-3d", (enc("105"), *FALLBACK)),
    ("prefer-mpeg4-2-st", (enc("106"), *FALLBACK)),
    ("prefer-hevc", (enc("107"), *FALLBACK)),
    ("prefer-hevc10", (enc("108"), *FALLBACK)),
    ("prefer-rle", (RLE, *FALLBACK)),
    ("prefer-deflated", (DEF, *FALLBACK)),
    (
        "accept-all",
        (
            enc("91"),
            enc("90"),
            enc("51"),
            enc("50"),
            enc("70"),
            enc("81"),
            enc("80"),
            RLE,
            enc("100"),
            enc("101"),
            enc("102"),
            enc("103"),
            enc("104"),
            enc("105"),
            enc("106"),
            enc("107"),
            enc("108"),
            DEF,
            LEE,
            BEE,
            LEI,
        ),
    ),
]

# Only the default and accept-all follow host byte order; named preferences do not.
CHANGED_ON_BIG_ENDIAN_HOST = {
    "prefer-uncompr": (BEE, LEE, LEI),
    "accept-all": (*dict(LITTLE_ENDIAN_HOST)["accept-all"][:-3], BEE, LEE, LEI),
}


@pytest.mark.parametrize(("prefer", "expected"), LITTLE_ENDIAN_HOST)
def test_preference_list_little_endian_host(prefer: str, expected: tuple[str, ...]) -> None:
    assert preference_list(prefer, byteorder="little") == expected


@pytest.mark.parametrize(("prefer", "little"), LITTLE_ENDIAN_HOST)
def test_preference_list_big_endian_host(prefer: str, little: tuple[str, ...]) -> None:
    expected = CHANGED_ON_BIG_ENDIAN_HOST.get(prefer, little)
    assert preference_list(prefer, byteorder="big") == expected


def test_default_byteorder_is_the_hosts() -> None:
    assert preference_list("prefer-uncompr") == preference_list(
        "prefer-uncompr", byteorder=sys.byteorder
    )


def test_every_option_is_tabled_and_lists_are_duplicate_free() -> None:
    assert set(PREFER_OPTIONS) == {prefer for prefer, _ in LITTLE_ENDIAN_HOST}
    assert len(PREFER_OPTIONS) == 23
    for prefer in PREFER_OPTIONS:
        listed = preference_list(prefer)
        assert len(set(listed)) == len(listed)
        assert set(listed) <= set(ALL)


def test_accept_all_lists_every_known_syntax() -> None:
    assert sorted(preference_list("accept-all")) == sorted(ALL)


@pytest.mark.parametrize("prefer", ["", "prefer-jpegxl", "+xa", "--prefer-little", "Implicit"])
def test_unknown_preference_is_refused(prefer: str) -> None:
    with pytest.raises(ValueError, match="preference"):
        preference_list(prefer)


def test_all_holds_the_21_syntaxes_dcmtk_knows() -> None:
    assert len(ALL) == 21
    assert len(set(ALL)) == 21
    assert all(UID(ts).is_transfer_syntax for ts in ALL)
    assert {LEI, LEE, BEE, DEF, RLE} <= set(ALL)


def test_newer_syntaxes_are_unknown() -> None:
    htj2k_lossless, jpeg_xl = enc("201"), "1.2.840.10008.1.2.4.110"
    assert htj2k_lossless not in ALL
    assert jpeg_xl not in ALL


def test_verification_uid() -> None:
    assert VERIFICATION == "1.2.840.10008.1.1"


@pytest.mark.parametrize("ts", ALL)
def test_helpers_agree_with_pydicom(ts: str) -> None:
    uid = UID(ts)
    assert is_compressed(ts) == uid.is_compressed == (ts in COMPRESSED)
    assert is_deflated(ts) == uid.is_deflated
    assert is_implicit(ts) == uid.is_implicit_VR
    assert is_little_endian(ts) == uid.is_little_endian


@pytest.mark.parametrize(
    ("ts", "compressed", "deflated", "implicit", "little"),
    [
        (LEI, False, False, True, True),
        (LEE, False, False, False, True),
        (BEE, False, False, False, False),
        (DEF, False, True, False, True),
        (RLE, True, False, False, True),
        (enc("50"), True, False, False, True),
        (enc("108"), True, False, False, True),
    ],
)
def test_helpers_table(
    ts: str, compressed: bool, deflated: bool, implicit: bool, little: bool
) -> None:
    assert (is_compressed(ts), is_deflated(ts), is_implicit(ts), is_little_endian(ts)) == (
        compressed,
        deflated,
        implicit,
        little,
    )


@pytest.mark.parametrize(
    ("constant", "uid"),
    [
        (syntaxes.LITTLE_ENDIAN_IMPLICIT, LEI),
        (syntaxes.LITTLE_ENDIAN_EXPLICIT, LEE),
        (syntaxes.BIG_ENDIAN_EXPLICIT, BEE),
        (syntaxes.DEFLATED_LITTLE_ENDIAN_EXPLICIT, DEF),
        (syntaxes.RLE_LOSSLESS, RLE),
        (syntaxes.JPEG_LOSSLESS_SV1, enc("70")),
        (syntaxes.JPEG_2000_LOSSLESS, enc("90")),
        (syntaxes.JPEG_LS_NEAR_LOSSLESS, enc("81")),
        (syntaxes.MPEG4_HP42_STEREO, enc("106")),
        (syntaxes.HEVC_MAIN10, enc("108")),
    ],
)
def test_named_constants(constant: str, uid: str) -> None:
    assert constant == uid


def test_compressed_is_everything_encapsulated() -> None:
    assert len(COMPRESSED) == 17
    assert set(ALL) - COMPRESSED == {LEI, LEE, BEE, DEF}
