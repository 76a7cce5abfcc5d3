"""storescpd's command line: one option table feeds the parser, ``--help`` and the man page.

Reproduces the conventions of DCMTK 3.6.7 ``storescp`` (SPEC §1, §2, §10, §11): ``+x``/``-x``
pairs, option blocks where the rightmost member wins, values taken verbatim, C-style numbers,
``@file`` command files and DCMTK's error texts, checked in the order storescp checks them so
that the first error reported is the same.

Pure: stdlib only. The one piece of I/O is reading ``@file`` command files; printing happens
only in :func:`run_command_line`, and nothing here configures logging.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Final, TextIO

from storescpd import __version__
from storescpd.exitcodes import ExitCode

PROGRAM: Final = "storescpd"
DESCRIPTION: Final = "DICOM storage (C-STORE) SCP"
PORT: Final = "port"  # the only parameter; also its place in CHECK_ORDER


# --- value types --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Text:
    """A string value, taken verbatim."""


@dataclass(frozen=True, slots=True)
class Unsigned:
    """An unsigned number read like C ``%lu``; a leading minus is refused (DCMTK ``getValue``)."""

    low: int = 0
    high: int | None = None


@dataclass(frozen=True, slots=True)
class Signed:
    """A signed number read like C ``%li`` (``010`` is 8, ``0x10`` is 16)."""

    low: int


@dataclass(frozen=True, slots=True)
class LogLevel:
    """A log4cplus level name, any case."""


ValueType = Text | Unsigned | Signed | LogLevel
Const = str | bool | int | None
TEXT: Final = Text()


# --- the option table ---------------------------------------------------------------------------

Group = tuple[str, str]  # (help group, help sub-group or "")


@dataclass(frozen=True, slots=True)
class Opt:
    """One command-line option: everything the parser, ``--help`` and the man page need.

    A value-less option stores ``const`` in ``dest``. An option with values stores them in
    ``value_dest`` if set (and then also ``const`` in ``dest``), else in ``dest``: one value as
    is, several as a tuple. ``dest`` names an :class:`Options` field, or ``tls.<field>`` of
    :class:`TlsOptions`.
    """

    short: str
    long: str
    values: int = 0
    value_help: str = ""
    help: str = ""
    group: Group = ("", "")
    dest: str = ""
    const: Const = True
    value_type: ValueType = TEXT
    block: str = ""  # members of one block are alternatives: the rightmost given wins
    later: bool = False  # accepted and checked, but storescpd cannot act on it yet
    value_dest: str = ""
    exclusive: bool = False  # --help, --version, --list-ciphers: everything else is ignored
    accumulate: bool = False  # every occurrence counts, in command-line order


GENERAL: Final = ("general options:", "")
PROCESS: Final = ("multi-process options:", "")
_NET = "network options:"
PROFILE: Final = (_NET, "association negotiation profile from a configuration file:")
PREFER: Final = (_NET, "preferred network transfer syntaxes (not with --config-file):")
ACCESS: Final = (_NET, "host access control (TCP wrappers):")
NETWORK: Final = (_NET, "other network options:")
_TLS = "transport layer security (TLS) options:"
TLS_STACK: Final = (_TLS, "transport protocol stack:")
TLS_PASSWORD: Final = (_TLS, "private key password (only with --enable-tls):")
TLS_FORMAT: Final = (_TLS, "key and certificate file format:")
TLS_CA: Final = (_TLS, "certification authority:")
TLS_PROFILE: Final = (_TLS, "security profile:")
TLS_CIPHERS: Final = (_TLS, "cipher suites:")
TLS_SEED: Final = (_TLS, "pseudo random generator:")
TLS_PEER: Final = (_TLS, "peer authentication:")
_OUT = "output options:"
OUT_GENERAL: Final = (_OUT, "general:")
OUT_BITS: Final = (_OUT, "bit preserving mode:")
OUT_FORMAT: Final = (_OUT, "output file format:")
OUT_XFER: Final = (
    _OUT,
    "output transfer syntax (not with --bit-preserving or compressed transfer):",
)
OUT_VR: Final = (_OUT, "post-1993 value representations (not with --bit-preserving):")
OUT_GL: Final = (_OUT, "group length encoding (not with --bit-preserving):")
OUT_LENGTH: Final = (_OUT, "sequence and item lengths (not with --bit-preserving):")
OUT_PAD: Final = (_OUT, "trailing padding (not with --write-dataset or --bit-preserving):")
OUT_UN: Final = (_OUT, "defined-length UN elements:")
OUT_DEFLATE: Final = (_OUT, "deflate compression level (only with --write-xfer-deflated/same):")
OUT_SORT: Final = (_OUT, "sorting into study directories (not with --bit-preserving):")
OUT_NAMES: Final = (_OUT, "file names:")
EVENT: Final = ("event options:", "")

_SECONDS = "[s]econds: integer"
_FILE = "[f]ilename: string"


def _prefer(short: str, name: str, text: str) -> Opt:
    return Opt(short, "--" + name, help=text, group=PREFER, dest="prefer", const=name,
               block="prefer")  # fmt: skip


def _tls(
    short: str,
    long: str,
    text: str,
    dest: str,
    const: Const = True,
    *,
    group: Group,
    values: int = 0,
    value_help: str = "",
    block: str = "",
    accumulate: bool = False,
) -> Opt:
    return Opt(short, long, values, value_help, text, group, dest="tls." + dest, const=const,
               block=block, accumulate=accumulate)  # fmt: skip


OPTIONS: Final[tuple[Opt, ...]] = (
    # general
    Opt("-h", "--help", help="show this help and exit", group=GENERAL, exclusive=True),
    Opt("", "--version", help="show version information and exit", group=GENERAL, exclusive=True),
    Opt("", "--arguments", help="log the expanded command line at start-up", group=GENERAL,
        dest="arguments"),
    Opt("-q", "--quiet", help="quiet mode: report fatal errors only", group=GENERAL,
        dest="log_level", const="fatal", block="verbosity"),
    Opt("-v", "--verbose", help="verbose mode: report what is being done", group=GENERAL,
        dest="log_level", const="info", block="verbosity"),
    Opt("-d", "--debug", help="debug mode: report details for debugging", group=GENERAL,
        dest="log_level", const="debug", block="verbosity"),
    Opt("-ll", "--log-level", 1, "[l]evel: string constant",
        "(fatal, error, warn, info, debug, trace)\nreport messages of level l and above",
        GENERAL, dest="log_level", value_type=LogLevel()),
    Opt("-lc", "--log-config", 1, _FILE, "read the logging set-up from file f", GENERAL,
        dest="log_config"),
    Opt("+v", "--verbose-pc", help="report presentation contexts in verbose mode", group=GENERAL,
        dest="verbose_pc"),
    # multi-process
    Opt("", "--single-process", help="serve one association after the other (default)",
        group=PROCESS, dest="fork", const=False, block="process"),
    Opt("", "--fork", help="serve each association in a child process", group=PROCESS,
        dest="fork", block="process"),
    Opt("", "--workers", 1, "[n]umber: integer (default: 0)",
        "keep n pre-forked worker processes serving\nassociations (0: none, as DCMTK)",
        PROCESS, dest="workers", value_type=Unsigned(0, 1024)),
    Opt("", "--max-workers", 1, "[n]umber: integer (default: --workers)",
        "grow the pool up to n workers while all are busy;\nbeyond that, reject at once",
        PROCESS, dest="max_workers", value_type=Unsigned(1, 1024)),
    Opt("", "--worker-idle-timeout", 1, _SECONDS + " (default: 60)",
        "a worker beyond --workers that stays idle for\ns seconds leaves again", PROCESS,
        dest="worker_idle_timeout", value_type=Unsigned(0)),
    Opt("", "--max-requests", 1, "[n]umber: integer (default: 0)",
        "replace a worker after it served n associations\n(0: never)", PROCESS,
        dest="max_requests", value_type=Unsigned(0)),
    Opt("", "--max-worker-memory", 1, "[m]egabytes: integer (default: 0)",
        "replace a worker after an association that left it\nwith more than m MB of unique "
        "memory (0: never)", PROCESS, dest="max_worker_memory", value_type=Unsigned(0)),
    Opt("", "--worker-timeout", 1, _SECONDS + " (default: 0)",
        "kill and replace a worker silent for s seconds\n(stuck in a request; 0: never)",
        PROCESS, dest="worker_timeout", value_type=Unsigned(0)),
    Opt("", "--max-associations", 1, "[n]umber: integer (default: 0)",
        "serve at most n associations at once, reject\nmore (0: no limit)", PROCESS,
        dest="max_associations", value_type=Unsigned(0)),
    Opt("", "--max-associations-per-host", 1, "[n]umber: integer (default: 0)",
        "serve at most n associations at once from one\npeer address, reject more "
        "(0: no limit;\nmeaningless with --inetd)", PROCESS,
        dest="max_associations_per_host", value_type=Unsigned(0)),
    Opt("", "--daemon", help="detach from the terminal and run in the background",
        group=PROCESS, dest="daemon"),
    Opt("", "--pid-file", 1, _FILE,
        "write the server's process id to file f and keep\nit locked while running", PROCESS,
        dest="pid_file"),
    Opt("", "--user", 1, "[u]ser: string",
        "after binding the port, serve as user u", PROCESS, dest="user"),
    Opt("", "--group", 1, "[g]roup: string (default: the user's group)",
        "after binding the port, serve as group g", PROCESS, dest="group"),
    Opt("", "--graceful-timeout", 1, _SECONDS + " (default: 60)",
        "on TERM or INT, let running associations finish\nfor up to s seconds", PROCESS,
        dest="graceful_timeout", value_type=Unsigned(0)),
    # network
    Opt("-xf", "--config-file", 2, "[f]ilename, [p]rofile: string",
        "negotiate with profile p of configuration file f", PROFILE, dest="config_file"),
    _prefer("+x=", "prefer-uncompr", "prefer explicit VR in host byte order (default)"),
    _prefer("+xe", "prefer-little", "prefer explicit VR little endian"),
    _prefer("+xb", "prefer-big", "prefer explicit VR big endian"),
    _prefer("+xs", "prefer-lossless", "prefer JPEG lossless, first-order prediction"),
    _prefer("+xy", "prefer-jpeg8", "prefer JPEG baseline (8-bit lossy)"),
    _prefer("+xx", "prefer-jpeg12", "prefer JPEG extended (12-bit lossy)"),
    _prefer("+xv", "prefer-j2k-lossless", "prefer JPEG 2000, lossless only"),
    _prefer("+xw", "prefer-j2k-lossy", "prefer JPEG 2000, lossy allowed"),
    _prefer("+xt", "prefer-jls-lossless", "prefer JPEG-LS lossless"),
    _prefer("+xu", "prefer-jls-lossy", "prefer JPEG-LS near-lossless"),
    _prefer("+xm", "prefer-mpeg2", "prefer MPEG2 main profile, main level"),
    _prefer("+xh", "prefer-mpeg2-high", "prefer MPEG2 main profile, high level"),
    _prefer("+xn", "prefer-mpeg4", "prefer H.264 high profile, level 4.1"),
    _prefer("+xl", "prefer-mpeg4-bd", "prefer H.264 high profile, BD-compatible"),
    _prefer("+x2", "prefer-mpeg4-2-2d", "prefer H.264 high profile, level 4.2, 2D video"),
    _prefer("+x3", "prefer-mpeg4-2-3d", "prefer H.264 high profile, level 4.2, 3D video"),
    _prefer("+xo", "prefer-mpeg4-2-st", "prefer H.264 stereo high profile, level 4.2"),
    _prefer("+x4", "prefer-hevc", "prefer H.265 main profile, level 5.1"),
    _prefer("+x5", "prefer-hevc10", "prefer H.265 main 10 profile, level 5.1"),
    _prefer("+xr", "prefer-rle", "prefer RLE lossless"),
    _prefer("+xd", "prefer-deflated", "prefer deflated explicit VR little endian"),
    _prefer("+xi", "implicit", "accept implicit VR little endian only"),
    _prefer("+xa", "accept-all", "accept every transfer syntax known"),
    Opt("-ac", "--access-full", help="accept connections from every host (default)",
        group=ACCESS, dest="access_control", const=False, block="access"),
    Opt("+ac", "--access-control", help="check hosts.allow and hosts.deny before serving",
        group=ACCESS, dest="access_control", block="access"),
    Opt("", "--access-daemon", 1, "[n]ame: string (default: storescpd)",
        "match the rules for daemon n (e.g. storescp,\nto reuse DCMTK's rules)", ACCESS,
        dest="access_daemon"),
    Opt("", "--hosts-allow", 1, _FILE + " (default: /etc/hosts.allow)",
        "read the allow rules from file f", ACCESS, dest="hosts_allow"),
    Opt("", "--hosts-deny", 1, _FILE + " (default: /etc/hosts.deny)",
        "read the deny rules from file f", ACCESS, dest="hosts_deny"),
    Opt("", "--listen", 1, "[a]ddress: string",
        "listen on IPv4 or IPv6 address a; repeatable\n(default: every IPv4 address, as DCMTK)",
        NETWORK, dest="listen", accumulate=True),
    Opt("-id", "--inetd", help="serve the connection inetd passes as stdin\n(not with --fork)",
        group=NETWORK, dest="inetd"),
    Opt("-ts", "--socket-timeout", 1, _SECONDS + " (default: 60)",
        "send and receive timeout of connections\n(0: none, -1: system default)", NETWORK,
        dest="socket_timeout", value_type=Signed(-1)),
    Opt("-ta", "--acse-timeout", 1, _SECONDS + " (default: 30)",
        "wait at most s seconds for the association request", NETWORK,
        dest="acse_timeout", value_type=Signed(1)),
    Opt("-td", "--dimse-timeout", 1, _SECONDS + " (default: unlimited)",
        "wait at most s seconds for each part of a data set", NETWORK,
        dest="dimse_timeout", value_type=Signed(1)),
    Opt("", "--network-timeout", 1, _SECONDS + " (default: 60)",
        "release resources of an association idle for s seconds\n(0: never)", NETWORK,
        dest="network_timeout", value_type=Unsigned(0)),
    Opt("-aet", "--aetitle", 1, "[a]etitle: string",
        "my AE title (default: STORESCP); calls to any title\nare accepted", NETWORK,
        dest="aetitle"),
    Opt("-pdu", "--max-pdu", 1, "[n]umber of bytes: integer (4096..131072)",
        "largest PDU accepted from peers (default: 16384)", NETWORK, dest="max_pdu",
        value_type=Unsigned(4096, 131072)),
    Opt("-dhl", "--disable-host-lookup", help="do not look up the names of peers",
        group=NETWORK, dest="disable_host_lookup"),
    Opt("", "--refuse", help="refuse every association", group=NETWORK, dest="refuse"),
    Opt("", "--reject", help="reject associations without implementation class UID",
        group=NETWORK, dest="reject"),
    Opt("", "--ignore", help="receive data sets but store nothing", group=NETWORK,
        dest="ignore"),
    Opt("", "--no-echo", help="do not accept verification (C-ECHO)", group=NETWORK,
        dest="no_echo"),
    Opt("", "--sleep-after", 1, _SECONDS, "pause s seconds after each store (default: 0)",
        NETWORK, dest="sleep_after", value_type=Unsigned(0)),
    Opt("", "--sleep-during", 1, _SECONDS, "pause s seconds while receiving (default: 0)",
        NETWORK, dest="sleep_during", value_type=Unsigned(0)),
    Opt("", "--abort-after",
        help="abort the association once a data set is received,\ninstead of answering",
        group=NETWORK, dest="abort_after"),
    Opt("", "--abort-during", help="abort the association while a data set arrives",
        group=NETWORK, dest="abort_during"),
    Opt("-pm", "--promiscuous",
        help="also accept SOP classes that have no known name\n(not with --config-file)",
        group=NETWORK, dest="promiscuous"),
    Opt("-up", "--uid-padding", help="ignore one trailing space in data set UIDs",
        group=NETWORK, dest="uid_padding"),
    # TLS (SPEC §2.6, §10; storescpd/tls.py)
    Opt("-tls", "--disable-tls", help="plain TCP connections (default)", group=TLS_STACK,
        dest="tls.files", const=None, block="tls"),
    _tls("+tls", "--enable-tls", "accept TLS connections only, with key p and\ncertificate c",
         "files", group=TLS_STACK, values=2,
         value_help="[p]rivate key file, [c]ertificate file: string", block="tls"),
    _tls("+ps", "--std-passwd", "ask for the key password on the terminal (default)",
         "password", None, group=TLS_PASSWORD, block="password"),
    _tls("+pw", "--use-passwd", "decrypt the key with password p", "password",
         group=TLS_PASSWORD, values=1, value_help="[p]assword: string", block="password"),
    _tls("-pw", "--null-passwd", "decrypt the key with an empty password", "password", "",
         group=TLS_PASSWORD, block="password"),
    _tls("-pem", "--pem-keys", "key and certificates are PEM files (default)", "key_format",
         "pem", group=TLS_FORMAT, block="key-format"),
    _tls("-der", "--der-keys", "key and certificates are DER files", "key_format", "der",
         group=TLS_FORMAT, block="key-format"),
    _tls("+cf", "--add-cert-file", "trust the certificate in file f", "cert_files",
         group=TLS_CA, values=1, value_help=_FILE, accumulate=True),
    _tls("+cd", "--add-cert-dir", "trust the certificates in directory d", "cert_dirs",
         group=TLS_CA, values=1, value_help="[d]irectory: string", accumulate=True),
    _tls("+crl", "--add-crl-file", "load the revocation list in file f\n(implies --enable-crl-vfy)",
         "crl_files", group=TLS_CA, values=1, value_help=_FILE, accumulate=True),
    _tls("+crv", "--enable-crl-vfy", "check peer certificates against revocation lists",
         "crl_check", "leaf", group=TLS_CA),
    _tls("+cra", "--enable-crl-all", "check whole chains against revocation lists",
         "crl_check", "all", group=TLS_CA),
    _tls("+py", "--profile-bcp195-nd", "BCP 195 non-downgrading profile (default)", "profile",
         "bcp195-nd", group=TLS_PROFILE, block="profile"),
    _tls("+px", "--profile-bcp195", "BCP 195 profile", "profile", "bcp195", group=TLS_PROFILE,
         block="profile"),
    _tls("+pz", "--profile-bcp195-ex", "BCP 195 extended profile", "profile", "bcp195-ex",
         group=TLS_PROFILE, block="profile"),
    _tls("+pa", "--profile-aes", "AES secure transport profile (retired)", "profile", "aes",
         group=TLS_PROFILE, block="profile"),
    _tls("+pn", "--profile-null", "authenticated but unencrypted profile\n(retired, IHE ATNA)",
         "profile", "null", group=TLS_PROFILE, block="profile"),
    Opt("+cc", "--list-ciphers", help="list the supported cipher suites and exit",
        group=TLS_CIPHERS, exclusive=True),
    _tls("+cs", "--cipher", "also offer cipher suite c\n(not with --profile-bcp195-ex)",
         "ciphers", group=TLS_CIPHERS, values=1, value_help="[c]ipher suite name: string",
         accumulate=True),
    _tls("+dp", "--dhparam", "read Diffie-Hellman parameters from file f", "dhparam",
         group=TLS_CIPHERS, values=1, value_help=_FILE),
    _tls("+rs", "--seed", "add file f to the random generator's seed\n(OpenSSL 3 seeds itself)",
         "seed", group=TLS_SEED,
         values=1, value_help=_FILE),
    _tls("+ws", "--write-seed", "rewrite the seed file after each association\n"
         "(only with --seed)",
         "write_seed_file", group=TLS_SEED, block="write-seed"),
    _tls("+wf", "--write-seed-file", "write a new seed to file f after each association",
         "write_seed_file",
         group=TLS_SEED, values=1, value_help=_FILE + " (only with --seed)",
         block="write-seed"),
    _tls("-rc", "--require-peer-cert", "verify the peer's certificate, which must be sent\n"
         "(default)", "peer_cert", "require", group=TLS_PEER, block="peer-cert"),
    _tls("-vc", "--verify-peer-cert", "verify the peer's certificate if one is sent",
         "peer_cert", "verify", group=TLS_PEER, block="peer-cert"),
    _tls("-ic", "--ignore-peer-cert", "do not verify the peer's certificate", "peer_cert",
         "ignore", group=TLS_PEER, block="peer-cert"),
    # output
    Opt("-od", "--output-directory", 1, '[d]irectory: string (default: ".")',
        "store received objects in the existing directory d", OUT_GENERAL,
        dest="output_directory"),
    Opt("", "--no-sync",
        help="answer before the file is flushed to disk (faster;\n"
        "a crash may lose images already acknowledged)",
        group=OUT_GENERAL, dest="no_sync"),
    Opt("-B", "--normal", help="decode and re-encode data sets (default)", group=OUT_BITS,
        dest="bit_preserving", const=False, block="bits"),
    Opt("+B", "--bit-preserving", help="store data sets exactly as received", group=OUT_BITS,
        dest="bit_preserving", block="bits"),
    Opt("+F", "--write-file", help="write DICOM files with meta information (default)",
        group=OUT_FORMAT, dest="write_file", block="format"),
    Opt("-F", "--write-dataset", help="write the bare data set", group=OUT_FORMAT,
        dest="write_file", const=False, block="format"),
    Opt("+t=", "--write-xfer-same", help="keep the transfer syntax received (default)",
        group=OUT_XFER, dest="write_xfer", const="same", block="xfer"),
    Opt("+te", "--write-xfer-little", help="convert to explicit VR little endian",
        group=OUT_XFER, dest="write_xfer", const="little", block="xfer"),
    Opt("+tb", "--write-xfer-big", help="convert to explicit VR big endian", group=OUT_XFER,
        dest="write_xfer", const="big", block="xfer"),
    Opt("+ti", "--write-xfer-implicit", help="convert to implicit VR little endian",
        group=OUT_XFER, dest="write_xfer", const="implicit", block="xfer"),
    Opt("+td", "--write-xfer-deflated", help="convert to deflated explicit VR little endian",
        group=OUT_XFER, dest="write_xfer", const="deflated", block="xfer"),
    Opt("+u", "--enable-new-vr", help="write post-1993 VRs such as UN and UT (default)",
        group=OUT_VR, dest="enable_new_vr", block="vr"),
    Opt("-u", "--disable-new-vr", help="write post-1993 VRs as legacy VRs (OB)", group=OUT_VR,
        dest="enable_new_vr", const=False, block="vr"),
    Opt("+g=", "--group-length-recalc", help="recompute group lengths that exist (default)",
        group=OUT_GL, dest="group_length", const="recalc", block="group-length"),
    Opt("+g", "--group-length-create", help="always write group lengths", group=OUT_GL,
        dest="group_length", const="create", block="group-length"),
    Opt("-g", "--group-length-remove", help="never write group lengths", group=OUT_GL,
        dest="group_length", const="remove", block="group-length"),
    Opt("+e", "--length-explicit", help="write explicit lengths (default)", group=OUT_LENGTH,
        dest="length_explicit", block="length"),
    Opt("-e", "--length-undefined", help="write undefined lengths", group=OUT_LENGTH,
        dest="length_explicit", const=False, block="length"),
    Opt("-p", "--padding-off", help="do not pad (default)", group=OUT_PAD, dest="padding",
        const=None, block="padding"),
    Opt("+p", "--padding-create", 2, "[f]ile-pad [i]tem-pad: integer",
        "pad files to a multiple of f bytes and items\nto a multiple of i bytes", OUT_PAD,
        dest="padding", value_type=Unsigned(0), block="padding"),
    Opt("-uc", "--retain-un", help="keep them as UN (default)", group=OUT_UN,
        dest="convert_un", const=False, block="un"),
    Opt("+uc", "--convert-un", help="give them their dictionary VR", group=OUT_UN,
        dest="convert_un", block="un"),
    Opt("+cl", "--compression-level", 1, "[l]evel: integer (default: 6)",
        "0 stores, 1 is fastest, 9 compresses most", OUT_DEFLATE, dest="compression_level",
        value_type=Unsigned(0, 9)),
    Opt("-ss", "--sort-conc-studies", 1, "[p]refix: string",
        "one directory per study, named by prefix p and\na time stamp", OUT_SORT,
        dest="sort", const="conc-studies", value_dest="sort_prefix", block="sort"),
    Opt("-su", "--sort-on-study-uid", 1, "[p]refix: string",
        "one directory per study, named by prefix p and\nthe Study Instance UID", OUT_SORT,
        dest="sort", const="study-uid", value_dest="sort_prefix", block="sort"),
    Opt("-sp", "--sort-on-patientname",
        help="one directory per study, named by the patient's\nname and a time stamp",
        group=OUT_SORT, dest="sort", const="patientname", block="sort"),
    Opt("-uf", "--default-filenames", help="name files by SOP Instance UID (default)",
        group=OUT_NAMES, dest="unique_filenames", const=False, block="filenames"),
    Opt("+uf", "--unique-filenames", help="name files by a newly made unique UID",
        group=OUT_NAMES, dest="unique_filenames", block="filenames"),
    Opt("-tn", "--timenames", help="name files by the time of reception", group=OUT_NAMES,
        dest="timenames"),
    Opt("-fe", "--filename-extension", 1, "[e]xtension: string",
        "append e to every file name", OUT_NAMES, dest="filename_extension"),
    # events
    Opt("-xcr", "--exec-on-reception", 1, "[c]ommand: string",
        "run command c after each object received\n(placeholders #p #f #a #c #r, each value\n"
        "passed as one word)", EVENT, dest="exec_on_reception"),
    Opt("-xcs", "--exec-on-eostudy", 1, "[c]ommand: string",
        "run command c once all objects of a study\nhave been received", EVENT,
        dest="exec_on_eostudy"),
    Opt("-rns", "--rename-on-eostudy",
        help="rename the files of a study once all its objects\nhave been received",
        group=EVENT, dest="rename_on_eostudy"),
    Opt("-tos", "--eostudy-timeout", 1, "[t]imeout: integer",
        "a study ends after t seconds without objects", EVENT, dest="eostudy_timeout",
        value_type=Signed(0)),
    Opt("-xs", "--exec-sync", help="wait for commands to finish", group=EVENT,
        dest="exec_sync"),
)  # fmt: skip

BY_NAME: Final[dict[str, Opt]] = {
    **{o.short: o for o in OPTIONS if o.short},
    **{o.long: o for o in OPTIONS},
}
BY_LONG: Final[dict[str, Opt]] = {o.long: o for o in OPTIONS}


def block_members(block: str) -> tuple[str, ...]:
    """Long names of one option block, in table order."""
    return tuple(o.long for o in OPTIONS if o.block == block)


COMPRESSED_PREFER: Final = tuple(
    name
    for name in block_members("prefer")
    if name
    not in ("--prefer-uncompr", "--prefer-little", "--prefer-big", "--prefer-deflated",
            "--implicit", "--accept-all")
)  # fmt: skip

# The order storescp evaluates its options in (storescp.cc main(), then the TLS options):
# the first error met is the one reported. Block members appear in storescp's evaluation
# order, which decides the message when several members are given.
CHECKED_BEFORE_LOGGING: Final = (
    "--inetd", "--single-process", "--fork", PORT,
    "--debug", "--verbose", "--quiet", "--log-level", "--log-config", "--arguments",
)  # fmt: skip
CHECKED_AFTER_LOGGING: Final = (
    "--verbose-pc",
    *block_members("prefer"),
    "--socket-timeout", "--acse-timeout", "--dimse-timeout", "--aetitle", "--max-pdu",
    "--disable-host-lookup", "--refuse", "--reject", "--ignore", "--sleep-after",
    "--sleep-during", "--abort-after", "--abort-during", "--promiscuous", "--uid-padding",
    "--config-file", "--access-full", "--access-control", "--output-directory",
    *block_members("bits"), *block_members("format"), *block_members("xfer"),
    *block_members("vr"), *block_members("group-length"), *block_members("length"),
    *block_members("padding"), *block_members("un"), "--compression-level",
    *block_members("sort"), *block_members("filenames"), "--timenames",
    "--filename-extension", "--exec-on-reception", "--exec-on-eostudy", "--rename-on-eostudy",
    "--eostudy-timeout", "--exec-sync",
    "--disable-tls", "--enable-tls", "--std-passwd", "--use-passwd", "--null-passwd",
    "--pem-keys", "--der-keys", "--dhparam", "--seed", "--write-seed", "--write-seed-file",
    "--require-peer-cert", "--ignore-peer-cert", "--verify-peer-cert",
    "--profile-bcp195", "--profile-bcp195-nd", "--profile-bcp195-ex", "--profile-aes",
    "--profile-null", "--add-cert-file", "--add-cert-dir", "--add-crl-file",
    "--enable-crl-vfy", "--enable-crl-all", "--cipher",
    # storescpd's own options last: they conflict with nothing
    "--network-timeout", "--no-echo", "--no-sync",
    "--workers", "--max-workers", "--max-requests", "--graceful-timeout",
    "--max-worker-memory", "--worker-timeout", "--max-associations", "--daemon", "--pid-file",
    "--listen", "--worker-idle-timeout", "--access-daemon", "--hosts-allow", "--hosts-deny",
    "--user", "--group", "--max-associations-per-host",
)  # fmt: skip
CHECK_ORDER: Final = CHECKED_BEFORE_LOGGING + CHECKED_AFTER_LOGGING


# --- results ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TlsOptions:
    """The TLS settings given with ``+tls`` (SPEC §2.6, §10)."""

    private_key_file: str
    certificate_file: str
    password: str | None = field(default=None, repr=False)  # None: ask on the terminal (+ps)
    key_format: str = "pem"  # "pem" | "der"
    cert_files: tuple[str, ...] = ()  # command-line order (DCMTK loads them right to left)
    cert_dirs: tuple[str, ...] = ()
    crl_files: tuple[str, ...] = ()
    crl_check: str = "none"  # "none" | "leaf" | "all"; +crl implies "leaf"
    profile: str = "bcp195-nd"  # "bcp195-nd" | "bcp195" | "bcp195-ex" | "aes" | "null"
    ciphers: tuple[str, ...] = ()  # command-line order (DCMTK adds them right to left)
    dhparam: str | None = None
    seed: str | None = None
    write_seed_file: str | None = None  # +ws: the --seed file; +wf: its own file
    peer_cert: str = "require"  # "require" | "verify" | "ignore"


@dataclass(frozen=True, slots=True)
class Options:
    """storescpd's settings after the whole command line was checked; fields follow the
    DCMTK long option names."""

    port: int | None = None
    log_level: str = "warn"  # fatal | error | warn | info | debug | trace
    log_config: str | None = None
    verbose_pc: bool = False
    arguments: bool = False
    fork: bool = False
    workers: int = 0
    max_workers: int | None = None
    max_requests: int = 0
    max_worker_memory: int = 0
    worker_idle_timeout: int = 60
    worker_timeout: int = 0
    max_associations: int = 0
    max_associations_per_host: int = 0
    daemon: bool = False
    pid_file: str | None = None
    graceful_timeout: int = 60
    user: str | None = None
    group: str | None = None
    inetd: bool = False
    listen: tuple[str, ...] = ()
    config_file: tuple[str, str] | None = None
    prefer: str = "prefer-uncompr"
    promiscuous: bool = False
    access_control: bool = False
    access_daemon: str = "storescpd"
    hosts_allow: str = "/etc/hosts.allow"
    hosts_deny: str = "/etc/hosts.deny"
    socket_timeout: int = 60
    acse_timeout: int = 30
    dimse_timeout: int | None = None
    network_timeout: int = 60
    aetitle: str = "STORESCP"
    max_pdu: int = 16384
    disable_host_lookup: bool = False
    refuse: bool = False
    reject: bool = False
    ignore: bool = False
    sleep_after: int = 0
    sleep_during: int = 0
    abort_after: bool = False
    abort_during: bool = False
    uid_padding: bool = False
    no_echo: bool = False
    no_sync: bool = False
    output_directory: str = "."
    bit_preserving: bool = False
    write_file: bool = True
    write_xfer: str = "same"
    enable_new_vr: bool = True
    group_length: str = "recalc"
    length_explicit: bool = True
    padding: tuple[int, int] | None = None
    convert_un: bool = False
    compression_level: int = 6
    sort: str | None = None
    sort_prefix: str = ""
    unique_filenames: bool = False
    timenames: bool = False
    filename_extension: str = ""
    # storescpd-dcmrecv only (SPEC §12): +fsu, +fst, +ssd, -uca, and the dcmrecv behaviour
    # (Verification only without -xf, no UID checks, dcmrecv's rejects and exit statuses)
    short_unique_names: bool = False
    system_time_names: bool = False
    series_date_subdir: bool = False
    use_called_aetitle: bool = False
    dcmrecv: bool = False
    exec_on_reception: str | None = None
    exec_on_eostudy: str | None = None
    rename_on_eostudy: bool = False
    eostudy_timeout: int | None = None
    exec_sync: bool = False
    tls: TlsOptions | None = None
    used_options: frozenset[str] = frozenset()


# --- errors and early exits ---------------------------------------------------------------------


class OptionError(Exception):
    """A command-line error with DCMTK's one-line text (printed after ``error: ``).

    ``quiet_suppressible``: found after logging was set up (range, conflict and dependency
    checks), so DCMTK prints nothing for it under ``--quiet``. ``silent``: DCMTK would print
    nothing for this command line (quiet mode, or ``--inetd`` already pointed stderr at
    /dev/null); the exit status is 1 all the same.
    """

    exit_code: ExitCode = ExitCode.COMMAND_LINE

    def __init__(self, message: str, *, quiet_suppressible: bool = False,
                 silent: bool = False) -> None:  # fmt: skip
        super().__init__(message)
        self.message = message
        self.quiet_suppressible = quiet_suppressible
        self.silent = silent


class Request(Enum):
    """What an exclusive option (or an empty command line) asks for instead of serving."""

    USAGE = "usage"  # no arguments at all, or --help
    VERSION = "version"
    LIST_CIPHERS = "list-ciphers"


class InformationRequested(Exception):
    """Raised by :func:`parse` for ``--help``, ``--version``, ``+cc`` or no arguments."""

    def __init__(self, request: Request) -> None:
        super().__init__(request.value)
        self.request = request


# --- numbers (SPEC §1.2) ------------------------------------------------------------------------

_C_SPACE = "[ \t\n\v\f\r]*"
_UNSIGNED = re.compile(_C_SPACE + "([+-]?)([0-9]+)")
_SIGNED = re.compile(_C_SPACE + "([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")
ULONG_MAX: Final = 2**64 - 1
LONG_MIN: Final = -(2**63)
LONG_MAX: Final = 2**63 - 1


def scan_unsigned(text: str) -> int | None:
    """C ``sscanf(text, "%lu")`` on LP64 Linux; ``None`` when nothing converts.

    Leading blanks are skipped, trailing junk is ignored, a minus wraps modulo 2**64 and too
    large a number saturates, as ``strtoul`` does.
    """
    match = _UNSIGNED.match(text)
    if match is None:
        return None
    magnitude = int(match.group(2))
    if magnitude > ULONG_MAX:
        return ULONG_MAX
    return -magnitude % 2**64 if match.group(1) == "-" else magnitude


def scan_signed(text: str) -> int | None:
    """C ``sscanf(text, "%li")``: base from the prefix (``0x`` hex, ``0`` octal), saturating."""
    match = _SIGNED.match(text)
    if match is None:
        return None
    digits = match.group(2)
    if digits[:2] in ("0x", "0X"):
        value = int(digits[2:], 16)
    else:
        value = int(digits, 8 if digits.startswith("0") else 10)
    if match.group(1) == "-":
        value = -value
    return min(max(value, LONG_MIN), LONG_MAX)


# --- command files (SPEC §1.3) ------------------------------------------------------------------


def split_command_file(text: str) -> list[str]:
    """Split a command file's text like DCMTK: blanks separate, quotes group, no escapes.

    A closing quote ends the token at once (so ``""`` is an empty token and ``a"b c"d`` gives
    ``ab c`` and ``d``); an unterminated quote runs to the end of the text.
    """
    tokens: list[str] = []
    value: list[str] = []
    quote = ""
    for char in text:
        if char in "\"'" and quote in ("", char):
            if quote:
                tokens.append("".join(value))
                value.clear()
            quote = "" if quote else char
        elif char in " \t\r\n" and not quote:
            if value:
                tokens.append("".join(value))
                value.clear()
        else:
            value.append(char)
    if value:
        tokens.append("".join(value))
    return tokens


def expand_command_files(argv: Sequence[str]) -> list[str]:
    """Replace each ``@name`` argument by the tokens of file ``name`` (not recursively)."""
    expanded: list[str] = []
    for arg in argv:
        if len(arg) < 2 or not arg.startswith("@"):
            expanded.append(arg)
            continue
        name = arg[1:]
        if os.path.isdir(name):
            continue  # DCMTK's stream opens a directory and reads nothing from it
        try:
            with open(name, "rb") as stream:
                data = stream.read()
        except OSError:
            raise OptionError(f"Cannot open command file '{name}'") from None
        expanded.extend(split_command_file(os.fsdecode(data)))
    return expanded


# --- tokens (SPEC §1.1) -------------------------------------------------------------------------


def is_option(token: str) -> bool:
    """At least two characters, ``-`` or ``+`` first, and no digit second."""
    return len(token) >= 2 and token[0] in "+-" and not token[1].isdigit()


@dataclass(frozen=True, slots=True)
class Occurrence:
    position: int  # index among the options given
    option: Opt
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Scan:
    """The command line split into options and parameters (before any check)."""

    occurrences: tuple[Occurrence, ...]
    parameters: tuple[str, ...]
    expanded: tuple[str, ...]  # options in long form, values and parameters verbatim


def scan(tokens: Sequence[str], program: Program | None = None) -> Scan:
    """Classify tokens; an option takes the next ``values`` tokens whatever they look like."""
    by_name = (program or STORESCP).by_name
    occurrences: list[Occurrence] = []
    parameters: list[str] = []
    expanded: list[str] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if not is_option(token):
            parameters.append(token)
            expanded.append(token)
            continue
        option = by_name.get(token)
        if option is None:
            raise OptionError(f"Unknown option {token}")
        values = tuple(tokens[index : index + option.values])
        if len(values) < option.values:
            raise OptionError(f"Missing value for option {option.long}")
        index += option.values
        occurrences.append(Occurrence(len(occurrences), option, values))
        expanded.extend((option.long, *values))
    return Scan(tuple(occurrences), tuple(parameters), tuple(expanded))


# --- resolution: which occurrences take effect ---------------------------------------------------


class Resolution:
    """Which options take effect, decided like DCMTK's ``findOption`` in option blocks.

    Outside blocks the rightmost occurrence counts. In a block, storescp looks the members
    up in its own order, each one only right of the last found: the members found run
    their checks in that order, and the rightmost member given wins.
    """

    def __init__(self, found: Scan, program: Program | None = None) -> None:
        self.program = program or STORESCP
        self.scan = found
        self.rightmost: dict[str, Occurrence] = {o.option.long: o for o in found.occurrences}
        self.executed: list[str] = []
        self.winners: dict[str, str] = {}
        last_in_block: dict[str, int] = {}
        for name in self.program.check_order:
            occurrence = self.rightmost.get(name)
            if occurrence is None:
                continue
            block = occurrence.option.block
            if block:
                if occurrence.position < last_in_block.get(block, -1):
                    continue
                last_in_block[block] = occurrence.position
                self.winners[block] = name
            self.executed.append(name)

    def given(self, name: str) -> bool:
        return name in self.rightmost

    def winner(self, block: str) -> str | None:
        return self.winners.get(block)

    def active(self, name: str) -> bool:
        """Given and, for a block member, the member that won."""
        block = self.program.by_long[name].block
        return self.winner(block) == name if block else self.given(name)

    def all_values(self, name: str) -> list[tuple[str, ...]]:
        return [o.values for o in self.scan.occurrences if o.option.long == name]

    @property
    def log_level(self) -> str:
        """The effective level; "warn" also stands in for an invalid ``-ll`` (already refused)."""
        if self.given("--log-level"):
            return LOG_LEVELS.get(self.rightmost["--log-level"].values[0].lower(), "warn")
        winner = self.winner("verbosity")
        return str(self.program.by_long[winner].const) if winner else "warn"

    @property
    def quiet(self) -> bool:
        """DCMTK's quiet mode: the root logger does not even show errors."""
        return self.log_level == "fatal" and not self.given("--log-config")

    @property
    def info_enabled(self) -> bool:
        # With --log-config the levels live in a file; it is not read here.
        return self.log_level in ("info", "debug", "trace") or self.given("--log-config")


