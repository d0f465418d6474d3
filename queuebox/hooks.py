"""Running a job with its lifecycle hooks, in one defined order.

1. global ``before_perform`` hooks, then the job's ``before_perform``;
2. ``perform``;
3. the job's ``after_perform``, then the global ones (whether ``perform`` raised or not);
4. on success the job's ``after_success`` then the global ones; when ``perform`` (or a
   ``before_perform`` hook) raised, the job's ``after_failure(error)`` then the global ones.

A ``before_perform`` hook that raises fails the attempt like ``perform`` raising would. An
``after_*`` hook that raises is logged and changes nothing: the outcome is decided by
``perform``. A stop request (``ColdStop``, ``KeyboardInterrupt``) skips the after-hooks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from queuebox import config

if TYPE_CHECKING:
    from queuebox.job import Job

__all__ = ["run_with_hooks"]


def run_with_hooks(
    job: Job, args: Sequence[Any], kwargs: dict[str, Any], logger: logging.Logger
) -> Any:
    job.args, job.kwargs = list(args), dict(kwargs)
    try:
        for hook in config.get_hooks("before_perform"):
            hook(job)
        job.before_perform()
        result = job.perform(*args, **kwargs)
    except Exception as error:
        _after(job, "after_perform", job.after_perform, (), logger)
        _after(job, "after_failure", job.after_failure, (error,), logger)
        raise
    _after(job, "after_perform", job.after_perform, (), logger)
    _after(job, "after_success", job.after_success, (), logger)
    return result


def _after(
    job: Job,
    event: str,
    own_hook: Callable[..., object],
    extra: tuple[Any, ...],
    logger: logging.Logger,
) -> None:
    for hook in (own_hook, *(_bound(global_hook, job) for global_hook in config.get_hooks(event))):
        try:
            hook(*extra)
        except Exception:
            logger.exception(
                "%s hook of %s raised; the job's outcome is unchanged", event, job.name
            )


def _bound(hook: Callable[..., object], job: Job) -> Callable[..., object]:
    return lambda *extra: hook(job, *extra)
