"""Running one job: from its stored record to an ``Outcome``, in the calling thread (a sync
job) or as a coroutine (an async job). What the outcome means for the store is the
worker's business (``queuebox.runner.worker``)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from queuebox import config, registry
from queuebox.backends.base import JobRecord
from queuebox.errors import PayloadError, UnknownJob
from queuebox.hooks import arun_with_hooks, run_with_hooks
from queuebox.job import Job
from queuebox.payload import Call, decode_handler
from queuebox.runner.runs import Held, Reason, reason_of

__all__ = ["Outcome", "Prepared", "global_hooks", "prepare", "run_async", "run_sync"]

_HOOK_METHODS = ("before_perform", "after_perform", "after_success", "after_failure")
_OWN_HOOKS: dict[type[Job], bool] = {}
#: The logger of a job class that names none (looked up once, not per run).
_WORKER_LOGGER = logging.getLogger("queuebox.worker")


@dataclass(slots=True)
class Prepared:
    """A job ready to run: its class, the decoded call and the limits that apply."""

    job_class: type[Job]
    call: Call
    max_attempts: int
    max_runtime: float
    logger: logging.Logger


@dataclass(slots=True)
class Outcome:
    """How one run ended: a success (neither ``error`` nor ``reason``), an error it raised,
    or a stop (``reason``: timeout, cancel, cold stop, lock lost)."""

    held: Held
    prepared: Prepared
    elapsed: float
    error: BaseException | None = None
    reason: Reason | None = None

    @property
    def record(self) -> JobRecord:
        return self.held.record


def prepare(record: JobRecord, max_attempts: int, max_runtime: float) -> Prepared | str:
    """The job to run for ``record``, or why it cannot run at all (to fail it at once)."""
    if record.unreadable is not None:
        return record.last_error or f"UnreadableRecord: {record.unreadable}"
    try:
        call = decode_handler(record.handler)
        job_class = registry.get(call.name)
    except (PayloadError, UnknownJob) as exc:
        return f"{type(exc).__name__}: {exc}"
    return Prepared(
        job_class=job_class,
        call=call,
        max_attempts=job_class.max_attempts or max_attempts,
        max_runtime=job_class.max_runtime or max_runtime,
        logger=job_class.logger or _WORKER_LOGGER,
    )


def _new_instance(prepared: Prepared, record: JobRecord) -> Job:
    instance = prepared.job_class()
    instance.record = record
    instance.will_retry = record.attempts < prepared.max_attempts
    return instance


def global_hooks() -> bool:
    """Whether any global hook is registered (read once per batch, not per job)."""
    return any(config.get_hooks(event) for event in config.HOOK_EVENTS)


def _with_hooks(job_class: type[Job], global_hooks: bool) -> bool:
    """Whether a run needs the hook machinery: a global hook, or one of the class's own."""
    if global_hooks:
        return True
    found = _OWN_HOOKS.get(job_class)
    if found is None:
        found = _OWN_HOOKS[job_class] = any(
            getattr(job_class, hook) is not getattr(Job, hook) for hook in _HOOK_METHODS
        )
    return found


def run_sync(
    held: Held, prepared: Prepared, slot: int, *, hooks: bool, on_start: Callable[[], None]
) -> Outcome:
    """Run a sync job in this thread. ``on_start`` is called once the run counts as started
    (the heartbeat may stop it from then on); ``hooks`` says whether global hooks exist."""
    call = prepared.call
    started = time.perf_counter()
    try:
        try:
            instance = _new_instance(prepared, held.record)
            held.thread_id = threading.get_ident()
            held.start(slot, prepared.max_runtime, instance, prepared)
            on_start()
            if _with_hooks(prepared.job_class, hooks):
                run_with_hooks(instance, call.args, call.kwargs, prepared.logger)
            else:  # what run_with_hooks does, without the empty hook calls
                instance.args, instance.kwargs = call.args, call.kwargs
                instance.perform(*call.args, **call.kwargs)
        finally:
            held.finish()
    except BaseException as exc:
        return _failed(held, prepared, started, exc)
    return Outcome(held, prepared, time.perf_counter() - started)


async def run_async(held: Held, prepared: Prepared, slot: int, *, hooks: bool) -> Outcome:
    """Run an async job as the current task of the running loop."""
    call = prepared.call
    started = time.perf_counter()
    try:
        try:
            instance = _new_instance(prepared, held.record)
            held.task = asyncio.current_task()
            held.loop = asyncio.get_running_loop()
            held.start(slot, prepared.max_runtime, instance, prepared)
            if _with_hooks(prepared.job_class, hooks):
                await arun_with_hooks(instance, call.args, call.kwargs, prepared.logger)
            else:
                instance.args, instance.kwargs = call.args, call.kwargs
                result = instance.perform(*call.args, **call.kwargs)
                if inspect.isawaitable(result):
                    await result
        finally:
            held.finish()
    except BaseException as exc:
        return _failed(held, prepared, started, exc)
    return Outcome(held, prepared, time.perf_counter() - started)


def _failed(held: Held, prepared: Prepared, started: float, exc: BaseException) -> Outcome:
    elapsed = time.perf_counter() - started
    reason = reason_of(exc, held)
    if reason is None and isinstance(exc, KeyboardInterrupt):
        # An embedding application without our signal handlers: Ctrl-C is a cold stop.
        reason = Reason.COLD_STOP
    if reason is None and isinstance(exc, asyncio.CancelledError):
        reason = Reason.COLD_STOP  # the loop itself is going away
    return Outcome(held, prepared, elapsed, error=exc, reason=reason)
