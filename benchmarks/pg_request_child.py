"""One measurement of ``benchmarks.pg_request_path``, in a process of its own.

Run by path (``python benchmarks/pg_request_child.py MODE --url URL ...``) so that it
imports queuebox from whichever tree ``PYTHONPATH`` names: this checkout or a ``--before``
one, which has no copy of this file. The raw loops come from this checkout's
``baselines.py``, loaded by path for the same reason. It prints one JSON object on its last
line of output.

Modes:

* ``queuebox``: ``perform_later`` one at a time (``--count`` jobs), ``perform_later_many``
  of ``--bulk`` jobs, ``aperform_later`` one at a time, each in blocks that alternate with
  blocks of its raw limit into ``--table`` (one-row INSERTs prepared and unprepared,
  ``executemany`` in one transaction, INSERTs on an ``AsyncConnection``): a load that comes
  and goes on a shared machine then weighs on both sides of every ratio alike.
* ``procrastinate``: the same with ``defer``, ``batch_defer`` and ``defer_async``.
* ``latency-queuebox`` / ``latency-procrastinate``: one worker process (fastest setting) on
  ``--folder``, warmed up, left idle, then ``--probes`` jobs 10 ms apart; a probe's latency
  runs from just before its enqueue call to its first line.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

QUEUE = "bench"
BLOCK = 100  # one-at-a-time calls per block
BULK_REPEATS = 3
QUEUEBOX_JOBS = textwrap.dedent(
    """
    import os, time
    from queuebox import Job

    OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "latency.txt")

    class BenchNoop(Job):
        queue = "bench"

        def perform(self, i):
            pass

    class BenchPing(Job):
        queue = "bench"

        def perform(self, sent):
            now = time.monotonic_ns()
            with open(OUT, "a") as out:
                out.write(f"{now - sent}\\n")
    """
)
PROCRASTINATE_APP = textwrap.dedent(
    """
    import os, time
    from procrastinate import App, PsycopgConnector

    OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "latency.txt")
    SCHEMA = os.environ["QBBENCH_PROCRASTINATE_SCHEMA"]
    app = App(
        connector=PsycopgConnector(
            conninfo=os.environ["QBBENCH_POSTGRES_URL"],
            kwargs={"options": f"-c search_path={SCHEMA}"},
        )
    )

    @app.task(name="noop", queue="bench")
    async def noop(i):
        pass

    @app.task(name="ping", queue="bench")
    async def ping(sent):
        now = time.monotonic_ns()
        with open(OUT, "a") as out:
            out.write(f"{now - sent}\\n")
    """
)


def _baselines() -> Any:
    path = Path(__file__).resolve().with_name("baselines.py")
    spec = importlib.util.spec_from_file_location("qb_request_baselines", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_module(folder: Path, name: str, text: str) -> None:
    (folder / f"{name}.py").write_text(text)
    sys.path.insert(0, str(folder))


def _interleaved(variants: dict[str, Callable[[int, int], object]], count: int) -> dict[str, float]:
    """Rates of ``count`` calls of each variant, run in alternating blocks."""
    spent = dict.fromkeys(variants, 0.0)
    names = list(variants)
    for n, start in enumerate(range(0, count, BLOCK)):
        size = min(BLOCK, count - start)
        for name in names if n % 2 == 0 else names[::-1]:
            started = time.perf_counter()
            variants[name](start, size)
            spent[name] += time.perf_counter() - started
    return {name: count / spent[name] for name in names}


async def _ainterleaved(
    variants: dict[str, Callable[[int, int], Awaitable[object]]], count: int
) -> dict[str, float]:
    spent = dict.fromkeys(variants, 0.0)
    names = list(variants)
    for n, start in enumerate(range(0, count, BLOCK)):
        size = min(BLOCK, count - start)
        for name in names if n % 2 == 0 else names[::-1]:
            started = time.perf_counter()
            await variants[name](start, size)
            spent[name] += time.perf_counter() - started
    return {name: count / spent[name] for name in names}


class _Raw:
    """The raw limits' connections to ``--table``."""

    def __init__(self, args: argparse.Namespace) -> None:
        import psycopg  # noqa: PLC0415

        self.base, self.url, self.table = _baselines(), args.url_raw, args.table
        self.insert = self.base.insert_statement(self.table)
        self.prepared = psycopg.connect(self.url, autocommit=True)
        self.unprepared = psycopg.connect(self.url, autocommit=True, prepare_threshold=None)
        self.bulk = psycopg.connect(self.url)
        for conn in (self.prepared, self.unprepared):
            self.base.insert_rows(conn, self.insert, 0, 20)  # warm up (and prepare)

    def loops(self) -> dict[str, Callable[[int, int], object]]:
        base, insert = self.base, self.insert
        return {
            "insert_loop_rate": lambda start, n: base.insert_rows(self.prepared, insert, start, n),
            "insert_loop_unprepared_rate": lambda start, n: base.insert_rows(
                self.unprepared, insert, start, n
            ),
        }

    def executemany(self, count: int) -> float:
        seconds: float = self.base.executemany_rows(self.bulk, self.insert, count)
        return seconds

    async def aconnect(self) -> Any:
        import psycopg  # noqa: PLC0415

        conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        await self.base.ainsert_rows(conn, self.insert, 0, 20)
        return conn

    def purge(self) -> None:
        self.prepared.execute(f"TRUNCATE {self.table}")

    def close(self) -> None:
        self.purge()
        for conn in (self.prepared, self.unprepared, self.bulk):
            conn.close()


