"""The accepting process: waits on listeners and signals, accepts, hands connections on.

In DCMTK's default single-process mode it serves each association itself, one at a time, through
the ``serve`` callable it was given (the worker's entry: this module never imports DICOM code).
Signal handlers only record; the loop acts (STYLE example 1): TERM/INT stop after the running
association, a second TERM/INT or QUIT stops at once.
"""

from __future__ import annotations

import enum
import logging
import selectors
import signal
import socket
from collections.abc import Callable, Sequence
from types import FrameType

from storescpd import sdnotify

log = logging.getLogger(__name__)

Serve = Callable[[socket.socket, tuple[str, int]], None]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Source(enum.Enum):
    LISTENER = enum.auto()
    SIGNALS = enum.auto()


class StopNow(BaseException):
    """Raised in the main thread by a second stop signal: abandon the running association."""


class SingleProcessServer:
    """Serve associations one at a time on ``listeners`` until told to stop.

    Parameters
    ----------
    listeners : sequence of socket.socket
        Listening sockets (bound here or inherited from systemd).
    serve : callable
        Serves one association on a connected socket and closes it.
    """

    def __init__(self, listeners: Sequence[socket.socket], serve: Serve) -> None:
        self.listeners = list(listeners)
        self.serve = serve
        self.stopping = False
        self.serving = False
        self.selector = selectors.DefaultSelector()
        self._wakeup_r, self._wakeup_w = socket.socketpair()

    def run(self) -> None:
        """Loop until a stop signal; returns normally after a graceful stop."""
        self._install_signals()
        for sock in self.listeners:
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ, Source.LISTENER)
        self.selector.register(self._wakeup_r, selectors.EVENT_READ, Source.SIGNALS)
        sdnotify.notify("READY=1")
        try:
            while not self.stopping:
                for key, _ in self.selector.select():
                    if key.data is Source.SIGNALS:
                        self._drain_signals()
                    elif not self.stopping:
                        self._accept(key.fileobj)  # type: ignore[arg-type]
        except StopNow:
            log.warning("stopping at once, abandoning the running association")
        finally:
            sdnotify.notify("STOPPING=1")
            for sock in self.listeners:
                sock.close()
            self.selector.close()

    def _accept(self, listener: socket.socket) -> None:
        try:
            conn, peer = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:
            log.error("accept failed: %s", err)
            return
        self.serving = True
        try:
            self.serve(conn, (str(peer[0]), int(peer[1])))
        finally:
            self.serving = False

    def _install_signals(self) -> None:
        for sock in (self._wakeup_r, self._wakeup_w):
            sock.setblocking(False)
        signal.set_wakeup_fd(self._wakeup_w.fileno(), warn_on_full_buffer=False)
        for signo in STOP_SIGNALS:
            signal.signal(signo, self._on_stop_signal)
        signal.signal(signal.SIGQUIT, self._on_quit)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)

    def _on_stop_signal(self, signo: int, frame: FrameType | None) -> None:
        # Runs in the main thread between bytecodes; only records, except when a second
        # stop signal arrives while an association is being served.
        if self.stopping and self.serving:
            raise StopNow()
        self.stopping = True

    def _on_quit(self, signo: int, frame: FrameType | None) -> None:
        self.stopping = True
        if self.serving:
            raise StopNow()

    def _drain_signals(self) -> None:
        try:
            while self._wakeup_r.recv(512):
                pass
        except BlockingIOError:
            pass
        if self.stopping:
            log.info("stop requested, no further associations are accepted")
