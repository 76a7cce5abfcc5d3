"""The pre-fork pool: long-lived workers, each handed one accepted socket at a time.

The master accepts, picks an idle worker and passes the connection over that worker's channel
(SCM_RIGHTS), then closes its copy. It grows the pool up to ``max_workers`` when all are busy and,
when even that is full, answers the peer at once with a transient A-ASSOCIATE-RJ (local limit
exceeded) instead of leaving it waiting. Dead workers are reaped, logged and replaced.
This module never imports DICOM code: the worker's entry point is a callable given by the CLI.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
import os
import selectors
import signal
import socket
import time
from collections.abc import Callable, Sequence
from typing import NoReturn

from storescpd import fdpass, sdnotify
from storescpd.master import Admit, SingleProcessServer

log = logging.getLogger(__name__)

WorkerEntry = Callable[[socket.socket, int], int]
"""Runs in a forked worker: serves sockets from its channel; returns the exit status."""

# A-ASSOCIATE-RJ: rejected-transient (2), service-provider presentation (3), local limit (2).
REJECT_LIMIT_EXCEEDED = bytes([0x03, 0x00, 0, 0, 0, 4, 0x00, 2, 3, 2])
DRAIN_SECONDS = 5.0


class State(enum.Enum):
    IDLE = "idle"
    BUSY = "busy"
    GONE = "gone"  # channel closed, waiting to be reaped


@dataclasses.dataclass
class Worker:
    index: int
    pid: int
    channel: socket.socket
    state: State = State.IDLE


@dataclasses.dataclass
class Draining:
    """A rejected connection we read until the peer closes, so the RJ is not lost in a reset."""

    conn: socket.socket
    deadline: float


class PoolServer(SingleProcessServer):
    """Serve associations with a pool of ``workers`` pre-forked processes.

    Parameters
    ----------
    listeners : sequence of socket.socket
        Listening sockets.
    entry : callable
        The worker's main function, called in each forked child with its channel and index.
    workers, max_workers : int
        Processes kept ready, and the most the pool may grow to under load.
    graceful_timeout : float
        On TERM/INT, how long running associations may take before workers are killed.
    """

    def __init__(
        self,
        listeners: Sequence[socket.socket],
        entry: WorkerEntry,
        *,
        workers: int,
        max_workers: int,
        graceful_timeout: float = 60.0,
        admit: Admit | None = None,
    ) -> None:
        super().__init__(listeners, serve=lambda conn, peer: None, admit=admit)
        self.entry = entry
        self.target = workers
        self.max_workers = max(max_workers, workers)
        self.graceful_timeout = graceful_timeout
        self.workers: dict[int, Worker] = {}
        self.draining: list[Draining] = []

    def run(self) -> None:
        signal.signal(signal.SIGCHLD, lambda signo, frame: None)  # wakes the selector
        for signo in (signal.SIGTTIN, signal.SIGTTOU):
            signal.signal(signo, self._on_resize)
        for _ in range(self.target):
            self._spawn()
        try:
            super().run()
        finally:
            self._stop_workers()

    # --- the loop's hooks -------------------------------------------------------------------

    def _on_ready(self, key: selectors.SelectorKey) -> None:
        if isinstance(key.data, Worker):
            self._on_worker_message(key.data)
        elif isinstance(key.data, Draining):
            self._drain(key.data)
        else:
            super()._on_ready(key)

    def _select_timeout(self) -> float | None:
        if not self.draining:
            return None
        return max(0.0, min(d.deadline for d in self.draining) - time.monotonic())

    def _tick(self) -> None:
        now = time.monotonic()
        for item in [d for d in self.draining if d.deadline <= now]:
            self._forget(item)

    def _drain_signals(self) -> None:
        super()._drain_signals()
        self._reap()
        if not self.stopping:
            self._top_up()

    # --- accepting and handing off ----------------------------------------------------------

    def _dispatch(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        worker = self._idle_worker()
        if worker is None and len(self.workers) < self.max_workers:
            worker = self._spawn()
        if worker is None:
            log.warning(
                "all %d workers busy, rejecting association from %s", len(self.workers), peer[0]
            )
            self._reject(conn)
            return
        try:
            fdpass.send_socket(worker.channel, conn, peer)
        except OSError as err:
            log.error("cannot hand connection from %s to worker %d: %s", peer[0], worker.index, err)
            worker.state = State.GONE
        else:
            worker.state = State.BUSY
            notify_status(self.workers)
        finally:
            conn.close()

    def _idle_worker(self) -> Worker | None:
        for worker in self.workers.values():
            if worker.state is State.IDLE:
                return worker
        return None

    def _reject(self, conn: socket.socket) -> None:
        conn.setblocking(False)
        try:
            conn.send(REJECT_LIMIT_EXCEEDED)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            conn.close()
            return
        item = Draining(conn, time.monotonic() + DRAIN_SECONDS)
        self.draining.append(item)
        self.selector.register(conn, selectors.EVENT_READ, item)

    def _drain(self, item: Draining) -> None:
        try:
            if item.conn.recv(65536):
                return
        except BlockingIOError:
            return
        except OSError:
            pass
        self._forget(item)

    def _forget(self, item: Draining) -> None:
        self.selector.unregister(item.conn)
        item.conn.close()
        self.draining.remove(item)

    # --- workers ----------------------------------------------------------------------------

    def _spawn(self) -> Worker:
        index = self._free_index()
        mine, theirs = fdpass.channel()
        pid = os.fork()
        if pid == 0:
            mine.close()
            self._run_worker(theirs, index)
        theirs.close()
        worker = Worker(index, pid, mine)
        self.workers[pid] = worker
        self.selector.register(mine, selectors.EVENT_READ, worker)
        log.info("started worker %d (pid %d)", index, pid)
        return worker

    def _free_index(self) -> int:
        used = {w.index for w in self.workers.values()}
        return next(i for i in range(1, len(used) + 2) if i not in used)

    def _run_worker(self, channel: socket.socket, index: int) -> NoReturn:
        status = 1
        try:
            self._leave_master_state()
            for worker in self.workers.values():
                worker.channel.close()
            for item in self.draining:
                item.conn.close()
            self.selector = selectors.DefaultSelector()
            status = self.entry(channel, index)
        except BaseException:  # a forked worker must never unwind into the master's loop
            log.exception("worker %d failed", index)
        finally:
            logging.shutdown()
            os._exit(status)

    def _on_worker_message(self, worker: Worker) -> None:
        try:
            message = fdpass.receive_message(worker.channel)
        except (OSError, ValueError) as err:
            log.debug("bad message from worker %d: %s", worker.index, err)
            message = None
        if message is None:
            self._lose(worker)
        elif message.get("state") == "idle":
            worker.state = State.IDLE
            notify_status(self.workers)

    def _lose(self, worker: Worker) -> None:
        if worker.state is not State.GONE:
            worker.state = State.GONE
            registered = self.selector.get_map()  # None once the loop has closed it
            if registered is not None and worker.channel in registered:
                self.selector.unregister(worker.channel)
            worker.channel.close()

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue  # e.g. a stranger under PID 1
            self._lose(worker)
            _log_exit(worker, status)

    def _top_up(self) -> None:
        while len(self.workers) < self.target:
            self._spawn()

    def _on_resize(self, signo: int, frame: object) -> None:
        if signo == signal.SIGTTIN:
            self.target = min(self.target + 1, self.max_workers)
        elif self.target > 1:
            self.target -= 1
            idle = self._idle_worker()
            if idle is not None and len(self.workers) > self.target:
                os.kill(idle.pid, signal.SIGTERM)

    def _stop_workers(self) -> None:
        for item in list(self.draining):
            self._forget(item)
        for worker in self.workers.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.graceful_timeout
        while self.workers and time.monotonic() < deadline:
            self._wait_any(deadline)
        for worker in list(self.workers.values()):
            log.warning("worker %d did not stop in time, killing it", worker.index)
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGKILL)
        while self.workers:
            self._wait_any(None)

    def _wait_any(self, deadline: float | None) -> None:
        if deadline is not None:
            # SIGCHLD still writes to the wakeup socket: wait on it instead of sleeping.
            with selectors.DefaultSelector() as sel:
                sel.register(self._wakeup_r, selectors.EVENT_READ)
                sel.select(max(0.0, deadline - time.monotonic()))
            with contextlib.suppress(BlockingIOError):
                while self._wakeup_r.recv(512):
                    pass
            self._reap()
            return
        pid, status = os.waitpid(-1, 0)
        worker = self.workers.pop(pid, None)
        if worker is not None:
            self._lose(worker)
            _log_exit(worker, status)


def _log_exit(worker: Worker, status: int) -> None:
    if os.WIFSIGNALED(status):
        signo = os.WTERMSIG(status)
        hint = " (perhaps the OOM killer)" if signo == signal.SIGKILL else ""
        log.warning(
            "worker %d (pid %d) was killed by signal %d%s", worker.index, worker.pid, signo, hint
        )
    elif os.WEXITSTATUS(status) != 0:
        log.warning(
            "worker %d (pid %d) exited with status %d",
            worker.index,
            worker.pid,
            os.WEXITSTATUS(status),
        )
    else:
        log.info("worker %d (pid %d) exited", worker.index, worker.pid)


def notify_status(workers: dict[int, Worker]) -> None:
    """Tell systemd how busy the pool is (``systemctl status`` shows it)."""
    busy = sum(w.state is State.BUSY for w in workers.values())
    sdnotify.notify(f"STATUS={busy} of {len(workers)} workers busy")
