"""--user/--group: bind as root, then serve (and write files) as an unprivileged account."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.conftest import run_dcmtk

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory outside pytest's root-only tree, so that 'nobody' can reach it."""
    folder = Path(tempfile.mkdtemp(prefix="storescpd-priv-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_serves_and_writes_as_the_given_user(storescpd, ct_small: Path, public_dir: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    od = public_dir / "od"
    od.mkdir()
    os.chown(od, nobody.pw_uid, nobody.pw_gid)
    server = storescpd(["--user", "nobody"], od=od)
    assert psutil.Process(server.pid).uids().effective == nobody.pw_uid
    result = run_dcmtk("storescu", "127.0.0.1", str(server.port), str(ct_small))
    assert result.returncode == 0, result.stderr
    [stored] = list(od.iterdir())
    assert stored.stat().st_uid == nobody.pw_uid


def test_unknown_user_is_a_start_up_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "storescpd", "--user", "no-such-user-here", "-od", str(tmp_path),
         "11104"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "cannot drop privileges: unknown user no-such-user-here" in result.stderr
    assert "Traceback" not in result.stderr
