"""Shared machinery of the chaos suite: stores, worker processes, the ledger, a Redis server.

Every test here runs real ``python -m queuebox ... work`` processes against a real store and
a project folder in ``tmp_path`` (a jobs module and a ``queuebox.toml`` with the worker
settings). Each job appends one line to ``ledger.txt`` and fsyncs it before returning, so a
test can count runs, duplicates and losses after the fact:

    <kind> <job id> <attempt> <pid> <wall clock seen by the job>

Every process a test starts is killed in teardown (with its children), even when the test
fails; every Redis server it starts is stopped; every schema or key prefix is dropped.

``QUEUEBOX_CHAOS_LONG=1`` selects the long version of each test (more jobs, longer faults);
``scale(short, long)`` picks the number.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from queuebox import from_url
from queuebox.backends.base import Adapter, NewJob
from queuebox.payload import encode_handler

LONG = os.environ.get("QUEUEBOX_CHAOS_LONG", "") not in ("", "0")
STORES = ("sqlite", "postgres", "redis")
T = TypeVar("T")


def scale(short: T, long: T) -> T:
    """The short-run value, or the long-run one under ``QUEUEBOX_CHAOS_LONG=1``."""
    return long if LONG else short


# -- the jobs the workers run -----------------------------------------------------------------

JOBS_MODULE = textwrap.dedent(
    '''
    """Jobs of the chaos suite; each run leaves a line in ledger.txt beside this file."""
    import os
    import signal
    import time

    from queuebox import Job

    LEDGER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ledger.txt")


    def note(kind, record):
        line = f"{kind} {record.id} {record.attempts} {os.getpid()} {time.time():.3f}\\n"
        fd = os.open(LEDGER, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)


    class Note(Job):
        """Sleep a little, then record the run."""

        def perform(self, seconds=0.0):
            if seconds:
                time.sleep(seconds)
            note("run", self.record)


    class Hold(Job):
        """Record the start, sleep (``first`` on attempt 1, ``later`` after), record the end."""

        def perform(self, first=3.0, later=0.0, fail_first=False):
            note("start", self.record)
            time.sleep(first if self.record.attempts == 1 else later)
            if fail_first and self.record.attempts == 1:
                raise RuntimeError("the first attempt fails on purpose")
            note("done", self.record)


    class Limited(Job):
        """Hold (start, sleep, done) under a limit: at most 3 runs at once across workers."""

        max_concurrency = 3

        def perform(self, seconds=0.1):
            note("start", self.record)
            time.sleep(seconds)
            note("done", self.record)


    class Poison(Job):
        """Kills the worker that runs it, every time."""

        def perform(self):
            note("run", self.record)
            os.kill(os.getpid(), signal.SIGKILL)
    '''
)

# Loaded by every interpreter whose PYTHONPATH holds its folder: shifts the process's idea of
# the wall clock (time.time, time.time_ns, datetime.now/utcnow/today) by CHAOS_CLOCK_SKEW s.
SKEW_MODULE = textwrap.dedent(
    """
    import datetime as _datetime
    import os as _os
    import time as _time

    _SKEW = float(_os.environ.get("CHAOS_CLOCK_SKEW", "0") or 0)
    if _SKEW:
        _real_time, _real_time_ns = _time.time, _time.time_ns
        _time.time = lambda: _real_time() + _SKEW
        _time.time_ns = lambda: _real_time_ns() + int(_SKEW * 1e9)
        _Real = _datetime.datetime

        class _SkewedDateTime(_Real):
            @classmethod
            def now(cls, tz=None):
                return _Real.now(tz) + _datetime.timedelta(seconds=_SKEW)

            @classmethod
            def utcnow(cls):
                return _Real.now(_datetime.timezone.utc).replace(tzinfo=None) + (
                    _datetime.timedelta(seconds=_SKEW)
                )

            @classmethod
            def today(cls):
                return cls.now()

        _datetime.datetime = _SkewedDateTime
    """
)


@dataclass(frozen=True)
class Line:
    kind: str
    job_id: str
    attempt: int
    pid: int
    clock: float


def read_ledger(project: Path) -> list[Line]:
    path = project / "ledger.txt"
    if not path.exists():
        return []
    lines = []
    for text in path.read_text().splitlines():
        parts = text.split()
        if len(parts) == 5:  # a line cut by a kill in the middle of a write is ignored
            kind, job_id, attempt, pid, clock = parts
            lines.append(Line(kind, job_id, int(attempt), int(pid), float(clock)))
    return lines


def runs_by_job(lines: Sequence[Line], kind: str = "run") -> dict[str, list[Line]]:
    by_job: dict[str, list[Line]] = defaultdict(list)
    for line in lines:
        if line.kind == kind:
            by_job[line.job_id].append(line)
    return by_job


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


def new_jobs(name: str, args: Sequence[object], n: int, *, priority: int = 50) -> list[NewJob]:
    handler = encode_handler(name, tuple(args), {})
    return [NewJob(name=name, handler=handler, queue="default", priority=priority)] * n


def raw_job(handler: str, name: str = "Raw") -> NewJob:
    """A record written straight into a store, bypassing the core's validation."""
    return NewJob(name=name, handler=handler, queue="default", priority=50)


