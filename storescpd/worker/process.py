"""A pool worker's life: wait for a socket, serve its association, report idle, repeat.

Runs in a process forked by the master (see :mod:`storescpd.prefork`); it never returns into
the master's code. TERM while idle ends it at once; TERM while serving ends it after the
running association. It also retires itself after ``max_requests`` associations.
"""

from __future__ import annotations

import logging
import signal
import socket
from collections.abc import Callable
from types import FrameType

from storescpd import fdpass
from storescpd.exitcodes import ExitCode
from storescpd.proctitle import set_title
from storescpd.worker.acceptor import Acceptor

log = logging.getLogger(__name__)

Serve = Callable[[socket.socket, tuple[str, int]], None]


class _Stop(Exception):
    """Raised by TERM in an idle worker to leave the blocking wait for a socket."""


class WorkerLoop:
    """The loop of one pool worker.

    Parameters
    ----------
    serve : callable
        Serves one association on a connected socket and closes it.
    max_requests : int
        Associations to serve before the worker retires (0: no limit).
    """

    def __init__(self, serve: Serve, max_requests: int = 0) -> None:
        self.serve = serve
        self.max_requests = max_requests
        self.busy = False
        self.stopping = False

    def run(self, channel: socket.socket, index: int) -> int:
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C goes to the master
        served = 0
        try:
            while not self.stopping:
                set_title(f"worker {index} [idle]")
                received = fdpass.receive_socket(channel)
                if received is None:
                    log.info("worker %d: master has gone, leaving", index)
                    break
                conn, peer = received
                set_title(f"worker {index} [{peer[0]}]")
                self.busy = True
                try:
                    self.serve(conn, peer)
                finally:
                    self.busy = False
                served += 1
                if self.max_requests and served >= self.max_requests:
                    log.info("worker %d retires after %d associations", index, served)
                    break
                fdpass.send_message(channel, {"state": "idle", "served": served})
        except _Stop:
            pass
        return ExitCode.OK

    def _on_term(self, signo: int, frame: FrameType | None) -> None:
        self.stopping = True
        if not self.busy:
            raise _Stop()


def run_pool_worker(
    acceptor: Acceptor, max_requests: int, channel: socket.socket, index: int
) -> int:
    """Entry point of a pre-forked worker (called in the child right after fork)."""
    acceptor.fresh_spool()
    try:
        return WorkerLoop(acceptor.serve, max_requests).run(channel, index)
    finally:
        acceptor.close()
