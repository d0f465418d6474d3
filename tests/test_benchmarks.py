"""The benchmark suite runs and writes well-formed JSON (speed is never asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def _run_quick(tmp_path: Path, store: str, *extra: str) -> dict[str, object]:
    out = tmp_path / "results.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
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
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    document = json.loads(out.read_text())
    assert isinstance(document, dict)
    return document


def _check(document: dict[str, object], store: str) -> None:
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


def test_quick_sqlite(tmp_path: Path) -> None:
    _check(_run_quick(tmp_path, "sqlite"), "sqlite")


def test_quick_redis(tmp_path: Path, redis_url: str) -> None:
    _check(_run_quick(tmp_path, "redis", "--redis-url", redis_url), "redis")


def test_quick_postgres(tmp_path: Path, postgres_url: str) -> None:
    _check(_run_quick(tmp_path, "postgres", "--postgres-url", postgres_url), "postgres")


@pytest.mark.redis
def test_the_enqueue_breakdown_measures_each_step(redis_url: str) -> None:
    module = "benchmarks.enqueue_breakdown"
    completed = subprocess.run(
        [sys.executable, "-m", module, "--redis-url", redis_url, "--calls", "20"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.splitlines()
    assert [line.split("  ")[0] for line in lines] == [
        "PING",
        "EVALSHA of an empty script, same keys and arguments",
        "EVALSHA enqueue, same arguments",
        "RedisAdapter.schedule([job])",
        "BenchNoop.perform_later(1)",
        "enqueue script, server time per call (INFO commandstats)",
    ]
    assert all(float(line.split()[-2 if "server" in line else -4]) > 0 for line in lines)