# -- stores -------------------------------------------------------------------------------------


def _with_query(url: str, **params: str) -> str:
    query = "&".join(f"{key}={value}" for key, value in params.items())
    return f"{url}{'&' if '?' in url else '?'}{query}"


@dataclass
class Store:
    """One store for one test: ``url`` for the workers, ``adapter`` for the test itself."""

    kind: str
    url: str
    adapter: Adapter
    #: PostgreSQL: the ``application_name`` of the workers' connections (not the test's).
    application_name: str | None = None
    #: Redis: the key prefix; PostgreSQL: the schema.
    namespace: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return self.adapter.counts() == []


def make_store(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    tag = uuid.uuid4().hex[:10]
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.db'}"
        adapter = from_url(url)
        adapter.migrate()
        yield Store(kind, url, adapter)
        adapter.close()
        return
    if kind == "postgres":
        base = request.getfixturevalue("postgres_url")
        schema = f"chaos_{tag}"
        app_name = f"queuebox-chaos-{tag}"
        url = _with_query(base, schema=schema, application_name=app_name)
        adapter = from_url(_with_query(base, schema=schema, application_name=f"chaos-test-{tag}"))
        adapter.migrate()
        try:
            yield Store(kind, url, adapter, application_name=app_name, namespace=schema)
        finally:
            adapter.close()
            _drop_schema(base, schema)
        return
    if kind == "redis":
        base = request.getfixturevalue("redis_url")
        prefix = f"chaos-{tag}"
        url = _with_query(base, prefix=prefix)
        adapter = from_url(url)
        try:
            yield Store(kind, url, adapter, namespace=prefix)
        finally:
            with contextlib.suppress(Exception):
                adapter.purge()  # type: ignore[attr-defined]
            adapter.close()
        return
    raise AssertionError(kind)


def _drop_schema(url: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The test runs once per store: SQLite, PostgreSQL, Redis."""
    yield from make_store(request.param, request, tmp_path)


@pytest.fixture
def redis_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from make_store("redis", request, tmp_path)


@pytest.fixture
def sqlite_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from make_store("sqlite", request, tmp_path)


@pytest.fixture
def postgres_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from make_store("postgres", request, tmp_path)


# -- worker processes ---------------------------------------------------------------------------


class Proc:
    """One ``python -m queuebox`` process (or another Python script) with its log file."""

    def __init__(self, project: Path, argv: Sequence[str], env: dict[str, str], name: str) -> None:
        self.name = name
        self.log = project / "logs" / f"{name}.log"
        self.log.parent.mkdir(exist_ok=True)
        with self.log.open("wb") as out:
            self.popen = subprocess.Popen(
                [sys.executable, *argv], cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            self.popen.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        return self.popen.wait(timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill_tree(self) -> None:
        for pid in [*_descendants(self.pid), self.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children[parent].append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Project:
    """A project folder: the jobs module, ``queuebox.toml``, the ledger and the processes."""

    def __init__(self, root: Path, store: Store) -> None:
        self.root = root
        self.store = store
        self.procs: list[Proc] = []
        self.killed: set[int] = set()
        (root / "chaos_jobs.py").write_text(JOBS_MODULE)
        self.configure()

    def configure(self, **settings: object) -> None:
        """Write the ``[[workers]]`` table the workers read (lease, batch_size, ...)."""
        values = {"queue": "*", "sleep_delay": 0.5, **settings}
        table = "\n".join(f"{key} = {json.dumps(value)}" for key, value in values.items())
        (self.root / "queuebox.toml").write_text(f'app = ["chaos_jobs"]\n[[workers]]\n{table}\n')

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("QUEUEBOX_", "CHAOS_"))}
        env.update(extra)
        return env

    def worker(self, *args: str, env: dict[str, str] | None = None, name: str = "") -> Proc:
        """``python -m queuebox --url URL --app chaos_jobs work ARGS`` in the project."""
        argv = ["-m", "queuebox", "--url", self.store.url, "--app", "chaos_jobs", "work", *args]
        proc = Proc(self.root, argv, env or self.env(), name or f"worker-{len(self.procs)}")
        self.procs.append(proc)
        return proc

    def script(self, code: str, name: str, env: dict[str, str] | None = None) -> Proc:
        path = self.root / f"{name}.py"
        path.write_text(code)
        proc = Proc(self.root, [str(path)], env or self.env(), name)
        self.procs.append(proc)
        return proc

    def sigkill(self, proc: Proc) -> None:
        self.killed.add(proc.pid)
        proc.signal(signal.SIGKILL)
        proc.wait()

    def ledger(self) -> list[Line]:
        return read_ledger(self.root)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} (pid {p.pid})\n{p.output()}" for p in self.procs)

    def stop_all(self, timeout: float = 30) -> dict[str, int]:
        """SIGTERM every live process once (a warm stop); their exit codes by name."""
        live = [proc for proc in self.procs if proc.alive()]
        for proc in live:
            # A worker says "store: ..." once its stop handlers are in place; a SIGTERM
            # before that (still importing) would kill it instead of stopping it.
            deadline = time.monotonic() + 15
            while proc.alive() and "store:" not in proc.output() and time.monotonic() < deadline:
                time.sleep(0.05)
            proc.signal(signal.SIGTERM)
        return {proc.name: proc.wait(timeout) for proc in live}

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.teardown()

    def teardown(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)  # a stopped process cannot exit otherwise
            proc.kill_tree()


@pytest.fixture
def project(tmp_path: Path, store: Store) -> Iterator[Project]:
    proj = Project(tmp_path, store)
    try:
        yield proj
    finally:
        proj.teardown()


def pick(rng: random.Random, procs: Sequence[Proc]) -> Proc | None:
    live = [proc for proc in procs if proc.alive()]
    return rng.choice(live) if live else None


# -- a Redis server of the test's own -----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """``redis-server`` on a free loopback port, with AOF fsynced on every write."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.popen: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def start(self) -> None:
        log = (self.folder / "redis.log").open("ab")
        self.popen = subprocess.Popen(
            [
                "redis-server",
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.folder),
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--save", "",
                "--maxmemory-policy", "noeviction",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        wait_until(self.ping, 15, f"redis-server on port {self.port}")

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def stop(self, signum: int = signal.SIGTERM) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signum)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.popen = None

    def restart(self, signum: int, down_for: float) -> None:
        self.stop(signum)
        time.sleep(down_for)
        self.start()
        self.restarts += 1


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop(signal.SIGKILL)
