"""``queuebox cancel``, ``pause`` and ``resume``: stop jobs, hold queues back."""

from __future__ import annotations

import sys

import click

from queuebox.admin import cancel_outcome, flow_control
from queuebox.backends.base import CancelOutcome
from queuebox.cli.common import cli, echo_store, guard, open_store
from queuebox.validation import check_queue_name

__all__ = ["cancel", "pause", "resume"]

_SAID = {
    CancelOutcome.CANCELLED: "cancelled (it was waiting: it will not run)",
    CancelOutcome.REQUESTED: "cancelling: it is running, and its worker stops it within a second",
    CancelOutcome.FINISHED: "had already finished (completed, failed or cancelled): unchanged",
    CancelOutcome.NOT_FOUND: "not found",
}


@cli.command()
@click.argument("job_ids", nargs=-1, required=True)
def cancel(job_ids: tuple[str, ...]) -> None:
    """Cancel jobs: a waiting one never runs, a running one is stopped by its worker. Both
    are kept as cancelled ('queuebox retry ID' runs one again). Exits 1 if a job had
    finished or was not found."""
    adapter = open_store()
    echo_store()
    misses = 0
    for job_id in job_ids:
        outcome = guard(lambda job_id=job_id: cancel_outcome(job_id, adapter=adapter))  # type: ignore[misc]
        ok = outcome in (CancelOutcome.CANCELLED, CancelOutcome.REQUESTED)
        misses += not ok
        click.echo(f"{job_id}: {_SAID[outcome]}", err=not ok)
    if misses:
        sys.exit(1)


@cli.command()
@click.argument("queues", nargs=-1, required=True)
def pause(queues: tuple[str, ...]) -> None:
    """Stop every worker, on every machine, from claiming these queues' jobs until
    'queuebox resume'. Jobs are still scheduled; runs in flight finish."""
    adapter = open_store()
    store = guard(lambda: flow_control(adapter))
    echo_store()
    names = [guard(lambda queue=queue: check_queue_name(queue)) for queue in queues]  # type: ignore[misc]
    # A queue may be paused before its first job comes, but a typo ("emial") would pause
    # nothing anyone meant, silently: say when the store holds no job of it.
    holding = {counts.queue for counts in guard(adapter.counts)}
    for name in names:
        changed = guard(lambda name=name: store.pause(name))  # type: ignore[misc]
        click.echo(f"{name}: {'paused' if changed else 'was paused already'}")
        if name not in holding:
            click.echo(
                f"note: the store holds no job of queue {name!r} now (check the name); it "
                "stays paused, so its jobs wait when they come",
                err=True,
            )


@cli.command()
@click.argument("queues", nargs=-1, required=True)
def resume(queues: tuple[str, ...]) -> None:
    """Let workers claim these queues' jobs again."""
    store = guard(lambda: flow_control(open_store()))
    echo_store()
    for queue in queues:
        name = guard(lambda queue=queue: check_queue_name(queue))  # type: ignore[misc]
        changed = guard(lambda name=name: store.resume(name))  # type: ignore[misc]
        click.echo(f"{name}: {'resumed' if changed else 'was not paused'}")
