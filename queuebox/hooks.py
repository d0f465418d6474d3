"""Running a job with its lifecycle hooks, in one defined order.

1. global ``before_perform`` hooks, then the job's ``before_perform``;
2. ``perform``;
3. the job's ``after_perform``, then the global ones (whether ``perform`` raised or not);
4. on success the job's ``after_success`` then the global ones; when ``perform`` (or a
   ``before_perform`` hook) raised, the job's ``after_failure(error)`` then the global ones.

A ``before_perform`` hook that raises fails the attempt like ``perform`` raising would. An
``after_*`` hook that raises is logged and changes nothing: the outcome is decided by
``perform``. A stop (``ColdStop``, ``KeyboardInterrupt``, ``JobTimeout``, ``JobCancelled``)
skips the after-hooks.

The order is written once, as a plan (a generator of the calls to make); ``run_with_hooks``
drives it for sync jobs and ``arun_with_hooks`` for async ones, where any hook may be a
coroutine function. A sync job's async global hook runs on an event loop of its own.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any

from queuebox import config

if TYPE_CHECKING:
    from queuebox.job import Job

__all__ = ["arun_with_hooks", "run_with_hooks"]

#: One call the plan asks for; the driver sends back its result or throws its exception.
_Step = Callable[[], Any]


def run_with_hooks(
    job: Job, args: Sequence[Any], kwargs: dict[str, Any], logger: logging.Logger
) -> Any:
    plan = _plan(job, args, kwargs, logger)
    result: Any = None
    error: Exception | None = None
    try:
        while True:
            try:
                step = plan.send(result) if error is None else plan.throw(error)
            except StopIteration as done:
                return done.value
            result, error = None, None
            try:
                result = step()
                if inspect.isawaitable(result):  # an async global hook of a sync job
                    import asyncio  # noqa: PLC0415 - see queuebox/job.py

                    result = asyncio.run(_awaited(result))
            except Exception as exc:
                error = exc
    finally:
        plan.close()


async def arun_with_hooks(
    job: Job, args: Sequence[Any], kwargs: dict[str, Any], logger: logging.Logger
) -> Any:
    plan = _plan(job, args, kwargs, logger)
    result: Any = None
    error: Exception | None = None
    try:
        while True:
            try:
                step = plan.send(result) if error is None else plan.throw(error)
            except StopIteration as done:
                return done.value
            result, error = None, None
            try:
                result = step()
                if inspect.isawaitable(result):
                    result = await result
            except Exception as exc:
                error = exc
    finally:
        plan.close()


def _plan(
    job: Job, args: Sequence[Any], kwargs: dict[str, Any], logger: logging.Logger
) -> Generator[_Step, Any, Any]:
    job.args, job.kwargs = list(args), dict(kwargs)
    try:
        for hook in config.get_hooks("before_perform"):
            yield functools.partial(hook, job)
        yield job.before_perform
        result = yield functools.partial(job.perform, *args, **kwargs)
    except Exception as error:
        yield from _after(job, "after_perform", job.after_perform, (), logger)
        yield from _after(job, "after_failure", job.after_failure, (error,), logger)
        raise
    yield from _after(job, "after_perform", job.after_perform, (), logger)
    yield from _after(job, "after_success", job.after_success, (), logger)
    return result


def _after(
    job: Job,
    event: str,
    own_hook: Callable[..., object],
    extra: tuple[Any, ...],
    logger: logging.Logger,
) -> Generator[_Step, Any, None]:
    hooks: list[Callable[..., object]] = [own_hook]
    hooks += [functools.partial(hook, job) for hook in config.get_hooks(event)]
    for hook in hooks:
        try:
            yield functools.partial(hook, *extra)
        except Exception:
            logger.exception(
                "%s hook of %s raised; the job's outcome is unchanged", event, job.name
            )


async def _awaited(awaitable: Any) -> Any:
    return await awaitable
