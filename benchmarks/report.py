"""Tables, ratios and the speed targets, from the drivers' results."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

__all__ = ["evaluate", "render"]

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


def _target(name: str, value: float | None, limit: str, met: bool | None, note: str = "") -> Result:
    return {"target": name, "value": value, "limit": limit, "met": met, "note": note}


class _Checks:
    def __init__(self) -> None:
        self.targets: list[Result] = []
        self.ratios: list[str] = []

    def __call__(
        self, name: str, value: float | None, limit: str, ok: bool, note: str = ""
    ) -> None:
        self.targets.append(_target(name, value, limit, None if value is None else ok, note))


def evaluate(results: list[Result]) -> tuple[list[Result], list[str]]:
    """The targets (met, missed, or not measured) and the ratio sentences."""
    check = _Checks()
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
        ratios.append(f"queuebox-redis drain (1 proc) = {ratio:.1f}x fastest peer ({peer[1]})")
        check("Redis drain, 1 proc >= 5x fastest peer", ratio, ">= 5", ratio >= 5)
    else:
        check("Redis drain, 1 proc >= 5x fastest peer", None, ">= 5", False, "needs --peers")
    if qb_redis:
        setting = qb_redis[1]
        two = _drain(setting, 2)
        scaling = two / qb_redis[0] if two else None
        if scaling:
            ratios.append(f"queuebox-redis 2 procs = {scaling:.2f}x 1 proc ({setting['setting']})")
        for procs, workers in (("1", "the worker"), ("2", "the workers")):
            drain = setting["drain"].get(procs, {})
            worker, server = drain.get("worker_cpu_share"), drain.get("server_cpu_share")
            if worker is not None and server is not None:
                ratios.append(
                    f"queuebox-redis {procs}-proc drain ({setting['setting']}) kept "
                    f"{worker + server:.2f} of {os.cpu_count()} cores busy: {workers} "
                    f"{worker:.2f}, redis-server {server:.2f}"
                )
        check("Redis drain, 2 procs >= 1.6x 1 proc", scaling, ">= 1.6", (scaling or 0) >= 1.6)
        trips = setting["drain"]["1"].get("round_trips_per_job")
        check(
            "Redis round trips per job in a drain",
            trips,
            "well under 1 (<= 0.1)",
            trips is not None and trips <= 0.1,
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
        )
        if baseline and "ping_rate" in baseline:
            ratio = one["rate"] / baseline["ping_rate"]
            ratios.append(f"queuebox-redis enqueue one at a time = {ratio:.0%} of the PING loop")
            check(
                "Redis enqueue one at a time within 10% of the PING loop",
                ratio,
                ">= 0.9",
                ratio >= 0.9,
            )
            bulk = max(_rate(r["enqueue_bulk"]) or 0 for r in fast)
            ratio = bulk / baseline["pipelined_zadd_rate"]
            ratios.append(f"queuebox-redis bulk enqueue = {ratio:.0%} of a raw pipeline of ZADD")
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
                f"queuebox-redis pickup p50 {min(p50s):.2f} ms vs best peer "
                f"{best_peer[0]:.2f} ms ({best_peer[1]})"
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
        ratios.append(f"queuebox-postgres drain (1 proc) = {ratio:.1f}x procrastinate ({proc[1]})")
        check("PostgreSQL drain >= 10x procrastinate's fastest", ratio, ">= 10", ratio >= 10)
    if qb_pg and raw and raw.get("claim_loop_rate"):
        ratio = qb_pg[0] / raw["claim_loop_rate"]
        ratios.append(f"queuebox-postgres drain (1 proc) = {ratio:.1f}x the raw claim loop")
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
            check("SQLite, 4 procs: no 'database is locked'", locked, "0", locked == 0)
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
            )


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float | int):
        return f"{value:,.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
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


def render(results: list[Result], targets: list[Result], ratios: list[str]) -> str:
    """Markdown tables (they read as plain text too)."""
    out = ["### Throughput and latency (jobs/s; ms)", ""]
    rows = []
    for r in _subjects(results):
        drains = r["drain"]
        capped = any(d.get("capped") for d in drains.values())
        rows.append(
            [
                r["system"],
                r["setting"],
                _fmt(_rate(r["enqueue_one"])),
                _fmt(_rate(r["enqueue_bulk"])),
                _fmt(_drain(r, 1)) + ("*" if capped else ""),
                _fmt(_drain(r, 2)),
                _fmt(_drain(r, 4)) if "4" in drains else "",
                _fmt(drains.get("1", {}).get("startup_seconds"), 2),
                _fmt(r["latency"].get("p50_ms"), 2),
                _fmt(r["latency"].get("p99_ms"), 2),
                _fmt(r["enqueue_one"].get("round_trips_per_job"), 2),
                _fmt(drains.get("1", {}).get("round_trips_per_job"), 3),
                r.get("detail", ""),
            ]
        )
    out += _table(
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
                    _fmt(p["claim_us_median"]),
                    _fmt(p["claim_us_p90"]),
                    _fmt(p["bytes_per_job"]),
                    _fmt(p.get("used_memory_per_job") or p.get("index_bytes_per_job")),
                    _fmt(p["fill_seconds"], 1),
                ]
            )
    if claim_rows:
        out += ["", "### Claim cost and store bytes per waiting job", ""]
        out += _table(
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
                    f"- Redis PING loop: {_fmt(r['ping_rate'])}/s; one pipeline of "
                    f"{r['zadds']:,} ZADD: {_fmt(r['pipelined_zadd_rate'])}/s"
                )
            else:
                out.append(
                    f"- PostgreSQL one-statement claim-and-delete loop: "
                    f"{_fmt(r['claim_loop_rate'])} jobs/s"
                )
    if ratios:
        out += ["", "### Ratios (same run)", "", *(f"- {line}" for line in ratios)]
    if targets:
        out += ["", "### Targets", ""]
        marks = {True: "met", False: "MISSED", None: "not measured"}
        out += _table(
            ["target", "measured", "limit", "result"],
            [
                [
                    t["target"],
                    _fmt(t["value"], 2),
                    t["limit"],
                    marks[t["met"]] + (f" ({t['note']})" if t["note"] else ""),
                ]
                for t in targets
            ],
        )
    failed = [r for r in results if "error" in r]
    if failed:
        out += ["", "### Failed or skipped", ""]
        out += [f"- {r['spec']}: {r['error']}" for r in failed]
    return "\n".join(out) + "\n"
