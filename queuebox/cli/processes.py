"""``queuebox start``, ``stop``, ``restart``: workers in the background, kept alive.

The logic is in ``queuebox.runner.supervisor`` (the supervisor loop) and
``queuebox.runner.control`` (launching, finding and stopping it); these commands parse options
and print what happened.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from queuebox import config
from queuebox.cli.common import (
    BoundedFloat,
    child_environment,
    cli,
    guard,
    import_app,
    setup_logging,
    worker_groups,
    worker_options,
)
from queuebox.errors import QueueboxError, redact_text
from queuebox.runner.control import (
    groups_from_json,
    process_report,
    start_background,
    stop_supervisor,
)
from queuebox.runner.managed import Limits
from queuebox.runner.rundir import RunDir
from queuebox.runner.settings import WorkerSettings
from queuebox.runner.supervisor import redirect_output, run_supervisor

__all__ = ["echo_processes", "process_section", "restart", "start", "stop", "supervise"]

F = TypeVar("F", bound=Callable[..., Any])


def run_dir_option(function: F) -> F:
    return click.option(
        "--run-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="QUEUEBOX_RUN_DIR",
        help="Folder of the pid file, state and default log (also QUEUEBOX_RUN_DIR, or "
        "run_dir in the config). Default: .queuebox/ beside the config file.",
    )(function)


#: ``start --wait`` and ``stop --timeout`` at most: a day.
_MAX_WAIT = 86400.0


def _start_options(function: F) -> F:
    options = [
        click.option(
            "-n",
            "spec",
            metavar="SPEC",
            help="Workers: 4, or default:2,email:1. Replaces the config's [[workers]] groups "
            "(each new group takes the first group's settings).",
        ),
        click.option(
            "--max-jobs",
            type=click.IntRange(1, 10**9),
            help="Replace a worker by a fresh process after it ran this many jobs.",
        ),
        click.option(
            "--max-memory",
            type=BoundedFloat(min=1, max=2**20),
            metavar="MB",
            help="Replace a worker whose resident memory passed this, checked between jobs.",
        ),
        click.option(
            "--log-file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Append every log line here. Default: queuebox.log in the run folder "
            "(with --foreground: stdout).",
        ),
        click.option(
            "--wait",
            "wait_seconds",
            type=BoundedFloat(min=0, min_open=True, max=_MAX_WAIT),
            default=30.0,
            show_default=True,
            help="Seconds to wait for the workers to come up.",
        ),
        run_dir_option,
    ]
    function = worker_options(function)
    for option in reversed(options):
        function = option(function)
    return function


def _timeout_option(function: F) -> F:
    return click.option(
        "--timeout",
        type=BoundedFloat(min=0, max=_MAX_WAIT),
        default=30.0,
        show_default=True,
        help="Seconds for running jobs to finish; then a cold stop (their jobs are given "
        "back), and SIGKILL for what is left a few seconds later.",
    )(function)


@cli.command()
@_start_options
@click.option(
    "--foreground",
    is_flag=True,
    help="Supervise from this process, attached (systemd Type=simple, containers).",
)
def start(
    *,
    spec: str | None,
    max_jobs: int | None,
    max_memory: float | None,
    log_file: Path | None,
    wait_seconds: float,
    run_dir: Path | None,
    foreground: bool,
    **overrides: Any,
) -> None:
    """Start workers in the background, kept alive by a supervisor; return once they are up.

    Refused without an app module, and (in the background) when the store cannot be
    reached: it exits 1 with the reason. With --foreground, an unreachable store is logged
    and the workers keep trying, as they do when the store goes away later.
    """
    import_app(required=True)
    groups = worker_groups(spec, overrides)
    limits = Limits(max_jobs=max_jobs, max_memory_mb=max_memory)
    problem = _store_problem(wait_seconds)
    if foreground:
        if problem is not None:
            logging.getLogger("queuebox").warning("%s; the workers keep trying", problem)
        sys.exit(_supervise(groups, _run_dir(run_dir), log_file, limits))
    if problem is not None:
        raise click.ClickException(f"queuebox did not start: {problem}")
    _start(groups, _run_dir(run_dir), log_file, limits, wait_seconds)


@cli.command()
@_timeout_option
@run_dir_option
def stop(timeout: float, run_dir: Path | None) -> None:
    """Stop the workers that 'start' runs: warm, then cold after --timeout, then SIGKILL."""
    guard(lambda: stop_supervisor(_run_dir(run_dir), timeout=timeout, say=click.echo))


@cli.command()
@_start_options
@_timeout_option
def restart(
    *,
    spec: str | None,
    max_jobs: int | None,
    max_memory: float | None,
    log_file: Path | None,
    wait_seconds: float,
    run_dir: Path | None,
    timeout: float,
    **overrides: Any,
) -> None:
    """Stop the workers (if running), then start them with the options given here."""
    # A bad option, a missing app or an unreachable store must not stop the running ones.
    import_app(required=True)
    groups = worker_groups(spec, overrides)
    problem = _store_problem(wait_seconds)
    if problem is not None:
        raise click.ClickException(f"queuebox was not restarted: {problem}")
    where = _run_dir(run_dir)
    guard(lambda: stop_supervisor(where, timeout=timeout, say=click.echo))
    _start(
        groups, where, log_file, Limits(max_jobs=max_jobs, max_memory_mb=max_memory), wait_seconds
    )


@cli.command(hidden=True)
@click.option("--groups", "groups_json", required=True)
@click.option("--run-dir", required=True, type=click.Path(path_type=Path))
@click.option("--log-file", type=click.Path(path_type=Path))
@click.option("--max-jobs", type=click.IntRange(1))
@click.option("--max-memory", type=click.FloatRange(min=1))
def supervise(
    groups_json: str,
    run_dir: Path,
    log_file: Path | None,
    max_jobs: int | None,
    max_memory: float | None,
) -> None:
    """The supervisor process that 'start' launches in the background."""
    limits = Limits(max_jobs=max_jobs, max_memory_mb=max_memory)
    sys.exit(_supervise(groups_from_json(groups_json), RunDir(run_dir), log_file, limits))


def _run_dir(option: Path | None) -> RunDir:
    return RunDir((option or guard(config.get_settings).run_dir).absolute())


def _store_problem(timeout: float) -> str | None:
    """Why the store cannot be used now (``None``: it answered), waiting at most ``timeout``
    seconds for it (a store behind a firewall may never answer a connect)."""
    outcome: list[BaseException | None] = []
    adapter = guard(config.get_adapter)

    def probe() -> None:
        try:
            adapter.now()
        except Exception as exc:  # reported, whatever it is
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=probe, name="queuebox-store-check", daemon=True)
    thread.start()
    thread.join(timeout)
    where = config.describe_store()
    if not outcome:
        return f"the store {where} did not answer within {timeout:g}s (--wait)"
    error = outcome[0]
    if error is None:
        return None
    if isinstance(error, QueueboxError):
        return f"the store cannot be used: {redact_text(str(error))}"
    return f"the store {where} cannot be used: {type(error).__name__}: {redact_text(str(error))}"


def _global_args() -> list[str]:
    """The supervisor (and so its workers) log at this command's level."""
    return ["--log-level", logging.getLevelName(logging.getLogger("queuebox").level)]


