"""Crash faults under load: SIGKILL of a pool worker or of the coordinator at random moments
while several senders store studies that end (``-ss -rns -xcs -tos``).

After the supervisor has replaced the killed process, and after a restart of the whole server
on the same output directory, every acknowledged object is present exactly once and complete,
and no visible file is a partial one. (SIGKILL of the master: tests/integration/
test_supervision.py.) Rounds are randomized from a fixed seed, printed when a round fails.
"""

from __future__ import annotations

import os
import random
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from storescpd.coordinator import JOURNAL
from storescpd.fsio import TEMP_PREFIX, TEMP_SUFFIX
from storescpd.studyruns import REGISTRY
from tests.conftest import Server, children_titled, poll_until
from tests.integration.test_safety import visible_files

SEED = int(os.environ.get("STORESCPD_CRASH_SEED", "20261202"))
ROUNDS = int(os.environ.get("STORESCPD_CRASH_ROUNDS", "2"))
SENDERS = 2
PER_SENDER = 120
PER_ASSOCIATION = 25
PER_STUDY = 30


class Load:
    """Senders storing CT images, each remembering what the server acknowledged."""

    def __init__(self, port: int, ct_small: Path) -> None:
        self.port = port
        self.source = ct_small
        self.acknowledged: set[str] = set()
        self.sent: set[str] = set()
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._send, args=(k,), daemon=True) for k in range(SENDERS)
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self, timeout: float) -> None:
        for thread in self.threads:
            thread.join(timeout)
        assert not any(t.is_alive() for t in self.threads), "a sender hangs"

    def count(self) -> int:
        with self.lock:
            return len(self.acknowledged)

    def _send(self, k: int) -> None:
        ae = AE(ae_title=f"CRASH{k}")
        ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
        template = dcmread(self.source)  # each sender its own: Dataset.copy() shares elements
        done = 0
        study = str(generate_uid())
        attempts = 0
        while done < PER_SENDER and attempts < 200:
            attempts += 1
            assoc = ae.associate("127.0.0.1", self.port)
            if not assoc.is_established:
                threading.Event().wait(0.05)  # a transient RJ while the pool refills
                continue
            for _ in range(PER_ASSOCIATION):
                if done % PER_STUDY == 0:
                    study = str(generate_uid())
                uid = str(generate_uid())
                template.SOPInstanceUID = uid
                template.StudyInstanceUID = study
                with self.lock:
                    self.sent.add(uid)
                status = assoc.send_c_store(template) if assoc.is_established else None
                if not status or "Status" not in status:
                    break  # aborted: the killed worker's association
                done += 1
                if status.Status == 0:
                    with self.lock:
                        self.acknowledged.add(uid)
            if assoc.is_established:
                assoc.release()


def worker_pids(server: Server) -> list[int]:
    return [p.pid for p in children_titled(server.pid, "worker")]


def busy_worker_pids(server: Server) -> list[int]:
    idle = {p.pid for p in children_titled(server.pid, "[idle]")}
    return [pid for pid in worker_pids(server) if pid not in idle]


def open_studies(od: Path) -> list[str]:
    """The registry's entries for study runs not yet ended (the journal is not one)."""
    registry = od / REGISTRY
    return [p.name for p in registry.iterdir() if p.name != JOURNAL] if registry.exists() else []


def coordinator_pids(server: Server) -> list[int]:
    return [p.pid for p in psutil.Process(server.pid).children()
            if "coordinator" in " ".join(p.cmdline())]  # fmt: skip


def kill_a_busy_worker(server: Server, rng: random.Random) -> int:
    poll_until(lambda: bool(busy_worker_pids(server)), 20, "a busy worker")
    victim = rng.choice(sorted(busy_worker_pids(server)) or worker_pids(server))
    os.kill(victim, signal.SIGKILL)
    return victim


def kill_the_coordinator(server: Server, rng: random.Random) -> int:
    (victim,) = coordinator_pids(server)
    os.kill(victim, signal.SIGKILL)
    return victim


TARGETS: dict[str, Callable[[Server, random.Random], int]] = {
    "worker": kill_a_busy_worker,
    "coordinator": kill_the_coordinator,
}


def check_output(od: Path, load: Load, pixels: bytes) -> None:
    """Every acknowledged object once and complete; nothing visible that is partial."""
    seen: dict[str, Path] = {}
    for path in visible_files(od):
        ds = dcmread(path)
        uid = str(ds.SOPInstanceUID)
        assert uid not in seen, f"{uid} stored twice: {seen[uid]} and {path}"
        assert uid in load.sent, f"{path} holds an object nobody sent"
        assert ds.PixelData == pixels, f"{path} is not complete"
        seen[uid] = path
    missing = load.acknowledged - set(seen)
    assert not missing, f"{len(missing)} acknowledged objects are missing, e.g. {min(missing)}"


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("round_no", range(ROUNDS))
def test_sigkill_under_load_loses_and_duplicates_nothing(
    storescpd, tmp_path: Path, ct_small: Path, target: str, round_no: int
) -> None:
    seed = SEED + round_no * 7919 + (0 if target == "worker" else 1)
    rng = random.Random(seed)
    od = tmp_path / "od"
    od.mkdir()
    ends = tmp_path / "ends.txt"
    args = ["--workers", "2", "--max-workers", "4", "-ss", "ST", "-rns", "-tos", "1",
            "-xcs", f"echo #p >> {ends}"]  # fmt: skip
    pixels = dcmread(ct_small).PixelData
    spool = tmp_path / "tmp"  # TMPDIR: where pynetdicom spools what it receives
    spool.mkdir()
    env = {"TMPDIR": str(spool)}
    try:
        server = storescpd(args, od=od, extra_env=env)
        load = Load(server.port, ct_small)
        kill_at = rng.randrange(20, SENDERS * PER_SENDER // 2)
        load.start()
        poll_until(lambda: load.count() >= kill_at, 60, f"{kill_at} acknowledged stores")
        victim = TARGETS[target](server, rng)
        load.join(120)
        poll_until(lambda: not psutil.pid_exists(victim) or psutil.Process(victim).status()
                   == psutil.STATUS_ZOMBIE, 10, "the victim to go")  # fmt: skip
        if target == "coordinator":
            poll_until(lambda: len(coordinator_pids(server)) == 1, 20, "a new coordinator")
        else:
            poll_until(lambda: len(worker_pids(server)) >= 2, 20, "a replacement worker")
        assert load.count() > kill_at, "the load did not go on after the kill"
        assert server.stop() == 0  # then nothing renames files while they are checked
        check_output(od, load, pixels)
        assert not list(spool.iterdir()), "a killed process's spool directory was left"
        hidden = [p.name for p in od.glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}")]
        assert not hidden, f"a killed process's temporary files were left: {hidden}"
        # A restart on the same directory finishes the studies left open, and still every
        # acknowledged object is there once.
        again = storescpd(args, od=od, extra_env=env)
        poll_until(lambda: not open_studies(od), 30, "the open studies to end")
        check_output(od, load, pixels)
        assert again.stop() == 0
        # An end-of-study command runs at most once per study (the coordinator's promise).
        ended = ends.read_text().split()
        assert len(ended) == len(set(ended)), "an end-of-study command ran twice"
        assert set(ended) <= {str(p) for p in od.iterdir() if p.is_dir() and p.name != REGISTRY}
    except BaseException:
        print(f"crash-fault round failed: target={target} seed={seed}")
        raise