def _bulk_rates(
    raw: _Raw, bulk: Callable[[], object], purge: Callable[[], object], count: int
) -> dict[str, float]:
    spent = {"bulk_rate": 0.0, "executemany_rate": 0.0}
    for n in range(BULK_REPEATS):
        for name in (
            ("bulk_rate", "executemany_rate") if n % 2 == 0 else ("executemany_rate", "bulk_rate")
        ):
            if name == "executemany_rate":
                spent[name] += raw.executemany(count)
            else:
                started = time.perf_counter()
                bulk()
                spent[name] += time.perf_counter() - started
            raw.purge()
            purge()
    return {name: BULK_REPEATS * count / seconds for name, seconds in spent.items()}


def _with_ratios(result: dict[str, float]) -> dict[str, float]:
    for metric, limit in (
        ("enqueue_rate", "insert_loop_rate"),
        ("enqueue_rate", "insert_loop_unprepared_rate"),
        ("bulk_rate", "executemany_rate"),
        ("async_enqueue_rate", "async_insert_loop_rate"),
    ):
        result[f"{metric} / {limit}"] = result[metric] / result[limit]
    return result


def measure_queuebox(args: argparse.Namespace) -> dict[str, float]:
    import queuebox  # noqa: PLC0415
    from queuebox.backends import from_url  # noqa: PLC0415

    _write_module(args.folder, "qb_request_jobs", QUEUEBOX_JOBS)
    from qb_request_jobs import BenchNoop  # type: ignore[import-not-found]  # noqa: PLC0415

    adapter = from_url(args.url)
    queuebox.configure(adapter=adapter)
    raw = _Raw(args)
    try:
        for i in range(20):  # connect, create the schema, warm up
            BenchNoop.perform_later(i)
        perform_later = BenchNoop.perform_later

        def enqueue(start: int, count: int) -> None:
            for i in range(start, start + count):
                perform_later(i)

        result = _interleaved({"enqueue_rate": enqueue, **raw.loops()}, args.count)
        adapter.clear()
        raw.purge()
        calls = [[i] for i in range(args.bulk)]
        result |= _bulk_rates(
            raw, lambda: BenchNoop.perform_later_many(calls), adapter.clear, args.bulk
        )

        async def one_by_one() -> dict[str, float]:
            conn = await raw.aconnect()
            try:
                for i in range(20):
                    await BenchNoop.aperform_later(i)

                async def aenqueue(start: int, count: int) -> None:
                    for i in range(start, start + count):
                        await BenchNoop.aperform_later(i)

                async def ainsert(start: int, count: int) -> None:
                    await raw.base.ainsert_rows(conn, raw.insert, start, count)

                return await _ainterleaved(
                    {"async_enqueue_rate": aenqueue, "async_insert_loop_rate": ainsert}, args.count
                )
            finally:
                await conn.close()
                aclose = getattr(adapter, "aclose", None)
                if aclose is not None:
                    await aclose()

        result |= asyncio.run(one_by_one())
        adapter.clear()
    finally:
        raw.close()
        adapter.close()
    return _with_ratios(result)


def _procrastinate_app(args: argparse.Namespace) -> Any:
    os.environ["QBBENCH_PROCRASTINATE_SCHEMA"] = args.schema
    os.environ["QBBENCH_POSTGRES_URL"] = args.url
    _write_module(args.folder, "qb_request_procrastinate", PROCRASTINATE_APP)
    import qb_request_procrastinate  # type: ignore[import-not-found]  # noqa: PLC0415

    return qb_request_procrastinate


