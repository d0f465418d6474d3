"""The ``queuebox`` click group and what its commands share: options, errors, logging."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from queuebox import config
from queuebox.backends.base import Adapter, JobState
from queuebox.errors import ConfigurationError, QueueboxError
from queuebox.runner.settings import WorkerSettings, parse_queues, parse_worker_spec

__all__ = [
    "LOG_LEVELS",
    "cli",
    "count_jobs",
    "guard",
    "import_app",
    "main",
    "parse_queue_options",
    "setup_logging",
    "worker_groups",
    "worker_options",
]

F = TypeVar("F", bound=Callable[..., Any])

#: The levels ``--log-level`` accepts. INFO logs two lines per job; WARNING keeps only what
#: needs attention (retries, failures, lost locks), which is much cheaper for short jobs.
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


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
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    envvar="QUEUEBOX_LOG_LEVEL",
    help="DEBUG, INFO (default), WARNING or ERROR (also QUEUEBOX_LOG_LEVEL). The worker "
    "processes of `work -n` use it too.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages too (--log-level DEBUG).")
@click.version_option(package_name="queuebox")
def cli(url: str | None, app: tuple[str, ...], log_level: str | None, verbose: bool) -> None:
    """Background jobs: schedule, store, work off."""
    guard(lambda: config.set_command_line(url=url, app=app))
    # -v always means DEBUG, whatever --log-level or QUEUEBOX_LOG_LEVEL say.
    level = logging.DEBUG if verbose else logging.getLevelName((log_level or "INFO").upper())
    setup_logging(level)


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


# -- helpers --------------------------------------------------------------------------------

T = TypeVar("T")


def guard(action: Callable[[], T]) -> T:
    """Turn a queuebox error into a one-line message and exit status 1."""
    try:
        return action()
    except QueueboxError as exc:
        raise click.ClickException(str(exc)) from None


def import_app(*, warn_if_none: bool = True) -> None:
    modules = guard(config.get_settings).app
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
    if not modules and warn_if_none:
        logging.getLogger("queuebox").warning(
            "no app module given (--app or QUEUEBOX_APP): no jobs are registered, so every job "
            "found will fail as unknown"
        )


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


def worker_groups(spec: str | None, overrides: dict[str, Any]) -> list[WorkerSettings]:
    """The config's worker groups, with command-line overrides applied to each.

    ``-q`` or ``-n`` replace the configured groups by ones built on the first group.
    """
    settings = guard(config.get_settings)
    changes = {k: v for k, v in overrides.items() if k != "queues" and v is not None}
    if overrides.get("queues"):
        changes["queues"] = parse_queue_options(overrides["queues"])
    try:
        if spec is not None:
            return parse_worker_spec(spec, settings.workers[0].replace(**changes))
        if "queues" in changes:
            return [settings.workers[0].replace(**changes)]
        return [group.replace(**changes) for group in settings.workers]
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None


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
        logging.Formatter(
            "%(asctime)s %(worker)s %(levelname)s %(message)s",
            "%Y-%m-%d %H:%M:%S" if full_dates else "%H:%M:%S",
        )
    )
    logger.addHandler(handler)
    logger.propagate = False
