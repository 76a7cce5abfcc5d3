"""The servers under comparison: how each starts on loopback, when it is ready, how it stops,
and what its process tree costs (CPU, memory) while it works.

The process tree is measured with psutil: live processes are summed, and children that exited
during a window are counted through their parent's ``children_user``/``children_system`` (every
server here reaps its children), so ``--fork`` children are not lost.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


@dataclass(frozen=True)
class ServerSpec:
    """One server configuration: a name for the table and how to build its command line."""

    name: str
    kind: str  # "storescpd", "dcmtk" or "pynetdicom"
    args: tuple[str, ...] = ()

    def argv(self, od: Path, port: int) -> list[str]:
        if self.kind == "storescpd":
            return [sys.executable, "-m", "storescpd", *self.args, "-od", str(od), str(port)]
        if self.kind == "dcmtk":
            return ["/usr/bin/storescp", *self.args, "-od", str(od), str(port)]
        return [sys.executable, "-m", "pynetdicom", "storescp", *self.args, "-od", str(od),
                str(port)]


SERVERS = (
    ServerSpec("storescpd", "storescpd"),
    ServerSpec("storescpd-fork", "storescpd", ("--fork",)),
    ServerSpec("storescpd-pool", "storescpd", ("--workers", "4", "--max-workers", "32")),
    ServerSpec("dcmtk", "dcmtk"),
    ServerSpec("dcmtk-fork", "dcmtk", ("--fork",)),
    ServerSpec("pynetdicom", "pynetdicom"),
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RunningServer:
    """A started server; use as a context manager so it is always stopped."""

    def __init__(self, spec: ServerSpec, od: Path, log: Path) -> None:
        self.spec = spec
        self.od = od
        self.port = free_port()
        env = dict(os.environ, TCP_NODELAY="1")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        notify = None
        if spec.kind == "storescpd":
            # storescpd says READY=1 once its workers have booted: an event, not a guess. An
            # abstract socket name, since a path under a deep scratch directory can be too long.
            notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            notify.bind(f"\0storescpd-bench-{os.getpid()}-{self.port}")
            env["NOTIFY_SOCKET"] = f"@storescpd-bench-{os.getpid()}-{self.port}"
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(spec.argv(od, self.port), env=env, stdout=out,
                                         stderr=subprocess.STDOUT)
        self.log = log
        self.ps = psutil.Process(self.proc.pid)
        try:
            if notify is not None:
                self._await_notify(notify)
            else:
                self._await_listening()
        except BaseException:
            self.stop()
            raise
        finally:
            if notify is not None:
                notify.close()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _failed(self, what: str) -> RuntimeError:
        return RuntimeError(f"{self.spec.name} {what}:\n{self.log.read_text(errors='replace')}")

    def _await_notify(self, notify: socket.socket) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while self.proc.poll() is None and time.monotonic() < deadline:
            readable = select.select([notify], [], [], 0.2)[0]
            if readable and b"READY=1" in notify.recv(4096).split(b"\n"):
                return
        raise self._failed("did not become ready")

    def _await_listening(self) -> None:
        # DCMTK and pynetdicom announce nothing, so poll until the port accepts.
        deadline = time.monotonic() + READY_TIMEOUT
        while self.proc.poll() is None and time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                select.select([], [], [], 0.05)
        raise self._failed("did not start listening")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._kill_tree()
        self._kill_tree()

    def _kill_tree(self) -> None:
        try:
            children = self.ps.children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        for p in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def tree(self) -> list[psutil.Process]:
        try:
            return [self.ps, *self.ps.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        """User + system CPU of the tree so far, reaped children included."""
        total = 0.0
        for p in self.tree():
            try:
                t = p.cpu_times()
            except psutil.Error:
                continue
            total += t.user + t.system + t.children_user + t.children_system
        return total

    def worker_uss(self) -> list[float]:
        """USS in MB of each pool worker (children whose title names a worker)."""
        out = []
        for p in self.tree()[1:]:
            try:
                if "worker" in " ".join(p.cmdline()):
                    out.append(p.memory_full_info().uss / 2**20)
            except psutil.Error:
                continue
        return out


class MemorySampler:
    """Samples the server tree's memory in a thread: peak sums of RSS and USS, peak process RSS."""

    def __init__(self, server: RunningServer, interval: float = 0.1) -> None:
        self.server = server
        self.interval = interval
        self.peak_rss = self.peak_uss = self.peak_proc_rss = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        rss = uss = biggest = 0.0
        for p in self.server.tree():
            try:
                info = p.memory_full_info()
            except psutil.Error:
                continue
            rss += info.rss
            uss += info.uss
            biggest = max(biggest, info.rss)
        self.peak_rss = max(self.peak_rss, rss / 2**20)
        self.peak_uss = max(self.peak_uss, uss / 2**20)
        self.peak_proc_rss = max(self.peak_proc_rss, biggest / 2**20)
