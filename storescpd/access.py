"""``+ac``: TCP-wrapper checks right after accept, before any DICOM byte is read.

The I/O around the pure matcher in :mod:`storescpd.hosts_access`: reading hosts.allow and
hosts.deny, naming the peer (reverse DNS unless ``-dhl``), logging, and running the
``aclexec``/``spawn`` commands of the matching rule with their expansions passed as separate words.
A ``twist`` rule refuses: a DICOM connection is never handed to a shell.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import threading

from storescpd import hosts_access

log = logging.getLogger(__name__)

COMMAND_TIMEOUT = 10.0
LOOKUP_TIMEOUT = 2.0


class AccessControl:
    """The hosts files and how to decide on a peer; :meth:`load` (re)reads the files.

    Parameters
    ----------
    daemon : str
        The daemon name rules are matched against (``--access-daemon``).
    allow_path, deny_path : str
        The hosts.allow and hosts.deny files.
    lookup : bool
        Look up the peer's host name (False with ``-dhl``: the name is then ``unknown``).
    """

    def __init__(self, daemon: str, allow_path: str, deny_path: str, *, lookup: bool) -> None:
        self.daemon = daemon
        self.allow_path = allow_path
        self.deny_path = deny_path
        self.lookup = lookup
        self.allow: hosts_access.Table | None = None
        self.deny: hosts_access.Table | None = None

    def load(self) -> None:
        """Read both files; a missing file is an empty table, as in libwrap."""
        self.allow = _read_table(self.allow_path)
        self.deny = _read_table(self.deny_path)

    def unreadable(self) -> list[str]:
        """Why a file that exists could not be read (libwrap then denies everyone), one
        message per file: at start-up that is an error rather than a server refusing all."""
        tables = [t for t in (self.allow, self.deny) if t is not None and t.failed]
        # hosts_access.unreadable() reports at line 0; parsed files report real lines.
        return [d.message for t in tables for d in t.diagnostics if d.line == 0 and d.error]

    def admit(self, conn: socket.socket, peer: tuple[str, int]) -> bool:
        """True when the peer may be served; a refused connection is closed here."""
        name = host_name(peer[0]) if self.lookup else None
        client = hosts_access.peer(peer[0], name, peer[1])
        verdict = hosts_access.decide(
            self.allow,
            self.deny,
            self.daemon,
            client,
            pid=os.getpid(),
            read_list=_read_list,
        )
        for note in verdict.diagnostics:
            log.log(logging.ERROR if note.error else logging.WARNING, "%s", note)
        allowed = verdict.allowed and self._run_commands(verdict)
        if not allowed:
            log.error(
                "Receiving Association failed: 0006:0324 TCP wrapper: denied connection "
                "from %s (%s)",
                client.name,
                client.address,
            )
            log.info("refused by %s", verdict.source)
            with contextlib.suppress(OSError):
                conn.close()
        return allowed

    def _run_commands(self, verdict: hosts_access.Verdict) -> bool:
        for argv in verdict.commands("aclexec"):
            if _run(argv) != 0:
                return False
        for argv in verdict.commands("spawn"):
            _run(argv)
        return True


def _run(argv: tuple[str, ...]) -> int:
    try:
        return subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=COMMAND_TIMEOUT,
            check=False,
        ).returncode
    except (OSError, subprocess.TimeoutExpired) as err:
        log.warning("hosts access command %s failed: %s", argv[:3], err)
        return -1


def _read_table(path: str) -> hosts_access.Table | None:
    try:
        with open(path, encoding="latin-1") as f:
            text = f.read()
    except FileNotFoundError:
        return None
    except OSError as err:
        return hosts_access.unreadable(path, err.strerror or str(err))
    table = hosts_access.parse(text, path)
    for note in table.diagnostics:
        log.warning("%s", note)
    return table


def _read_list(path: str) -> str | None:
    try:
        with open(path, encoding="latin-1") as f:
            return f.read()
    except OSError:
        return None


def host_name(address: str) -> str | None:
    """The peer's name by reverse lookup, or None (``unknown``) when none comes within
    ``LOOKUP_TIMEOUT``: a slow resolver must not stall the accept loop for everyone.

    The lookup runs in a short-lived thread because the resolver has no timeout of its own.
    Asked by the accept loop (``+ac``) and, once per association, by a process that runs
    ``--exec-on-reception`` commands (``#r``).
    """
    result: list[str] = []

    def lookup() -> None:
        with contextlib.suppress(OSError):
            result.append(socket.gethostbyaddr(address)[0])

    worker = threading.Thread(target=lookup, name="reverse-lookup", daemon=True)
    worker.start()
    worker.join(LOOKUP_TIMEOUT)
    if worker.is_alive():
        log.warning("reverse lookup of %s timed out; matching it as unknown", address)
        return None
    return result[0] if result else None
