"""Storing jobs as a sequence of statements that knows no connection (sans-IO).

``insert_plan`` is a generator: it yields ``(query name, parameters)`` steps and is sent the
rows each step returned. ``run_plan`` drives it on a blocking connection and ``arun_plan`` on
an asyncio one, so that the unique-key logic below exists once for ``schedule``,
``schedule_with``, ``schedule_tick`` and ``aschedule``.

Each batch inserts its jobs (``insert_jobs``, or ``insert_unique_jobs`` when a job has a
unique key: ``ON CONFLICT DO NOTHING`` skips a job whose key is held and returns no row for
it). The holders of the skipped keys are then read (``unique_holders``), in a statement of
its own so that it sees a holder another transaction committed while the insert waited for
it; a job whose holder ended in between is inserted again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

from queuebox.backends.records import JobRecord, NewJob, Row
from queuebox.errors import StorageUnavailable

__all__ = ["InsertPlan", "Step", "Stored", "arun_plan", "insert_plan", "run_plan"]

#: Rounds of "insert, else read the holder". Another round is needed only when a holder
#: ended between the two statements; running out means the key is churning wildly.
UNIQUE_ROUNDS = 20

Step = tuple[str, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Stored:
    """One job of a schedule call: its record, and whether this call stored it (false when
    its unique key was held and ``record`` is the holder's)."""

    record: JobRecord
    stored: bool


InsertPlan = Generator[Step, Sequence[Row], list[Stored]]


def insert_plan(
    jobs: Sequence[NewJob],
    *,
    batch: int,
    job_params: Callable[[Sequence[NewJob]], dict[str, Any]],
    records: Callable[[Sequence[Row]], list[JobRecord]],
) -> InsertPlan:
    """The steps that store ``jobs`` in input order, ``batch`` jobs per insert statement.

    ``job_params`` gives an insert's parameters for a batch (scalars for a batch of one,
    arrays otherwise: the dialect's ``insert_batch`` decides); ``records`` reads rows.
    """
    results: list[Stored | None] = [None] * len(jobs)
    for start in range(0, len(jobs), batch):
        pending = list(range(start, min(start + batch, len(jobs))))
        taken: dict[tuple[str, str], JobRecord] = {}  # keys this batch stored
        for _ in range(UNIQUE_ROUNDS):
            chunk = [jobs[position] for position in pending]
            keyed = any(job.unique_key is not None for job in chunk)
            rows = yield ("insert_unique_jobs" if keyed else "insert_jobs", job_params(chunk))
            missing = _match_inserted(records(rows), jobs, pending, results, taken)
            if not missing:
                break
            wanted = sorted({(jobs[p].queue, jobs[p].unique_key or "") for p in missing})
            if batch == 1:
                params: dict[str, Any] = {"queue": wanted[0][0], "unique_key": wanted[0][1]}
            else:
                params = {"queues": [q for q, _ in wanted], "unique_keys": [k for _, k in wanted]}
            rows = yield ("unique_holders", params)
            keys = [(row["queue"], row["unique_key"]) for row in rows]
            holders = dict(zip(keys, records(rows), strict=True))
            pending = []
            for position in missing:
                holder = holders.get((jobs[position].queue, jobs[position].unique_key or ""))
                if holder is None:  # it ended after blocking the insert: insert again
                    pending.append(position)
                else:
                    results[position] = Stored(holder, stored=False)
            if not pending:
                break
        else:
            raise StorageUnavailable(
                f"could not store or find the holder of unique keys after {UNIQUE_ROUNDS} "
                "rounds: their jobs keep ending as fast as they are stored"
            )
    return [result for result in results if result is not None]  # every one is set


def _match_inserted(
    inserted: Sequence[JobRecord],
    jobs: Sequence[NewJob],
    pending: Sequence[int],
    results: list[Stored | None],
    taken: dict[tuple[str, str], JobRecord],
) -> list[int]:
    """Give each job at ``pending`` the record inserted for it; return the positions of the
    jobs whose key was held, which got none.

    Rows come in id order, which is input order: jobs without a key map one to one onto the
    rows without one. Of the jobs of a batch that share a key, the first stored it and the
    later ones return its record.
    """
    plain: list[JobRecord] = []
    keyed: dict[tuple[str, str], JobRecord] = {}
    for record in inserted:
        if record.unique_key is None:
            plain.append(record)
        else:
            keyed[record.queue, record.unique_key] = record
    fresh = iter(plain)
    missing: list[int] = []
    for position in pending:
        job = jobs[position]
        if job.unique_key is None:
            results[position] = Stored(next(fresh), stored=True)
        elif (held := keyed.pop((job.queue, job.unique_key), None)) is not None:
            results[position] = Stored(held, stored=True)
            taken[job.queue, job.unique_key] = held
        elif (held := taken.get((job.queue, job.unique_key))) is not None:
            results[position] = Stored(held, stored=False)
        else:
            missing.append(position)
    return missing


def run_plan(plan: InsertPlan, execute: Callable[[str, dict[str, Any]], Sequence[Row]]) -> Any:
    """Drive ``plan`` with a blocking ``execute(name, params) -> rows``; return its result."""
    try:
        step = next(plan)
        while True:
            step = plan.send(execute(*step))
    except StopIteration as done:
        return done.value


async def arun_plan(
    plan: InsertPlan, execute: Callable[[str, dict[str, Any]], Awaitable[Sequence[Row]]]
) -> Any:
    """Drive ``plan`` with an awaitable ``execute(name, params) -> rows``."""
    try:
        step = next(plan)
        while True:
            step = plan.send(await execute(*step))
    except StopIteration as done:
        return done.value
