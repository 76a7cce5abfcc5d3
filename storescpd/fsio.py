"""Durable, atomic file creation: what "stored" means (DESIGN §4).

A file is written under a hidden temporary name in its target directory, flushed and fsynced,
renamed to its final name, and the directory is fsynced; only then may the sender be told
"success". Any failure removes the temporary file, so no partial file ever carries a final name.
Knows nothing about DICOM.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import re
import secrets
import shutil
import sys
from types import TracebackType
from typing import Any, BinaryIO

log = logging.getLogger(__name__)

TEMP_PREFIX = ".storescpd-"
TEMP_SUFFIX = ".part"
SPOOL_PREFIX = "storescpd-spool-"


_THIS_FILE_ONLY = frozenset(
    {errno.EXDEV, errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.EEXIST, errno.ENOSPC,
     errno.EDQUOT, errno.EROFS, errno.EMLINK}
)  # fmt: skip
"""linkat errors that concern this one name (another file system, the folder gone or full):
the store makes its file the usual way (and reports what is wrong); later spares are still
tried."""


class SpareFile:
    """An unnamed file (``O_TMPFILE``) made ahead of the next store, while the worker waits for
    the network: on this kind of disk creating a file costs a few hundred microseconds of
    kernel time, which then no longer delays a C-STORE response. :class:`AtomicFile` gives
    it its temporary name (``linkat``) before writing, so what is on disk meanwhile is exactly
    what it would be without a spare. An unnamed file vanishes with its process; file systems
    without ``O_TMPFILE`` (or without ``/proc``) simply get no spare.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.fd = -1
        self.supported = hasattr(os, "O_TMPFILE")

    @property
    def wanted(self) -> bool:
        """Whether :meth:`prepare` has something to do."""
        return self.supported and self.fd < 0

    def prepare(self) -> None:
        """Make the spare now, if there is none. A file system without ``O_TMPFILE`` turns
        spares off; other errors (the folder missing for now) only skip this one."""
        if not self.wanted:
            return
        try:
            self.fd = os.open(self.directory, os.O_WRONLY | os.O_TMPFILE | os.O_CLOEXEC, 0o666)
        except OSError as err:
            # Not supported by the file system: never again. Else (the directory removed or
            # not writable for now) the store itself will say what is wrong.
            if err.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                log.debug("no spare files in %s: %s", self.directory, err)
                self.supported = False

    def link(self, path: str) -> int | None:
        """Give the spare the name ``path`` and hand its descriptor over; None when there is
        no spare or it cannot be named there (then the caller creates the file itself)."""
        fd, self.fd = self.fd, -1
        if fd < 0:
            return None
        try:
            # linkat(AT_SYMLINK_FOLLOW) of /proc/self/fd/N names an O_TMPFILE file (open(2));
            # a directory descriptor makes os.link call linkat, not link. Opened each time, so
            # an idle worker holds no descriptor but the spare.
            fds = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as err:
            os.close(fd)
            log.debug("no spare files without /proc: %s", err)
            self.supported = False
            return None
        try:
            os.link(str(fd), path, src_dir_fd=fds, follow_symlinks=True)
        except OSError as err:
            os.close(fd)
            if err.errno not in _THIS_FILE_ONLY:
                log.debug("no spare files: cannot name one: %s", err)
                self.supported = False
            return None
        finally:
            os.close(fds)
        return fd

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


class AtomicFile:
    """A file that appears under ``final_path`` only when :meth:`commit` succeeds.

    Use as a context manager; leaving the block without ``commit()`` removes the temporary file.

    Parameters
    ----------
    final_path : str
        Where the file must appear. Its directory must exist.
    sync : bool
        fsync the file and its directory before and after the rename (``--no-sync`` turns it off).
    spare : SpareFile, optional
        Where to take the file from, if a spare is ready.
    """

    def __init__(
        self,
        final_path: str,
        *,
        sync: bool = True,
        spare: SpareFile | None = None,
        buffering: int = -1,
    ) -> None:
        self.final_path = final_path
        self.sync = sync
        self.spare = spare
        self.buffering = buffering
        directory, name = os.path.split(final_path)
        self.directory = directory or "."
        # The random part keeps two writers of the same final name (e.g. a resent
        # instance on two associations) from sharing a temporary file; the pid tells whose
        # it is, should the writer be killed (remove_temporaries_of).
        temp_name = f"{TEMP_PREFIX}{name}.{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}"
        self.temp_path = os.path.join(self.directory, temp_name)
        self.file: BinaryIO | None = None
        self.replaced_existing = False

    def __enter__(self) -> AtomicFile:
        fd = self.spare.link(self.temp_path) if self.spare is not None else None
        if fd is None:
            fd = os.open(self.temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                         0o666)  # fmt: skip
        self.file = os.fdopen(fd, "wb", buffering=self.buffering)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.file is not None:
            self.discard()

    def commit(self, final_path: str | None = None) -> None:
        """Make the written bytes durable under the final name.

        ``final_path`` moves the file elsewhere on the same file system (a study folder chosen
        once the data set has been read); that folder is the one synced then.
        """
        assert self.file is not None, "commit() outside the with block or twice"
        if final_path is not None:
            self.final_path = final_path
            self.directory = os.path.dirname(final_path) or "."
        f, self.file = self.file, None
        try:
            f.flush()
            if self.sync:
                os.fsync(f.fileno())
        finally:
            f.close()
        self.replaced_existing = os.path.lexists(self.final_path)
        try:
            os.replace(self.temp_path, self.final_path)
        except OSError:
            _unlink_quietly(self.temp_path)
            raise
        if self.sync:
            fsync_directory(self.directory)

    def discard(self) -> None:
        """Close and remove the temporary file (idempotent)."""
        f, self.file = self.file, None
        if f is not None:
            try:
                f.close()
            except OSError as err:
                log.debug("closing %s failed: %s", self.temp_path, err)
        _unlink_quietly(self.temp_path)