# log4cplus accepts these names in any case; "all" is everything, "off" nothing (we keep fatal)
LOG_LEVELS: Final = {
    "fatal": "fatal", "error": "error", "warn": "warn", "info": "info", "debug": "debug",
    "trace": "trace", "all": "trace", "off": "fatal",
}  # fmt: skip


# --- conflict and dependency rules (SPEC §2.2-2.8, §10) -----------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    """A check run when ``subject`` takes effect, before its values are read."""

    subject: str
    message: str
    violated: Callable[[Resolution], bool]


def _conflict(subject: str, other: str, when: Callable[[Resolution], bool],
              first: str = "") -> Rule:  # fmt: skip
    return Rule(subject, f"{first or subject} not allowed with {other}", when)


def _needs(subject: str, needs: str, ok: Callable[[Resolution], bool], name: str = "") -> Rule:
    return Rule(subject, f"{name or subject} only allowed with {needs}", lambda r: not ok(r))


def _wins(name: str) -> Callable[[Resolution], bool]:
    return lambda r: r.active(name)


def _given(name: str) -> Callable[[Resolution], bool]:
    return lambda r: r.given(name)


def _sorting(r: Resolution) -> bool:
    return r.winner("sort") is not None


def _tls_on(r: Resolution) -> bool:
    return r.active("--enable-tls")


