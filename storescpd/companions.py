"""Long-lived helper processes the master keeps running beside its workers (the coordinator).

A companion is forked from the master at start-up, restarted when it dies while the server is
serving, and stopped last, after every association has finished, so that it sees every event
published before the end. One that cannot even start (exit status ``BOOT_FAILED``) stops the
server instead of being restarted forever. Knows nothing about DICOM.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import NoReturn

from storescpd.exitcodes import ExitCode

log = logging.getLogger(__name__)

Entry = Callable[[], int]
"""The companion's main function; runs in the forked child, returns its exit status."""


@dataclasses.dataclass
class Companion:
    name: str
    entry: Entry
    pid: int = 0
    restarts: int = 0


class Companions:
    """The master's companions, with what the master must do in a freshly forked child."""

    def __init__(
        self,
        leave_master: Callable[[], None],
        after_crash: Callable[[int], None] = lambda pid: None,
    ) -> None:
        self.leave_master = leave_master
        self.after_crash = after_crash  # removes what a companion that did not exit 0 left
        self.all: list[Companion] = []
        self.failed = False  # one could not start: the server must stop

    def add(self, name: str, entry: Entry) -> None:
        self.all.append(Companion(name, entry))

    def renew(self, name: str, entry: Entry) -> None:
        """Run ``entry`` from now on: the running one is asked to stop (TERM) and is started
        again with it when it has (HUP)."""
        for companion in self.all:
            if companion.name == name:
                companion.entry = entry
                if companion.pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(companion.pid, signal.SIGTERM)

    def start(self) -> None:
        for companion in self.all:
            if not companion.pid:
                self._fork(companion)

    def pids(self) -> set[int]:
        return {c.pid for c in self.all if c.pid}

    def _fork(self, companion: Companion) -> None:
        pid = os.fork()
        if pid == 0:
            self._run(companion)
        companion.pid = pid
        log.info("started the %s (pid %d)", companion.name, pid)

    def _run(self, companion: Companion) -> NoReturn:
        status: int = ExitCode.SOFTWARE
        try:
            self.leave_master()
            status = companion.entry()
        except BaseException:  # never unwind into the master's loop
            log.exception("the %s failed", companion.name)
        finally:
            logging.shutdown()
            os._exit(status)

    def reap(self, restart: bool) -> None:
        """Collect companions that ended (only their pids: other children are not ours)."""
        for companion in self.all:
            if not companion.pid:
                continue
            try:
                pid, status = os.waitpid(companion.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = companion.pid, 0
            if pid:
                self._ended(companion, status, restart)

    def exited(self, pid: int, status: int, restart: bool) -> bool:
        """A child someone else reaped with ``waitpid(-1)``: handle it if it is ours."""
        for companion in self.all:
            if companion.pid == pid:
                self._ended(companion, status, restart)
                return True
        return False

    def _ended(self, companion: Companion, status: int, restart: bool) -> None:
        if status != 0:
            self.after_crash(companion.pid)
        companion.pid = 0
        if os.WIFSIGNALED(status):
            how = f"was killed by signal {os.WTERMSIG(status)}"
        else:
            how = f"exited with status {os.WEXITSTATUS(status)}"
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == ExitCode.BOOT_FAILED:
            log.critical("the %s could not start; stopping", companion.name)
            self.failed = True
            return
        if not restart:
            log.info("the %s %s", companion.name, how)
            return
        companion.restarts += 1
        log.warning("the %s %s; starting it again", companion.name, how)
        self._fork(companion)

    def stop(self, timeout: float = 30.0) -> None:
        """TERM every companion, wait up to ``timeout``, then KILL what is left."""
        for companion in self.all:
            if companion.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(companion.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for companion in self.all:
            while companion.pid:
                try:
                    pid, status = os.waitpid(companion.pid, os.WNOHANG)
                except ChildProcessError:
                    pid, status = companion.pid, 0
                if pid:
                    self._ended(companion, status, restart=False)
                elif time.monotonic() >= deadline:
                    log.warning("the %s did not stop in time, killing it", companion.name)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(companion.pid, signal.SIGKILL)
                    os.waitpid(companion.pid, 0)
                    companion.pid = 0
                else:
                    time.sleep(0.01)  # the master has nothing else to do by now
