"""The shipped systemd units and xinetd file: linted by systemd, then run for real.

The units cannot be started by a systemd here (PID 1 is not systemd), so the tests run the
exact command lines they contain under ``systemd-socket-activate``, which hands over sockets
the way systemd does, and run the xinetd file under the real ``xinetd``.
"""

from __future__ import annotations

import os
import re
import select
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.conftest import _accepts_connections, free_port, poll_until, require_tool, run_dcmtk
from tests.integration.test_modes import stored, storescpd_command

REPO_ROOT = Path(__file__).resolve().parents[2]
SYSTEMD_DIR = REPO_ROOT / "systemd"
XINETD_FILE = REPO_ROOT / "inetd" / "xinetd.d" / "storescpd"
SOCKETS = ["storescpd.socket", "storescpd-inetd.socket"]
SERVICES = ["storescpd.service", "storescpd-inetd@.service"]
UNITS = SOCKETS + SERVICES
STATE_DIRECTORY = "/var/lib/storescpd"
MAX_EXPOSURE = 2.5
CT_SMALL_NAME = "CT.1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"
NOTIFY_TIMEOUT = 20.0


def unit_settings(path: Path) -> dict[tuple[str, str], list[str]]:
    """Every ``Key=value`` of a unit file, by (section, key), in file order."""
    settings: dict[tuple[str, str], list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        settings.setdefault((section, key.strip()), []).append(value.strip())
    return settings


def exec_start(unit: str, od: Path) -> list[str]:
    """A unit's ExecStart argv with the installed console script and a test output directory."""
    (line,) = unit_settings(SYSTEMD_DIR / unit)[("Service", "ExecStart")]
    argv = shlex.split(line.lstrip("-@:+!"))
    assert os.path.basename(argv[0]) == "storescpd", argv
    assert STATE_DIRECTORY in argv, f"{unit} no longer writes to {STATE_DIRECTORY}"
    return [storescpd_command()] + [str(od) if a == STATE_DIRECTORY else a for a in argv[1:]]


@pytest.fixture
def units_dir(tmp_path: Path) -> Path:
    """The shipped units, their ExecStart pointing at the installed script (verify needs it)."""
    folder = tmp_path / "units"
    folder.mkdir()
    installed = r"\g<1>" + storescpd_command()
    for unit in UNITS:
        text = (SYSTEMD_DIR / unit).read_text()
        (folder / unit).write_text(re.sub(r"(?m)^(ExecStart=)\S*storescpd\b", installed, text))
    return folder


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_analyze_verify_is_silent(units_dir: Path, unit: str) -> None:
    tool = require_tool("systemd-analyze")
    # --man=no: the manual page is not installed where man(1) would find it.
    result = subprocess.run(
        [tool, "verify", "--man=no", str(units_dir / unit)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.stderr == ""
    assert result.returncode == 0


@pytest.mark.parametrize("unit", SERVICES)
def test_security_exposure_is_low(units_dir: Path, unit: str) -> None:
    tool = require_tool("systemd-analyze")
    result = subprocess.run(
        [tool, "security", "--offline=true", str(units_dir / unit)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    found = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert found is not None, result.stdout + result.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE, result.stdout


@pytest.mark.parametrize(
    ("unit", "section", "key", "expected"),
    [
        ("storescpd.socket", "Socket", "Accept", "no"),
        ("storescpd.service", "Service", "Type", "notify"),
        ("storescpd.service", "Service", "NotifyAccess", "main"),
        ("storescpd.service", "Service", "KillMode", "mixed"),
        ("storescpd.service", "Service", "CapabilityBoundingSet", ""),
        ("storescpd.service", "Service", "DynamicUser", "yes"),
        ("storescpd.service", "Service", "StateDirectory", "storescpd"),
        ("storescpd-inetd.socket", "Socket", "Accept", "yes"),
        ("storescpd-inetd@.service", "Service", "StandardInput", "socket"),
        # With StandardInput=socket these default to the socket: a log line would reach the peer.
        ("storescpd-inetd@.service", "Service", "StandardOutput", "journal"),
        ("storescpd-inetd@.service", "Service", "StandardError", "journal"),
        ("storescpd-inetd@.service", "Service", "CapabilityBoundingSet", ""),
        ("storescpd-inetd@.service", "Service", "User", "storescpd"),
        ("storescpd.service", "Service", "User", "storescpd"),
    ],
)
def test_unit_setting(unit: str, section: str, key: str, expected: str) -> None:
    assert unit_settings(SYSTEMD_DIR / unit).get((section, key)) == [expected]


def test_service_and_socket_agree_on_the_port() -> None:
    """The port argument is ignored under socket activation, but should not mislead a reader."""
    ports = {unit_settings(SYSTEMD_DIR / s)[("Socket", "ListenStream")][0] for s in SOCKETS}
    assert ports == {exec_start("storescpd.service", Path(STATE_DIRECTORY))[-1]}


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts; any still running at teardown get SIGTERM, then SIGKILL."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def socket_activate(
    args: list[str], processes: list[subprocess.Popen[str]]
) -> subprocess.Popen[str]:
    """Start ``systemd-socket-activate ARGS`` and return once it listens."""
    tool = require_tool("systemd-socket-activate")
    proc = subprocess.Popen([tool, *args], stderr=subprocess.PIPE, text=True)
    processes.append(proc)
    assert proc.stderr is not None
    # It says so once it listens: an event, not a guess.
    line = proc.stderr.readline()
    assert "Listening on" in line, line
    return proc


def await_notify(notify: socket.socket, state: bytes, proc: subprocess.Popen[str]) -> list[bytes]:
    """Every line received on ``notify`` until one equals ``state``."""
    received: list[bytes] = []
    deadline = time.monotonic() + NOTIFY_TIMEOUT
    while state not in received:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {state!r} within {NOTIFY_TIMEOUT}s, got {received!r}"
        assert proc.poll() is None or state == b"STOPPING=1", f"exited with {proc.returncode}"
        readable, _, _ = select.select([notify], [], [], min(remaining, 0.5))
        if readable:
            message, _, _, _ = socket.socket.recvmsg(notify, 4096)
            received += message.split(b"\n")
    return received


def send_echo_and_store(port: int, ct_small: Path, od: Path) -> None:
    echo = run_dcmtk("echoscu", "127.0.0.1", str(port))
    assert echo.returncode == 0, echo.stderr
    store = run_dcmtk("storescu", "127.0.0.1", str(port), str(ct_small))
    assert store.returncode == 0, store.stderr
    assert stored(od) == [CT_SMALL_NAME]


def test_pool_service_under_socket_activation(
    processes: list[subprocess.Popen[str]], ct_small: Path, tmp_path: Path
) -> None:
    od = tmp_path / "od"
    od.mkdir()
    port = free_port()
    argv = exec_start("storescpd.service", od)
    workers = int(argv[argv.index("--workers") + 1])
    notify_path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(notify_path))
        proc = socket_activate(
            ["-l", f"127.0.0.1:{port}", "--fdname=dicom", "-E", f"NOTIFY_SOCKET={notify_path}",
             *argv],
            processes,
        )  # fmt: skip
        # The command is only executed on the first connection; this one just wakes it up.
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            await_notify(notify, b"READY=1", proc)
        send_echo_and_store(port, ct_small, od)
        # The "104" on the command line is ignored: nothing but the inherited socket listens.
        master = psutil.Process(proc.pid)
        assert {c.laddr.port for c in master.net_connections("inet")} == {port}
        assert len(master.children()) == workers
        proc.send_signal(signal.SIGTERM)
        await_notify(notify, b"STOPPING=1", proc)
        assert proc.wait(15) == 0


def test_inetd_style_service_under_socket_activation(
    processes: list[subprocess.Popen[str]], ct_small: Path, tmp_path: Path
) -> None:
    od = tmp_path / "od"
    od.mkdir()
    port = free_port()
    argv = exec_start("storescpd-inetd@.service", od)
    socket_activate(["--inetd", "-a", "-l", f"127.0.0.1:{port}", *argv], processes)
    send_echo_and_store(port, ct_small, od)


def xinetd_conf(log: Path, port: int, od: Path) -> str:
    """The shipped xinetd file made runnable here: our script, port, output dir, and root."""
    text = XINETD_FILE.read_text()
    server_args = xinetd_words(text, "server_args")
    od_at = server_args.index("-od") + 1
    server_args[od_at] = str(od)
    replacements = {
        "server": storescpd_command(),
        "port": str(port),
        "bind": "127.0.0.1",
        "server_args": shlex.join(server_args),
        # The shipped account "dicom" need not exist on a test machine.
        "user": "root",
        "group": "root",
    }
    for key, value in replacements.items():
        text, count = re.subn(rf"(?m)^(\s*{key}\s*=).*$", rf"\g<1> {value}", text)
        assert count == 1, f"{key} appears {count} times in {XINETD_FILE}"
    return f"defaults\n{{\n        log_type = FILE {log}\n}}\n{text}"


def xinetd_words(text: str, key: str) -> list[str]:
    """The words of one ``key = value`` line of an xinetd file."""
    found = re.search(rf"(?m)^\s*{key}\s*=(.*)$", text)
    assert found is not None, f"no {key} in {XINETD_FILE}"
    return shlex.split(found.group(1))


def test_shipped_xinetd_file_under_xinetd(
    processes: list[subprocess.Popen[str]], ct_small: Path, tmp_path: Path
) -> None:
    xinetd = require_tool("xinetd", "/usr/sbin/xinetd")
    if os.geteuid() != 0:
        pytest.skip("xinetd needs root")
    od = tmp_path / "od"
    od.mkdir()
    port = free_port()
    conf = tmp_path / "xinetd.conf"
    conf.write_text(xinetd_conf(tmp_path / "xinetd.log", port, od))
    proc = subprocess.Popen(
        [xinetd, "-dontfork", "-f", str(conf), "-pidfile", str(tmp_path / "x.pid")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    processes.append(proc)
    # xinetd announces nothing on a pipe; polling the port is the only signal.
    poll_until(lambda: proc.poll() is not None or _accepts_connections(port), 10, "xinetd")
    assert proc.poll() is None, (tmp_path / "xinetd.log").read_text()
    send_echo_and_store(port, ct_small, od)


def inetd_lines() -> list[list[str]]:
    """The service lines of the shipped inetd.conf (commented out), split into fields."""
    lines = []
    for raw in (REPO_ROOT / "inetd" / "inetd.conf").read_text().splitlines():
        fields = raw.lstrip("#").split()
        if fields and fields[0] == "acr-nema":
            lines.append(fields)
    return lines


def test_inetd_conf_lines_run_storescpd_inetd() -> None:
    """No classic inetd is installed here; the lines are checked field by field instead."""
    lines = inetd_lines()
    assert len(lines) == 2
    for service, sock, proto, wait, user, server, *argv in lines:
        assert (service, sock, proto) == ("acr-nema", "stream", "tcp")
        assert wait.split(".")[0] == "nowait"
        assert ":" in user
        assert os.path.isabs(server)
        # tcpd takes the wrapped program's full path as argv[0] and execs it.
        if os.path.basename(server) == "tcpd":
            assert os.path.isabs(argv[0])
        assert os.path.basename(argv[0]) == "storescpd"
        assert "--inetd" in argv
        assert argv[argv.index("-od") + 1].startswith("/")
