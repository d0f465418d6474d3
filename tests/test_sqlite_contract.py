"""The SQLite store passes the contract every store passes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from queuebox.backends.sqlite import SQLiteAdapter
from queuebox.testing import AdapterContract, AdapterFactory, UnreachableFactory


class TestSQLiteAdapter(AdapterContract):
    @pytest.fixture
    def adapter_factory(self, tmp_path: Path) -> AdapterFactory:
        path = tmp_path / "jobs.db"
        return lambda: SQLiteAdapter(path)

    @pytest.fixture
    def unreachable_adapter_factory(self, tmp_path: Path) -> UnreachableFactory:
        def build() -> SQLiteAdapter:
            folder = tmp_path / "vanished"
            folder.mkdir(exist_ok=True)
            adapter = SQLiteAdapter(folder / "jobs.db")
            shutil.rmtree(folder)  # the store's folder is gone after the adapter was built
            return adapter

        return build
