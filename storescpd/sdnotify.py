"""The sd_notify(3) protocol: tell systemd (or a test) that we are ready or stopping.

A no-op when ``NOTIFY_SOCKET`` is not set. The socket is connected once, at start-up, so that
messages still get through after ``--user`` dropped the rights to reach it. Knows nothing about
DICOM.
"""

from __future__ import annotations

import logging
import os
import socket

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
