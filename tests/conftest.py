"""Shared test fixtures: storescpd and DCMTK servers on loopback, DCMTK clients, test data.

storescpd is started the way systemd would start it: the test binds 127.0.0.1 on a free port,
hands the listening socket over as fd 3 (``LISTEN_FDS``/``LISTEN_PID``) and waits for
``READY=1`` on its own ``NOTIFY_SOCKET``. That is an event, so no test waits by sleeping, and no
port can be taken by someone else between choosing it and listening on it.
"""

from __future__ import annotations

import os
import random
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import psutil
import pytest

DCMTK_BIN = Path("/usr/bin")
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0


def dcmtk(tool: str) -> str:
    """Absolute path of a DCMTK tool; missing tools fail under CI and skip elsewhere.

    pynetdicom installs its own ``storescp`` on PATH, so DCMTK tools are always called by path.
    """
    path = DCMTK_BIN / tool
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"DCMTK tool {path} is missing on CI")
        pytest.skip(f"DCMTK tool {path} is not installed")
    return str(path)


def files_under(root: Path) -> list[Path]:
    """The files below ``root``, skipping folders that vanish while they are listed (a child
    process removing its spool directory as it leaves)."""
    return [Path(folder, name) for folder, _, names in os.walk(root) for name in names]


def require_tool(name: str, fallback: str | None = None) -> str:
    """Path of a system tool (``fallback`` where PATH lacks it, e.g. /usr/sbin); a missing tool
    fails the test under ``CI=true`` and skips it elsewhere."""
    path = shutil.which(name) or fallback
    if path is None or not os.path.exists(path):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is missing on CI")
        pytest.skip(f"{name} is not installed")
    return path


def run_dcmtk(tool: str, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run a DCMTK tool with Nagle disabled (``TCP_NODELAY=1``), capturing its output."""
    env = dict(os.environ, TCP_NODELAY="1")
    return subprocess.run(
        [dcmtk(tool), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def children_titled(pid: int, word: str) -> list[psutil.Process]:
    """The live children of ``pid`` whose process title holds ``word`` (one that has just
    left and is not reaped yet is not counted)."""
    found = []
    for child in psutil.Process(pid).children():
        try:
            if word in " ".join(child.cmdline()):
                found.append(child)
        except (psutil.ZombieProcess, psutil.NoSuchProcess):
            continue
    return found


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (only for servers we cannot hand a socket).

    Taken below Linux's ephemeral range (32768 and up), where the kernel picks the source ports
    of every client connection: a port from there can be in use again before the server binds it.
    """
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 32768)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free TCP port between 20000 and 32767")


