"""Hostile content: what a peer puts in UIDs, names and AE titles never decides a path by itself
and never runs as code (DESIGN §5, SPEC §13.1 and §15: CVE-2022-2119, CVE-2026-5663, the -su
'..' traversal, the AE-title injection into --exec-*).

Each naming and hook option gets a server of its own; the peer sends values crafted for path
traversal or shell injection, overlong values, control and non-ASCII characters. Every store
must either succeed with a file inside -od whose name is made of safe characters, or fail with a
failure status; nothing may appear outside -od, no partial or spool file may stay, no injected
command may run, and a hook gets each value as one literal argument.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest

from tests.battery.conftest import AGAINST_REFERENCE, PATIENCE, BatteryServer, start_battery_server
from tests.battery.rawpeer import RawPeer, associate_rq, explicit_element, uid
from tests.conftest import files_under, poll_until

if AGAINST_REFERENCE:
    pytest.skip("hostile content is storescpd's battery only", allow_module_level=True)

CT = "1.2.840.10008.5.1.4.1.1.2"
ROOT = "1.2.826.0.1.3680043.9.7433.3"
SUCCESS = 0x0000
MARKER = "PWNED"  # what an injected command would create

# Crafted to escape -od or a study folder, to run a shell command, to break a log or a name.
HOSTILE_TEXT = {
    "parent": "../../../../x",
    "dot-dot": "..",
    "absolute": "/etc/passwd",
    "semicolon": f";touch {MARKER};",
    "subshell": f"$(touch {MARKER})",
    "backticks": f"`touch {MARKER}`",
    "quotes": f"';touch {MARKER};'",
    "pipe": f"|touch {MARKER}",
    "newline": f"x\ntouch {MARKER}",
    "control": "a\x00b\x1b[31mc\x7f",
    "non-ascii": "M\xfcller^J\xfcrgen",
    "placeholder": "#f#p#a",
    "overlong": "9" * 10000,
}


@dataclass
class Hostile:
    """One server with naming or hook options, and where its hook writes its arguments."""

    server: BatteryServer
    root: Path
    hook_out: Path

    def hook_calls(self) -> list[list[str]]:
        if not self.hook_out.exists():
            return []
        return [json.loads(line) for line in self.hook_out.read_text().splitlines()]

    def assert_contained(self) -> None:
        """Nothing outside -od and the server's own files; no injected command ran."""
        od = self.server.od
        allowed = (od, self.root / "tmp", self.root / "hook")
        strays = [
            p
            for p in self.root.rglob("*")
            if p.is_file() and not any(p.is_relative_to(a) for a in allowed)
            and not p.name.startswith("server.log")
        ]  # fmt: skip
        assert not strays, f"files outside -od: {strays}"
        for place in (self.root, od, self.root / "hook", Path.cwd()):
            assert not list(place.rglob(MARKER)), f"an injected command ran ({place})"
        poll_until(lambda: not spool(self.root), PATIENCE, "the spool to be swept")

    def stored(self) -> list[Path]:
        od = self.server.od
        return [
            p
            for p in od.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(od).parts)
        ]


def spool(root: Path) -> list[Path]:
    return files_under(root / "tmp")


HOOK = (
    f"{shlex.quote(sys.executable)} -c "
    "'import json, sys; print(json.dumps(sys.argv[1:]))' {placeholders} >> {out}"
)


def start_hostile(
    root: Path, args: list[str], hook_args: tuple[str, ...] = ("-xcr",), placeholders: str = ""
) -> Hostile:
    """A server with ``args``, and a hook that records its arguments given to ``hook_args``
    (by default -xcr with #a #c #f #p)."""
    hook_dir = root / "hook"
    hook_dir.mkdir()
    out = hook_dir / "calls.jsonl"
    # The hook runs in its own directory, so that an injected "touch" would land there.
    hook = f"cd {shlex.quote(str(hook_dir))} && " + HOOK.format(
        placeholders=placeholders or "#a #c #f #p", out=shlex.quote(str(out))
    )
    server = start_battery_server([*args, *hook_args, hook, "-xs"], "single", root)
    return Hostile(BatteryServer(server, "single"), root, out)


CONFIGS = {
    "default-names": [],
    "unique-names": ["+uf"],
    "time-names": ["-tn"],
    "extension": ["-fe", ".dcm"],
    "sort-study-uid": ["-su", "S"],
    "sort-study-uid-no-prefix": ["-su", ""],
    "sort-patient-name": ["-sp"],
    "sort-conc-studies": ["-ss", "C"],
}


def on(*configs: str) -> pytest.MarkDecorator:
    """Run a test against the servers of these CONFIGS (the options that use the value)."""
    return pytest.mark.parametrize("hostile", configs, indirect=True)


@pytest.fixture(scope="module")
def hostile(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Hostile]:
    name = str(request.param)
    root = tmp_path_factory.mktemp(f"hostile-{name}")
    target = start_hostile(root, CONFIGS[name])
    try:
        yield target
    finally:
        status = target.server.server.stop()
    assert status == 0, f"storescpd exited with {status}:\n{target.server.server.log[-3000:]}"


