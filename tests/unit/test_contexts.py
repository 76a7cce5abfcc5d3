"""Memoized UID validation gives pydicom's verdicts."""

from __future__ import annotations

import re

import pytest
from pydicom.uid import RE_VALID_UID, UID

from storescpd.worker.contexts import memoize_uid_validation

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