def poll_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll for a condition that no event announces (e.g. DCMTK's storescp starting to listen)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        select.select([], [], [], 0.02)


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Server:
    """A server process under test; ``stop()`` ends it and returns its exit status."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, od: Path, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.od = od
        self.log_path = log
        self.notify: socket.socket | None = None  # kept open with keep_notify=True

    def await_notify(self, state: bytes, timeout: float = 20, part: bool = False) -> list[bytes]:
        """Read sd_notify datagrams until a line is ``state`` (with ``part``: contains it);
        return all lines read."""
        assert self.notify is not None, "start the server with keep_notify=True"
        lines: list[bytes] = []
        deadline = time.monotonic() + timeout
        while not any(line == state or (part and state in line) for line in lines):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {state!r} from storescpd, got {lines}:\n{self.log}")
            readable, _, _ = select.select([self.notify], [], [], remaining)
            if readable:
                lines += self.notify.recv(4096).split(b"\n")
        return lines

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.notify is not None:
            self.notify.close()
            self.notify = None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"not stopped in {STOP_TIMEOUT}s:\n{self.log}") from None
        return int(self.proc.returncode)


SYSTEMD_SHIM = """
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.argv[2], sys.argv[2:])
"""


def start_storescpd(
    args: Sequence[str],
    od: Path,
    log: Path,
    *,
    extra_env: dict[str, str] | None = None,
    keep_notify: bool = False,
    binds: bool = False,
    module: str = "storescpd",
) -> Server:
    """Start ``python -m storescpd ARGS -od OD PORT`` on an inherited listener (with ``binds``:
    on a free port it binds itself); wait for READY=1. ``module`` names another entry point
    (``storescpd.dcmrecv``)."""
    if binds:
        return _start_binding(args, od, log, extra_env, keep_notify, module)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(50)
    port = int(listener.getsockname()[1])
    notify_path = log.with_name(log.name + ".notify")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    env = dict(os.environ, LISTEN_FDS="1", NOTIFY_SOCKET=str(notify_path), **(extra_env or {}))
    env.pop("LISTEN_PID", None)
    argv = [sys.executable, "-m", module, *args, "-od", str(od), str(port)]
    fd = listener.fileno()
    # As systemd does: the listener on fd 3 and LISTEN_PID naming the server's own pid, which
    # a shim that moves the fd and then execs the server knows.
    shim = [sys.executable, "-c", SYSTEMD_SHIM, str(fd), *argv]
    with open(log, "wb") as out:
        proc = subprocess.Popen(shim, env=env, stdout=out, stderr=subprocess.STDOUT, pass_fds=(fd,))
    listener.close()
    server = Server(proc, port, od, log)
    try:
        _await_ready(notify, proc, server)
    finally:
        notify_path.unlink(missing_ok=True)  # the bound socket lives on without its name
        if keep_notify:
            server.notify = notify
        else:
            notify.close()
    return server


def _start_binding(
    args: Sequence[str],
    od: Path,
    log: Path,
    extra_env: dict[str, str] | None,
    keep_notify: bool,
    module: str = "storescpd",
) -> Server:
    port = free_port()
    notify_path = log.with_name(log.name + ".notify")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    env = dict(os.environ, NOTIFY_SOCKET=str(notify_path), **(extra_env or {}))
    for name in ("LISTEN_FDS", "LISTEN_PID"):
        env.pop(name, None)
    argv = [sys.executable, "-m", module, *args, "-od", str(od), str(port)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = Server(proc, port, od, log)
    try:
        _await_ready(notify, proc, server)
    finally:
        notify_path.unlink(missing_ok=True)
        if keep_notify:
            server.notify = notify
        else:
            notify.close()
    return server


def _await_ready(notify: socket.socket, proc: subprocess.Popen[bytes], server: Server) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or proc.poll() is not None:
            server.stop(signal.SIGKILL)
            raise AssertionError(f"storescpd did not become ready:\n{server.log}")
        readable, _, _ = select.select([notify], [], [], min(remaining, 0.5))
        if readable and b"READY=1" in notify.recv(4096).split(b"\n"):
            return


def start_dcmtk_storescp(
    args: Sequence[str], od: Path, log: Path, tool: str = "storescp"
) -> Server:
    """Start DCMTK's own ``storescp ARGS -od OD PORT`` (with TCP_NODELAY=1) as a reference;
    ``tool`` names another DCMTK server (``dcmrecv``)."""
    port = free_port()
    env = dict(os.environ, TCP_NODELAY="1")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [dcmtk(tool), *args, "-od", str(od), str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return await_listening(Server(proc, port, od, log), f"DCMTK {tool}", 10)


def await_listening(server: Server, name: str, timeout: float) -> Server:
    """Wait until a server that announces nothing accepts connections on its port; a server
    that exits or never listens is killed and fails the test with its log."""
    proc = server.proc
    try:
        poll_until(lambda: proc.poll() is not None or _accepts_connections(server.port),
                   timeout, name)  # fmt: skip
    except TimeoutError:
        server.stop(signal.SIGKILL)
        raise
    if proc.poll() is not None:
        raise AssertionError(f"{name} exited early:\n{server.log}")
    return server


@pytest.fixture
def socket_activate() -> Iterator[list[subprocess.Popen[str]]]:
    """systemd-socket-activate processes a test starts, stopped after it."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


@pytest.fixture
def storescpd(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Factory: ``storescpd(args, od=None)`` starts a server; all are stopped after the test.

    A server that is still running at teardown must stop cleanly on SIGTERM (exit status 0).
    """
    servers: list[Server] = []

    def start(
        args: Sequence[str] = (),
        od: Path | None = None,
        extra_env: dict[str, str] | None = None,
        keep_notify: bool = False,
        binds: bool = False,
        module: str = "storescpd",
    ) -> Server:
        out = od if od is not None else tmp_path / f"od{len(servers)}"
        out.mkdir(exist_ok=True)
        log = tmp_path / f"storescpd{len(servers)}.log"
        server = start_storescpd(
            args, out, log, extra_env=extra_env, keep_notify=keep_notify, binds=binds,
            module=module,
        )
        servers.append(server)
        return server

    yield start
    failures = []
    for server in servers:
        if server.alive():
            status = server.stop()
            if status != 0:
                failures.append(f"storescpd exited with {status}:\n{server.log}")
    assert not failures, "\n".join(failures)


@pytest.fixture
def dcmtk_storescp(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Factory for DCMTK reference servers; all are killed after the test."""
    servers: list[Server] = []

    def start(args: Sequence[str] = (), od: Path | None = None, tool: str = "storescp") -> Server:
        out = od if od is not None else tmp_path / f"ref{len(servers)}"
        out.mkdir(exist_ok=True)
        server = start_dcmtk_storescp(args, out, tmp_path / f"dcmtk{len(servers)}.log", tool)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop(signal.SIGKILL)


def pydicom_test_files() -> list[Path]:
    """Every DICOM file bundled with pydicom itself (no downloads)."""
    import pydicom

    folder = Path(pydicom.__file__).parent / "data" / "test_files"
    return sorted(p for p in folder.rglob("*") if p.is_file() and _is_part10(p))


def _is_part10(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"


@pytest.fixture
def ct_small() -> Path:
    from pydicom.data import get_testdata_file

    return Path(str(get_testdata_file("CT_small.dcm")))


def which(tool: str) -> str | None:
    return shutil.which(tool)
