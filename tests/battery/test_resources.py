"""Resource bounds: per-host limits, idle floods, slow peers, descriptors, a bounded soak.

Hostile peers connect from other loopback addresses (127.0.0.2, 127.0.0.3) so that the
real sender, DCMTK's storescu on 127.0.0.1, is "another host" for ``--max-associations-per-host``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from pydicom import dcmread

from tests.conftest import poll_until, run_dcmtk
from tests.integration.test_access import echo_to
from tests.integration.test_modes import make_instances, stored

REJECT_LIMIT_EXCEEDED = bytes([0x03, 0x00, 0, 0, 0, 4, 0x00, 2, 3, 2])
HOSTILE = "127.0.0.2"
SLOW = "127.0.0.3"

MODES = {"fork": ["--fork"], "pool": ["--workers", "2", "--max-workers", "6"]}


def connect_from(source: str, port: int, *, blocking: bool = True) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    if blocking:
        sock.connect(("127.0.0.1", port))
    else:
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
    return sock


@contextmanager
def idle_connections(source: str, port: int, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections from ``source`` that never send a byte."""
    conns: list[socket.socket] = []
    try:
        for _ in range(count):
            conns.append(connect_from(source, port, blocking=count <= 10))
        yield conns
    finally:
        for conn in conns:
            conn.close()


def first_bytes(conn: socket.socket, count: int, within: float) -> bytes:
    conn.setblocking(True)
    conn.settimeout(within)
    data = b""
    while len(data) < count:
        chunk = conn.recv(count - len(data))
        if not chunk:
            break
        data += chunk
    return data


def send(port: int, files: list[Path]) -> subprocess.CompletedProcess[str]:
    return run_dcmtk("storescu", "127.0.0.1", str(port), *map(str, files), timeout=120)


@pytest.mark.parametrize("mode", MODES.values(), ids=MODES.keys())
def test_per_host_limit_rejects_that_host_only(
    storescpd, ct_small: Path, tmp_path: Path, mode: list[str]
) -> None:
    server = storescpd([*mode, "--max-associations-per-host", "2", "-ta", "30"])
    with idle_connections(HOSTILE, server.port, 2), connect_from(HOSTILE, server.port) as third:
        assert first_bytes(third, 10, 10) == REJECT_LIMIT_EXCEEDED
        sent = send(server.port, make_instances(ct_small, tmp_path / "in", 3))
        assert sent.returncode == 0, sent.stderr
        assert len(stored(server.od)) == 3
    assert (
        "2 associations from 127.0.0.2 running (--max-associations-per-host), "
        "rejecting association from 127.0.0.2" in server.log
    )
    # Once the idle ones are gone, that host is served again.
    poll_until(lambda: echo_to(server.port, HOSTILE), 20, "127.0.0.2 to be served again")


def test_per_host_limit_never_refuses_in_single_process_mode(
    storescpd, ct_small: Path, tmp_path: Path
) -> None:
    server = storescpd(["--max-associations-per-host", "1"])
    for k in range(3):
        sent = send(server.port, make_instances(ct_small, tmp_path / f"in{k}", 1))
        assert sent.returncode == 0, sent.stderr
    assert len(stored(server.od)) == 3
    assert "--max-associations-per-host" not in server.log


