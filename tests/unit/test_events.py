"""The event queue between storing processes and the coordinator, with real forked processes."""

from __future__ import annotations

import os
import signal

import pytest

from storescpd.events import EventQueue, QueueFull


def test_events_arrive_in_order_per_slot() -> None:
    q = EventQueue(producers=2, capacity=4)
    for n in range(3):
        q.put(1, {"n": n})
    q.put(0, {"n": "zero"})
    records = q.get(timeout=1)
    assert [r.event for r in records] == [{"n": "zero"}, {"n": 0}, {"n": 1}, {"n": 2}]
    assert [(r.slot, r.position) for r in records] == [(0, 0), (1, 0), (1, 1), (1, 2)]
    assert q.get(timeout=0.01) == []
    q.ack(records)
    assert q.pending() == 0


def test_a_full_ring_makes_the_producer_wait_then_give_up_without_losing_anything() -> None:
    q = EventQueue(producers=1, capacity=2)
    q.put(0, {"n": 0})
    q.put(0, {"n": 1})
    with pytest.raises(QueueFull):
        q.put(0, {"n": 2}, wait=0.05)
    records = q.get(timeout=1)
    assert [r.event for r in records] == [{"n": 0}, {"n": 1}]
    with pytest.raises(QueueFull):
        q.put(0, {"n": 2}, wait=0.05)  # read is not enough: only acknowledged frees room
    q.ack(records)
    q.put(0, {"n": 2}, wait=0.05)
    assert [r.event for r in q.get(timeout=1)] == [{"n": 2}]


def test_unacknowledged_records_are_read_again_by_a_new_consumer() -> None:
    q = EventQueue(producers=1, capacity=4)
    q.put(0, {"n": 0})
    q.put(0, {"n": 1})
    first = q.get(timeout=1)
    q.ack(first[:1])
    q.forget_reads()  # as a restarted coordinator
    assert [r.event for r in q.get(timeout=1)] == [{"n": 1}]


def test_an_event_too_big_for_a_record_is_refused() -> None:
    q = EventQueue(producers=1, capacity=2)
    with pytest.raises(ValueError, match="does not fit"):
        q.put(0, {"path": "x" * 5000})


def test_producers_in_other_processes_and_a_killed_one_block_nobody() -> None:
    q = EventQueue(producers=3, capacity=8)
    children = []
    for slot in (1, 2):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            try:
                for n in range(200):
                    q.put(slot, {"slot": slot, "n": n})
            finally:
                os._exit(0)
        children.append(pid)
    victim = os.fork()
    if victim == 0:  # pragma: no cover - writes until killed, maybe in the middle of a put
        n = 0
        while True:
            q.put(0, {"slot": 0, "n": n}, wait=3600)
            n += 1
    os.kill(victim, signal.SIGKILL)
    os.waitpid(victim, 0)
    received: list[dict[str, int]] = []
    while sum(1 for e in received if e["slot"] != 0) < 400:
        batch = q.get(timeout=30)
        assert batch, "the surviving producers were blocked"
        q.ack(batch)
        received += [r.event for r in batch]
    for pid in children:
        assert os.waitpid(pid, 0)[1] == 0
    for slot in (0, 1, 2):
        numbers = [e["n"] for e in received if e["slot"] == slot]
        assert numbers == list(range(len(numbers)))  # whole records, in order, none lost
