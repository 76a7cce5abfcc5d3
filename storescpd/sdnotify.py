"""The sd_notify(3) protocol: tell systemd (or a test) that we are ready or stopping.

A no-op when ``NOTIFY_SOCKET`` is not set. Knows nothing about DICOM.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)
_warned = False


def _mark_warned() -> None:
    global _warned
    _warned = True


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``); return whether a notify socket was there."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as err:
        # Said once: a manager that stopped listening should not fill the log.
        level = logging.DEBUG if _warned else logging.WARNING
        log.log(level, "cannot notify %s: %s", address, err)
        _mark_warned()
        return False
    return True
