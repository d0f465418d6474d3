"""An idle SQLite worker wakes when another process commits, through inotify on the
database's folder (queuebox/backends/sql/file_watch.py), not at its next poll."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from queuebox.backends.sql import file_watch, waiting
from queuebox.backends.sql.waiting import ChangeCounterWatch, Wake
from queuebox.backends.sqlite import SQLiteAdapter

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="inotify is Linux's; elsewhere the store polls"
)

SCHEDULE = """
import sys
from queuebox.backends.base import NewJob
from queuebox.backends.sqlite import SQLiteAdapter
store = SQLiteAdapter(sys.argv[1])
handler = '{"name":"N","args":[],"kwargs":{}}'
store.schedule([NewJob(name="N", handler=handler, queue="q", priority=50)])
store.close()
"""


@pytest.fixture
def store(tmp_path: Path) -> SQLiteAdapter:
    adapter = SQLiteAdapter(tmp_path / "jobs.db")
    adapter.migrate()
    return adapter


def _wait_while_another_process_schedules(store: SQLiteAdapter) -> tuple[float | None, float]:
    """A thread waits for work (30 s timeout) while another process schedules a job; when the
    wait ended (``None``: not within 10 s of the commit) and when the commit was done."""
    woke: list[float] = []

    def wait() -> None:
        store.wait_for_work(["q"], timeout=30.0)
        woke.append(time.monotonic())

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.3)  # the waiter is inside its wait
    assert not woke, "wait_for_work returned with nothing to do"
    subprocess.run([sys.executable, "-c", SCHEDULE, str(store.path)], check=True, timeout=60)
    committed = time.monotonic()
    waiter.join(10)
    return (woke[0] if woke else None), committed


def test_the_store_watches_its_file_with_inotify(store: SQLiteAdapter) -> None:
    watch = file_watch.watch_database_file(store.path, lambda: 0)
    try:
        assert isinstance(watch, file_watch.FileChangeWatch)
    finally:
        watch.close()


def test_opening_the_watch_starts_no_child_process(
    store: SQLiteAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker opens its watch when it first goes idle; a child process then (the libc
    lookup used to run ``ldconfig -p``) forks a threaded worker and shows as a stray process of
    its session."""
    started: list[object] = []

    def record(*args: object, **kwargs: object) -> None:
        started.append(args)
        raise OSError("no child processes here")

    monkeypatch.setattr(subprocess, "Popen", record)
    watch = file_watch.watch_database_file(store.path, lambda: 0)
    try:
        assert isinstance(watch, file_watch.FileChangeWatch)
    finally:
        watch.close()
    assert started == []


def test_another_process_commit_wakes_a_waiting_worker_before_any_poll(
    store: SQLiteAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No poll within the test (neither the safety poll nor the plain counter poll): only
    # the write event can end the wait early.
    monkeypatch.setattr(file_watch, "SAFETY_POLL", 60.0)
    monkeypatch.setattr(waiting, "COUNTER_POLL", 60.0)
    woke, committed = _wait_while_another_process_schedules(store)
    assert woke is not None, "the commit of another process did not wake the worker"
    assert woke - committed < 2.0  # far below the 60 s poll: the event woke it
    store.close()


def test_writes_to_other_files_do_not_end_the_wait(
    store: SQLiteAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(file_watch, "SAFETY_POLL", 60.0)
    reads: list[int] = []

    def read() -> int:
        reads.append(1)
        return 0

    watch = file_watch.watch_database_file(store.path, read)
    assert isinstance(watch, file_watch.FileChangeWatch)
    try:
        watch.arm()
        stop = threading.Event()

        def scribble() -> None:
            other = store.path.parent / "notes.txt"
            while not stop.is_set():
                other.write_text("x")
                time.sleep(0.01)

        writer = threading.Thread(target=scribble)
        writer.start()
        started = time.monotonic()
        outcome = watch.wait(None, time.monotonic() + 0.5)
        stop.set()
        writer.join()
        assert outcome is Wake.TIMEOUT
        assert time.monotonic() - started >= 0.45
        assert len(reads) == 1, "the commit counter was read for a write to another file"
    finally:
        watch.close()


def test_close_ends_a_wait_in_another_thread(store: SQLiteAdapter) -> None:
    watch = file_watch.watch_database_file(store.path, lambda: 0)
    ended: list[object] = []

    def wait() -> None:
        with watch.lock:
            ended.append(watch.wait(None, time.monotonic() + 30))

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.2)
    started = time.monotonic()
    watch.close()
    waiter.join(5)
    assert ended == [Wake.TIMEOUT]
    assert time.monotonic() - started < 5
    watch.close()  # a second close is harmless


def test_without_inotify_the_store_polls_the_commit_counter(
    store: SQLiteAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(file_watch, "_libc", lambda: None)
    assert type(file_watch.watch_database_file(store.path, lambda: 0)) is ChangeCounterWatch
    woke, _ = _wait_while_another_process_schedules(store)
    assert woke is not None, "the poll of the commit counter did not see the other process's commit"
    assert isinstance(store._watcher(), ChangeCounterWatch)
    assert not isinstance(store._watcher(), file_watch.FileChangeWatch)
    store.close()
