"""Supervision of the serving processes: HUP turnover, limits, heartbeats, watchdog, daemon mode.

Everything runs the real server with real DCMTK clients; waits are on files, logs, process
states and sd_notify messages, never on fixed sleeps.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.conftest import dcmtk, free_port, poll_until, run_dcmtk
from tests.integration.test_modes import make_instances, stored
from tests.integration.test_pool import workers_of


def _pids(server_pid: int) -> set[int]:
    return {p.pid for p in workers_of(server_pid)}


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_hup_lets_a_long_transfer_finish_and_serves_new_associations_with_new_options(
    storescpd, ct_small: Path, tmp_path: Path
) -> None:
    options = tmp_path / "options"
    options.write_text("--sleep-after 2\n")  # each store holds its association for 2 s
    server = storescpd(
        ["-v", "--workers", "1", "--max-workers", "4", f"@{options}"], keep_notify=True
    )
    files = make_instances(ct_small, tmp_path / "in", 2)
    holder = subprocess.Popen(
        [dcmtk("storescu"), "127.0.0.1", str(server.port), *map(str, files)],
        env=dict(os.environ, TCP_NODELAY="1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        poll_until(lambda: bool(stored(server.od)), 20, "the first store")
        (old_worker,) = _pids(server.pid)
        options.write_text("--refuse\n")
        os.kill(server.pid, signal.SIGHUP)
        notified = server.await_notify(b"RELOADING=1")
        assert any(line.startswith(b"MONOTONIC_USEC=") for line in notified)
        server.await_notify(b"READY=1")
        # The new options answer new associations, on a new worker ...
        refused = run_dcmtk("echoscu", "-v", "127.0.0.1", str(server.port))
        assert refused.returncode != 0
        assert "Rejected Permanent" in refused.stderr + refused.stdout
        assert old_worker in _pids(server.pid) and not _gone(old_worker)
    finally:
        _, err = holder.communicate(timeout=60)
    # ... while the old one finished the running transfer, then left.
    assert holder.returncode == 0, err
    assert len(stored(server.od)) == 2
    server.await_notify(b" workers busy, 2 objects stored", part=True)
    poll_until(lambda: _gone(old_worker), 20, "the old worker to leave")
    options.write_text("")
    os.kill(server.pid, signal.SIGHUP)
    server.await_notify(b"READY=1")
    assert run_dcmtk("echoscu", "127.0.0.1", str(server.port)).returncode == 0
    assert "HUP: serving new associations" in server.log


def test_hup_with_a_broken_options_file_keeps_serving(storescpd, tmp_path: Path) -> None:
    options = tmp_path / "options"
    options.write_text("--workers 2\n")
    server = storescpd([f"@{options}"], keep_notify=True)
    options.write_text("--no-such-option\n")
    os.kill(server.pid, signal.SIGHUP)
    server.await_notify(b"READY=1")
    assert run_dcmtk("echoscu", "127.0.0.1", str(server.port)).returncode == 0
    assert "HUP: keeping the running options: Unknown option --no-such-option" in server.log


def test_hup_with_a_broken_profile_file_keeps_the_running_profile(
    storescpd, ct_small: Path, tmp_path: Path
) -> None:
    profile = tmp_path / "storescp.cfg"
    profile.write_text(Path("/etc/dcmtk/storescp.cfg").read_text())
    server = storescpd(["--workers", "1", "-xf", str(profile), "Default"], keep_notify=True)
    profile.write_text("[[TransferSyntaxes]]\n[Broken]\nTransferSyntax1 = NoSuchSyntax\n")
    os.kill(server.pid, signal.SIGHUP)
    server.await_notify(b"READY=1")
    assert "HUP: keeping the running options:" in server.log
    sent = run_dcmtk("storescu", "127.0.0.1", str(server.port), str(ct_small))
    assert sent.returncode == 0, sent.stderr
    assert len(stored(server.od)) == 1


@pytest.mark.parametrize("mode", [["--fork"], ["--workers", "4"]], ids=["fork", "pool"])
def test_max_associations_rejects_at_once(storescpd, ct_small: Path, mode: list[str]) -> None:
    server = storescpd([*mode, "--max-associations", "1", "--sleep-after", "3"])
    holder = subprocess.Popen(
        [dcmtk("storescu"), "127.0.0.1", str(server.port), str(ct_small)],
        env=dict(os.environ, TCP_NODELAY="1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        poll_until(lambda: bool(stored(server.od)), 20, "the first store")
        second = run_dcmtk("echoscu", "-v", "127.0.0.1", str(server.port), timeout=10)
        assert second.returncode != 0
        assert "Local Limit Exceeded" in second.stderr + second.stdout
        assert "(--max-associations), rejecting association from 127.0.0.1" in server.log
    finally:
        assert holder.wait(30) == 0


def test_a_silent_worker_is_killed_and_replaced(storescpd) -> None:
    server = storescpd(["--workers", "1", "--worker-timeout", "1"])
    (stuck,) = _pids(server.pid)
    os.kill(stuck, signal.SIGSTOP)  # as good as a worker hanging in a handler
    poll_until(lambda: _gone(stuck), 20, "the silent worker to be killed")
    poll_until(lambda: len(_pids(server.pid)) == 1, 20, "a replacement worker")
    assert stuck not in _pids(server.pid)
    assert "silent for" in server.log and "--worker-timeout 1" in server.log
    assert run_dcmtk("echoscu", "127.0.0.1", str(server.port)).returncode == 0


def test_a_worker_over_its_memory_limit_is_replaced_after_its_association(storescpd) -> None:
    server = storescpd(["--workers", "1", "--max-worker-memory", "1", "-v"])
    (first,) = _pids(server.pid)
    assert run_dcmtk("echoscu", "127.0.0.1", str(server.port)).returncode == 0
    poll_until(lambda: _gone(first), 20, "the worker to retire")
    assert "MB of unique memory, over the 1 MB limit" in server.log
    poll_until(lambda: len(_pids(server.pid)) == 1, 20, "a replacement worker")
    assert run_dcmtk("echoscu", "127.0.0.1", str(server.port)).returncode == 0


def test_a_worker_that_cannot_boot_stops_the_server(storescpd, tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    server = storescpd(["--workers", "1"], extra_env={"TMPDIR": str(temp)})
    shutil.rmtree(temp)  # the next worker cannot make its spool directory
    os.kill(server.pid, signal.SIGTTIN)
    assert server.proc.wait(30) == 1
    assert "a worker could not start; stopping rather than respawning it" in server.log


def test_watchdog_pings_while_idle_and_while_serving(storescpd, ct_small: Path) -> None:
    server = storescpd(
        ["--sleep-after", "1"], extra_env={"WATCHDOG_USEC": "200000"}, keep_notify=True
    )
    for _ in range(3):
        server.await_notify(b"WATCHDOG=1", timeout=5)
    # Single-process mode serves in the loop itself: pings continue during an association.
    with subprocess.Popen(
        [dcmtk("storescu"), "127.0.0.1", str(server.port), str(ct_small)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as holder:
        poll_until(lambda: bool(stored(server.od)), 20, "the store")
        for _ in range(3):
            server.await_notify(b"WATCHDOG=1", timeout=5)
        assert holder.wait(30) == 0


def test_no_watchdog_for_another_pid(storescpd) -> None:
    server = storescpd(
        [], extra_env={"WATCHDOG_USEC": "100000", "WATCHDOG_PID": "1"}, keep_notify=True
    )
    os.kill(server.pid, signal.SIGHUP)  # something that is certain to be sent afterwards
    lines = server.await_notify(b"READY=1")
    assert b"WATCHDOG=1" not in lines


def _start_daemon(args: list[str], od: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "storescpd", *args, "-od", str(od)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_daemon_with_pid_file(ct_small: Path, tmp_path: Path) -> None:
    od = tmp_path / "od"
    od.mkdir()
    pid_file = tmp_path / "storescpd.pid"
    pid_file.write_text("999999\n")  # stale: left by a crash, locked by nobody
    port = free_port()
    started = _start_daemon(["--daemon", "--pid-file", str(pid_file), str(port)], od)
    assert started.returncode == 0, started.stderr
    poll_until(lambda: pid_file.read_text().strip() not in ("", "999999"), 10, "the pid file")
    pid = int(pid_file.read_text())
    try:
        daemon = psutil.Process(pid)
        assert daemon.ppid() != os.getpid()  # detached, not our child
        poll_until(
            lambda: run_dcmtk("echoscu", "127.0.0.1", str(port)).returncode == 0,
            20,
            "the daemon to serve",
        )
        assert run_dcmtk("storescu", "127.0.0.1", str(port), str(ct_small)).returncode == 0
        assert len(stored(od)) == 1
        second = _start_daemon(["--pid-file", str(pid_file), str(free_port())], od)
        assert second.returncode == 1
        assert f"is locked: another storescpd (pid {pid}) is running" in second.stderr
        assert second.stderr.count("\n") == 1
    finally:
        os.kill(pid, signal.SIGTERM)
    poll_until(lambda: not psutil.pid_exists(pid), 30, "the daemon to stop")
    assert not pid_file.exists()


@pytest.mark.parametrize("mode", [["--fork"], ["--workers", "2"]], ids=["fork", "pool"])
def test_term_lets_running_associations_complete(
    storescpd, ct_small: Path, tmp_path: Path, mode: list[str]
) -> None:
    server = storescpd([*mode, "--sleep-after", "2"])
    files = make_instances(ct_small, tmp_path / "in", 2)
    holder = subprocess.Popen(
        [dcmtk("storescu"), "127.0.0.1", str(server.port), *map(str, files)],
        env=dict(os.environ, TCP_NODELAY="1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    poll_until(lambda: bool(stored(server.od)), 20, "the first store")
    children = psutil.Process(server.pid).children(recursive=True)
    assert children
    server.proc.send_signal(signal.SIGTERM)
    _, err = holder.communicate(timeout=60)
    assert holder.returncode == 0, err
    assert len(stored(server.od)) == 2
    assert server.proc.wait(30) == 0
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive


def test_listen_on_ipv4_and_ipv6_addresses(storescpd, ct_small: Path) -> None:
    from pynetdicom import AE

    server = storescpd(["--listen", "::1", "--listen", "127.0.0.1", "--workers", "2"], binds=True)
    assert run_dcmtk("storescu", "127.0.0.1", str(server.port), str(ct_small)).returncode == 0
    ae = AE()
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("::1", server.port)
    assert assoc.is_established, server.log
    assert assoc.send_c_echo().Status == 0
    assoc.release()
    assert len(stored(server.od)) == 1


def test_listen_refuses_a_host_name(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "storescpd", "--listen", "localhost", "-od", str(tmp_path), "11112"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 1
    assert run.stderr == "F: cannot listen on localhost: not an IPv4 or IPv6 address\n"


@pytest.mark.parametrize("mode", [["--fork"], ["--workers", "1"]], ids=["fork", "pool"])
@pytest.mark.parametrize("how", ["graceful-timeout", "quit"])
def test_a_long_association_is_cut_short_by_the_graceful_timeout_or_quit(
    storescpd, ct_small: Path, mode: list[str], how: str
) -> None:
    server = storescpd([*mode, "--sleep-after", "30", "--graceful-timeout", "1"])
    holder = subprocess.Popen(
        [dcmtk("storescu"), "127.0.0.1", str(server.port), str(ct_small)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        poll_until(lambda: bool(stored(server.od)), 20, "the store")
        children = psutil.Process(server.pid).children(recursive=True)
        server.proc.send_signal(signal.SIGTERM if how == "graceful-timeout" else signal.SIGQUIT)
        assert server.proc.wait(20) == 0  # well before the 30 s sleep ends
        _, alive = psutil.wait_procs(children, timeout=10)
        assert not alive
        if how == "graceful-timeout":
            assert "did not finish in time, killing it" in server.log
    finally:
        holder.kill()
        holder.wait()


def test_sigkill_of_the_master_leaves_no_orphans_and_the_port_free(
    storescpd, ct_small: Path
) -> None:
    server = storescpd(["--workers", "3"], binds=True)
    workers = workers_of(server.pid)
    assert len(workers) == 3
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(10)
    _, alive = psutil.wait_procs(workers, timeout=20)  # each sees its channel close, and leaves
    assert not alive
    rebound = subprocess.Popen(
        [sys.executable, "-m", "storescpd", "-od", str(server.od), str(server.port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        poll_until(
            lambda: (
                rebound.poll() is not None
                or run_dcmtk("echoscu", "127.0.0.1", str(server.port)).returncode == 0
            ),
            20,
            "the restarted server",
        )
        assert rebound.poll() is None, rebound.stderr.read() if rebound.stderr else ""
        assert run_dcmtk("storescu", "127.0.0.1", str(server.port), str(ct_small)).returncode == 0
    finally:
        rebound.terminate()
        assert rebound.wait(15) == 0


def test_workers_grown_under_load_leave_again_when_idle(storescpd, ct_small: Path) -> None:
    server = storescpd(
        ["--workers", "1", "--max-workers", "3", "--worker-idle-timeout", "1", "--sleep-after",
         "2", "-v"]
    )  # fmt: skip
    holders = [
        subprocess.Popen(
            [dcmtk("storescu"), "127.0.0.1", str(server.port), str(ct_small)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(3)
    ]
    poll_until(lambda: len(_pids(server.pid)) == 3, 20, "the pool to grow to 3")
    for holder in holders:
        assert holder.wait(30) == 0
    poll_until(lambda: len(_pids(server.pid)) == 1, 20, "the pool to shrink back to 1")
    assert "beyond the pool's size, retiring it" in server.log
    assert run_dcmtk("echoscu", "127.0.0.1", str(server.port)).returncode == 0


LOG_CONFIG = """\
[loggers]
keys=root

