"""The SQLite store passes the contract every store passes."""

from __future__ import annotations

from pathlib import Path

import pytest

from queuebox.backends.sqlite import SQLiteAdapter
from queuebox.testing import AdapterContract, AdapterFactory


class TestSQLiteAdapter(AdapterContract):
    @pytest.fixture
    def adapter_factory(self, tmp_path: Path) -> AdapterFactory:
        path = tmp_path / "jobs.db"
        return lambda: SQLiteAdapter(path)
