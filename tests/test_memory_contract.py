from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from queuebox.backends.memory import MemoryAdapter
from queuebox.testing import AdapterContract, AdapterFactory, UnreachableFactory


class TestMemoryAdapter(AdapterContract):
    @pytest.fixture
    def adapter_factory(self) -> AdapterFactory:
        shared = MemoryAdapter()
        return lambda: shared

    @pytest.fixture
    def unreachable_adapter_factory(self) -> UnreachableFactory:
        return lambda: None  # it lives in this process


BROKEN_STORE_TESTS = '''
import pytest
from queuebox.backends.memory import MemoryAdapter
from queuebox.testing import CoreContract


class FirstInFirstOut(MemoryAdapter):
    """Claims in enqueue order, whatever the priority: a store the contract must fail."""

    def claim(self, worker_id, queues, *, limit=1, lease):
        jobs = super().claim(worker_id, queues, limit=limit, lease=lease)
        return sorted(jobs, key=lambda job: int(job.id))


class TestBroken(CoreContract):
    @pytest.fixture
    def adapter_factory(self):
        shared = FirstInFirstOut()
        return lambda: shared
'''


def test_a_failing_contract_test_shows_what_it_compared(tmp_path: Path) -> None:
    # pytest rewrites the asserts of test files only: a contract test failing in an adapter
    # author's run said a bare "AssertionError", without the values.
    (tmp_path / "test_broken_store.py").write_text(BROKEN_STORE_TESTS)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            "-k",
            "test_claim_orders_by_priority",
            "test_broken_store.py",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "AssertionError: assert [" in result.stdout, result.stdout
    assert "At index 0 diff" in result.stdout
