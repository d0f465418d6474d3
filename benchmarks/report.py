"""Tables, ratios and the speed targets, from the drivers' results.

Most targets are about speed and mean something only at the full run's sizes; a few hold at
any size (round trips per job, no "database is locked", bytes per job) and are the only ones
the quick mode judges.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

__all__ = ["NOT_JUDGED", "Result", "evaluate", "fmt", "render", "table", "target_summary"]

Result = dict[str, Any]

REDIS_PEERS = ("rq", "dramatiq", "huey", "celery", "arq", "saq")


def _rate(entry: Any) -> float | None:
    return entry.get("rate") if isinstance(entry, dict) else None


def _drain(result: Result, procs: int) -> float | None:
    return _rate(result.get("drain", {}).get(str(procs)))


def _subjects(results: Iterable[Result]) -> list[Result]:
    return [r for r in results if "drain" in r]


def _best(results: Iterable[Result], system: str, procs: int) -> tuple[float, Result] | None:
    found = [(_drain(r, procs), r) for r in _subjects(results) if r["system"] == system]
    rated = [(rate, r) for rate, r in found if rate]
    return max(rated, key=lambda pair: pair[0]) if rated else None


def _fastest_peer(results: list[Result], peers: Iterable[str]) -> tuple[float, str] | None:
    best: tuple[float, str] | None = None
    for r in _subjects(results):
        if r["system"] not in peers:
            continue
        for procs, entry in r["drain"].items():
            rate = _rate(entry)
            if rate and (best is None or rate > best[0]):
                best = (rate, f"{r['system']} {r['setting']}, {procs} proc")
    return best


def _find(results: list[Result], spec: str) -> Result | None:
    return next((r for r in results if r.get("spec") == spec and "error" not in r), None)


#: The note of a speed target in quick mode.
NOT_JUDGED = "not judged: quick mode's sizes are too small"
#: A timed window shorter than this is too short for /proc's 10 ms CPU ticks.
_SHORTEST_CPU_WINDOW = 0.5


class _Checks:
    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.targets: list[Result] = []
        self.ratios: list[str] = []

    def __call__(
        self,
        name: str,
        value: float | None,
        limit: str,
        ok: bool,
        note: str = "",
        *,
        any_size: bool = False,
    ) -> None:
        """``any_size``: the target holds at any size (a count per job, an error count),
        so the quick mode judges it too."""
        met: bool | None = None if value is None else ok
        if self.quick and not any_size:
            met, note = None, NOT_JUDGED
        self.targets.append(
            {
                "target": name,
                "value": value,
                "limit": limit,
                "met": met,
                "note": note,
                "any_size": any_size,
            }
        )


def evaluate(results: list[Result], *, quick: bool = False) -> tuple[list[Result], list[str]]:
    """The targets (met, missed, not measured, or in quick mode not judged) and the ratio
    sentences."""
    check = _Checks(quick)
    _redis_drain(results, check)
    _redis_enqueue_and_latency(results, check)
    _postgres(results, check)
    _sqlite_and_claims(results, check)
    return check.targets, check.ratios


def _redis_drain(results: list[Result], check: _Checks) -> None:
    ratios = check.ratios
    qb_redis = _best(results, "queuebox-redis", 1)
    peer = _fastest_peer(results, REDIS_PEERS)
    if qb_redis and peer:
        ratio = qb_redis[0] / peer[0]
        ratios.append(
            f"queuebox-redis drain, 1 worker process = {ratio:.1f}x the fastest peer's drain "
            f"({peer[1]})"
        )
        check("Redis drain, 1 proc >= 5x fastest peer", ratio, ">= 5", ratio >= 5)
    else:
        check("Redis drain, 1 proc >= 5x fastest peer", None, ">= 5", False, "needs --peers")
    if qb_redis:
        setting = qb_redis[1]
        two = _drain(setting, 2)
        scaling = two / qb_redis[0] if two else None
        if scaling:
            ratios.append(
                f"queuebox-redis drain with 2 worker processes = {scaling:.2f}x the rate of "
                f"1 process ({setting['setting']} setting)"
            )
        for procs in ("1", "2"):
            line = _cores_busy(setting, procs)
            if line:
                ratios.append(line)
        check("Redis drain, 2 procs >= 1.6x 1 proc", scaling, ">= 1.6", (scaling or 0) >= 1.6)
        trips = setting["drain"]["1"].get("round_trips_per_job")
        check(
            "Redis round trips per job in a drain",
            trips,
            "well under 1 (<= 0.1)",
            trips is not None and trips <= 0.1,
            any_size=True,
        )


def _cores_busy(result: Result, procs: str) -> str:
    """What the workers and redis-server kept busy while a drain was timed, or why that
    cannot be told."""
    drain = result["drain"].get(procs, {})
    worker, server = drain.get("worker_cpu_share"), drain.get("server_cpu_share")
    if worker is None or server is None:
        return ""
    who = "the worker process" if procs == "1" else f"the {procs} worker processes"
    head = f"queuebox-redis {procs}-process drain ({result['setting']} setting), CPU"
    window = drain.get("cpu_window_seconds")
    if window is not None and window < _SHORTEST_CPU_WINDOW:
        return (
            f"{head}: not measured, the timed drain lasted {window:.2f} s, too short for "
            "/proc's 10 ms CPU ticks (a full run's drains last seconds)"
        )
    return (
        f"{head}: cores kept busy (CPU seconds per wall second) {worker + server:.2f} of "
        f"{os.cpu_count()}: {who} {worker:.2f}, redis-server {server:.2f}"
    )


def _redis_enqueue_and_latency(results: list[Result], check: _Checks) -> None:
    ratios = check.ratios
    fast = [r for r in _subjects(results) if r["system"] == "queuebox-redis"]
    baseline = next((r for r in results if r.get("spec") == "baseline:redis"), None)
    if fast:
        one = max(fast, key=lambda r: _rate(r["enqueue_one"]) or 0)["enqueue_one"]
        check(
            "Redis enqueue one at a time: 1 round trip per job",
            one.get("round_trips_per_job"),
            "1.0",
            abs((one.get("round_trips_per_job") or 0) - 1.0) < 0.05,
            any_size=True,
        )
        if baseline and "ping_rate" in baseline:
            ratio = one["rate"] / baseline["ping_rate"]
            ratios.append(
                f"queuebox-redis enqueue one job per call = {ratio:.0%} of the rate of a loop "
                "of PING (one round trip each)"
            )
            check(
                "Redis enqueue one at a time within 10% of the PING loop",
                ratio,
                ">= 0.9",
                ratio >= 0.9,
            )
            bulk = max(_rate(r["enqueue_bulk"]) or 0 for r in fast)
            ratio = bulk / baseline["pipelined_zadd_rate"]
            ratios.append(
                f"queuebox-redis bulk enqueue = {ratio:.0%} of the rate of one raw pipeline of ZADD"
            )
            check("Redis bulk enqueue >= 50% of pipelined ZADD", ratio, ">= 0.5", ratio >= 0.5)
        p50s = [r["latency"].get("p50_ms") for r in fast if r["latency"].get("p50_ms")]
        p99s = [r["latency"].get("p99_ms") for r in fast if r["latency"].get("p99_ms")]
        peer_p50 = [
            (r["latency"]["p50_ms"], f"{r['system']} {r['setting']}")
            for r in _subjects(results)
            if r["system"] in REDIS_PEERS and r["latency"].get("p50_ms")
        ]
        if p50s and peer_p50:
            best_peer = min(peer_p50)
            ratios.append(
                f"queuebox-redis pickup latency (enqueue to the job's start), median: "
                f"{min(p50s):.2f} ms; the best peer's {best_peer[0]:.2f} ms ({best_peer[1]})"
            )
            check(
                "Redis pickup p50 <= best peer",
                min(p50s),
                f"<= {best_peer[0]:.2f} ms",
                min(p50s) <= best_peer[0],
            )
        if p99s:
            check("Redis pickup p99 <= 5 ms", min(p99s), "<= 5 ms", min(p99s) <= 5)


def _postgres(results: list[Result], check: _Checks) -> None:
    ratios = check.ratios
    qb_pg = _best(results, "queuebox-postgres", 1)
    proc = _fastest_peer(results, ("procrastinate",))
    raw = next((r for r in results if r.get("spec") == "baseline:postgres"), None)
    if qb_pg and proc:
        ratio = qb_pg[0] / proc[0]
        ratios.append(
            f"queuebox-postgres drain, 1 worker process = {ratio:.1f}x procrastinate's "
            f"fastest drain ({proc[1]})"
        )
        check("PostgreSQL drain >= 10x procrastinate's fastest", ratio, ">= 10", ratio >= 10)
    if qb_pg and raw and raw.get("claim_loop_rate"):
        ratio = qb_pg[0] / raw["claim_loop_rate"]
        ratios.append(
            f"queuebox-postgres drain, 1 worker process = {ratio:.1f}x a raw loop of one-"
            "statement claims (no job library)"
        )
        check("PostgreSQL drain >= 2x raw one-statement claim loop", ratio, ">= 2", ratio >= 2)
    pg = [r for r in _subjects(results) if r["system"] == "queuebox-postgres"]
    pg_p50 = [r["latency"]["p50_ms"] for r in pg if r["latency"].get("p50_ms")]
    if pg_p50:
        check("PostgreSQL pickup p50 <= 5 ms", min(pg_p50), "<= 5 ms", min(pg_p50) <= 5)


def _sqlite_and_claims(results: list[Result], check: _Checks) -> None:
    qb_sqlite = _best(results, "queuebox-sqlite", 1)
    if qb_sqlite:
        check("SQLite drain, 1 proc >= 5,000 jobs/s", qb_sqlite[0], ">= 5000", qb_sqlite[0] >= 5000)
        four = [
            r["drain"]["4"]
            for r in _subjects(results)
            if r["system"] == "queuebox-sqlite" and "4" in r["drain"]
        ]
        if four:
            locked = sum(entry.get("database_locked_errors", 0) for entry in four)
            check(
                "SQLite, 4 procs: no 'database is locked'",
                locked,
                "0",
                locked == 0,
                any_size=True,
            )
    for r in results:
        points = r.get("claim_cost")
        if not points:
            continue
        first, last = points[0], points[-1]
        growth = last["claim_us_median"] / first["claim_us_median"]
        check(
            f"{r['system']} claim cost at {last['depth']:,} <= 2x at {first['depth']:,}",
            growth,
            "<= 2",
            growth <= 2,
        )
        if r["store"] == "redis":
            biggest = max(points, key=lambda p: p["depth"])
            check(
                "Redis memory per waiting job (MEMORY USAGE)",
                biggest["bytes_per_job"],
                "<= 200 bytes",
                biggest["bytes_per_job"] <= 200,
                any_size=True,
            )


def _verdict(target: Result) -> str:
    if target["note"] == NOT_JUDGED:
        return "not judged (quick mode)"
    marks = {True: "met", False: "MISSED", None: "not measured"}
    return marks[target["met"]] + (f" ({target['note']})" if target["note"] else "")


def target_summary(targets: list[Result], *, quick: bool) -> str:
    """One sentence: how many targets were met and missed, and what that is worth."""
    judged = [t for t in targets if t["note"] != NOT_JUDGED]
    met = sum(1 for t in judged if t["met"] is True)
    missed = sum(1 for t in judged if t["met"] is False)
    unmeasured = len(judged) - met - missed
    counts = f"{met} met, {missed} MISSED" + (f", {unmeasured} not measured" if unmeasured else "")
    if quick:
        return (
            f"Quick mode judges only the {len(judged)} targets that hold at any size "
            f"(round trips and bytes per job, errors): {counts}. The other "
            f"{len(targets) - len(judged)} are speed targets, not judged at these sizes."
        )
    return (
        f"{len(targets)} targets: {counts}. docs/benchmarks.md ('Where queuebox misses') "
        "says what limits each one missed."
    )


def fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float | int):
        return f"{value:,.{digits}f}"
    return str(value)


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [
        max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
        for i, h in enumerate(header)
    ]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return [
        line(header),
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
        *(line(row) for row in rows),
    ]


def render(
    results: list[Result], targets: list[Result], ratios: list[str], *, quick_note: str = ""
) -> str:
    """Markdown tables (they read as plain text too); ``quick_note`` opens a quick run's
    report and says what its numbers are worth."""
    out = [quick_note, ""] if quick_note else []
    out += ["### Throughput and latency (jobs/s; ms)", ""]
    rows = []
    for r in _subjects(results):
        drains = r["drain"]
        capped = any(d.get("capped") for d in drains.values())
        rows.append(
            [
                r["system"],
                r["setting"],
                fmt(_rate(r["enqueue_one"])),
                fmt(_rate(r["enqueue_bulk"])),
                fmt(_drain(r, 1)) + ("*" if capped else ""),
                fmt(_drain(r, 2)),
                fmt(_drain(r, 4)) if "4" in drains else "",
                fmt(drains.get("1", {}).get("startup_seconds"), 2),
                fmt(r["latency"].get("p50_ms"), 2),
                fmt(r["latency"].get("p99_ms"), 2),
                fmt(r["enqueue_one"].get("round_trips_per_job"), 2),
                fmt(drains.get("1", {}).get("round_trips_per_job"), 3),
                r.get("detail", ""),
            ]
        )
    out += table(
        [
            "system",
            "setting",
            "enqueue 1x1",
            "bulk",
            "drain 1p",
            "drain 2p",
            "drain 4p",
            "start-up s",
            "p50",
            "p99",
            "RT/job enq",
            "RT/job drain",
            "how",
        ],
        rows,
    )
    out.append("")
    out.append(
        "`*` a drain capped by --max-seconds: the rate is over the jobs done by then. "
        "RT/job: Redis round trips per job (server read events)."
    )
    claim_rows = []
    for r in results:
        for p in r.get("claim_cost", []):
            claim_rows.append(
                [
                    r["system"],
                    f"{p['depth']:,}",
                    fmt(p["claim_us_median"]),
                    fmt(p["claim_us_p90"]),
                    fmt(p["bytes_per_job"]),
                    fmt(p.get("used_memory_per_job") or p.get("index_bytes_per_job")),
                    fmt(p["fill_seconds"], 1),
                ]
            )
    if claim_rows:
        out += ["", "### Claim cost and store bytes per waiting job", ""]
        out += table(
            [
                "store",
                "waiting",
                "claim us (median)",
                "claim us (p90)",
                "bytes/job",
                "INFO used_memory/job (Redis) or index bytes/job (SQL)",
                "fill s",
            ],
            claim_rows,
        )
    base = [r for r in results if str(r.get("spec", "")).startswith("baseline:")]
    if base:
        out += ["", "### Raw baselines", ""]
        for r in base:
            if "error" in r:
                out.append(f"- {r['spec']}: failed: {r['error']}")
            elif r["store"] == "redis":
                out.append(
                    f"- Redis PING loop: {fmt(r['ping_rate'])}/s; one pipeline of "
                    f"{r['zadds']:,} ZADD: {fmt(r['pipelined_zadd_rate'])}/s"
                )
            else:
                out.append(
                    f"- PostgreSQL one-statement claim-and-delete loop: "
                    f"{fmt(r['claim_loop_rate'])} jobs/s"
                )
    if ratios:
        out += ["", "### Ratios (same run)", "", *(f"- {line}" for line in ratios)]
    if targets:
        out += ["", "### Targets", ""]
        out += table(
            ["target", "measured", "limit", "result"],
            [[t["target"], fmt(t["value"], 2), t["limit"], _verdict(t)] for t in targets],
        )
        out += ["", target_summary(targets, quick=bool(quick_note))]
    failed = [r for r in results if "error" in r]
    if failed:
        out += ["", "### Failed or skipped", ""]
        out += [f"- {r['spec']}: {r['error']}" for r in failed]
    return "\n".join(out) + "\n"
