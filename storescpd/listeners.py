"""Listening sockets: bind one ourselves, or adopt those systemd passed (``LISTEN_FDS``).

Knows nothing about DICOM.
"""

from __future__ import annotations

import os
import socket

SD_LISTEN_FDS_START = 3
BACKLOG = 50  # as DCMTK's storescp


def bind(port: int, host: str = "") -> socket.socket:
    """Listen on ``host:port`` with SO_REUSEADDR; ``host`` is an IPv4 or IPv6 address literal
    (all IPv4 addresses by default, like DCMTK). An IPv6 listener takes IPv6 only, so that
    ``::`` and ``0.0.0.0`` can be given together."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(False)
    return sock


def inherited(environ: dict[str, str] | None = None) -> list[socket.socket]:
    """Listening sockets handed over by systemd (or a test) for this very process.

    Follows sd_listen_fds(3): only when ``LISTEN_PID`` names us; the variables are then removed
    so that children started later do not take the sockets for theirs.
    """
    env = os.environ if environ is None else environ
    if env.get("LISTEN_PID") != str(os.getpid()):
        return []
    try:
        count = int(env.get("LISTEN_FDS", "0"))
    except ValueError:
        count = 0
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(name, None)
    sockets = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count):
        sock = socket.socket(fileno=fd)
        sock.set_inheritable(False)
        sockets.append(sock)
    return sockets


def from_inetd() -> socket.socket:
    """Take the socket inetd/xinetd/systemd (``Accept=yes``) put on fd 0; silence fds 0–2.

    xinetd puts the connection on fd 2 as well, so nothing may ever be written to stderr:
    0, 1 and 2 are reopened on /dev/null before anything else happens. Raises OSError when that
    fails or when fd 0 is not a socket.
    """
    fd = os.dup(0)
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        os.close(fd)
        raise
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        for target in (0, 1, 2):
            os.dup2(devnull, target)
    finally:
        os.close(devnull)
    sock.set_inheritable(False)
    return sock


def is_listening(sock: socket.socket) -> bool:
    """True for a listening socket (inetd's ``wait`` contract), False for a connection."""
    return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))


def peer_of(sock: socket.socket) -> tuple[str, int]:
    """The peer's (address, port); for a UNIX socket (socat) the address socat exported."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        address = sock.getpeername()
        return str(address[0]), int(address[1])
    return os.environ.get("SOCAT_PEERADDR", "unknown"), int(os.environ.get("SOCAT_PEERPORT", "0"))
