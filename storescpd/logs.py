"""Logging set-up from the command line: ``-q -v -d -ll`` levels, ``-lc`` configuration files.

Records look like DCMTK's (``W: message``) and go to stderr. ``-lc`` takes a Python logging
configuration instead of a log4cplus one: INI for :func:`logging.config.fileConfig` or JSON for
:func:`logging.config.dictConfig`.
"""

from __future__ import annotations

import configparser
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


def configure(level: str, config_file: str | None = None, stream: TextIO | None = None) -> None:
    """Configure the ``storescpd`` and ``pynetdicom`` loggers.

    pynetdicom's own INFO chatter duplicates our DCMTK-style lines, so it is only shown from
    ``debug`` on.
    """
    if config_file is not None:
        _load_config_file(config_file)
        return
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(LetterFormatter("%(levelletter)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    ours = LEVELS[level]
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
