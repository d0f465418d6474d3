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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, ClassVar, Generic, ParamSpec, Protocol, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from queuebox import config, registry
from queuebox.backends.base import Adapter, JobRecord, NewJob
from queuebox.errors import ConfigurationError, InvalidArguments, InvalidSchedule
from queuebox.hooks import run_with_hooks
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


class _TransactionalAdapter(Protocol):
    def schedule_with(self, connection: Any, jobs: Sequence[NewJob]) -> list[JobRecord]: ...


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
    #: Overrides the configured store for this job.
    adapter: ClassVar[Adapter | None] = None
    #: Overrides the configured logger for this job.
    logger: ClassVar[logging.Logger | None] = None
    #: While a job with the same ``unique_key`` waits or runs, ``perform_later`` stores
    #: nothing and returns that job. By default the key is the name and the arguments.
    unique: ClassVar[bool] = False
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
        _check_recurring(cls, where)
        if cls.perform is not Job.perform:
            registry.register(cls)

    def perform(self, /, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define perform()")

    # Lifecycle hooks: override in a subclass. ``self.args`` / ``self.kwargs`` hold the call.
    def before_perform(self) -> None:
        """Runs before ``perform``; raising fails the attempt."""

    def after_perform(self) -> None:
        """Runs after ``perform``, whether it raised or not; raising is only logged."""

    def after_success(self) -> None:
        """Runs after ``perform`` returned; raising is only logged."""

    def after_failure(self, error: BaseException) -> None:
        """Runs after ``perform`` (or ``before_perform``) raised; ``self.will_retry`` says
        whether another attempt will follow. Raising is only logged."""

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
        for ``perform_later``; an exception propagates after the failure hooks ran."""
        encode_handler(cls.name, args, kwargs, max_bytes=config.get_settings().max_payload_bytes)
        return run_with_hooks(cls(), args, kwargs, cls.logger or config.get_logger())


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

    def perform_later_many(
        self, calls: Iterable[Sequence[Any] | tuple[Sequence[Any], Mapping[str, Any]]]
    ) -> list[JobRecord]:
        """Store many calls of this job in one batch.

        Each item is a sequence of positional arguments, or a pair ``(args, kwargs)`` where
        ``kwargs`` is a mapping. Every call is checked before anything is stored, so a bad
        one stores nothing.
        """
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
        return self._store(new_jobs) if new_jobs else []

    def _new_job(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], max_bytes: int | None = None
    ) -> NewJob:
        job_class = self.job_class
        if max_bytes is None:
            max_bytes = config.get_settings().max_payload_bytes
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
        )

    def _store(self, new_jobs: list[NewJob]) -> list[JobRecord]:
        adapter = self.job_class.adapter or config.get_adapter()
        if not adapter.capabilities.unique and any(job.unique_key for job in new_jobs):
            raise ConfigurationError(
                f"{self.job_class.name} is a unique job, and the {type(adapter).__name__} "
                "store does not support unique jobs"
            )
        if self.connection is None:
            records = adapter.schedule(new_jobs)
        else:
            schedule_with: Callable[[Any, Sequence[NewJob]], list[JobRecord]] | None = getattr(
                adapter, "schedule_with", None
            )
            if schedule_with is None:
                raise ConfigurationError(
                    f"the {type(adapter).__name__} store cannot enqueue inside your own "
                    "transaction; connection= works with the PostgreSQL store"
                )
            records = schedule_with(self.connection, new_jobs)
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

    def perform_now(self, /, *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = self.job_class.perform_now(*args, **kwargs)
        return result


def job(
    *,
    name: str | None = None,
    queue: str = "default",
    priority: int = 50,
    max_attempts: int | None = None,
) -> Callable[[Callable[P, R]], JobFunction[P, R]]:
    """Register a plain function as a job: ``@queuebox.job(queue="email")``."""

    def register(function: Callable[P, R]) -> JobFunction[P, R]:
        def perform(self: Job, /, *args: Any, **kwargs: Any) -> Any:
            return function(*args, **kwargs)

        attributes: dict[str, Any] = {
            "name": name or getattr(function, "__name__", ""),
            "queue": queue,
            "priority": priority,
            "max_attempts": max_attempts,
            "perform": perform,
            "__module__": getattr(function, "__module__", __name__),
            "__doc__": function.__doc__,
        }
        job_class = type(f"{attributes['name']}Job", (Job,), attributes)
        return JobFunction(function, job_class)

    return register


def _check_recurring(cls: type[Job], where: str) -> None:
    if cls.cron is None and cls.every is None:
        return
    if cls.cron is not None and cls.every is not None:
        raise ConfigurationError(f"{where}: give cron or every, not both")
    if cls.every is not None:
        seconds = check_wait(cls.every) if not isinstance(cls.every, bool) else 0.0
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
