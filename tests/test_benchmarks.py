"""The benchmark suite runs and writes well-formed JSON (speed is never asserted here), and
its reports judge what they are given: the targets, the quick mode, the I/O table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.harness import DrainTiming
from benchmarks.io_report import evaluate_io, rows
from benchmarks.io_workload import wave_rate
from benchmarks.report import NOT_JUDGED, evaluate, render
from benchmarks.request_path import summarise

REPO = Path(__file__).resolve().parent.parent


def _python_m(module: str, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        [sys.executable, "-m", module, *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


def _run_quick(tmp_path: Path, store: str, *extra: str) -> dict[str, Any]:
    out = tmp_path / "results.json"
    completed = _python_m(
        "benchmarks",
        "--quick",
        "--stores",
        store,
        "-n",
        "200",
        "--probes",
        "5",
        "--depths",
        "100,300",
        "--max-seconds",
        "5",
        "--json",
        str(out),
        *extra,
    )
    document = json.loads(out.read_text())
    assert isinstance(document, dict)
    document["stdout"] = completed.stdout
    return document


def _check(document: dict[str, Any], store: str) -> None:
    results = document["results"]
    assert isinstance(results, list)
    errors = [r for r in results if "error" in r]
    assert not errors, errors
    subject = next(r for r in results if r["spec"] == f"queuebox:{store}:fastest")
    assert subject["enqueue_one"]["jobs"] > 0
    for procs, drain in subject["drain"].items():
        assert drain["done"] == drain["jobs"] == 200, (procs, drain)
        assert not drain["crashed"]
    assert subject["latency"]["lost"] == 0
    claim = next(r for r in results if r["spec"] == f"claim:{store}")
    assert [point["depth"] for point in claim["claim_cost"]] == [100, 300]
    assert all(point["bytes_per_job"] > 0 for point in claim["claim_cost"])
    assert isinstance(document["targets"], list)
    assert all({"target", "met"} <= set(target) for target in document["targets"])
    # Quick mode says what its numbers are worth and judges only size-free targets.
    assert "QUICK MODE" in document["stdout"]
    assert "Quick mode judges only the" in document["stdout"]
    for target in document["targets"]:
        if not target["any_size"]:
            assert (target["met"], target["note"]) == (None, NOT_JUDGED), target


@pytest.mark.slow
def test_quick_sqlite(tmp_path: Path) -> None:
    _check(_run_quick(tmp_path, "sqlite"), "sqlite")


@pytest.mark.slow
def test_quick_redis(tmp_path: Path, redis_url: str) -> None:
    _check(_run_quick(tmp_path, "redis", "--redis-url", redis_url), "redis")


@pytest.mark.slow
def test_quick_postgres(tmp_path: Path, postgres_url: str) -> None:
    _check(_run_quick(tmp_path, "postgres", "--postgres-url", postgres_url), "postgres")


@pytest.mark.slow
def test_the_enqueue_breakdown_measures_each_step(redis_url: str) -> None:
    completed = _python_m("benchmarks.enqueue_breakdown", "--redis-url", redis_url, "--calls", "20")
    lines = completed.stdout.splitlines()
    assert [line.split("  ")[0] for line in lines] == [
        "PING",
        "EVALSHA of an empty script, same keys and arguments",
        "EVALSHA enqueue, same arguments",
        "the adapter's call, written straight (redis_wire)",
        "RedisAdapter.schedule([job])",
        "BenchNoop.perform_later(1)",
        "EVALSHA enqueue, whole prelude, server time per call",
        "EVALSHA enqueue, server time per call (INFO commandstats)",
        "the adapter's FCALL, server time per call",
    ]
    assert all(float(line.split()[-2 if "server" in line else -4]) > 0 for line in lines)


@pytest.mark.slow
def test_the_request_path_compares_two_trees_against_the_raw_limits(
    tmp_path: Path, redis_url: str
) -> None:
    out = tmp_path / "request.json"
    argv = ["--redis-url", redis_url, "--before", str(REPO), "--rounds", "2", "--calls", "20"]
    argv += ["--blocks", "2", "--bulk", "200", "--probes", "5", "--json", str(out)]
    completed = _python_m("benchmarks.request_path", *argv)
    labels = [line[:44].strip() for line in completed.stdout.splitlines()[2:]]
    assert labels[:4] == [
        "redis-py PING loop /s",
        "perform_later one at a time /s",
        "ratio to PING",
        "enqueue script, server us per call",
    ]
    assert "pickup p99 ms" in labels and "ratio to the ZADD pipeline" in labels
    data = json.loads(out.read_text())
    assert [len(data["rounds"][name]) for name in ("before", "this tree")] == [2, 2]
    for medians in data["medians"].values():
        assert medians["enqueue_vs_ping"] > 0 and medians["bulk_vs_zadd"] > 0
        assert medians["aenqueue_vs_aping"] > 0 and medians["p50_ms"] > 0


def test_the_request_path_summary_takes_each_rounds_own_ratio() -> None:
    rows: list[dict[str, Any]] = [
        {"ping": 100.0, "perform_later": 50.0, "zadd": 10.0, "bulk": 5.0},
        {"ping": 200.0, "perform_later": 180.0, "zadd": 10.0, "bulk": 1.0},
        {"ping": 400.0, "perform_later": 120.0},
    ]
    summary = summarise(rows)
    assert summary["enqueue_vs_ping"] == pytest.approx(0.5)  # of 0.5, 0.9 and 0.3
    assert summary["ping"] == 200.0 and summary["bulk_vs_zadd"] == pytest.approx(0.3)
    assert summary["huey"] is None


@pytest.mark.slow
def test_the_io_drain_runs_sync_and_async_jobs_in_one_worker(tmp_path: Path) -> None:
    out = tmp_path / "io.json"
    completed = _python_m(
        "benchmarks.io_bench",
        "--quick",
        "--stores",
        "sqlite",
        "--sweep",
        "8",
        "--sweep-stores",
        "sqlite",
        "-n",
        "64",
        "--json",
        str(out),
    )
    document = json.loads(out.read_text())
    assert not [r for r in document["results"] if "error" in r]
    by_spec = {row["spec"]: row for row in document["rows"]}
    assert set(by_spec) == {
        "io:queuebox:sqlite:sync:32",
        "io:queuebox:sqlite:async:32",
        "io:queuebox:sqlite:async:8",
    }
    for result in document["results"]:
        drain = result["io"]
        assert drain["done"] == drain["jobs"] >= 64
        assert not drain["crashed"] and drain["rate"] > 0
        # Measured from /proc: the worker process exists, holds memory and used CPU.
        assert drain["processes"] == 1 and drain["peak_rss_mb"] > 5
        assert drain["worker_cpu_per_1k"] is not None
    # 8 in flight, 20 ms each: a rate above 8 / 20 ms would mean jobs did not wait.
    assert by_spec["io:queuebox:sqlite:async:8"]["rate"] <= 8 / 0.02 * 1.05
    assert document["targets"] == []
    assert "quick mode" in completed.stdout and "no target is judged" in completed.stdout


@pytest.mark.slow
def test_compare_runs_each_variant_with_its_own_tree(tmp_path: Path) -> None:
    out = tmp_path / "compare.json"
    common = ["--stores", "sqlite", "--settings", "fastest", "-n", "200", "--enqueue-n", "50"]
    completed = _python_m(
        "benchmarks.compare", "--before", str(REPO), *common, "--rounds", "1", "--json", str(out)
    )
    document = json.loads(out.read_text())
    assert [v["tree"] for v in document["variants"]] == [str(REPO), str(REPO)]
    (row,) = document["rows"]
    first, second = (v["label"] for v in document["variants"])
    assert row[first]["drain 1p"] > 0 and row[second]["drain 1p"] > 0
    assert row["ratios"]["drain 1p"] == pytest.approx(
        row[second]["drain 1p"] / row[first]["drain 1p"]
    )
    assert "drain 1p" in completed.stdout


@pytest.mark.slow
def test_compare_stats_turns_the_workers_tallies_off(tmp_path: Path) -> None:
    out = tmp_path / "stats.json"
    common = ["--stores", "sqlite", "--settings", "fastest", "-n", "200", "--enqueue-n", "50"]
    _python_m("benchmarks.compare", "--stats", *common, "--rounds", "1", "--json", str(out))
    document = json.loads(out.read_text())
    # The baseline (history off) first, so that the ratio and its verdict read on / off.
    assert [v["label"] for v in document["variants"]] == ["history off", "history on"]
    (row,) = document["rows"]
    assert row["ratios"]["drain 1p"] == pytest.approx(
        row["history on"]["drain 1p"] / row["history off"]["drain 1p"]
    )
    on, off = row["history on"]["history"], row["history off"]["history"]
    assert (on["record_stats"], off["record_stats"]) == (True, False)
    assert on["kept_by_store"] == off["kept_by_store"]
    if on["kept_by_store"]:
        assert on["runs_tallied"] > 0 and off["runs_tallied"] == 0
    else:
        assert on["runs_tallied"] is None and off["runs_tallied"] is None


@pytest.mark.slow
@pytest.mark.parametrize(
    ("variants", "stores"),
    [
        (["--before", str(REPO)], "free,sqlite"),
        (["--stats"], "free,sqlite"),
        (["--limited"], "sqlite"),
    ],
)
def test_worker_cpu_measures_both_variants_per_store(variants: list[str], stores: str) -> None:
    completed = _python_m(
        "benchmarks.worker_cpu", *variants, "--stores", stores, "-n", "300", "--rounds", "1"
    )
    rows = {
        cells[0]: cells[1:]
        for line in completed.stdout.splitlines()
        if line.startswith("| ") and not line.startswith("| store")
        for cells in [[cell.strip() for cell in line.strip("|").split("|")]]
    }
    assert set(rows) == set(stores.split(",")), completed.stdout
    for first, second, ratio_min, ratio_median in rows.values():
        low_first, low_second = (float(cell.split(" / ")[0]) for cell in (first, second))
        assert low_first > 0 and low_second > 0
        assert float(ratio_min) == pytest.approx(low_second / low_first, rel=0.01)
        assert float(ratio_median) > 0


def test_search_depth_times_each_filter_for_both_trees() -> None:
    completed = _python_m(
        "benchmarks.search_depth",
        *("--before", str(REPO), "-n", "300", "--calls", "1", "--stores", "sqlite"),
    )
    rows = {
        cells[0]: cells[1:]
        for line in completed.stdout.splitlines()
        if line.startswith("| ") and not line.startswith("| filter")
        for cells in [[cell.strip() for cell in line.strip("|").split("|")]]
    }
    assert set(rows) == {
        "none",
        "name, every job",
        "name, no job",
        "queue, no job",
        "text, no job",
        "state failed, no job",
    }, completed.stdout
    for name, (top, deep, jobs, top_after, deep_after, jobs_after, ratio) in rows.items():
        assert min(float(top), float(deep), float(top_after), float(deep_after)) >= 0
        expected = "50 / 30" if name in ("none", "name, every job") else "0 / 0"
        assert jobs == jobs_after == expected, (name, jobs, jobs_after)
        assert float(ratio) > 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--stats", "--enqueue"], "--enqueue compares two trees"),
        (["--stats", "--time-scale", "0.5"], "--time-scale must be at least 1"),
        (["--stats", "--rounds", "0"], "--rounds must be at least 1"),
        (["--stats", "-n", "10", "--small", "10"], "-n must be larger than --small"),
    ],
)
def test_worker_instructions_refuses_bad_options(argv: list[str], message: str) -> None:
    stderr = _refused("benchmarks.worker_instructions", *argv)
    assert message in stderr or "valgrind is not installed" in stderr


def test_worker_cpu_refuses_an_unknown_store() -> None:
    stderr = _refused("benchmarks.worker_cpu", "--stats", "--stores", "sqlite,mongo")
    assert "unknown store(s) mongo; known: free, sqlite, redis, postgres" in stderr


def _refused(module: str, *argv: str) -> str:
    """The error output of ``python -m module argv``, which must exit 2 (a usage error)."""
    completed = subprocess.run(
        [sys.executable, "-m", module, *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2, completed.stderr
    return completed.stderr


# -- the reports, on results built here ---------------------------------------------------------


def test_a_wave_rate_counts_the_jobs_after_the_first_look() -> None:
    timing = DrainTiming(expected=96, started=0.0, first_done=1.0, done_at_first=32)
    timing.finished, timing.done = 1.04, 96
    assert wave_rate(timing) == pytest.approx(64 / 0.04)
    assert wave_rate(DrainTiming(expected=1, started=0.0)) is None


def _io_result(spec: str, system: str, concurrency: int, rate: float, **extra: Any) -> Any:
    measures = {"rate": rate, "of_ideal": rate / (concurrency / 0.02), "capped": False}
    measures.update({"peak_rss_mb": 40.0, "worker_cpu_per_1k": 0.3, "processes": 1, **extra})
    return {
        "spec": spec,
        "system": system,
        "store": "redis",
        "concurrency": concurrency,
        "kind": "async",
        "io": measures,
    }


def test_the_io_report_takes_medians_and_judges_against_the_best_peer() -> None:
    results = [
        _io_result("io:qb", "queuebox-redis", 32, rate, peak_rss_mb=38.0)
        for rate in (1500.0, 1560.0, 1400.0)
    ]
    results += [
        _io_result("io:qb100", "queuebox-redis", 100, 4000.0, worker_cpu_per_1k=0.1),
        _io_result("io:arq", "arq", 100, 1600.0, worker_cpu_per_1k=0.6, peak_rss_mb=31.0),
        _io_result("io:huey", "huey", 32, 1500.0),
        {"spec": "io:saq", "error": "skipped: not installed"},
    ]
    table_rows = rows(results)
    first = table_rows[0]
    assert (first["runs"], first["rate"]) == (3, 1500.0)
    targets = {t["target"]: t for t in evaluate_io(table_rows)[0]}
    assert targets["queuebox-redis -c 32, async jobs: >= 95% of the ideal 1,600/s"]["met"] is False
    best = targets["queuebox's best one-process rate >= 1.5x the best peer's"]
    assert (best["value"], best["met"]) == (2.5, True)
    assert targets["queuebox's CPU per 1,000 jobs at its best <= the best peer's"]["met"] is True
    rss = targets["queuebox's RSS at 100 in flight <= arq's"]
    assert (rss["value"], rss["met"]) == (40.0, False)


def test_quick_mode_judges_only_targets_that_hold_at_any_size() -> None:
    drain = {"rate": 5000.0, "round_trips_per_job": 0.01, "worker_cpu_share": 0.0}
    drain |= {"server_cpu_share": 0.0, "cpu_window_seconds": 0.04}
    result = {
        "spec": "queuebox:redis:fastest",
        "system": "queuebox-redis",
        "store": "redis",
        "setting": "fastest",
        "enqueue_one": {"rate": 100.0, "round_trips_per_job": 1.0},
        "enqueue_bulk": {"rate": 1000.0},
        "drain": {"1": drain, "2": dict(drain)},
        "latency": {"p50_ms": 9.0, "p99_ms": 9.0},
    }
    targets, ratios = evaluate([result], quick=True)
    judged = {t["target"]: t["met"] for t in targets if t["note"] != NOT_JUDGED}
    assert judged == {
        "Redis round trips per job in a drain": True,
        "Redis enqueue one at a time: 1 round trip per job": True,
    }
    assert any("too short for /proc's 10 ms CPU ticks" in line for line in ratios)
    report = render([result], targets, ratios, quick_note="QUICK MODE: tiny")
    assert report.startswith("QUICK MODE: tiny")
    assert "not judged (quick mode)" in report and "| MISSED" not in report
    assert "only the 2 targets that hold at any size" in report and "2 met, 0 MISSED" in report
    full = {t["target"]: t["met"] for t in evaluate([result])[0]}
    assert full["Redis drain, 2 procs >= 1.6x 1 proc"] is False
    assert full["Redis pickup p99 <= 5 ms"] is False
