"""``storescpd-dcmrecv`` against DCMTK's own ``/usr/bin/dcmrecv`` (SPEC §12).

Both servers get the same options and the same sends (``storescu`` and ``dcmsend``, Nagle off):
the clients must report the same, and the output directories must hold the same file names,
once the parts that are random or the clock's by design are masked (the new UID of ``+fu``, the
16 hex digits of ``+fsu``, the time of ``+fst`` and the day in ``undef/``), with the same
contents as ``dcmdump`` prints them. Association rejects, C-STORE statuses and TLS stores must
agree too, and bad command lines and start-up failures (exit statuses 1, 45, 64, 66, 71) must
end with the same status and the same error line.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from storescpd.recvoptions import DCMRECV
from tests.conftest import Server, dcmtk, pydicom_test_files, run_dcmtk
from tests.integration import test_tls
from tests.integration.test_dcmtk_parity import split_dumps
from tests.integration.test_negotiation import APPLICATION_CONTEXT, associate_rq, exchange, item
from tests.integration.test_safety import associate, ct_data_set, encode_explicit_le
from tests.integration.test_tls import Pki

StartServer = Callable[..., Server]
pki = test_tls.pki  # the test CA, server and client keys of the TLS tests (a fixture)
MODULE = "storescpd.dcmrecv"
# so that python -m finds this checkout's storescpd from any working directory
SOURCE_ENV = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
DEFAULT_CFG = "/etc/dcmtk/storescp.cfg"
UNKNOWN_CLASS = "1.2.3.4.5.6.7"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
VERIFICATION = "1.2.840.10008.1.1"

# A profile that also takes a SOP class without a modality code (UNKNOWN, or XX under +fsu).
TEST_CFG = f"""\
[[TransferSyntaxes]]
[Uncompressed]
TransferSyntax1 = LocalEndianExplicit
TransferSyntax2 = OppositeEndianExplicit
TransferSyntax3 = LittleEndianImplicit

[[PresentationContexts]]
[Contexts]
PresentationContext1 = VerificationSOPClass\\Uncompressed
PresentationContext2 = CTImageStorage\\Uncompressed
PresentationContext3 = MRImageStorage\\Uncompressed
PresentationContext4 = {UNKNOWN_CLASS}\\Uncompressed

