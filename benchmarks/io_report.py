"""The I/O workload's table, ratios and targets, from the drivers' results (medians over
the rounds of one run)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

from benchmarks.report import Result, fmt, table

__all__ = ["Row", "evaluate_io", "render_io", "rows"]

#: The share of the ideal rate that ``-c 32`` must reach (the thread peers reach it).
IDEAL_SHARE = 0.95
#: queuebox's best one-process rate against the best peer's.
BEST_RATIO = 1.5
_METRICS = (
    "rate",
    "of_ideal",
    "peak_rss_mb",
    "peak_rss_total_mb",
    "worker_cpu_per_1k",
    "server_cpu_per_1k",
    "startup_seconds",
)

Row = dict[str, Any]


def rows(results: Iterable[Result]) -> list[Row]:
    """One row per subject: the median of each measure over its rounds, in first-run order."""
    grouped: dict[str, list[Result]] = {}
    failures: dict[str, list[str]] = {}
    for r in results:
        spec = str(r.get("spec", ""))
        if "io" in r and "error" not in r:
            grouped.setdefault(spec, []).append(r)
        elif "error" in r:
            failures.setdefault(spec, []).append(str(r["error"]))
    out = []
    for spec, runs in grouped.items():
        first = runs[0]
        row: Row = {
            "spec": spec,
            "system": first["system"],
            "store": first["store"],
            "detail": first.get("detail", ""),
            "concurrency": first["concurrency"],
            "kind": first.get("kind", "sync"),
            "queuebox": str(first["system"]).startswith("queuebox-"),
            "runs": len(runs),
            "capped": any(run["io"].get("capped") for run in runs),
            "processes": max(run["io"].get("processes") or 0 for run in runs),
            "failed_runs": len(failures.get(spec, [])),
        }
        for metric in _METRICS:
            values = [run["io"].get(metric) for run in runs if run["io"].get(metric) is not None]
            row[metric] = statistics.median(values) if values else None
        row["rates"] = [run["io"].get("rate") for run in runs]
        out.append(row)
    return out


def _best(candidates: list[Row]) -> Row | None:
    rated = [row for row in candidates if row["rate"]]
    return max(rated, key=lambda row: row["rate"]) if rated else None


def evaluate_io(table_rows: list[Row]) -> tuple[list[Result], list[str]]:
    """The I/O targets (met, missed or not measured) and the ratio sentences."""
    targets: list[Result] = []
    ratios: list[str] = []

    def check(name: str, value: float | None, limit: str, ok: bool, note: str = "") -> None:
        met = None if value is None else ok
        targets.append({"target": name, "value": value, "limit": limit, "met": met, "note": note})

    ours = [row for row in table_rows if row["queuebox"]]
    peers = [row for row in table_rows if not row["queuebox"]]
    for row in ours:
        if row["concurrency"] == 32:
            check(
                f"{row['system']} -c 32, {row['kind']} jobs: >= 95% of the ideal 1,600/s",
                row["of_ideal"],
                f">= {IDEAL_SHARE}",
                (row["of_ideal"] or 0) >= IDEAL_SHARE,
            )
    best_ours, best_peer = _best(ours), _best(peers)
    if best_ours is None or best_peer is None:
        note = "needs --peers" if best_ours else "no queuebox I/O run"
        for name in ("best one-process rate >= 1.5x the best peer's", "CPU per 1,000 jobs"):
            check(name, None, "", False, note)
        return targets, ratios
    ratio = best_ours["rate"] / best_peer["rate"]
    ratios.append(
        f"queuebox's best one-process rate ({best_ours['system']}, {best_ours['concurrency']} "
        f"in flight: {best_ours['rate']:,.0f} jobs/s) = {ratio:.2f}x the best peer's "
        f"({best_peer['system']}, {best_peer['concurrency']} in flight: "
        f"{best_peer['rate']:,.0f} jobs/s)"
    )
    check(
        "queuebox's best one-process rate >= 1.5x the best peer's",
        ratio,
        f">= {BEST_RATIO}",
        ratio >= BEST_RATIO,
    )
    ours_cpu, peer_cpu = best_ours["worker_cpu_per_1k"], best_peer["worker_cpu_per_1k"]
    if ours_cpu is not None and peer_cpu is not None:
        ratios.append(
            f"CPU seconds per 1,000 jobs, worker processes: queuebox at its best {ours_cpu:.2f}, "
            f"{best_peer['system']} {peer_cpu:.2f}"
        )
    check(
        "queuebox's CPU per 1,000 jobs at its best <= the best peer's",
        ours_cpu,
        f"<= {peer_cpu:.2f} s" if peer_cpu is not None else "",
        ours_cpu is not None and peer_cpu is not None and ours_cpu <= peer_cpu,
    )
    same = [
        row
        for row in ours
        if row["concurrency"] == best_peer["concurrency"] and row["store"] == best_ours["store"]
    ]
    rss = min((row["peak_rss_mb"] for row in same if row["peak_rss_mb"]), default=None)
    peer_rss = best_peer["peak_rss_mb"]
    check(
        f"queuebox's RSS at {best_peer['concurrency']} in flight <= {best_peer['system']}'s",
        rss,
        f"<= {peer_rss:.0f} MB" if peer_rss else "",
        rss is not None and peer_rss is not None and rss <= peer_rss,
        "" if same else f"add {best_peer['concurrency']} to --sweep",
    )
    threads32 = [row for row in peers if row["concurrency"] == 32 and row["peak_rss_mb"]]
    ours32 = [row for row in ours if row["concurrency"] == 32 and row["peak_rss_mb"]]
    if threads32 and ours32:
        lightest = min(threads32, key=lambda row: row["peak_rss_mb"])
        ratios.append(
            f"peak RSS at 32 in flight: queuebox {min(r['peak_rss_mb'] for r in ours32):.0f} MB "
            f"(lightest store and kind), lightest peer {lightest['system']} "
            f"{lightest['peak_rss_mb']:.0f} MB"
        )
    return targets, ratios


def render_io(table_rows: list[Row], targets: list[Result], ratios: list[str]) -> str:
    out = ["### I/O jobs (each waits 20 ms), one worker process", ""]
    body = []
    for row in table_rows:
        procs = row["processes"]
        rss = fmt(row["peak_rss_mb"])
        if procs > 1:
            rss += f" ({procs} procs: {fmt(row['peak_rss_total_mb'])})"
        body.append(
            [
                row["system"],
                row["kind"],
                str(row["concurrency"]),
                fmt(row["rate"]) + ("*" if row["capped"] else ""),
                "-" if row["of_ideal"] is None else f"{row['of_ideal']:.0%}",
                rss,
                fmt(row["worker_cpu_per_1k"], 2),
                fmt(row["server_cpu_per_1k"], 2),
                f"{row['runs']}"
                + (f" ({row['failed_runs']} failed)" if row["failed_runs"] else ""),
                row["detail"],
            ]
        )
    out += table(
        [
            "system",
            "jobs",
            "in flight",
            "jobs/s",
            "% of ideal",
            "peak RSS MB",
            "CPU s/1k jobs",
            "server CPU s/1k",
            "runs",
            "how",
        ],
        body,
    )
    out += [
        "",
        "Medians over the runs. Ideal: in-flight jobs / 20 ms. CPU: the worker command's "
        "processes (and the store's server processes) while the drain was timed, per 1,000 "
        "jobs. Peak RSS: the largest process of the worker command (VmHWM). `*` capped by "
        "--max-seconds.",
    ]
    if ratios:
        out += ["", "### Ratios (same run)", "", *(f"- {line}" for line in ratios)]
    if targets:
        out += ["", "### Targets", ""]
        marks = {True: "met", False: "MISSED", None: "not measured"}
        out += table(
            ["target", "measured", "limit", "result"],
            [
                [
                    t["target"],
                    fmt(t["value"], 2),
                    t["limit"],
                    marks[t["met"]] + (f" ({t['note']})" if t["note"] else ""),
                ]
                for t in targets
            ],
        )
    return "\n".join(out) + "\n"
