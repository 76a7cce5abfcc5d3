"""Storage faults under a running server: a full disk, a read-only directory, a directory
removed. Each store that cannot be kept is answered from the 0xA7xx range (out of resources)
with one log line, leaves no partial or temporary file, and the same server stores again as
soon as the condition clears."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from storescpd.studyruns import REGISTRY
from tests.integration.test_safety import (
    SUCCESS,
    associate,
    ct_data_set,
    encode_explicit_le,
    regular_files,
    start_isolated,
)


def mount(*args: str) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"mount {' '.join(args)} is not permitted here: {result.stderr.strip()}")


def umount(target: Path) -> None:
    subprocess.run(["umount", "-l", str(target)], check=False)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs: room for a handful of small CT images."""
    target = tmp_path / "tiny"
    target.mkdir()
    mount("-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs", str(target))
    try:
        yield target
    finally:
        umount(target)


# Where the file goes: the output directory itself, a study folder (-ss), and a pool worker.
LAYOUTS = {"flat": [], "study-folders": ["-ss", "ST"], "pool": ["--workers", "2"]}


def is_out_of_resources(status: int | None) -> bool:
    return status is not None and 0xA700 <= status <= 0xA7FF


def store_new(peer: object, ct_small: Path) -> tuple[str, int | None]:
    uid = str(generate_uid())
    status = peer.store(CTImageStorage, uid, encode_explicit_le(ct_data_set(ct_small, uid)))  # type: ignore[attr-defined]
    return uid, status


def assert_only_complete_files(od: Path, kept: set[str], ct_small: Path) -> None:
    """Exactly the acknowledged objects are under ``od``, complete; nothing else, no dot-file
    (but the registry of open study runs that -ss keeps)."""
    files = {p.name: p for p in regular_files(od) if REGISTRY not in p.parts}
    assert set(files) == {f"CT.{uid}" for uid in kept}, sorted(files)
    pixels = dcmread(ct_small).PixelData
    for uid in kept:
        assert dcmread(files[f"CT.{uid}"]).PixelData == pixels, f"CT.{uid} is not complete"


def failure_lines(log: str, reason: str) -> list[str]:
    return [line for line in log.splitlines() if line.startswith("E:") and reason in line]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_full_disk_answers_out_of_resources_and_recovers(
    storescpd, tmp_path: Path, ct_small: Path, tiny_disk: Path, layout: str
) -> None:
    server = start_isolated(storescpd, tmp_path, LAYOUTS[layout], od=tiny_disk)
    kept: set[str] = set()
    with associate(server) as peer:
        for _ in range(40):
            uid, status = store_new(peer, ct_small)
            if status != SUCCESS:
                break
            kept.add(uid)
        assert is_out_of_resources(status), f"status {status:#06x} after {len(kept)} stores"
        assert kept, "not even one object fit"
        assert_only_complete_files(tiny_disk, kept, ct_small)
        assert len(failure_lines(server.log, "No space left on device")) == 1, server.log
        # The condition clears: the same association stores again.
        freed = sorted(kept)[0]
        next(tiny_disk.rglob(f"CT.{freed}")).unlink()
        kept.discard(freed)
        uid, status = store_new(peer, ct_small)
        assert status == SUCCESS, f"{status:#06x}:\n{server.log}"
        kept.add(uid)
        assert peer.echo() == SUCCESS
    assert_only_complete_files(tiny_disk, kept, ct_small)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_read_only_directory_answers_out_of_resources_and_recovers(
    storescpd, tmp_path: Path, ct_small: Path, layout: str
) -> None:
    """As root a 0500 mode does not stop writes; a read-only bind mount does."""
    od = tmp_path / "od"
    od.mkdir()
    server = start_isolated(storescpd, tmp_path, LAYOUTS[layout], od=od)
    mount("--bind", str(od), str(od))
    try:
        mount("-o", "remount,bind,ro", str(od))
        with associate(server) as peer:
            _uid, status = store_new(peer, ct_small)
            assert is_out_of_resources(status), status
            assert_only_complete_files(od, set(), ct_small)
            assert len(failure_lines(server.log, "Read-only file system")) == 1, server.log
            mount("-o", "remount,bind,rw", str(od))
            uid, status = store_new(peer, ct_small)
            assert status == SUCCESS, f"{status}:\n{server.log}"
    finally:
        umount(od)
    assert_only_complete_files(od, {uid}, ct_small)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_removed_directory_answers_out_of_resources_and_recovers(
    storescpd, tmp_path: Path, ct_small: Path, layout: str
) -> None:
    od = tmp_path / "od"
    od.mkdir()
    server = start_isolated(storescpd, tmp_path, LAYOUTS[layout], od=od)
    with associate(server) as peer:
        _first, status = store_new(peer, ct_small)
        assert status == SUCCESS
        shutil.rmtree(od)
        _uid, status = store_new(peer, ct_small)
        assert is_out_of_resources(status), status
        assert not od.exists(), "the server made a directory the admin removed"
        assert len(failure_lines(server.log, "No such file or directory")) == 1, server.log
        od.mkdir()
        uid, status = store_new(peer, ct_small)
        assert status == SUCCESS, f"{status}:\n{server.log}"
    assert_only_complete_files(od, {uid}, ct_small)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_large_object_on_a_full_disk_answers_out_of_resources_and_recovers(
    storescpd, tmp_path: Path, ct_small: Path, tiny_disk: Path, layout: str
) -> None:
    """A 2 MiB object on a 256 KiB disk fails while it is written as it arrives: the store
    is answered once it is complete, from the 0xA7xx range, its file is gone, and the next
    (small) store on the same association is kept."""
    server = start_isolated(storescpd, tmp_path, LAYOUTS[layout], od=tiny_disk)
    with associate(server) as peer:
        big = ct_data_set(ct_small, str(generate_uid()))
        big.Rows, big.Columns, big.NumberOfFrames = 512, 1024, 2
        big.PixelData = bytes(2 << 20)
        status = peer.store(CTImageStorage, big.SOPInstanceUID, encode_explicit_le(big))
        assert is_out_of_resources(status), f"status {status}"
        assert len(failure_lines(server.log, "No space left on device")) == 1, server.log
        uid, status = store_new(peer, ct_small)
        assert status == SUCCESS, f"{status}:\n{server.log}"
        assert peer.echo() == SUCCESS
    assert_only_complete_files(tiny_disk, {uid}, ct_small)
