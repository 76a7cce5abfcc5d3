"""Signs of life from pool workers, in memory the master and its workers share.

One slot per worker index holds the ``CLOCK_MONOTONIC`` time of that worker's last beat (the
clock is system-wide, so times written in one process compare in another). A worker beats from
its own loop: while it waits for a connection, and while it serves one unless a request handler
has been running for longer than the timeout — a worker stuck in a handler, a deadlock or an
endless loop stops beating and the master replaces it (``--worker-timeout``).

An anonymous shared mapping, not a file per worker (gunicorn's way): nothing to clean up, no
file system writes, and a beat is one 8-byte store. Knows nothing about DICOM.
"""

from __future__ import annotations

import mmap
import struct
import time

SLOTS = 4096
"""Worker indexes in use at once; --max-workers is at most 1024, plus those retiring after a HUP."""

_SLOT = struct.Struct("d")


class Heartbeats:
    """The shared table of last beats; create it in the master before forking workers."""

    def __init__(self) -> None:
        self._map = mmap.mmap(-1, SLOTS * _SLOT.size)  # MAP_SHARED | MAP_ANONYMOUS

    def beat(self, index: int, now: float | None = None) -> None:
        """Record that worker ``index`` is alive (the master also calls this at spawn)."""
        _SLOT.pack_into(self._map, index * _SLOT.size, time.monotonic() if now is None else now)

    def silent_for(self, index: int, now: float | None = None) -> float:
        """Seconds since worker ``index`` last beat."""
        (last,) = _SLOT.unpack_from(self._map, index * _SLOT.size)
        return (time.monotonic() if now is None else now) - float(last)
