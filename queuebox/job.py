"""Jobs: classes with a ``perform`` method, scheduled with ``perform_later``.

::

    class SendWelcomeEmailJob(Job):
        queue = "email"
        def perform(self, user_id): ...

    SendWelcomeEmailJob.perform_later(42)
    SendWelcomeEmailJob.set(wait=600, priority=10).perform_later(42)
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import math
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, ClassVar, Generic, ParamSpec, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from queuebox import config, registry
from queuebox.backends.base import (
    Adapter,
    AsyncScheduling,
    FlowControl,
    JobRecord,
    NewJob,
    RateLimit,
    TransactionalEnqueue,
)
from queuebox.errors import ConfigurationError, InvalidArguments, InvalidSchedule
from queuebox.hooks import arun_with_hooks, run_with_hooks
from queuebox.job_calls import CallCheck, call_check
from queuebox.payload import encode_handler
from queuebox.validation import (
    check_job_name,
    check_priority,
    check_queue_name,
    check_wait,
    check_wait_until,
)

__all__ = ["Job", "JobFunction", "JobOptions", "job"]

P = ParamSpec("P")
R = TypeVar("R")
_DEFAULT_OPTIONS: dict[type[Job], JobOptions] = {}
_HOOK_NAMES = ("before_perform", "after_perform", "after_success", "after_failure")


class Job:
    """Base class of every job. Subclasses define ``perform`` and may set the class options.

    A subclass that defines ``perform`` is registered under ``name`` (its class name unless
    set); a second class with the same name is an error. A subclass without ``perform`` is a
    base for other jobs and is not registered.
    """

    name: ClassVar[str] = "Job"
    queue: ClassVar[str] = "default"
    priority: ClassVar[int] = 50
    #: Overrides the worker's ``max_attempts`` for this job.
    max_attempts: ClassVar[int | None] = None
    #: Overrides the worker's ``max_runtime`` (seconds) for this job: a run that takes
    #: longer is stopped and retried (``queuebox.JobTimeout``).
    max_runtime: ClassVar[float | None] = None
    #: Whether ``perform`` is ``async def`` (set when the class is defined).
    is_async: ClassVar[bool] = False
    #: Overrides the configured store for this job.
    adapter: ClassVar[Adapter | None] = None
    #: Overrides the configured logger for this job.
    logger: ClassVar[logging.Logger | None] = None
    #: While a job with the same ``unique_key`` waits or runs, ``perform_later`` stores
    #: nothing and returns that job. By default the key is the name and the arguments.
    unique: ClassVar[bool] = False
    #: Flow control (stores that declare ``FlowControl``): at most this many runs at once,
    #: across every worker, per ``concurrency_key`` ...
    max_concurrency: ClassVar[int | None] = None
    #: ... and at most this many starts per window: ``"100/m"`` (``/s``, ``/m``, ``/h``).
    rate_limit: ClassVar[str | None] = None
    _rate: ClassVar[RateLimit | None] = None  # rate_limit, parsed when the class is defined
    #: Recurring: a cron expression (5 fields, or 6 with seconds) read in ``timezone`` ...
    cron: ClassVar[str | None] = None
    #: ... or a fixed interval in seconds (ticks aligned on multiples of it since 1970 UTC).
    every: ClassVar[float | timedelta | None] = None
    timezone: ClassVar[str] = "UTC"

    #: The stored record while a worker runs the job; ``None`` under ``perform_now``.
    record: JobRecord | None = None
    #: The arguments of the current run, for hooks.
    args: list[Any]
    kwargs: dict[str, Any]
    #: Whether a failure of this attempt will be retried (for ``after_failure``).
    will_retry: bool = False
    #: Set by the worker when someone cancelled this job while it runs: a job that checks
    #: it can stop cleanly before ``queuebox.JobCancelled`` is raised inside it.
    cancelled: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = cls.__name__
        where = f"job class {cls.__qualname__}"
        _with_context(where, check_job_name, cls.name)
        _with_context(where, check_queue_name, cls.queue)
        _with_context(where, check_priority, cls.priority)
        if cls.max_attempts is not None and (
            type(cls.max_attempts) is not int or cls.max_attempts < 1
        ):
            raise ConfigurationError(
                f"{where}: max_attempts={cls.max_attempts!r} must be a whole number >= 1"
            )
        _check_max_runtime(cls, where)
        _check_attribute_types(cls, where)
        _check_limits(cls, where)
        _check_async(cls, where)
        _check_recurring(cls, where)
        if cls.perform is not Job.perform:
            registry.register(cls)

    def perform(self, /, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define perform()")

    # Lifecycle hooks: override in a subclass. ``self.args`` / ``self.kwargs`` hold the call.
    def before_perform(self) -> Awaitable[None] | None:
        """Runs before ``perform``; raising fails the attempt."""

    def after_perform(self) -> Awaitable[None] | None:
        """Runs after ``perform``, whether it raised or not; raising is only logged."""

    def after_success(self) -> Awaitable[None] | None:
        """Runs after ``perform`` returned; raising is only logged."""

    def after_failure(self, error: BaseException) -> Awaitable[None] | None:
        """Runs after ``perform`` (or ``before_perform``) raised; ``self.will_retry`` says
        whether another attempt will follow. Raising is only logged."""

    def concurrency_key(self, /, *args: Any, **kwargs: Any) -> str:
        """The key ``max_concurrency`` and ``rate_limit`` count by (default: the job's name,
        so one limit for the whole class); override to limit per customer, per host..."""
        return self.name

    @classmethod
    def unique_key(cls, /, *args: Any, **kwargs: Any) -> str | None:
        """The key that makes a call unique, or ``None``; override for a custom key."""
        if not cls.unique:
            return None
        text = json.dumps([args, kwargs], sort_keys=True, separators=(",", ":"))
        return f"{cls.name}:{hashlib.sha256(text.encode()).hexdigest()[:32]}"

    @classmethod
    def set(
        cls,
        *,
        wait: float | timedelta | None = None,
        wait_until: datetime | None = None,
        queue: str | None = None,
        priority: int | None = None,
        connection: Any = None,
    ) -> JobOptions:
        """Options for the next ``perform_later``: when, where, and in whose transaction."""
        return JobOptions(job_class=cls).set(
            wait=wait, wait_until=wait_until, queue=queue, priority=priority, connection=connection
        )

    @classmethod
    def perform_later(cls, /, *args: Any, **kwargs: Any) -> JobRecord:
        """Store the job to run as soon as possible; return what was stored."""
        options = _DEFAULT_OPTIONS.get(cls)
        if options is None:  # JobOptions is frozen: one per class can be shared
            options = _DEFAULT_OPTIONS[cls] = JobOptions(job_class=cls)
        return options.perform_later(*args, **kwargs)

    @classmethod
    def perform_later_many(
        cls, calls: Iterable[Sequence[Any] | tuple[Sequence[Any], Mapping[str, Any]]]
    ) -> list[JobRecord]:
        """Store many calls at once; see ``JobOptions.perform_later_many``."""
        return JobOptions(job_class=cls).perform_later_many(calls)

    @classmethod
    def perform_now(cls, /, *args: Any, **kwargs: Any) -> Any:
        """Run the job inline with its hooks, without storing it. Arguments are checked as
        for ``perform_later``; an exception propagates after the failure hooks ran. An async
        job runs on an event loop of its own (inside a running loop, await
        ``aperform_now`` instead)."""
        cls._check_call(args, kwargs)
        if cls.is_async:
            _refuse_inside_a_loop(f"{cls.name}.perform_now", f"await {cls.name}.aperform_now")
            import asyncio  # noqa: PLC0415 - not at import: see _refuse_inside_a_loop

            return asyncio.run(cls.aperform_now(*args, **kwargs))
        return run_with_hooks(cls(), args, kwargs, cls.logger or config.get_logger())

    @classmethod
    async def aperform_now(cls, /, *args: Any, **kwargs: Any) -> Any:
        """``perform_now`` from async code: an async job runs on the running loop; a sync
        job runs in a worker thread, so that its blocking code never blocks the loop."""
        cls._check_call(args, kwargs)
        logger = cls.logger or config.get_logger()
        if cls.is_async:
            return await arun_with_hooks(cls(), args, kwargs, logger)
        import asyncio  # noqa: PLC0415 - not at import: see _refuse_inside_a_loop

        return await asyncio.to_thread(run_with_hooks, cls(), args, kwargs, logger)

    @classmethod
    async def aperform_later(cls, /, *args: Any, **kwargs: Any) -> JobRecord:
        """``perform_later`` from async code, without blocking the event loop."""
        return await JobOptions(job_class=cls).aperform_later(*args, **kwargs)

    @classmethod
    async def aperform_later_many(
        cls, calls: Iterable[Sequence[Any] | tuple[Sequence[Any], Mapping[str, Any]]]
    ) -> list[JobRecord]:
        """``perform_later_many`` from async code, without blocking the event loop."""
        return await JobOptions(job_class=cls).aperform_later_many(calls)

    @classmethod
    def _check_call(cls, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Refuse arguments that ``perform`` cannot take, or that are not JSON values."""
        checker = _CALL_CHECKS.get(cls)
        if checker is None:
            checker = _CALL_CHECKS[cls] = call_check(cls)
        checker(args, kwargs)
        encode_handler(cls.name, args, kwargs, max_bytes=config.get_settings().max_payload_bytes)