_WRITE_XFERS = ("--write-xfer-little", "--write-xfer-big", "--write-xfer-implicit",
                "--write-xfer-deflated")  # fmt: skip
_NOT_WITH_BIT_PRESERVING = (
    *_WRITE_XFERS, *block_members("vr"), *block_members("group-length"),
    *block_members("length"), "--padding-create", *block_members("sort"),
)  # fmt: skip
_SORT_TEXT = "--sort-conc-studies, --sort-on-study-uid or --sort-on-patientname"
_TLS_FREE = ("--disable-tls", "--enable-tls", "--list-ciphers")
_TLS_DEPENDENT = tuple(
    o.long for o in OPTIONS if o.dest.startswith("tls.") and o.long not in _TLS_FREE
)


def _rules() -> Iterator[Rule]:
    yield _conflict("--fork", "--fork", _given("--inetd"), first="--inetd")
    yield _conflict("--workers", "--fork", _wins("--fork"))
    for subject in ("--access-daemon", "--hosts-allow", "--hosts-deny"):
        yield _needs(subject, "--access-control", _wins("--access-control"))
    yield _needs("--max-workers", "--workers", _given("--workers"))
    yield _needs("--max-requests", "--workers", _given("--workers"))
    yield _needs("--max-worker-memory", "--workers", _given("--workers"))
    yield _needs("--worker-timeout", "--workers", _given("--workers"))
    yield _needs("--worker-idle-timeout", "--workers", _given("--workers"))
    yield _conflict("--daemon", "--inetd", _given("--inetd"))
    yield _conflict("--listen", "--inetd", _given("--inetd"))
    yield _conflict("--log-level", "--verbose, --debug or --quiet",
                    lambda r: r.winner("verbosity") is not None)  # fmt: skip
    yield _conflict("--log-config", "--log-level", _given("--log-level"))
    yield _conflict("--log-config", "--verbose, --debug or --quiet",
                    lambda r: r.winner("verbosity") is not None)  # fmt: skip
    yield _needs("--verbose-pc", "verbose mode", lambda r: r.info_enabled)
    for prefer in block_members("prefer"):
        if prefer != "--prefer-uncompr":
            yield _conflict("--config-file", prefer, _wins(prefer))
    yield _conflict("--config-file", "--promiscuous", _given("--promiscuous"))
    for subject in _NOT_WITH_BIT_PRESERVING:
        if subject in _WRITE_XFERS:
            yield _conflict(subject, "--accept-all", _wins("--accept-all"))
        if subject == "--padding-create":
            yield _conflict(subject, "--write-dataset", _wins("--write-dataset"))
        yield _conflict(subject, "--bit-preserving", _wins("--bit-preserving"))
        if subject in _WRITE_XFERS:
            for prefer in COMPRESSED_PREFER:
                yield _conflict(subject, prefer, _wins(prefer))
    yield _needs("--compression-level", "--write-xfer-deflated or --write-xfer-same",
                 lambda r: r.winner("xfer") in (None, "--write-xfer-same",
                                                "--write-xfer-deflated"))  # fmt: skip
    yield _conflict("--timenames", "--unique-filenames", _wins("--unique-filenames"))
    for subject in ("--exec-on-eostudy", "--rename-on-eostudy"):
        # DCMTK also refuses them with --fork; storescpd's coordinator makes that work.
        yield _conflict(subject, "--inetd", _given("--inetd"))
        yield _needs(subject, _SORT_TEXT, _sorting)
    yield _needs("--eostudy-timeout",
                 "--sort-conc-studies, --sort-on-study-uid, --sort-on-patientname, "
                 "--exec-on-eostudy or --rename-on-eostudy",
                 lambda r: _sorting(r) or r.given("--exec-on-eostudy")
                 or r.given("--rename-on-eostudy"))  # fmt: skip
    for subject in _TLS_DEPENDENT:
        # storescp names the wrong option for +pa (SPEC §10); scripts may match the text
        name = "--profile-basic" if subject == "--profile-aes" else ""
        yield _needs(subject, "--enable-tls", _tls_on, name=name)
        if subject in ("--write-seed", "--write-seed-file"):
            yield _needs(subject, "--seed", _given("--seed"))
    yield _conflict("--enable-crl-all", "--enable-crl-vfy", _given("--enable-crl-vfy"))
    yield _conflict("--cipher", "--profile-bcp195-ex", _wins("--profile-bcp195-ex"))