[handlers]
keys=file

[formatters]
keys=plain

[logger_root]
level=INFO
handlers=file

[handler_file]
class=FileHandler
formatter=plain
args=({path!r},)

[formatter_plain]
format=%(process)d %(message)s
"""


@pytest.mark.parametrize("mode", [["--workers", "1"], ["--fork"]], ids=["pool", "fork"])
def test_usr1_moves_every_process_to_the_new_log_file(
    storescpd, tmp_path: Path, mode: list[str]
) -> None:
    """logrotate's contract: after the rename and USR1, workers and children write the new file."""
    current, rotated = tmp_path / "server.log", tmp_path / "server.log.1"
    config = tmp_path / "log.ini"
    config.write_text(LOG_CONFIG.format(path=str(current)))
    server = storescpd([*mode, "-lc", str(config)])
    assert run_dcmtk("echoscu", "127.0.0.1", str(server.port)).returncode == 0
    current.rename(rotated)
    os.kill(server.pid, signal.SIGUSR1)
    poll_until(lambda: current.exists() and "USR1" in current.read_text(), 10, "the new log file")
    assert run_dcmtk("echoscu", "127.0.0.1", str(server.port)).returncode == 0
    assert server.stop() == 0
    master = str(server.pid)
    served_in = {
        path.name: [line.split()[0] for line in path.read_text().splitlines()
                    if line.endswith("Association Received")]
        for path in (current, rotated)
    }  # fmt: skip
    assert len(served_in["server.log"]) == len(served_in["server.log.1"]) == 1, served_in
    assert served_in["server.log"][0] != master  # a worker or child wrote it, not the master


