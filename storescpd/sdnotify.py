"""The sd_notify(3) protocol: tell systemd (or a test) that we are ready, reloading, alive or
stopping.

A no-op when ``NOTIFY_SOCKET`` is not set. The socket is connected once, at start-up, so that
messages still get through after ``--user`` dropped the rights to reach it. Knows nothing about
DICOM.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator

log = logging.getLogger(__name__)


class _Notifier:
    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.address = ""
        self.warned = False

    def connect(self) -> bool:
        address = os.environ.get("NOTIFY_SOCKET", "")
        if not address:
            return False
        if self.sock is not None and address == self.address:
            return True
        self.address = address
        target = "\0" + address[1:] if address.startswith("@") else address  # abstract namespace
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            sock.connect(target)
        except OSError as err:
            sock.close()
            self.complain(err)
            return False
        self.sock = sock
        return True

    def send(self, state: str) -> bool:
        if not self.connect():
            return False
        assert self.sock is not None
        try:
            self.sock.send(state.encode())
        except OSError as err:
            self.complain(err)
            return False
        return True

    def complain(self, err: OSError) -> None:
        # Said once: a manager that stopped listening should not fill the log.
        level = logging.DEBUG if self.warned else logging.WARNING
        log.log(level, "cannot notify %s: %s", self.address, err)
        self.warned = True


_notifier = _Notifier()


def prepare() -> None:
    """Connect to the notify socket now (call before dropping privileges)."""
    _notifier.connect()


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``); return whether it was delivered."""
    return _notifier.send(state)


class Watchdog:
    """``WATCHDOG=1`` every half ``WATCHDOG_USEC``, from the loop that proves we are alive.

    Disabled (interval 0) unless systemd set ``WATCHDOG_USEC`` for this very process
    (``WATCHDOG_PID``, when set, must be our pid: a forked child does not inherit the duty).
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.due = time.monotonic() + interval

    @classmethod
    def from_environment(cls) -> Watchdog:
        try:
            usec = int(os.environ.get("WATCHDOG_USEC", "0"))
            pid = int(os.environ.get("WATCHDOG_PID", str(os.getpid())))
        except ValueError:
            return cls(0)
        return cls(usec / 2e6 if usec > 0 and pid == os.getpid() else 0)

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    def ping_if_due(self) -> None:
        if self.enabled and time.monotonic() >= self.due:
            notify("WATCHDOG=1")
            self.due = time.monotonic() + self.interval

    @contextlib.contextmanager
    def kept_alive(self) -> Iterator[None]:
        """While the loop itself is busy serving (single-process mode), ping from a thread.

        The association being served is bounded by its own timeouts, so this cannot hide a
        hang for longer than those.
        """
        if not self.enabled:
            yield
            return
        done = threading.Event()

        def ping() -> None:
            while not done.wait(max(0.0, self.due - time.monotonic())):
                self.ping_if_due()

        thread = threading.Thread(target=ping, name="watchdog", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()


def descriptors() -> list[int]:
    """The notify socket's descriptor, if connected (to keep it across ``--daemon``)."""
    sock = _notifier.sock
    return [sock.fileno()] if sock is not None else []
