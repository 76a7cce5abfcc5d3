"""Logging set-up from the command line: ``-q -v -d -ll`` levels, ``-lc`` configuration files.

Records look like DCMTK's (``W: message``) and go to stderr. ``-lc`` takes a Python logging
configuration instead of a log4cplus one: INI for :func:`logging.config.fileConfig` or JSON for
:func:`logging.config.dictConfig`.
"""

from __future__ import annotations

import configparser
import contextlib
import json
import logging
import logging.config
import os
import sys
from typing import TextIO

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

LEVELS = {
    "fatal": logging.CRITICAL,
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE,
}
LETTERS = {
    logging.CRITICAL: "F",
    logging.ERROR: "E",
    logging.WARNING: "W",
    logging.INFO: "I",
    logging.DEBUG: "D",
    TRACE: "T",
}


BAD_CONFIG = (
    configparser.Error,
    ValueError,
    KeyError,
    TypeError,
    AttributeError,
    ImportError,
    RuntimeError,  # fileConfig wraps the parser's errors in it (3.11)
    OSError,
)


class LogConfigError(Exception):
    """A ``--log-config`` file that cannot be used; the text is DCMTK's one-line message."""


class LetterFormatter(logging.Formatter):
    """``<L>: message`` with DCMTK's one-letter level names."""

    def format(self, record: logging.LogRecord) -> str:
        record.levelletter = LETTERS.get(record.levelno, record.levelname[:1])
        return super().format(record)


_reopen_requests = 0
"""How often USR1 asked for log files to be reopened (see :class:`ReopenOnRequest`)."""


def request_reopen() -> None:
    """Ask every log file to be reopened before its next record (logrotate's USR1).

    Safe in a signal handler: it only counts. The reopening happens in the thread that logs
    next, under the handler's lock, never in the middle of another record.
    """
    global _reopen_requests
    _reopen_requests += 1


class ReopenOnRequest(logging.Filter):
    """Attached to a :class:`logging.FileHandler`: reopens its file by name, in append mode,
    when a reopen was requested since its last record, so a rotated file is left behind."""

    def __init__(self, handler: logging.FileHandler) -> None:
        super().__init__()
        self.handler = handler
        self.seen = _reopen_requests

    def filter(self, record: logging.LogRecord) -> bool:
        if self.seen != _reopen_requests:
            with self.handler.lock or contextlib.nullcontext():
                if self.seen != _reopen_requests:
                    self.seen = _reopen_requests
                    self._reopen()
        return True

    def _reopen(self) -> None:
        handler = self.handler
        try:
            # The handler owns the stream from here on, hence no with block.
            stream = open(  # noqa: SIM115
                handler.baseFilename, "a", encoding=handler.encoding, errors=handler.errors
            )
        except OSError:
            return  # keep writing where we were rather than lose the record
        old = handler.setStream(stream)
        if old is not None:
            old.close()


def _watch_file_handlers() -> None:
    """Let every file handler of the configuration follow :func:`request_reopen`."""
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):
            if isinstance(handler, logging.FileHandler) and not any(
                isinstance(f, ReopenOnRequest) for f in handler.filters
            ):
                handler.addFilter(ReopenOnRequest(handler))


class PeerTracebackFilter(logging.Filter):
    """Drops the traceback pynetdicom attaches to its errors about a peer's bytes.

    Its message line stays (``E: Unable to decode the received PDU data``); the traceback is a
    stack dump of pynetdicom's own code that tells an administrator nothing, and a hostile peer
    could fill the log with it. A socket error logged as nothing but its own text, after the
    line that says what failed, is dropped. From ``debug`` on everything is kept.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not (record.name.startswith("pynetdicom") and record.exc_info):
            return True
        error = record.exc_info[1]
        record.exc_info = None
        record.exc_text = None
        # A failed socket read (a timeout or a reset in the middle of a PDU) is logged twice:
        # pynetdicom's line, then the bare text of the error ("timed out"), which only repeats it.
        return not (isinstance(error, OSError) and record.msg is error)


def configure(level: str, config_file: str | None = None, stream: TextIO | None = None) -> None:
    """Configure the ``storescpd`` and ``pynetdicom`` loggers.

    pynetdicom's own INFO chatter duplicates our DCMTK-style lines, so it is only shown from
    ``debug`` on.
    """
    if config_file is not None:
        _load_config_file(config_file)
        _watch_file_handlers()
        return
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(LetterFormatter("%(levelletter)s: %(message)s"))
    ours = LEVELS[level]
    if ours > logging.DEBUG:
        handler.addFilter(PeerTracebackFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("storescpd").setLevel(ours)
    logging.getLogger("pynetdicom").setLevel(ours if ours <= logging.DEBUG else logging.WARNING)


def _load_config_file(path: str) -> None:
    if not os.path.exists(path):
        raise LogConfigError("Specified --log-config file does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as err:
        raise LogConfigError("Specified --log-config file cannot be read") from err
    if not text.strip():
        raise LogConfigError("Specified --log-config file does not contain any settings")
    try:
        if text.lstrip().startswith("{"):
            logging.config.dictConfig(json.loads(text))
        else:
            logging.config.fileConfig(path, disable_existing_loggers=False)
    except BAD_CONFIG as err:
        raise LogConfigError(
            "Specified --log-config file does not contain any valid settings"
        ) from err
