"""The event-driven loops find the pynetdicom internals they drive, and spill large data sets."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from storescpd.worker import reactor
from storescpd.worker.dimse import SpillingBuffer
from tests.conftest import poll_until


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


def test_a_store_received_before_the_association_is_established_is_answered() -> None:
    """A sender may send its first C-STORE as soon as it has the A-ASSOCIATE-AC; the request
    can then be complete while the acceptor's Association thread is still in its
    EVT_ACCEPTED handlers, before pynetdicom marks the association established. Served there
    by the DUL thread, pynetdicom's storage service stores it and drops the response."""
    from pydicom import dcmread
    from pydicom.data import get_testdata_file
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

    stored: list[str] = []

    def on_open(event: evt.Event) -> None:
        reactor.make_event_driven(event.assoc)

    def on_store(event: evt.Event) -> int:
        stored.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000

    scp = AE()
    scp.add_supported_context(CTImageStorage)
    handlers = [
        (evt.EVT_CONN_OPEN, on_open),
        # The window: the AC is out, the association not yet established, until the DUL
        # thread has the whole request (served at once, or queued for later).
        (evt.EVT_ACCEPTED, lambda event: poll_until(
            lambda: bool(stored or event.assoc.dimse.msg_queue.queue), 10, "the request")),
        (evt.EVT_C_STORE, on_store),
    ]
    server = scp.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
    try:
        scu = AE()
        scu.add_requested_context(CTImageStorage)
        scu.dimse_timeout = 5
        assoc = scu.associate("127.0.0.1", server.server_address[1])
        assert assoc.is_established
        data_set = dcmread(get_testdata_file("CT_small.dcm"))
        status = assoc.send_c_store(data_set)
        assoc.release()
    finally:
        server.shutdown()
    assert stored == [data_set.SOPInstanceUID]
    assert status and status.Status == 0x0000, "the response was dropped"
