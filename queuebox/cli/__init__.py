"""The ``queuebox`` command: a thin click layer over configuration, workers and stores.

Commands live beside this module by theme: ``work.py`` (``work``, ``workoff``),
``processes.py`` (``start``, ``stop``, ``restart``), and the store's administration here.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from queuebox import config
from queuebox.backends.base import JobState
from queuebox.cli import processes, work
from queuebox.cli.common import (
    cli,
    count_jobs,
    guard,
    import_app,
    main,
    parse_queue_options,
)
from queuebox.errors import redact_url
from queuebox.runner.recurring import RecurringStatus, describe

__all__ = ["cli", "main", "processes", "work"]


# -- administration -------------------------------------------------------------------------


@cli.command()
@click.option("-q", "--queue", "queues", multiple=True, help="Only these queues.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def clear(queues: tuple[str, ...], yes: bool) -> None:
    """Delete every job (or those of some queues), whatever its state."""
    selected = parse_queue_options(queues)
    adapter = guard(config.get_adapter)
    where = "every queue" if selected is None else "queue(s) " + ", ".join(selected)
    if not yes and _stdin_is_terminal():
        total = count_jobs(adapter, selected, tuple(JobState))
        click.confirm(
            f"Delete {total} job(s) in {where} of {redact_url(config.get_settings().url)}?",
            abort=True,
        )
    removed = guard(lambda: adapter.clear(selected))
    click.echo(f"deleted {removed} job(s) in {where}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@processes.run_dir_option
def status(as_json: bool, run_dir: Path | None) -> None:
    """Show how many jobs each queue holds in each state, and the workers that 'start'
    runs from here: each one's pid and the job it is running now."""
    import_app(warn_if_none=False)  # so that recurring jobs are known
    adapter = guard(config.get_adapter)
    counts = guard(adapter.counts)
    url = redact_url(config.get_settings().url)
    report = processes.process_section(run_dir)
    recurring = guard(lambda: describe(adapter))
    if as_json:
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
        click.echo(
            json.dumps(
                {"store": url, "queues": rows, "recurring": schedules, "processes": report},
                indent=2,
            )
        )
        return
    click.echo(f"store: {url}")
    if not counts:
        click.echo("no jobs")
    else:
        _echo_counts(counts)
    _echo_recurring(recurring)
    processes.echo_processes(report)


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


def _echo_counts(counts: Any) -> None:
    header = ["queue", *(state.value for state in JobState), "total"]
    rows_text = [[c.queue, *(str(v) for v in _states(c).values()), str(c.total)] for c in counts]
    widths = [max(len(row[i]) for row in [header, *rows_text]) for i in range(len(header))]
    for row in [header, *rows_text]:
        click.echo(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )


def _stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def _states(counts: Any) -> dict[str, int]:
    return {state.value: getattr(counts, state.value) for state in JobState}


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
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def jobs(queues: tuple[str, ...], states: tuple[str, ...], limit: int, as_json: bool) -> None:
    """List jobs, best first within each queue."""
    adapter = guard(config.get_adapter)
    records = guard(
        lambda: adapter.list_jobs(
            queues=parse_queue_options(queues),
            states=[JobState(state) for state in states] or None,
            limit=limit,
        )
    )
    for record in records:
        if as_json:
            fields = {
                name: _jsonable(getattr(record, name))
                for name in record.__class__.__dataclass_fields__
            }
            click.echo(json.dumps(fields))
            continue
        error = (record.last_error or "").split("\n", 1)[0]
        click.echo(
            f"{record.id:>8}  {record.state.value:<9}  {record.queue:<12} p{record.priority:<3} "
            f"{record.name}  attempts={record.attempts}  run_at={record.run_at:%Y-%m-%d %H:%M:%S}"
            + (f"  error: {error}" if error else "")
        )


def _jsonable(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, JobState):
        return value.value
    return value


@cli.command()
@click.argument("job_ids", nargs=-1, required=True)
def retry(job_ids: tuple[str, ...]) -> None:
    """Run failed or scheduled jobs again now (attempts start over)."""
    adapter = guard(config.get_adapter)
    _apply_each(job_ids, adapter.retry, "queued to run now", "not found, or running")


@cli.command()
@click.argument("job_ids", nargs=-1, required=True)
def delete(job_ids: tuple[str, ...]) -> None:
    """Delete jobs by id."""
    adapter = guard(config.get_adapter)
    _apply_each(job_ids, adapter.delete, "deleted", "not found")


def _apply_each(
    job_ids: tuple[str, ...], action: Callable[[str], bool], done: str, missing: str
) -> None:
    misses = 0
    for job_id in job_ids:
        if guard(lambda job_id=job_id: action(job_id)):  # type: ignore[misc]
            click.echo(f"{job_id}: {done}")
        else:
            misses += 1
            click.echo(f"{job_id}: {missing}", err=True)
    if misses:
        sys.exit(1)


@cli.command()
def migrate() -> None:
    """Create or upgrade the store's schema (safe to run again)."""
    adapter = guard(config.get_adapter)
    guard(adapter.migrate)
    click.echo(f"schema ready in {redact_url(config.get_settings().url)}")