[[Profiles]]
[Test]
PresentationContexts = Contexts
"""

OPTION_SETS: dict[str, tuple[str, ...]] = {
    "default": (),
    "+fu": ("+fu",),
    "+fsu": ("+fsu",),
    "+fst": ("+fst",),
    "-fe .dcm": ("-fe", ".dcm"),
    "+ssd": ("+ssd",),
    "+fsu +ssd -fe .x": ("+fsu", "+ssd", "-fe", ".x"),
    "+fst +ssd": ("+fst", "+ssd"),
    "+B": ("+B",),
    "--ignore": ("--ignore",),
    "-aet -uca +fd": ("-aet", "OTHER", "-uca", "+fd"),
    "network options": ("-ta", "5", "-td", "5", "-pdu", "8192", "-dhl", "+v", "-v"),
}

# What differs from run to run by design (SPEC §12.2, §12.3), masked in relative paths.
RANDOM_PARTS = (
    (re.compile(r"\.X\.[0-9]+(\.[0-9]+)*"), ".X.<new uid>"),
    (re.compile(r"(^|/)([A-Za-z0-9]+)_[0-9a-f]{16}(?=\.|$)"), r"\1\2_<16 hex digits>"),
    (re.compile(r"(^|/)[0-9]{14}\.[0-9]{6}\."), r"\1<time>."),
    (re.compile(r"^undef/[0-9]{8}/"), "undef/<today>/"),
)

# Meta header elements naming the writing implementation (and the group length counting them).
IMPLEMENTATION_TAGS = ("(0002,0000)", "(0002,0012)", "(0002,0013)")


def masked(relative: str) -> str:
    for pattern, replacement in RANDOM_PARTS:
        relative = pattern.sub(replacement, relative)
    return relative


def sample_files(folder: Path) -> list[str]:
    """CT with a Series Date, MR without one, a CT with an invalid date, an unknown class."""
    ct = Path(str(get_testdata_file("CT_small.dcm")))
    mr = Path(str(get_testdata_file("MR_small.dcm")))
    bad_date = pydicom.dcmread(ct)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the invalid date it is given
        bad_date.SeriesDate = "19971332"
    bad_date.SOPInstanceUID = bad_date.file_meta.MediaStorageSOPInstanceUID = "1.2.3.1"
    unknown = pydicom.dcmread(ct)
    unknown.SOPClassUID = unknown.file_meta.MediaStorageSOPClassUID = UNKNOWN_CLASS
    unknown.SOPInstanceUID = unknown.file_meta.MediaStorageSOPInstanceUID = "1.2.3.2"
    folder.mkdir(exist_ok=True)
    made = []
    for name, dataset in (("bad_date.dcm", bad_date), ("unknown.dcm", unknown)):
        dataset.save_as(folder / name, enforce_file_format=True)
        made.append(str(folder / name))
    return [str(ct), str(mr), *made]


def output(od: Path) -> dict[str, list[str]]:
    """Masked relative path → the dcmdump texts of the files of that name."""
    paths = sorted(p.relative_to(od).as_posix() for p in od.rglob("*") if p.is_file())
    found: dict[str, list[str]] = defaultdict(list)
    if not paths:
        return found
    result = subprocess.run([dcmtk("dcmdump"), "+F", "+L", *paths], cwd=od,
                            capture_output=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    dumps = split_dumps(result.stdout.decode(errors="backslashreplace"))
    assert sorted(dumps) == paths
    for path, dump in dumps.items():
        lines = [x for x in dump.splitlines() if not x.lstrip().startswith(IMPLEMENTATION_TAGS)]
        found[masked(path)].append("\n".join(lines))
    return {name: sorted(texts) for name, texts in found.items()}


def transcript(result: subprocess.CompletedProcess[str]) -> list[str]:
    """A client's verbose lines about negotiation and statuses (no ports, ids or timings)."""
    keep = ("Association", "Result:", "Reason:", "Status", "status", "Received", "Sending")
    lines = (result.stdout + result.stderr).splitlines()
    return [re.sub(r"MsgID \d+", "MsgID n", x) for x in lines if any(k in x for k in keep)]


@pytest.fixture
def servers(
    storescpd: StartServer, dcmtk_storescp: StartServer, tmp_path: Path
) -> Callable[[Sequence[str]], tuple[Server, Server]]:
    """Start storescpd-dcmrecv and DCMTK dcmrecv with the same options."""

    def start(args: Sequence[str]) -> tuple[Server, Server]:
        count = len(list(tmp_path.glob("pair*")))
        ours = storescpd(args, od=tmp_path / f"pair{count}-ours", module=MODULE)
        theirs = dcmtk_storescp(args, od=tmp_path / f"pair{count}-dcmrecv", tool="dcmrecv")
        return ours, theirs

    return start


@pytest.fixture
def test_cfg(tmp_path: Path) -> str:
    path = tmp_path / "test.cfg"
    path.write_text(TEST_CFG)
    return str(path)


