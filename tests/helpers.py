"""Helpers that several test modules share: a project folder with job modules, worker
processes started from it, and waiting for what they write."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from queuebox.backends.base import Adapter, NewJob

__all__ = [
    "JOBS_MODULE",
    "CoreOnly",
    "Process",
    "enqueue",
    "ledger",
    "peak_overlap",
    "runs",
    "wait_until",
    "write_project",
]

#: Jobs for worker processes: each writes a line to ``ledger.txt`` in the project folder.
JOBS_MODULE = textwrap.dedent(
    """
    import asyncio
    import os
    import time
    from queuebox import Job

    def note(line):
        fd = os.open("ledger.txt", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.write(fd, (line + "\\n").encode())
        os.close(fd)

    class Record(Job):
        def perform(self, tag):
            note(f"{self.record.id} {self.record.queue} {os.getpid()} {tag}")

    class Sleep(Job):
        def perform(self, seconds):
            note(f"start {self.record.id} {os.getpid()} {time.time()}")
            time.sleep(seconds)
            note(f"done {self.record.id} {os.getpid()} {time.time()}")

    class AsyncSleep(Job):
        async def perform(self, seconds):
            note(f"start {self.record.id} {os.getpid()} {time.time()}")
            await asyncio.sleep(seconds)
            note(f"done {self.record.id} {os.getpid()} {time.time()}")

    class Spin(Job):
        # Busy Python code: a stop lands at once. Notes how each run ended.

        def perform(self, seconds):
            note(f"start {self.record.id} {os.getpid()} {time.time()}")
            ended = "done"
            try:
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline:
                    pass
            except BaseException as exc:
                ended = type(exc).__name__
                raise
            finally:
                note(f"{ended} {self.record.id} {os.getpid()} {time.time()} {self.cancelled}")

    class AsyncWait(Job):
        async def perform(self, seconds):
            note(f"start {self.record.id} {os.getpid()} {time.time()}")
            ended = "done"
            try:
                await asyncio.sleep(seconds)
            except BaseException as exc:
                ended = type(exc).__name__
                raise
            finally:
                note(f"{ended} {self.record.id} {os.getpid()} {time.time()} {self.cancelled}")

    class Stuck(Job):
        # Blocked in C code: no interruption reaches it until the call returns.

        def perform(self, seconds):
            note(f"start {self.record.id} {os.getpid()} {time.time()}")
            time.sleep(seconds)
            note(f"done {self.record.id} {os.getpid()} {time.time()}")
    """
)


def write_project(folder: Path, url: str = "sqlite:///jobs.db", extra: str = "") -> Path:
    """A project folder: ``proc_jobs.py`` (``JOBS_MODULE``) and a ``queuebox.toml`` naming it."""
    (folder / "proc_jobs.py").write_text(JOBS_MODULE)
    (folder / "queuebox.toml").write_text(
        f'url = "{url}"\napp = ["proc_jobs"]\n[[workers]]\nqueue = "*"\nsleep_delay = 0.2\n' + extra
    )
    return folder


def enqueue(
    store: Adapter, name: str, args: list[object], queue: str = "default", n: int = 1
) -> list[str]:
    handler = json.dumps({"name": name, "args": args, "kwargs": {}})
    jobs = [NewJob(name=name, handler=handler, queue=queue, priority=50) for _ in range(n)]
    return [record.id for record in store.schedule(jobs)]


class Process:
    """``python -m queuebox ARGS...`` in a project folder, its output in a log file."""

    def __init__(self, project: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.log = project / f"worker-{time.monotonic_ns()}.log"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("QUEUEBOX_")}
        with self.log.open("wb") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "queuebox", *args],
                cwd=project,
                env={**clean, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        return self.popen.wait(timeout)

    def output(self) -> str:
        return self.log.read_text()

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


def stop_server(process: subprocess.Popen[bytes], grace: float = 10) -> None:
    """Stop a server a test started: SIGTERM, then SIGKILL after ``grace`` seconds."""
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def statement_plans(conn: Any, query: Any, params: dict[str, Any], *, calls: int = 7) -> list[Any]:
    """The plans (auto_explain's JSON) of the statements that the last of ``calls`` runs of
    ``query`` on ``conn`` (an autocommit psycopg connection) ran, those of the functions it
    called included; in one transaction rolled back at the end, so that nothing is claimed.
    More than five calls: PostgreSQL could choose another plan after five."""
    notices: list[str] = []

    def keep(notice: Any) -> None:
        notices.append(notice.message_primary or "")

    conn.add_notice_handler(keep)
    try:
        conn.execute("LOAD 'auto_explain'")
        for setting in ("log_min_duration = 0", "log_nested_statements = on"):
            conn.execute(f"SET auto_explain.{setting}")
        conn.execute("SET auto_explain.log_format = json")
        conn.execute("SET auto_explain.log_level = notice")
        with conn.transaction(force_rollback=True):
            for call in range(calls):
                notices.clear()
                conn.execute(query, {**params, "nonce": f"{params.get('nonce', 'n')}{call}"})
    finally:
        conn.remove_notice_handler(keep)
        conn.execute("SET auto_explain.log_min_duration = -1")
    return [json.loads(text[text.index("{") :]) for text in notices if "Plan" in text]


def claim_plans(conn: Any, query: Any, params: dict[str, Any]) -> list[dict[str, Any]]:
    """The plans of the claim statements (``WITH ...``) a call of a claim function ran, as
    ``statement_plans`` reads them (the call's own ``SELECT`` left out)."""
    plans = statement_plans(conn, query, params)
    return [plan["Plan"] for plan in plans if plan["Query Text"].lstrip().startswith("WITH")]


def plan_nodes(node: dict[str, Any], *, init_plans: bool = True) -> Iterator[dict[str, Any]]:
    """A plan's nodes (without those of its one-time subqueries unless ``init_plans``)."""
    yield node
    for child in node.get("Plans", []):
        if init_plans or child.get("Parent Relationship") != "InitPlan":
            yield from plan_nodes(child, init_plans=init_plans)


def wait_until(condition: Callable[[], bool], timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.05)


def ledger(project: Path) -> list[str]:
    path = project / "ledger.txt"
    return path.read_text().splitlines() if path.exists() else []


class CoreOnly(Adapter):
    """A store seen through the required core alone: no optional interface is declared,
    so the core's paths for a minimal custom store are what runs."""

    def __init__(self, inner: Adapter) -> None:
        self.inner = inner
        self.capabilities = inner.capabilities

    def now(self) -> Any:
        return self.inner.now()

    def schedule(self, jobs: Any) -> Any:
        return self.inner.schedule(jobs)

    def claim(self, worker_id: str, queues: Any, *, limit: int = 1, lease: float) -> Any:
        return self.inner.claim(worker_id, queues, limit=limit, lease=lease)

    def complete(self, job_id: str, lock_token: str, *, keep: bool = False) -> bool:
        return self.inner.complete(job_id, lock_token, keep=keep)

    def reschedule(self, job_id: str, lock_token: str, *, delay: float, error: str) -> bool:
        return self.inner.reschedule(job_id, lock_token, delay=delay, error=error)

    def fail(self, job_id: str, lock_token: str, *, error: str, keep: bool = True) -> bool:
        return self.inner.fail(job_id, lock_token, error=error, keep=keep)

    def release(self, job_id: str, lock_token: str) -> bool:
        return self.inner.release(job_id, lock_token)

    def extend(self, job_id: str, lock_token: str, *, lease: float) -> bool:
        return self.inner.extend(job_id, lock_token, lease=lease)

    def wait_for_work(self, queues: Any, timeout: float) -> None:
        self.inner.wait_for_work(queues, timeout)

    def get(self, job_id: str) -> Any:
        return self.inner.get(job_id)

    def list_jobs(self, **options: Any) -> Any:
        return self.inner.list_jobs(**options)

    def counts(self) -> Any:
        return self.inner.counts()

    def retry(self, job_id: str) -> bool:
        return self.inner.retry(job_id)

    def delete(self, job_id: str) -> bool:
        return self.inner.delete(job_id)

    def clear(self, queues: Any = None) -> int:
        return self.inner.clear(queues)


def runs(project: Path) -> list[tuple[str, float, float]]:
    """``(job id, start, end)`` of every run in the ledger that has both lines."""
    started: dict[tuple[str, str], float] = {}
    found = []
    for line in ledger(project):
        parts = line.split()
        if len(parts) < 4:
            continue
        key = (parts[1], parts[2])  # job id, pid
        if parts[0] == "start":
            started[key] = float(parts[3])
        elif key in started:
            found.append((parts[1], started.pop(key), float(parts[3])))
    return found


def peak_overlap(spans: list[tuple[str, float, float]]) -> int:
    edges = sorted([(start, 1) for _, start, _ in spans] + [(end, -1) for _, _, end in spans])
    peak = current = 0
    for _, change in edges:
        current += change
        peak = max(peak, current)
    return peak
