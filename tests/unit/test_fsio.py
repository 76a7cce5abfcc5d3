"""AtomicFile against the real file system: a final name only ever holds a complete file."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from storescpd import fsio
from storescpd.fsio import (
    TEMP_PREFIX,
    AtomicFile,
    copy_file_bytes,
    copy_stream,
    is_writable_directory,
)


def names(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


@pytest.mark.parametrize("sync", [True, False])
def test_commit_publishes_complete_file(tmp_path: Path, sync: bool) -> None:
    final = tmp_path / "CT.1.2.3"
    with AtomicFile(str(final), sync=sync) as f:
        assert f.file is not None
        f.file.write(b"abc" * 1000)
        assert names(tmp_path) == [os.path.basename(f.temp_path)]
        assert os.path.basename(f.temp_path).startswith(TEMP_PREFIX)
        f.commit()
    assert names(tmp_path) == ["CT.1.2.3"]
    assert final.read_bytes() == b"abc" * 1000


def test_leaving_without_commit_removes_temp(tmp_path: Path) -> None:
    with AtomicFile(str(tmp_path / "x")) as f:
        assert f.file is not None
        f.file.write(b"partial")
    assert names(tmp_path) == []


def test_exception_removes_temp_and_propagates(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), AtomicFile(str(tmp_path / "x")) as f:
        assert f.file is not None
        f.file.write(b"partial")
        raise RuntimeError("boom")
    assert names(tmp_path) == []


def test_overwrite_is_reported_and_atomic(tmp_path: Path) -> None:
    final = tmp_path / "x"
    final.write_bytes(b"old")
    with AtomicFile(str(final)) as f:
        assert f.file is not None
        f.file.write(b"new")
        assert final.read_bytes() == b"old"
        f.commit()
    assert f.replaced_existing
    assert final.read_bytes() == b"new"


def test_rename_failure_removes_temp(tmp_path: Path) -> None:
    final = tmp_path / "taken"
    final.mkdir()
    (final / "child").write_text("keeps the directory non-empty")
    with pytest.raises(OSError), AtomicFile(str(final)) as f:
        assert f.file is not None
        f.file.write(b"data")
        f.commit()
    assert names(tmp_path) == ["taken"]


def test_missing_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError), AtomicFile(str(tmp_path / "nope" / "x")):
        pass


def test_copy_stream_is_exact() -> None:
    data = os.urandom(3 * (1 << 20) + 17)
    out = io.BytesIO()
    assert copy_stream(io.BytesIO(data), out, chunk=1 << 16) == len(data)
    assert out.getvalue() == data


def test_copy_file_bytes_appends_the_range_after_what_was_written(tmp_path: Path) -> None:
    payload = os.urandom(3 << 20)
    (tmp_path / "src").write_bytes(payload)
    with open(tmp_path / "src", "rb") as src, open(tmp_path / "dst", "wb") as dst:
        dst.write(b"head")  # still in dst's buffer: must land before the copied range
        assert copy_file_bytes(src, dst, 5, len(payload) - 9)
        dst.write(b"tail")
    assert (tmp_path / "dst").read_bytes() == b"head" + payload[5:-4] + b"tail"


def test_copy_file_bytes_declines_a_memory_buffer(tmp_path: Path) -> None:
    with open(tmp_path / "dst", "wb") as dst:
        assert not copy_file_bytes(io.BytesIO(b"abcdef"), dst, 1, 3)
        assert dst.tell() == 0


def test_is_writable_directory(tmp_path: Path) -> None:
    assert is_writable_directory(str(tmp_path))
    assert not is_writable_directory(str(tmp_path / "missing"))
    (tmp_path / "file").write_text("x")
    assert not is_writable_directory(str(tmp_path / "file"))


def test_remove_spools_of_takes_only_that_process_s_own_directories(tmp_path: Path) -> None:
    from storescpd.fsio import remove_spools_of, spool_prefix

    mine = tmp_path / f"{spool_prefix(123)}abcd"
    (mine / "sub").mkdir(parents=True)
    (mine / "sub" / "half-received").write_bytes(b"x" * 100)
    other_pid = tmp_path / f"{spool_prefix(1234)}efgh"
    other_pid.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / f"{spool_prefix(123)}link").symlink_to(elsewhere)
    assert remove_spools_of(str(tmp_path), 123) == 1
    assert not mine.exists()
    assert other_pid.is_dir() and elsewhere.is_dir()
    assert remove_spools_of(str(tmp_path / "missing"), 123) == 0


def test_remove_temporaries_of_takes_only_that_writer_s_files(tmp_path: Path) -> None:
    from storescpd.fsio import remove_temporaries_of

    killed = AtomicFile(str(tmp_path / "CT.1.2.3")).__enter__()
    assert killed.file is not None
    killed.file.write(b"half")
    killed.file.close()  # the writer dies here: no commit, no discard
    other = tmp_path / f"{TEMP_PREFIX}CT.1.2.4.{os.getpid() + 1}-0123abcd.part"
    other.write_bytes(b"")
    final = tmp_path / "CT.1.2.5"
    final.write_bytes(b"complete")
    assert remove_temporaries_of(str(tmp_path), os.getpid()) == 1
    assert not os.path.exists(killed.temp_path)
    assert other.exists() and final.exists()


@pytest.mark.parametrize("sync", [True, False])
def test_make_directories_syncs_each_new_entry_in_its_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sync: bool
) -> None:
    synced: list[str] = []
    monkeypatch.setattr(fsio, "fsync_directory", synced.append)
    (tmp_path / "data").mkdir()
    fsio.make_directories(str(tmp_path / "data" / "2026" / "12" / "02"), sync=sync)
    assert (tmp_path / "data" / "2026" / "12" / "02").is_dir()
    expected = [str(tmp_path / "data"), str(tmp_path / "data/2026"), str(tmp_path / "data/2026/12")]
    assert synced == (expected if sync else [])
    synced.clear()
    fsio.make_directories(str(tmp_path / "data" / "2026" / "12" / "02"), sync=sync)
    assert synced == []  # nothing new, nothing to sync


def test_make_directories_refuses_a_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("not a folder")
    with pytest.raises(OSError):
        fsio.make_directories(str(tmp_path / "data" / "2026"))


def test_dead_temporary_owners_names_writers_that_no_longer_run(tmp_path: Path) -> None:
    import subprocess

    gone = subprocess.Popen(["true"])
    gone.wait()
    (tmp_path / f"{TEMP_PREFIX}CT.1.2.{gone.pid}-0123abcd.part").write_bytes(b"")
    (tmp_path / f"{TEMP_PREFIX}CT.1.3.{os.getpid()}-0123abcd.part").write_bytes(b"")  # alive
    (tmp_path / f"CT.1.4.{gone.pid}-0123abcd.part").write_bytes(b"")  # not ours: no prefix
    assert fsio.dead_temporary_owners(str(tmp_path)) == {gone.pid}


def test_a_spare_file_becomes_the_next_file(tmp_path: Path) -> None:
    """A spare made while waiting is named only when the store begins, and is the stored file."""
    spare = fsio.SpareFile(str(tmp_path))
    spare.prepare()
    if not spare.supported:
        pytest.skip("no O_TMPFILE here")
    assert not spare.wanted and os.listdir(tmp_path) == []  # unnamed until used
    final = tmp_path / "CT.1.2.3"
    with fsio.AtomicFile(str(final), spare=spare) as target:
        assert target.file is not None
        assert [n for n in os.listdir(tmp_path) if n.endswith(fsio.TEMP_SUFFIX)]
        target.file.write(b"data")
        target.commit()
    assert final.read_bytes() == b"data" and os.listdir(tmp_path) == ["CT.1.2.3"]
    assert spare.wanted


def test_a_spare_on_another_file_system_is_not_used(tmp_path: Path) -> None:
    """linkat cannot cross file systems: the file is created in place, spares stay on."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another file system")
    spare = fsio.SpareFile(str(shm))
    spare.prepare()
    if not spare.supported:
        pytest.skip("no O_TMPFILE in /dev/shm")
    final = tmp_path / "CT.1.2.4"
    with fsio.AtomicFile(str(final), spare=spare) as target:
        assert target.file is not None
        target.file.write(b"data")
        target.commit()
    assert final.read_bytes() == b"data" and spare.supported and spare.wanted


def test_a_discarded_spare_file_leaves_nothing(tmp_path: Path) -> None:
    spare = fsio.SpareFile(str(tmp_path))
    spare.prepare()
    with fsio.AtomicFile(str(tmp_path / "CT.1.2.5"), spare=spare):
        pass  # no commit: a failure status
    spare.prepare()
    spare.close()
    assert os.listdir(tmp_path) == []


def test_a_missing_directory_only_postpones_spares(tmp_path: Path) -> None:
    """The output directory gone for a while: no spare then, one again once it is back."""
    folder = tmp_path / "od"
    spare = fsio.SpareFile(str(folder))
    spare.prepare()
    assert spare.wanted  # nothing made, and still wanted
    folder.mkdir()
    spare.prepare()
    if spare.supported:
        assert not spare.wanted
    spare.close()
