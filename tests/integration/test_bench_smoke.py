"""Smoke run of the side-by-side benchmark (``python -m bench --quick``): it starts real servers,
drives them with DCMTK's storescu and reports. Only the report's shape and its correctness checks
are asserted: timings on a shared CI machine prove nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import dcmtk

REPO = Path(__file__).resolve().parents[2]
WORKLOADS = {"W1", "W2", "W3", "W4", "W5"}
SERVERS = {"storescpd-pool", "dcmtk"}


def run_bench(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    )
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_quick_bench_stores_everything_and_reports(tmp_path: Path) -> None:
    dcmtk("storescu")
    dcmtk("storescp")
    out = tmp_path / "report.json"
    done = run_bench(
        "--quick",
        "--servers",
        ",".join(sorted(SERVERS)),
        "--json",
        str(out),
        "--cache",
        str(tmp_path / "cache"),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())

    assert report["meta"]["quick"] is True
    assert report["meta"]["rounds"] == 1
    runs = report["runs"]
    assert {(r["workload"], r["server"]) for r in runs} == {
        (w, s) for w in WORKLOADS for s in SERVERS
    }
    for r in runs:
        what = f"{r['workload']} on {r['server']}: {r}"
        check = r["check"]
        assert check["ok"], what
        assert check["stored"] == check["expected"] == r["images"] > 0, what
        assert check["missing"] == check["unexpected"] == 0, what
        assert check["sample_equal"] == check["sample_compared"] > 0, what
        assert r["failed_senders"] == 0 and r["errors"] == [], what
        for figure in ("images_per_s", "mb_per_s", "peak_rss_mb", "peak_uss_mb"):
            assert r[figure] > 0, what
        assert r["cpu_ms_per_image"] >= 0, what

    assert set(report["summary"]) == WORKLOADS
    # W1 and W3 are compared with DCMTK's single-process storescp, which ran; W2, W4 and W5 with
    # its --fork mode, which did not.
    assert {(r["workload"], r["reference"]) for r in report["ratios"]} == {
        ("W1", "dcmtk"),
        ("W3", "dcmtk"),
    }
    assert all(r["ratio"] > 0 and isinstance(r["met"], bool) for r in report["ratios"])
    idle = report["idle_worker_uss_mb"]
    assert len(idle["after_start"]) == 4  # --workers 4; W2 and W5 grow the pool
    assert len(idle["after_work"]) >= 4
    assert all(0 < v < 500 for v in idle["after_start"] + idle["after_work"])
    assert "ratios (storescpd / DCMTK" in done.stdout


def test_unknown_server_is_one_line_and_an_error(tmp_path: Path) -> None:
    done = run_bench("--servers", "dcmtk,orthanc", "--cache", str(tmp_path), timeout=30)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "python -m bench: unknown server orthanc; choose from storescpd, storescpd-fork, "
        "storescpd-pool, dcmtk, dcmtk-fork, pynetdicom"
    ]
