"""The asconfig reader (``-xf``): DCMTK's lexical rules, and one case per malformed file of
SPEC §14 with DCMTK's message. ``MALFORMED`` is shared with the integration test that asks
DCMTK's own storescp for the same messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from storescpd import asconfig
from storescpd.asconfig import AsconfigError, Role
from storescpd.syntaxes import (
    BIG_ENDIAN_EXPLICIT,
    JPEG_LOSSLESS_SV1,
    LITTLE_ENDIAN_EXPLICIT,
    LITTLE_ENDIAN_IMPLICIT,
    VERIFICATION,
)

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
SYSTEM_CFG = Path("/etc/dcmtk/storescp.cfg")

TS = "[[TransferSyntaxes]]\n[Uncompressed]\nTransferSyntax1 = LittleEndianImplicit\n"
PCS = (
    "[[PresentationContexts]]\n[Ctx]\n"
    "PresentationContext1 = VerificationSOPClass\\Uncompressed\n"
    "PresentationContext2 = CTImageStorage\\Uncompressed\n"
)
PROFILES = "[[Profiles]]\n[Default]\nPresentationContexts = Ctx\n"
GOOD = TS + PCS + PROFILES


def _with_profile(extra: str, profile_lines: str) -> str:
    return TS + PCS + extra + PROFILES + profile_lines


def _contexts(n: int) -> str:
    lines = "".join(f"PresentationContext{i} = 1.2.3.{i}\\Uncompressed\n" for i in range(1, n + 1))
    return TS + "[[PresentationContexts]]\n[Ctx]\n" + lines + PROFILES


ROLES = "[[SCPSCURoleSelection]]\n[Roles]\n"
EXT = "[[ExtendedNegotiation]]\n[Ext]\n"

# (id, file text, profile argument, message after "F: " as storescp logs it)
MALFORMED: list[tuple[str, str, str, str]] = [
    ("no-transfer-syntaxes", PCS + PROFILES, "Default",
     "cannot read config file: cannot find section [[TRANSFERSYNTAXES]] in config file"),
    ("no-contexts", TS + PROFILES, "Default",
     "cannot read config file: cannot find section [[PRESENTATIONCONTEXTS]] in config file"),
    ("no-profiles", TS + PCS, "Default",
     "cannot read config file: cannot find section [[PROFILES]] in config file"),
    ("bad-transfer-syntax", GOOD.replace("LittleEndianImplicit", "NoSuchSyntax"), "Default",
     "cannot read config file: not a valid transfer syntax UID: NoSuchSyntax"),
    ("missing-backslash", GOOD.replace("CTImageStorage\\Uncompressed", "CTImageStorage"),
     "Default",
     "cannot read config file: syntax error: missing '\\' in entry PRESENTATIONCONTEXT2 in "
     "config file"),
    ("undefined-ts-list", GOOD.replace("CTImageStorage\\Uncompressed", "CTImageStorage\\Lossy"),
     "Default", "cannot read config file: transfer syntax key undefined: LOSSY"),
    ("dotted-ts-list", GOOD.replace("[Uncompressed]", "[Un.compressed]").replace(
        "\\Uncompressed", "\\Un.compressed"), "Default",
     "cannot read config file: transfer syntax key undefined: UN.COMPRESSED"),
    ("abstract-syntax-trailing-space", GOOD.replace("CTImageStorage\\", "CTImageStorage \\"),
     "Default", "cannot read config file: not a valid abstract syntax UID: CTImageStorage"),
    ("unknown-sop-class-name", GOOD.replace("CTImageStorage", "NoSuchStorage"), "Default",
     "cannot read config file: not a valid abstract syntax UID: NoSuchStorage"),
    ("empty-abstract-syntax", GOOD.replace("CTImageStorage\\", "\\"), "Default",
     "cannot read config file: Illegal call, perhaps wrong parameters"),
    ("129-contexts", _contexts(129), "Default",
     "cannot read config file: presentation context list too long (> 128 entries): CTX"),
    ("unknown-role", _with_profile(ROLES + "Role1 = CTImageStorage\\Master\n", ""), "Default",
     "cannot read config file: syntax error: unknown role key in entry ROLE1 in config file"),
    ("role-trailing-blank", _with_profile(ROLES + "Role1 = CTImageStorage\\SCP \n", ""),
     "Default",
     "cannot read config file: syntax error: unknown role key in entry ROLE1 in config file"),
    ("role-missing-backslash", _with_profile(ROLES + "Role1 = CTImageStorage SCP\n", ""),
     "Default",
     "cannot read config file: syntax error: missing '\\' in entry ROLE1 in config file"),
    ("role-twice", _with_profile(
        ROLES + "Role1 = CTImageStorage\\SCU\nRole2 = 1.2.840.10008.5.1.4.1.1.2\\SCP\n", ""),
     "Default", "cannot read config file: role selection defined twice for abstract syntax "
     "UID: 1.2.840.10008.5.1.4.1.1.2"),
    ("extneg-odd-hex", _with_profile(EXT + "ExtendedNegotiation1 = CTImageStorage\\010\n", ""),
     "Default", "cannot read config file: parse error in extended negotiation data in entry "
     "EXTENDEDNEGOTIATION1 in config file"),
    ("extneg-not-hex", _with_profile(EXT + "ExtendedNegotiation1 = CTImageStorage\\0x\n", ""),
     "Default", "cannot read config file: parse error in extended negotiation data in entry "
     "EXTENDEDNEGOTIATION1 in config file"),
    ("extneg-1024-bytes", _with_profile(
        EXT + "ExtendedNegotiation1 = CTImageStorage\\" + "01" * 1024 + "\n", ""), "Default",
     "cannot read config file: extended negotiation data too long, cannot handle > 1024 bytes "
     "in entry EXTENDEDNEGOTIATION1 in config file"),
    ("extneg-twice", _with_profile(
        EXT + "ExtendedNegotiation1 = CTImageStorage\\01\nExtendedNegotiation2 = CTImageStorage"
        "\\02\n", ""), "Default", "cannot read config file: extended negotiation defined twice "
     "for abstract syntax UID: CTImageStorage"),
    ("profile-without-contexts", TS + PCS + "[[Profiles]]\n[Default]\nContexts = Ctx\n",
     "Default", "cannot read config file: no PRESENTATIONCONTEXTS  entry in section DEFAULT "
     "in config file"),
    ("profile-undefined-contexts", GOOD.replace("= Ctx", "= Other"), "Default",
     "cannot read config file: presentation context key undefined: OTHER"),
    ("profile-undefined-roles", _with_profile("", "SCPSCURoleSelection = Roles\n"), "Default",
     "cannot read config file: role selection key undefined: ROLES"),
    ("profile-undefined-extneg", _with_profile("", "ExtendedNegotiation = Ext\n"), "Default",
     "cannot read config file: extended negotiation key undefined: EXT"),
    ("role-not-in-contexts", _with_profile(
        ROLES + "Role1 = MRImageStorage\\SCU\n", "SCPSCURoleSelection = Roles\n"), "Default",
     "cannot read config file: abstract syntax defined in role selection list 'ROLES' but not "
     f"in presentation context list 'CTX': {MR}"),
    ("extneg-not-in-contexts", _with_profile(
        EXT + "ExtendedNegotiation1 = MRImageStorage\\01\n", "ExtendedNegotiation = Ext\n"),
     "Default", "cannot read config file: abstract syntax defined in role selection list 'EXT' "
     f"but not in presentation context list 'CTX': {MR}"),
    ("two-profiles", GOOD + "[ default ]\nPresentationContexts = Ctx\n", "Default",
     "cannot read config file: two profiles defined for key: CTX"),
    ("unknown-profile", GOOD, "No Such", "unknown configuration profile name: NOSUCH"),
    ("duplicate-sop-class", GOOD.replace("VerificationSOPClass", "CTImageStorage"), "Default",
     "profile 'DEFAULT' is not valid for SCP use, duplicate abstract syntaxes found"),
]  # fmt: skip


def storescp_message(text: str, profile: str) -> str:
    """What storescp logs after ``F: `` for this file, or ``""`` if it would start (its log
    lines lose trailing blanks)."""
    try:
        asconfig.scp_profile(asconfig.parse(text), profile)
    except AsconfigError as err:
        return asconfig.fatal_message(err).rstrip()
    return ""


@pytest.mark.parametrize(("text", "profile", "message"), [c[1:] for c in MALFORMED],
                         ids=[c[0] for c in MALFORMED])  # fmt: skip
def test_malformed_file_gives_dcmtk_message(text: str, profile: str, message: str) -> None:
    assert storescp_message(text, profile) == message


def test_128_contexts_are_allowed() -> None:
    profile = asconfig.scp_profile(asconfig.parse(_contexts(128)), "Default")
    assert len(profile.contexts) == 128


def test_1023_bytes_of_extended_negotiation_are_allowed() -> None:
    text = _with_profile(
        EXT + "ExtendedNegotiation1 = CTImageStorage\\" + "ab" * 1023 + "\n",
        "ExtendedNegotiation = Ext\n",
    )
    assert asconfig.scp_profile(asconfig.parse(text), "Default").extended == {CT: b"\xab" * 1023}


def test_missing_file() -> None:
    with pytest.raises(AsconfigError, match=r"^unable to open configuration file: /no/such$"):
        asconfig.load("/no/such")


def test_system_storescp_cfg_profiles() -> None:
    if not SYSTEM_CFG.exists():
        pytest.skip("the dcmtk package's storescp.cfg is not installed")
    cfg = asconfig.load(str(SYSTEM_CFG))
    assert sorted(cfg.profiles) == ["ALLDICOM", "DEFAULT"]
    for name in ("Default", "AllDICOM"):
        profile = asconfig.scp_profile(cfg, name)
        assert len(profile.contexts) == 128
        assert profile.contexts[0].abstract_syntax == VERIFICATION
        assert profile.contexts[0].transfer_syntaxes == (
            LITTLE_ENDIAN_EXPLICIT, BIG_ENDIAN_EXPLICIT, LITTLE_ENDIAN_IMPLICIT)  # fmt: skip
        assert not profile.roles and not profile.extended
    ct = {cx.abstract_syntax: cx for cx in asconfig.scp_profile(cfg, "Default").contexts}[CT]
    assert len(ct.transfer_syntaxes) == 21 and JPEG_LOSSLESS_SV1 in ct.transfer_syntaxes


def test_names_and_references_are_normalised() -> None:
    text = (
        "[[TransferSyntaxes]]\n[ My List ]\ntransfersyntax1 = =JPEGLossless:Non-hierarchical-"
        "1stOrderPrediction\nTransferSyntax2=LocalEndianExplicit   \n"
        "# TransferSyntax3 = LittleEndianImplicit\n"
        "[[PresentationContexts]]\n[ctx]\nPresentationContext1 = CTImageStorage\\ my list \n"
        "[[Profiles]]\n[My Profile]\nPresentationContexts = C t x\nSCPSCURoleSelection = roles\n"
        "[[SCPSCURoleSelection]]\n[Roles]\nRole1 = CTImageStorage\\both\n"
    )
    with pytest.raises(AsconfigError, match=r"^not a valid transfer syntax UID: LocalEndian"):
        asconfig.parse(text)  # the trailing blanks are part of the value
    profile = asconfig.scp_profile(asconfig.parse(text.replace("   \n", "\n")), " my profile")
    assert profile.name == "MYPROFILE"
    assert profile.contexts == (
        asconfig.Context(CT, (JPEG_LOSSLESS_SV1, LITTLE_ENDIAN_EXPLICIT)),)  # fmt: skip
    assert profile.roles == {CT: Role.BOTH}


def test_comments_continuations_and_line_ends() -> None:
    text = (
        "# a comment in column 1\r\n[[TransferSyntaxes]]\r\n[A]\r\n"
        "TransferSyntax1 = 1.2.840.10008.1.2\r\n TransferSyntax2 = 1.2.840.10008.1.2.1\r\n"
        "[B]\rTransferSyntax1 = LittleEndianImplicit\r"
        "  # indented: not a comment\rTransferSyntax2 = BigEndianExplicit\n"
        "[[PresentationContexts]]\n[Ctx]\nPresentationContext1 = CTImageStorage\\A\n"
        "[[Profiles]]\n[P]\nPresentationContexts = Ctx\n"
        "Entry outside any section is dropped\n"
    )
    continued = "1.2.840.10008.1.2\nTransferSyntax2 = 1.2.840.10008.1.2.1"
    with pytest.raises(AsconfigError) as raised:
        asconfig.parse(text)
    assert raised.value.message == f"not a valid transfer syntax UID: {continued}"
    text = text.replace(" TransferSyntax2 = 1.2.840.10008.1.2.1", "TransferSyntax2 = 1.2.840."
                        "10008.1.2.1").replace("\r  # indented: not a comment", "")  # fmt: skip
    cfg = asconfig.parse(text)
    assert cfg.transfer_syntaxes == {
        "A": [LITTLE_ENDIAN_IMPLICIT, LITTLE_ENDIAN_EXPLICIT],
        "B": [LITTLE_ENDIAN_IMPLICIT, BIG_ENDIAN_EXPLICIT],
    }


def test_only_first_numbers_without_gaps_count() -> None:
    text = GOOD.replace("PresentationContext2", "PresentationContext3")
    assert asconfig.scp_profile(asconfig.parse(text), "Default").contexts == (
        asconfig.Context(VERIFICATION, (LITTLE_ENDIAN_IMPLICIT,)),)  # fmt: skip
