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

Two options make a request's enqueue cheaper where the dialect offers them: ``lone`` sends a
batch of one job to the one-row statements ``insert_job`` / ``insert_unique_job`` (scalar
parameters, nothing to unnest), and ``fresh`` builds an inserted job's record from the job
itself and the few columns the store decided (``FRESH_COLUMNS``), so that the insert need not
send every column back. ``one_write`` says when a plan writes once, so that it needs no
transaction of its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Any

from queuebox.backends.records import JobRecord, NewJob, Row, batch_bounds, stored_record
from queuebox.errors import StorageUnavailable

__all__ = [
    "FRESH_COLUMNS",
    "InsertPlan",
    "Step",
    "Stored",
    "arun_plan",
    "fresh_record",
    "insert_plan",
    "one_write",
    "run_plan",
]

#: Rounds of "insert, else read the holder". Another round is needed only when a holder
#: ended between the two statements; running out means the key is churning wildly.
UNIQUE_ROUNDS = 20
#: What a ``fresh`` insert statement returns for each row it stored: what the store decided
#: (the id, and run_at and created_at on its clock), and the key that maps the row back to
#: its job. Everything else of the record is the job as it was sent.
FRESH_COLUMNS = ("id", "run_at", "created_at", "queue", "unique_key")

Step = tuple[str, dict[str, Any]]
_by_id = itemgetter("id")


@dataclass(frozen=True, slots=True)
class Stored:
    """One job of a schedule call: its record, and whether this call stored it (false when
    its unique key was held and ``record`` is the holder's)."""

    record: JobRecord
    stored: bool


InsertPlan = Generator[Step, Sequence[Row], list[Stored]]


def one_write(jobs: Sequence[NewJob], batch: int) -> bool:
    """Whether storing ``jobs`` writes with one statement at most, which is atomic on its
    own: no transaction (and its BEGIN and COMMIT round trips) is needed around it.

    That holds for one insert statement without unique keys, and for a single job with
    one: its plan may insert again after reading a holder that ended, but only when the
    earlier insert stored nothing.
    """
    if len(jobs) == 1:
        return True
    return len(batch_bounds(jobs, batch)) == 1 and all(job.unique_key is None for job in jobs)


def fresh_record(
    job: NewJob, row: Row, moment: Callable[[Any], datetime], *, keeps_limits: bool
) -> JobRecord:
    """The record of a job an insert just stored, from the job and the row of
    ``FRESH_COLUMNS`` the insert returned: what ``get`` reads back for it until a worker
    touches it. ``keeps_limits``: the store keeps ``limit_key`` (it declares
    ``FlowControl``); one that does not reads it back as ``None``."""
    run_at, created_at = moment(row["run_at"]), moment(row["created_at"])
    return stored_record(
        job,
        str(row["id"]),
        run_at,
        created_at,
        ready=run_at <= created_at,  # on the store's clock: created_at is the insert's now()
        limit_key=job.limit_key if keeps_limits else None,
    )


def insert_plan(
    jobs: Sequence[NewJob],
    *,
    batch: int,
    job_params: Callable[[Sequence[NewJob]], dict[str, Any]],
    records: Callable[[Sequence[Row]], list[JobRecord]],
    fresh: Callable[[NewJob, Row], JobRecord] | None = None,
    lone: bool = False,
) -> InsertPlan:
    """The steps that store ``jobs`` in input order, ``batch`` jobs per insert statement.

    ``job_params`` gives an insert's parameters for a batch (scalars for a batch of one,
    arrays otherwise: the dialect's ``insert_batch`` decides; with ``lone``, scalars for
    any batch of one); ``records`` reads full rows (the holders, and without ``fresh`` the
    inserted jobs). With ``fresh``, the inserts return ``FRESH_COLUMNS`` in any order and
    ``fresh(job, row)`` builds each record; with ``lone``, a batch of one job goes to
    ``insert_job`` / ``insert_unique_job``.
    """
    results: list[Stored | None] = [None] * len(jobs)
    build: Callable[[NewJob, Any], JobRecord] = fresh if fresh is not None else _as_is
    for start, stop in batch_bounds(jobs, batch):
        pending = list(range(start, stop))
        taken: dict[tuple[str, str], JobRecord] = {}  # keys this batch stored
        for _ in range(UNIQUE_ROUNDS):
            chunk = [jobs[position] for position in pending]
            keyed = any(job.unique_key is not None for job in chunk)
            if lone and len(chunk) == 1:
                name = "insert_unique_job" if keyed else "insert_job"
            else:
                name = "insert_unique_jobs" if keyed else "insert_jobs"
            rows = yield (name, job_params(chunk))
            inserted = _inserted(rows, records, fresh is not None)
            missing = _match_inserted(inserted, build, jobs, pending, results=results, taken=taken)
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


def _as_is(job: NewJob, record: JobRecord) -> JobRecord:
    return record


def _inserted(
    rows: Sequence[Row], records: Callable[[Sequence[Row]], list[JobRecord]], fresh: bool
) -> list[tuple[str, str | None, Any]]:
    """``(queue, unique_key, item)`` of each inserted row in id order (input order): the
    row itself for a ``fresh`` insert, else its record."""
    if not fresh:
        return [(record.queue, record.unique_key, record) for record in records(rows)]
    ordered = sorted(rows, key=_by_id) if len(rows) > 1 else rows
    return [(row["queue"], row["unique_key"], row) for row in ordered]


def _match_inserted(
    inserted: Sequence[tuple[str, str | None, Any]],
    build: Callable[[NewJob, Any], JobRecord],
    jobs: Sequence[NewJob],
    pending: Sequence[int],
    *,
    results: list[Stored | None],
    taken: dict[tuple[str, str], JobRecord],
) -> list[int]:
    """Give each job at ``pending`` the record of what was inserted for it (``build(job,
    item)`` of its ``(queue, unique_key, item)``); return the positions of the jobs whose
    key was held, which got none.

    Items come in id order, which is input order: jobs without a key map one to one onto
    the items without one. Of the jobs of a batch that share a key, the first stored it and
    the later ones return its record.
    """
    plain: list[Any] = []
    keyed: dict[tuple[str, str], Any] = {}
    for queue, unique_key, item in inserted:
        if unique_key is None:
            plain.append(item)
        else:
            keyed[queue, unique_key] = item
    fresh = iter(plain)
    missing: list[int] = []
    for position in pending:
        job = jobs[position]
        if job.unique_key is None:
            results[position] = Stored(build(job, next(fresh)), stored=True)
        elif (item := keyed.pop((job.queue, job.unique_key), None)) is not None:
            held = build(job, item)
            results[position] = Stored(held, stored=True)
            taken[job.queue, job.unique_key] = held
        elif (holder := taken.get((job.queue, job.unique_key))) is not None:
            results[position] = Stored(holder, stored=False)
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
