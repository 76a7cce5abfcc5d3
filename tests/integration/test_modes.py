"""Process modes with real peers: --fork, and --inetd under systemd-socket-activate and xinetd."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from tests.conftest import _accepts_connections, free_port, poll_until, require_tool, run_dcmtk


def make_instances(source: Path, folder: Path, count: int) -> list[Path]:
    """Copies of ``source`` with fresh SOP Instance UIDs."""
    folder.mkdir(parents=True, exist_ok=True)
    ds = dcmread(source)
    paths = []
    for i in range(count):
        uid = generate_uid()
        ds.SOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        path = folder / f"img{i:04d}.dcm"
        ds.save_as(path)
        paths.append(path)
    return paths


def stored(od: Path) -> list[str]:
    return sorted(n for n in os.listdir(od) if not n.startswith("."))


def test_fork_serves_concurrent_senders(storescpd, ct_small: Path, tmp_path: Path) -> None:
    server = storescpd(["--fork", "-v"])
    batches = [make_instances(ct_small, tmp_path / f"in{k}", 10) for k in range(4)]

    def send(files: list[Path]) -> subprocess.CompletedProcess[str]:
        return run_dcmtk("storescu", "127.0.0.1", str(server.port), *map(str, files))

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(send, batches))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    assert len(stored(server.od)) == 40
    assert server.stop() == 0
    assert server.log.count("Association Received in child process") == 4


def storescpd_command() -> str:
    """The console script a super-server runs (xinetd needs a real executable)."""
    path = shutil.which("storescpd") or str(Path(sys.executable).with_name("storescpd"))
    if not os.path.exists(path):
        pytest.fail("the storescpd console script is not installed (pip install -e .)")
    return path


def test_inetd_under_systemd_socket_activate(
    socket_activate: list[subprocess.Popen[str]], ct_small: Path, tmp_path: Path
) -> None:
    tool = require_tool("systemd-socket-activate")
    od = tmp_path / "od"
    od.mkdir()
    port = free_port()
    proc = subprocess.Popen(
        [
            tool,
            "--inetd",
            "-a",
            "-l",
            f"127.0.0.1:{port}",
            storescpd_command(),
            "--inetd",
            "-od",
            str(od),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    socket_activate.append(proc)
    assert proc.stderr is not None
    # systemd-socket-activate says so once it listens: an event, not a guess.
    assert "Listening on" in proc.stderr.readline()
    echo = run_dcmtk("echoscu", "127.0.0.1", str(port))
    assert echo.returncode == 0, echo.stderr
    store = run_dcmtk("storescu", "127.0.0.1", str(port), str(ct_small))
    assert store.returncode == 0, store.stderr
    assert stored(od) == ["CT.1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"]


XINETD_CONF = """\
defaults
{{
        log_type = FILE {log}
}}
service storescpd-test
{{
        type            = UNLISTED
        socket_type     = stream
        protocol        = tcp
        bind            = 127.0.0.1
        port            = {port}
        wait            = {wait}
        user            = root
        server          = {server}
        server_args     = --inetd {mode} -od {od}
        flags           = NOLIBWRAP
        disable         = no
}}
"""


@pytest.mark.parametrize(
    ("wait", "mode"), [("no", ""), ("yes", "--workers 2")], ids=["nowait", "wait-pool"]
)
def test_inetd_under_xinetd(ct_small: Path, tmp_path: Path, wait: str, mode: str) -> None:
    """nowait: one storescpd per connection on fd 0; wait: the listener on fd 0, served by a
    pool until xinetd stops it."""
    xinetd = require_tool("xinetd", "/usr/sbin/xinetd")
    if os.geteuid() != 0:
        pytest.skip("xinetd needs root")
    od = tmp_path / "od"
    od.mkdir()
    port = free_port()
    conf = tmp_path / "xinetd.conf"
    conf.write_text(
        XINETD_CONF.format(
            log=tmp_path / "x.log",
            port=port,
            server=storescpd_command(),
            od=od,
            wait=wait,
            mode=mode,
        )
    )
    proc = subprocess.Popen(
        [xinetd, "-dontfork", "-f", str(conf), "-pidfile", str(tmp_path / "x.pid")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        poll_until(lambda: _accepts_connections(port), 10, "xinetd to listen")
        echo = run_dcmtk("echoscu", "127.0.0.1", str(port))
        assert echo.returncode == 0, echo.stderr
        store = run_dcmtk("storescu", "127.0.0.1", str(port), str(ct_small))
        assert store.returncode == 0, store.stderr
        assert stored(od) == ["CT.1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"]
        servers = psutil.Process(proc.pid).children()
        if wait == "yes":  # one long-running master with its pool, as inetd's wait contract
            assert [" ".join(p.cmdline()).split(" [")[0] for p in servers] == ["storescpd: master"]
            assert len(servers[0].children()) == 2
    finally:
        leftovers = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        for child in leftovers:  # xinetd does not stop a wait-mode server on its own
            with contextlib.suppress(psutil.NoSuchProcess):
                child.terminate()
        psutil.wait_procs(leftovers, timeout=15)
