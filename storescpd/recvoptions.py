"""``storescpd-dcmrecv``'s command line: DCMTK dcmrecv 3.6.7's option set (SPEC §12.1).

A view over storescpd's option table: the options dcmrecv shares with storescp are the same
:class:`~storescpd.options.Opt` entries (regrouped, and with dcmrecv's short names where they
differ, ``+fd``/``+fu``), the TLS entries are taken unchanged, and the few of dcmrecv's own
(``-uca``, ``-s``/``+ssd``, ``+fsu``, ``+fst``) are declared here. The checks run in dcmrecv's
order, so the first error reported is the one dcmrecv reports.

Pure: stdlib only, no I/O.
"""

from __future__ import annotations

import dataclasses
from typing import Final

from storescpd.options import (
    BY_LONG,
    GENERAL,
    OPTIONS,
    PORT,
    PROFILE,
    RULES,
    Group,
    Opt,
    Program,
    Rule,
)
from storescpd.options import (
    CHECKED_AFTER_LOGGING as STORESCP_ORDER,
)

PROGRAM: Final = "storescpd-dcmrecv"
DESCRIPTION: Final = "Simple DICOM storage SCP (receiver)"

_NET = "network options:"
AE_TITLE: Final = (_NET, "application entity title:")
NETWORK: Final = (_NET, "other network options:")
_OUT = "output options:"
OUT_GENERAL: Final = (_OUT, "general:")
SUBDIR: Final = (_OUT, "subdirectory generation:")
NAMES: Final = (_OUT, "filename generation:")
STORAGE: Final = (_OUT, "storage mode:")
_TLS = "transport layer security (TLS) options:"


def _shared(long: str, group: Group, **changes: object) -> Opt:
    """storescp's entry for ``long``, placed in dcmrecv's group, with dcmrecv's differences."""
    return dataclasses.replace(BY_LONG[long], group=group, **changes)  # type: ignore[arg-type]


_GENERAL = tuple(_shared(o.long, GENERAL) for o in OPTIONS if o.group == GENERAL)
_TLS_OPTIONS = tuple(o for o in OPTIONS if o.group[0] == _TLS)

OPTIONS_DCMRECV: Final[tuple[Opt, ...]] = (
    *_GENERAL,
    _shared("--config-file", PROFILE),
    _shared("--aetitle", AE_TITLE, block="aetitle",
            help="my AE title (default: DCMRECV); calls to any title\nare accepted"),
    Opt("-uca", "--use-called-aetitle", help="answer with the called AE title (as always)",
        group=AE_TITLE, dest="use_called_aetitle", block="aetitle"),
    _shared("--acse-timeout", NETWORK),
    _shared("--dimse-timeout", NETWORK),
    _shared("--max-pdu", NETWORK),
    _shared("--disable-host-lookup", NETWORK),
    *_TLS_OPTIONS,
    _shared("--output-directory", OUT_GENERAL),
    Opt("-s", "--no-subdir", help="store every object in the output directory (default)",
        group=SUBDIR, dest="series_date_subdir", const=False, block="subdir"),
    Opt("+ssd", "--series-date-subdir",
        help="store objects in data/YYYY/MM/DD by their series\ndate (undef/YYYYMMDD without one)",
        group=SUBDIR, dest="series_date_subdir", block="subdir"),
    _shared("--default-filenames", NAMES, short="+fd",
            help="name files by SOP Instance UID (default)"),
    _shared("--unique-filenames", NAMES, short="+fu",
            help="name files by a newly made unique UID"),
    Opt("+fsu", "--short-unique-names",
        help="name files <prefix>_ and 16 hex digits, made unique\nin the directory",
        group=NAMES, dest="short_unique_names", block="filenames"),
    Opt("+fst", "--system-time-names",
        help="name files by the time of reception, to the\nmicrosecond", group=NAMES,
        dest="system_time_names", block="filenames"),
    _shared("--filename-extension", NAMES),
    _shared("--normal", STORAGE, block="storage"),
    _shared("--bit-preserving", STORAGE, block="storage"),
    _shared("--ignore", STORAGE, block="storage"),
)  # fmt: skip

def _members(block: str) -> tuple[str, ...]:
    return tuple(o.long for o in OPTIONS_DCMRECV if o.block == block)


# dcmrecv.cc main(): logging, then its options in this order, then the port, then TLS.
CHECKED_BEFORE_LOGGING: Final = (
    "--debug", "--verbose", "--quiet", "--log-level", "--log-config", "--arguments",
)  # fmt: skip
CHECKED_AFTER_LOGGING: Final = (
    "--verbose-pc", "--config-file", "--aetitle", "--use-called-aetitle", "--acse-timeout",
    "--dimse-timeout", "--max-pdu", "--disable-host-lookup", "--output-directory",
    *_members("subdir"), *_members("filenames"), "--filename-extension",
    *_members("storage"), PORT,
)  # fmt: skip


def _rules() -> tuple[Rule, ...]:
    """storescp's rules for the general and TLS options, and dcmrecv's one conflict."""
    shared = {o.long for o in _GENERAL + _TLS_OPTIONS}
    kept = tuple(rule for rule in RULES if rule.subject in shared)
    plus_ssd = Rule("--bit-preserving", "--bit-preserving not allowed with --series-date-subdir",
                    lambda r: r.winner("subdir") == "--series-date-subdir")  # fmt: skip
    return (*kept, plus_ssd)


def _tls_check_order() -> tuple[str, ...]:
    """The TLS options in storescp's order: both tools evaluate them with the same code."""
    tls = {o.long for o in _TLS_OPTIONS}
    return tuple(name for name in STORESCP_ORDER if name in tls)


DCMRECV: Final = Program(
    PROGRAM, DESCRIPTION, OPTIONS_DCMRECV, before_logging=CHECKED_BEFORE_LOGGING,
    after_logging=CHECKED_AFTER_LOGGING + _tls_check_order(), rules=_rules(),
    port_help="TCP port to listen on", usage_port="port", port_required=True,
    # dcmrecv writes sequences and items with undefined length, whatever it received
    defaults=(("aetitle", "DCMRECV"), ("dcmrecv", True), ("length_explicit", False)),
)  # fmt: skip
