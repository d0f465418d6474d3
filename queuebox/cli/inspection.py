"""``queuebox status``, ``jobs`` and ``show``: what the store holds, read-only.

A job whose state is ``running`` while its lock lapsed (its worker died or stalled: nobody
renews the lease) is shown as such, since the next claim takes it again.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from queuebox import config
from queuebox.backends.base import (
    Adapter,
    FlowControl,
    JobRecord,
    JobState,
    QueueCounts,
    WorkerInfo,
    WorkerRegistry,
)
from queuebox.cli import processes
from queuebox.cli.common import (
    cli,
    echo_store,
    guard,
    json_shown,
    open_store,
    parse_queue_options,
    shown,
)
from queuebox.errors import PayloadError
from queuebox.payload import decode_handler
from queuebox.runner.recurring import RecurringStatus, describe

__all__ = ["describe_state", "jobs", "lapsed_for", "show", "status"]

#: Running jobs ``status`` reads to find lapsed locks; past that it says "at least".
_LAPSED_SCAN_LIMIT = 1000
_ARGS_WIDTH = 60
_ERROR_WIDTH = 80


def lapsed_for(record: JobRecord, now: datetime) -> float | None:
    """Seconds since a running job's lock lapsed, or ``None`` when it is held (or not
    running)."""
    expires = record.lock_expires_at
    if record.state is not JobState.RUNNING or expires is None or expires > now:
        return None
    return (now - expires).total_seconds()


def describe_state(record: JobRecord, now: datetime) -> str:
    lapsed = lapsed_for(record, now)
    if lapsed is None:
        return record.state.value
    return f"running, lock lapsed {_seconds(lapsed)} ago (claimable again)"


# -- status -----------------------------------------------------------------------------------


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@processes.run_dir_option
def status(as_json: bool, run_dir: Path | None) -> None:
    """Show how many jobs each queue holds in each state, paused queues, running jobs whose
    lock lapsed, the recurring jobs, the workers of every machine (when the store keeps a
    worker registry), and the workers that 'start' runs from here: each one's pid and the
    job it is running now."""
    adapter = open_store()  # the app's recurring jobs are known, and its store is used
    counts = guard(adapter.counts)
    paused = _paused(adapter)
    lapsed, more = _lapsed_locks(adapter, counts)
    registered = guard(adapter.workers) if isinstance(adapter, WorkerRegistry) else None
    report = processes.process_section(run_dir)
    recurring = guard(lambda: describe(adapter))
    if as_json:
        _status_json(
            counts,
            paused=paused,
            lapsed=lapsed,
            more=more,
            recurring=recurring,
            registered=registered,
            report=report,
        )
        return
    echo_store()
    if not counts:
        click.echo("no jobs")
    else:
        _echo_counts(counts)
    if paused:
        click.echo(
            f"paused: {', '.join(sorted(paused))} (no worker claims from them; "
            "'queuebox resume QUEUE' lets them run)"
        )
    if lapsed:
        ids = ", ".join(row["id"] for row in lapsed[:20]) + (", ..." if len(lapsed) > 20 else "")
        click.echo(
            f"lapsed locks: {'at least ' if more else ''}{len(lapsed)} running job(s) whose "
            f"worker is gone or stalled (nobody renews the lock); the next claim takes them "
            f"again: {ids}"
        )
    _echo_recurring(recurring)
    if registered is not None:
        _echo_registry(registered, guard(adapter.now))
    processes.echo_processes(report)


def _paused(adapter: Adapter) -> list[str] | None:
    """The paused queues, or ``None`` for a store that cannot pause."""
    if not isinstance(adapter, FlowControl):
        return None
    return sorted(guard(adapter.paused_queues))


def _echo_registry(workers: list[WorkerInfo], now: datetime) -> None:
    alive = [w for w in workers if not w.lost]
    hosts = {w.host for w in alive}
    click.echo(
        f"workers in the store: {len(alive)} alive on {len(hosts)} host(s)"
        + (f", {len(workers) - len(alive)} lost" if len(alive) < len(workers) else "")
    )
    for worker in workers:
        queues = "*" if worker.queues is None else ",".join(worker.queues)
        state = (
            "lost (no beat since " + _seconds(_age(worker.beat_at, now)) + ")"
            if worker.lost
            else (f"running {len(worker.jobs)} of {worker.concurrency}")
        )
        click.echo(
            shown(f"  {worker.host} pid {worker.pid} ({worker.id}) queues {queues}: {state}")
        )
        for job in worker.jobs[:5]:
            running_for = _seconds(_age(job.started_at, now))
            click.echo(shown(f"    {job.id} {job.name} ({job.queue}) for {running_for}"))
        if len(worker.jobs) > 5:
            click.echo(f"    ... and {len(worker.jobs) - 5} more")


def _age(moment: datetime | None, now: datetime) -> float:
    return 0.0 if moment is None else max(0.0, (now - moment).total_seconds())


def _worker_json(worker: WorkerInfo) -> dict[str, Any]:
    return {
        "id": worker.id,
        "host": worker.host,
        "pid": worker.pid,
        "queues": None if worker.queues is None else list(worker.queues),
        "concurrency": worker.concurrency,
        "version": worker.version,
        "started_at": worker.started_at.isoformat(),
        "beat_at": worker.beat_at.isoformat() if worker.beat_at else None,
        "lost": worker.lost,
        "jobs": [
            {"id": j.id, "name": j.name, "queue": j.queue, "started_at": j.started_at.isoformat()}
            for j in worker.jobs
        ],
    }


def _lapsed_locks(adapter: Adapter, counts: list[QueueCounts]) -> tuple[list[dict[str, Any]], bool]:
    if not any(c.running for c in counts):
        return [], False
    now = guard(adapter.now)
    running = guard(lambda: adapter.list_jobs(states=[JobState.RUNNING], limit=_LAPSED_SCAN_LIMIT))
    rows = []
    for record in running:
        lapsed = lapsed_for(record, now)
        if lapsed is not None:
            rows.append(
                {
                    "id": record.id,
                    "queue": record.queue,
                    "name": record.name,
                    "locked_by": record.locked_by,
                    "lapsed_seconds": round(lapsed, 1),
                }
            )
    return rows, len(running) >= _LAPSED_SCAN_LIMIT


def _status_json(
    counts: list[QueueCounts],
    *,
    paused: list[str] | None,
    lapsed: list[dict[str, Any]],
    more: bool,
    recurring: list[RecurringStatus],
    registered: list[WorkerInfo] | None,
    report: dict[str, Any] | None,
) -> None:
    rows = [{"queue": c.queue, **_states(c), "total": c.total} for c in counts]
    schedules = [
        {
            "name": r.name,
            "queue": r.queue,
            "schedule": r.schedule,
            "last_tick": r.last_tick.isoformat() if r.last_tick else None,
            "next_run": r.next_run.isoformat(),
        }
        for r in recurring
    ]
    document = {
        "store": config.describe_store(),
        "queues": rows,
        "paused": paused,
        "lapsed_locks": lapsed,
        "lapsed_locks_truncated": more,
        "recurring": schedules,
        "workers": None if registered is None else [_worker_json(w) for w in registered],
        "processes": report,
    }
    click.echo(json.dumps(document, indent=2))


def _echo_recurring(recurring: list[RecurringStatus]) -> None:
    if not recurring:
        return
    click.echo("recurring jobs:")
    for row in recurring:
        last = f"{row.last_tick:%Y-%m-%d %H:%M:%S} UTC" if row.last_tick else "never"
        click.echo(
            f"  {row.name} ({row.queue}, {row.schedule}): last tick {last}, "
            f"next run {row.next_run:%Y-%m-%d %H:%M:%S} UTC"
        )


def _echo_counts(counts: list[QueueCounts]) -> None:
    header = ["queue", *(state.value for state in JobState), "total"]
    rows = [[c.queue, *(str(v) for v in _states(c).values()), str(c.total)] for c in counts]
    _echo_table(header, rows, right_aligned=range(1, len(header)))


def _states(counts: QueueCounts) -> dict[str, int]:
    return {state.value: getattr(counts, state.value) for state in JobState}


# -- jobs -------------------------------------------------------------------------------------


@cli.command()
@click.option("-q", "--queue", "queues", multiple=True, help="Only these queues.")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice([state.value for state in JobState]),
    help="Only jobs in these states.",
)
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per job, per line.")
def jobs(queues: tuple[str, ...], states: tuple[str, ...], limit: int, as_json: bool) -> None:
    """List jobs, best first within each queue: state, attempts, next run, arguments and the
    first line of the last error (`queuebox show ID` shows all of it)."""
    selected = parse_queue_options(queues)
    adapter = open_store()
    records = guard(
        lambda: adapter.list_jobs(
            queues=selected, states=[JobState(state) for state in states] or None, limit=limit
        )
    )
    now = guard(adapter.now)
    if as_json:
        echo_store(err=True)
        for record in records:
            click.echo(json.dumps(_record_json(record, now)))
        return
    echo_store()
    if not records:
        filters = []
        if selected is not None:
            filters.append("queue " + ", ".join(selected))
        if states:
            filters.append("state " + ", ".join(states))
        click.echo("no jobs" + (f" ({'; '.join(filters)})" if filters else ""))
        return
    header = ["id", "state", "queue", "priority", "attempts", "run_at (UTC)", "job", "last error"]
    rows = [
        [
            record.id,
            describe_state(record, now),
            record.queue,
            str(record.priority),
            str(record.attempts),
            f"{record.run_at:%Y-%m-%d %H:%M:%S}",
            _call_text(record),
            _cut((record.last_error or "").split("\n", 1)[0], _ERROR_WIDTH),
        ]
        for record in records
    ]
    _echo_table(header, rows, right_aligned=(3, 4))
    if len(records) == limit:
        click.echo(f"(the first {limit}; raise --limit to see more)")


def _call_text(record: JobRecord) -> str:
    """``SendEmail(42, to="a@b")``: the job and its arguments, cut to fit a line."""
    try:
        call = decode_handler(record.handler)
    except PayloadError:
        return _cut(f"{record.name} <unreadable payload>", _ARGS_WIDTH)
    parts = [json.dumps(value, ensure_ascii=False) for value in call.args]
    parts += [
        f"{key}={json.dumps(value, ensure_ascii=False)}" for key, value in call.kwargs.items()
    ]
    return _cut(f"{call.name}({', '.join(parts)})", _ARGS_WIDTH)


def _record_json(record: JobRecord, now: datetime) -> dict[str, Any]:
    fields = {
        name: _jsonable(getattr(record, name)) for name in record.__class__.__dataclass_fields__
    }
    lapsed = lapsed_for(record, now)
    fields["lock_lapsed_seconds"] = None if lapsed is None else round(lapsed, 1)
    return fields


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, JobState):
        return value.value
    return value


# -- show -------------------------------------------------------------------------------------


@cli.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def show(job_id: str, as_json: bool) -> None:
    """Show one job: its arguments, state, attempts, every time, and the whole last error."""
    adapter = open_store()
    record = guard(lambda: adapter.get(job_id))
    if record is None:
        echo_store(err=True)
        raise click.ClickException(f"no job {job_id!r} in this store")
    now = guard(adapter.now)
    if as_json:
        echo_store(err=True)
        document = _record_json(record, now)
        try:
            call = decode_handler(record.handler)
            document["args"], document["kwargs"] = call.args, call.kwargs
        except PayloadError as exc:
            document["payload_error"] = str(exc)
        # Readable non-ASCII text, but nothing a terminal would act on (see json_shown).
        click.echo(json_shown(json.dumps(document, indent=2, ensure_ascii=False)))
        return
    echo_store()
    lines = [
        ("job", f"{record.id}: {record.name}"),
        ("queue", record.queue),
        ("priority", str(record.priority)),
        ("state", describe_state(record, now)),
        ("attempts", str(record.attempts)),
    ]
    try:
        call = decode_handler(record.handler)
        lines.append(("arguments", json.dumps(call.args, ensure_ascii=False)))
        lines.append(("keywords", json.dumps(call.kwargs, ensure_ascii=False)))
    except PayloadError as exc:
        lines.append(("payload", f"{exc}: {_cut(record.handler, 2000)}"))
    for name in (
        "run_at",
        "created_at",
        "updated_at",
        "locked_at",
        "lock_expires_at",
        "failed_at",
        "completed_at",
        "cancelled_at",
    ):
        moment = getattr(record, name)
        if moment is not None:
            lines.append((name, f"{moment:%Y-%m-%d %H:%M:%S.%f} UTC"))
    if record.locked_by:
        lines.append(("locked_by", record.locked_by))
    if record.unique_key:
        lines.append(("unique_key", record.unique_key))
    if record.unreadable:
        lines.append(("unreadable", record.unreadable))
    width = max(len(label) for label, _ in lines) + 1
    for label, value in lines:
        click.echo(shown(f"{label + ':':<{width}} {value}"))
    if record.last_error:
        click.echo("last error:")
        for line in record.last_error.splitlines():
            click.echo(shown(f"  {line}"))


# -- formatting -------------------------------------------------------------------------------


def _echo_table(header: list[str], rows: list[list[str]], *, right_aligned: Any = ()) -> None:
    right = set(right_aligned)
    # Escaped before measuring, so that the columns line up with what the terminal shows.
    table = [[shown(cell) for cell in row] for row in (header, *rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        cells = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        click.echo("  ".join(cells).rstrip())


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _seconds(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}min"
    return f"{seconds / 3600:.1f}h"
