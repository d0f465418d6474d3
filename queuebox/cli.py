"""The ``queuebox`` command: a thin click layer over configuration, workers and stores."""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from queuebox import config
from queuebox.backends.base import Adapter, JobState
from queuebox.errors import ConfigurationError, QueueboxError, redact_url
from queuebox.runner.pool import WorkerPool, settings_from_json
from queuebox.runner.settings import WorkerSettings, parse_queues, parse_worker_spec
from queuebox.runner.signals import StopFlag, handle_stop_signals
from queuebox.runner.worker import Worker, WorkSummary

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])


def main(argv: Sequence[str] | None = None) -> None:
    cli.main(args=argv, prog_name="queuebox")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url", metavar="URL", help="Store URL (also QUEUEBOX_URL). Default: sqlite:///queuebox.db"
)
@click.option(
    "--app",
    "app",
    multiple=True,
    metavar="MODULE",
    help="Module that defines jobs; repeat for several (also QUEUEBOX_APP, comma-separated).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages too.")
@click.version_option(package_name="queuebox")
def cli(url: str | None, app: tuple[str, ...], verbose: bool) -> None:
    """Background jobs: schedule, store, work off."""
    _guard(lambda: config.set_command_line(url=url, app=app))
    _setup_logging(logging.DEBUG if verbose else logging.INFO)


# -- work -----------------------------------------------------------------------------------


