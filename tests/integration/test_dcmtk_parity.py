"""End-to-end parity with DCMTK: the same clients, files and options against storescpd and storescp.

Every DICOM file bundled with pydicom is sent by DCMTK's own clients (``storescu``, ``dcmsend``)
to storescpd and to DCMTK's ``/usr/bin/storescp`` started with the same options; ``echoscu``
checks both too. Files the servers cannot take (compressed transfer syntaxes nobody accepts,
DICOMDIRs, broken files) fail on both sides alike, so they stay in the input. The clients'
verbose transcripts (negotiation, one status per file) and the output directories (file names, and
every data set as ``dcmdump +L`` prints it) must agree.

``PARITY_SUBJECT=dcmtk`` runs the same tests with DCMTK in place of storescpd: they must pass
then too, which shows that the normalisations below hide nothing DCMTK varies from run to run.
"""

from __future__ import annotations

import difflib
import os
import re
import subprocess
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Server, dcmtk, pydicom_test_files, run_dcmtk

# Option sets as a user would type them. ``-fe .dcm`` keeps the default naming scheme.
OPTION_SETS: dict[str, tuple[str, ...]] = {
    "default": (),
    "+B": ("+B",),
    "+te": ("+te",),
    "+ti": ("+ti",),
    "+tb": ("+tb",),
    "+uf": ("+uf",),
    "-tn": ("-tn",),
    "-fe .dcm": ("-fe", ".dcm"),
}

# Schemes whose names carry a fresh UID or the clock (SPEC §6.1), so no two servers agree on them.
NAMES_DIFFER_BY_DESIGN = {"+uf", "-tn"}

# Meta header elements that name the writing implementation and so legitimately differ:
# (0002,0012) Implementation Class UID and (0002,0013) Implementation Version Name are OFFIS's own
# (SPEC §6.2; OFFIS_DCMBP_367 under +B, §6.5) and storescpd must not claim to be DCMTK;
# (0002,0000) File Meta Information Group Length counts the bytes of those two values.
IMPLEMENTATION_TAGS = ("(0002,0000)", "(0002,0012)", "(0002,0013)")

# Bundled files that show a genuine, explained difference, as {option set: {file name: why}}.
# Empty: every file is compared. An entry here is a decision to report, not a way to go green.
KNOWN_DIFFERENCES: dict[str, dict[str, str]] = {}

StartServer = Callable[..., Server]


@dataclass(frozen=True)
class ClientRun:
    """What a DCMTK client reported: its exit status and its verbose transcript."""

    returncode: int
    transcript: str


@dataclass(frozen=True)
class DirectoryDump:
    """An output directory as dcmdump sees it: one normalised dump per file name."""

    dumps: dict[str, str]
    returncode: int
    errors: list[str]


@pytest.fixture
def subject(storescpd: StartServer, dcmtk_storescp: StartServer) -> StartServer:
    """The server under test: storescpd, or DCMTK itself for the harness self-check."""
    return dcmtk_storescp if os.environ.get("PARITY_SUBJECT") == "dcmtk" else storescpd


@pytest.fixture(scope="module")
def input_files() -> list[str]:
    files = [str(p) for p in pydicom_test_files()]
    assert len(files) > 50, "pydicom's bundled test files are missing"
    return files


def start_pair(
    subject: StartServer, dcmtk_storescp: StartServer, options: Sequence[str], tmp_path: Path
) -> tuple[Server, Server]:
    ours = subject(list(options), od=tmp_path / "subject")
    reference = dcmtk_storescp(list(options), od=tmp_path / "reference")
    return ours, reference


def run_client(
    tool: str, server: Server, options: Sequence[str], files: Sequence[str]
) -> ClientRun:
    result = run_dcmtk(tool, *options, "127.0.0.1", str(server.port), *files, timeout=90)
    return ClientRun(result.returncode, result.stdout + result.stderr)


def run_on_both(
    tool: str,
    servers: tuple[Server, Server],
    options: Sequence[str],
    files: Sequence[str] = (),
) -> tuple[ClientRun, ClientRun]:
    """Run the same client against both servers at once (two cores, two independent peers)."""
    with ThreadPoolExecutor(2) as pool:
        ours, reference = pool.map(lambda s: run_client(tool, s, options, files), servers)
    return ours, reference


def dump_directory(od: Path) -> DirectoryDump:
    """``dcmdump +L`` of every file in ``od`` in one run, split per file and normalised."""
    names = sorted(os.listdir(od))
    if not names:
        return DirectoryDump({}, 0, [])
    # Relative names keep the output directory's own path out of the dumps and messages.
    result = subprocess.run(
        [dcmtk("dcmdump"), "+F", "+L", *names],
        cwd=od,
        capture_output=True,
        timeout=60,
        check=False,
    )
    # Values in foreign character sets are bytes, not UTF-8; keep every byte distinguishable.
    stdout = result.stdout.decode(errors="backslashreplace")
    stderr = result.stderr.decode(errors="backslashreplace")
    return DirectoryDump(split_dumps(stdout), result.returncode, stderr.splitlines())


def split_dumps(text: str) -> dict[str, str]:
    """Cut ``dcmdump +F`` output at its ``# dcmdump (i/n): name`` headers."""
    dumps: dict[str, str] = {}
    parts = re.split(r"^# dcmdump \(\d+/\d+\): (.*)$", text, flags=re.MULTILINE)
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        dumps[name] = normalise_dump(body)
    return dumps


def normalise_dump(body: str) -> str:
    lines = [
        line
        for line in body.strip("\n").splitlines()
        if not line.lstrip().startswith(IMPLEMENTATION_TAGS)
    ]
    return "\n".join(mark_invented_instance_uid(lines))