RULES: Final[tuple[Rule, ...]] = tuple(_rules())


# --- programs: one table, checks and help text per command -------------------------------------


class Program:
    """One command line built from :class:`Opt` entries: storescp's, or a view of the same
    entries for another DCMTK tool (``storescpd-dcmrecv``, :mod:`storescpd.recvoptions`).

    ``before_logging`` and ``after_logging`` list the long names (and :data:`PORT`) in the
    order the tool evaluates them; ``defaults`` are :class:`Options` fields the tool sets
    differently from storescp; ``port_required``: a missing port is found while parsing,
    before any option is checked (dcmrecv), not in its place in the check order (storescp).
    """

    def __init__(self, name: str, description: str, table: tuple[Opt, ...], *,
                 before_logging: tuple[str, ...], after_logging: tuple[str, ...],
                 rules: tuple[Rule, ...], port_help: str, usage_port: str,
                 port_required: bool = False,
                 defaults: tuple[tuple[str, object], ...] = ()) -> None:  # fmt: skip
        self.name = name
        self.description = description
        self.options = table
        self.by_name: dict[str, Opt] = {
            **{o.short: o for o in table if o.short},
            **{o.long: o for o in table},
        }
        self.by_long: dict[str, Opt] = {o.long: o for o in table}
        self.check_after_logging = after_logging
        self.check_order = before_logging + after_logging
        self.rules = rules
        self.rules_by_subject: dict[str, tuple[Rule, ...]] = {
            name: tuple(rule for rule in rules if rule.subject == name) for name in self.by_long
        }
        self.port_help = port_help
        self.usage_port = usage_port
        self.port_required = port_required
        self.defaults = dict(defaults)


