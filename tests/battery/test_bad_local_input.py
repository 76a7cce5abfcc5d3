"""Bad local input: each case is one clear error line on stderr and exit status 1, never a
Python traceback, and nothing left listening."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

Case = Callable[[Path], list[str]]
"""Builds, in a scratch directory, the command line (without -od and port) of one case."""

PORT = "11112"


def _od(tmp: Path) -> str:
    od = tmp / "od"
    od.mkdir(exist_ok=True)
    return str(od)


def _write(tmp: Path, name: str, text: str) -> str:
    path = tmp / name
    path.write_text(text)
    return str(path)


def _directory(tmp: Path, name: str) -> str:
    path = tmp / name
    path.mkdir(exist_ok=True)
    return str(path)


FILE_HANDLER_TO_NOWHERE = """{"version": 1, "handlers": {"f": {"class": "logging.FileHandler",
"filename": "/nonexistent/x.log"}}}"""

# case id -> (command line builder, what the error line says)
CASES: dict[str, tuple[Case, str]] = {
    "value-not-a-number": (lambda t: ["--max-associations-per-host", "abc"], "Invalid value"),
    "value-negative": (lambda t: ["--workers", "-1"], "Invalid value for option --workers"),
    "value-underflow": (lambda t: ["-pdu", "1"], "underflow"),
    "value-overflow": (lambda t: ["--workers", "99999"], "overflow"),
    # As in DCMTK, a value is taken verbatim: "-od" is the number, the directory a parameter.
    "value-missing": (lambda t: ["--max-associations"], "Too many parameters"),
    "unknown-option": (lambda t: ["--no-such-option"], "Unknown option"),
    "command-file-missing": (lambda t: [f"@{t}/none"], "Cannot open command file"),
    "log-config-missing": (lambda t: ["-lc", f"{t}/none"], "does not exist"),
    "log-config-directory": (lambda t: ["-lc", _directory(t, "lc")], "cannot be read"),
    "log-config-garbage": (
        lambda t: ["-lc", _write(t, "lc.cfg", "garbage [[[\n")],
        "does not contain any valid settings",
    ),
    "log-config-bad-json": (
        lambda t: ["-lc", _write(t, "lc.json", '{"version": 1, "handlers": 5}')],
        "does not contain any valid settings",
    ),
    "log-config-unwritable-log-file": (
        lambda t: ["-lc", _write(t, "lc.json", FILE_HANDLER_TO_NOWHERE)],
        "does not contain any valid settings",
    ),
    "profile-file-missing": (lambda t: ["-xf", f"{t}/none", "Default"], "cannot read config"),
    "profile-file-directory": (
        lambda t: ["-xf", _directory(t, "xf"), "Default"],
        "cannot read config",
    ),
    "profile-file-garbage": (
        lambda t: ["-xf", _write(t, "xf.cfg", "garbage [[[\n"), "Default"],
        "cannot read config",
    ),
    "profile-name-unknown": (
        lambda t: ["-xf", "/etc/dcmtk/storescp.cfg", "NoSuchProfile"],
        "unknown configuration profile name",
    ),
    "hosts-allow-unreadable": (
        lambda t: ["+ac", "--hosts-allow", _directory(t, "allow")],
        "cannot open",
    ),
    "hosts-deny-unreadable": (
        lambda t: ["+ac", "--hosts-deny", _directory(t, "deny")],
        "cannot open",
    ),
    "output-directory-missing": (
        lambda t: ["-od", f"{t}/none"],
        "specified output directory does not exist",
    ),
    "output-directory-a-file": (
        lambda t: ["-od", _write(t, "file", "x")],
        "specified output directory does not exist",
    ),
    "user-unknown": (
        lambda t: ["--user", "no-such-user-here"],
        "cannot drop privileges: unknown user no-such-user-here",
    ),
    "group-unknown": (
        lambda t: ["--user", "root", "--group", "no-such-group-here"],
        "cannot drop privileges: unknown group no-such-group-here",
    ),
    "listen-not-an-address": (
        lambda t: ["--listen", "999.1.1.1"],
        "cannot listen on 999.1.1.1: not an IPv4 or IPv6 address",
    ),
    "listen-address-not-here": (
        lambda t: ["--listen", "192.0.2.1"],  # TEST-NET-1: on no interface of this host
        "cannot create network: Cannot assign requested address",
    ),
    "option-needs-another": (
        lambda t: ["--max-workers", "3"],
        "--max-workers only allowed with --workers",
    ),
    "options-conflict": (lambda t: ["--workers", "2", "--fork"], "not allowed with --fork"),
    "pid-file-in-missing-directory": (
        lambda t: ["--pid-file", f"{t}/none/x.pid"],
        "cannot open pid file",
    ),
}


def run_storescpd(
    args: list[str], prefix: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LISTEN_FDS", "LISTEN_PID")}
    return subprocess.run(
        [*(prefix or []), sys.executable, "-m", "storescpd", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=env,
    )


def assert_one_clear_line(result: subprocess.CompletedProcess[str], says: str) -> None:
    err = result.stderr
    assert result.returncode == 1, (result.returncode, err)
    assert "Traceback" not in err + result.stdout, err
    # DCMTK's usage errors come under the program's two header lines; the error is one line.
    errors = [line for line in err.splitlines() if line.startswith(("error:", "F:", "E:"))]
    assert len(errors) == 1, err
    assert says in errors[0], err


@pytest.mark.parametrize("case", CASES)
def test_bad_local_input_is_one_clear_line(case: str, tmp_path: Path) -> None:
    build, says = CASES[case]
    args = build(tmp_path)
    if "-od" not in args:
        args += ["-od", _od(tmp_path)]
    assert_one_clear_line(run_storescpd([*args, PORT]), says)


@pytest.mark.parametrize("port", ["abc", "0", "70000", ""])
def test_bad_port_is_one_clear_line(port: str, tmp_path: Path) -> None:
    assert_one_clear_line(run_storescpd(["-od", _od(tmp_path), port]), "parameter")


def test_a_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = run_storescpd(["-od", _od(tmp_path), port])
    assert_one_clear_line(result, "cannot create network: Address already in use")


def test_a_privileged_port_without_the_capability_is_one_clear_line(tmp_path: Path) -> None:
    """As root without CAP_NET_BIND_SERVICE, as a hardened unit might run it."""
    setpriv = shutil.which("setpriv")
    if setpriv is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv")
    drop = [setpriv, "--bounding-set=-net_bind_service", "--inh-caps=-net_bind_service"]
    result = run_storescpd(["-od", _od(tmp_path), "104"], prefix=drop)
    assert_one_clear_line(result, "cannot create network: Permission denied")


def test_a_privileged_port_as_an_ordinary_user_is_one_clear_line(tmp_path: Path) -> None:
    setpriv = shutil.which("setpriv")
    if setpriv is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv to become nobody")
    as_nobody = [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    probe_import = [*as_nobody, sys.executable, "-c", "import storescpd.cli"]
    probe = subprocess.run(probe_import, capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"nobody cannot run {sys.executable} here (its directory is private)")
    od = _od(tmp_path)
    os.chmod(tmp_path, 0o755)
    result = run_storescpd(["-od", od, "104"], prefix=as_nobody)
    assert_one_clear_line(result, "cannot listen on port 104, insufficient privileges")
