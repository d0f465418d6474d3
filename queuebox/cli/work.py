"""``queuebox work`` (attached workers, and the worker side of ``start``) and ``workoff``.

``workoff`` exits with one of these codes, which CI can trust:

- 0: every due job ran and succeeded;
- 1: a job raised (it will run again, or it failed for good), or a worker process died;
- 3: the store became unreachable and a worker gave up retrying it: due jobs may be left;
- 4: a stop was requested (Ctrl-C, SIGTERM) before every due job ran.

With ``-n``, several processes work the backlog off together and one summary covers them
all, with the same codes (the most serious one wins).
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from queuebox import config
from queuebox.backends.base import Adapter, JobState
from queuebox.cli.common import (
    BoundedFloat,
    child_environment,
    cli,
    echo_store,
    guard,
    import_app,
    setup_logging,
    worker_groups,
    worker_options,
)
from queuebox.errors import StorageUnavailable
from queuebox.json_text import load_json
from queuebox.runner.managed import Limits, ManagedWorker, StatusReporter
from queuebox.runner.pool import WorkerPool, settings_from_json
from queuebox.runner.proctitle import set_process_title
from queuebox.runner.rundir import RunDir, write_json
from queuebox.runner.settings import WorkerSettings
from queuebox.runner.signals import StopFlag, handle_stop_signals
from queuebox.runner.worker import WORK_OFF_GIVE_UP_AFTER, Worker, WorkSummary

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_JOB_RAISED",
    "EXIT_OK",
    "EXIT_STORE_UNAVAILABLE",
    "WorkoffOutcome",
    "work",
    "workoff",
]

EXIT_OK = 0
EXIT_JOB_RAISED = 1
EXIT_STORE_UNAVAILABLE = 3
EXIT_INTERRUPTED = 4
MAX_GIVE_UP_AFTER = 3600.0

_SPEC_HELP = "Worker processes: 4, or default:2,email:1."


def _child_options(function: Any) -> Any:
    """How a parent (``work -n``, ``workoff -n``, the supervisor) starts one worker."""
    options = [
        click.option("--child-settings", hidden=True),
        click.option("--child-label", hidden=True),
        click.option("--parent-pid", type=click.IntRange(1), hidden=True),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@cli.command()
@worker_options
@click.option(
    "-n",
    "spec",
    metavar="SPEC",
    help=_SPEC_HELP + " Replaces the config's [[workers]] groups (each new group takes the "
    "first group's settings).",
)
@_child_options
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
    import_app(required=True)
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
        # Handlers first: a stop that comes while the store is opened is a clean stop too,
        # and the "store: ..." line says the worker is ready for one.
        with handle_stop_signals(stop):
            _say_working(groups)
            adapter = guard(config.get_adapter)
            tune_collector()
            guard(lambda: Worker(adapter, groups[0], stop=stop).run())
        return
    _say_working(groups)
    pool = WorkerPool(
        groups,
        logger=logging.getLogger("queuebox.pool"),
        env=child_environment(),
        global_args=_global_args(),
    )
    with handle_stop_signals(stop):
        pool.start()
        code = pool.wait(stop)
    sys.exit(code)


def _say_working(groups: Sequence[WorkerSettings]) -> None:
    workers = ", ".join(f"{group.queue_label} x{group.count}" for group in groups)
    click.echo(f"store: {config.describe_store()}; workers: {workers}", err=True)


def _global_args() -> list[str]:
    return ["--verbose"] if logging.getLogger("queuebox").level == logging.DEBUG else []


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
        tune_collector()
        guard(worker.run)


#: The collector's young-generation threshold in a worker process (Python's default: 700).
YOUNG_GENERATION = 7000


def tune_collector() -> None:
    """Garbage collection for a worker process, which queuebox owns: what the process holds
    for its whole run (modules, the application, the store's caches) is set apart from the
    collector's generations (``gc.freeze``), and the young generation is ten times the
    default, so that the short-lived objects of a batch (rows, records, tuples) mostly die
    by reference count before a collection walks them. Cycles that jobs leave are still
    collected, after 7,000 new container objects instead of 700. Measured: about 5,000
    fewer instructions per no-op job at batch 100 on SQLite (docs/benchmarks.md, December 8).
    """
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION, middle, old)


def _stop_when_orphaned(parent_pid: int, stop: StopFlag) -> None:
    def watch() -> None:
        while not stop.wait(1.0):
            if os.getppid() != parent_pid:
                logging.getLogger("queuebox").warning("the parent process is gone; stopping")
                stop.request()

    threading.Thread(target=watch, name="queuebox-parent-watch", daemon=True).start()


# -- workoff ----------------------------------------------------------------------------------


@dataclass
class WorkoffOutcome:
    """What one or several ``workoff`` processes did, and why they stopped."""

    summary: WorkSummary = field(default_factory=WorkSummary)
    #: Why a worker gave up on the store (one line per worker that did).
    gave_up: list[str] = field(default_factory=list)
    interrupted: bool = False
    #: Worker processes that ended without a summary (killed, crashed).
    lost_workers: list[str] = field(default_factory=list)

    def add(self, other: WorkoffOutcome) -> None:
        self.summary.add(other.summary)
        self.gave_up += other.gave_up
        self.interrupted = self.interrupted or other.interrupted
        self.lost_workers += other.lost_workers

    @property
    def exit_code(self) -> int:
        if self.gave_up:
            return EXIT_STORE_UNAVAILABLE
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.summary.raised or self.lost_workers:
            return EXIT_JOB_RAISED
        return EXIT_OK

    def to_json(self) -> dict[str, Any]:
        summary = {
            name: sorted(value) if isinstance(value, set) else value
            for name, value in dataclasses.asdict(self.summary).items()
        }
        return {"summary": summary, "gave_up": self.gave_up, "interrupted": self.interrupted}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkoffOutcome:
        blank = WorkSummary()
        summary: dict[str, Any] = {
            name: set(value) if isinstance(getattr(blank, name), set) else value
            for name, value in data["summary"].items()
        }
        return cls(
            summary=WorkSummary(**summary),
            gave_up=list(data["gave_up"]),
            interrupted=bool(data["interrupted"]),
        )


@cli.command()
@worker_options
@click.option(
    "-n",
    "spec",
    metavar="SPEC",
    help=_SPEC_HELP + " They work the backlog off together; one summary covers them all.",
)
@click.option(
    "--give-up-after",
    type=BoundedFloat(min=0, max=MAX_GIVE_UP_AFTER),
    metavar="SECONDS",
    help=f"How long to keep retrying an unreachable store before giving up (exit 3). "
    f"Default: {WORK_OFF_GIVE_UP_AFTER:g}.",
)
@_child_options
@click.option("--summary-dir", type=click.Path(path_type=Path), hidden=True)
def workoff(
    *,
    spec: str | None,
    give_up_after: float | None,
    child_settings: str | None,
    child_label: str | None,
    parent_pid: int | None,
    summary_dir: Path | None,
    **overrides: Any,
) -> None:
    """Run every job that is due now, print a summary, then exit: 0 when every job
    succeeded, 1 when a job raised (or a worker process died), 3 when the store became
    unreachable and the worker gave up, 4 when stopped (Ctrl-C) before the end."""
    import_app(required=True)
    patience = WORK_OFF_GIVE_UP_AFTER if give_up_after is None else give_up_after
    if child_settings is not None:
        settings = settings_from_json(child_settings)
        label = child_label or "workoff"
        sys.exit(_workoff_child(settings, label, parent_pid, summary_dir, patience))
    groups = worker_groups(spec, _given(overrides), every_queue=True)
    interactive = sys.stderr.isatty()
    if interactive:
        logging.getLogger("queuebox").setLevel(logging.WARNING)
    adapter = guard(config.get_adapter)
    if sum(group.count for group in groups) == 1:
        outcome = _work_off_here(adapter, groups[0], interactive, patience)
    else:
        outcome = _work_off_in_processes(groups, patience)
    queues = _queues_of(groups)
    echo_store()
    click.echo(_summary_line(outcome.summary, _left(adapter, queues)))
    if outcome.summary.failed_ids:
        click.echo(
            "failed job ids: "
            + ", ".join(outcome.summary.failed_ids)
            + " (see queuebox show ID, or queuebox jobs --state failed)"
        )
    for label in outcome.lost_workers:
        click.echo(f"workoff: worker {label} ended without a summary", err=True)
    for reason in outcome.gave_up:
        click.echo(f"workoff stopped: the store is unreachable, gave up: {reason}", err=True)
    if outcome.interrupted and not outcome.gave_up:
        click.echo("workoff stopped: interrupted before every due job ran", err=True)
    sys.exit(outcome.exit_code)


def _given(overrides: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in overrides.items() if value}


def _work_off(
    worker: Worker,
    stop: StopFlag,
    patience: float,
    progress: Callable[[WorkSummary], None] | None = None,
) -> WorkoffOutcome:
    try:
        summary = worker.work_off(progress=progress, give_up_after=patience)
    except StorageUnavailable as exc:
        return WorkoffOutcome(worker.summary, gave_up=[str(exc)], interrupted=stop.stopping)
    return WorkoffOutcome(summary, interrupted=stop.stopping)


def _work_off_here(
    adapter: Adapter, group: WorkerSettings, interactive: bool, patience: float
) -> WorkoffOutcome:
    due = _count(adapter, group.queues, (JobState.READY,)) or 0
    stop = StopFlag()
    worker = Worker(adapter, group, stop=stop)
    with handle_stop_signals(stop), _progress(interactive, due) as show:
        return _work_off(worker, stop, patience, show)


def _workoff_child(
    settings: WorkerSettings,
    label: str,
    parent_pid: int | None,
    summary_dir: Path | None,
    patience: float,
) -> int:
    """One process of ``workoff -n``: its outcome goes to ``summary_dir/<pid>.json``."""
    setup_logging(logging.getLogger("queuebox").level, label=label)
    set_process_title(label, f"(workoff, queues: {settings.queue_label})")
    stop = StopFlag()
    if parent_pid is not None:
        _stop_when_orphaned(parent_pid, stop)
    with handle_stop_signals(stop):
        outcome = _work_off(Worker(guard(config.get_adapter), settings, stop=stop), stop, patience)
    if summary_dir is not None:
        write_json(summary_dir / f"{os.getpid()}.json", outcome.to_json())
    return outcome.exit_code


def _work_off_in_processes(groups: Sequence[WorkerSettings], patience: float) -> WorkoffOutcome:
    stop = StopFlag()
    with tempfile.TemporaryDirectory(prefix="queuebox-workoff-") as folder:
        pool = WorkerPool(
            groups,
            logger=logging.getLogger("queuebox.pool"),
            env=child_environment(),
            subcommand="workoff",
            extra_args=["--summary-dir", folder, "--give-up-after", f"{patience!r}"],
            global_args=_global_args(),
            report_early_exits=False,
        )
        with handle_stop_signals(stop):
            pool.start()
            pool.wait(stop)
        outcome = WorkoffOutcome(interrupted=stop.stopping)
        for slot in pool.slots:
            pid = slot.process.pid if slot.process is not None else 0
            path = Path(folder) / f"{pid}.json"
            try:
                outcome.add(WorkoffOutcome.from_json(load_json(path.read_text())))
            except (OSError, ValueError, KeyError, TypeError):
                code = slot.process.returncode if slot.process is not None else None
                outcome.lost_workers.append(f"{slot.label} (pid {pid}, exit status {code})")
    return outcome


def _queues_of(groups: Sequence[WorkerSettings]) -> tuple[str, ...] | None:
    if any(group.queues is None for group in groups):
        return None
    return tuple(sorted({queue for group in groups for queue in group.queues or ()}))


def _count(
    adapter: Adapter, queues: tuple[str, ...] | None, states: tuple[JobState, ...]
) -> int | None:
    """Jobs in ``states`` on ``queues``; ``None`` when the store cannot say."""
    try:
        counts = adapter.counts()
    except StorageUnavailable:
        return None
    total: int = sum(
        getattr(c, state.value)
        for c in counts
        if queues is None or c.queue in queues
        for state in states
    )
    return total


def _left(adapter: Adapter, queues: tuple[str, ...] | None) -> tuple[int, int] | None:
    ready = _count(adapter, queues, (JobState.READY,))
    scheduled = _count(adapter, queues, (JobState.SCHEDULED,))
    return None if ready is None or scheduled is None else (ready, scheduled)


@contextmanager
def _progress(interactive: bool, total: int) -> Iterator[Callable[[WorkSummary], None] | None]:
    def show(summary: WorkSummary) -> None:
        done = summary.succeeded + summary.retried + summary.failed
        click.echo(
            f"\r  {done}/{max(total, done)} attempts: {summary.succeeded} succeeded, "
            f"{summary.retried} raised (will run again), {summary.failed} failed",
            nl=False,
            err=True,
        )

    if not interactive:
        yield None
        return
    try:
        yield show
    finally:
        click.echo("", err=True)


def _summary_line(summary: WorkSummary, left: tuple[int, int] | None) -> str:
    jobs = summary.retried_jobs
    retried = (
        f"{jobs} job{'' if jobs == 1 else 's'} to run again "
        f"({summary.retried} attempt{'' if summary.retried == 1 else 's'} raised)"
    )
    remaining = (
        "left: unknown (the store is unreachable)"
        if left is None
        else f"left: {left[0]} ready, {left[1]} scheduled"
    )
    extra = "".join(
        f", {count} {what}"
        for count, what in ((summary.cancelled, "cancelled"), (summary.timed_out, "timed out"))
        if count
    )
    return (
        f"workoff: {summary.succeeded} succeeded, {summary.failed} failed, {retried}{extra}; "
        f"{remaining}"
    )