def data_set(instance: str, patient: bytes, study: bytes, charset: bytes = b"") -> bytes:
    return (
        (explicit_element(0x00080005, "CS", charset) if charset else b"")
        + explicit_element(0x00080016, "UI", uid(CT))
        + explicit_element(0x00080018, "UI", instance.encode("latin-1"))
        + explicit_element(0x00080060, "CS", b"CT")
        + explicit_element(0x00100010, "PN", patient)
        + explicit_element(0x00100020, "LO", b"HOSTILE")
        + explicit_element(0x0020000D, "UI", study)
        + explicit_element(0x0020000E, "UI", uid(f"{ROOT}.9"))
    )


def fresh_uid() -> str:
    return f"{ROOT}.{time.monotonic_ns()}"


def safe_name(name: str) -> bool:
    return all(c.isascii() and (c.isalnum() or c in "._-^+=@") for c in name) and name not in (
        ".",
        "..",
    )


def store(target: Hostile, instance: str, patient: bytes, study: bytes) -> int | None:
    with RawPeer(target.server.port, PATIENCE) as peer:
        assert peer.associate().kind.value == "A-ASSOCIATE-AC"
        return peer.store(CT, instance, data_set(instance, patient, study))


def assert_outcome(target: Hostile, status: int | None, before: set[Path]) -> None:
    """Stored inside -od under safe names, or refused with a failure status and no file."""
    assert status is not None, f"no C-STORE response; the server logged:\n{target.server.new_log()}"
    new = set(target.stored()) - before
    if status == SUCCESS:
        assert len(new) == 1, f"stored, but files {new}"
        for part in next(iter(new)).relative_to(target.server.od).parts:
            assert safe_name(part), f"unsafe name {part!r}"
    else:
        assert 0xA700 <= status <= 0xCFFF, f"status 0x{status:04X}"
        assert not new, f"refused with 0x{status:04X} but files {new}"
    target.assert_contained()


@on("default-names", "unique-names", "time-names", "extension", "sort-study-uid")
@pytest.mark.parametrize("text", HOSTILE_TEXT)
def test_hostile_sop_instance_uid(hostile: Hostile, text: str) -> None:
    before = set(hostile.stored())
    status = store(hostile, HOSTILE_TEXT[text], b"Hostile^Uid", uid(fresh_uid()))
    assert_outcome(hostile, status, before)


@on("sort-patient-name", "default-names")
@pytest.mark.parametrize("text", HOSTILE_TEXT)
def test_hostile_patient_name(hostile: Hostile, text: str) -> None:
    before = set(hostile.stored())
    name = HOSTILE_TEXT[text].encode("latin-1")
    status = store(hostile, fresh_uid(), name, uid(fresh_uid()))
    assert_outcome(hostile, status, before)


@on("sort-study-uid", "sort-study-uid-no-prefix", "sort-conc-studies", "default-names")
@pytest.mark.parametrize("text", HOSTILE_TEXT)
def test_hostile_study_uid(hostile: Hostile, text: str) -> None:
    before = set(hostile.stored())
    status = store(hostile, fresh_uid(), b"Hostile^Study", HOSTILE_TEXT[text].encode("latin-1"))
    assert_outcome(hostile, status, before)


AE_TITLES = {
    "semicolon": f";touch {MARKER}",
    "subshell": f"$(touch {MARKER})",
    "backticks": f"`touch {MARKER}`",
    "quotes": f"';touch {MARKER}",
    "double-quotes": f'";touch {MARKER};"',
    "placeholder": "#f #p #c",
    "leading-spaces": "  SPACED",
}


@on("default-names", "sort-patient-name", "unique-names")
@pytest.mark.parametrize("title", AE_TITLES)
def test_hostile_ae_titles_reach_the_hook_as_one_word(hostile: Hostile, title: str) -> None:
    calling = AE_TITLES[title]
    instance = fresh_uid()
    with RawPeer(hostile.server.port, PATIENCE) as peer:
        outcome = peer.associate(associate_rq(calling=calling, called=calling))
        assert outcome.kind.value == "A-ASSOCIATE-AC", outcome
        status = peer.store(CT, instance, data_set(instance, b"Ae^Title", uid(fresh_uid())))
    assert status == SUCCESS

    # Leading and trailing spaces of an AE title are not significant (PS3.5 6.2); anything
    # else changed, or split into several words, and no call matches.
    expected = [calling.strip()] * 2

    def this_store() -> list[list[str]]:
        return [args for args in hostile.hook_calls() if args[:2] == expected]

    try:
        poll_until(lambda: bool(this_store()), PATIENCE, "the hook to run")
    except TimeoutError:
        raise AssertionError(
            f"no hook call with #a #c {expected}: {hostile.hook_calls()[-3:]}"
        ) from None
    hostile.assert_contained()


