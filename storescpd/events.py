"""Events from the processes that store to the one that decides about studies (the coordinator).

One ring per producer slot (a pool worker's index; 0 for the single-process server and the
``--fork`` children), all in one anonymous shared mapping the master makes before it forks. A
producer writes a record into the next free place of its ring and only then advances the
ring's head; the coordinator reads up to the head and advances the tail. No lock is shared
between pool workers, so one killed mid-write (SIGKILL, the OOM killer) blocks nobody: its
half-written record was never published. ``--fork`` children share slot 0 and take a lock
around their write. A counting semaphore wakes the coordinator, which also wakes by itself
now and then, so a wake-up lost with a killed producer only delays an event.

A full ring never drops an event: the producer waits for room, polling gently, up to a limit
after which it raises :class:`QueueFull` (the caller logs it; the object is already stored).
Records are compact JSON of up to ``RECORD_BYTES``. Measured against faster-fifo in
``bench/event_queue.py``; the figures and the choice are in that file's docstring.
"""

from __future__ import annotations

import json
import logging
import mmap
import multiprocessing
import select
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

RECORD_BYTES = 4096
"""Room for one event: UIDs, AE titles and a path of up to ~3 KB as UTF-8 JSON."""

_HEADER = struct.Struct("QQ")  # head (records written), tail (records read); per ring
_LENGTH = struct.Struct("I")
_RING_HEADER = 64  # one cache line, so producer and consumer counters do not share one


class QueueFull(Exception):
    """The coordinator has not read for longer than the producer may wait."""


class EventQueue:
    """Rings for ``producers`` producers of ``capacity`` records each.

    Create in the master before forking; producers call :meth:`put` with their slot, the
    coordinator calls :meth:`get`.
    """

    def __init__(self, producers: int, capacity: int = 256) -> None:
        self.producers = producers
        self.capacity = capacity
        self._ring_bytes = _RING_HEADER + capacity * RECORD_BYTES
        self._map = mmap.mmap(-1, producers * self._ring_bytes)  # MAP_SHARED | MAP_ANONYMOUS
        ctx = multiprocessing.get_context("fork")
        self._items = ctx.Semaphore(0)
        self._shared_slot = ctx.Lock()  # --fork children all write to slot 0
        self._read: dict[int, int] = {}  # consumer: next position to read, per slot

    # --- producer side ----------------------------------------------------------------------

    def put(
        self, slot: int, event: dict[str, Any], wait: float = 30.0, shared: bool = False
    ) -> None:
        """Publish ``event`` on ring ``slot``; waits while the ring is full (up to ``wait``).

        ``shared``: several processes write to this slot (``--fork``), take the slot's lock.
        """
        data = json.dumps(event, separators=(",", ":")).encode()
        if len(data) > RECORD_BYTES - _LENGTH.size:
            raise ValueError(f"event of {len(data)} bytes does not fit a record")
        if shared:
            with self._shared_slot:
                self._put(slot, data, wait)
        else:
            self._put(slot, data, wait)
        self._items.release()

    def _put(self, slot: int, data: bytes, wait: float) -> None:
        base = slot * self._ring_bytes
        deadline = time.monotonic() + wait
        pause = 0.0005
        while True:
            head, tail = _HEADER.unpack_from(self._map, base)
            if head - tail < self.capacity:
                break
            if time.monotonic() > deadline:
                raise QueueFull(f"event queue slot {slot} full for {wait:g} s")
            select.select([], [], [], pause)  # the coordinator frees space; poll gently
            pause = min(pause * 2, 0.05)
        offset = base + _RING_HEADER + (head % self.capacity) * RECORD_BYTES
        _LENGTH.pack_into(self._map, offset, len(data))
        self._map[offset + _LENGTH.size : offset + _LENGTH.size + len(data)] = data
        # Publish: only now may the coordinator read the record (one aligned 8-byte store).
        struct.pack_into("Q", self._map, base, head + 1)

    # --- consumer side ----------------------------------------------------------------------

    def get(self, timeout: float | None) -> list[Record]:
        """Wait up to ``timeout`` seconds for records; return all that are there (none only
        when the time is up). Records stay in the rings until :meth:`ack`: a consumer that
        dies before acknowledging reads them again when it is restarted."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            self._items.acquire(timeout=remaining)
            records = list(self._unread())
            # The count may lag behind (or run ahead of) what a bulk read took: a wake-up
            # that finds nothing just waits again.
            for _ in range(len(records) - 1):
                if not self._items.acquire(block=False):
                    break
            if records or (deadline is not None and time.monotonic() >= deadline):
                return records

    def ack(self, records: list[Record]) -> None:
        """Free the places of ``records`` (read by :meth:`get`) for the producers."""
        done: dict[int, int] = {}
        for record in records:
            done[record.slot] = max(done.get(record.slot, 0), record.position + 1)
        for slot, tail in done.items():
            struct.pack_into("Q", self._map, slot * self._ring_bytes + 8, tail)
        self._read = {k: v for k, v in self._read.items() if v > done.get(k, 0)}

    def _unread(self) -> Iterator[Record]:
        for slot in range(self.producers):
            base = slot * self._ring_bytes
            head, tail = _HEADER.unpack_from(self._map, base)
            position = max(tail, self._read.get(slot, 0))
            while position < head:
                offset = base + _RING_HEADER + (position % self.capacity) * RECORD_BYTES
                (length,) = _LENGTH.unpack_from(self._map, offset)
                raw = bytes(self._map[offset + _LENGTH.size : offset + _LENGTH.size + length])
                try:
                    event = json.loads(raw)
                except ValueError:
                    log.error("unreadable event in queue slot %d dropped", slot)
                    event = {}
                yield Record(slot, position, event)
                position += 1
            self._read[slot] = position

    def pending(self) -> int:
        """Records published but not acknowledged (a restarted consumer reads them again)."""
        total = 0
        for slot in range(self.producers):
            head, tail = _HEADER.unpack_from(self._map, slot * self._ring_bytes)
            total += head - tail
        return total

    def forget_reads(self) -> None:
        """In a freshly started consumer: read again everything not acknowledged."""
        self._read = {}


@dataclass(frozen=True)
class Record:
    """One event as read from the queue, with where it was: (slot, position) orders the
    records of one producer and names each record for good (positions never repeat)."""

    slot: int
    position: int
    event: dict[str, Any]
