"""Runs the workloads of one subject in a process of its own and writes their results.

``python -m benchmarks.driver SPEC --out FILE [options]``, where SPEC is
``queuebox:STORE:SETTING`` (``queuebox:STORE:SETTING:nostats``: the workers record no
throughput tallies), ``peer:NAME:SETTING``, ``claim:STORE``, ``baseline:STORE``, or an I/O
drain: ``io:queuebox:STORE:sync|async:CONCURRENCY`` or ``io:NAME`` (a peer at its I/O
setting).
``python -m benchmarks`` starts one driver per subject (a peer's with the interpreter that
has it installed), so that no library's imports or state leak into another's run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from benchmarks.subject import Subject

__all__ = ["main"]


def _subject(kind: str, name: str, setting: str, urls: dict[str, str]) -> Subject:
    if kind == "queuebox":
        from benchmarks.queuebox_subjects import QueueboxSubject  # noqa: PLC0415

        setting, _, variant = setting.partition(":")
        if variant not in ("", "nostats"):
            raise ValueError(f"unknown variant {variant!r} of {name}:{setting}; known: nostats")
        return QueueboxSubject(name, urls[name], setting, record_stats=variant != "nostats")
    from benchmarks.peers import PEERS  # noqa: PLC0415

    peer = PEERS[name]
    module = importlib.import_module(peer.module)
    subject: Subject = module.make(setting, urls[peer.store])
    return subject


def run_subject(subject: Subject, args: argparse.Namespace, urls: dict[str, str]) -> dict[str, Any]:
    from benchmarks.workloads import (  # noqa: PLC0415
        measure_bulk,
        measure_drain,
        measure_enqueue,
        measure_latency,
    )

    redis_url = urls["redis"] if subject.store == "redis" else None
    result: dict[str, Any] = {
        "system": subject.system,
        "store": subject.store,
        "setting": subject.setting,
        "detail": subject.detail,
    }
    subject.setup()
    try:
        result["enqueue_one"] = measure_enqueue(
            subject, args.enqueue_n, args.max_seconds, redis_url
        )
        result["enqueue_bulk"] = measure_bulk(subject, args.n, redis_url)
        result["drain"] = {}
        for procs in args.procs:
            result["drain"][str(procs)] = measure_drain(
                subject, args.n, procs, args.max_seconds, redis_url
            )
        result["latency"] = measure_latency(subject, args.probes)
        result.update(_history(subject))
    finally:
        subject.cleanup()
    return result


def _history(subject: Subject) -> dict[str, Any]:
    """For queuebox: whether the store keeps throughput history, whether the workers were
    asked to record it, and how many runs they handed over during the workloads."""
    from benchmarks.queuebox_subjects import QueueboxSubject  # noqa: PLC0415

    if not isinstance(subject, QueueboxSubject):
        return {}
    return {
        "history": {
            "kept_by_store": subject.keeps_history(),
            "record_stats": subject.record_stats,
            "runs_tallied": subject.tallied(),
        }
    }


def _io_subject(target: str, urls: dict[str, str]) -> Subject:
    """``queuebox:STORE:KIND:CONCURRENCY`` or a peer's name."""
    system, _, rest = target.partition(":")
    if system == "queuebox":
        from benchmarks.queuebox_subjects import QueueboxSubject  # noqa: PLC0415

        store, kind, concurrency = [*rest.split(":"), "", ""][:3]
        if not concurrency.isdigit():
            raise ValueError(f"io:{target}: give io:queuebox:STORE:sync|async:CONCURRENCY")
        return QueueboxSubject(store, urls[store], "io", concurrency=int(concurrency), io_kind=kind)
    return _subject("peer", system, "io", urls)


def run_io(target: str, args: argparse.Namespace, urls: dict[str, str]) -> dict[str, Any]:
    from benchmarks.io_workload import measure_io_drain  # noqa: PLC0415

    subject = _io_subject(target, urls)
    result: dict[str, Any] = {
        "system": subject.system,
        "store": subject.store,
        "setting": subject.setting,
        "detail": subject.detail,
        "concurrency": subject.concurrency,
        "kind": subject.io_kind,
    }
    subject.setup()
    try:
        redis_url = urls["redis"] if subject.store == "redis" else None
        result["io"] = measure_io_drain(subject, args.n, args.max_seconds, redis_url)
    finally:
        subject.cleanup()
    return result


def run_claim(store: str, args: argparse.Namespace, urls: dict[str, str]) -> dict[str, Any]:
    from benchmarks.claim_cost import measure_claim_cost  # noqa: PLC0415
    from benchmarks.queuebox_subjects import QueueboxSubject  # noqa: PLC0415

    subject = QueueboxSubject(store, urls[store])
    try:
        points = measure_claim_cost(subject, args.depths, args.rounds)
    finally:
        subject.cleanup()
    return {"system": f"queuebox-{store}", "store": store, "claim_cost": points}


def run_baseline(store: str, args: argparse.Namespace, urls: dict[str, str]) -> dict[str, Any]:
    from benchmarks import baselines  # noqa: PLC0415

    if store == "redis":
        return {"store": store, **baselines.redis_baselines(urls["redis"], args.enqueue_n)}
    return {"store": store, **baselines.postgres_claim_loop(urls["postgres"], args.n)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("spec")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("-n", type=int, default=10_000)
    parser.add_argument("--enqueue-n", type=int, default=10_000)
    parser.add_argument("--procs", type=lambda s: [int(p) for p in s.split(",")], default=[1, 2])
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--max-seconds", type=float, default=20.0)
    parser.add_argument("--depths", type=lambda s: [int(p) for p in s.split(",")], default=[1000])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--postgres-url", default="postgresql://127.0.0.1:5432/test")
    args = parser.parse_args(argv)
    urls = {"redis": args.redis_url, "postgres": args.postgres_url, "sqlite": ""}
    kind, _, rest = args.spec.partition(":")
    name, _, setting = rest.partition(":")
    started = time.perf_counter()
    try:
        if kind == "io":
            result = run_io(rest, args, urls)
        elif kind == "claim":
            result = run_claim(name, args, urls)
        elif kind == "baseline":
            result = run_baseline(name, args, urls)
        else:
            result = run_subject(_subject(kind, name, setting or "default", urls), args, urls)
    except Exception as exc:  # the report shows what failed and goes on with the rest
        result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    result["spec"] = args.spec
    result["seconds"] = time.perf_counter() - started
    args.out.write_text(json.dumps(result, indent=2))
    return 0 if "error" not in result else 1


if __name__ == "__main__":
    sys.exit(main())
