"""``--exec-on-reception`` and ``--exec-on-eostudy``: run the site's command, safely.

DCMTK replaces ``#p #f #a #c #r`` in the command by plain text and hands the result to
``/bin/sh -c``, so a calling AE title such as ``";id>pwn;"`` runs code (SPEC §7.1, confirmed on
the Debian binary). storescpd keeps ``/bin/sh -c`` — scripts may use pipes and redirections —
but each value goes in as one shell word (``shlex.quote``), and the substitution is a single
pass: text that came from the peer is never scanned for placeholders again. So write the
placeholders unquoted (``-xcr 'store.sh #p #f #a'``); the values arrive as separate, literal
arguments whatever they contain. DCMTK's double quotes around ``#a``/``#c`` gave the same words.

Children inherit no sockets (``close_fds``), so a slow command never holds the port or a peer's
connection; they run asynchronously and are reaped by the next call (``--exec-sync`` waits).
Knows nothing about DICOM.
"""

from __future__ import annotations

import logging
import re
import shlex
import subprocess
from collections.abc import Mapping

log = logging.getLogger(__name__)

_PLACEHOLDER = re.compile(r"#[pfacr]")


def expand(command: str, values: Mapping[str, str]) -> str:
    """``command`` with each placeholder whose letter is in ``values`` replaced by the quoted
    value; placeholders without a value stay as they are (DCMTK leaves ``#f`` in ``-xcs``)."""

    def replace(match: re.Match[str]) -> str:
        value = values.get(match.group()[1])
        return match.group() if value is None else shlex.quote(value)

    return _PLACEHOLDER.sub(replace, command)


def host_part(name: str) -> str:
    """``#r``: a host name up to its first dot, as DCMTK; addresses are kept whole."""
    if name.replace(".", "").isdigit() or ":" in name:
        return name
    return name.split(".", 1)[0]


class Runner:
    """Starts commands and reaps them; one per serving process.

    Parameters
    ----------
    wait : bool
        ``--exec-sync``: return only once the command has finished.
    quiet : bool
        Send the command's output to /dev/null (``--inetd``: our stdout is the peer).
    """

    def __init__(self, wait: bool = False, quiet: bool = False) -> None:
        self.wait = wait
        self.output = subprocess.DEVNULL if quiet else None
        self.running: list[subprocess.Popen[bytes]] = []

    def run(self, command: str, values: Mapping[str, str]) -> None:
        """Run ``command`` with ``values`` substituted, through ``/bin/sh -c``."""
        self.reap()
        line = expand(command, values)
        log.debug("executing command: %s", line)
        try:
            child = subprocess.Popen(
                ["/bin/sh", "-c", line],
                stdin=subprocess.DEVNULL,
                stdout=self.output,
                stderr=self.output,
                close_fds=True,
            )
        except OSError as err:
            log.error("cannot execute command %r: %s", line, err)
            return
        if self.wait:
            status = child.wait()
            if status:
                log.warning("command exited with status %d: %s", status, line)
        else:
            self.running.append(child)

    def reap(self) -> None:
        """Collect the commands that have ended (no zombies)."""
        self.running = [child for child in self.running if child.poll() is None]
