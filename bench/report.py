"""Medians per workload and server, storescpd/reference ratios against issue 7's targets, the
printed table and the JSON report."""

from __future__ import annotations

import statistics
from typing import Any

from bench.workloads import WORKLOADS

FIGURES = ("images_per_s", "mb_per_s", "cpu_ms_per_image", "peak_rss_mb", "peak_uss_mb",
           "peak_proc_rss_mb")
W3_WORKER_MB = 100.0
IDLE_USS_MB = 30.0


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Median of each figure over rounds, per workload and server; ``ok`` if every round was."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for run in runs:
        out.setdefault(run["workload"], {}).setdefault(run["server"], {"_runs": []})
        out[run["workload"]][run["server"]]["_runs"].append(run)
    for per_server in out.values():
        for name, entry in per_server.items():
            rs = entry.pop("_runs")
            per_server[name] = {f: statistics.median(r[f] for r in rs) for f in FIGURES}
            per_server[name]["rounds"] = len(rs)
            per_server[name]["ok"] = all(r["check"]["ok"] and not r["failed_senders"] for r in rs)
    return out


def ratios(summary: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """images/s of each storescpd mode over the workload's DCMTK reference."""
    out = []
    for w in WORKLOADS:
        per_server = summary.get(w.name, {})
        ref = per_server.get(w.reference)
        for server, fig in per_server.items():
            if not server.startswith("storescpd") or ref is None or not ref["images_per_s"]:
                continue
            ratio = fig["images_per_s"] / ref["images_per_s"]
            met = ratio >= w.target and fig["ok"]
            if w.name == "W3":
                met = met and fig["peak_proc_rss_mb"] < W3_WORKER_MB
            out.append({"workload": w.name, "server": server, "reference": w.reference,
                        "ratio": round(ratio, 3), "target": w.target, "met": met,
                        "peak_proc_rss_mb": round(fig["peak_proc_rss_mb"], 1)})
    return out


def table(summary: dict[str, dict[str, dict[str, Any]]], rats: list[dict[str, Any]],
          idle_uss: dict[str, list[float]]) -> str:
    lines = [f"{'workload':<26} {'server':<15} {'img/s':>7} {'MB/s':>7} {'CPU ms/img':>10} "
             f"{'tree RSS':>9} {'tree USS':>9} {'max proc':>9}  check"]
    for w in WORKLOADS:
        for server, f in summary.get(w.name, {}).items():
            lines.append(
                f"{w.name + ' ' + w.title:<26} {server:<15} {f['images_per_s']:7.1f} "
                f"{f['mb_per_s']:7.1f} {f['cpu_ms_per_image']:10.2f} {f['peak_rss_mb']:8.0f}M "
                f"{f['peak_uss_mb']:8.0f}M {f['peak_proc_rss_mb']:8.0f}M  "
                f"{'ok' if f['ok'] else 'FAIL'}")
    lines += ["", "ratios (storescpd / DCMTK images/s, medians; storescpd fsyncs, DCMTK does not)"]
    for r in rats:
        extra = (f", max process RSS < {W3_WORKER_MB:g} MB (was {r['peak_proc_rss_mb']:.0f})"
                 if r["workload"] == "W3" else "")
        lines.append(f"{r['workload']} {r['server']:<15} / {r['reference']:<11} "
                     f"{r['ratio']:6.2f}  target >= {r['target']:g}{extra}: "
                     f"{'met' if r['met'] else 'MISSED'}")
    for when, values in idle_uss.items():
        if values:
            lines.append(
                f"idle pool worker USS {when.replace('_', ' ')}: median "
                f"{statistics.median(values):.1f} MB, max {max(values):.1f} MB "
                f"(target <= {IDLE_USS_MB:g} MB): "
                f"{'met' if max(values) <= IDLE_USS_MB else 'MISSED'}")
    return "\n".join(lines)