def worker_options(function: F) -> F:
    options = [
        click.option(
            "-q", "--queue", "queues", multiple=True, help="Queue(s) to work; '*' for all."
        ),
        click.option("--batch-size", type=click.IntRange(1, 1000), help="Jobs claimed at once."),
        click.option("--max-attempts", type=click.IntRange(1), help="Attempts before failing."),
        click.option("--max-runtime", type=click.FloatRange(min=0, min_open=True), help="Seconds."),
        click.option("--sleep-delay", type=click.FloatRange(min=0, min_open=True), help="Seconds."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@cli.command()
@worker_options
@click.option("-n", "spec", metavar="SPEC", help="Worker processes: 4, or default:2,email:1.")
@click.option("--child-settings", hidden=True)
@click.option("--child-label", hidden=True)
@click.option("--parent-pid", type=int, hidden=True)
def work(
    spec: str | None,
    child_settings: str | None,
    child_label: str | None,
    parent_pid: int | None,
    **overrides: Any,
) -> None:
    """Run workers in the foreground until Ctrl-C (twice: stop at once)."""
    _import_app()
    if child_settings is not None:
        _run_child(settings_from_json(child_settings), child_label or "worker", parent_pid)
        return
    groups = _worker_groups(spec, overrides)
    stop = StopFlag()
    if sum(group.count for group in groups) == 1:
        with handle_stop_signals(stop):
            _guard(lambda: Worker(config.get_adapter(), groups[0], stop=stop).run())
        return
    settings = config.get_settings()
    pool = WorkerPool(
        groups,
        url=settings.url if "url" in settings.sources else None,
        app=settings.app,
        logger=logging.getLogger("queuebox.pool"),
        extra_args=["--verbose"] if logging.getLogger("queuebox").level == logging.DEBUG else [],
    )
    with handle_stop_signals(stop):
        pool.start()
        code = pool.wait(stop)
    sys.exit(code)


def _run_child(settings: WorkerSettings, label: str, parent_pid: int | None) -> None:
    _setup_logging(logging.getLogger("queuebox").level, label=label)
    stop = StopFlag()
    if parent_pid is not None:
        _stop_when_orphaned(parent_pid, stop)
    with handle_stop_signals(stop):
        _guard(lambda: Worker(config.get_adapter(), settings, stop=stop).run())


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
    _import_app()
    # Every due job, whatever the configured groups cover, unless -q narrows it.
    group = _worker_groups(None, {"queues": ("*",), **_given(overrides)})[0]
    adapter = _guard(config.get_adapter)
    interactive = sys.stderr.isatty()
    if interactive:
        logging.getLogger("queuebox").setLevel(logging.WARNING)
    due = _count(adapter, group.queues, (JobState.READY,))
    stop = StopFlag()
    worker = Worker(adapter, group, stop=stop)
    with handle_stop_signals(stop), _progress(interactive, due) as show:
        summary = _guard(lambda: worker.work_off(progress=show))
    scheduled = _count(adapter, group.queues, (JobState.SCHEDULED,))
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


# -- administration -------------------------------------------------------------------------


@cli.command()
@click.option("-q", "--queue", "queues", multiple=True, help="Only these queues.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def clear(queues: tuple[str, ...], yes: bool) -> None:
    """Delete every job (or those of some queues), whatever its state."""
    selected = _queues(queues)
    adapter = _guard(config.get_adapter)
    where = "every queue" if selected is None else "queue(s) " + ", ".join(selected)
    if not yes and _stdin_is_terminal():
        total = _count(adapter, selected, tuple(JobState))
        click.confirm(
            f"Delete {total} job(s) in {where} of {redact_url(config.get_settings().url)}?",
            abort=True,
        )
    removed = _guard(lambda: adapter.clear(selected))
    click.echo(f"deleted {removed} job(s) in {where}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(as_json: bool) -> None:
    """Show how many jobs each queue holds in each state."""
    adapter = _guard(config.get_adapter)
    counts = _guard(adapter.counts)
    url = redact_url(config.get_settings().url)
    if as_json:
        rows = [{"queue": c.queue, **_states(c), "total": c.total} for c in counts]
        click.echo(json.dumps({"store": url, "queues": rows}, indent=2))
        return
    click.echo(f"store: {url}")
    if not counts:
        click.echo("no jobs")
        return
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
    adapter = _guard(config.get_adapter)
    records = _guard(
        lambda: adapter.list_jobs(
            queues=_queues(queues),
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
    adapter = _guard(config.get_adapter)
    _apply_each(job_ids, adapter.retry, "queued to run now", "not found, or running")


@cli.command()
@click.argument("job_ids", nargs=-1, required=True)
def delete(job_ids: tuple[str, ...]) -> None:
    """Delete jobs by id."""
    adapter = _guard(config.get_adapter)
    _apply_each(job_ids, adapter.delete, "deleted", "not found")


def _apply_each(
    job_ids: tuple[str, ...], action: Callable[[str], bool], done: str, missing: str
) -> None:
    misses = 0
    for job_id in job_ids:
        if _guard(lambda job_id=job_id: action(job_id)):  # type: ignore[misc]
            click.echo(f"{job_id}: {done}")
        else:
            misses += 1
            click.echo(f"{job_id}: {missing}", err=True)
    if misses:
        sys.exit(1)


@cli.command()
def migrate() -> None:
    """Create or upgrade the store's schema (safe to run again)."""
    adapter = _guard(config.get_adapter)
    _guard(adapter.migrate)
    click.echo(f"schema ready in {redact_url(config.get_settings().url)}")


# -- helpers --------------------------------------------------------------------------------

T = TypeVar("T")


def _guard(action: Callable[[], T]) -> T:
    """Turn a queuebox error into a one-line message and exit status 1."""
    try:
        return action()
    except QueueboxError as exc:
        raise click.ClickException(str(exc)) from None


def _import_app() -> None:
    modules = _guard(config.get_settings).app
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: modules beside you are importable
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise click.ClickException(
                f"cannot import the app module {module!r} ({exc}); check --app / QUEUEBOX_APP "
                "and that you run queuebox from your project's directory"
            ) from None
    if not modules:
        logging.getLogger("queuebox").warning(
            "no app module given (--app or QUEUEBOX_APP): no jobs are registered, so every job "
            "found will fail as unknown"
        )


def _queues(queues: Sequence[str]) -> tuple[str, ...] | None:
    if not queues:
        return None
    names: list[str] = []
    for value in queues:
        parsed = _guard(lambda value=value: parse_queues(value))  # type: ignore[misc]
        if parsed is None:
            return None
        names.extend(parsed)
    return tuple(names)


def _worker_groups(spec: str | None, overrides: dict[str, Any]) -> list[WorkerSettings]:
    """The config's worker groups, with command-line overrides applied to each.

    ``-q`` or ``-n`` replace the configured groups by ones built on the first group.
    """
    settings = _guard(config.get_settings)
    changes = {k: v for k, v in overrides.items() if k != "queues" and v is not None}
    if overrides.get("queues"):
        changes["queues"] = _queues(overrides["queues"])
    try:
        if spec is not None:
            return parse_worker_spec(spec, settings.workers[0].replace(**changes))
        if "queues" in changes:
            return [settings.workers[0].replace(**changes)]
        return [group.replace(**changes) for group in settings.workers]
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None


def _count(adapter: Adapter, queues: tuple[str, ...] | None, states: tuple[JobState, ...]) -> int:
    counts = _guard(adapter.counts)
    return sum(
        getattr(c, state.value)
        for c in counts
        if queues is None or c.queue in queues
        for state in states
    )


class _LabelFilter(logging.Filter):
    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.label
        return True


def _setup_logging(level: int, *, label: str = "queuebox") -> None:
    logger = logging.getLogger("queuebox")
    logger.setLevel(level)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_LabelFilter(label))
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(worker)s %(levelname)s %(message)s", "%H:%M:%S")
    )
    logger.addHandler(handler)
    logger.propagate = False
