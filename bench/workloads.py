"""The five workloads of issue 7 and the DCMTK ``storescu`` senders that drive them.

Each sender is one ``/usr/bin/storescu`` process with ``TCP_NODELAY=1`` (DCMTK's clients leave
Nagle on otherwise) and ``+sd`` over whole corpus directories, so every sender is one association.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench.corpus import Corpus

STORESCU = "/usr/bin/storescu"
SENDER_TIMEOUT = 600.0
W4_IN_FLIGHT = 4


@dataclass(frozen=True)
class Sender:
    """One association's worth of input: directories (scanned) or files."""

    paths: tuple[Path, ...]
    scan: bool


@dataclass(frozen=True)
class Workload:
    """A named plan: which senders run, how many at a time, and the reference server."""

    name: str
    title: str
    plan: Callable[[Corpus], list[Sender]]
    in_flight: Callable[[int], int]
    reference: str
    target: float


def _split(dirs: tuple[Path, ...], ways: int) -> list[Sender]:
    groups = [dirs[i::ways] for i in range(ways)]
    return [Sender(g, scan=True) for g in groups if g]


WORKLOADS = (
    Workload("W1", "small, 1 association",
             lambda c: [Sender(c.small_dirs, scan=True)], lambda n: 1, "dcmtk", 1.0),
    Workload("W2", "small, 8 associations",
             lambda c: _split(c.small_dirs, 8), lambda n: n, "dcmtk-fork", 1.2),
    Workload("W3", "32 MB, 1 association",
             lambda c: [Sender((c.large_dir,), scan=True)], lambda n: 1, "dcmtk", 1.0),
    Workload("W4", "1 image per association",
             lambda c: [Sender((f,), scan=False) for f in c.small_files()[:_w4_count(c)]],
             lambda n: W4_IN_FLIGHT, "dcmtk-fork", 1.0),
    Workload("W5", "32 senders x 50 images",
             lambda c: [Sender((d,), scan=True) for d in c.small_dirs[:32]], lambda n: n,
             "dcmtk-fork", 1.0),
)


def _w4_count(corpus: Corpus) -> int:
    # 300 associations on the full corpus (2000 images), proportionally fewer on --quick.
    return max(1, min(300, len(corpus.small_files()) * 3 // 20))


@dataclass
class SendResult:
    """Outcome of all senders of one workload run."""

    seconds: float
    images: int
    bytes: int
    failed_senders: int
    errors: list[str]


def files_of(sender: Sender) -> list[Path]:
    if not sender.scan:
        return list(sender.paths)
    return sorted(p for d in sender.paths for p in d.iterdir() if p.is_file())


def send(workload: Workload, corpus: Corpus, port: int) -> SendResult:
    """Run the workload's senders against 127.0.0.1:port; wall time covers all of them."""
    senders = workload.plan(corpus)
    files = [f for s in senders for f in files_of(s)]
    env = dict(os.environ, TCP_NODELAY="1")
    errors: list[str] = []

    def one(sender: Sender) -> bool:
        argv = [STORESCU, "-aet", "BENCHSCU", "-aec", "STORESCP"]
        if sender.scan:
            argv.append("+sd")
        argv += ["127.0.0.1", str(port), *map(str, sender.paths)]
        try:
            done = subprocess.run(argv, env=env, capture_output=True, text=True,
                                  timeout=SENDER_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            errors.append(f"storescu timed out after {SENDER_TIMEOUT:g} s")
            return False
        # storescu exits 0 even when a store fails, but logs each failure as an error line.
        bad = [ln for ln in done.stdout.splitlines() + done.stderr.splitlines()
               if ln.startswith(("E:", "F:"))]
        if done.returncode != 0 or bad:
            errors.append(f"storescu exit {done.returncode}: " + " | ".join(bad[:3]))
            return False
        return True

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workload.in_flight(len(senders))) as pool:
        ok = list(pool.map(one, senders))
    seconds = time.perf_counter() - start
    return SendResult(seconds, len(files), sum(f.stat().st_size for f in files),
                      ok.count(False), errors)
