"""What the contract classes share: job builders, time checks and forked workers."""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from queuebox.backends.base import Adapter, JobRecord, NewJob

__all__ = [
    "LEASE",
    "SHORT_LEASE",
    "AdapterFactory",
    "StoreFixtures",
    "claim_one",
    "claim_until_empty",
    "close_to",
    "fork",
    "new_job",
    "wait_all",
]

AdapterFactory = Callable[[], Adapter]

LEASE = 60.0
SHORT_LEASE = 0.3  # long enough for one claim round trip on a loaded CI machine


class StoreFixtures:
    """The fixtures every contract class uses. A subclass provides ``adapter_factory``: a
    callable that returns a new adapter on one fresh, empty store (the same store on every
    call, so that threads and forked processes can each open their own)."""

    @pytest.fixture
    def adapter_factory(self) -> AdapterFactory:
        raise NotImplementedError("subclasses of the contract classes provide adapter_factory")

    @pytest.fixture
    def adapter(self, adapter_factory: AdapterFactory) -> Iterator[Adapter]:
        adapter = adapter_factory()
        try:
            yield adapter
        finally:
            adapter.close()


def new_job(
    queue: str = "default",
    priority: int = 50,
    *,
    name: str = "ContractJob",
    args: list[object] | None = None,
    delay: float = 0.0,
    run_at: datetime | None = None,
    unique_key: str | None = None,
) -> NewJob:
    handler = json.dumps(
        {"name": name, "args": args or [], "kwargs": {}}, ensure_ascii=False, separators=(",", ":")
    )
    return NewJob(
        name=name,
        handler=handler,
        queue=queue,
        priority=priority,
        delay=delay,
        run_at=run_at,
        unique_key=unique_key,
    )


def close_to(actual: datetime | None, expected: datetime, tolerance: float = 5.0) -> bool:
    return actual is not None and abs((actual - expected).total_seconds()) <= tolerance


def claim_one(
    adapter: Adapter, worker: str = "w1", *, queues: list[str] | None = None
) -> JobRecord:
    claimed = adapter.claim(worker, queues, limit=1, lease=LEASE)
    assert len(claimed) == 1, f"expected one claimable job, got {claimed!r}"
    return claimed[0]


def wait_all(pids: list[int], logs: list[Path]) -> None:
    """Wait for forked children; a child that failed fails the test with its traceback."""
    for pid, log in zip(pids, logs, strict=True):
        _, status = os.waitpid(pid, 0)
        error = log.with_suffix(".err")
        assert os.waitstatus_to_exitcode(status) == 0, error.exists() and error.read_text()


def fork(work: Callable[[], None], error_file: Path) -> int:
    """Run ``work`` in a forked child, which exits without running inherited cleanup."""
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        work()
    except BaseException:
        code = 1
        error_file.write_text(traceback.format_exc())
    finally:
        os._exit(code)


def claim_until_empty(adapter_factory: AdapterFactory, log: Path) -> None:
    """A forked worker: claim batches and acknowledge them until the store is empty,
    writing each claimed id to ``log``."""
    adapter = adapter_factory()
    worker = f"proc-{os.getpid()}"
    idle_rounds = 0
    with log.open("w") as out:
        while idle_rounds < 3:
            jobs = adapter.claim(worker, None, limit=5, lease=LEASE)
            if not jobs:
                idle_rounds += 1
                time.sleep(0.05)
                continue
            idle_rounds = 0
            for job in jobs:
                out.write(f"{job.id}\n")
            out.flush()
            results = adapter.complete_many([(job.id, job.lock_token or "") for job in jobs])
            assert all(results), f"lost locks while completing {jobs!r}"
    adapter.close()
