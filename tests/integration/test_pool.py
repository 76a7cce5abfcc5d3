"""The pre-fork pool under real DCMTK senders: concurrency, a killed worker, the limit, stopping."""

from __future__ import annotations

import os
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
from pydicom import dcmread

from tests.conftest import dcmtk, poll_until, run_dcmtk
from tests.integration.test_modes import make_instances, stored


def workers_of(pid: int) -> list[psutil.Process]:
    return [p for p in psutil.Process(pid).children() if "worker" in " ".join(p.cmdline())]


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