STORESCP: Final = Program(
    PROGRAM, DESCRIPTION, OPTIONS, before_logging=CHECKED_BEFORE_LOGGING,
    after_logging=CHECKED_AFTER_LOGGING, rules=RULES,
    port_help="TCP port to listen on (not with --inetd)", usage_port="[port]",
)  # fmt: skip


# --- evaluation ---------------------------------------------------------------------------------


def _convert(option: Opt, raw: str) -> object:
    """One value of ``option``; raises DCMTK's ``Invalid value for option`` errors."""
    kind = option.value_type
    if isinstance(kind, Text):
        return raw
    if isinstance(kind, LogLevel):
        level = LOG_LEVELS.get(raw.lower())
        if level is None:
            raise OptionError("Invalid log level for --log-level option")
        return level
    shown = f" ({raw})" if raw else ""
    if isinstance(kind, Unsigned):
        value = scan_unsigned(raw)
        if value is None or raw.lstrip(" ").startswith("-"):
            raise OptionError(f"Invalid value for option {option.long}{shown}")
        high = kind.high
    else:
        value = scan_signed(raw)
        if value is None:
            raise OptionError(f"Invalid value for option {option.long}{shown}")
        high = None
    if value < kind.low:
        raise OptionError(f"Invalid value for option {option.long} (underflow: {raw})")
    if high is not None and value > high:
        raise OptionError(f"Invalid value for option {option.long} (overflow: {raw})")
    return value


