"""--exec-on-reception and --exec-sync against real senders, side by side with DCMTK's storescp."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import poll_until, run_dcmtk
from tests.integration.test_modes import make_instances

MODES = pytest.mark.parametrize(
    "mode", [[], ["--fork"], ["--workers", "2"]], ids=["single", "fork", "pool"]
)


def _lines(path: Path, count: int) -> list[str]:
    poll_until(lambda: path.exists() and len(path.read_text().splitlines()) >= count, 20, "LOG")
    return path.read_text().splitlines()


def test_placeholders_give_the_same_words_as_dcmtk(
    storescpd, dcmtk_storescp, ct_small: Path, tmp_path: Path
) -> None:
    logs = {}
    for name, start in (("ours", storescpd), ("dcmtk", dcmtk_storescp)):
        log = tmp_path / f"{name}.log"
        # printf shows where one argument ends and the next begins.
        server = start(["-dhl", "-xcr", f"printf '[%s]' #p #f #a #c #r >> {log}; echo >> {log}"])
        sent = run_dcmtk(
            "storescu",
            "-aet",
            "GOOD AE",
            "-aec",
            "THE SCP",
            "127.0.0.1",
            str(server.port),
            str(ct_small),
        )
        assert sent.returncode == 0, sent.stderr
        line = _lines(log, 1)[0]
        logs[name] = line.replace(str(server.od), "<od>")
    assert logs["ours"] == logs["dcmtk"]
    assert logs["ours"] == (
        "[<od>][CT.1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322][GOOD AE][THE SCP][127.0.0.1]"
    )


@MODES
def test_a_hostile_ae_title_is_data_not_code(
    storescpd, ct_small: Path, tmp_path: Path, mode: list[str]
) -> None:
    log = tmp_path / "LOG"
    server = storescpd([*mode, "-xcr", f"echo #a >> {log}"])
    hostile = '";touch PWNED;"'
    sent = run_dcmtk("storescu", "-aet", hostile, "127.0.0.1", str(server.port), str(ct_small))
    assert sent.returncode == 0, sent.stderr
    assert _lines(log, 1) == [hostile]
    for place in (tmp_path, server.od, Path.cwd(), Path("/")):
        assert not (place / "PWNED").exists()


def test_commands_inherit_no_sockets(storescpd, ct_small: Path, tmp_path: Path) -> None:
    fds = tmp_path / "fds"
    server = storescpd(["-xcr", f"ls -l /proc/self/fd > {fds}; echo done >> {fds}"])
    assert run_dcmtk("storescu", "127.0.0.1", str(server.port), str(ct_small)).returncode == 0
    listing = "\n".join(_lines(fds, 2))
    assert "socket:" not in listing


def test_exec_sync_runs_commands_one_after_the_other(
    storescpd, ct_small: Path, tmp_path: Path
) -> None:
    log = tmp_path / "LOG"
    server = storescpd(["-xs", "-xcr", f"echo start >> {log}; sleep 0.3; echo end >> {log}"])
    files = make_instances(ct_small, tmp_path / "in", 3)
    sent = run_dcmtk("storescu", "127.0.0.1", str(server.port), *map(str, files))
    assert sent.returncode == 0, sent.stderr
    assert _lines(log, 6) == ["start", "end"] * 3


def test_ignore_leaves_p_and_f_alone(storescpd, ct_small: Path, tmp_path: Path) -> None:
    log = tmp_path / "LOG"
    server = storescpd(["--ignore", "-xcr", f"echo '#p' '#f' >> {log}"])
    assert run_dcmtk("storescu", "127.0.0.1", str(server.port), str(ct_small)).returncode == 0
    assert _lines(log, 1) == ["#p #f"]


def test_p_is_the_study_folder_when_sorting(
    storescpd, dcmtk_storescp, ct_small: Path, tmp_path: Path
) -> None:
    seen = {}
    for name, start in (("ours", storescpd), ("dcmtk", dcmtk_storescp)):
        log = tmp_path / f"{name}.log"
        server = start(["-su", "S", "-xcr", f"echo #p >> {log}"])
        assert run_dcmtk("storescu", "127.0.0.1", str(server.port), str(ct_small)).returncode == 0
        seen[name] = _lines(log, 1)[0].replace(str(server.od), "<od>")
    assert seen["ours"] == seen["dcmtk"] == "<od>/S_1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
