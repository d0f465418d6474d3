"""The dashboard's JSON API on the in-memory and SQLite stores, and on a store that declares
no optional interface (the fallbacks): what each endpoint shows, and what each action does
to the store."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.etree import ElementTree  # our own SVG, parsed to check it is well formed

import pytest
from helpers import CoreOnly
from starlette.testclient import TestClient

from queuebox.backends import from_url
from queuebox.backends.base import (
    Adapter,
    Cancellation,
    FlowControl,
    JobSearch,
    JobState,
    MinuteStats,
    NewJob,
    RunningJob,
    ThroughputHistory,
    WorkerInfo,
    WorkerRegistry,
)
from queuebox.backends.memory import MemoryAdapter
from queuebox.web import create_app
from queuebox.web.views import FALLBACK_SCAN

ORIGIN = "http://testserver"


def add(store: Adapter, name: str, *args: Any, queue: str = "default", delay: float = 0) -> str:
    handler = json.dumps({"name": name, "args": list(args), "kwargs": {}})
    [record] = store.schedule(
        [NewJob(name=name, handler=handler, queue=queue, priority=50, delay=delay)]
    )
    return record.id


def fail_one(store: Adapter, queue: str, error: str) -> str:
    [job] = store.claim("test-worker", [queue], limit=1, lease=60)
    assert job.lock_token is not None
    assert store.fail(job.id, job.lock_token, error=error)
    return job.id


class Dashboard:
    """A TestClient that has loaded a page, so it holds the session cookie and its token."""

    def __init__(self, app: Any) -> None:
        self.client = TestClient(app)
        assert self.client.get("/").status_code == 200
        self.token = self.client.cookies["queuebox_session"]

    def get(self, path: str, **params: Any) -> Any:
        response = self.client.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, path: str, body: dict[str, Any] | None = None, status: int = 200) -> Any:
        response = self.client.post(
            path, json=body or {}, headers={"x-csrf-token": self.token, "origin": ORIGIN}
        )
        assert response.status_code == status, response.text
        return response.json()


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Adapter]:
    adapter = (
        MemoryAdapter()
        if request.param == "memory"
        else from_url(f"sqlite:///{tmp_path / 'web.db'}")
    )
    adapter.migrate()
    yield adapter
    adapter.close()


@pytest.fixture
def board(store: Adapter) -> Dashboard:
    return Dashboard(create_app(store))


def test_overview_counts_every_queue_and_state_as_the_store_does(
    store: Adapter, board: Dashboard
) -> None:
    add(store, "Mail", 1, queue="email")
    add(store, "Mail", 2, queue="email", delay=3600)
    add(store, "Report", 3, queue="reports")
    fail_one(store, "reports", "ValueError: boom")
    add(store, "Report", 4, queue="reports")
    if isinstance(store, Cancellation):
        store.cancel(add(store, "Report", 5, queue="reports"))
    data = board.get("/api/overview")
    shown = {q["queue"]: q for q in data["queues"]}
    for counts in store.counts():
        row = shown[counts.queue]
        for state in JobState:
            assert row[state.value] == getattr(counts, state.value), (counts.queue, state)
        assert row["total"] == counts.total
    assert shown["email"]["scheduled"] == 1 and shown["email"]["ready"] == 1
    assert shown["reports"]["failed"] == 1
    if isinstance(store, Cancellation):
        assert shown["reports"]["cancelled"] == 1
    assert (data["workers"] is None) == (not isinstance(store, WorkerRegistry))
    assert (data["history"] is None) == (not isinstance(store, ThroughputHistory))


def test_meta_notes_say_which_interfaces_the_store_lacks(store: Adapter, board: Dashboard) -> None:
    meta = board.get("/api/meta")
    interfaces = {
        "cancel": Cancellation,
        "pause": FlowControl,
        "workers": WorkerRegistry,
        "history": ThroughputHistory,
        "search": JobSearch,
    }
    for key, interface in interfaces.items():
        declared = isinstance(store, interface)
        assert meta["features"][key] is declared
        assert (key in meta["notes"]) is not declared
        if not declared:
            assert interface.__name__ in meta["notes"][key]
    assert meta["can_act"] is True and meta["read_only"] is False


def test_history_and_workers_come_from_the_store() -> None:
    store = MemoryAdapter()
    now = store.now()
    minute = now.replace(second=0, microsecond=0)
    counts = [0] * 17
    counts[3] = 7
    store.add_stats(
        [
            MinuteStats(
                "default", "Mail", minute, succeeded=6, failed=1, runtime_counts=tuple(counts)
            ),
            MinuteStats("default", "Mail", minute - timedelta(minutes=5), retried=2),
            MinuteStats("default", "Mail", minute - timedelta(hours=2), succeeded=99),
        ]
    )
    job = RunningJob("42", "Mail", "default", now - timedelta(seconds=30))
    for host, wid in (("alpha", "w1"), ("beta", "w2")):
        store.beat(
            WorkerInfo(
                wid, host, 100, ("default",), 2, "0.1.0", now, jobs=(job,) if wid == "w1" else ()
            ),
            ttl=30,
        )
    board = Dashboard(create_app(store))
    data = board.get("/api/overview")
    assert data["last_hour"] == {
        "succeeded": 6,
        "retried": 2,
        "failed": 1,
        "cancelled": 0,
        "finished": 9,
    }
    assert len(data["history"]) == 60
    assert data["history"][-1]["failure_rate"] == pytest.approx(1 / 7)
    assert data["workers"] == {"alive": 2, "lost": 0, "hosts": 2}
    workers = board.get("/api/workers")
    assert workers["hosts"] == ["alpha", "beta"]
    [busy] = [w for w in workers["workers"] if w["id"] == "w1"]
    assert busy["jobs"][0]["id"] == "42"
    assert busy["jobs"][0]["running_seconds"] == pytest.approx(30, abs=5)
    # The charts are SVG drawn from the same minutes: one bar segment per outcome present.
    svg = board.client.get("/charts/throughput.svg")
    assert svg.headers["content-type"].startswith("image/svg+xml")
    root = ElementTree.fromstring(svg.text)  # noqa: S314 - our own SVG
    titles = [t.text for t in root.iter("{http://www.w3.org/2000/svg}title")]
    assert any(t and t.endswith("6 succeeded") for t in titles)
    assert any(t and t.endswith("2 retried") for t in titles)
    failure = board.client.get("/charts/failure-rate.svg").text
    ElementTree.fromstring(failure)  # noqa: S314 - our own SVG


def test_job_lists_filter_by_state_queue_name_and_text(store: Adapter, board: Dashboard) -> None:
    add(store, "Mail", "alice@example.com", queue="email")
    add(store, "Mail", "bob@example.com", queue="email")
    add(store, "Report", "quarterly", queue="reports")
    failed = fail_one(store, "reports", "Traceback\nKeyError: 'needle-in-error'")

    def ids(**filters: Any) -> set[str]:
        return {job["id"] for job in board.get("/api/jobs", **filters)["jobs"]}

    every = {job.id for job in store.list_jobs(limit=100)}
    assert ids() == every
    assert ids(queue="email") == {j.id for j in store.list_jobs(queues=["email"])}
    assert ids(state="failed") == {failed}
    assert ids(name="Mail", text="BOB") == {j.id for j in store.list_jobs() if "bob" in j.handler}
    assert ids(text="needle-in-error") == {failed}
    assert ids(queue="email", state="failed") == set()
    [row] = board.get("/api/jobs", state="failed")["jobs"]
    assert row["error"] == "Traceback"  # the first line; the job page has all of it


def test_paging_visits_every_job_once(store: Adapter, board: Dashboard) -> None:
    made = {add(store, "Mail", n) for n in range(23)}
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 5}
        if cursor:
            params["cursor"] = cursor
        data = board.get("/api/jobs", **params)
        seen += [job["id"] for job in data["jobs"]]
        pages += 1
        cursor = data["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(made) and len(seen) == len(made)
    assert pages == 5


def test_job_page_shows_arguments_times_history_and_the_whole_error(
    store: Adapter, board: Dashboard
) -> None:
    add(store, "Report", {"year": 2026}, "<b>bold</b>", queue="reports")
    error = "Traceback (most recent call last):\n  File 'x.py', line 1\n" + "x" * 5000 + "\nE: end"
    job_id = fail_one(store, "reports", error)
    job = board.get(f"/api/jobs/{job_id}")["job"]
    assert job["args"] == [{"year": 2026}, "<b>bold</b>"]
    assert job["last_error"] == store.get(job_id).last_error  # type: ignore[union-attr]
    assert job["last_error"].endswith("E: end")
    assert job["attempts"] == 1 and job["state"] == "failed"
    events = [event["event"] for event in job["history"]]
    assert events[0] == "enqueued" and "failed" in events
    assert events[-1] == "last change"
    assert job["actions"]["retry"] is True and job["actions"]["run_now"] is False
    add(store, "Report", 1, queue="reports")
    [running] = store.claim("test-worker", ["reports"], limit=1, lease=60)
    live = board.get(f"/api/jobs/{running.id}")["job"]
    assert live["state"] == "running" and live["locked_by"] == "test-worker"
    assert "claimed by test-worker (attempt 1)" in [e["event"] for e in live["history"]]
    assert live["actions"]["retry"] is False
    missing = board.client.get("/api/jobs/999999")
    assert missing.status_code == 404 and "no such job" in missing.json()["error"]


@pytest.mark.parametrize(
    "handler",
    [
        # json raises RecursionError, not ValueError, for it: one such record made every job
        # list that held it, and its own page, answer 500.
        '{"name":"Deep","args":' + "[" * 5000 + "]" * 5000 + "}",
        # NaN is no JSON value: the job's page answered 400 (the response could not carry it).
        '{"name":"Deep","args":[NaN, Infinity],"kwargs":{}}',
    ],
)
def test_a_payload_the_worker_cannot_read_shows_as_raw_text(
    store: Adapter, board: Dashboard, handler: str
) -> None:
    [record] = store.schedule([NewJob(name="Deep", handler=handler, queue="default", priority=50)])
    [row] = board.get("/api/jobs")["jobs"]
    assert row["id"] == record.id and row["name"] == "Deep"
    job = board.get(f"/api/jobs/{record.id}")["job"]
    assert job["args"] is None and job["handler"] == handler


def test_single_actions_change_the_store(store: Adapter, board: Dashboard) -> None:
    failed = (add(store, "Mail", 1), fail_one(store, "default", "boom"))[1]
    assert board.post(f"/api/jobs/{failed}/retry")["outcome"] == "done"
    assert store.get(failed).state is JobState.READY  # type: ignore[union-attr]
    later = add(store, "Mail", 2, delay=3600)
    assert board.post(f"/api/jobs/{later}/run_now")["changed"] is True
    assert store.get(later).state is JobState.READY  # type: ignore[union-attr]
    assert board.post(f"/api/jobs/{later}/delete")["outcome"] == "done"
    assert store.get(later) is None
    assert board.post(f"/api/jobs/{later}/delete")["outcome"] == "not found"
    waiting = add(store, "Mail", 3)
    if isinstance(store, Cancellation):
        assert board.post(f"/api/jobs/{waiting}/cancel")["outcome"] == "done"
        assert store.get(waiting).state is JobState.CANCELLED  # type: ignore[union-attr]
    else:
        refused = board.post(f"/api/jobs/{waiting}/cancel", status=409)
        assert "Cancellation" in refused["error"]
    board.post(f"/api/jobs/{waiting}/explode", status=400)


def test_pause_and_resume_a_queue(store: Adapter, board: Dashboard) -> None:
    add(store, "Mail", 1, queue="email")
    if not isinstance(store, FlowControl):
        assert "FlowControl" in board.post("/api/queues/email/pause", status=409)["error"]
        return
    assert board.post("/api/queues/email/pause")["changed"] is True
    assert store.paused_queues() == {"email"}
    assert board.post("/api/queues/email/pause")["outcome"] == "was paused already"
    assert [q["paused"] for q in board.get("/api/overview")["queues"]] == [True]
    board.post("/api/bulk/queues", {"action": "resume", "queues": ["email"]}, status=400)
    done = board.post(
        "/api/bulk/queues", {"action": "resume", "queues": ["email"], "confirm": True}
    )
    assert done["changed"] == 1 and store.paused_queues() == set()
    board.post("/api/queues/not a queue!/pause", status=400)


def test_bulk_actions_count_first_then_act_on_the_filtered_list_only(
    store: Adapter, board: Dashboard
) -> None:
    for n in range(4):
        add(store, "Mail", n, queue="email")
    for _ in range(3):
        fail_one(store, "email", "SMTPError: refused")
    keep = add(store, "Report", 9, queue="reports")
    fail_one(store, "reports", "SMTPError: refused")
    filters = {"queue": "email", "state": "failed"}
    count = board.post("/api/bulk/jobs", {"action": "retry", "filters": filters, "dry_run": True})
    assert count["matched"] == 3 and count["more"] is False
    assert {j.state for j in store.list_jobs(queues=["email"])} >= {JobState.FAILED}
    unconfirmed = board.post("/api/bulk/jobs", {"action": "retry", "filters": filters}, status=400)
    assert "confirm" in unconfirmed["error"]
    body = {"action": "retry", "filters": filters, "confirm": True, "limit": 2}
    done = board.post("/api/bulk/jobs", body)
    assert done["changed"] == 2 and done["more"] is True
    failed = [j for j in store.list_jobs(queues=["email"]) if j.state is JobState.FAILED]
    assert len(failed) == 1
    assert store.get(keep) is not None and store.get(keep).state is JobState.FAILED  # type: ignore[union-attr]
    deleted = board.post(
        "/api/bulk/jobs", {"action": "delete", "filters": {"queue": "email"}, "confirm": True}
    )
    assert deleted["changed"] == 4 and store.list_jobs(queues=["email"]) == []
    board.post("/api/bulk/jobs", {**body, "limit": 100_000}, status=400)
    board.post("/api/bulk/jobs", {**body, "filters": {"state": "sleeping"}}, status=400)


def test_bad_queries_get_a_clear_error(board: Dashboard) -> None:
    for params, words in (
        ({"state": "sleeping"}, "not a job state"),
        ({"limit": "0"}, "limit"),
        ({"limit": "abc"}, "limit"),
        ({"queue": "no spaces allowed"}, "queue"),
        ({"text": "x" * 500}, "at most"),
    ):
        response = board.client.get("/api/jobs", params=params)
        assert response.status_code == 400, params
        assert words in response.json()["error"]


@pytest.mark.parametrize(
    "body", [b"not json", b"[1, 2]", b"[" * 60_000, b'{"a": 1' + b"0" * 5000 + b"}"]
)
def test_a_bad_action_body_gets_a_clear_error(board: Dashboard, body: bytes) -> None:
    # Arrays nested past json's limit raised RecursionError, not ValueError: a 500.
    response = board.client.post(
        "/api/bulk/jobs",
        content=body,
        headers={"x-csrf-token": board.token, "origin": ORIGIN, "content-type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert "the request body" in response.json()["error"]


def test_a_sparse_filter_gives_a_short_page_that_says_the_search_goes_on(
    store: Adapter, board: Dashboard
) -> None:
    """A store looks at ``scan_limit`` jobs per page: the page comes back short (here empty)
    with a cursor and the page size, from which the list says older jobs are not searched
    yet; following the cursor finds the one match."""
    assert isinstance(store, JobSearch)
    store.scan_limit = 30
    rare = add(store, "Rare", "the one")
    for n in range(100):
        add(store, "Common", n)
    data = board.get("/api/jobs", name="Rare")
    assert data["jobs"] == [] and data["next_cursor"] is not None and data["limit"] == 50
    found: list[str] = []
    for _ in range(10):
        found += [job["id"] for job in data["jobs"]]
        if data["next_cursor"] is None:
            break
        data = board.get("/api/jobs", name="Rare", cursor=data["next_cursor"])
    assert found == [rare] and data["next_cursor"] is None


def test_a_store_without_optional_interfaces_falls_back_to_list_jobs() -> None:
    inner = MemoryAdapter()
    store = CoreOnly(inner)
    for n in range(30):
        add(inner, "Mail" if n % 3 else "Report", f"arg-{n}")
    board = Dashboard(create_app(store))
    meta = board.get("/api/meta")
    assert set(meta["notes"]) == {"cancel", "pause", "workers", "history", "search", "recurring"}
    first = board.get("/api/jobs", name="Report", limit=4)
    assert len(first["jobs"]) == 4 and first["searched"] is False
    second = board.get("/api/jobs", name="Report", limit=4, cursor=first["next_cursor"])
    names = {j["name"] for j in first["jobs"] + second["jobs"]}
    assert names == {"Report"}
    assert not {j["id"] for j in first["jobs"]} & {j["id"] for j in second["jobs"]}
    assert board.get("/api/jobs", text="ARG-7")["jobs"][0]["arguments"] == '"arg-7"'
    assert board.get("/api/workers")["workers"] is None
    assert board.get("/api/overview")["history"] is None
    assert board.client.get("/charts/throughput.svg").status_code == 404
    assert board.client.get("/api/jobs", params={"cursor": "abc"}).status_code == 400
    assert FALLBACK_SCAN >= 1000


def test_recurring_page_lists_registered_jobs_with_last_and_next_tick() -> None:
    from queuebox import Job

    class Nightly(Job):
        every = 3600

        def perform(self) -> None:
            pass

    store = MemoryAdapter()
    board = Dashboard(create_app(store))
    [row] = board.get("/api/recurring")["recurring"]
    assert row["name"] == "Nightly" and row["last_tick"] is None and row["next_run"]
    assert row["schedule"] == "every 3600s"


def test_jobs_whose_ids_hold_a_slash_have_pages_and_actions(redis_url: str) -> None:
    # Redis job ids are "queue/number"; the page's links send the id percent-encoded, which
    # reaches the app decoded, so every route must take a "/" inside the id.
    separator = "&" if "?" in redis_url else "?"
    store = from_url(f"{redis_url}{separator}prefix=qbweb-{uuid.uuid4().hex[:12]}")
    try:
        store.migrate()
        first = add(store, "Mail", 1)
        failed = fail_one(store, "default", "ValueError: boom")
        assert "/" in failed and failed == first
        board = Dashboard(create_app(store))
        for path in (f"/api/jobs/{failed}", f"/api/jobs/{quote(failed, safe='')}"):
            assert board.get(path)["job"]["last_error"] == "ValueError: boom"
        page = board.client.get(f"/jobs/{quote(failed, safe='')}")
        assert page.status_code == 200 and f'data-job-id="{failed}"' in page.text
        board.post(f"/api/jobs/{quote(failed, safe='')}/retry")
        record = store.get(failed)
        assert record is not None and record.state is JobState.READY
        board.post(f"/api/jobs/{quote(failed, safe='')}/delete")
        assert store.get(failed) is None
    finally:
        store.clear()
        store.close()
