from __future__ import annotations

import pytest

from queuebox.backends.memory import MemoryAdapter
from queuebox.testing import AdapterContract, AdapterFactory


class TestMemoryAdapter(AdapterContract):
    @pytest.fixture
    def adapter_factory(self) -> AdapterFactory:
        shared = MemoryAdapter()
        return lambda: shared
