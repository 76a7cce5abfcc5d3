"""Hand a connected socket and its peer address to another process (SCM_RIGHTS).

One message per hand-off on an AF_UNIX SOCK_SEQPACKET pair: the peer address as JSON in the
payload, the socket as the ancillary file descriptor. Knows nothing about DICOM.
"""

from __future__ import annotations

import json
import socket

MAX_MESSAGE = 4096


def channel() -> tuple[socket.socket, socket.socket]:
    """A (master end, worker end) pair of connected SEQPACKET sockets."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def send_socket(chan: socket.socket, conn: socket.socket, peer: tuple[str, int]) -> None:
    """Send ``conn`` over ``chan``; the caller still owns (and closes) its own copy."""
    payload = json.dumps({"peer": [peer[0], peer[1]]}).encode()
    socket.send_fds(chan, [payload], [conn.fileno()])


def send_retire(chan: socket.socket) -> None:
    """Ask the worker to leave once it has served what was handed to it before.

    A message on the channel rather than a signal: it cannot overtake a socket already sent.
    """
    chan.send(json.dumps({"retire": True}).encode())


def receive_socket(chan: socket.socket) -> tuple[socket.socket, tuple[str, int]] | None:
    """Block until a socket arrives; None when asked to retire or the other end has gone."""
    payload, fds, _flags, _address = socket.recv_fds(chan, MAX_MESSAGE, 1)
    if not fds and (not payload or json.loads(payload).get("retire")):
        return None
    if len(fds) != 1:
        for fd in fds:
            socket.close(fd)
        raise ValueError("hand-off message without exactly one socket")
    conn = socket.socket(fileno=fds[0])
    info = json.loads(payload)
    host, port = info["peer"]
    return conn, (str(host), int(port))


def send_message(chan: socket.socket, message: dict[str, object]) -> None:
    """A small status message (e.g. "idle") from a worker to the master."""
    chan.send(json.dumps(message).encode())


def receive_message(chan: socket.socket) -> dict[str, object] | None:
    """The next status message, without waiting; None when the other end has gone away.

    Raises BlockingIOError when there is none: a readiness the caller saw may be stale (the
    message was already read elsewhere), and the reader must not hang on it.
    """
    data = chan.recv(MAX_MESSAGE, socket.MSG_DONTWAIT)
    if not data:
        return None
    message = json.loads(data)
    if not isinstance(message, dict):
        raise ValueError("status message is not an object")
    return message
