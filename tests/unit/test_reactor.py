"""The event-driven loops find the pynetdicom internals they drive, and spill large data sets."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from storescpd.worker import reactor
from storescpd.worker.dimse import SpillingBuffer


def test_installed_pynetdicom_supports_the_event_driven_loops() -> None:
    assert reactor.supported()


def test_small_data_set_stays_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    buffer = SpillingBuffer(limit=100)
    for _ in range(10):
        buffer.write(b"0123456789")
    assert buffer.file is None
    assert buffer.data_set().read() == b"0123456789" * 10
    assert list(tmp_path.iterdir()) == []


def test_large_data_set_spills_to_the_spool_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    buffer = SpillingBuffer(limit=100)
    chunks = [bytes([i]) * 37 for i in range(10)]
    for chunk in chunks:
        buffer.write(chunk)
    assert buffer.file is not None
    assert len(buffer.getbuffer()) == 0  # nothing kept in memory once spilled
    assert buffer.data_set().read() == b"".join(chunks)
    assert len(list(tmp_path.iterdir())) == 1
    buffer.discard()
    buffer.discard()
    assert list(tmp_path.iterdir()) == []