def _port(parameters: tuple[str, ...]) -> int:
    if not parameters:
        raise OptionError("Missing parameter port")
    raw = parameters[0]
    value = scan_unsigned(raw)
    if value is None:
        raise OptionError(f"Invalid parameter value {raw}")
    suffix = "" if not raw else " (underflow)" if value < 1 else " (overflow)"
    if not 1 <= value <= 65535:
        raise OptionError(f"Invalid parameter value {raw}{suffix}")
    return value


def _effect(option: Opt, resolution: Resolution) -> dict[str, object]:
    """Run the option's checks and read its values: the fields it sets."""
    for rule in resolution.program.rules_by_subject[option.long]:
        if rule.violated(resolution):
            raise OptionError(rule.message)
    if option.accumulate:
        found = resolution.all_values(option.long)
        return {option.dest: tuple(_convert(option, v[0]) for v in found)}
    if not option.values:
        return {option.dest: option.const}
    values = tuple(_convert(option, raw) for raw in resolution.rightmost[option.long].values)
    value: object = values[0] if len(values) == 1 else values
    if option.value_dest:
        return {option.dest: option.const, option.value_dest: value}
    return {option.dest: value}


def _evaluate(resolution: Resolution) -> dict[str, object]:
    """Every check in storescp's order; returns the fields set by the options in effect."""
    settings: dict[str, object] = {}
    inetd = resolution.given("--inetd")
    program = resolution.program
    for name in program.check_order:
        suppressible = name in program.check_after_logging
        try:
            if name == PORT:
                settings["port"] = None if inetd else _port(resolution.scan.parameters)
            elif name in resolution.executed:
                effect = _effect(program.by_long[name], resolution)
                if resolution.active(name):
                    settings.update(effect)
        except OptionError as err:
            quiet = suppressible and resolution.quiet
            raise OptionError(err.message, quiet_suppressible=suppressible,
                              silent=inetd or quiet) from None  # fmt: skip
    return settings


