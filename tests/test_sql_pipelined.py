"""The SQL base's ``PipelinedClaims`` (``SQLPipelinedClaims``) on SQLite: a batch's
acknowledgements and the next claim share one transaction, so they commit once, and a claim
that fails takes the acknowledgements back with it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from queuebox.backends.base import JobState, PipelinedClaims
from queuebox.backends.sqlite import SQLiteAdapter
from queuebox.errors import StorageUnavailable
from queuebox.testing.support import LEASE, new_job

pytestmark = pytest.mark.unit


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteAdapter]:
    adapter = SQLiteAdapter(tmp_path / "jobs.db")
    yield adapter
    adapter.close()


def _statements(store: SQLiteAdapter) -> list[str]:
    """Every statement the calling thread's connection runs from now on."""
    seen: list[str] = []
    with store._session() as connection:  # the dialects' (protected) API
        connection.set_trace_callback(seen.append)
    return seen


def _verbs(statements: list[str]) -> list[str]:
    """Each statement's first keyword, past its leading comment lines."""
    verbs = []
    for text in statements:
        lines = [line for line in text.splitlines() if line.strip() and not line.startswith("--")]
        verbs.append(lines[0].split()[0].upper() if lines else "")
    return verbs


def test_sqlite_declares_pipelined_claims(store: SQLiteAdapter) -> None:
    assert isinstance(store, PipelinedClaims)


def test_complete_and_claim_commits_once(store: SQLiteAdapter) -> None:
    store.schedule([new_job("q") for _ in range(3)])
    held = store.claim("w1", ["q"], limit=3, lease=LEASE)
    store.schedule([new_job("q") for _ in range(2)])
    seen = _statements(store)
    results, claimed = store.complete_and_claim(
        [(job.id, job.lock_token or "") for job in held],
        worker_id="w1",
        queue="q",
        limit=5,
        lease=LEASE,
    )
    assert results == [True, True, True] and len(claimed) == 2
    verbs = _verbs(seen)
    assert verbs.count("BEGIN") == 1 and verbs.count("COMMIT") == 1, verbs


def test_a_failed_claim_rolls_the_acknowledgements_back(
    store: SQLiteAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.schedule([new_job("q") for _ in range(2)])
    held = store.claim("w1", ["q"], limit=2, lease=LEASE)

    def refuse(params: dict[str, Any]) -> list[Any]:
        raise StorageUnavailable("the claim failed")

    monkeypatch.setattr(store, "_claim_rows", refuse)
    with pytest.raises(StorageUnavailable):
        store.complete_and_claim(
            [(job.id, job.lock_token or "") for job in held],
            worker_id="w1",
            queue="q",
            limit=1,
            lease=LEASE,
        )
    monkeypatch.undo()
    for job in held:  # still there, still locked: the worker will acknowledge them again
        stored = store.get(job.id)
        assert stored is not None and stored.state is JobState.RUNNING
    # And the store is usable afterwards: no transaction was left open.
    assert store.complete_many([(job.id, job.lock_token or "") for job in held]) == [True, True]
    assert store.counts() == []


def test_nested_blocks_join_the_outer_transaction(store: SQLiteAdapter) -> None:
    store.schedule([new_job("q")])
    [job] = store.claim("w1", ["q"], limit=1, lease=LEASE)
    seen = _statements(store)
    with store._in_transaction():  # as a mixin would
        assert store.complete(job.id, job.lock_token or "")
        assert store.claim("w1", ["q"], limit=1, lease=LEASE) == []
    assert _verbs(seen).count("COMMIT") == 1
