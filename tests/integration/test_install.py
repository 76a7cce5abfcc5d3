"""Installation as a user does it: a fresh venv, ``pip install``, then the console script.

This is the one test that sees storescpd as an installed package rather than as the checkout on
``sys.path``: it catches a missing dependency, a module left out of the package, or a broken
``storescpd`` entry point. It needs PyPI for the dependencies and takes a minute or two.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread

from tests.conftest import _accepts_connections, free_port, poll_until, run_dcmtk

# Creating the venv and downloading the dependencies takes longer than the default timeout.
pytestmark = pytest.mark.timeout(360)

REPO_ROOT = Path(__file__).resolve().parents[2]
PIP_TIMEOUT = 300.0
# Build outputs and caches are not part of the source, and the tree is shared with other work.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".ci", ".benchmarks", "*_cache", "__pycache__", "*.egg-info", "build", "dist", ".venv"
)


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtual environment with the repository pip-installed into it."""
    base = tmp_path_factory.mktemp("install")
    # pip builds in the source directory; a copy keeps build/ and *.egg-info out of the checkout.
    source = base / "source"
    shutil.copytree(REPO_ROOT, source, ignore=NOT_SOURCE)
    env_dir = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=120)
    pip = subprocess.run(
        [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", str(source)],
        env=dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1"),
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT,
        check=False,
    )
    assert pip.returncode == 0, f"pip install failed:\n{pip.stdout}\n{pip.stderr}"
    return env_dir


def user_environment() -> dict[str, str]:
    """The caller's environment without anything that would make storescpd adopt a socket."""
    hidden = {"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "PYTHONPATH"}
    return {k: v for k, v in os.environ.items() if k not in hidden}


@pytest.fixture
def installed_server(venv: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``<venv>/bin/storescpd -od DIR PORT`` started from a neutral directory, stopped after."""
    od = tmp_path / "od"
    od.mkdir()
    port = free_port()
    log = tmp_path / "storescpd.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(venv / "bin" / "storescpd"), "-od", str(od), str(port)],
            cwd=tmp_path,
            env=user_environment(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        poll_until(lambda: proc.poll() is not None or _accepts_connections(port), 20, "storescpd")
        assert proc.poll() is None, f"storescpd exited with {proc.returncode}:\n{log.read_text()}"
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_installed_console_script_stores_a_file(
    installed_server: tuple[subprocess.Popen[bytes], int], ct_small: Path, tmp_path: Path
) -> None:
    proc, port = installed_server
    sent = run_dcmtk("storescu", "127.0.0.1", str(port), str(ct_small))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    expected = tmp_path / "od" / f"CT.{dcmread(ct_small).SOPInstanceUID}"
    assert expected.is_file()
    assert dcmread(expected).SOPInstanceUID == dcmread(ct_small).SOPInstanceUID
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0


def test_installed_module_reports_its_version(venv: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "storescpd", "--version"],
        cwd=tmp_path,
        env=user_environment(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip(), "--version printed nothing"


def test_installed_dcmrecv_script_answers_like_dcmrecv(venv: Path, tmp_path: Path) -> None:
    """The second console script is installed too, and fails the way dcmrecv does."""
    script = venv / "bin" / "storescpd-dcmrecv"
    result = subprocess.run(
        [str(script), "-od", str(tmp_path / "missing"), str(free_port())],
        cwd=tmp_path,
        env=user_environment(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 45, result.stdout + result.stderr
    assert "F: cannot specify output directory: Directory does not exist" in result.stderr
