"""Many jobs in flight in one worker process (``concurrency`` above 1).

An event loop in the worker's thread keeps up to ``concurrency`` runs going: async jobs are
tasks of that loop, sync jobs run on a pool of as many threads (a sync job's blocking code
never runs on the loop). Store calls block, so they run on a thread of their own, and an idle
worker waits for new work on another; the loop itself never waits on the store.

* Claims fill the free slots: each claim asks for as many jobs as there are free slots, in
  one round trip, and carries the successes that finished since the last claim.
* The heartbeat renews every held lock in one round trip per lease/3, stops runs past their
  ``max_runtime`` and cancelled ones (``queuebox.runner.heartbeat``).
* A warm stop claims nothing more, gives back what was claimed and not started, and waits
  for every run in flight; a cold stop stops them all and gives every lock back.
* A run that would not stop (``stop_grace``): the loop claims nothing more, lets the other
  runs finish, then the process records the stuck run's outcome and ends itself
  (``queuebox.runner.stuck``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from queuebox.backends.base import JobRecord
from queuebox.runner.execution import Outcome, global_hooks, run_async, run_sync
from queuebox.runner.outcomes import WorkSummary
from queuebox.runner.runs import Held, Phase, Reason
from queuebox.runner.stuck import end_process

if TYPE_CHECKING:
    from queuebox.runner.worker import Worker

__all__ = ["ConcurrentLoop"]

T = TypeVar("T")
_COLD_STOP_WAIT = 2.0  # seconds a cold stop waits for interrupted runs before giving up


class ConcurrentLoop:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.capacity = worker.settings.concurrency
        self.logger: logging.Logger = worker.logger
        self._slots = list(range(self.capacity, 0, -1))  # free slot numbers, 1 on top
        self._running: dict[asyncio.Future[Outcome], Held] = {}
        self._backlog: collections.deque[Held] = collections.deque()
        self._finished: collections.deque[asyncio.Future[Outcome]] = collections.deque()
        self._wake = asyncio.Event()
        self._threads = ThreadPoolExecutor(self.capacity, thread_name_prefix="queuebox-slot")
        self._store = ThreadPoolExecutor(1, thread_name_prefix="queuebox-store")
        self._waiter_thread = ThreadPoolExecutor(1, thread_name_prefix="queuebox-wait")
        self._waiter: asyncio.Future[list[JobRecord]] | None = None
        self._stuck: list[Held] = []
        self._stuck_taken = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- the loop ---------------------------------------------------------------------------

    def run(
        self,
        *,
        until_empty: bool,
        progress: Callable[[WorkSummary], None] | None = None,
        give_up_after: float | None = None,
    ) -> WorkSummary:
        loop = self._loop = asyncio.new_event_loop()
        self.worker.on_stuck = self._report_stuck
        try:
            loop.run_until_complete(self._main(until_empty, progress, give_up_after))
        finally:
            try:
                if self._stuck:
                    self._stuck_taken.set()
                    end_process(self.worker, self._stuck[0])  # exits the process
                self.worker.finish()
            finally:
                loop.close()
                for pool in (self._threads, self._store, self._waiter_thread):
                    pool.shutdown(wait=False, cancel_futures=True)
        return self.worker.summary

    async def _main(
        self,
        until_empty: bool,
        progress: Callable[[WorkSummary], None] | None,
        give_up_after: float | None,
    ) -> None:
        worker, stop = self.worker, self.worker.stop
        drained = False
        try:
            while True:
                if stop.cold.is_set() and not self._stuck:
                    await self._cold_stop()
                    return
                if stop.stopping:
                    await self._drain()
                    return
                free = self.capacity - len(self._running) - len(self._backlog)
                if free > 0 and self._waiter is None:
                    if not until_empty:
                        await self._in_store(worker.schedule_recurring)
                    try:
                        jobs = await self._in_store(
                            worker.next_held, free, ahead=False, give_up_after=give_up_after
                        )
                    except BaseException:
                        await self._drain()  # let the runs in flight finish first
                        raise
                    self._backlog.extend(jobs)
                    drained = len(jobs) < free
                self._start_runs()
                if until_empty and drained and not self._running and not self._backlog:
                    return
                if drained and not until_empty and len(self._running) < self.capacity:
                    self._ensure_waiter()
                await self._next_event()
                if self._take_finished() and progress is not None:
                    progress(worker.summary)
                if self._take_woken():
                    drained = False
        finally:
            await self._stop_waiter()

    def _hold(self, jobs: list[JobRecord]) -> None:
        held = self.worker.held
        self._backlog.extend(held.get(record.id) or held.hold(record) for record in jobs)

    def _start_runs(self) -> None:
        hooks = global_hooks() if self._backlog else False
        while self._backlog and self._slots:
            held = self._backlog.popleft()
            if self.worker.stop.stopping:
                self._backlog.appendleft(held)
                return
            prepared = self.worker.admit(held)
            if prepared is None:
                continue
            slot = self._slots.pop()
            self.worker.log_start(prepared, held, slot)
            future: asyncio.Future[Outcome]
            loop = asyncio.get_running_loop()
            if prepared.job_class.is_async:
                future = loop.create_task(run_async(held, prepared, slot, hooks=hooks))
            else:
                future = loop.run_in_executor(
                    self._threads, _run_sync_in_slot, held, prepared, slot, hooks
                )
            self._running[future] = held
            future.add_done_callback(self._on_done)

    def _on_done(self, future: asyncio.Future[Outcome]) -> None:
        self._finished.append(future)
        self._wake.set()

    def _take_finished(self) -> bool:
        taken = False
        while self._finished:
            future = self._finished.popleft()
            held = self._running.pop(future)
            self._slots.append(held.slot)
            taken = True
            if future.cancelled() or future.exception() is not None:
                self.logger.error("a run of %s ended without an outcome", held.record.id)
                self._store.submit(self.worker.release, [held.record])
                continue
            outcome = future.result()
            if outcome.error is None and outcome.reason is None:
                self.worker.record(outcome)  # a success writes nothing yet: no store call
            else:
                self._store.submit(self.worker.record, outcome)
        return taken

    async def _next_event(self) -> None:
        if self._stuck:
            self._stuck_taken.set()  # the loop runs: it drains the other runs itself
        if self._finished or self._waiter_done():
            return
        self._wake.clear()
        with contextlib.suppress(TimeoutError):  # then look at the stop flag again
            await asyncio.wait_for(self._wake.wait(), timeout=1.0)

    # -- waiting for new work while slots are free ------------------------------------------

    def _ensure_waiter(self) -> None:
        if self._waiter is not None:
            return
        free = self.capacity - len(self._running)
        loop = asyncio.get_running_loop()
        self._waiter = loop.run_in_executor(self._waiter_thread, self.worker.wait_for_work, free)
        self._waiter.add_done_callback(lambda _: self._wake.set())

    def _waiter_done(self) -> bool:
        return self._waiter is not None and self._waiter.done()

    def _take_woken(self) -> bool:
        """Jobs that came with a wake-up join the backlog; ``True`` when the waiter ended
        (work may be there: claim again)."""
        waiter = self._waiter
        if waiter is None or not waiter.done():
            return False
        self._waiter = None
        self._hold(_jobs_of(waiter))
        return True

    async def _stop_waiter(self) -> None:
        """Wait for the waiter (it returns within a second of a stop) and give back what it
        claimed, so that nothing stays locked after the loop."""
        waiter, self._waiter = self._waiter, None
        if waiter is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout=5.0)
        except TimeoutError:
            self.logger.warning("the idle wait did not return; what it claims comes back later")
            return
        self.worker.release(_jobs_of(waiter))

    # -- stops ------------------------------------------------------------------------------

    async def _drain(self) -> None:
        """A warm stop: give back what never started, let every run finish (a stuck run
        excepted: the process ends after the others)."""
        self.worker.release([held.record for held in self._backlog])
        self._backlog.clear()
        while any(not held.stuck for held in self._running.values()):
            if self.worker.stop.cold.is_set() and not self._stuck:
                await self._cold_stop()
                return
            await self._next_event()
            self._take_finished()
        self._take_finished()
        await self._in_store(lambda: None)  # the outcomes submitted above are written

    async def _cold_stop(self) -> None:
        self.logger.warning("cold stop: giving every running job's lock back")
        self.worker.release([held.record for held in self._backlog])
        self._backlog.clear()
        for held in list(self._running.values()):
            held.interrupt(Reason.COLD_STOP)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _COLD_STOP_WAIT
        while self._running and loop.time() < deadline:
            await self._next_event()
            self._take_finished()
        await self._in_store(lambda: None)
        still = [held.record for held in self._running.values() if held.phase is not Phase.DONE]
        self.worker.release(still)  # runs that did not stop: their locks go back anyway

    def _report_stuck(self, held: Held) -> None:
        """From the heartbeat: let the loop drain the other runs; if the loop itself is
        frozen (an async job blocking it), end the process from here after another grace."""
        self._stuck.append(held)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

        def fallback() -> None:
            if not self._stuck_taken.is_set():
                end_process(self.worker, held)

        timer = threading.Timer(self.worker.settings.stop_grace, fallback)
        timer.daemon = True
        timer.start()
        self.worker.stop.warm.set()

    async def _in_store(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._store, lambda: call(*args, **kwargs))


def _jobs_of(waiter: asyncio.Future[list[JobRecord]]) -> list[JobRecord]:
    if waiter.cancelled() or waiter.exception() is not None:
        return []
    return waiter.result()


def _run_sync_in_slot(held: Held, prepared: Any, slot: int, hooks: bool) -> Outcome:
    return run_sync(held, prepared, slot, hooks=hooks, on_start=_nothing)


def _nothing() -> None:
    return None
