from __future__ import annotations

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
