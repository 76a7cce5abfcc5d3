"""``--daemon`` and ``--pid-file``: run in the background, and say under which process id.

DCMTK's storescp has neither (it always runs in the foreground); they are here for init scripts
that expect them. Under systemd or a super-server, leave both off.

The pid file is locked with ``flock``, which a stale file cannot hold: a file left behind by a
crash does not stop the next start, and two servers never share one pid file. The lock belongs
to the open file, so it survives the forks of :func:`detach`, and the final pid is written
through that same descriptor — after ``--user`` has dropped the rights to reopen it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sys
from collections.abc import Iterable

import daemon  # type: ignore[import-untyped]

log = logging.getLogger(__name__)


class PidFileError(Exception):
    """The pid file cannot be created, or another running server holds it."""


class PidFile:
    """An ``flock``-ed pid file, held until :meth:`release` or the process ends."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as err:
            raise PidFileError(f"cannot open pid file {path}: {err.strerror}") from err
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            raise PidFileError(
                f"pid file {path} is locked: another storescpd (pid {holder}) is running"
            ) from None
        self.write()

    def write(self) -> None:
        """Record the calling process's pid (call again after :func:`detach`)."""
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        """Remove the file (if our rights still allow it) and drop the lock."""
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == os.fstat(self.fd).st_ino:
                os.unlink(self.path)
        os.close(self.fd)


def detach(keep: Iterable[int]) -> None:
    """Become a daemon with python-daemon, keeping the descriptors in ``keep`` open.

    The working directory and umask stay as they were (``-od incoming`` is relative to where
    storescpd was started); stdio goes to /dev/null, so log to a file with ``-lc``. Signal
    handling is left to the serving loop, which installs its own.
    """
    umask = os.umask(0)
    os.umask(umask)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    context = daemon.DaemonContext(
        working_directory=os.getcwd(),
        umask=umask,
        detach_process=True,
        prevent_core=False,
        files_preserve=sorted(set(keep)),
        signal_map={},
    )
    context.open()
    log.info("running in the background as pid %d", os.getpid())


def log_file_descriptors() -> list[int]:
    """The descriptors of file log handlers (from ``-lc``), which must survive :func:`detach`."""
    fds = []
    for logger in (logging.getLogger(), logging.getLogger("storescpd")):
        for handler in logger.handlers:
            stream = getattr(handler, "stream", None)
            if isinstance(handler, logging.FileHandler) and stream is not None:
                fds.append(stream.fileno())
    return fds
