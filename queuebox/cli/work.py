"""``queuebox work`` (attached workers, and the worker side of ``start``) and ``workoff``."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from queuebox import config
from queuebox.backends.base import JobState
from queuebox.cli.common import (
    cli,
    count_jobs,
    guard,
    import_app,
    setup_logging,
    worker_groups,
    worker_options,
)
from queuebox.runner.managed import Limits, ManagedWorker, StatusReporter
from queuebox.runner.pool import WorkerPool, settings_from_json
from queuebox.runner.proctitle import set_process_title
from queuebox.runner.rundir import RunDir
from queuebox.runner.settings import WorkerSettings
from queuebox.runner.signals import StopFlag, handle_stop_signals
from queuebox.runner.worker import Worker, WorkSummary

__all__ = ["work", "workoff"]


@cli.command()
@worker_options
@click.option("-n", "spec", metavar="SPEC", help="Worker processes: 4, or default:2,email:1.")
@click.option("--child-settings", hidden=True)
@click.option("--child-label", hidden=True)
@click.option("--parent-pid", type=int, hidden=True)
@click.option("--child-run-dir", type=click.Path(path_type=Path), hidden=True)
@click.option("--max-jobs", type=click.IntRange(1), hidden=True)
@click.option("--max-memory", type=click.FloatRange(min=1), hidden=True)
def work(
    *,
    spec: str | None,
    child_settings: str | None,
    child_label: str | None,
    parent_pid: int | None,
    child_run_dir: Path | None,
    max_jobs: int | None,
    max_memory: float | None,
    **overrides: Any,
) -> None:
    """Run workers in the foreground until Ctrl-C (twice: stop at once)."""
    import_app()
    if child_settings is not None:
        _run_child(
            settings_from_json(child_settings),
            child_label or "worker",
            parent_pid,
            run_dir=None if child_run_dir is None else RunDir(child_run_dir),
            limits=Limits(max_jobs=max_jobs, max_memory_mb=max_memory),
        )
        return
    groups = worker_groups(spec, overrides)
    stop = StopFlag()
    if sum(group.count for group in groups) == 1:
        with handle_stop_signals(stop):
            guard(lambda: Worker(config.get_adapter(), groups[0], stop=stop).run())
        return
    settings = config.get_settings()
    pool = WorkerPool(
        groups,
        url=settings.url if "url" in settings.sources else None,
        app=settings.app,
        logger=logging.getLogger("queuebox.pool"),
        global_args=["--verbose"] if logging.getLogger("queuebox").level == logging.DEBUG else [],
    )
    with handle_stop_signals(stop):
        pool.start()
        code = pool.wait(stop)
    sys.exit(code)


def _run_child(
    settings: WorkerSettings,
    label: str,
    parent_pid: int | None,
    *,
    run_dir: RunDir | None,
    limits: Limits,
) -> None:
    """One worker of a pool (``work -n``) or of a supervisor (``start``, with a run folder)."""
    setup_logging(logging.getLogger("queuebox").level, label=label, full_dates=bool(run_dir))
    set_process_title(label, f"(queues: {settings.queue_label})")
    stop = StopFlag()
    if parent_pid is not None:
        _stop_when_orphaned(parent_pid, stop)
    reporter = None
    if run_dir is not None:
        reporter = StatusReporter(
            run_dir.worker_file(os.getpid()),
            label=label,
            queues=settings.queues,
            supervisor=parent_pid,
        )
    with handle_stop_signals(stop):
        worker = ManagedWorker(
            guard(config.get_adapter), settings, limits=limits, reporter=reporter, stop=stop
        )
        guard(worker.run)


def _stop_when_orphaned(parent_pid: int, stop: StopFlag) -> None:
    def watch() -> None:
        while not stop.wait(1.0):
            if os.getppid() != parent_pid:
                logging.getLogger("queuebox").warning("the parent process is gone; stopping")
                stop.request()

    threading.Thread(target=watch, name="queuebox-parent-watch", daemon=True).start()


@cli.command()
@worker_options
def workoff(**overrides: Any) -> None:
    """Run every job that is due now, print a summary, and exit 1 if any job raised."""
    import_app()
    # Every due job, whatever the configured groups cover, unless -q narrows it.
    group = worker_groups(None, {"queues": ("*",), **_given(overrides)})[0]
    adapter = guard(config.get_adapter)
    interactive = sys.stderr.isatty()
    if interactive:
        logging.getLogger("queuebox").setLevel(logging.WARNING)
    due = count_jobs(adapter, group.queues, (JobState.READY,))
    stop = StopFlag()
    worker = Worker(adapter, group, stop=stop)
    with handle_stop_signals(stop), _progress(interactive, due) as show:
        summary = guard(lambda: worker.work_off(progress=show))
    scheduled = count_jobs(adapter, group.queues, (JobState.SCHEDULED,))
    click.echo(_summary_line(summary, scheduled))
    if summary.failed_ids:
        click.echo(
            "failed job ids: "
            + ", ".join(summary.failed_ids)
            + " (see queuebox jobs --state failed)"
        )
    sys.exit(1 if summary.raised else 0)


def _given(overrides: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in overrides.items() if value}


@contextmanager
def _progress(interactive: bool, total: int) -> Iterator[Callable[[WorkSummary], None]]:
    def show(summary: WorkSummary) -> None:
        done = summary.succeeded + summary.retried + summary.failed
        click.echo(
            f"\r  {done}/{max(total, done)} jobs: {summary.succeeded} succeeded, "
            f"{summary.retried} retried, {summary.failed} failed",
            nl=False,
            err=True,
        )

    if not interactive:
        yield lambda summary: None
        return
    try:
        yield show
    finally:
        click.echo("", err=True)


def _summary_line(summary: WorkSummary, scheduled: int) -> str:
    return (
        f"workoff: {summary.succeeded} succeeded, {summary.retried} retried, "
        f"{summary.failed} failed, {scheduled} still scheduled"
    )
