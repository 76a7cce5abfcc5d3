"""Process exit statuses: DCMTK storescp's codes (SPEC §3) and the worker → master protocol.

Pure: stdlib only, no I/O.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit statuses of storescpd and of its child processes.

    storescp uses only 0, 1 and 99 and does not follow the 20/40/60 ranges of DCMTK's
    ``ofexit.h``; scripts may test for exactly these values.
    """

    OK = 0
    """Normal end: stopped by a signal handler, or one association served in ``--inetd`` mode."""

    COMMAND_LINE = 1
    """Any command-line, configuration or start-up error (storescp uses 1 for all of them)."""

    START_UP = 1
    """Alias of COMMAND_LINE, for failures after parsing (bind, output directory, TLS key)."""

    INETD_FD = 99
    """``--inetd``: the descriptors 0-2 could not be re-arranged."""

    # Room for the worker → master protocol (DESIGN: a worker that cannot boot makes the
    # master stop instead of respawning it forever). Values storescp never uses, so that a
    # status never means two things.
    BOOT_FAILED = 3
    """A worker could not start serving (unreadable key, unwritable directory ...)."""

    SOFTWARE = 70
    """An unexpected exception ended a child process (BSD ``EX_SOFTWARE``)."""


class RecvExitCode(IntEnum):
    """Exit statuses of ``storescpd-dcmrecv``: those of DCMTK dcmrecv 3.6.7 (SPEC §12.5),
    which follow the ranges of DCMTK's ``ofexit.h`` (20, 40 and 60 are reserved there and
    unused)."""

    OK = 0
    """``--help``, ``--version``, ``+cc``, or stopped by a signal handler."""

    COMMAND_LINE = 1
    """A command-line error."""

    OUTPUT_DIRECTORY = 45
    """The output directory does not exist or is not writable."""

    CANNOT_LISTEN = 64
    """The port cannot be listened on (in use, privileged)."""

    ASSOCIATION_CONFIG = 66
    """The ``-xf`` file cannot be loaded, or its profile is unknown or invalid for an SCP."""

    TRANSPORT_LAYER = 71
    """The TLS layer cannot be created (key or certificate problems)."""