def test_ttin_and_ttou_add_and_remove_one_worker(storescpd) -> None:
    server = storescpd(["--workers", "2"])
    poll_until(lambda: len(_pids(server.pid)) == 2, 20, "two workers")
    os.kill(server.pid, signal.SIGTTIN)
    poll_until(lambda: len(_pids(server.pid)) == 3, 20, "a third worker")
    for left in (2, 1):  # one at a time: two pending signals of one kind arrive as one
        os.kill(server.pid, signal.SIGTTOU)
        poll_until(lambda left=left: len(_pids(server.pid)) == left, 20, f"{left} workers")
    assert run_dcmtk("echoscu", "127.0.0.1", str(server.port)).returncode == 0
    assert server.stop() == 0


def test_a_start_removes_what_the_processes_of_a_killed_server_left(
    storescpd, tmp_path: Path
) -> None:
    """A master killed with SIGKILL takes its workers along and cleans up after nobody: the next
    start removes their spool directories and temporary files, and nothing of a live process."""
    spool_parent = tmp_path / "tmp"
    spool_parent.mkdir()
    od = tmp_path / "od"
    od.mkdir()
    gone = subprocess.Popen(["true"])
    gone.wait()  # its pid no longer runs
    dead_spool = spool_parent / f"storescpd-spool-{gone.pid}-abcd1234"
    dead_spool.mkdir()
    (dead_spool / "half-received").write_bytes(b"x" * 1000)
    dead_temp = od / f".storescpd-CT.1.2.3.{gone.pid}-0123abcd.part"
    dead_temp.write_bytes(b"half")
    live_spool = spool_parent / f"storescpd-spool-{os.getpid()}-abcd1234"
    live_spool.mkdir()
    server = storescpd(["-v", "--workers", "1"], extra_env={"TMPDIR": str(spool_parent)}, od=od)
    assert not dead_spool.exists() and not dead_temp.exists()
    assert live_spool.exists()
    assert f"removed the spool directory of process {gone.pid}" in server.log
    assert server.stop() == 0
