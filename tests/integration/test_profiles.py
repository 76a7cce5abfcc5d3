"""``-xf FILE PROFILE`` against DCMTK's own storescp given the same file (SPEC §4.6, §14).

Every malformed file of SPEC §14 is given to both programs, which must print the same fatal line
and exit alike; then both serve ``/etc/dcmtk/storescp.cfg`` (and a profile with role selection
and extended negotiation) and must negotiate the same way with DCMTK's storescu and pynetdicom.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    LegacyConvertedEnhancedCTImageStorage,
    MRImageStorage,
    SecondaryCaptureImageStorage,
    generate_uid,
)
from pynetdicom import AE, build_role
from pynetdicom.pdu_primitives import SCP_SCU_RoleSelectionNegotiation, SOPClassExtendedNegotiation

from tests.conftest import Server, dcmtk, free_port, run_dcmtk
from tests.unit.test_asconfig import MALFORMED

StartServer = Callable[..., Server]
SYSTEM_CFG = Path("/etc/dcmtk/storescp.cfg")
VERIFICATION = "1.2.840.10008.1.1"


def _fatal(argv: list[str]) -> tuple[int, str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    return result.returncode, (result.stdout + result.stderr).strip()


@pytest.mark.parametrize(("text", "profile", "message"), [c[1:] for c in MALFORMED],
                         ids=[c[0] for c in MALFORMED])  # fmt: skip
def test_malformed_file_as_dcmtk(tmp_path: Path, text: str, profile: str, message: str) -> None:
    cfg = tmp_path / "profile.cfg"
    cfg.write_text(text)
    port = str(free_port())  # neither program gets as far as listening
    ours = _fatal([sys.executable, "-m", "storescpd", "-xf", str(cfg), profile, port])
    theirs = _fatal([dcmtk("storescp"), "-xf", str(cfg), profile, port])
    assert theirs == (1, f"F: {message}")
    assert ours == theirs


def test_missing_file_as_dcmtk(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.cfg")
    port = str(free_port())
    ours = _fatal([sys.executable, "-m", "storescpd", "-xf", missing, "Default", port])
    assert ours == (1, f"F: cannot read config file: unable to open configuration file: {missing}")
    assert ours == _fatal([dcmtk("storescp"), "-xf", missing, "Default", port])


# --- storescu with /etc/dcmtk/storescp.cfg -------------------------------------------------


@pytest.fixture
def system_cfg() -> str:
    if not SYSTEM_CFG.exists():
        pytest.skip("the dcmtk package's storescp.cfg is not installed")
    return str(SYSTEM_CFG)


@pytest.fixture
def objects(tmp_path: Path) -> tuple[Path, Path]:
    """A JPEG Lossless SV1 secondary capture, and a CT relabelled as a class Default omits."""
    jpeg = get_testdata_file("SC_rgb_jpeg_gdcm.dcm")
    assert jpeg is not None
    ds = pydicom.dcmread(str(get_testdata_file("CT_small.dcm")))
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = LegacyConvertedEnhancedCTImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    legacy = tmp_path / "legacy_ct.dcm"
    ds.save_as(legacy)
    return Path(jpeg), legacy


def _send(server: Server, path: Path) -> tuple[int, list[str]]:
    """storescu -xs for images (it proposes JPEG Lossless); dcmsend for the relabelled CT,
    since storescu proposes only its own 64 classes, all of which Default lists."""
    if path.name == "legacy_ct.dcm":
        result = run_dcmtk("dcmsend", "127.0.0.1", str(server.port), str(path))
    else:
        result = run_dcmtk("storescu", "-xs", "127.0.0.1", str(server.port), str(path))
    # the client's verdict, without file names
    lines = (result.stdout + result.stderr).splitlines()
    errors = [line.split(str(path))[0] for line in lines if line.startswith(("E:", "F:", "W:"))]
    return result.returncode, errors


def _stored(server: Server) -> list[str]:
    return sorted(p.name.split(".")[0] for p in server.od.rglob("*") if p.is_file())


@pytest.mark.parametrize("profile", ["Default", "AllDICOM"])
def test_system_profile_as_dcmtk(
    storescpd: StartServer, dcmtk_storescp: StartServer, system_cfg: str,
    objects: tuple[Path, Path], profile: str,
) -> None:  # fmt: skip
    ours = storescpd(["-xf", system_cfg, profile])
    theirs = dcmtk_storescp(["-xf", system_cfg, profile])
    jpeg, legacy = objects
    outcomes = {}
    for name, server in (("ours", ours), ("theirs", theirs)):
        outcomes[name] = (_send(server, jpeg), _send(server, legacy))
    assert outcomes["ours"] == outcomes["theirs"]
    (jpeg_rc, jpeg_errors), (legacy_rc, legacy_errors) = outcomes["ours"]
    assert (jpeg_rc, jpeg_errors) == (0, [])
    if profile == "Default":
        assert legacy_errors, "Default omits Legacy Converted Enhanced CT: dcmsend must fail"
        assert _stored(ours) == _stored(theirs) == ["SC"]
    else:
        assert legacy_rc == 0
        assert _stored(ours) == _stored(theirs) == ["CTl", "SC"]
    stored = next(p for p in ours.od.rglob("SC*") if p.is_file())
    assert pydicom.dcmread(stored).file_meta.TransferSyntaxUID == JPEGLosslessSV1


def test_without_profile_jpeg_is_refused(
    storescpd: StartServer, objects: tuple[Path, Path]
) -> None:
    """The contrast: plain storescp offers no compressed syntax, so the same send fails."""
    _, errors = _send(storescpd([]), objects[0])
    assert errors


# --- pynetdicom proposals: TS order, roles, extended negotiation ---------------------------

ROLES_CFG = """\
[[TransferSyntaxes]]
[Uncompressed]
TransferSyntax1 = BigEndianExplicit
TransferSyntax2 = LittleEndianImplicit
[Lossless]
TransferSyntax1 = JPEG2000LosslessOnly
TransferSyntax2 = LittleEndianExplicit
[[PresentationContexts]]
[Contexts]
PresentationContext1 = VerificationSOPClass\\Uncompressed
PresentationContext2 = CTImageStorage\\Lossless
PresentationContext3 = MRImageStorage\\Uncompressed
PresentationContext4 = SecondaryCaptureImageStorage\\Uncompressed
[[SCPSCURoleSelection]]
[Roles]
Role1 = CTImageStorage\\SCU
Role2 = MRImageStorage\\SCP
Role3 = SecondaryCaptureImageStorage\\both
[[ExtendedNegotiation]]
[Ext]
ExtendedNegotiation1 = CTImageStorage\\0102
ExtendedNegotiation2 = MRImageStorage\\ff
[[Profiles]]
[Roles Profile]
PresentationContexts = Contexts
SCPSCURoleSelection = Roles
ExtendedNegotiation = Ext
"""


Negotiated = tuple[list[Any], list[Any], list[Any]]  # contexts, role replies, extended replies


def _negotiate(server: Server, roles: dict[str, tuple[bool, bool]]) -> Negotiated:
    """Propose a fixed set of contexts (and role items) and describe the A-ASSOCIATE-AC."""
    ae = AE()
    ae.acse_timeout = ae.network_timeout = 30
    proposals = [
        (VERIFICATION, [ImplicitVRLittleEndian, ExplicitVRBigEndian]),
        (CTImageStorage, [ExplicitVRLittleEndian, JPEG2000Lossless]),
        (CTImageStorage, [ImplicitVRLittleEndian]),
        (MRImageStorage, [ImplicitVRLittleEndian]),
        (SecondaryCaptureImageStorage, [ImplicitVRLittleEndian]),
        (LegacyConvertedEnhancedCTImageStorage, [ImplicitVRLittleEndian]),
    ]
    for uid, syntaxes in proposals:
        ae.add_requested_context(uid, syntaxes)
    items: list[Any] = [
        build_role(uid, scu_role=scu, scp_role=scp) for uid, (scu, scp) in roles.items()
    ]
    assoc = ae.associate("127.0.0.1", server.port, ext_neg=items)
    try:
        assert assoc.is_established
        contexts = [(cx.context_id, cx.result, cx.transfer_syntax[0] if cx.result == 0 else "")
                    for cx in sorted(assoc.accepted_contexts + assoc.rejected_contexts,
                                     key=lambda cx: cx.context_id or 0)]  # fmt: skip
        user_info = assoc.acceptor.primitive.user_information if assoc.acceptor.primitive else []
        replied_roles = sorted((str(i.sop_class_uid), bool(i.scu_role), bool(i.scp_role))
                               for i in user_info
                               if isinstance(i, SCP_SCU_RoleSelectionNegotiation))  # fmt: skip
        extended = sorted((str(i.sop_class_uid), i.service_class_application_information)
                          for i in user_info
                          if isinstance(i, SOPClassExtendedNegotiation))  # fmt: skip
        return contexts, replied_roles, extended
    finally:
        assoc.release()


@pytest.mark.parametrize(
    "roles",
    [
        {},
        {CTImageStorage: (True, False), MRImageStorage: (True, False),
         SecondaryCaptureImageStorage: (True, False)},
        {CTImageStorage: (False, True), MRImageStorage: (False, True),
         SecondaryCaptureImageStorage: (False, True)},
        {CTImageStorage: (True, True), MRImageStorage: (True, True),
         SecondaryCaptureImageStorage: (True, True), VERIFICATION: (True, True)},
    ],
    ids=["no-proposal", "scu", "scp", "both"],
)  # fmt: skip
def test_roles_and_extended_negotiation_as_dcmtk(
    tmp_path: Path, storescpd: StartServer, dcmtk_storescp: StartServer,
    roles: dict[str, tuple[bool, bool]],
) -> None:  # fmt: skip
    cfg = tmp_path / "roles.cfg"
    cfg.write_text(ROLES_CFG)
    args = ["-xf", str(cfg), "roles profile"]
    ours = _negotiate(storescpd(args), roles)
    theirs = _negotiate(dcmtk_storescp(args), roles)
    assert ours == theirs
    contexts, _, extended = ours
    # The profile's order wins: BEE before LEI, J2K lossless before LEE.
    assert contexts[0] == (1, 0, ExplicitVRBigEndian)
    assert contexts[1] == (3, 0, JPEG2000Lossless)
    assert contexts[5][1] == 3  # a class the profile omits
    assert extended  # returned although nobody asked
    if not roles:  # the profile wants the requestor as SCP for MR; unasked, DCMTK refuses (2)
        assert contexts[3][1] == 2


@pytest.mark.parametrize("mode", [["--fork"], ["--workers", "2"]], ids=["fork", "pool"])
def test_profile_in_every_process_mode(
    storescpd: StartServer, system_cfg: str, objects: tuple[Path, Path], mode: list[str]
) -> None:
    """Children and pool workers negotiate with the profile the master read."""
    server = storescpd(["-xf", system_cfg, "Default", *mode])
    assert _send(server, objects[0]) == (0, [])
    _, errors = _send(server, objects[1])
    assert errors
    assert _stored(server) == ["SC"]
