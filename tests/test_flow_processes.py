"""Flow control across real worker processes on every store that declares it: a
``max_concurrency`` held across four ``queuebox work`` processes, a slot freed by a killed
worker's lapsed lease, a rate limit across processes, and pause / resume."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import Process, enqueue, ledger, peak_overlap, runs, wait_until, write_project

from queuebox import from_url
from queuebox.backends.base import Adapter, FlowControl, NewJob
from queuebox.backends.records import RateLimit
from queuebox.payload import encode_handler

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def store(store_url: str) -> Iterator[Adapter]:
    adapter = from_url(store_url)
    try:
        adapter.migrate()
        if not isinstance(adapter, FlowControl):
            pytest.skip(f"{type(adapter).__name__} does not declare FlowControl")
        yield adapter
    finally:
        adapter.close()


def _limited(n: int, seconds: float, **limits: object) -> list[NewJob]:
    job = NewJob(
        name="Sleep",
        handler=encode_handler("Sleep", (seconds,), {}),
        queue="default",
        priority=50,
        limit_key="Sleep",
        **limits,  # type: ignore[arg-type]
    )
    return [job] * n


def _workers(project: Path, n: int) -> list[Process]:
    return [Process(project, "work", "-c", "2") for _ in range(n)]


def _stop(procs: list[Process]) -> None:
    for proc in procs:
        proc.kill()


def test_max_concurrency_holds_across_four_processes(
    store: Adapter, store_url: str, tmp_path: Path
) -> None:
    project = write_project(tmp_path, store_url)
    ids = [r.id for r in store.schedule(_limited(12, 0.3, max_concurrency=2))]
    procs = _workers(project, 4)
    try:
        wait_until(lambda: len(runs(project)) >= len(ids), 60, "every limited job to run")
    finally:
        _stop(procs)
    assert peak_overlap(runs(project)) == 2


def test_a_killed_workers_slot_frees_after_its_lease(
    store: Adapter, store_url: str, tmp_path: Path
) -> None:
    project = write_project(tmp_path, store_url, extra="lease = 2\n")
    # The killed run comes back after the lease and runs again (3 s), beside nothing else.
    store.schedule(_limited(1, 3, max_concurrency=1))
    later = [r.id for r in store.schedule(_limited(3, 0.1, max_concurrency=1))]
    victim = Process(project, "work", "-c", "1")
    procs = [victim]
    try:
        wait_until(lambda: any(line.startswith("start") for line in ledger(project)), 30)
        victim.signal(signal.SIGKILL)
        victim.wait()
        killed_at = time.time()
        procs += _workers(project, 2)
        wait_until(
            lambda: {job for job, _, _ in runs(project)} >= set(later),
            60,
            "the other jobs to run after the lapsed lease",
        )
    finally:
        _stop(procs)
    first_start = min(start for job, start, _ in runs(project) if job in later)
    assert first_start >= killed_at, "a job ran while the dead worker's lock held the slot"


def test_a_rate_limit_holds_across_four_processes(
    store: Adapter, store_url: str, tmp_path: Path
) -> None:
    project = write_project(tmp_path, store_url)
    store.schedule(_limited(300, 0.0, rate_limit=RateLimit(20, 1.0)))
    procs = _workers(project, 4)
    try:
        wait_until(lambda: len(runs(project)) >= 1, 30, "a first run")
        time.sleep(5)
    finally:
        _stop(procs)
    starts = sorted(start for _, start, _ in runs(project))
    first = starts[0]
    window = [s for s in starts if s < first + 5]
    # The store's clock decides the window; the workers' clocks add a little jitter, so
    # the per-second count is taken over slightly narrower windows.
    for index, start in enumerate(window):
        in_second = [s for s in window[index:] if s < start + 0.95]
        assert len(in_second) <= 20, f"{len(in_second)} starts within a second"
    assert len(window) >= 0.8 * 20 * 5, f"only {len(window)} starts in 5 s"


def test_pause_stops_claims_and_unlimited_jobs_are_not_held_up(
    store: Adapter, store_url: str, tmp_path: Path
) -> None:
    assert isinstance(store, FlowControl)
    project = write_project(tmp_path, store_url)
    procs = _workers(project, 2)
    try:
        limited = [r.id for r in store.schedule(_limited(6, 0.5, max_concurrency=1))]
        enqueue(store, "Record", ["free"], n=4)
        wait_until(
            lambda: sum(1 for line in ledger(project) if line.endswith(" free")) == 4,
            10,
            "the unlimited jobs to run beside the limited ones",
        )
        assert len([r for r in runs(project) if r[0] in limited]) < 6, "limited ones all ran"
        assert store.pause("paused")
        enqueue(store, "Record", ["held"], queue="paused")
        time.sleep(2)
        assert not any(line.endswith(" held") for line in ledger(project)), "ran while paused"
        assert "paused" in store.paused_queues()
        assert store.resume("paused")
        wait_until(
            lambda: any(line.endswith(" held") for line in ledger(project)), 10, "resumed job"
        )
    finally:
        _stop(procs)
