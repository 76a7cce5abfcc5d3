"""fdpass against the real kernel: a SEQPACKET pair, no mocks."""

from __future__ import annotations

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
