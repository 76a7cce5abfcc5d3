"""The event-driven loops find the pynetdicom internals they drive (else they silently fall back)."""

from __future__ import annotations

from storescpd.worker import reactor


def test_installed_pynetdicom_supports_the_event_driven_loops() -> None:
    assert reactor.supported()