@on("default-names")
@pytest.mark.parametrize(
    "title", [b"\x00\x01\x02control", b"M\xfcller", b"new\nline", b"\xff" * 16]
)
def test_ae_titles_with_control_or_non_ascii_bytes(hostile: Hostile, title: bytes) -> None:
    """Answered (accepted, rejected or aborted), never a crash; a hook gets a literal word."""
    with RawPeer(hostile.server.port, PATIENCE) as peer:
        outcome = peer.associate(associate_rq(calling=title))
        assert outcome.kind.value in ("A-ASSOCIATE-AC", "A-ASSOCIATE-RJ", "A-ABORT"), outcome
    hostile.server.check()
    hostile.assert_contained()


# --------------------------------------------------------------------------------------------
# End of study: -rns renames, -xcs runs, both with what a hostile peer sent
# --------------------------------------------------------------------------------------------

# The sort options whose folders a study's end renames and hands to -xcs as #p.
EOSTUDY_CONFIGS = {
    "sort-conc-studies": ["-ss", "C"],
    "sort-patient-name": ["-sp"],
}
OBJECTS_PER_STUDY = 2


@pytest.fixture(scope="module")
def eostudy(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Hostile]:
    name = str(request.param)
    root = tmp_path_factory.mktemp(f"eostudy-{name}")
    args = [*EOSTUDY_CONFIGS[name], "-rns", "-tos", "1"]
    target = start_hostile(root, args, ("-xcs",), "#p #a #c #r")
    try:
        yield target
    finally:
        status = target.server.server.stop()
    assert status == 0, f"storescpd exited with {status}:\n{target.server.server.log[-3000:]}"


# Each hostile patient name comes with a hostile AE title, in turn; -ss does not name its
# folders by the patient, so there only the AE titles (with a plain name) are cases.
EOSTUDY_CASES = {
    "sort-patient-name": {
        text: (HOSTILE_TEXT[text], list(AE_TITLES.values())[i % len(AE_TITLES)])
        for i, text in enumerate(HOSTILE_TEXT)
    },
    "sort-conc-studies": {f"ae-{title}": ("Plain^Name", AE_TITLES[title]) for title in AE_TITLES},
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """test_hostile_study_end: each config's server with its own cases."""
    if "eostudy_case" in metafunc.fixturenames:
        cases = [
            (config, name, values)
            for config, named in EOSTUDY_CASES.items()
            for name, values in named.items()
        ]
        metafunc.parametrize(
            ("eostudy", "eostudy_case"),
            [(config, values) for config, _, values in cases],
            indirect=["eostudy"],
            ids=[f"{config}-{name}" for config, name, _ in cases],
            scope="module",
        )


def test_hostile_study_end(eostudy: Hostile, eostudy_case: tuple[str, str]) -> None:
    """Two objects of a study with a hostile patient name from a hostile AE title; after -tos
    the -xcs command gets #p #a #c as one word each, #p is the study's folder inside -od and
    holds both objects, renamed, none lost or overwritten; no injected command ran."""
    patient, calling = eostudy_case
    study = uid(fresh_uid())
    before = set(eostudy.stored())
    calls_before = len(eostudy.hook_calls())
    instances = [fresh_uid() for _ in range(OBJECTS_PER_STUDY)]
    with RawPeer(eostudy.server.port, PATIENCE) as peer:
        outcome = peer.associate(associate_rq(calling=calling, called=calling))
        assert outcome.kind.value == "A-ASSOCIATE-AC", outcome
        statuses = [
            peer.store(CT, i, data_set(i, patient.encode("latin-1"), study)) for i in instances
        ]
    if any(status != SUCCESS for status in statuses):
        # Refused: with a failure status each, and nothing stored.
        for status in statuses:
            assert status is not None and 0xA700 <= status <= 0xCFFF, f"statuses {statuses}"
        assert set(eostudy.stored()) == before
        eostudy.assert_contained()
        return

    expected = [calling.strip()] * 2

    def this_study() -> list[list[str]]:
        return [args for args in eostudy.hook_calls()[calls_before:] if args[1:3] == expected]

    try:
        poll_until(lambda: bool(this_study()), 1 + PATIENCE, "the end of study")
    except TimeoutError:
        raise AssertionError(
            f"no -xcs call with #a #c {expected}: {eostudy.hook_calls()[-3:]}"
        ) from None
    (call,) = this_study()
    assert len(call) == 4, f"#p #a #c #r became {len(call)} words: {call}"
    folder = Path(call[0])
    od = eostudy.server.od
    assert folder.parent == od, f"#p {folder} is not a study folder in -od {od}"
    files = sorted(p for p in folder.iterdir() if p.is_file())
    assert len(files) == OBJECTS_PER_STUDY, f"{folder}: {files}"
    for path in files:
        assert safe_name(path.name) and path.name.startswith("CT"), f"not renamed: {path}"
    sent = sorted(instances)
    got = sorted(str(pydicom.dcmread(path).SOPInstanceUID) for path in files)
    assert got == sent, f"{folder} holds {got}, sent {sent}"
    assert safe_name(folder.name), f"unsafe folder name {folder.name!r}"
    assert set(eostudy.stored()) - before == set(files)
    eostudy.assert_contained()
