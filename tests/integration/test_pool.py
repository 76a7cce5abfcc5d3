"""The pre-fork pool under real DCMTK senders: concurrency, a killed worker, the limit, stopping."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
from pydicom import dcmread

from tests.conftest import children_titled, dcmtk, poll_until, run_dcmtk
from tests.integration.test_modes import make_instances, stored


def workers_of(pid: int) -> list[psutil.Process]:
    return children_titled(pid, "worker")


def test_pool_serves_16_concurrent_senders(storescpd, ct_small: Path, tmp_path: Path) -> None:
    server = storescpd(["--workers", "4", "--max-workers", "16"])
    titles = [" ".join(p.cmdline()) for p in workers_of(server.pid)]
    assert len(titles) == 4 and all(t.startswith("storescpd: worker") for t in titles), titles
    assert " ".join(psutil.Process(server.pid).cmdline()).startswith("storescpd: master")
    batches = [make_instances(ct_small, tmp_path / f"in{k}", 50) for k in range(16)]

    def send(files: list[Path]) -> subprocess.CompletedProcess[str]:
        return run_dcmtk("storescu", "127.0.0.1", str(server.port), *map(str, files))

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(send, batches))
    assert [r.returncode for r in results] == [0] * 16, [r.stderr for r in results if r.returncode]
    assert len(stored(server.od)) == 800
    children = workers_of(server.pid)
    assert len(children) >= 4
    # The work was spread over processes, so more than one core could take part.
    busy = [p for p in children if sum(p.cpu_times()[:2]) > 0.05]
    assert len(busy) >= 2, [p.cpu_times() for p in children]
    assert server.stop() == 0
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in children)


def test_pool_with_sleep_holds_worker_and_limit(storescpd, ct_small: Path) -> None:
    """--sleep-after keeps the only worker busy: a concurrent echo is rejected transiently."""
    server = storescpd(["--workers", "1", "--max-workers", "1", "--sleep-after", "2"])
    holder = subprocess.Popen(
        [dcmtk("storescu"), "127.0.0.1", str(server.port), str(ct_small)],
        env=dict(os.environ, TCP_NODELAY="1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Wait (by polling the file system the server writes) until the store happened.
        poll_until(lambda: bool(stored(server.od)), 20, "the first store")
        second = run_dcmtk("echoscu", "-v", "127.0.0.1", str(server.port), timeout=10)
        assert second.returncode != 0
        assert "Local Limit Exceeded" in second.stderr + second.stdout
    finally:
        assert holder.wait(30) == 0


def test_killed_worker_is_replaced_and_others_finish(
    storescpd, ct_small: Path, tmp_path: Path
) -> None:
    server = storescpd(["--workers", "2", "--max-workers", "2", "--sleep-after", "1"])
    files = make_instances(ct_small, tmp_path / "in", 3)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(run_dcmtk, "storescu", "127.0.0.1", str(server.port), *map(str, files))
        second = pool.submit(run_dcmtk, "storescu", "127.0.0.1", str(server.port), *map(str, files))
        poll_until(lambda: len(stored(server.od)) >= 1, 20, "a store")
        busy = [p for p in workers_of(server.pid) if "[idle]" not in " ".join(p.cmdline())]
        assert busy, "no busy worker to kill"
        victim = busy[0]
        victim.send_signal(signal.SIGKILL)
        results = [first.result(), second.result()]
    assert sorted(r.returncode for r in results)[0] == 0, "the other association must finish"
    # Every acknowledged file is complete.
    for name in stored(server.od):
        dcmread(server.od / name)
    poll_until(lambda: len(workers_of(server.pid)) == 2, 10, "a replacement worker")
    assert victim.pid not in {p.pid for p in workers_of(server.pid)}
    assert "was killed by signal 9" in server.log
    assert server.stop() == 0


def _closed_by_server(conn: socket.socket, within: float) -> bool:
    """Read (and discard, e.g. an A-ABORT) until the server closes, or ``within`` passes."""
    deadline = time.monotonic() + within
    while (remaining := deadline - time.monotonic()) > 0:
        conn.settimeout(remaining)
        try:
            if not conn.recv(4096):
                return True
        except TimeoutError:
            return False
        except OSError:
            return True
    return False


def test_silent_and_half_pdu_peers_hold_a_worker_only_until_their_timeout(
    storescpd, ct_small: Path
) -> None:
    server = storescpd(["--workers", "2", "--max-workers", "3", "-ta", "2", "-ts", "2", "-v"])
    silent = socket.create_connection(("127.0.0.1", server.port))
    half = socket.create_connection(("127.0.0.1", server.port))
    # The first 10 bytes of an A-ASSOCIATE-RQ announcing 1000 bytes that never come.
    half.sendall(bytes([0x01, 0x00, 0, 0, 0x03, 0xE8, 0x00, 0x01, 0x00, 0x00]))
    try:
        poll_until(lambda: "[idle]" not in _titles(server.pid), 10, "both workers to be taken")
        store = run_dcmtk("storescu", "127.0.0.1", str(server.port), str(ct_small), timeout=60)
        assert store.returncode == 0, store.stderr
        assert len(stored(server.od)) == 1
        assert _closed_by_server(silent, 30) and _closed_by_server(half, 30)
    finally:
        silent.close()
        half.close()
    assert "silent for 2 s (ACSE timeout)" in server.log
    poll_until(lambda: _titles(server.pid).count("[idle]") == 3, 10, "all workers idle again")


def _titles(pid: int) -> str:
    return " ".join(" ".join(p.cmdline()) for p in workers_of(pid))


def test_worker_title_names_the_sender_and_sop_class(storescpd, ct_small: Path) -> None:
    server = storescpd(["--workers", "1", "--sleep-after", "3"])
    holder = subprocess.Popen(
        [dcmtk("storescu"), "-aet", "MODALITY1", "127.0.0.1", str(server.port), str(ct_small)],
        env=dict(os.environ, TCP_NODELAY="1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        poll_until(lambda: bool(stored(server.od)), 20, "the store")
        assert "storescpd: worker 1 [MODALITY1@127.0.0.1 CT Image Storage]" in _titles(server.pid)
    finally:
        assert holder.wait(30) == 0
    poll_until(lambda: "worker 1 [idle]" in _titles(server.pid), 10, "the worker to be idle")
