"""The ``queuebox`` click group and what its commands share: options, errors, logging, and
one way to find the store.

Every command that touches the store opens it with ``open_store``: the app modules are
imported first (an app may configure the store in code, ``queuebox.configure(adapter=...)``,
which wins over every other source), then the configured store is used, and the command says
which one (``store: ...``, secrets hidden). The store is closed when the command ends,
whoever built it.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from queuebox import config
from queuebox.backends.base import Adapter, JobState
from queuebox.errors import ConfigurationError, QueueboxError, redact_text
from queuebox.runner.settings import WorkerSettings, parse_queues, parse_worker_spec

__all__ = [
    "LOG_LEVELS",
    "MAX_ATTEMPTS",
    "MAX_BATCH_SIZE",
    "MAX_CONCURRENCY",
    "MAX_LEASE",
    "MAX_RUNTIME",
    "MAX_SLEEP_DELAY",
    "MAX_WORKER_PROCESSES",
    "BoundedFloat",
    "child_environment",
    "cli",
    "count_jobs",
    "echo_store",
    "guard",
    "import_app",
    "main",
    "open_store",
    "parse_queue_options",
    "setup_logging",
    "shown",
    "worker_groups",
    "worker_options",
]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

#: The levels ``--log-level`` accepts. INFO logs two lines per job; WARNING keeps only what
#: needs attention (retries, failures, lost locks), which is much cheaper for short jobs.
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

# Bounds of what sizes processes, batches and waits: past these a value is a typo, and some
# would fail deep inside (a list of 10**20 worker slots, a wait too long for the OS, a retry
# time past year 9999) instead of at the option.
#: Worker processes one command starts, over all its groups (each is a Python interpreter).
MAX_WORKER_PROCESSES = 512
MAX_BATCH_SIZE = 1000
#: Jobs in flight in one worker process (threads for sync jobs, tasks for async ones).
MAX_CONCURRENCY = 10_000
#: ``attempts ** 4`` seconds of backoff stays within the years every store can hold.
MAX_ATTEMPTS = 500
MAX_RUNTIME = 30 * 86400.0
MAX_SLEEP_DELAY = 3600.0
MAX_LEASE = 86400.0

NO_APP_MODULE = (
    "no app module given: name the module(s) that define your jobs with --app MODULE, "
    "QUEUEBOX_APP, or app = [...] in queuebox.toml / [tool.queuebox]; without one no job is "
    "registered and every job would fail as unknown"
)


def main(argv: Sequence[str] | None = None) -> None:
    cli.main(args=argv, prog_name="queuebox")


class _Group(click.Group):
    """Errors become one line and exit status 1, never a traceback (``-v`` shows it for an
    error queuebox did not expect)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except QueueboxError as exc:
            raise click.ClickException(redact_text(str(exc))) from None
        except OSError as exc:
            raise click.ClickException(redact_text(str(exc))) from None
        except Exception as exc:
            if logging.getLogger("queuebox").isEnabledFor(logging.DEBUG):
                raise
            raise click.ClickException(
                f"unexpected {type(exc).__name__}: {redact_text(str(exc))} (run with -v for "
                "the traceback; this is a bug in queuebox or in the store's adapter)"
            ) from None


