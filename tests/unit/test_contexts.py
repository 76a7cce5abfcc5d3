"""Memoized UID validation and conversion give pydicom's and pynetdicom's verdicts."""

from __future__ import annotations

import logging
import re

import pytest
from pydicom.uid import RE_VALID_UID, UID

from storescpd.worker.contexts import memoize_uid_conversion, memoize_uid_validation

CASES = [
    "1.2.840.10008.1.2",
    "1.2.840.10008.5.1.4.1.1.2",
    "1.2.3." + "4" * 58,  # 64 characters
    "1.2.3." + "4" * 59,  # 65 characters
    "1.2.03",
    "1..2",
    "1.2.a",
    "",
    "1.2.840.10008.1.2 ",
]


@pytest.mark.parametrize("value", CASES)
def test_memoized_verdict_is_pydicoms(value: str) -> None:
    uid = UID(value)  # pydicom strips trailing padding
    expected = len(uid) <= 64 and re.match(RE_VALID_UID, uid) is not None
    memoize_uid_validation()
    memoize_uid_validation()  # idempotent
    assert UID(value).is_valid is expected
    assert UID(value).is_valid is expected  # from the cache


def test_remembered_uids_are_handed_back_and_only_unremarkable_ones(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pynetdicom import _config, pdu_items, presentation

    monkeypatch.setitem(_config.VALIDATORS, "UI", lambda value: (True, ""))
    memoize_uid_conversion()
    memoize_uid_conversion()  # idempotent
    assert pdu_items.set_uid is presentation.set_uid
    first = pdu_items.set_uid(b"1.2.840.10008.1.2.1", "Transfer Syntax Name")
    again = presentation.set_uid("1.2.840.10008.1.2.1", "Abstract Syntax Name")
    assert isinstance(first, UID) and first == "1.2.840.10008.1.2.1"
    assert pdu_items.set_uid(b"1.2.840.10008.1.2.1", "x") is first
    assert presentation.set_uid("1.2.840.10008.1.2.1", "x") is again
    # A non-conformant UID warns every time, as without memoizing.
    with caplog.at_level(logging.WARNING, logger="pynetdicom"):
        odd = [pdu_items.set_uid("1.2.03", "Abstract Syntax Name") for _ in range(2)]
    assert odd[0] == odd[1] == "1.2.03" and odd[0] is not odd[1]
    assert [r.getMessage() for r in caplog.records].count(
        "Non-conformant 'Abstract Syntax Name' value '1.2.03'"
    ) == 2
    # A value the validator refuses is refused every time.
    monkeypatch.setitem(_config.VALIDATORS, "UI", lambda value: (False, "refused"))
    for _ in range(2):
        with pytest.raises(ValueError, match="refused"):
            pdu_items.set_uid("1.2.840.10008.7", "x")
    assert pdu_items.set_uid(None, "x") is None
    with pytest.raises(ValueError):
        pdu_items.set_uid("", "x", allow_empty=False)
