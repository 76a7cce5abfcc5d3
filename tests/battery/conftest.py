"""The fault battery's servers and its report.

Servers are started once per module and mode — single process, a pool of two workers, and
``--fork`` (a child per association) — with short timeouts, so a case that leaves the server
waiting costs two seconds, not thirty. After each case the :func:`battery_server` fixture's
:meth:`BatteryServer.check` asks a real sender (DCMTK ``echoscu``, Nagle off) to be served and
looks at what the server logged meanwhile: a traceback, or the death of a worker, a child or a
companion, fails the case even when the master went on serving.

``STORESCPD_BATTERY_SERVER=dcmtk`` runs the protocol and fuzz cases (test_protocol.py,
test_fuzz.py) against DCMTK's ``/usr/bin/storescp`` instead, ``STORESCPD_BATTERY_SERVER=pynetdicom``
against pynetdicom's own ``storescp``, single process only and without judging their logs, to
see which cases they pass (CI never sets it; run no other module with it).

The run ends with one line per battery case (``PASS file::case``) and ``battery: N passed, M
failed`` before pytest's own summary line.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import (
    Server,
    await_listening,
    free_port,
    run_dcmtk,
    start_dcmtk_storescp,
    start_storescpd,
)

# Every wait of the server is short: association request, socket reads, idle association,
# the next fragment of a data set (seconds).
TIMEOUT = 2
TIMEOUT_ARGS = ("-ta", str(TIMEOUT), "-ts", str(TIMEOUT), "-td", str(TIMEOUT))
STORESCPD_ARGS = (*TIMEOUT_ARGS, "--network-timeout", str(TIMEOUT))
# The pool may grow: a worker reports idle a few milliseconds after its association ends, and a
# case that connects within them would otherwise meet a full pool's transient A-ASSOCIATE-RJ.
MODES = {
    "single": (),
    "pool": ("--workers", "2", "--max-workers", "4"),
    "fork": ("--fork",),
}
# Longest a case may wait for the server to act on its own: a timeout, then the ARTIM timer
# (also the ACSE timeout) and some slack for a loaded machine.
PATIENCE = 3 * TIMEOUT + 4

SERVER_KIND = os.environ.get("STORESCPD_BATTERY_SERVER", "storescpd")
if SERVER_KIND not in ("storescpd", "dcmtk", "pynetdicom"):
    raise pytest.UsageError(
        f"STORESCPD_BATTERY_SERVER={SERVER_KIND!r}: use storescpd, dcmtk or pynetdicom"
    )
# A reference server is run as it comes: only the single-process mode, and what it logs is
# not ours to judge.
AGAINST_REFERENCE = SERVER_KIND != "storescpd"
# Lines in a server log that say a bad peer broke something it must not: a traceback, or the
# master reporting the death of a worker, a --fork child or a companion (after its level letter).
BROKEN = re.compile(
    r"^(Traceback|Exception in thread|\w: (worker \d+ \(pid \d+\)|child \d+|the [\w ]+?)"
    r" (was killed by signal|exited with status))"
)


def broken(logged: str) -> list[str]:
    """The lines of ``logged`` that say something broke."""
    return [line for line in logged.splitlines() if BROKEN.match(line)]


@dataclass
class BatteryServer:
    """A server shared by the cases of one module, and what it has logged so far."""

    server: Server
    mode: str
    seen: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def od(self) -> Path:
        return self.server.od

    @property
    def concurrent(self) -> bool:
        """Serves another peer while one holds its association (a pool or --fork)."""
        return self.mode in ("pool", "fork")

    def new_log(self) -> str:
        """What the server logged since the last call."""
        text = self.server.log
        new, self.seen = text[self.seen :], len(text)
        return new

    def check(self, during: bool = False) -> None:
        """The server is alive, serves a real sender now, and logged no breakage.

        ``during``: a bad peer still holds its connection (only a pool can serve meanwhile).
        """
        assert self.server.alive(), f"the server died:\n{self.server.log[-4000:]}"
        echo = run_dcmtk("echoscu", "-to", "10", "127.0.0.1", str(self.port), timeout=60)
        assert echo.returncode == 0, (
            f"echoscu was not served{' during the bad peer' if during else ''}: "
            f"{echo.stdout}{echo.stderr}\n{self.server.log[-4000:]}"
        )
        logged = self.new_log()
        if not AGAINST_REFERENCE:
            lines = broken(logged)
            assert not lines, f"the server logged {lines}:\n{logged[-4000:]}"


def start_battery_server(args: Sequence[str], mode: str, root: Path) -> Server:
    od = root / "od"
    od.mkdir()
    log = root / "server.log"
    if SERVER_KIND == "dcmtk":
        return start_dcmtk_storescp([*TIMEOUT_ARGS, *args], od, log)
    if SERVER_KIND == "pynetdicom":
        return start_pynetdicom_storescp(args, od, log)
    tmp = root / "tmp"
    tmp.mkdir()
    return start_storescpd(
        [*STORESCPD_ARGS, *MODES[mode], *args], od, log, extra_env={"TMPDIR": str(tmp)}
    )


def start_pynetdicom_storescp(args: Sequence[str], od: Path, log: Path) -> Server:
    """pynetdicom's own ``storescp`` app (its timeouts as ours) on a free loopback port."""
    port = free_port()
    argv = [sys.executable, "-m", "pynetdicom", "storescp", "-ba", "127.0.0.1",
            "-ta", str(TIMEOUT), "-td", str(TIMEOUT), "-tn", str(TIMEOUT), *args,
            "-od", str(od), str(port)]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    return await_listening(Server(proc, port, od, log), "pynetdicom's storescp", 20)


