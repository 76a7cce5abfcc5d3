"""Logging set-up: DCMTK's one-letter records, levels, and -lc configuration files."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from storescpd import logs


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    ours = {name: logging.getLogger(name).level for name in ("storescpd", "pynetdicom")}
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for name, level in ours.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.parametrize(
    ("level", "shown"),
    [
        ("fatal", ["F: f"]),
        ("error", ["F: f", "E: e"]),
        ("warn", ["F: f", "E: e", "W: w"]),
        ("info", ["F: f", "E: e", "W: w", "I: i"]),
        ("debug", ["F: f", "E: e", "W: w", "I: i", "D: d"]),
        ("trace", ["F: f", "E: e", "W: w", "I: i", "D: d", "T: t"]),
    ],
)
def test_levels_and_letters(level: str, shown: list[str]) -> None:
    stream = io.StringIO()
    logs.configure(level, stream=stream)
    log = logging.getLogger("storescpd.test")
    log.critical("f")
    log.error("e")
    log.warning("w")
    log.info("i")
    log.debug("d")
    log.log(logs.TRACE, "t")
    assert stream.getvalue().splitlines() == shown


def test_pynetdicom_chatter_only_from_debug() -> None:
    logs.configure("info", stream=io.StringIO())
    assert not logging.getLogger("pynetdicom").isEnabledFor(logging.INFO)
    logs.configure("debug", stream=io.StringIO())
    assert logging.getLogger("pynetdicom").isEnabledFor(logging.DEBUG)


@pytest.mark.parametrize(("level", "lines"), [("info", 1), ("debug", 3)])
def test_pynetdicom_tracebacks_only_from_debug(level: str, lines: int) -> None:
    """A peer's bad bytes make pynetdicom log an exception: one line, unless debugging."""
    stream = io.StringIO()
    logs.configure(level, stream=stream)
    try:
        raise ValueError("Invalid 'Called AE Title' value")
    except ValueError as err:
        logging.getLogger("pynetdicom.dul").exception(err)
    shown = stream.getvalue().splitlines()
    assert shown[0] == "E: Invalid 'Called AE Title' value"
    assert len(shown) >= lines if lines > 1 else len(shown) == 1


@pytest.mark.parametrize("error", [TimeoutError("timed out"), ConnectionResetError(104, "reset")])
def test_a_socket_error_mid_pdu_is_one_line(error: OSError) -> None:
    """pynetdicom logs a read cut short by a socket error as a line, then the bare error with
    its traceback; only the line is shown, unless debugging."""
    for level, expected in (("info", 1), ("debug", 3)):
        stream = io.StringIO()
        logs.configure(level, stream=stream)
        dul = logging.getLogger("pynetdicom.dul")
        try:
            raise error
        except OSError as err:
            dul.error("Connection closed before the entire PDU was received")
            dul.exception(err)
        shown = stream.getvalue().splitlines()
        assert shown[0] == "E: Connection closed before the entire PDU was received"
        if expected == 1:
            assert shown == shown[:1], shown
        else:
            assert f"E: {error}" in shown and "Traceback (most recent call last):" in shown


def test_json_config_file(tmp_path: Path) -> None:
    target = tmp_path / "out.log"
    config = {
        "version": 1,
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(target)}},
        "loggers": {"storescpd": {"level": "INFO", "handlers": ["file"]}},
    }
    path = tmp_path / "log.json"
    path.write_text(json.dumps(config))
    logs.configure("warn", str(path))
    logging.getLogger("storescpd.x").info("hello from json")
    for handler in logging.getLogger("storescpd").handlers:
        handler.flush()
    assert "hello from json" in target.read_text()


def test_ini_config_file(tmp_path: Path) -> None:
    target = tmp_path / "out.log"
    path = tmp_path / "log.ini"
    path.write_text(
        "[loggers]\nkeys=root\n[handlers]\nkeys=file\n[formatters]\nkeys=plain\n"
        "[logger_root]\nlevel=INFO\nhandlers=file\n"
        f"[handler_file]\nclass=FileHandler\nformatter=plain\nargs=({str(target)!r},)\n"
        "[formatter_plain]\nformat=%(levelname)s %(message)s\n"
    )
    logs.configure("warn", str(path))
    logging.getLogger("storescpd.y").info("hello from ini")
    for handler in logging.getLogger().handlers:
        handler.flush()
    assert "INFO hello from ini" in target.read_text()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "Specified --log-config file does not exist"),
        ("", "Specified --log-config file does not contain any settings"),
        ("[nothing]\nx=1\n", "Specified --log-config file does not contain any valid settings"),
        ('{"version": 99}', "Specified --log-config file does not contain any valid settings"),
    ],
)
def test_bad_config_files(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "bad.cfg"
    if content is not None:
        path.write_text(content)
    with pytest.raises(logs.LogConfigError, match=message):
        logs.configure("warn", str(path))


def test_a_reopen_request_leaves_the_rotated_file_behind(tmp_path: Path) -> None:
    current, rotated = tmp_path / "app.log", tmp_path / "app.log.1"
    config = {
        "version": 1,
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(current),
                              "mode": "w", "formatter": "bare"}},
        "formatters": {"bare": {"format": "%(message)s"}},
        "loggers": {"storescpd": {"level": "INFO", "handlers": ["file"]}},
    }  # fmt: skip
    path = tmp_path / "log.json"
    path.write_text(json.dumps(config))
    logs.configure("warn", str(path))
    log = logging.getLogger("storescpd.test")
    log.info("before")
    current.rename(rotated)
    log.info("still before")  # nothing asked for a reopen yet
    logs.request_reopen()
    log.info("after")
    log.info("after, again")  # a "w" handler appends to the file it reopened
    assert rotated.read_text().splitlines() == ["before", "still before"]
    assert current.read_text().splitlines() == ["after", "after, again"]
    for handler in logging.getLogger("storescpd").handlers:
        handler.close()
    logging.getLogger("storescpd").handlers.clear()