def _start(
    groups: Sequence[WorkerSettings],
    run_dir: RunDir,
    log_file: Path | None,
    limits: Limits,
    wait_seconds: float,
) -> None:
    log = (log_file or run_dir.default_log_file).absolute()
    started = guard(
        lambda: start_background(
            groups,
            run_dir=run_dir,
            log_file=log,
            limits=limits,
            env=child_environment(),
            global_args=_global_args(),
            timeout=wait_seconds,
        )
    )
    if started.replaced_stale is not None:
        click.echo(f"replaced a stale pid file (pid {started.replaced_stale} was gone)")
    workers = ", ".join(f"{w['label']} (pid {w['pid']})" for w in started.workers)
    click.echo(
        f"started queuebox: supervisor pid {started.pid}; {len(started.workers)} "
        f"worker(s): {workers}"
    )
    click.echo(f"store: {config.describe_store()}")
    click.echo(f"logs: {log}")


def _supervise(
    groups: Sequence[WorkerSettings], run_dir: RunDir, log_file: Path | None, limits: Limits
) -> int:
    if log_file is not None:
        log_file = log_file.absolute()
        redirect_output(log_file)
    else:
        sys.stdout.flush()
        os.dup2(1, 2)  # attached: every line, workers' too, on stdout
    setup_logging(logging.getLogger("queuebox").level, label="supervisor", full_dates=True)
    try:
        return run_supervisor(
            groups,
            run_dir=run_dir,
            logger=logging.getLogger("queuebox.supervisor"),
            limits=limits,
            global_args=_global_args(),
            env=child_environment(),
            log_file=log_file,
        )
    except QueueboxError as exc:
        raise click.ClickException(str(exc)) from None


# -- for ``queuebox status`` ------------------------------------------------------------------


def process_section(run_dir: Path | None) -> dict[str, Any] | None:
    return process_report(_run_dir(run_dir))


def echo_processes(report: dict[str, Any] | None) -> None:
    if report is None:
        return  # no supervisor was started from here
    supervisor = report["supervisor"]
    click.echo("")
    if not supervisor["running"]:
        click.echo(
            f"supervisor: not running (stale pid file {report['pid_file']} names pid "
            f"{supervisor['pid']})"
        )
        return
    line = f"supervisor: pid {supervisor['pid']}, {supervisor['phase']}, up "
    line += _duration(supervisor["up_seconds"])
    if supervisor.get("log_file"):
        line += f", log {supervisor['log_file']}"
    click.echo(line)
    rows = [["worker", "pid", "up", "jobs", "restarts", "now"]]
    for worker in report["workers"]:
        rows.append(
            [
                worker["label"],
                str(worker["pid"] or "-"),
                _duration(worker["up_seconds"]) if worker["alive"] else "-",
                str(worker["jobs_done"]),
                str(worker["restarts"]),
                _doing(worker),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  ".join([*cells, row[-1]]))


def _doing(worker: dict[str, Any]) -> str:
    job = worker.get("job")
    if worker["alive"] and job:
        return (
            f"running {job['name']} id={job['id']} ({job['queue']}) for "
            f"{_duration(job['running_seconds'])}"
        )
    if worker["alive"]:
        return "idle"
    if worker.get("restart_in_seconds") is not None:
        return (
            f"restarting in {_duration(worker['restart_in_seconds'])} (last: {worker['last_exit']})"
        )
    return "down"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"
