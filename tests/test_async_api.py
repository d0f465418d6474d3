"""asyncio applications: enqueue without blocking the loop, and async jobs run inline."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest

import queuebox
from queuebox import Job, JobState
from queuebox.backends.base import Adapter
from queuebox.backends.memory import MemoryAdapter
from queuebox.errors import ConfigurationError, InvalidArguments

events: list[Any] = []


@pytest.fixture(autouse=True)
def _clear_events() -> None:
    events.clear()


class Notify(Job):
    queue = "async"

    async def before_perform(self) -> None:
        events.append("before")

    async def perform(self, user_id: int, *, loud: bool = False) -> int:
        await asyncio.sleep(0)
        events.append(("perform", user_id, loud))
        return user_id * 2

    async def after_success(self) -> None:
        events.append("after_success")


class Blocking(Job):
    def perform(self) -> str:
        events.append(threading.current_thread().name)
        return "done"


@queuebox.job(queue="async")
async def ping(host: str) -> str:
    await asyncio.sleep(0)
    return f"pong {host}"


def test_an_async_perform_makes_an_async_job() -> None:
    assert Notify.is_async and ping.job_class.is_async and not Blocking.is_async


def test_aperform_later_stores_what_perform_later_stores(any_store: Adapter) -> None:
    async def enqueue() -> list[Any]:
        first = await Notify.aperform_later(7, loud=True)
        second = await Notify.set(priority=3, wait=60).aperform_later(8)
        many = await ping.aperform_later_many([["a"], ["b"]])
        return [first, second, *many]

    first, second, *many = asyncio.run(enqueue())
    same = Notify.perform_later(7, loud=True)
    assert json.loads(first.handler) == json.loads(same.handler)
    assert (first.queue, first.priority, first.state) == ("async", 50, JobState.READY)
    assert (second.priority, second.state) == (3, JobState.SCHEDULED)
    assert [json.loads(r.handler)["args"] for r in many] == [["a"], ["b"]]
    for record in (first, second, *many):
        assert any_store.get(record.id) == record


def test_aperform_later_checks_arguments_before_storing(memory_store: MemoryAdapter) -> None:
    with pytest.raises(InvalidArguments, match="missing a required argument"):
        asyncio.run(Notify.aperform_later())
    with pytest.raises(InvalidArguments, match="not a JSON value"):
        asyncio.run(Notify.aperform_later(object()))
    assert memory_store.counts() == []


def test_aperform_later_does_not_block_the_event_loop(memory_store: MemoryAdapter) -> None:
    """A store without an asyncio client is called from a worker thread: other tasks run
    while it works."""
    store = memory_store
    entered, leave = threading.Event(), threading.Event()
    original = store.schedule

    def slow_schedule(jobs: Any) -> Any:
        entered.set()
        leave.wait(5)
        return original(jobs)

    store.schedule = slow_schedule  # type: ignore[method-assign]

    async def main() -> list[str]:
        ticks: list[str] = []
        enqueue = asyncio.create_task(Notify.aperform_later(1))
        while not entered.is_set():
            await asyncio.sleep(0.01)
        ticks.append("loop ran while the store worked")
        leave.set()
        await enqueue
        return ticks

    assert asyncio.run(main()) == ["loop ran while the store worked"]


def test_perform_now_runs_an_async_job_with_its_async_hooks() -> None:
    assert Notify.perform_now(5) == 10
    assert events == ["before", ("perform", 5, False), "after_success"]
    assert ping.perform_now("h") == "pong h"


def test_aperform_now_inside_a_loop() -> None:
    async def main() -> tuple[int, str]:
        return await Notify.aperform_now(2, loud=True), await Blocking.aperform_now()

    doubled, done = asyncio.run(main())
    assert (doubled, done) == (4, "done")
    assert ("perform", 2, True) in events
    assert events[-1] != threading.main_thread().name, "a sync job ran on the event loop"


def test_perform_now_of_an_async_job_inside_a_loop_says_what_to_do() -> None:
    async def main() -> None:
        Notify.perform_now(1)

    with pytest.raises(ConfigurationError, match=r"await Notify\.aperform_now"):
        asyncio.run(main())


def test_a_sync_job_cannot_have_an_async_hook() -> None:
    with pytest.raises(ConfigurationError, match="after_success is async but perform is not"):

        class Mixed(Job):
            def perform(self) -> None: ...

            async def after_success(self) -> None: ...


def test_an_async_global_hook_runs_for_sync_and_async_jobs() -> None:
    async def hook(job: Job) -> None:
        events.append(("hook", job.name))

    queuebox.add_hook("after_success", hook)
    Blocking.perform_now()
    Notify.perform_now(1)
    assert ("hook", "Blocking") in events and ("hook", "Notify") in events


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "10", True])
def test_max_runtime_on_a_job_class_is_checked(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="max_runtime"):
        type("BadRuntime", (Job,), {"max_runtime": bad, "perform": lambda self: None})
