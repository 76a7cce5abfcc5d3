"""Which folder the open run of a study writes to, agreed between every storing process.

With ``-ss``/``-sp`` a folder is named after the time of a study's first object, so two workers
receiving the first objects of one study at the same moment must agree on one name. The
registry is a directory of small files, ``<od>/.storescpd-studies/<key>``, one per open study
run, holding the folder name. A run is opened with ``link(2)`` of a finished temporary file —
atomic, and it fails if another process got there first, whose name is then used. So every
object of a run lands in one folder, whatever the process model, and the registry survives
any crash of any process (a restarted server continues the open runs). Ending a run removes
its file; a study that comes back afterwards opens a new run (a new folder for ``-ss``/``-sp``,
the same one for ``-su``, whose name does not depend on time).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable

log = logging.getLogger(__name__)

REGISTRY = ".storescpd-studies"


class StudyRuns:
    """The registry of open study runs under output directory ``od``."""

    def __init__(self, od: str) -> None:
        self.path = os.path.join(od, REGISTRY)

    def _entry(self, study_uid: str) -> str:
        # A hash: the UID came from the network and is checked elsewhere, not trusted here.
        return os.path.join(self.path, hashlib.sha256(study_uid.encode()).hexdigest()[:32])

    def folder(
        self,
        study_uid: str,
        new_name: Callable[[], str],
        discard: Callable[[str], None] | None = None,
    ) -> tuple[str, bool]:
        """The folder of the open run of ``study_uid``, opening a run named ``new_name()`` if
        there is none; returns ``(name, opened)``. When another process opens the run first,
        ``discard`` gets the name that was made in vain."""
        entry = self._entry(study_uid)
        name = self._read(entry)
        if name:
            return name, False
        os.makedirs(self.path, exist_ok=True)
        name = new_name()
        fd, temp = tempfile.mkstemp(dir=self.path, prefix=".new-")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(name)
            try:
                os.link(temp, entry)
            except FileExistsError:
                theirs = self._read(entry)
                if theirs:
                    if discard is not None and theirs != name:
                        discard(name)
                    return theirs, False
                raise
        finally:
            os.unlink(temp)
        return name, True

    def close(self, study_uid: str) -> None:
        """End the open run of ``study_uid`` (nothing happens if none is open)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._entry(study_uid))

    def close_run(self, study_uid: str, folder: str) -> None:
        """End the run of ``study_uid`` in ``folder`` — not a newer run of the same study that
        a storing process may already have opened elsewhere."""
        entry = self._entry(study_uid)
        if self._read(entry) == folder:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry)

    def is_open(self, study_uid: str) -> bool:
        return os.path.exists(self._entry(study_uid))

    @staticmethod
    def _read(entry: str) -> str:
        try:
            with open(entry) as f:
                return f.read()
        except FileNotFoundError:
            return ""