def _libc_sync_file_range() -> Any:
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    function.restype = ctypes.c_int
    return function


_SYNC_FILE_RANGE = _libc_sync_file_range() if sys.platform.startswith("linux") else None
_SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start writing dirty pages, do not wait


def start_writeback(fd: int, offset: int) -> None:
    """Have the kernel start writing what is written to ``fd`` from ``offset`` on, without
    waiting: a later fsync then waits only for what came after. Linux's sync_file_range(2),
    which the os module lacks (hence ctypes); a no-op where it is missing or fails, since
    the fsync that follows is what makes the file durable either way."""
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, offset, 0, _SYNC_FILE_RANGE_WRITE)


def fsync_directory(path: str) -> None:
    """fsync a directory so that a rename inside it survives a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_directories(path: str, sync: bool = True) -> None:
    """``os.makedirs(path, exist_ok=True)``, and with ``sync`` each new folder's entry made
    durable in its parent: a file fsynced into a folder that a crash forgets is lost too."""
    missing = []
    head = os.path.abspath(path)
    while not os.path.isdir(head):
        missing.append(head)
        parent = os.path.dirname(head)
        if parent == head:
            break
        head = parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder)
        except FileExistsError:
            if not os.path.isdir(folder):
                raise
            continue  # another process made it: its entry is that process's to sync
        if sync:
            fsync_directory(os.path.dirname(folder))


def copy_stream(src: BinaryIO, dst: BinaryIO, chunk: int = 1 << 20) -> int:
    """Copy the rest of ``src`` into ``dst`` in bounded memory; return the byte count."""
    total = 0
    buffer = bytearray(chunk)
    view = memoryview(buffer)
    while True:
        n = src.readinto(view)  # type: ignore[attr-defined]
        if not n:
            return total
        dst.write(view[:n])
        total += n


def copy_file_bytes(src: BinaryIO, dst: BinaryIO, offset: int, length: int) -> bool:
    """Copy ``length`` bytes of ``src`` from ``offset`` to the end of ``dst`` inside the
    kernel (copy_file_range), when both are real files; False (nothing copied) otherwise, so
    the caller copies through memory. ``dst`` is flushed first and its position advanced."""
    copy = getattr(os, "copy_file_range", None)
    try:
        src_fd, dst_fd = src.fileno(), dst.fileno()
    except (AttributeError, OSError, ValueError):  # io.BytesIO has no descriptor
        return False
    if copy is None:
        return False
    dst.flush()
    start = dst.tell()
    done = 0
    try:
        while done < length:
            n = copy(src_fd, dst_fd, length - done, offset + done, start + done)
            if not n:
                raise OSError("source ended while copying")
            done += n
    except OSError:
        if done:
            raise  # half copied: the caller cannot start over on the same output
        return False
    dst.seek(start + done)
    return True


def spool_prefix(pid: int) -> str:
    """How the spool directories of process ``pid`` begin (``mkdtemp`` adds a random part)."""
    return f"{SPOOL_PREFIX}{pid}-"


def dead_spool_owners(parent: str) -> set[int]:
    """The processes whose spool directories are in ``parent`` although they no longer run:
    workers that went down with a killed master, which nobody could clean up after."""
    owners = set()
    with contextlib.suppress(OSError), os.scandir(parent) as entries:
        for entry in entries:
            pid = entry.name.removeprefix(SPOOL_PREFIX).split("-", 1)[0]
            if entry.name.startswith(SPOOL_PREFIX) and pid.isdigit() and not _runs(int(pid)):
                owners.add(int(pid))
    return owners


def _runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def remove_spools_of(parent: str, pid: int) -> int:
    """Remove the spool directories a dead process ``pid`` left in ``parent`` (a data set
    half received when it was killed can be large); returns how many. Only our own real
    directories: in a shared /tmp, a look-alike name or a symlink is someone else's."""
    removed = 0
    prefix = spool_prefix(pid)
    with contextlib.suppress(OSError), os.scandir(parent) as entries:
        for entry in entries:
            if not entry.name.startswith(prefix) or not entry.is_dir(follow_symlinks=False):
                continue
            if entry.stat(follow_symlinks=False).st_uid != os.geteuid():
                continue
            shutil.rmtree(entry.path, ignore_errors=True)
            removed += 1
    return removed


_TEMP_OWNER = re.compile(rf"\.(\d+)-[0-9a-f]{{8}}{re.escape(TEMP_SUFFIX)}\Z")


def dead_temporary_owners(directory: str) -> set[int]:
    """The writers whose temporary files are in ``directory`` although they no longer run."""
    owners = set()
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            found = _TEMP_OWNER.search(entry.name) if entry.name.startswith(TEMP_PREFIX) else None
            if found and not _runs(int(found.group(1))):
                owners.add(int(found.group(1)))
    return owners


def remove_temporaries_of(directory: str, pid: int) -> int:
    """Remove the temporary files a killed writer ``pid`` left in ``directory`` (never under a
    final name, but hidden clutter that would pile up); returns how many."""
    removed = 0
    tail = re.compile(rf"\.{pid}-[0-9a-f]{{8}}{re.escape(TEMP_SUFFIX)}\Z")
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.startswith(TEMP_PREFIX) and tail.search(entry.name):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed += 1
    return removed


def is_writable_directory(path: str) -> bool:
    """True when ``path`` is a directory we can create files in."""
    return os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        log.warning("cannot remove temporary file %s: %s", path, err)
