"""A data set too large to keep in memory is written to its output file while it arrives.

What ends up on disk must be byte for byte what the copying writer makes of the same bytes
(``write_normal``, which the DCMTK oracle tests pin down) under every option that changes the
file or its place, including the data sets that turn out to need rewriting after all; a store
refused or cut short leaves nothing, hidden or not.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from storescpd.worker.dimse import SPILL_LIMIT
from storescpd.worker.encoding import OutputFormat, write_normal
from storescpd.worker.meta import BIT_PRESERVING_VERSION_NAME, preamble_and_meta
from tests.battery.rawpeer import associate
from tests.conftest import Server
from tests.integration.test_safety import (
    DATASET_MISMATCH,
    SUCCESS,
    ct_data_set,
    encode_explicit_le,
    regular_files,
    start_isolated,
)

StartServer = Callable[..., Server]
CALLING = "SAFETYSCU"  # the calling AE title of tests.battery.rawpeer.associate


def large_ct(ct_small: Path, uid: str, frames: int = 3) -> Dataset:
    """CT_small grown past the in-memory limit: ``frames`` × 1 MiB of pixels that differ."""
    ds = ct_data_set(ct_small, uid)
    ds.Rows, ds.Columns = 512, 1024
    ds.NumberOfFrames = frames
    ds.PixelData = b"".join(bytes([n]) * (1 << 20) for n in range(frames))
    return ds


def copied(data_set: bytes, fmt: OutputFormat | None = None) -> bytes:
    """What the copying writer makes of ``data_set`` received on Explicit VR Little Endian."""
    out = io.BytesIO()
    write_normal(io.BytesIO(data_set), ExplicitVRLittleEndian, out, fmt or OutputFormat(), CALLING)
    return out.getvalue()


def with_group_length(data_set: bytes) -> bytes:
    """(0008,0000) in front: the raw look leaves such a data set to the full parser, which
    drops the group length (DCMTK's default), so the file is written anew."""
    return b"\x08\x00\x00\x00UL\x04\x00" + (1234).to_bytes(4, "little") + data_set


def stored_file(server: Server, uid: str) -> Path:
    found = [p for p in regular_files(server.od) if p.name == f"CT.{uid}"]
    assert len(found) == 1, sorted(regular_files(server.od))
    return found[0]


def leftovers(server: Server, kept: set[Path]) -> set[Path]:
    """Files under -od or the spool, hidden ones included, other than ``kept``; the study
    registry of -ss aside."""
    spool = server.od.parent / "tmp"
    found = regular_files(server.od) | (regular_files(spool) if spool.exists() else set())
    return {p for p in found - kept if ".storescpd-studies" not in str(p)}


CASES: dict[str, tuple[list[str], Callable[[bytes, str], bytes]]] = {
    "normal": ([], lambda ds, uid: copied(ds)),
    "study-folders": (["-ss", "ST"], lambda ds, uid: copied(ds)),
    "write-dataset": (["-F"], lambda ds, uid: copied(ds, OutputFormat(write_file=False))),
    "same-syntax-asked": (["+te"], lambda ds, uid: copied(ds, OutputFormat(write_xfer="little"))),
    "bit-preserving": (
        ["+B"],
        lambda ds, uid: preamble_and_meta(
            CTImageStorage, uid, ExplicitVRLittleEndian, CALLING, BIT_PRESERVING_VERSION_NAME
        )
        + ds,
    ),
    # Not streamed (the output is not the data set as received): the spool path, for contrast.
    "syntax-change": (["+ti"], lambda ds, uid: copied(ds, OutputFormat(write_xfer="implicit"))),
}


@pytest.mark.parametrize("rewritten", [False, True], ids=["as-received", "needs-rewrite"])
@pytest.mark.parametrize("case", CASES)
def test_large_object_is_stored_as_the_copying_writer_would(
    storescpd: StartServer, tmp_path: Path, ct_small: Path, case: str, rewritten: bool
) -> None:
    args, expect = CASES[case]
    server = start_isolated(storescpd, tmp_path, args)
    uids = [str(generate_uid()) for _ in range(2)]
    sent = {}
    with associate(server) as peer:
        for uid in uids:
            data_set = encode_explicit_le(large_ct(ct_small, uid))
            if rewritten:
                data_set = with_group_length(data_set)
            assert len(data_set) > SPILL_LIMIT
            sent[uid] = data_set
            assert peer.store(CTImageStorage, uid, data_set) == SUCCESS, server.log[-3000:]
    files = {stored_file(server, uid) for uid in uids}
    for uid in uids:
        assert stored_file(server, uid).read_bytes() == expect(sent[uid], uid), uid
    assert leftovers(server, files) == set()


def test_large_object_whose_uid_differs_from_the_request_is_refused_and_leaves_nothing(
    storescpd: StartServer, tmp_path: Path, ct_small: Path
) -> None:
    """The file meta written first names the request's instance; the data set names another:
    the store is refused as for a small object (0xA900), and the file made for it goes."""
    server = start_isolated(storescpd, tmp_path)
    with associate(server) as peer:
        data_set = encode_explicit_le(large_ct(ct_small, str(generate_uid())))
        assert peer.store(CTImageStorage, str(generate_uid()), data_set) == DATASET_MISMATCH
        # and the association goes on
        uid = str(generate_uid())
        assert peer.store(CTImageStorage, uid, encode_explicit_le(large_ct(ct_small, uid))) == 0
    assert leftovers(server, {stored_file(server, uid)}) == set()
