"""End of study across associations and processes: the coordinator, -xcs, -rns, -tos."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import psutil

from tests.conftest import children_titled, dcmtk, poll_until, run_dcmtk
from tests.integration.test_study_folders import STAMP, study_files

A = "1.2.826.0.1.3680043.8.498.1001"
B = "1.2.826.0.1.3680043.8.498.2002"


def folders(od: Path) -> dict[str, list[str]]:
    return {
        p.name: sorted(f.name for f in p.iterdir())
        for p in od.iterdir()
        if p.is_dir() and not p.name.startswith(".")
    }


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def coordinators(pid: int) -> list[psutil.Process]:
    return children_titled(pid, "coordinator")


def coordinator_of(pid: int) -> psutil.Process:
    poll_until(lambda: len(coordinators(pid)) == 1, 20, "the coordinator")
    return coordinators(pid)[0]


def send(port: int, files: list[Path], aet: str = "STORESCU") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [dcmtk("storescu"), "-aet", aet, "127.0.0.1", str(port), *map(str, files)],
        env=dict(os.environ, TCP_NODELAY="1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_senders_interleaved_in_a_pool_end_two_studies_once_each(
    storescpd, tmp_path: Path
) -> None:
    log = tmp_path / "LOG"
    server = storescpd(
        ["--workers", "4", "-ss", "PFX", "-tos", "2", "-xcs", f"echo #p #a >> {log}"]
    )
    a_files = study_files(tmp_path / "a", A, 20)
    b_files = study_files(tmp_path / "b", B, 20)
    senders = [send(server.port, a_files, "MOD_A"), send(server.port, b_files, "MOD_B")]
    for proc in senders:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    poll_until(lambda: len(lines(log)) >= 2, 30, "two ends of study")
    assert server.stop() == 0  # the coordinator finishes what is queued, then leaves
    ends = sorted(lines(log))
    assert len(ends) == 2
    found = folders(server.od)
    assert len(found) == 2
    by_sender = {line.split()[1]: Path(line.split()[0]).name for line in ends}
    assert set(by_sender) == {"MOD_A", "MOD_B"}
    for sender, files in (("MOD_A", a_files), ("MOD_B", b_files)):
        folder = by_sender[sender]
        assert STAMP.sub("<stamp>", folder) == "PFX_<stamp>"
        assert len(found[folder]) == len(files)


def test_one_study_over_three_associations_is_one_folder_and_one_end(
    storescpd, tmp_path: Path
) -> None:
    log = tmp_path / "LOG"
    # --max-requests 1: each association is served by a worker process of its own.
    server = storescpd(["--workers", "4", "--max-requests", "1", "-v", "-ss", "", "-tos", "3",
                        "-xcs", f"echo #p >> {log}"])  # fmt: skip
    for part in range(3):
        files = study_files(tmp_path / f"part{part}", A, 3)
        proc = send(server.port, files)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    assert "coordinator [1 study open]" in " ".join(coordinator_of(server.pid).cmdline())
    poll_until(lambda: len(lines(log)) >= 1, 30, "the end of study")
    assert server.stop() == 0
    assert len(lines(log)) == 1
    (folder,) = folders(server.od).values()
    assert len(folder) == 9
    assert server.log.count("retires after 1 associations") == 3


def test_exec_on_eostudy_passes_a_hostile_ae_title_as_data(storescpd, tmp_path: Path) -> None:
    log = tmp_path / "LOG"
    server = storescpd(["--fork", "-su", "", "-tos", "1", "-xcs", f"echo #a >> {log}"])
    proc = send(server.port, study_files(tmp_path / "a", A, 1), '";touch PWNED;"')
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    poll_until(lambda: len(lines(log)) >= 1, 30, "the end of study")
    assert lines(log) == ['";touch PWNED;"']
    for place in (tmp_path, server.od, Path.cwd()):
        assert not (place / "PWNED").exists()


def test_a_killed_coordinator_is_restarted_and_the_study_still_ends_once(
    storescpd, tmp_path: Path
) -> None:
    log = tmp_path / "LOG"
    server = storescpd(
        ["--workers", "2", "-ss", "", "-rns", "-tos", "3", "-xcs", f"echo #p >> {log}"]
    )
    first = coordinator_of(server.pid)
    proc = send(server.port, study_files(tmp_path / "a1", A, 4))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    first.send_signal(signal.SIGKILL)
    poll_until(lambda: "coordinator was killed by signal 9" in server.log, 20, "the restart")
    poll_until(
        lambda: [p.pid for p in coordinators(server.pid)] not in ([], [first.pid]), 20, "a new one"
    )
    proc = send(server.port, study_files(tmp_path / "a2", A, 4))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    poll_until(lambda: len(lines(log)) >= 1, 30, "the end of study")
    assert coordinator_of(server.pid).pid != first.pid
    assert server.stop() == 0
    assert len(lines(log)) == 1
    (folder,) = folders(server.od).values()
    assert folder == [f"CT{n:06d}" for n in range(1, 9)]


def test_single_process_renames_and_ends_like_dcmtk(
    storescpd, dcmtk_storescp, tmp_path: Path
) -> None:
    """A then B: A ends when B arrives (renamed, -xcs run with A's folder); B stays open."""
    seen = {}
    for name, start in (("ours", storescpd), ("dcmtk", dcmtk_storescp)):
        log = tmp_path / f"{name}.log"
        server = start(["-ss", "S", "-rns", "-xcs", f"echo #p >> {log}"])
        for study, count in ((A, 2), (B, 1)):
            files = study_files(tmp_path / f"{name}-{study[-4:]}", study, count)
            sent = run_dcmtk("storescu", "127.0.0.1", str(server.port), *map(str, files))
            assert sent.returncode == 0, sent.stderr
        poll_until(lambda log=log: len(lines(log)) >= 1, 30, "the end of study A")
        poll_until(
            lambda od=server.od: any(v == ["CT000001", "CT000002"] for v in folders(od).values()),
            30,
            "the renames",
        )
        layout = sorted((STAMP.sub("<stamp>", k), v) for k, v in folders(server.od).items())
        # B's single file keeps its name: B has not ended.
        layout = [(k, v if v[0].startswith("CT0") else ["<unrenamed>"]) for k, v in layout]
        ended = [STAMP.sub("<stamp>", Path(p).name) for p in lines(log)]
        seen[name] = (layout, ended)
    assert seen["ours"] == seen["dcmtk"]
    assert seen["ours"] == (
        [("S_<stamp>", ["<unrenamed>"]), ("S_<stamp>", ["CT000001", "CT000002"])],
        ["S_<stamp>"],
    )
