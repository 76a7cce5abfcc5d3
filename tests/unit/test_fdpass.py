"""storescpd.fdpass against the real kernel: a SEQPACKET pair, no mocks."""

from __future__ import annotations

import socket

import pytest

from storescpd import fdpass


def test_a_status_message_is_read_without_waiting() -> None:
    master, worker = fdpass.channel()
    with master, worker:
        # The master's loop may act on a readiness that another read has used up.
        with pytest.raises(BlockingIOError):
            fdpass.receive_message(master)
        fdpass.send_message(worker, {"state": "idle", "stored": 3})
        assert fdpass.receive_message(master) == {"state": "idle", "stored": 3}
        worker.close()
        assert fdpass.receive_message(master) is None


def test_a_socket_and_its_peer_travel() -> None:
    master, worker = fdpass.channel()
    a, b = socket.socketpair()
    with master, worker, a, b:
        fdpass.send_socket(master, a, ("10.1.2.3", 104))
        received = fdpass.receive_socket(worker)
        assert received is not None
        conn, peer = received
        with conn:
            assert peer == ("10.1.2.3", 104)
            conn.sendall(b"x")
            assert b.recv(1) == b"x"
