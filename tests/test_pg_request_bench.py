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
    assert set(results) == {"raw", "queuebox"}
    assert set(results["raw"]) == {
        "insert_loop_rate",
        "insert_loop_unprepared_rate",
        "async_insert_loop_rate",
        "executemany_rate",
    }
    queuebox = results["queuebox"]
    for key in ("enqueue_rate", "bulk_rate", "async_enqueue_rate", "p50_ms", "p99_ms"):
        assert len(queuebox[key]) == 1 and queuebox[key][0] > 0, key
    assert queuebox["probes"] == [3]
    assert "queuebox enqueue_rate: " in completed.stdout


def test_ratios_set_each_measure_against_its_limit_the_peer_and_before() -> None:
    medians = {
        "raw": {
            "insert_loop_rate": 1000.0,
            "insert_loop_unprepared_rate": 800.0,
            "executemany_rate": 10_000.0,
            "async_insert_loop_rate": 500.0,
        },
        "queuebox": {"enqueue_rate": 800.0, "bulk_rate": 6000.0, "async_enqueue_rate": 400.0},
        "queuebox before": {"enqueue_rate": 400.0, "bulk_rate": 3000.0},
        "procrastinate": {"enqueue_rate": 1000.0},
    }
    lines = ratios(medians)
    assert lines[0] == (
        "queuebox enqueue_rate: 0.80x insert_loop_rate, 1.00x insert_loop_unprepared_rate, "
        "2.00x before, 0.80x procrastinate"
    )
    assert "queuebox bulk_rate: 0.60x executemany_rate, 2.00x before" in lines
    assert "queuebox async_enqueue_rate: 0.80x async_insert_loop_rate" in lines
    assert (
        "procrastinate enqueue_rate: 1.00x insert_loop_rate, 1.25x insert_loop_unprepared_rate"
        in lines
    )
