"""``python -m bench``: run the workloads against each server, alternating servers between
rounds, print the table and write the JSON report.

Each round starts every selected server once (in an order rotated by one per round), runs the
workloads on it with the output directory emptied between them, and stops it. Timings are wall
clock from the first sender's start to the last sender's exit; CPU is the server tree's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import corpus as corpus_mod
from bench import report
from bench.check import SourceIndex, verify
from bench.servers import SERVERS, MemorySampler, RunningServer, ServerSpec
from bench.workloads import WORKLOADS, Workload, files_of, send

ORDER = ("W1", "W2", "W4", "W5", "W3")  # the large objects last: they leave the most behind


def parse(argv: list[str]) -> argparse.Namespace:
    names = [s.name for s in SERVERS]
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="tiny corpus (24 small, 2 x 1 MB), one round: a smoke run of seconds")
    p.add_argument("--rounds", type=int, help="rounds per server (default 3, 1 with --quick)")
    p.add_argument("--workloads", default=",".join(w.name for w in WORKLOADS),
                   help="comma-separated subset of W1..W5 (default all)")
    p.add_argument("--servers", default=",".join(names),
                   help=f"comma-separated subset of {', '.join(names)} (default all)")
    p.add_argument("--skip-pynetdicom", action="store_true", help="leave out pynetdicom (slow)")
    p.add_argument("--json", type=Path, help="write the report here")
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "storescpd-bench",
                   help="corpus cache and scratch space; keep it on a real disk, not tmpfs, "
                        "or fsync costs nothing (default %(default)s)")
    args = p.parse_args(argv)
    args.servers = _pick(args.servers, names, "server")
    if args.skip_pynetdicom:
        args.servers = [s for s in args.servers if s != "pynetdicom"]
    args.workloads = _pick(args.workloads, [w.name for w in WORKLOADS], "workload")
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    return args


def _pick(text: str, known: list[str], what: str) -> list[str]:
    chosen = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in chosen if t not in known]
    if unknown or not chosen:
        sys.exit(f"python -m bench: unknown {what} {', '.join(unknown) or '(none)'}; "
                 f"choose from {', '.join(known)}")
    return chosen


def run_workload(server: RunningServer, workload: Workload, corpus: corpus_mod.Corpus,
                 index: SourceIndex) -> dict[str, Any]:
    cpu_before = server.cpu_seconds()
    with MemorySampler(server) as mem:
        sent = send(workload, corpus, server.port)
    cpu = server.cpu_seconds() - cpu_before
    files = [f for s in workload.plan(corpus) for f in files_of(s)]
    check = verify(files, server.od, index)
    return {
        "workload": workload.name,
        "server": server.spec.name,
        "seconds": round(sent.seconds, 4),
        "images": sent.images,
        "bytes": sent.bytes,
        "images_per_s": sent.images / sent.seconds,
        "mb_per_s": sent.bytes / 2**20 / sent.seconds,
        "cpu_ms_per_image": 1000 * cpu / max(1, sent.images),
        "peak_rss_mb": mem.peak_rss,
        "peak_uss_mb": mem.peak_uss,
        "peak_proc_rss_mb": mem.peak_proc_rss,
        "failed_senders": sent.failed_senders,
        "errors": sent.errors[:5],
        "check": check.as_dict(),
    }


def set_aside(directory: Path, keep: Path) -> None:
    """Move what a workload stored out of the output directory, into ``keep``, to be deleted
    with the scratch space at the end. Deleting it now would slow the next workload: on ext4
    without a journal (this kind of machine) a new file skips inodes freed in the last few
    seconds, and creating each of the next 2000 files took 0.5 ms instead of 15 us."""
    keep.mkdir(parents=True)
    for child in directory.iterdir():
        child.rename(keep / child.name)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if not Path("/usr/bin/storescu").exists():
        sys.exit("python -m bench: DCMTK's /usr/bin/storescu is missing (apt-get install dcmtk)")
    args.cache.mkdir(parents=True, exist_ok=True)
    size = corpus_mod.QUICK if args.quick else corpus_mod.FULL
    started = time.time()
    corpus = corpus_mod.ensure(args.cache, size)
    print(f"corpus ready in {time.time() - started:.1f} s: {corpus.root}", flush=True)
    specs = {s.name: s for s in SERVERS}
    chosen = [name for name in ORDER if name in args.workloads]
    workloads = [w for name in chosen for w in WORKLOADS if w.name == name]
    index = SourceIndex()
    runs: list[dict[str, Any]] = []
    idle_uss: dict[str, list[float]] = {"after_start": [], "after_work": []}
    scratch = Path(tempfile.mkdtemp(prefix="run-", dir=args.cache))
    try:
        for rnd in range(args.rounds):
            order = args.servers[rnd % len(args.servers):] + args.servers[:rnd % len(args.servers)]
            for name in order:
                idle = _round_on(specs[name], rnd, workloads, corpus, index, scratch, runs)
                for when, values in idle.items():
                    idle_uss[when] += values
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    summary = report.summarise(runs)
    rats = report.ratios(summary)
    print(report.table(summary, rats, idle_uss))
    failed = [r for r in runs if not r["check"]["ok"] or r["failed_senders"]]
    for r in failed:
        print(f"FAILED {r['workload']} {r['server']}: {r['check']} {r['errors']}"
              f" (server log: {r.get('server_log', 'none')})")
    if args.json:
        args.json.write_text(json.dumps({
            "meta": {"started": started, "seconds": round(time.time() - started, 1),
                     "host": platform.node(), "cpus": os.cpu_count(), "quick": args.quick,
                     "rounds": args.rounds, "corpus": size.__dict__,
                     "servers": args.servers, "workloads": args.workloads},
            "idle_worker_uss_mb": idle_uss,
            "runs": runs,
            "summary": summary,
            "ratios": rats,
        }, indent=1))
    # A reference server that fails (pynetdicom's storescp refuses more than 10 associations at
    # once, so W5 fails there) is reported above; only storescpd's failures fail the run.
    return 1 if any(r["server"].startswith("storescpd") for r in failed) else 0


def _round_on(spec: ServerSpec, rnd: int, workloads: list[Workload], corpus: corpus_mod.Corpus,
              index: SourceIndex, scratch: Path, runs: list[dict[str, Any]]
              ) -> dict[str, list[float]]:
    """Start one server, run every workload on it, stop it; return pool workers' idle USS."""
    od = scratch / spec.name
    od.mkdir(exist_ok=True)
    log = scratch / f"{spec.name}.{rnd}.log"
    first = len(runs)
    with RunningServer(spec, od, log) as server:
        pool = spec.name == "storescpd-pool"
        idle = {"after_start": server.worker_uss() if pool else []}
        for w in workloads:
            run = run_workload(server, w, corpus, index)
            run["round"] = rnd
            runs.append(run)
            print(f"round {rnd + 1} {w.name} {spec.name:<15} {run['images_per_s']:8.1f} img/s "
                  f"{run['mb_per_s']:7.1f} MB/s  check {'ok' if run['check']['ok'] else 'FAIL'}",
                  flush=True)
            set_aside(od, scratch / "stored" / f"{spec.name}.{rnd}.{w.name}")
        idle["after_work"] = server.worker_uss() if pool else []
    failed = [r for r in runs[first:] if not r["check"]["ok"] or r["failed_senders"]]
    if failed:
        # The scratch space goes at the end of the run; what the server said of a failure stays.
        kept = scratch.parent / "failed-logs" / f"{scratch.name}-{log.name}"
        kept.parent.mkdir(exist_ok=True)
        shutil.copyfile(log, kept)
        for r in failed:
            r["server_log"] = str(kept)
    return idle


if __name__ == "__main__":
    sys.exit(main())
