"""Waiting for an association's end, and ending it, with every wait bounded by a timeout.

pynetdicom 3.0.4 runs an acceptor in two threads: the association thread (a daemon) and the DUL
thread that drives the PS3.8 state machine. Two of its waits outlast the connection:

* before the A-ASSOCIATE-RQ, the association thread waits for it for the whole ACSE timeout
  even when the DUL has already dropped the connection (garbage instead of a request, an early
  A-ABORT, a close): :class:`OpeningWatch` sees the DUL return to Sta1 and the wait is left
  to time out on its own, with nothing left for it to touch;
* ``Association.kill()`` waits for the DUL to reach Sta1, which it never does when an exception
  ended the association thread in the middle of a negotiation: :func:`stop_dul` waits at most
  the ARTIM time, then aborts the connection itself.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time

from pynetdicom import evt
from pynetdicom.association import Association

log = logging.getLogger(__name__)

PROVIDER_ABORT = bytes([0x07, 0, 0, 0, 0, 4, 0, 0, 2, 0])  # A-ABORT, source 2 (PS3.8 §9.3.8)
POLL = 0.05


class OpeningWatch:
    """Notes when the DUL is back in Sta1 before any A-ASSOCIATE-RQ was taken up."""

    def __init__(self, assoc: Association) -> None:
        self.assoc = assoc
        self.requested = False
        self.gone = threading.Event()
        assoc.bind(evt.EVT_FSM_TRANSITION, self._on_transition)

    def request_taken(self) -> None:
        """The request reached the association thread: from now on its own ending applies."""
        self.requested = True
        self.assoc.unbind(evt.EVT_FSM_TRANSITION, self._on_transition)

    def _on_transition(self, event: evt.Event) -> None:
        if event.next_state == "Sta1" and event.current_state != "Sta1":
            self.gone.set()

    def wait(self) -> bool:
        """Join the association thread; True when it was left waiting for a request that the
        closed connection will never bring."""
        assoc = self.assoc
        while assoc.is_alive():
            assoc.join(POLL)
            if self.gone.is_set() and not self.requested:
                return True
        return False


def stop_dul(assoc: Association, sock: socket.socket, peer: str, artim: float) -> None:
    """Wait (as ``Association.kill()`` does) for the DUL thread to reach Sta1 and stop, but
    at most ``artim`` seconds; then send an A-ABORT, close ``sock`` and stop the DUL."""
    deadline = time.monotonic() + artim
    while assoc.dul.is_alive() and not assoc.dul.stop_dul():
        if time.monotonic() > deadline:
            log.error("association with %s ended abnormally, aborting it", peer)
            with contextlib.suppress(OSError):
                sock.sendall(PROVIDER_ABORT)
            assoc.dul.kill_dul()
            close(sock)
            assoc.dul.join(5)
            return
        time.sleep(0.01)


def close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
