"""A pool worker's life: wait for a socket, serve its association, report idle, repeat.

Runs in a process forked by the master (see :mod:`storescpd.prefork`); it never returns into
the master's code. TERM while idle ends it at once; TERM while serving ends it after the
running association (that is also how a HUP retires it). It retires itself after
``max_requests`` associations, or when its unique memory exceeds ``max_memory_mb`` after one.
With a heartbeat table it beats from its own loop (see :mod:`storescpd.heartbeat`).
"""

from __future__ import annotations

import contextlib
import logging
import select
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType

import psutil

from storescpd import fdpass
from storescpd.exitcodes import ExitCode
from storescpd.heartbeat import Heartbeats
from storescpd.proctitle import set_title
from storescpd.worker.acceptor import Acceptor

log = logging.getLogger(__name__)

Serve = Callable[[socket.socket, tuple[str, int]], None]


class _Stop(Exception):
    """Raised by TERM in an idle worker to leave the blocking wait for a socket."""


@dataclass(frozen=True)
class Limits:
    """When a worker retires or counts as stuck (0: never)."""

    max_requests: int = 0
    max_memory_mb: int = 0
    timeout: float = 0.0


class WorkerLoop:
    """The loop of one pool worker.

    Parameters
    ----------
    serve : callable
        Serves one association on a connected socket and closes it.
    limits : Limits
        Recycling and heartbeat settings.
    heartbeats : Heartbeats, optional
        Where to beat (needed when ``limits.timeout`` is set).
    handler_running_for : callable
        Seconds the current request handler has been running (0 when none runs); a worker
        whose handler runs longer than the timeout stops beating.
    stored : callable
        How many objects this worker has stored so far (reported to the master).
    """

    def __init__(
        self,
        serve: Serve,
        limits: Limits = Limits(),
        heartbeats: Heartbeats | None = None,
        handler_running_for: Callable[[], float] = lambda: 0.0,
        stored: Callable[[], int] = lambda: 0,
    ) -> None:
        self.serve = serve
        self.stored = stored
        self.limits = limits
        self.heartbeats = heartbeats if limits.timeout else None
        self.handler_running_for = handler_running_for
        self.busy = False
        self.stopping = False
        self.index = 0

    def run(self, channel: socket.socket, index: int) -> int:
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C goes to the master
        self.index = index
        served = 0
        try:
            while not self.stopping:
                set_title(f"worker {index} [idle]")
                # The first "idle" tells the master this worker has booted.
                message = {"state": "idle", "served": served, "stored": self.stored()}
                fdpass.send_message(channel, message)
                received = self._wait(channel)
                if received is None:
                    log.info("worker %d: leaving (retired or the master has gone)", index)
                    break
                conn, peer = received
                set_title(f"worker {index} [{peer[0]}]")
                self.busy = True
                try:
                    with self._beating():
                        self.serve(conn, peer)
                finally:
                    self.busy = False
                served += 1
                if self._should_retire(served):
                    break
        except _Stop:
            pass
        return ExitCode.OK

    def _wait(self, channel: socket.socket) -> tuple[socket.socket, tuple[str, int]] | None:
        if self.heartbeats is not None:
            interval = self.limits.timeout / 3
            while True:
                self.heartbeats.beat(self.index)
                readable, _, _ = select.select([channel], [], [], interval)
                if readable:
                    break
        return fdpass.receive_socket(channel)

    @contextlib.contextmanager
    def _beating(self) -> Iterator[None]:
        """Beat from a thread while an association is served, unless a handler is stuck."""
        heartbeats = self.heartbeats
        if heartbeats is None:
            yield
            return
        done = threading.Event()
        interval = self.limits.timeout / 3

        def beat() -> None:
            while not done.wait(interval):
                if self.handler_running_for() < self.limits.timeout:
                    heartbeats.beat(self.index)

        heartbeats.beat(self.index)
        thread = threading.Thread(target=beat, name="heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def _should_retire(self, served: int) -> bool:
        limits = self.limits
        if limits.max_requests and served >= limits.max_requests:
            log.info("worker %d retires after %d associations", self.index, served)
            return True
        if limits.max_memory_mb:
            uss = psutil.Process().memory_full_info().uss / 2**20
            if uss > limits.max_memory_mb:
                log.info(
                    "worker %d retires: %.0f MB of unique memory, over the %d MB limit",
                    self.index,
                    uss,
                    limits.max_memory_mb,
                )
                return True
        return False

    def _on_term(self, signo: int, frame: FrameType | None) -> None:
        self.stopping = True
        if not self.busy:
            raise _Stop()


def run_pool_worker(
    acceptor: Acceptor,
    limits: Limits,
    heartbeats: Heartbeats | None,
    channel: socket.socket,
    index: int,
) -> int:
    """Entry point of a pre-forked worker (called in the child right after fork)."""
    try:
        acceptor.fresh_spool()
    except OSError as err:
        log.critical("worker %d cannot start: %s", index, err)
        return ExitCode.BOOT_FAILED
    try:
        acceptor.process_name = f"worker {index}"
        acceptor.announce.slot = index
        loop = WorkerLoop(
            acceptor.serve,
            limits,
            heartbeats,
            acceptor.handler_running_for,
            lambda: acceptor.stored,
        )
        return loop.run(channel, index)
    finally:
        acceptor.close()
