"""Worker settings, with RedwoodJS's defaults, and the ``-n`` worker-group syntax."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from queuebox.errors import ConfigurationError, QueueboxError
from queuebox.validation import check_queue_name

__all__ = ["MAX_BATCH_SIZE", "MAX_CONCURRENCY", "WorkerSettings", "parse_worker_spec"]

#: Bounds of a worker group's sizes: beyond them a typo, not a setting.
MAX_CONCURRENCY = 10_000
MAX_BATCH_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """How one group of workers runs. ``queues=None`` means every queue (``"*"``)."""

    queues: tuple[str, ...] | None = None
    count: int = 1
    max_attempts: int = 24
    max_runtime: float = 14400.0
    sleep_delay: float = 5.0
    delete_successful_jobs: bool = True
    delete_failed_jobs: bool = False
    #: How many due jobs one claim takes. More is faster for short jobs; a claimed job
    #: waits for the ones before it in its batch, so keep it 1 for long jobs.
    batch_size: int = 1
    #: A claimed job's lock lives this long unless renewed; the worker renews it every
    #: third of the lease while the job runs, so a dead worker's jobs return this soon.
    lease: float = 60.0
    #: With batches of more than one job on one queue of a store that can split its round
    #: trips (Redis), claim the next batch while this one runs (``runner/claims.py``).
    claim_ahead: bool = True
    #: Jobs in flight at once in one worker process: sync jobs on that many threads, async
    #: jobs as tasks of one event loop. 1 runs one job at a time in the worker's thread.
    concurrency: int = 1
    #: Seconds a run asked to stop (past max_runtime, or cancelled) gets to stop before the
    #: worker process records its outcome and ends itself, to be replaced by a fresh one.
    stop_grace: float = 10.0
    #: Hand per-minute throughput tallies to a store that keeps them (ThroughputHistory).
    record_stats: bool = True

    def __post_init__(self) -> None:
        if self.queues is not None:
            if not self.queues:
                raise ConfigurationError("a worker group needs at least one queue, or '*'")
            for queue in self.queues:
                check_queue_name(queue)
        _check_whole("count", self.count, 1)
        _check_whole("max_attempts", self.max_attempts, 1)
        _check_whole("batch_size", self.batch_size, 1)
        _check_whole("concurrency", self.concurrency, 1)
        if self.concurrency > MAX_CONCURRENCY or self.batch_size > MAX_BATCH_SIZE:
            raise ConfigurationError(
                f"concurrency={self.concurrency}, batch_size={self.batch_size}: at most "
                f"{MAX_CONCURRENCY} jobs in flight and {MAX_BATCH_SIZE} per claim"
            )
        # Only a real bool: a config file's "false" (a string) is truthy, and would delete
        # the failed jobs it was meant to keep.
        for name in ("delete_successful_jobs", "delete_failed_jobs", "claim_ahead", "record_stats"):
            value = getattr(self, name)
            if type(value) is not bool:
                raise ConfigurationError(f"{name}={value!r} is not valid: give true or false")
        for name in ("max_runtime", "sleep_delay", "lease", "stop_grace"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigurationError(f"{name}={value!r} is not valid: give seconds")
            if not math.isfinite(value) or value <= 0:
                raise ConfigurationError(f"{name}={value!r} is not valid: give seconds above 0")

    @property
    def queue_label(self) -> str:
        return "*" if self.queues is None else ",".join(self.queues)

    def replace(self, **changes: Any) -> WorkerSettings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> WorkerSettings:
        """Build from a config-file table such as ``{queue = "email", count = 2}``."""
        fields = {field.name for field in dataclasses.fields(cls)}
        values = dict(data)
        if "queue" in values:
            values["queues"] = parse_queues(values.pop("queue"))
        unknown = sorted(set(values) - fields)
        if unknown:
            raise ConfigurationError(
                f"unknown worker setting(s) {', '.join(unknown)}; known: queue, "
                + ", ".join(sorted(fields - {"queues"}))
            )
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigurationError(f"bad worker settings {dict(data)!r}: {exc}") from None


def parse_queues(value: object) -> tuple[str, ...] | None:
    """``"*"`` (all), ``"email"``, ``"a,b"`` or a list of names."""
    if value in ("*", ["*"], ("*",)):
        return None
    if isinstance(value, str):
        names: Sequence[object] = [part.strip() for part in value.split(",")]
    elif isinstance(value, list | tuple):
        names = value
    else:
        raise ConfigurationError(f"queue {value!r} is not valid: give a name, a list or '*'")
    try:
        return tuple(check_queue_name(name) for name in names)
    except QueueboxError as exc:
        raise ConfigurationError(str(exc)) from None


def parse_worker_spec(spec: str, base: WorkerSettings) -> list[WorkerSettings]:
    """``"4"`` -> four workers on ``base``'s queues; ``"default:2,email:1"`` -> one group
    per queue. ``"*:3"`` is three workers on every queue."""
    spec = spec.strip()
    if spec.isdigit():
        return [base.replace(count=_count(spec, spec))]
    groups = []
    for part in spec.split(","):
        queue, sep, count = part.strip().partition(":")
        if not sep or not queue:
            raise ConfigurationError(
                f"-n {spec!r} is not valid: give a number of workers (-n 4) or "
                "queue:count pairs separated by commas (-n default:2,email:1)"
            )
        groups.append(base.replace(queues=parse_queues(queue.strip()), count=_count(count, spec)))
    return groups


def _count(text: str, spec: str) -> int:
    text = text.strip()
    if not text.isdigit() or int(text) < 1:
        raise ConfigurationError(f"-n {spec!r}: worker count {text!r} must be a whole number >= 1")
    return int(text)


def _check_whole(name: str, value: object, minimum: int) -> None:
    if type(value) is not int or value < minimum:
        raise ConfigurationError(f"{name}={value!r} is not valid: give a whole number >= {minimum}")