@dataclass(frozen=True)
class JobOptions:
    """A job class plus scheduling options; ``Job.set(...)`` returns one."""

    job_class: type[Job]
    wait: float | None = None
    wait_until: datetime | None = None
    queue: str | None = None
    priority: int | None = None
    connection: Any = None

    def set(
        self,
        *,
        wait: float | timedelta | None = None,
        wait_until: datetime | None = None,
        queue: str | None = None,
        priority: int | None = None,
        connection: Any = None,
    ) -> JobOptions:
        changes: dict[str, Any] = {}
        if wait is not None:
            changes["wait"] = check_wait(wait)
        if wait_until is not None:
            changes["wait_until"] = check_wait_until(wait_until)
        if queue is not None:
            changes["queue"] = check_queue_name(queue)
        if priority is not None:
            changes["priority"] = check_priority(priority)
        if connection is not None:
            changes["connection"] = connection
        options = replace(self, **changes)
        if options.wait is not None and options.wait_until is not None:
            raise InvalidSchedule("give wait= or wait_until=, not both")
        return options

    def perform_later(self, /, *args: Any, **kwargs: Any) -> JobRecord:
        return self._store([self._new_job(args, kwargs)])[0]

    async def aperform_later(self, /, *args: Any, **kwargs: Any) -> JobRecord:
        """``perform_later`` for asyncio code: the same checks and the same stored record,
        through the store's asyncio client (``AsyncScheduling``) or, for a store without
        one, a worker thread; the event loop is never blocked."""
        return (await self._astore([self._new_job(args, kwargs)]))[0]

    def perform_later_many(
        self, calls: Iterable[Sequence[Any] | tuple[Sequence[Any], Mapping[str, Any]]]
    ) -> list[JobRecord]:
        """Store many calls of this job in one batch.

        Each item is a sequence of positional arguments, or a pair ``(args, kwargs)`` where
        ``kwargs`` is a mapping. Every call is checked before anything is stored, so a bad
        one stores nothing.
        """
        new_jobs = self._new_jobs(calls)
        return self._store(new_jobs) if new_jobs else []

    async def aperform_later_many(
        self, calls: Iterable[Sequence[Any] | tuple[Sequence[Any], Mapping[str, Any]]]
    ) -> list[JobRecord]:
        """``perform_later_many`` for asyncio code (see ``aperform_later``)."""
        new_jobs = self._new_jobs(calls)
        return await self._astore(new_jobs) if new_jobs else []

    def _new_jobs(
        self, calls: Iterable[Sequence[Any] | tuple[Sequence[Any], Mapping[str, Any]]]
    ) -> list[NewJob]:
        new_jobs = []
        max_bytes = config.get_settings().max_payload_bytes
        for index, call in enumerate(calls):
            if (
                isinstance(call, tuple)
                and len(call) == 2
                and isinstance(call[0], list | tuple)
                and isinstance(call[1], Mapping)
            ):
                args, kwargs = tuple(call[0]), dict(call[1])
            elif isinstance(call, list | tuple):
                args, kwargs = tuple(call), {}
            else:
                raise InvalidArguments(
                    f"calls[{index}]: give a list of arguments or an (args, kwargs) pair, "
                    f"not {type(call).__name__}"
                )
            try:
                new_jobs.append(self._new_job(args, kwargs, max_bytes))
            except InvalidArguments as exc:
                raise type(exc)(f"calls[{index}]: {exc}") from None
        return new_jobs

    def _new_job(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], max_bytes: int | None = None
    ) -> NewJob:
        job_class = self.job_class
        if max_bytes is None:
            max_bytes = config.get_settings().max_payload_bytes
        checker = _CALL_CHECKS.get(job_class)
        if checker is None:
            checker = _CALL_CHECKS[job_class] = call_check(job_class)
        checker(args, kwargs)
        handler = encode_handler(job_class.name, args, kwargs, max_bytes=max_bytes)
        unique_key = job_class.unique_key(*args, **kwargs)
        if unique_key is not None and (not isinstance(unique_key, str) or not unique_key):
            raise ConfigurationError(
                f"{job_class.__qualname__}.unique_key() returned {unique_key!r}: "
                "return a non-empty string or None"
            )
        return NewJob(
            name=job_class.name,
            handler=handler,
            queue=self.queue or job_class.queue,
            priority=self.priority or job_class.priority,
            delay=self.wait or 0.0,
            run_at=self.wait_until,
            unique_key=unique_key,
            **flow_limits(job_class, args, kwargs),
        )

    def _adapter_for(self, new_jobs: list[NewJob]) -> Adapter:
        adapter = self.job_class.adapter or config.get_adapter()
        if any(job.limit_key is not None for job in new_jobs) and not isinstance(
            adapter, FlowControl
        ):
            raise ConfigurationError(
                f"{self.job_class.name} sets max_concurrency or rate_limit, and the "
                f"{type(adapter).__name__} store cannot enforce limits (it does not declare "
                "FlowControl)"
            )
        if not adapter.capabilities.unique and any(job.unique_key for job in new_jobs):
            raise ConfigurationError(
                f"{self.job_class.name} is a unique job, and the {type(adapter).__name__} "
                "store does not support unique jobs"
            )
        return adapter

    def _store(self, new_jobs: list[NewJob]) -> list[JobRecord]:
        adapter = self._adapter_for(new_jobs)
        if self.connection is None:
            records = adapter.schedule(new_jobs)
        elif isinstance(adapter, TransactionalEnqueue):
            records = adapter.schedule_with(self.connection, new_jobs)
        else:
            raise ConfigurationError(
                f"the {type(adapter).__name__} store cannot enqueue inside your own "
                "transaction; connection= works with stores that declare TransactionalEnqueue "
                "(PostgreSQL)"
            )
        return self._logged(records)

    async def _astore(self, new_jobs: list[NewJob]) -> list[JobRecord]:
        if self.connection is not None:
            raise ConfigurationError(
                f"{self.job_class.name}: connection= is for perform_later inside your own "
                "transaction (a sync connection); aperform_later does not take it"
            )
        adapter = self._adapter_for(new_jobs)
        if isinstance(adapter, AsyncScheduling):
            records = await adapter.aschedule(new_jobs)
        else:
            import asyncio  # noqa: PLC0415 - not at import: see _refuse_inside_a_loop

            records = await asyncio.to_thread(adapter.schedule, new_jobs)
        return self._logged(records)

    def _logged(self, records: list[JobRecord]) -> list[JobRecord]:
        logger = self.job_class.logger or config.get_logger()
        if not logger.isEnabledFor(logging.DEBUG):
            return records  # skip formatting what would not be logged (run_at.isoformat())
        for record in records:
            logger.debug(
                "scheduled %s id=%s queue=%s priority=%s run_at=%s",
                record.name,
                record.id,
                record.queue,
                record.priority,
                record.run_at.isoformat(),
            )
        return records


