"""``python -m benchmarks.search_depth``: what one page of the dashboard's job list costs at a
million jobs, per filter, on each store, for this tree and optionally another one.

For each tree a child process (that tree first on ``PYTHONPATH``) fills a private namespace
with ``-n`` waiting no-op jobs (SQL stores by direct inserts, Redis through the adapter) and
times ``search_jobs(limit=50, ...)`` for each filter: none, a dense name (every job's), a
name, a queue and a text that match nothing, and a state no job is in; each from the top
and from a cursor 90 % of the way down; the median of ``--calls`` calls. Trees alternate
store by store, so that the machine's load weighs on both.

    git worktree add --detach /tmp/qb-before <commit>
    python -m benchmarks.search_depth --before /tmp/qb-before -n 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.report import table
from benchmarks.subject import REPO

__all__ = ["main"]

#: (label, search_jobs keyword arguments). ``BenchNoop`` is every job's name; the others
#: match no job, so the call reads as far as the store lets it before it answers.
FILTERS: list[tuple[str, dict[str, str]]] = [
    ("none", {}),
    ("name, every job", {"name": "BenchNoop"}),
    ("name, no job", {"name": "Nobody"}),
    ("queue, no job", {"queue": "nobody"}),
    ("text, no job", {"text": "no-such-text"}),
    ("state failed, no job", {"state": "failed"}),
]

_CHILD = """
import json, statistics, sys, time
from benchmarks.stores import DEFAULT_URLS, StoreSpace
from queuebox.backends import from_url
from queuebox.backends.base import JobState, NewJob
from queuebox.errors import ValidationError
from queuebox.payload import encode_handler

store, jobs, calls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
filters = json.loads(sys.argv[4])
space = StoreSpace(store, DEFAULT_URLS[store])
adapter = from_url(space.url)
try:
    adapter.migrate()
    for first in range(1, jobs + 1, 100_000):
        count = min(100_000, jobs + 1 - first)
        if not space.bulk_load(first, count):
            for start in range(first, first + count, 10_000):
                adapter.schedule([
                    NewJob(name="BenchNoop", handler=encode_handler("BenchNoop", (i,), {}),
                           queue="bench", priority=50)
                    for i in range(start, min(first + count, start + 10_000))
                ])
    # A cursor 90 % of the way down: walk to it once, pages of the most a call may give.
    cursor, seen = None, 0
    while seen < jobs * 0.9:
        page = adapter.search_jobs(limit=min(10_000, int(jobs * 0.9) - seen), cursor=cursor)
        seen += len(page.jobs)
        cursor = page.next_cursor
        if cursor is None:
            break
    found = {}
    for label, given in filters:
        kwargs = dict(given)
        if "state" in kwargs:
            kwargs["state"] = JobState(kwargs["state"])
        for where, start in (("top", None), ("deep", cursor)):
            times, sizes = [], []
            try:
                for _ in range(calls):
                    began = time.perf_counter()
                    page = adapter.search_jobs(limit=50, cursor=start, **kwargs)
                    times.append(time.perf_counter() - began)
                    sizes.append(len(page.jobs))
            except ValidationError:  # Redis: a cursor holds its search's queues
                found[f"{label}|{where}"] = None
                continue
            found[f"{label}|{where}"] = [statistics.median(times), sizes[-1]]
    print(json.dumps(found))
finally:
    adapter.close()
    space.remove()
"""


def _child(tree: Path, store: str, jobs: int, calls: int) -> dict[str, list[float] | None]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), str(REPO)])}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, store, str(jobs), str(calls), json.dumps(FILTERS)],
        env=env,
        cwd="/",
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"the {store} child of {tree} failed:\n{done.stderr}")
    result: dict[str, list[float] | None] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _top(result: dict[str, list[float] | None], name: str) -> float:
    top = result[f"{name}|top"]
    assert top is not None  # every filter runs from the top
    return top[0]


def _found(result: dict[str, list[float] | None], name: str) -> int:
    top = result[f"{name}|top"]
    assert top is not None
    return int(top[1])


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="another checkout, measured beside this one")
    parser.add_argument("-n", type=int, default=1_000_000, help="jobs in the store")
    parser.add_argument("--calls", type=int, default=5, help="calls per filter (the median)")
    parser.add_argument("--stores", default="sqlite,postgres,redis")
    args = parser.parse_args()
    if args.n < 100:
        parser.error("-n must be at least 100")
    trees = [("this tree", REPO)]
    if args.before is not None:
        trees.insert(0, ("before", args.before.resolve()))
    for store in args.stores.split(","):
        results: dict[str, dict[str, list[float] | None]] = {}
        for label, tree in trees:
            print(f"  {store}: {label} ({tree}) ...", file=sys.stderr, flush=True)
            started = time.perf_counter()
            results[label] = _child(tree, store, args.n, args.calls)
            print(f"    {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        headers = ["filter"]
        for label, _ in trees:
            headers += [f"{label}: top ms", f"{label}: 90 % down ms", "jobs"]
        if len(trees) == 2:
            headers.append("top, this / before")
        rows: list[list[Any]] = []
        for name, _ in FILTERS:
            row: list[Any] = [name]
            for label, _ in trees:
                deep = results[label][f"{name}|deep"]
                top = _top(results[label], name)
                row += [
                    _ms(top),
                    "-" if deep is None else _ms(deep[0]),
                    f"{_found(results[label], name)} / {'-' if deep is None else int(deep[1])}",
                ]
            if len(trees) == 2:
                before, after = (_top(results[label], name) for label, _ in trees)
                row.append(f"{after / before:.3f}")
            rows.append(row)
        print(f"\n### search_jobs(limit=50) on {store}, {args.n:,} jobs (median of {args.calls})\n")
        print("\n".join(table(headers, rows)))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