def _procrastinate_schema(args: argparse.Namespace, module: Any) -> None:
    import psycopg  # noqa: PLC0415

    with psycopg.connect(args.url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {args.schema}")
        present = conn.execute(
            "SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = 'procrastinate_jobs'",
            (args.schema,),
        ).fetchone()
    if not present:
        module.app.schema_manager.apply_schema()


def _procrastinate_purge(args: argparse.Namespace) -> None:
    import psycopg  # noqa: PLC0415

    with psycopg.connect(args.url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {args.schema}.procrastinate_jobs CASCADE")


def measure_procrastinate(args: argparse.Namespace) -> dict[str, float]:
    module = _procrastinate_app(args)
    raw = _Raw(args)
    module.app.open()
    try:
        _procrastinate_schema(args, module)
        defer = module.noop.defer
        for i in range(20):
            defer(i=i)

        def enqueue(start: int, count: int) -> None:
            for i in range(start, start + count):
                defer(i=i)

        result = _interleaved({"enqueue_rate": enqueue, **raw.loops()}, args.count)
        _procrastinate_purge(args)
        raw.purge()
        result |= _bulk_rates(
            raw,
            lambda: module.noop.batch_defer(*({"i": i} for i in range(args.bulk))),
            lambda: _procrastinate_purge(args),
            args.bulk,
        )
    finally:
        module.app.close()

    async def one_by_one() -> dict[str, float]:
        conn = await raw.aconnect()
        try:
            async with module.app.open_async():
                for i in range(20):
                    await module.noop.defer_async(i=i)

                async def aenqueue(start: int, count: int) -> None:
                    for i in range(start, start + count):
                        await module.noop.defer_async(i=i)

                async def ainsert(start: int, count: int) -> None:
                    await raw.base.ainsert_rows(conn, raw.insert, start, count)

                return await _ainterleaved(
                    {"async_enqueue_rate": aenqueue, "async_insert_loop_rate": ainsert}, args.count
                )
        finally:
            await conn.close()

    try:
        result |= asyncio.run(one_by_one())
        _procrastinate_purge(args)
    finally:
        raw.close()
    return _with_ratios(result)


def _latencies(folder: Path) -> list[float]:
    path = folder / "latency.txt"
    return [int(v) / 1e6 for v in path.read_text().split()] if path.exists() else []


def _wait_for(count: int, folder: Path, worker: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while len(_latencies(folder)) < count:
        if time.monotonic() > deadline or worker.poll() is not None:
            raise RuntimeError(
                f"only {len(_latencies(folder))} of {count} probes ran; the worker said:\n"
                + log.read_text()[-2000:]
            )
        time.sleep(0.001)


def _queuebox_prober(args: argparse.Namespace) -> tuple[list[str], Any, Any]:
    """The worker's command line, a probe, and what closes the enqueuing side."""
    import queuebox  # noqa: PLC0415
    from queuebox.backends import from_url  # noqa: PLC0415

    _write_module(args.folder, "qb_request_jobs", QUEUEBOX_JOBS)
    from qb_request_jobs import BenchPing  # noqa: PLC0415

    adapter = from_url(args.url)
    adapter.migrate()
    queuebox.configure(adapter=adapter)
    argv = [sys.executable, "-m", "queuebox", "--url", args.url, "--app", "qb_request_jobs"]
    argv += ["--log-level", "WARNING", "work", "-q", QUEUE, "--batch-size", "100"]

    def close() -> None:
        adapter.clear()
        adapter.close()

    return argv, lambda: BenchPing.perform_later(time.monotonic_ns()), close


def _procrastinate_prober(args: argparse.Namespace) -> tuple[list[str], Any, Any]:
    module = _procrastinate_app(args)
    module.app.open()
    _procrastinate_schema(args, module)
    argv = [sys.executable, "-m", "procrastinate", "--app", "qb_request_procrastinate.app"]
    argv += ["worker", "--queues", QUEUE, "--concurrency", "10", "--delete-jobs", "always"]
    return argv, lambda: module.ping.defer(sent=time.monotonic_ns()), module.app.close


def _probe_times(
    args: argparse.Namespace, worker: subprocess.Popen[bytes], probe: Any, log: Path
) -> list[float]:
    probe()  # warm-up: the worker is up and has imported everything
    _wait_for(1, args.folder, worker, log)
    time.sleep(0.5)  # let the worker go idle
    origin = time.monotonic()
    for n in range(args.probes):
        pause = origin + n * 0.01 - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        probe()
    _wait_for(args.probes + 1, args.folder, worker, log)
    return sorted(_latencies(args.folder)[1:])


def measure_latency(args: argparse.Namespace, system: str) -> dict[str, Any]:
    folder: Path = args.folder
    path = os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    prober = _queuebox_prober if system == "queuebox" else _procrastinate_prober
    argv, probe, close = prober(args)  # sets the procrastinate app's variables in os.environ
    env.update({k: v for k, v in os.environ.items() if k.startswith("QBBENCH_")})
    log_path = folder / "worker.log"
    try:
        with log_path.open("wb") as log:
            worker = subprocess.Popen(argv, cwd=folder, env=env, stdout=log, stderr=log)
            try:
                found = _probe_times(args, worker, probe, log_path)
            finally:
                worker.terminate()
                try:
                    worker.wait(10)
                except subprocess.TimeoutExpired:
                    worker.kill()
                    worker.wait()
    finally:
        close()
    return {
        "p50_ms": statistics.median(found),
        "p99_ms": found[min(len(found) - 1, round(0.99 * (len(found) - 1)))],
        "probes": len(found),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode")
    parser.add_argument("--url", required=True)
    parser.add_argument("--url-raw", default="", help="the server, for the raw limits")
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--schema", default="")
    parser.add_argument("--table", default="")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--bulk", type=int, default=10_000)
    parser.add_argument("--probes", type=int, default=200)
    args = parser.parse_args(argv)
    if args.mode == "queuebox":
        result = measure_queuebox(args)
    elif args.mode == "procrastinate":
        result = measure_procrastinate(args)
    elif args.mode in ("latency-queuebox", "latency-procrastinate"):
        result = measure_latency(args, args.mode.partition("-")[2])
    else:
        parser.error(f"unknown mode {args.mode!r}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
