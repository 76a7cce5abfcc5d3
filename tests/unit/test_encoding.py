"""storescpd.worker.encoding: limits of the data-set parser."""

from __future__ import annotations

import io

import pytest

from storescpd.worker.encoding import (
    EXPLICIT_LE,
    MAX_NESTING,
    OutputFormat,
    UnreadableDataset,
    write_normal,
)
from tests.battery.rawpeer import nested, tiny_data_set

CT = "1.2.840.10008.5.1.4.1.1.2"


@pytest.mark.parametrize("undefined", [True, False])
def test_sequences_nested_to_the_limit_are_written(undefined: bool) -> None:
    data = tiny_data_set(CT, "1.2.3", nested(MAX_NESTING, undefined))
    out = io.BytesIO()
    identity = write_normal(io.BytesIO(data), EXPLICIT_LE, out, OutputFormat(), "SCU")
    assert identity.sop_instance_uid == "1.2.3"
    assert out.getvalue().count(b"TEXT") == 1  # re-encoded with explicit lengths (+e), all of it


@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 20000])
def test_deeper_nesting_is_unreadable_not_a_recursion_error(depth: int) -> None:
    data = tiny_data_set(CT, "1.2.3", nested(depth, undefined=True))
    with pytest.raises(UnreadableDataset, match="nested deeper"):
        write_normal(io.BytesIO(data), EXPLICIT_LE, io.BytesIO(), OutputFormat(), "SCU")
