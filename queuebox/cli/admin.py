"""``queuebox clear``, ``retry``, ``delete`` and ``migrate``: changes to the store by hand.

Each acts on the store the configuration names, the app's own included (``open_store``), and
says which store that was before it changes anything.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

from queuebox import config
from queuebox.backends.base import JobState
from queuebox.cli.common import cli, count_jobs, echo_store, guard, open_store, parse_queue_options

__all__ = ["clear", "delete", "migrate", "retry"]


@cli.command()
@click.option("-q", "--queue", "queues", multiple=True, help="Only these queues.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def clear(queues: tuple[str, ...], yes: bool) -> None:
    """Delete every job (or those of some queues), whatever its state."""
    selected = parse_queue_options(queues)
    adapter = open_store()
    echo_store()
    where = "every queue" if selected is None else "queue(s) " + ", ".join(selected)
    if not yes and _stdin_is_terminal():
        total = count_jobs(adapter, selected, tuple(JobState))
        click.confirm(f"Delete {total} job(s) in {where} of {config.describe_store()}?", abort=True)
    removed = guard(lambda: adapter.clear(selected))
    click.echo(f"deleted {removed} job(s) in {where}")


def _stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


@cli.command()
@click.argument("job_ids", nargs=-1, required=True)
def retry(job_ids: tuple[str, ...]) -> None:
    """Run failed, cancelled or scheduled jobs again now (attempts start over)."""
    adapter = open_store()
    echo_store()
    _apply_each(job_ids, adapter.retry, "queued to run now", "not found, or running")


@cli.command()
@click.argument("job_ids", nargs=-1, required=True)
def delete(job_ids: tuple[str, ...]) -> None:
    """Delete jobs by id."""
    adapter = open_store()
    echo_store()
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
    adapter = open_store()
    guard(adapter.migrate)
    click.echo(f"schema ready in {config.describe_store()}")