class JobFunction(Generic[P, R]):
    """A plain function registered as a job by ``@queuebox.job``; still callable directly."""

    def __init__(self, function: Callable[P, R], job_class: type[Job]) -> None:
        self.function = function
        self.job_class = job_class
        self.__doc__ = function.__doc__
        self.__name__ = getattr(function, "__name__", job_class.name)
        self.__wrapped__ = function

    def __call__(self, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.function(*args, **kwargs)

    def set(
        self,
        *,
        wait: float | timedelta | None = None,
        wait_until: datetime | None = None,
        queue: str | None = None,
        priority: int | None = None,
        connection: Any = None,
    ) -> JobOptions:
        return self.job_class.set(
            wait=wait, wait_until=wait_until, queue=queue, priority=priority, connection=connection
        )

    def perform_later(self, /, *args: P.args, **kwargs: P.kwargs) -> JobRecord:
        return self.job_class.perform_later(*args, **kwargs)

    def perform_later_many(
        self, calls: Iterable[Sequence[Any] | tuple[Sequence[Any], Mapping[str, Any]]]
    ) -> list[JobRecord]:
        return self.job_class.perform_later_many(calls)

    def perform_now(self, /, *args: P.args, **kwargs: P.kwargs) -> Any:
        return self.job_class.perform_now(*args, **kwargs)

    async def aperform_later(self, /, *args: P.args, **kwargs: P.kwargs) -> JobRecord:
        return await self.job_class.aperform_later(*args, **kwargs)

    async def aperform_later_many(
        self, calls: Iterable[Sequence[Any] | tuple[Sequence[Any], Mapping[str, Any]]]
    ) -> list[JobRecord]:
        return await self.job_class.aperform_later_many(calls)

    async def aperform_now(self, /, *args: P.args, **kwargs: P.kwargs) -> Any:
        return await self.job_class.aperform_now(*args, **kwargs)


def job(
    *,
    name: str | None = None,
    queue: str = "default",
    priority: int = 50,
    max_attempts: int | None = None,
    max_runtime: float | None = None,
) -> Callable[[Callable[P, R]], JobFunction[P, R]]:
    """Register a plain function (or ``async def`` function) as a job:
    ``@queuebox.job(queue="email")``."""

    def register(function: Callable[P, R]) -> JobFunction[P, R]:
        perform: Callable[..., Any]
        if inspect.iscoroutinefunction(function):

            async def perform(self: Job, /, *args: Any, **kwargs: Any) -> Any:
                return await function(*args, **kwargs)

        else:

            def perform(self: Job, /, *args: Any, **kwargs: Any) -> Any:
                return function(*args, **kwargs)

        attributes: dict[str, Any] = {
            "name": name or getattr(function, "__name__", ""),
            "queue": queue,
            "priority": priority,
            "max_attempts": max_attempts,
            "max_runtime": max_runtime,
            "perform": perform,
            "__wrapped_function__": staticmethod(function),
            "__module__": getattr(function, "__module__", __name__),
            "__doc__": function.__doc__,
        }
        job_class = type(f"{attributes['name']}Job", (Job,), attributes)
        return JobFunction(function, job_class)

    return register


_CALL_CHECKS: dict[type[Job], CallCheck] = {}
_MAX_LIMIT_KEY = 200


def _check_limits(cls: type[Job], where: str) -> None:
    limit = cls.max_concurrency
    if limit is not None and (type(limit) is not int or limit < 1):
        raise ConfigurationError(f"{where}: max_concurrency={limit!r} must be a whole number >= 1")
    if cls.rate_limit is None:
        cls._rate = None
        return
    try:
        cls._rate = RateLimit.parse(cls.rate_limit)
    except ValueError as exc:
        raise ConfigurationError(f"{where}: {exc}") from None


def flow_limits(
    job_class: type[Job], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """The ``NewJob`` fields of a call's flow-control limits (none for most jobs)."""
    if job_class.max_concurrency is None and job_class._rate is None:
        return {}
    key = job_class().concurrency_key(*args, **kwargs)
    if not isinstance(key, str) or not 1 <= len(key) <= _MAX_LIMIT_KEY:
        raise ConfigurationError(
            f"{job_class.__qualname__}.concurrency_key() returned {key!r}: return a string of "
            f"1 to {_MAX_LIMIT_KEY} characters"
        )
    return {
        "limit_key": key,
        "max_concurrency": job_class.max_concurrency,
        "rate_limit": job_class._rate,
    }


def _check_max_runtime(cls: type[Job], where: str) -> None:
    value = cls.max_runtime
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{where}: max_runtime={value!r} must be seconds (a number)")
    if not math.isfinite(value) or value <= 0:
        raise ConfigurationError(f"{where}: max_runtime={value!r} must be seconds above 0")


def _check_attribute_types(cls: type[Job], where: str) -> None:
    """Attributes that are used as they are, not parsed: a wrong type must fail here, not
    later (``unique = "false"`` is a true string and made every call unique; a logger or
    adapter of the wrong kind failed only inside a worker or at ``perform_later``)."""
    if type(cls.unique) is not bool:
        raise ConfigurationError(f"{where}: unique={cls.unique!r} must be True or False")
    if cls.logger is not None and not isinstance(
        cls.logger, logging.Logger | logging.LoggerAdapter
    ):
        raise ConfigurationError(
            f"{where}: logger={cls.logger!r} must be a logging.Logger "
            "(logging.getLogger(name)) or None"
        )
    if cls.adapter is not None and not isinstance(cls.adapter, Adapter):
        raise ConfigurationError(
            f"{where}: adapter={cls.adapter!r} must be a store (queuebox.backends.from_url(url)) "
            "or None for the configured one"
        )


def _check_async(cls: type[Job], where: str) -> None:
    """``async def perform`` makes an async job, whose hooks may be async too; a sync job's
    own hooks must be sync (its worker thread has no event loop to await them on)."""
    cls.is_async = inspect.iscoroutinefunction(cls.perform)
    if cls.is_async:
        return
    for hook in _HOOK_NAMES:
        if inspect.iscoroutinefunction(getattr(cls, hook)):
            raise ConfigurationError(
                f"{where}: {hook} is async but perform is not; make perform async def too, "
                "or the hook a plain def"
            )


def _refuse_inside_a_loop(what: str, instead: str) -> None:
    # asyncio is imported where a call needs it, not with queuebox: it brings ssl and
    # concurrent.futures along (`import queuebox` took 101 ms with it, 86 ms without),
    # which an application without asyncio (and every queuebox command) paid for nothing.
    # A process that never imported it runs no asyncio loop.
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise ConfigurationError(
        f"{what} runs an async job on an event loop of its own, and one is already running "
        f"in this thread: use {instead}(...) instead"
    )


def _check_recurring(cls: type[Job], where: str) -> None:
    if cls.cron is None and cls.every is None:
        return
    if cls.cron is not None and cls.every is not None:
        raise ConfigurationError(f"{where}: give cron or every, not both")
    if cls.every is not None:
        try:
            seconds = check_wait(cls.every) if not isinstance(cls.every, bool) else 0.0
        except InvalidSchedule as exc:
            # check_wait speaks of perform_later's wait=; this is the class's every=.
            raise ConfigurationError(
                f"{where}: every={cls.every!r} is not valid: give seconds above 0 (a number "
                f"or a datetime.timedelta) ({exc})"
            ) from None
        if seconds <= 0:
            raise ConfigurationError(f"{where}: every={cls.every!r} must be seconds above 0")
    else:
        try:
            from croniter import croniter  # noqa: PLC0415 - an optional extra
        except ImportError:
            raise ConfigurationError(
                f"{where}: cron schedules need croniter: pip install 'queuebox[cron]'"
            ) from None
        if not isinstance(cls.cron, str) or not croniter.is_valid(cls.cron):
            raise ConfigurationError(
                f"{where}: cron={cls.cron!r} is not a valid cron expression "
                "(e.g. '*/5 * * * *' for every five minutes)"
            )
    try:
        ZoneInfo(cls.timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigurationError(
            f"{where}: timezone={cls.timezone!r} is not a known time zone (e.g. 'Europe/Paris')"
        ) from None
    if cls.perform is not Job.perform:
        try:
            inspect.signature(cls.perform).bind(None)
        except TypeError:
            raise ConfigurationError(
                f"{where}: a recurring job's perform() takes no arguments "
                "(self.record.run_at is the tick it runs for)"
            ) from None


def _with_context(where: str, check: Callable[[Any], Any], value: Any) -> None:
    try:
        check(value)
    except ConfigurationError:
        raise
    except Exception as exc:
        raise type(exc)(f"{where}: {exc}") from None
