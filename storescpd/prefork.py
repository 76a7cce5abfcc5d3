"""The pre-fork pool: long-lived workers, each handed one accepted socket at a time.

The master accepts, picks an idle worker and passes the connection over that worker's channel
(SCM_RIGHTS), then closes its copy. It grows the pool up to ``max_workers`` when all are busy
and, when even that is full, gives a busy worker a moment (``FULL_POOL_WAIT``) to finish, then
answers the peer with a transient A-ASSOCIATE-RJ (local limit exceeded) instead of leaving it
waiting. Dead workers are reaped, logged and replaced; a worker that cannot even boot stops the
server instead of a respawn loop; a silent one (``--worker-timeout``) is killed. HUP replaces
every worker: the old ones finish what they serve, new ones take the new connections. This
module never imports DICOM code: the worker's entry point is given by the CLI.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import enum
import gc
import logging
import os
import select
import selectors
import signal
import socket
import time
from collections.abc import Callable, Sequence
from typing import NoReturn

from storescpd import fdpass, sdnotify
from storescpd.exitcodes import ExitCode
from storescpd.heartbeat import Heartbeats
from storescpd.master import Admit, SingleProcessServer

log = logging.getLogger(__name__)

WorkerEntry = Callable[[socket.socket, int], int]
"""Runs in a forked worker: serves sockets from its channel; returns the exit status."""


FULL_POOL_WAIT = 1.0
"""How long a connection that finds every worker busy (and the pool at --max-workers) waits
for one to finish before the transient A-ASSOCIATE-RJ: a sender that releases and at once
associates again must not be refused because its worker is still tidying up."""


class State(enum.Enum):
    BOOTING = "booting"  # forked, has not yet said it is idle
    IDLE = "idle"
    BUSY = "busy"
    RETIRING = "retiring"  # asked to leave after what it serves (HUP, TTOU)
    GONE = "gone"  # channel closed, waiting to be reaped


@dataclasses.dataclass
class Worker:
    index: int
    pid: int
    channel: socket.socket
    state: State = State.BOOTING
    booted: bool = False  # has said "idle" at least once
    idle_since: float = 0.0
    stored: int = 0  # objects it has reported as stored
    killed: bool = False  # by the master for silence; reaping will tell
    peer: str = ""  # address of the peer it serves, while busy


@dataclasses.dataclass(frozen=True)
class PoolSize:
    """Workers kept ready, the most the pool may grow to, and how long one may stay silent."""

    workers: int
    max_workers: int
    worker_timeout: float = 0.0  # 0: no heartbeat checks
    idle_timeout: float = 60.0  # workers beyond ``workers`` idle this long leave


class PoolServer(SingleProcessServer):
    """Serve associations with a pool of pre-forked processes.

    Parameters
    ----------
    listeners : sequence of socket.socket
        Listening sockets.
    entry : callable
        The worker's main function, called in each forked child with its channel and index.
    size : PoolSize
        Pool size and heartbeat timeout.
    heartbeats : Heartbeats, optional
        The table the workers beat into (required with a worker timeout).
    graceful_timeout : float
        On TERM/INT, how long running associations may take before workers are killed.
    """

    def __init__(
        self,
        listeners: Sequence[socket.socket],
        entry: WorkerEntry,
        size: PoolSize,
        *,
        heartbeats: Heartbeats | None = None,
        graceful_timeout: float = 60.0,
        admit: Admit | None = None,
        max_associations: int = 0,
        max_associations_per_host: int = 0,
    ) -> None:
        super().__init__(
            listeners, lambda conn, peer: None, admit, max_associations, max_associations_per_host
        )
        self.entry = entry
        self.target = size.workers
        self.max_workers = max(size.max_workers, size.workers)
        self.worker_timeout = size.worker_timeout if heartbeats is not None else 0.0
        self.idle_timeout = size.idle_timeout
        self.heartbeats = heartbeats
        self.graceful_timeout = graceful_timeout
        self.workers: dict[int, Worker] = {}
        self.pending: collections.deque[tuple[socket.socket, tuple[str, int]]] = collections.deque()
        # Connections waiting (until a deadline) for a busy worker of a full pool to finish.
        self.waiting: collections.deque[tuple[socket.socket, tuple[str, int], float]] = (
            collections.deque()
        )
        self._announce = False  # READY=1 owed once no worker is booting
        self.stored = 0  # objects stored by all workers, as they reported after associations

    def run(self) -> None:
        self._install_signals()  # before the first fork: a worker may die at once
        for signo in (signal.SIGTTIN, signal.SIGTTOU):
            signal.signal(signo, self._on_resize)
        self._top_up()
        super().run()

    def renew(self, entry: WorkerEntry, size: PoolSize) -> None:
        """HUP: new workers run ``entry``; the old ones leave after their association."""
        self.entry = entry
        self.target = size.workers
        self.max_workers = max(size.max_workers, size.workers)
        self.idle_timeout = size.idle_timeout
        if self.heartbeats is not None:
            self.worker_timeout = size.worker_timeout
        for worker in self._live():
            self._retire(worker)
        self._top_up()

    # --- the loop's hooks -------------------------------------------------------------------

    def _ready(self) -> None:
        self._announce = True
        self._announce_if_ready()

    def _announce_if_ready(self) -> None:
        if self._announce and not any(w.state is State.BOOTING for w in self.workers.values()):
            self._announce = False
            sdnotify.notify("READY=1")
            notify_status(self.workers, self.stored)

    def _on_ready(self, key: selectors.SelectorKey) -> None:
        if isinstance(key.data, Worker):
            self._on_worker_message(key.data)
        else:
            super()._on_ready(key)

    def _select_timeout(self) -> float | None:
        waits = [self.worker_timeout / 4] if self.worker_timeout else []
        if self.waiting:
            waits.append(max(0.0, self.waiting[0][2] - time.monotonic()))
        surplus = self._surplus()
        if surplus:
            waits.append(max(0.0, surplus[0].idle_since + self.idle_timeout - time.monotonic()))
        return min(waits) if waits else None

    def _surplus(self) -> list[Worker]:
        """Idle workers beyond the pool's size, longest idle first."""
        if len(self._live()) <= self.target:
            return []
        idle = [w for w in self.workers.values() if w.state is State.IDLE]
        return sorted(idle, key=lambda w: w.idle_since)

    def _tick(self) -> None:
        super()._tick()
        now = time.monotonic()
        while self.waiting and self.waiting[0][2] <= now:
            conn, peer, _deadline = self.waiting.popleft()
            self._reject(conn, peer[0], f"all {len(self._live())} workers busy")
        for worker in self._surplus():
            if now - worker.idle_since < self.idle_timeout or len(self._live()) <= self.target:
                break
            log.info("worker %d idle for %g s beyond the pool's size, retiring it",
                     worker.index, self.idle_timeout)  # fmt: skip
            self._retire(worker)
        if self.worker_timeout and self.heartbeats is not None:
            now = time.monotonic()
            for worker in self.workers.values():
                silent = self.heartbeats.silent_for(worker.index, now)
                watched = worker.state is not State.GONE and not worker.killed
                if watched and silent > self.worker_timeout:
                    self._kill_silent(worker, silent)

    def _drain_signals(self) -> None:
        super()._drain_signals()  # reaps
        if not self.stopping:
            self._top_up()

    def _running(self) -> int:
        busy = (State.BUSY, State.RETIRING)
        serving = sum(w.state in busy for w in self.workers.values())
        return serving + len(self.pending) + len(self.waiting)

    def _running_from(self, host: str) -> int:
        busy = (State.BUSY, State.RETIRING)
        serving = sum(w.state in busy and w.peer == host for w in self.workers.values())
        queued = [peer for _conn, peer in self.pending]
        queued += [peer for _conn, peer, _deadline in self.waiting]
        return serving + sum(peer[0] == host for peer in queued)

    def _catch_up(self) -> None:
        self._read_busy_workers()

    def _children(self) -> set[int]:
        return super()._children() | set(self.workers)

    # --- accepting and handing off ----------------------------------------------------------

    def _dispatch(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        worker = self._idle_worker() or self._newly_idle_worker()
        if worker is not None:
            self._hand(worker, conn, peer)
            return
        if self._booting() <= len(self.pending) and len(self._live()) < self.max_workers:
            self._spawn()
        if self._booting() > len(self.pending):
            self.pending.append((conn, peer))  # handed over as soon as a worker is up
            return
        busy = sum(w.state is State.BUSY for w in self.workers.values())
        if len(self.waiting) < busy:
            self.waiting.append((conn, peer, time.monotonic() + FULL_POOL_WAIT))
            return
        self._reject(conn, peer[0], f"all {len(self._live())} workers busy")

    def _hand(self, worker: Worker, conn: socket.socket, peer: tuple[str, int]) -> None:
        try:
            fdpass.send_socket(worker.channel, conn, peer)
        except OSError as err:
            log.error("cannot hand connection from %s to worker %d: %s", peer[0], worker.index, err)
            self._lose(worker)
        else:
            worker.state = State.BUSY
            worker.peer = peer[0]
            notify_status(self.workers, self.stored)
        finally:
            conn.close()

    def _idle_worker(self) -> Worker | None:
        for worker in self.workers.values():
            if worker.state is State.IDLE:
                return worker
        return None

    def _newly_idle_worker(self) -> Worker | None:
        """Read what busy workers have already said: one that just finished an association
        may have reported idle in the same instant this connection arrived."""
        self._read_busy_workers()
        return self._idle_worker()

    def _read_busy_workers(self) -> None:
        serving = (State.BUSY, State.RETIRING)
        busy = [w.channel for w in self.workers.values() if w.state in serving]
        if busy:
            readable, _, _ = select.select(busy, [], [], 0)
            by_channel = {w.channel: w for w in self.workers.values()}
            for channel in readable:
                self._on_worker_message(by_channel[channel])

    def _live(self) -> list[Worker]:
        """The workers that count towards the pool's size."""
        live = (State.BOOTING, State.IDLE, State.BUSY)
        return [w for w in self.workers.values() if w.state in live]

    def _booting(self) -> int:
        return sum(w.state is State.BOOTING for w in self.workers.values())

    def _shed_pending(self) -> None:
        """Connections waiting for workers that will not come: reject them."""
        while len(self.pending) > self._booting():
            conn, peer = self.pending.pop()
            self._reject(conn, peer[0], "no worker came up")

    # --- workers ----------------------------------------------------------------------------

    def _spawn(self) -> Worker | None:
        """Fork a worker; None when the system has no descriptor or process to spare (the
        pool then serves with what it has, and tops up on the next signal)."""
        index = self._free_index()
        try:
            mine, theirs = fdpass.channel()
        except OSError as err:
            log.error("cannot start a worker: %s", err.strerror or err)
            return None
        if self.heartbeats is not None:
            self.heartbeats.beat(index)  # booting counts as a sign of life
        # What the master holds now is never garbage to a worker: kept out of the collector,
        # a worker's full collection does not write to (and so unshare) every page of it.
        gc.freeze()
        try:
            pid = os.fork()
        except OSError as err:
            log.error("cannot start a worker: %s", err.strerror or err)
            mine.close()
            theirs.close()
            return None
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

    def _leave_master_state(self) -> None:
        super()._leave_master_state()
        for worker in self.workers.values():
            worker.channel.close()
        for conn, _peer in self.pending:
            conn.close()
        for conn, _peer, _deadline in self.waiting:
            conn.close()
        self.selector = selectors.DefaultSelector()

    def _run_worker(self, channel: socket.socket, index: int) -> NoReturn:
        status: int = ExitCode.SOFTWARE
        try:
            self._leave_master_state()
            status = self.entry(channel, index)
        except BaseException:  # a forked worker must never unwind into the master's loop
            log.exception("worker %d failed", index)
        finally:
            logging.shutdown()
            os._exit(status)

    def _on_worker_message(self, worker: Worker) -> None:
        try:
            message = fdpass.receive_message(worker.channel)
        except BlockingIOError:
            return  # read already, e.g. by _read_busy_workers after this wake-up's select
        except (OSError, ValueError) as err:
            log.debug("bad message from worker %d: %s", worker.index, err)
            message = None
        if message is None:
            self._lose(worker)
            self._shed_pending()
            return
        stored = message.get("stored")
        if isinstance(stored, int) and stored > worker.stored:
            self.stored += stored - worker.stored
            worker.stored = stored
        if message.get("state") == "idle":
            worker.peer = ""
        if message.get("state") == "idle" and worker.state is not State.RETIRING:
            worker.booted = True
            worker.state = State.IDLE
            worker.idle_since = time.monotonic()
            if self.pending:
                self._hand(worker, *self.pending.popleft())
            elif self.waiting:
                conn, peer, _deadline = self.waiting.popleft()
                self._hand(worker, conn, peer)
            self._announce_if_ready()
        notify_status(self.workers, self.stored)

    def _retire(self, worker: Worker) -> None:
        try:
            fdpass.send_retire(worker.channel)
        except OSError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGTERM)
        if worker.state is not State.GONE:
            worker.state = State.RETIRING

    def _kill_silent(self, worker: Worker, silent: float) -> None:
        log.error(
            "worker %d (pid %d) silent for %.1f s (--worker-timeout %g), killing it",
            worker.index,
            worker.pid,
            silent,
            self.worker_timeout,
        )
        worker.killed = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signal.SIGKILL)

    def _lose(self, worker: Worker) -> None:
        if worker.state is not State.GONE:
            worker.state = State.GONE
            registered = self.selector.get_map()  # None once the loop has closed it
            if registered is not None and worker.channel in registered:
                self.selector.unregister(worker.channel)
            worker.channel.close()

    def _reap(self) -> None:
        super()._reap()
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            worker = self.workers.pop(pid, None)
            if worker is None:  # a companion, or a stranger under PID 1
                self.companions.exited(pid, status, restart=not self.stopping)
                continue
            self._lose(worker)
            _log_exit(worker, status)
            if status != 0:
                self.after_crash(pid)
            if (
                not worker.booted
                and os.WIFEXITED(status)
                and os.WEXITSTATUS(status) == ExitCode.BOOT_FAILED
            ):
                log.critical("a worker could not start; stopping rather than respawning it")
                self.exit_status = ExitCode.START_UP
                self.stopping = True
        self._shed_pending()
        self._announce_if_ready()

    def _top_up(self) -> None:
        while len(self._live()) < self.target and not self.stopping:
            if self._spawn() is None:
                break

    def _on_resize(self, signo: int, frame: object) -> None:
        if signo == signal.SIGTTIN:  # the admin's word beats --max-workers
            self.target += 1
            self.max_workers = max(self.max_workers, self.target)
        elif self.target > 1:
            self.target -= 1
            idle = self._idle_worker()
            if idle is not None and len(self._live()) > self.target:
                self._retire(idle)

    def _stop_children(self) -> None:
        while self.pending:
            conn, _peer = self.pending.popleft()
            conn.close()
        while self.waiting:
            conn, _peer, _deadline = self.waiting.popleft()
            conn.close()
        for worker in list(self.workers.values()):
            self._retire(worker)
        deadline = self._graceful_deadline(self.graceful_timeout)
        while self.workers and not self.hurry and time.monotonic() < deadline:
            self._wait_any(deadline)
        for worker in list(self.workers.values()):
            log.warning("worker %d did not finish in time, killing it", worker.index)
            worker.killed = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGKILL)
        while self.workers:
            self._wait_any(None)

    def _wait_any(self, deadline: float | None) -> None:
        if deadline is not None:
            self._wait_for_signal(deadline)  # SIGCHLD still writes to the wakeup socket
            self._reap()
            return
        pid, status = os.waitpid(-1, 0)
        worker = self.workers.pop(pid, None)
        if worker is not None:
            self._lose(worker)
            _log_exit(worker, status)
            if status != 0:
                self.after_crash(pid)
        else:
            self.companions.exited(pid, status, restart=False)


def _log_exit(worker: Worker, status: int) -> None:
    if os.WIFSIGNALED(status):
        signo = os.WTERMSIG(status)
        hint = " (perhaps the OOM killer)" if signo == signal.SIGKILL and not worker.killed else ""
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


def notify_status(workers: dict[int, Worker], stored: int) -> None:
    """Tell systemd how busy the pool is (``systemctl status`` shows it)."""
    busy = sum(w.state in (State.BUSY, State.RETIRING) for w in workers.values())
    sdnotify.notify(f"STATUS={busy} of {len(workers)} workers busy, {stored} objects stored")