@pytest.mark.parametrize("option_set", OPTION_SETS)
def test_same_names_and_contents_as_dcmrecv(
    option_set: str, servers: Callable[..., tuple[Server, Server]], test_cfg: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    files = sample_files(tmp_path / "input")
    ours, theirs = servers(["-xf", test_cfg, "Test", *OPTION_SETS[option_set]])

    def send(server: Server) -> tuple[int, list[str], int, list[str]]:
        # storescu refuses to send a SOP class it does not know; dcmsend sends it
        stored = run_dcmtk("storescu", "-v", "127.0.0.1", str(server.port), *files[:3])
        sent = run_dcmtk("dcmsend", "-v", "127.0.0.1", str(server.port), *files)
        return stored.returncode, transcript(stored), sent.returncode, transcript(sent)

    outcome = send(ours)
    assert outcome == send(theirs), ours.log
    assert outcome[0] == outcome[2] == 0, ours.log
    mine, reference = output(ours.od), output(theirs.od)
    assert sorted(mine) == sorted(reference)
    assert mine == reference
    if option_set == "--ignore":
        assert not reference
    else:
        assert reference, "nothing stored"


def test_names_as_dcmrecv_gives_them(
    servers: Callable[..., tuple[Server, Server]], test_cfg: str, tmp_path: Path
) -> None:
    """The masked names themselves, so that a change on both sides cannot go unnoticed."""
    files = sample_files(tmp_path / "input")
    ours, theirs = servers(["-xf", test_cfg, "Test", "+fsu", "+ssd"])
    for server in (ours, theirs):
        assert run_dcmtk("dcmsend", "127.0.0.1", str(server.port), *files).returncode == 0
    assert sorted(output(ours.od)) == sorted(output(theirs.od)) == [
        "data/1997/04/30/CT_<16 hex digits>",  # CT_small: Series Date 19970430
        "data/1997/04/30/XX_<16 hex digits>",  # its copy of an unknown class
        "undef/<today>/CT_<16 hex digits>",  # its copy with the date 19971332
        "undef/<today>/MR_<16 hex digits>",  # MR_small: no Series Date
    ]


def test_without_a_profile_only_verification_is_accepted(
    servers: Callable[..., tuple[Server, Server]], ct_small: Path
) -> None:
    ours, theirs = servers([])

    def send(server: Server) -> tuple[int, int, list[str]]:
        echo = run_dcmtk("echoscu", "-v", "127.0.0.1", str(server.port))
        store = run_dcmtk("storescu", "-v", "127.0.0.1", str(server.port), str(ct_small))
        return echo.returncode, store.returncode, transcript(store)

    outcome = send(ours)
    assert outcome == send(theirs)
    echo_status, store_status, lines = outcome
    assert echo_status == 0 and store_status != 0
    assert any("Rejected Permanent, Source: Service User" in x for x in lines), lines
    assert "no configuration file specified, SCP will only support the Verification" in ours.log
    assert not any(ours.od.iterdir())


def test_the_default_profile_of_dcmtk(
    servers: Callable[..., tuple[Server, Server]], ct_small: Path
) -> None:
    ours, theirs = servers(["-xf", DEFAULT_CFG, "Default"])
    mr = str(get_testdata_file("MR_small.dcm"))
    for server in (ours, theirs):
        result = run_dcmtk("storescu", "127.0.0.1", str(server.port), str(ct_small), mr)
        assert result.returncode == 0, result.stderr
    assert output(ours.od) == output(theirs.od)
    assert len(output(ours.od)) == 2


# --- command lines ------------------------------------------------------------------------------


def test_the_same_option_names_as_dcmrecv() -> None:
    """Every option dcmrecv lists, with its short name, and no other."""
    usage = subprocess.run([dcmtk("dcmrecv"), "--help"], capture_output=True, text=True,
                           timeout=30, check=False).stdout  # fmt: skip
    theirs = set()
    for line in usage.splitlines():
        words = line.split()
        names = [w for w in words[:2] if re.fullmatch(r"--[a-z0-9-]+", w)]
        theirs.update(names[:1])
    assert theirs == set(DCMRECV.by_long)
    for line in usage.splitlines():
        words = line.split()
        if len(words) > 1 and words[1].startswith("--") and words[1] in DCMRECV.by_long:
            assert DCMRECV.by_long[words[1]].short == words[0], words[1]


BAD_COMMAND_LINES = [
    ["--fork", "11112"],
    ["-xcr", "x", "11112"],
    ["-aet"],
    ["-xf", "only-one"],
    ["11112", "11113"],
    ["-od", "x"],
    ["0"],
    ["70000"],
    ["abc"],
    ["-pdu", "1", "11112"],
    ["-pdu", "200000", "11112"],
    ["-pdu", "1", "-ta", "0", "11112"],
    ["-td", "0", "11112"],
    ["+B", "+ssd", "11112"],
    ["+ssd", "+B", "11112"],
    ["+ssd", "-s", "+B", "0"],
    ["-q", "0"],
    ["-ll", "loud", "11112"],
    ["-ll", "info", "-v", "11112"],
    ["+v", "11112"],
    ["+pw", "secret", "11112"],
    ["+ws", "11112"],
    ["@missing-command-file"],
]


def error_line(stderr: str) -> str | None:
    lines = [x for x in stderr.splitlines() if x.startswith(("error: ", "F: "))]
    return lines[0] if lines else None


def run_both(argv: Sequence[str], cwd: Path) -> list[tuple[int, str | None]]:
    outcomes = []
    for command in ([dcmtk("dcmrecv")], [sys.executable, "-m", MODULE]):
        result = subprocess.run([*command, *argv], cwd=cwd, env=SOURCE_ENV,
                                stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=30,
                                check=False)  # fmt: skip
        outcomes.append((result.returncode, error_line(result.stderr)))
    return outcomes


@pytest.mark.parametrize("argv", BAD_COMMAND_LINES, ids=" ".join)
def test_bad_command_lines_fail_like_dcmrecv(argv: list[str], tmp_path: Path) -> None:
    theirs, ours = run_both(argv, tmp_path)
    assert ours == theirs
    assert theirs[0] == 1


@pytest.mark.parametrize("argv", [[], ["--help"], ["--version"], ["--help", "0"]], ids=str)
def test_information_exits_with_zero(argv: list[str], tmp_path: Path) -> None:
    theirs, ours = run_both(argv, tmp_path)
    assert ours == theirs == (0, None)


def test_usage_names_the_entry_point_and_its_options(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", MODULE, "--help"], capture_output=True,
                            text=True, timeout=30, check=False)  # fmt: skip
    assert "usage: storescpd-dcmrecv [options] port" in result.stdout
    for name in ("+fsu", "--short-unique-names", "+ssd", "-uca", "+tls", "--ignore"):
        assert re.search(rf"(?<![\w+-]){re.escape(name)}(?![\w-])", result.stdout), name
    assert "--fork" not in result.stdout and "--sort-conc-studies" not in result.stdout


def test_missing_output_directory_exits_45(tmp_path: Path) -> None:
    theirs, ours = run_both(["-od", str(tmp_path / "missing"), "11112"], tmp_path)
    assert ours == theirs == (45, "F: cannot specify output directory: Directory does not exist")


@pytest.mark.parametrize(
    "argv",
    [["-xf", "/nonexistent.cfg", "Default"],
     ["-xf", DEFAULT_CFG, "NoSuchProfile"],
     ["-xf", "/nonexistent.cfg", "Default", "-od", "/nonexistent"]],
    ids=" ".join,
)  # fmt: skip
def test_unusable_association_configuration_exits_66(argv: list[str], tmp_path: Path) -> None:
    theirs, ours = run_both([*argv, "11112"], tmp_path)
    assert ours[0] == theirs[0] == 66
    assert ours[1] is not None and theirs[1] is not None
    assert ours[1].startswith("F: cannot load association configuration: ")
    if "/nonexistent.cfg" in argv:
        assert ours == theirs


def test_port_in_use_exits_64(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        theirs, ours = run_both([port], tmp_path)
    assert ours == theirs
    assert theirs == (64, f"F: cannot start SCP and listen on port {port}: "
                          "TCP Initialization Error: Address already in use")  # fmt: skip


# --- association rejects (SPEC §12.4) -----------------------------------------------------------

BAD_APPLICATION_CONTEXT = item(0x10, b"1.2.840.10008.3.1.1.9")  # as long as the real one


@pytest.mark.parametrize(
    ("profile", "abstract_syntax", "bad_context", "expected"),
    [
        (False, CT_IMAGE_STORAGE, False, (1, 1, 1)),  # no -xf: storage is never acceptable
        (False, VERIFICATION, False, (1, 1, 1)),  # nor Explicit VR: only Implicit VR LE
        (True, UNKNOWN_CLASS + ".9", False, (1, 1, 1)),  # a class the profile lacks
        (True, CT_IMAGE_STORAGE, True, (2, 1, 2)),  # transient, unlike storescp
    ],
    ids=["no-profile-ct", "no-profile-explicit-echo", "class-not-in-profile", "bad-app-context"],
)
def test_rejects_as_dcmrecv(
    servers: Callable[..., tuple[Server, Server]], test_cfg: str, profile: bool,
    abstract_syntax: str, bad_context: bool, expected: tuple[int, int, int],
) -> None:  # fmt: skip
    rq = associate_rq(abstract_syntax=abstract_syntax)
    if bad_context:
        rq = rq.replace(item(0x10, APPLICATION_CONTEXT), BAD_APPLICATION_CONTEXT)
    ours, theirs = servers(["-xf", test_cfg, "Test"] if profile else [])
    assert exchange(ours, rq).reject == exchange(theirs, rq).reject == expected


def test_a_proposal_with_an_acceptable_context_is_accepted(
    servers: Callable[..., tuple[Server, Server]], test_cfg: str
) -> None:
    rq = associate_rq(abstract_syntax=CT_IMAGE_STORAGE)
    ours, theirs = servers(["-xf", test_cfg, "Test"])
    assert exchange(ours, rq).pdu_type == exchange(theirs, rq).pdu_type == 0x02


# --- every bundled file -------------------------------------------------------------------------


@pytest.mark.parametrize("option_set", [(), ("+B",), ("+fsu", "+ssd")], ids=" ".join)
def test_every_bundled_file_as_dcmrecv_stores_it(
    option_set: tuple[str, ...], servers: Callable[..., tuple[Server, Server]]
) -> None:
    """All of pydicom's test files through dcmsend under DCMTK's AllDICOM profile: the same
    per-file outcome, names and contents as dcmrecv (files neither side takes stay out)."""
    files = [str(p) for p in pydicom_test_files()]
    ours, theirs = servers(["-xf", DEFAULT_CFG, "AllDICOM", *option_set])
    sent = [run_dcmtk("dcmsend", "-v", "--no-halt", "127.0.0.1", str(s.port), *files,
                      timeout=300) for s in (ours, theirs)]  # fmt: skip
    assert transcript(sent[0]) == transcript(sent[1]), ours.log
    assert sent[0].returncode == sent[1].returncode
    mine, reference = output(ours.od), output(theirs.od)
    assert sum(len(dumps) for dumps in reference.values()) > 50
    assert sorted(mine) == sorted(reference)
    different = [name for name in reference if mine[name] != reference[name]]
    assert not different, different


# --- C-STORE statuses (SPEC §12.4) --------------------------------------------------------------

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


@pytest.mark.parametrize(
    ("request_class", "request_instance", "data_set_instance"),
    [
        (CT_IMAGE_STORAGE, "1.2.3.40", "1.2.3.40"),  # the usual store
        (CT_IMAGE_STORAGE, "1.2.3.41", "1.2.3.99"),  # instance UIDs differ
        (MR_IMAGE_STORAGE, "1.2.3.42", "1.2.3.42"),  # a CT on the MR context
    ],
    ids=["matching", "instance-differs", "class-differs"],
)
def test_store_statuses_and_files_as_dcmrecv(
    servers: Callable[..., tuple[Server, Server]], test_cfg: str, ct_small: Path,
    request_class: str, request_instance: str, data_set_instance: str,
) -> None:  # fmt: skip
    """dcmrecv makes no UID checks: what it answers, and the file it keeps, for stores whose
    request and data set disagree."""
    data = encode_explicit_le(ct_data_set(ct_small, data_set_instance))
    outcomes = []
    for server in servers(["-xf", test_cfg, "Test"]):
        with associate(server, (CT_IMAGE_STORAGE, MR_IMAGE_STORAGE, VERIFICATION)) as peer:
            status = peer.store(request_class, request_instance, data)
            echo = peer.echo()
        outcomes.append((status, echo, sorted(output(server.od))))
    assert outcomes[0] == outcomes[1]
    status, echo, names = outcomes[1]
    assert (status, echo) == (0x0000, 0x0000)
    prefix = "MR" if request_class == MR_IMAGE_STORAGE else "CT"
    assert names == [f"{prefix}.{request_instance}"]


# --- TLS (SPEC §10, §12.5) ----------------------------------------------------------------------


def test_tls_stores_as_dcmrecv(
    servers: Callable[..., tuple[Server, Server]], pki: Pki, test_cfg: str, tmp_path: Path
) -> None:
    files = sample_files(tmp_path / "input")[:3]
    ours, theirs = servers([*pki.server(), "-xf", test_cfg, "Test", "+fsu"])
    outcomes = []
    for server in (ours, theirs):
        stored = run_dcmtk("storescu", "-v", *pki.client(), "127.0.0.1", str(server.port), *files)
        plain = run_dcmtk("echoscu", "127.0.0.1", str(server.port), timeout=30)
        secure = run_dcmtk("echoscu", *pki.client(), "127.0.0.1", str(server.port), timeout=30)
        outcomes.append((stored.returncode, transcript(stored), plain.returncode != 0,
                         secure.returncode))  # fmt: skip
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == 0 and outcomes[0][2] and outcomes[0][3] == 0, ours.log
    assert output(ours.od) == output(theirs.od)
    assert sorted(output(ours.od)) == ["CT_<16 hex digits>", "MR_<16 hex digits>"]


def test_unusable_tls_key_exits_71(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.key")
    theirs, ours = run_both(["+tls", missing, missing, "11112"], tmp_path)
    assert ours == theirs == (71, f"F: 000b:0004 Unable to load private TLS key from '{missing}'")


def test_output_directory_is_checked_before_the_tls_key(tmp_path: Path) -> None:
    argv = ["-od", str(tmp_path / "missing"), "+tls", "no.key", "no.pem", "11112"]
    theirs, ours = run_both(argv, tmp_path)
    assert ours == theirs
    assert theirs[0] == 45


def test_list_ciphers_exits_with_zero_and_lists_dcmrecvs_suites(tmp_path: Path) -> None:
    listed = []
    for command in ([dcmtk("dcmrecv")], [sys.executable, "-m", MODULE]):
        result = subprocess.run([*command, "+cc"], cwd=tmp_path, env=SOURCE_ENV,
                                capture_output=True, text=True, timeout=30,
                                check=False)  # fmt: skip
        assert result.returncode == 0
        suites = result.stdout.split("Supported TLS ciphersuites are:\n", 1)[1]
        listed.append(sorted(suites.split()))
    assert listed[0] == listed[1]
    assert "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" in listed[0]


# --- the serving loop ---------------------------------------------------------------------------


def test_hup_reads_the_command_line_again_with_dcmrecvs_table(
    storescpd: StartServer, test_cfg: str, tmp_path: Path
) -> None:
    """A HUP parses the @file again as dcmrecv options (+fst there is not storescp's)."""
    command_file = tmp_path / "options"
    command_file.write_text(f"-v -xf {test_cfg} Test +fsu\n")
    server = storescpd([f"@{command_file}"], keep_notify=True, module=MODULE)
    files = sample_files(tmp_path / "input")[:1]
    assert run_dcmtk("dcmsend", "127.0.0.1", str(server.port), *files).returncode == 0
    command_file.write_text(f"-v -xf {test_cfg} Test +fst\n")
    os.kill(server.pid, signal.SIGHUP)
    server.await_notify(b"READY=1")
    assert run_dcmtk("dcmsend", "127.0.0.1", str(server.port), *files).returncode == 0
    assert "HUP: serving new associations" in server.log
    assert sorted(output(server.od)) == ["<time>.CT", "CT_<16 hex digits>"]
    assert server.stop() == 0
