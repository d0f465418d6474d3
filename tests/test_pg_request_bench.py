"""``benchmarks.pg_request_path`` runs end to end and reports what it measured (speed is
never asserted here), and its ratios compare each variant with the right limit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.pg_request_path import ratios

REPO = Path(__file__).resolve().parent.parent


def test_the_request_path_benchmark_runs_every_measure(postgres_url: str, tmp_path: Path) -> None:
    out = tmp_path / "request.json"
    argv = ["--count", "30", "--bulk", "200", "--rounds", "1", "--probes", "3", "--no-peers"]
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.pg_request_path", *argv, "--json", str(out)],
        cwd=REPO,
        env={**os.environ, "QUEUEBOX_BENCH_POSTGRES_URL": postgres_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads(out.read_text())
    assert set(results) == {"queuebox"}
    found = results["queuebox"]
    measures = ["enqueue_rate", "bulk_rate", "async_enqueue_rate", "p50_ms", "p99_ms"]
    limits = ["insert_loop_rate", "insert_loop_unprepared_rate", "executemany_rate"]
    for key in [*measures, *limits, "async_insert_loop_rate", "bulk_rate / executemany_rate"]:
        assert len(found[key]) == 1 and found[key][0] > 0, key
    assert found["probes"] == [3]
    assert "queuebox enqueue_rate: " in completed.stdout


def test_ratios_set_each_measure_against_the_limit_beside_it_round_by_round() -> None:
    results = {
        "queuebox": {
            "enqueue_rate / insert_loop_rate": [0.8, 0.6, 0.7],
            "bulk_rate / executemany_rate": [0.5, 0.9, 0.7],
        },
        "queuebox before": {"enqueue_rate / insert_loop_rate": [0.4, 0.2, 0.35]},
        "procrastinate": {"enqueue_rate / insert_loop_rate": [0.8, 0.3, 0.7]},
    }
    lines = ratios(results)
    # medians: 0.7; round by round 2, 3, 2 against before; 1, 2, 1 against procrastinate
    assert (
        lines[0]
        == "queuebox enqueue_rate: 0.70x insert_loop_rate, 2.00x before, 1.00x procrastinate"
    )
    assert lines[1] == "queuebox bulk_rate: 0.70x executemany_rate"
    assert lines[2] == "queuebox before enqueue_rate: 0.35x insert_loop_rate"
    assert lines[3] == "procrastinate enqueue_rate: 0.70x insert_loop_rate"


def test_the_enqueue_breakdown_times_every_step(postgres_url: str) -> None:
    from benchmarks.pg_enqueue_breakdown import measure

    result = measure(postgres_url, calls=2)
    assert len(result) == 10 and all(micros > 0 for micros in result.values())
    assert next(iter(result)) == "1a INSERT, prepared"