@pytest.fixture(scope="module", params=list(MODES))
def battery_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BatteryServer]:
    """One server per module and mode; it must still stop cleanly after all the cases."""
    mode = str(request.param)
    if AGAINST_REFERENCE and mode != "single":
        pytest.skip(f"the {SERVER_KIND} reference runs in the single-process mode only")
    root = tmp_path_factory.mktemp(f"battery-{mode}")
    server = start_battery_server(getattr(request.module, "SERVER_ARGS", ()), mode, root)
    try:
        yield BatteryServer(server, mode)
    finally:
        status = server.stop(signal.SIGKILL if AGAINST_REFERENCE else signal.SIGTERM)
    if not AGAINST_REFERENCE:
        assert status == 0, f"storescpd exited with {status}:\n{server.log[-4000:]}"


@pytest.fixture
def bserver(battery_server: BatteryServer) -> BatteryServer:
    """The module's server, with the log of earlier cases put aside."""
    battery_server.new_log()
    return battery_server


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

BATTERY_DIR = Path(__file__).parent
_results: dict[str, str] = {}


def _case_name(nodeid: str) -> str | None:
    path, _, rest = nodeid.partition("::")
    parts = Path(path).parts
    if "battery" not in parts:
        return None
    return f"{Path(path).name}::{rest}"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    name = _case_name(report.nodeid)
    if name is None:
        return
    if report.failed:
        _results[name] = "FAIL"
    elif report.skipped:
        _results.setdefault(name, "SKIP")
    elif report.when == "call":
        _results.setdefault(name, "PASS")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _results:
        return
    terminalreporter.section(f"battery ({SERVER_KIND})")
    for name, verdict in _results.items():
        terminalreporter.write_line(f"{verdict} {name}")
    counts = {v: sum(1 for r in _results.values() if r == v) for v in ("PASS", "FAIL", "SKIP")}
    line = f"battery: {counts['PASS']} passed, {counts['FAIL']} failed"
    if counts["SKIP"]:
        line += f", {counts['SKIP']} skipped"
    terminalreporter.write_line(line)