def _tls_options(settings: dict[str, object]) -> TlsOptions | None:
    tls = {key[4:]: value for key, value in settings.items() if key.startswith("tls.")}
    files = tls.pop("files", None)
    if not isinstance(files, tuple):
        return None
    if tls.get("write_seed_file") is True:  # +ws writes back to the --seed file
        tls["write_seed_file"] = tls.get("seed")
    if tls.get("crl_files") and tls.get("crl_check", "none") == "none":
        tls["crl_check"] = "leaf"
    return TlsOptions(files[0], files[1], **tls)  # type: ignore[arg-type]


def normalize_directory(name: str) -> str:
    """Drop trailing slashes but keep a lone ``/``; an empty name means ``.``."""
    stripped = name.rstrip("/") or name[:1]
    return stripped or "."


def parse(argv: Sequence[str], program: Program | None = None) -> Options:
    """Parse storescpd's arguments (without the program name) like DCMTK storescp 3.6.7, or
    like the tool ``program`` describes.

    Raises
    ------
    OptionError
        With DCMTK's message for the first error storescp would report.
    InformationRequested
        For ``--help``, ``--version``, ``--list-ciphers`` or an empty command line.
    """
    program = program or STORESCP
    found = scan(expand_command_files(argv), program)
    if not found.expanded:
        raise InformationRequested(Request.USAGE)
    given = {o.option.long for o in found.occurrences}
    for name, request in (("--help", Request.USAGE), ("--version", Request.VERSION),
                          ("--list-ciphers", Request.LIST_CIPHERS)):  # fmt: skip
        if name in given:
            raise InformationRequested(request)
    if len(found.parameters) > 1:
        raise OptionError("Too many parameters")
    if program.port_required and not found.parameters:
        raise OptionError("Missing parameter port")
    settings = {**program.defaults, **_evaluate(Resolution(found, program))}
    tls = _tls_options(settings)
    values = {k: v for k, v in settings.items() if not k.startswith("tls.")}
    if "output_directory" in values:
        values["output_directory"] = normalize_directory(str(values["output_directory"]))
    return Options(**values, tls=tls, used_options=frozenset(given))  # type: ignore[arg-type]