class Slowloris(threading.Thread):
    """Sends an A-ASSOCIATE-RQ header announcing 1000 bytes, then one byte a second; records
    when the server closed the connection."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.sock = connect_from(SLOW, port)
        self.started = time.monotonic()
        self.closed_after: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        payload = bytes([0x01, 0x00, 0, 0, 0x03, 0xE8, 0x00, 0x01, 0x00, 0x00]) + b"A" * 990
        for byte in payload:
            try:
                self.sock.send(bytes([byte]))
            except OSError:
                break
            self.sock.settimeout(1.0)
            try:
                if not self.sock.recv(4096):
                    break
            except TimeoutError:
                pass
            except OSError:
                break
            if self.stop.is_set():
                return
        self.closed_after = time.monotonic() - self.started

    def close(self) -> None:
        self.stop.set()
        self.join(5)
        self.sock.close()


def test_idle_flood_and_slowloris_do_not_stop_a_real_sender(
    storescpd, ct_small: Path, tmp_path: Path
) -> None:
    limits = ["--max-associations-per-host", "2", "-ta", "4", "-ts", "10"]
    server = storescpd(["--workers", "2", "--max-workers", "6", *limits])
    files = make_instances(ct_small, tmp_path / "in", 20)
    slow = Slowloris(server.port)
    slow.start()
    try:
        with idle_connections(HOSTILE, server.port, 300):
            sent = send(server.port, files)
            assert sent.returncode == 0, sent.stderr
            assert len(stored(server.od)) == 20
            slow.join(20)
            # The slow request is cut at the ACSE timeout, although the peer never paused
            # for as long as the socket timeout.
            assert slow.closed_after is not None, "the slowloris still holds its worker"
            assert slow.closed_after < 4 + 3, slow.closed_after
            assert server.alive()
            # Rejected connections are drained a few seconds at most, and only so many.
            assert psutil.Process(server.pid).num_fds() < 100
    finally:
        slow.close()
    assert "association request from 127.0.0.3 not complete within 4 s" in server.log


def test_waves_of_connect_and_close_leave_the_master_as_it_was(storescpd) -> None:
    """A port scanner's connect-and-close, 5 waves of 200: the master's descriptors return
    to where they were and its memory does not grow with the waves (cf. CVE-2026-50254)."""
    server = storescpd(["--workers", "2", "--max-workers", "4", "--max-associations-per-host",
                        "2"])  # fmt: skip
    master = psutil.Process(server.pid)
    baseline_fds = master.num_fds()
    rss = []
    for _wave in range(5):
        with idle_connections(HOSTILE, server.port, 200):
            pass
        poll_until(lambda: master.num_fds() <= baseline_fds, 20, "the master to let go")
        rss.append(master.memory_info().rss)
    assert rss[-1] - rss[0] < 1 << 20, rss
    assert "(--max-associations-per-host)" in server.log, "the waves never reached the master"
    # A flood of connections must not become a flood of log lines.
    assert server.log.count("rejecting association from 127.0.0.2") < 20, server.log[-2000:]
    assert echo_to(server.port, "127.0.0.1"), server.log[-6000:]


def test_a_master_short_of_descriptors_neither_spins_nor_dies(
    storescpd, ct_small: Path, tmp_path: Path
) -> None:
    """300 connections against a master allowed 64 descriptors: a real sender is served."""
    server = storescpd(["--workers", "2", "--max-workers", "6", "--max-associations-per-host",
                        "2", "-ta", "20"])  # fmt: skip
    subprocess.run(["prlimit", "--pid", str(server.pid), "--nofile=64:64"], check=True)
    master = psutil.Process(server.pid)
    files = make_instances(ct_small, tmp_path / "in", 5)
    with idle_connections(HOSTILE, server.port, 300):
        cpu_before = sum(master.cpu_times()[:2])
        started = time.monotonic()
        sent = send(server.port, files)
        assert sent.returncode == 0, sent.stderr
        assert len(stored(server.od)) == 5
        poll_until(lambda: time.monotonic() - started > 2, 5, "two seconds of flood")
        # A master spinning on a listener it cannot accept from burns a whole core.
        cpu = sum(master.cpu_times()[:2]) - cpu_before
        assert cpu < 0.5 * (time.monotonic() - started), cpu
        assert server.alive() and master.num_fds() <= 64
    assert server.log.count("cannot accept a connection") < 10


SOAK_STORES = int(os.environ.get("STORESCPD_SOAK_STORES", "3000"))
"""Objects the soak sends (e.g. 20 000 in a long run), 50 per association; the first quarter
warms up (a worker's first associations load what it serves with)."""
PER_ASSOCIATION = 50


def footprint(pid: int) -> dict[str, tuple[int, int]]:
    """Open descriptors and memory of the master and each worker, by title: the workers'
    unique memory (USS), the master's resident size (its USS grows whenever a worker writes
    to a page they shared, which is the worker's cost, not the master's)."""
    master = psutil.Process(pid)
    found = {"master": (master.num_fds(), master.memory_info().rss)}
    for proc in master.children():
        title = " ".join(proc.cmdline()).split(" [")[0]
        found[title] = (proc.num_fds(), proc.memory_full_info().uss)
    return found


@pytest.mark.timeout(60 + SOAK_STORES // 40)
def test_bounded_soak_keeps_descriptors_and_memory_flat(
    storescpd, ct_small: Path, tmp_path: Path
) -> None:
    server = storescpd(["--workers", "2", "--max-workers", "2", "--no-sync"])
    files = make_instances(ct_small, tmp_path / "in", SOAK_STORES)
    batches = [files[k : k + PER_ASSOCIATION] for k in range(0, len(files), PER_ASSOCIATION)]
    quarter = max(6, len(batches) // 4)
    warm_up, rest = batches[:quarter], batches[quarter:]

    def run(part: list[list[Path]]) -> None:
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda batch: send(server.port, batch), part))
        failed = [r.stderr for r in results if r.returncode != 0]
        assert not failed, (failed[:2], server.log[-4000:])

    run(warm_up)
    before = footprint(server.pid)
    run(rest)
    after = footprint(server.pid)
    assert before.keys() == after.keys(), "a process was replaced during the soak"
    for title, (fds, uss) in after.items():
        fds_then, uss_then = before[title]
        assert fds <= fds_then + 2, f"{title}: {fds_then} -> {fds} descriptors"
        assert uss <= uss_then + max(4 << 20, uss_then // 10), f"{title}: {uss_then} -> {uss}"
    names = stored(server.od)
    assert len(names) == SOAK_STORES, "an object was lost or stored twice"
    assert {f"CT.{dcmread(f, stop_before_pixels=True).SOPInstanceUID}" for f in files} == set(names)


# Two senders against exactly two places: a full pool, --max-associations under --fork, and
# --max-associations-per-host (both senders are 127.0.0.1).
AT_THE_LIMIT = {
    "pool-full": ["--workers", "2", "--max-workers", "2"],
    "fork-max-associations": ["--fork", "--max-associations", "2"],
    "pool-per-host": ["--workers", "4", "--max-associations-per-host", "2"],
}


@pytest.mark.parametrize("limit", AT_THE_LIMIT.values(), ids=AT_THE_LIMIT.keys())
def test_senders_at_the_limit_that_reconnect_at_once_are_served(
    storescpd, limit: list[str]
) -> None:
    """Each sender starts its next association the moment the last one is released: none
    may be refused because the process that served it is still winding down."""
    server = storescpd(limit)

    def sender(_k: int) -> int:
        return sum(echo_to(server.port, "127.0.0.1") for _ in range(40))

    with ThreadPoolExecutor(2) as pool:
        served = list(pool.map(sender, range(2)))
    assert served == [40, 40], f"refused: {80 - sum(served)} of 80\n{server.log[-2000:]}"
