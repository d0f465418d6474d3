"""The contracts of ``AsyncScheduling``, ``TransactionalEnqueue`` and ``Purgeable``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, Protocol, cast

import pytest

from queuebox.backends.base import (
    Adapter,
    AsyncScheduling,
    JobRecord,
    JobState,
    Purgeable,
    RecurringStore,
    TransactionalEnqueue,
)
from queuebox.testing.support import StoreFixtures, claim_one, new_job

__all__ = [
    "AsyncSchedulingContract",
    "PurgeableContract",
    "TransactionHandle",
    "TransactionalEnqueueContract",
]


class AsyncAdapter(Adapter, AsyncScheduling):
    """For type checking only: an adapter that declares ``AsyncScheduling``."""


class TransactionalAdapter(Adapter, TransactionalEnqueue):
    """For type checking only: an adapter that declares ``TransactionalEnqueue``."""


class PurgeableAdapter(Adapter, Purgeable):
    """For type checking only: an adapter that declares ``Purgeable``."""


class TransactionHandle(Protocol):
    """One open transaction of the caller's own, for ``schedule_with``."""

    connection: Any

    def commit(self) -> None: ...

    def rollback(self) -> None: ...


class AsyncSchedulingContract(StoreFixtures):
    @pytest.fixture
    def async_adapter(self, adapter: Adapter) -> AsyncAdapter:
        if not isinstance(adapter, AsyncScheduling):
            pytest.skip(f"{type(adapter).__name__} does not declare AsyncScheduling")
        return cast(AsyncAdapter, adapter)

    def test_aschedule_stores_what_schedule_stores(self, async_adapter: AsyncAdapter) -> None:
        adapter = async_adapter

        async def enqueue() -> list[JobRecord]:
            try:
                return await adapter.aschedule(
                    [new_job("a", 10, args=[1]), new_job("b", delay=3600, args=["two"])]
                )
            finally:
                await adapter.aclose()

        first, second = asyncio.run(enqueue())
        assert json.loads(first.handler)["args"] == [1] and first.state is JobState.READY
        assert second.state is JobState.SCHEDULED and second.queue == "b"
        assert adapter.get(first.id) == first
        assert adapter.get(second.id) == second
        assert claim_one(adapter).id == first.id

    def test_aschedule_works_on_one_event_loop_after_another(
        self, async_adapter: AsyncAdapter
    ) -> None:
        adapter = async_adapter

        async def enqueue(index: int) -> str:
            try:
                records = await adapter.aschedule([new_job(args=[index])])
                return records[0].id
            finally:
                await adapter.aclose()

        ids = [asyncio.run(enqueue(index)) for index in range(3)]
        assert len(set(ids)) == 3
        assert sum(c.total for c in adapter.counts()) == 3

    def test_concurrent_aschedule_calls(self, async_adapter: AsyncAdapter) -> None:
        adapter = async_adapter

        async def enqueue_many() -> list[list[JobRecord]]:
            try:
                calls = [adapter.aschedule([new_job(args=[n])]) for n in range(40)]
                return await asyncio.gather(*calls)
            finally:
                await adapter.aclose()

        batches = asyncio.run(enqueue_many())
        ids = {batch[0].id for batch in batches}
        assert len(ids) == 40
        assert sum(c.ready for c in adapter.counts()) == 40

    def test_aschedule_honours_unique_keys(self, async_adapter: AsyncAdapter) -> None:
        adapter = async_adapter
        if not adapter.capabilities.unique:
            pytest.skip("the adapter declares unique=False")
        held = adapter.schedule_one(new_job(unique_key="k"))

        async def enqueue() -> list[JobRecord]:
            try:
                return await adapter.aschedule([new_job(unique_key="k"), new_job()])
            finally:
                await adapter.aclose()

        same, other = asyncio.run(enqueue())
        assert same.id == held.id and other.id != held.id


class TransactionalEnqueueContract(StoreFixtures):
    """Provide ``transaction_factory``: a callable that opens a transaction of the caller's
    own on the adapter's store and returns its ``TransactionHandle``."""

    @pytest.fixture
    def transaction_factory(self) -> Callable[[], TransactionHandle]:
        raise NotImplementedError(
            "a store that declares TransactionalEnqueue provides the transaction_factory "
            "fixture in its contract test class"
        )

    @pytest.fixture
    def transactional(self, adapter: Adapter) -> TransactionalAdapter:
        if not isinstance(adapter, TransactionalEnqueue):
            pytest.skip(f"{type(adapter).__name__} does not declare TransactionalEnqueue")
        return cast(TransactionalAdapter, adapter)

    def test_jobs_exist_once_the_caller_commits(
        self,
        transactional: TransactionalAdapter,
        transaction_factory: Callable[[], TransactionHandle],
    ) -> None:
        handle = transaction_factory()
        records = transactional.schedule_with(handle.connection, [new_job(), new_job()])
        assert len({record.id for record in records}) == 2
        assert transactional.get(records[0].id) is None, "visible before the commit"
        handle.commit()
        assert [transactional.get(record.id) for record in records] == records

    def test_nothing_is_stored_when_the_caller_rolls_back(
        self,
        transactional: TransactionalAdapter,
        transaction_factory: Callable[[], TransactionHandle],
    ) -> None:
        handle = transaction_factory()
        record = transactional.schedule_with(handle.connection, [new_job()])[0]
        handle.rollback()
        assert transactional.get(record.id) is None
        assert transactional.counts() == []


class PurgeableContract(StoreFixtures):
    @pytest.fixture
    def purgeable(self, adapter: Adapter) -> PurgeableAdapter:
        if not isinstance(adapter, Purgeable):
            pytest.skip(f"{type(adapter).__name__} does not declare Purgeable")
        return cast(PurgeableAdapter, adapter)

    def test_purge_leaves_nothing(self, purgeable: PurgeableAdapter) -> None:
        adapter = purgeable
        adapter.schedule([new_job("a"), new_job("b", delay=600)])
        claim_one(adapter)
        if isinstance(adapter, RecurringStore):
            adapter.schedule_tick("Tick", adapter.now(), new_job("c"), store=False)
        adapter.purge()
        assert adapter.counts() == []
        assert adapter.list_jobs() == []
        if isinstance(adapter, RecurringStore):
            assert adapter.recurring_ticks() == {}
        again = adapter.schedule_one(new_job("a"))
        assert claim_one(adapter).id == again.id
