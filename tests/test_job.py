"""The scheduling API of DESIGN.md section 2."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import queuebox
from queuebox import Job, JobState, registry
from queuebox.backends.memory import MemoryAdapter
from queuebox.errors import ConfigurationError, DuplicateJobName, InvalidPriority, UnknownJob

performed: list[tuple[Any, ...]] = []


def handler_of(record: queuebox.JobRecord) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(record.handler)
    return data


def test_perform_later_stores_name_and_arguments(memory_store: MemoryAdapter) -> None:
    class SendWelcomeEmailJob(Job):
        queue = "email"
        priority = 20

        def perform(self, user_id: int, *, greeting: str = "hi") -> None:
            performed.append((user_id, greeting))

    record = SendWelcomeEmailJob.perform_later(42, greeting="hello")
    assert (record.name, record.queue, record.priority) == ("SendWelcomeEmailJob", "email", 20)
    assert handler_of(record) == {
        "name": "SendWelcomeEmailJob",
        "args": [42],
        "kwargs": {"greeting": "hello"},
    }
    assert "module" not in record.handler and __name__ not in record.handler
    assert memory_store.get(record.id) == record
    assert record.state is JobState.READY


def test_perform_later_on_an_instance(memory_store: MemoryAdapter) -> None:
    class InstanceJob(Job):
        def perform(self) -> None: ...

    record = InstanceJob().perform_later()
    assert record.name == "InstanceJob"
    assert memory_store.get(record.id) is not None


def test_set_wait_seconds_and_timedelta(memory_store: MemoryAdapter) -> None:
    class LaterJob(Job):
        def perform(self) -> None: ...

    now = memory_store.now()
    in_ten = LaterJob.set(wait=600).perform_later()
    in_hour = LaterJob.set(wait=timedelta(hours=1)).perform_later()
    assert abs((in_ten.run_at - now).total_seconds() - 600) < 5
    assert abs((in_hour.run_at - now).total_seconds() - 3600) < 5
    assert in_ten.state is JobState.SCHEDULED


def test_set_wait_until(memory_store: MemoryAdapter) -> None:
    class AtJob(Job):
        def perform(self) -> None: ...

    when = datetime(2027, 1, 1, 3, tzinfo=UTC)
    assert AtJob.set(wait_until=when).perform_later().run_at == when


def test_set_queue_and_priority_override_the_class(memory_store: MemoryAdapter) -> None:
    class Configurable(Job):
        queue = "email"

        def perform(self) -> None: ...

    record = Configurable.set(queue="urgent", priority=1).perform_later()
    assert (record.queue, record.priority) == ("urgent", 1)
    chained = Configurable.set(queue="urgent").set(priority=3).perform_later()
    assert (chained.queue, chained.priority) == ("urgent", 3)
    assert Configurable.perform_later().queue == "email"


def test_perform_now_runs_inline_without_storing(memory_store: MemoryAdapter) -> None:
    class InlineJob(Job):
        def perform(self, a: int, b: int) -> int:
            return a + b

    assert InlineJob.perform_now(2, 3) == 5
    assert memory_store.counts() == []


def test_function_job(memory_store: MemoryAdapter) -> None:
    @queuebox.job(queue="email", priority=7)
    def send_digest(user_id: int) -> str:
        return f"digest for {user_id}"

    assert send_digest(1) == "digest for 1"
    assert send_digest.perform_now(2) == "digest for 2"
    record = send_digest.perform_later(42)
    assert (record.name, record.queue, record.priority) == ("send_digest", "email", 7)
    assert handler_of(record)["args"] == [42]
    assert registry.get("send_digest") is send_digest.job_class
    assert send_digest.set(wait=60).perform_later(1).state is JobState.SCHEDULED


def test_function_job_with_an_explicit_name(memory_store: MemoryAdapter) -> None:
    @queuebox.job(name="reports.nightly")
    def nightly() -> None: ...

    assert nightly.perform_later().name == "reports.nightly"


def test_duplicate_name_is_an_error_at_definition() -> None:
    class Twice(Job):
        def perform(self) -> None: ...

    with pytest.raises(DuplicateJobName, match="Twice"):

        class Twice(Job):  # type: ignore[no-redef]
            def perform(self) -> None: ...


def test_explicit_name_resolves_a_clash() -> None:
    class Clash(Job):
        def perform(self) -> None: ...

    class OtherClash(Job):
        name = "Clash2"

        def perform(self) -> None: ...

    assert registry.get("Clash2") is OtherClash


def test_base_class_without_perform_is_not_registered() -> None:
    class EmailBase(Job):
        queue = "email"

    class Welcome(EmailBase):
        def perform(self) -> None: ...

    assert "EmailBase" not in registry.names()
    assert Welcome.queue == "email"
    with pytest.raises(UnknownJob, match="EmailBase"):
        registry.get("EmailBase")


def test_bad_class_options_fail_at_definition() -> None:
    with pytest.raises(InvalidPriority, match="BadPriority"):

        class BadPriority(Job):
            priority = 0

            def perform(self) -> None: ...

    with pytest.raises(ConfigurationError, match="max_attempts"):

        class BadAttempts(Job):
            max_attempts = 0

            def perform(self) -> None: ...


def test_perform_later_many(memory_store: MemoryAdapter) -> None:
    class BulkJob(Job):
        def perform(self, n: int, label: str = "") -> None: ...

    records = BulkJob.perform_later_many([[1], (2,), ([3], {"label": "x"})])
    assert [handler_of(r)["args"] for r in records] == [[1], [2], [3]]
    assert handler_of(records[2])["kwargs"] == {"label": "x"}
    assert BulkJob.set(queue="bulk").perform_later_many([[4]])[0].queue == "bulk"
    assert BulkJob.perform_later_many([]) == []


def test_job_class_adapter_override(memory_store: MemoryAdapter) -> None:
    own_store = MemoryAdapter()

    class Routed(Job):
        adapter = own_store

        def perform(self) -> None: ...

    record = Routed.perform_later()
    assert own_store.get(record.id) is not None
    assert memory_store.counts() == []


def test_connection_needs_a_transactional_store(memory_store: MemoryAdapter) -> None:
    class Tx(Job):
        def perform(self) -> None: ...

    with pytest.raises(ConfigurationError, match="transaction"):
        Tx.set(connection=object()).perform_later()
    assert memory_store.counts() == []


@pytest.mark.parametrize(
    ("attribute", "value", "says"),
    [
        ("unique", "false", "unique='false' must be True or False"),
        ("unique", 1, "unique=1 must be True or False"),
        ("logger", "queuebox.jobs", "must be a logging.Logger"),
        ("adapter", "sqlite:///jobs.db", "must be a store"),
    ],
)
def test_a_job_class_attribute_of_the_wrong_kind_fails_at_its_definition(
    attribute: str, value: object, says: str
) -> None:
    # unique = "false" is a true string: every call of the class was made unique.
    with pytest.raises(ConfigurationError, match=f"job class .*{says}"):
        type("Wrong" + attribute.title(), (Job,), {attribute: value, "perform": lambda self: None})


def test_a_logger_adapter_is_a_logger_for_a_job_class() -> None:
    import logging

    adapted = logging.LoggerAdapter(logging.getLogger("queuebox.test"), {"tenant": "t"})
    with registry.isolated():
        made: Any = type("AdaptedLogger", (Job,), {"logger": adapted, "perform": lambda s: None})
        assert made.logger is adapted and registry.get("AdaptedLogger") is made
