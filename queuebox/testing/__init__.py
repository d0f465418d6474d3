"""The store contract test suite, public so that custom adapters run what the built-in
stores run.

Subclass ``AdapterContract`` in a pytest module and provide two fixtures:
``adapter_factory``, a callable that returns a new adapter connected to one fresh, empty
store (the same store on every call, so that threads and forked processes can each open
their own), and ``unreachable_adapter_factory``, a callable that returns an adapter whose
store cannot be reached (or ``None`` for a store that lives inside the process)::

    import pytest
    from queuebox.testing import AdapterContract

    class TestMyAdapter(AdapterContract):
        @pytest.fixture
        def adapter_factory(self, tmp_path):
            return lambda: MyAdapter(tmp_path / "jobs.db")

        @pytest.fixture
        def unreachable_adapter_factory(self):
            return lambda: MyAdapter.from_url("mystore://127.0.0.1:1/nothing-listens")

``AdapterContract`` runs the required core (``CoreContract``), the production failures
(``RobustnessContract``) and the contract class of every optional interface: each of those
tests is skipped, saying so, when the adapter does not declare the interface (or the
``Capabilities`` flag) it needs. A store that declares ``TransactionalEnqueue`` also provides
``transaction_factory`` (see ``TransactionalEnqueueContract``). The classes can be used one
by one as well.
"""

# ruff: noqa: E402 - the contract modules are imported after their asserts are registered

from __future__ import annotations

import pkgutil

import pytest

# pytest rewrites the asserts of test files and conftests only: without this, a contract
# test failing in an adapter author's run says a bare "AssertionError", with neither the
# values compared nor the message. The submodules are named one by one, before they are
# imported (this package itself is being imported, too late to be rewritten).
pytest.register_assert_rewrite(
    *(f"{__name__}.{module.name}" for module in pkgutil.iter_modules(__path__))
)

from queuebox.testing.cancellation import CancellationContract
from queuebox.testing.core import CoreContract
from queuebox.testing.extras import (
    AsyncSchedulingContract,
    PurgeableContract,
    TransactionalEnqueueContract,
    TransactionHandle,
)
from queuebox.testing.flow import FlowControlContract, limited_job
from queuebox.testing.pipelined import ClaimAheadContract, PipelinedClaimsContract
from queuebox.testing.registry import ThroughputHistoryContract, WorkerRegistryContract
from queuebox.testing.robustness import RobustnessContract, UnreachableFactory
from queuebox.testing.search import JobSearchContract
from queuebox.testing.support import LEASE, SHORT_LEASE, AdapterFactory, new_job
from queuebox.testing.unique_recurring import RecurringStoreContract, UniqueJobsContract

__all__ = [
    "LEASE",
    "SHORT_LEASE",
    "AdapterContract",
    "AdapterFactory",
    "AsyncSchedulingContract",
    "CancellationContract",
    "ClaimAheadContract",
    "CoreContract",
    "FlowControlContract",
    "JobSearchContract",
    "PipelinedClaimsContract",
    "PurgeableContract",
    "RecurringStoreContract",
    "RobustnessContract",
    "ThroughputHistoryContract",
    "TransactionHandle",
    "TransactionalEnqueueContract",
    "UniqueJobsContract",
    "UnreachableFactory",
    "WorkerRegistryContract",
    "limited_job",
    "new_job",
]


class AdapterContract(
    CoreContract,
    RobustnessContract,
    UniqueJobsContract,
    RecurringStoreContract,
    CancellationContract,
    PipelinedClaimsContract,
    ClaimAheadContract,
    AsyncSchedulingContract,
    TransactionalEnqueueContract,
    PurgeableContract,
    FlowControlContract,
    WorkerRegistryContract,
    ThroughputHistoryContract,
    JobSearchContract,
):
    """Everything a store is checked for: the core, robustness, and each optional interface
    the adapter declares."""
