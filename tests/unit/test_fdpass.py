"""storescpd.fdpass against the real kernel: a SEQPACKET pair, no mocks."""

from __future__ import annotations

import socket

import pytest

from storescpd import fdpass


def test_messages_and_a_non_blocking_read_of_nothing() -> None:
    master, worker = fdpass.channel()
    with master, worker:
        fdpass.send_message(worker, {"state": "idle"})
        assert fdpass.receive_message(master, block=False) == {"state": "idle"}
        # A stale readiness report must not make the master wait (prefork._on_worker_message).
        with pytest.raises(BlockingIOError):
            fdpass.receive_message(master, block=False)
        worker.close()
        assert fdpass.receive_message(master, block=False) is None


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