def mark_invented_instance_uid(lines: list[str]) -> list[str]:
    """Blank (0002,0003) when it was not copied from the data set's (0008,0018).

    With no SOP Instance UID the writer can read as UI (absent, or received as UN), it invents a
    fresh UID for the meta header: no two runs, even of DCMTK, agree on it or on its length.
    """
    meta = next((x for x in lines if x.startswith("(0002,0003) UI [")), None)
    if meta is None:
        return lines
    uid = meta[len("(0002,0003) UI [") :].split("]", 1)[0]
    if f"(0008,0018) UI [{uid}]" in (x[: len(uid) + 17] for x in lines):
        return lines
    return ["(0002,0003) UI [invented]" if x is meta else x for x in lines]


def without_known_differences(dumps: dict[str, str], option_set: str) -> dict[str, str]:
    skipped = KNOWN_DIFFERENCES.get(option_set, {})
    return {name: dump for name, dump in dumps.items() if name not in skipped}


def anonymised_errors(directory: DirectoryDump) -> Counter[str]:
    """dcmdump's messages with file names taken out, for schemes whose names differ."""
    errors = Counter[str]()
    for line in directory.errors:
        for name in directory.dumps:
            line = line.replace(name, "<file>")
        errors[line] += 1
    return errors


def assert_same_transcripts(runs: tuple[ClientRun, ...], tool: str) -> None:
    ours, reference = runs
    assert reference.returncode == 0, f"{tool} failed against DCMTK:\n{reference.transcript}"
    assert ours.returncode == reference.returncode, f"{tool} exit status:\n{ours.transcript}"
    # Line by line so that pytest's diff points at the first file whose status differs.
    assert ours.transcript.splitlines() == reference.transcript.splitlines()


def failed_stores(transcript: str) -> int:
    """How many C-STORE requests got a failure status, as a DCMTK client reported them."""
    return sum("Received C-STORE Response (Error" in line for line in transcript.splitlines())


def assert_same_output(ours: Path, reference: Path, option_set: str, failures: int = 0) -> None:
    """Every file storescpd wrote is DCMTK's file; DCMTK may have more only for failed stores.

    DCMTK keeps the file of a store it answers with 0xA900/0xC000; storescpd deliberately leaves
    nothing behind a failure status (DESIGN §4), so such files exist on DCMTK's side only.
    """
    mine, theirs = dump_directory(ours), dump_directory(reference)
    assert theirs.dumps, "DCMTK stored nothing: the comparison would prove nothing"
    assert mine.returncode == theirs.returncode or failures
    if option_set in NAMES_DIFFER_BY_DESIGN:
        extra = Counter(theirs.dumps.values()) - Counter(mine.dumps.values())
        assert not Counter(mine.dumps.values()) - Counter(theirs.dumps.values())
        assert sum(extra.values()) <= failures
        if not failures:
            assert anonymised_errors(mine) == anonymised_errors(theirs)
        return
    only_theirs = sorted(set(theirs.dumps) - set(mine.dumps))
    assert sorted(set(mine.dumps) - set(theirs.dumps)) == []
    assert len(only_theirs) <= failures, f"DCMTK has more files: {only_theirs}"
    mine_kept = without_known_differences(mine.dumps, option_set)
    theirs_kept = without_known_differences(theirs.dumps, option_set)
    different = [name for name in mine_kept if mine_kept[name] != theirs_kept[name]]
    assert different == [], first_difference(different, mine_kept, theirs_kept)
    assert mine.errors == [e for e in theirs.errors if not any(n in e for n in only_theirs)]


def first_difference(names: list[str], mine: dict[str, str], theirs: dict[str, str]) -> str:
    """The names of all differing files and a unified diff of the first one."""
    if not names:
        return ""
    diff = difflib.unified_diff(
        theirs[names[0]].splitlines(),
        mine[names[0]].splitlines(),
        "storescp",
        "storescpd",
        lineterm="",
        n=1,
    )
    return f"data sets differ in {names}; first one:\n" + "\n".join(list(diff)[:60])


def assert_echo_parity(servers: tuple[Server, Server]) -> None:
    assert_same_transcripts(run_on_both("echoscu", servers, ["-v"]), "echoscu")


@pytest.mark.parametrize("option_set", OPTION_SETS)
def test_storescu_and_echoscu_parity(
    option_set: str,
    subject: StartServer,
    dcmtk_storescp: StartServer,
    input_files: list[str],
    tmp_path: Path,
) -> None:
    servers = start_pair(subject, dcmtk_storescp, OPTION_SETS[option_set], tmp_path)
    assert_echo_parity(servers)
    # -R proposes only the classes the files need, so one association carries everything;
    # -nh goes on after a file the server cannot take (e.g. a compressed transfer syntax).
    runs = run_on_both("storescu", servers, ["-R", "-nh", "-v"], input_files)
    assert_same_transcripts(runs, "storescu")
    assert_same_output(servers[0].od, servers[1].od, option_set, failed_stores(runs[1].transcript))


@pytest.mark.parametrize("option_set", OPTION_SETS)
def test_dcmsend_parity(
    option_set: str,
    subject: StartServer,
    dcmtk_storescp: StartServer,
    input_files: list[str],
    tmp_path: Path,
) -> None:
    servers = start_pair(subject, dcmtk_storescp, OPTION_SETS[option_set], tmp_path)
    runs = run_on_both("dcmsend", servers, ["-nh", "-v"], input_files)
    assert_same_transcripts(runs, "dcmsend")
    assert "Number of associations   : 1" in runs[1].transcript
    assert_same_output(servers[0].od, servers[1].od, option_set, failed_stores(runs[1].transcript))