class BoundedFloat(click.FloatRange):
    """A ``FloatRange`` that also refuses NaN (which every comparison lets through)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        converted = super().convert(value, param, ctx)
        if isinstance(converted, float) and math.isnan(converted):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        return converted


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
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
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    envvar="QUEUEBOX_LOG_LEVEL",
    help="DEBUG, INFO (default), WARNING or ERROR (also QUEUEBOX_LOG_LEVEL). The worker "
    "processes of `work -n` use it too.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages too (--log-level DEBUG).")
@click.version_option(package_name="queuebox")
@click.pass_context
def cli(
    ctx: click.Context, url: str | None, app: tuple[str, ...], log_level: str | None, verbose: bool
) -> None:
    """Background jobs: schedule, store, work off."""
    guard(lambda: config.set_command_line(url=url, app=app))
    # -v always means DEBUG, whatever --log-level or QUEUEBOX_LOG_LEVEL say.
    level = logging.DEBUG if verbose else logging.getLevelName((log_level or "INFO").upper())
    setup_logging(level)
    # Close the store at the end, also one the app configured in code: its connections
    # (a Redis pub/sub thread, a PostgreSQL listener) must not outlive the command.
    ctx.call_on_close(config.close_adapter)


def worker_options(function: F) -> F:
    options = [
        click.option(
            "-q",
            "--queue",
            "queues",
            multiple=True,
            help="Queue(s) to work; '*' for all. Replaces the config's worker groups by one "
            "group on these queues (with the first group's settings).",
        ),
        click.option(
            "--batch-size",
            type=click.IntRange(1, MAX_BATCH_SIZE),
            help="Jobs claimed at once.",
        ),
        click.option(
            "--max-attempts",
            type=click.IntRange(1, MAX_ATTEMPTS),
            help="Attempts before failing.",
        ),
        click.option(
            "--max-runtime",
            type=BoundedFloat(min=0, min_open=True, max=MAX_RUNTIME),
            help="Seconds.",
        ),
        click.option(
            "--sleep-delay",
            type=BoundedFloat(min=0, min_open=True, max=MAX_SLEEP_DELAY),
            help="Seconds between polls when idle.",
        ),
        click.option(
            "-c",
            "--concurrency",
            type=click.IntRange(1, MAX_CONCURRENCY),
            help="Jobs in flight per worker process: sync jobs on that many threads, async "
            "jobs as tasks of one event loop (default 1: one at a time).",
        ),
        click.option(
            "--stop-grace",
            type=BoundedFloat(min=0, min_open=True, max=MAX_RUNTIME),
            help="Seconds a run asked to stop (timeout, cancel) gets before the process "
            "records it and ends itself, to be replaced.",
        ),
        click.option(
            "--claim-ahead/--no-claim-ahead",
            default=None,
            help="With batches above 1 on one Redis queue, claim the next batch while one "
            "runs (default on).",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


# -- helpers --------------------------------------------------------------------------------


def guard(action: Callable[[], T]) -> T:
    """Turn a queuebox error into a one-line message and exit status 1."""
    try:
        return action()
    except QueueboxError as exc:
        raise click.ClickException(redact_text(str(exc))) from None


def import_app(*, required: bool) -> tuple[str, ...]:
    """Import the app modules (``--app``, ``QUEUEBOX_APP``, the config file's ``app``).

    Modules beside you are importable (as with ``python -m``), and so are those beside the
    config file, as if you ran queuebox from its folder. ``required``: refuse to go on
    without an app module (a worker would fail every job as unknown).
    """
    settings = guard(config.get_settings)
    folders = [os.getcwd()]
    if settings.config_file is not None:
        folders.append(str(settings.config_file.parent))
    for folder in reversed(folders):
        if folder not in sys.path and not (folder == os.getcwd() and "" in sys.path):
            sys.path.insert(0, folder)
    for module in settings.app:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise click.ClickException(
                f"cannot import the app module {module!r} ({exc}); check --app / QUEUEBOX_APP "
                "and that you run queuebox from your project's directory"
            ) from None
    if not settings.app and required:
        raise click.ClickException(NO_APP_MODULE)
    return settings.app


def open_store(*, require_app: bool = False) -> Adapter:
    """The store this command acts on: the app modules are imported first, since an app may
    configure its store in code. The command group closes it at exit."""
    import_app(required=require_app)
    return guard(config.get_adapter)


def child_environment() -> dict[str, str]:
    """This environment, plus the store URL and app modules however they were given, so
    that worker processes resolve the same configuration. Never their command line: every
    local user can read that in ``ps``, password included."""
    settings = guard(config.get_settings)
    env = dict(os.environ)
    if "url" in settings.sources or settings.config_file is not None:
        env["QUEUEBOX_URL"] = settings.url
    if settings.app:
        env["QUEUEBOX_APP"] = ",".join(settings.app)
    return env


def echo_store(*, err: bool = False) -> None:
    """Say which store the command used (on stderr when stdout is for a machine)."""
    click.echo(f"store: {config.describe_store()}", err=err)


def parse_queue_options(queues: Sequence[str]) -> tuple[str, ...] | None:
    if not queues:
        return None
    names: list[str] = []
    for value in queues:
        parsed = guard(lambda value=value: parse_queues(value))  # type: ignore[misc]
        if parsed is None:
            return None
        names.extend(parsed)
    return tuple(names)


def worker_groups(
    spec: str | None, overrides: dict[str, Any], *, every_queue: bool = False
) -> list[WorkerSettings]:
    """The worker groups a command runs, with command-line overrides applied to each.

    Without ``-n`` or ``-q``: the configured groups. ``-q`` or ``-n`` replace them by groups
    built on the first one, and say so. ``every_queue`` (``workoff``): one group on every
    queue unless ``-q`` narrows it; the configured groups' queues do not apply.
    """
    settings = guard(config.get_settings)
    changes = {k: v for k, v in overrides.items() if k != "queues" and v is not None}
    queues_given = bool(overrides.get("queues"))
    if queues_given:
        changes["queues"] = parse_queue_options(overrides["queues"])
    elif every_queue:
        changes["queues"] = None
    base = settings.workers[0]
    try:
        if spec is not None:
            groups = parse_worker_spec(spec, base.replace(**changes))
        elif queues_given or every_queue:
            groups = [base.replace(**changes)]
        else:
            groups = [group.replace(**changes) for group in settings.workers]
    except (ConfigurationError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    _check_bounds(groups, spec)
    if (spec is not None or queues_given) and not every_queue:
        _say_what_is_replaced(settings, spec)
    return groups


def _check_bounds(groups: Sequence[WorkerSettings], spec: str | None) -> None:
    total = sum(group.count for group in groups)
    if total > MAX_WORKER_PROCESSES:
        given = f"-n {spec}" if spec is not None else "the [[workers]] counts"
        raise click.ClickException(
            f"{given} asks for {total} worker processes; at most {MAX_WORKER_PROCESSES} "
            "per command (each is a Python process): run more machines, or fewer workers "
            "with --batch-size for many short jobs"
        )
    limits = {
        "batch_size": MAX_BATCH_SIZE,
        "concurrency": MAX_CONCURRENCY,
        "max_attempts": MAX_ATTEMPTS,
        "max_runtime": MAX_RUNTIME,
        "sleep_delay": MAX_SLEEP_DELAY,
        "lease": MAX_LEASE,
        "stop_grace": MAX_RUNTIME,  # as --stop-grace
    }
    for group in groups:
        for name, highest in limits.items():
            value = getattr(group, name)
            if value > highest:
                raise click.ClickException(
                    f"worker setting {name}={value!r} (queues {group.queue_label}) is out of "
                    f"range: at most {highest:g}"
                )


def _say_what_is_replaced(settings: config.Settings, spec: str | None) -> None:
    source = settings.sources.get("workers")
    if source is None:
        return
    configured = ", ".join(f"{g.queue_label} x{g.count}" for g in settings.workers)
    option = f"-n {spec}" if spec is not None else "-q"
    click.echo(
        f"note: {option} replaces the worker groups of {source} ({configured}); the new "
        "groups take the first group's settings",
        err=True,
    )


def count_jobs(
    adapter: Adapter, queues: tuple[str, ...] | None, states: tuple[JobState, ...]
) -> int:
    counts = guard(adapter.counts)
    return sum(
        getattr(c, state.value)
        for c in counts
        if queues is None or c.queue in queues
        for state in states
    )


#: Control characters (C0 but newline and tab, DEL, C1) and the bidirectional overrides. Text
#: from the store (an error that quotes a job's argument, a worker record) goes to a
#: terminal: raw, these could clear it, retitle it, rewrite a line, or reorder what it shows.
_UNSHOWN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def shown(text: str) -> str:
    """``text`` for a terminal: each character of ``_UNSHOWN`` as its Python escape (``\\x1b``)."""
    return _UNSHOWN.sub(lambda match: repr(match.group())[1:-1], text)


def json_shown(text: str) -> str:
    """JSON text for a terminal: what ``shown`` escapes, as JSON's ``\\uXXXX`` escapes, so
    that the text stays the same JSON document (``json.dumps`` escapes C0 itself, but not
    C1 or the bidirectional overrides; every such character of JSON text is in a string)."""
    return _UNSHOWN.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


class _ShownFormatter(logging.Formatter):
    """Log lines quote errors, which may quote job arguments: escape what a terminal would
    act on (see ``shown``); a traceback keeps its lines."""

    def format(self, record: logging.LogRecord) -> str:
        return shown(super().format(record))


class _LabelFilter(logging.Filter):
    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.label
        return True


def setup_logging(level: int, *, label: str = "queuebox", full_dates: bool = False) -> None:
    """Log to stderr, each line tagged with ``label``; a log file that outlives a day
    (``full_dates``) gets the date too."""
    logger = logging.getLogger("queuebox")
    logger.setLevel(level)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_LabelFilter(label))
    handler.setFormatter(
        _ShownFormatter(
            "%(asctime)s %(worker)s %(levelname)s %(message)s",
            "%Y-%m-%d %H:%M:%S" if full_dates else "%H:%M:%S",
        )
    )
    logger.addHandler(handler)
    logger.propagate = False