def expanded_arguments(argv: Sequence[str], program: Program | None = None) -> list[str]:
    """The arguments as ``--arguments`` logs them: ``@`` files expanded, options in long form."""
    return list(scan(expand_command_files(argv), program).expanded)


def not_yet_supported(opts: Options) -> list[str]:
    """Long names of the options in effect that storescpd cannot act on yet (table order)."""
    return [o.long for o in OPTIONS if o.later and o.long in opts.used_options and
            _in_effect(o, opts)]  # fmt: skip


def _in_effect(option: Opt, opts: Options) -> bool:
    if option.dest.startswith("tls."):
        return opts.tls is not None
    if option.block:
        return bool(getattr(opts, option.dest) == option.const)
    return True


# --- output -------------------------------------------------------------------------------------


def header(program: Program | None = None) -> str:
    """The identification lines DCMTK prints before usage and errors."""
    name, text = (program.name, program.description) if program else (PROGRAM, DESCRIPTION)
    return f"${name}: {name} v{__version__} $\n\n{name}: {text}\n"


def format_error(message: str, program: Program | None = None) -> str:
    """A command-line error as DCMTK prints it on stderr."""
    return f"{header(program)}error: {message}\n"


def render_version(program: Program | None = None) -> str:
    """``--version`` output."""
    python = ".".join(str(part) for part in sys.version_info[:3])
    return f"{header(program)}\nPython {python} ({sys.implementation.name}) on {sys.platform}\n"


def render_help(program: Program | None = None) -> str:
    """Usage text in DCMTK's layout, built from the program's table (:data:`OPTIONS`)."""
    program = program or STORESCP
    table = program.options
    short_width = max(len(o.short) for o in table)
    long_width = max(len(o.long) for o in table)
    lines = [
        f"usage: {program.name} [options] {program.usage_port}",
        "",
        "parameters:",
        "  port".ljust(short_width + long_width + 6) + program.port_help,
        "",
    ]
    group: Group = ("", "")
    for option in table:
        if option.group != group:
            if option.group[0] != group[0]:
                lines.append(option.group[0])
            if option.group[1]:
                lines.append("  " + option.group[1])
            group = option.group
        indent = 4 if group[1] else 2
        lines.extend(_option_lines(option, indent, short_width, long_width))
    return header(program) + "\n".join(lines) + "\n"


def _option_lines(option: Opt, indent: int, short_width: int, long_width: int) -> list[str]:
    lead = " " * indent + option.short.ljust(short_width) + "  " + option.long.ljust(long_width)
    pad = " " * (len(lead) + 2)
    text = option.help.split("\n")
    if option.value_help:
        text.insert(0, option.value_help)
    return [f"{lead}  {text[0]}", *(pad + line for line in text[1:])]


def run_command_line(
    argv: Sequence[str],
    stdout: TextIO,
    stderr: TextIO,
    list_ciphers: Callable[[TextIO], int] | None = None,
    program: Program | None = None,
) -> Options | int:
    """Parse like storescp and do what DCMTK does before serving; the CLI's only printer.

    Returns the :class:`Options` to serve with, or the exit status to stop with: 0 after
    usage (``--help`` or no arguments) or ``--version`` on stdout, 1 after an error on stderr
    (not printed when DCMTK would stay silent). ``--list-ciphers`` calls
    ``list_ciphers(stdout)`` (the CLI passes :func:`storescpd.tls.list_ciphers`; this module
    stays free of ``ssl``) and returns its status; without one it is reported as an error
    ("--list-ciphers is not supported yet", status 1).
    """
    try:
        return parse(argv, program)
    except InformationRequested as request:
        return _answer(request.request, stdout, stderr, list_ciphers, program)
    except OptionError as err:
        if not err.silent:
            stderr.write(format_error(err.message, program))
        return err.exit_code


def _answer(request: Request, stdout: TextIO, stderr: TextIO,
            list_ciphers: Callable[[TextIO], int] | None,
            program: Program | None = None) -> int:  # fmt: skip
    if request is Request.USAGE:
        stdout.write(render_help(program))
    elif request is Request.VERSION:
        stdout.write(render_version(program))
    elif list_ciphers is not None:
        return list_ciphers(stdout)
    else:
        stderr.write(format_error("--list-ciphers is not supported yet", program))
        return ExitCode.COMMAND_LINE
    return ExitCode.OK


def option_fields() -> frozenset[str]:
    """Names of the :class:`Options` fields (for tests that check the table's targets)."""
    return frozenset(f.name for f in fields(Options))
