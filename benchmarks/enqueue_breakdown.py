"""Where the time of one Redis enqueue goes, against a PING.

``python -m benchmarks.enqueue_breakdown [--redis-url URL] [--calls N]`` times, in
alternating blocks of N calls (the best block of six counts), from the cheapest to the whole:

1. ``PING`` (the round trip);
2. ``EVALSHA`` of a script that does nothing, with the enqueue's eleven keys and three
   arguments (redis-py packing them, Redis parsing them);
3. ``EVALSHA`` of the real enqueue script with the same arguments, through redis-py's
   ``evalsha`` (its server work);
4. the call as the adapter makes it: ``FCALL`` of the enqueue function where the server has
   Redis Functions, else that ``EVALSHA`` (``redis_wire``: the command's fixed part packed
   once, written straight on a pooled connection);
5. ``RedisAdapter.schedule`` of one prepared job (the adapter's own client work);
6. ``Job.perform_later`` (validation, the JSON payload, the returned record).

Then it reads the enqueue's own server time per call from ``INFO commandstats``, for steps 3
and 4 and for step 3 with the libraries whole in front of the script (as every ``EVALSHA``
script was before preludes were trimmed), the median of five alternating blocks each; the
counters are read before and after, never reset, so other runs on the same server keep
theirs. The queue lives
under a fresh key prefix, removed at the end.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import time
from collections.abc import Callable
from typing import Any

import queuebox
from benchmarks.jobs import QUEUE, BenchNoop
from queuebox.backends.redis import RedisAdapter
from queuebox.backends.redis_calls import pack_jobs
from queuebox.backends.redis_scripts import LIBRARIES, _read

__all__ = ["main", "measure", "server_micros"]


def _best_of(
    variants: dict[str, Callable[[], object]], calls: int, rounds: int = 6
) -> dict[str, float]:
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(rounds):
        for name, call in variants.items():
            started = time.perf_counter()
            for _ in range(calls):
                call()
            best[name] = min(best[name], (time.perf_counter() - started) / calls * 1e6)
    return best


def server_micros(
    client: Any, call: Callable[[], object], calls: int, command: str = "evalsha"
) -> float:
    """Server microseconds per ``command`` over ``calls`` calls, from the ``INFO
    commandstats`` counters read before and after (other clients' calls in between count
    too: on a shared server, an upper bound)."""

    def totals() -> tuple[int, float]:
        stats = client.info("commandstats").get(f"cmdstat_{command}", {})
        return int(stats.get("calls", 0)), float(stats.get("usec", 0))

    calls_before, micros_before = totals()
    for _ in range(calls):
        call()
    calls_after, micros_after = totals()
    return (micros_after - micros_before) / max(1, calls_after - calls_before)


def measure(redis_url: str, calls: int) -> dict[str, float]:
    """Microseconds per call of each step, and the enqueue script's server time."""
    prefix = f"qbbench-{secrets.token_hex(4)}"
    adapter = RedisAdapter.from_url(f"{redis_url}{'&' if '?' in redis_url else '?'}prefix={prefix}")
    client: Any = adapter._client
    queuebox.configure(adapter=adapter)
    try:
        BenchNoop.perform_later(0)  # registers the queue and loads the scripts
        job = BenchNoop.set()._new_job((1,), {})
        keys = list(adapter._keys(QUEUE))
        args: list[bytes | str | int] = [adapter._channel, QUEUE, pack_jobs([job])]
        enqueue_sha = adapter._scripts.scripts["enqueue"].sha
        nothing_sha = client.script_load("return {1, 1, 1}")
        result = _best_of(
            {
                "PING": client.ping,
                "EVALSHA of an empty script, same keys and arguments": lambda: client.evalsha(
                    nothing_sha, len(keys), *keys, *args
                ),
                "EVALSHA enqueue, same arguments": lambda: client.evalsha(
                    enqueue_sha, len(keys), *keys, *args
                ),
                "the adapter's call, written straight (redis_wire)": lambda: adapter._scripts.call(
                    "enqueue", keys, args
                ),
                "RedisAdapter.schedule([job])": lambda: adapter.schedule([job]),
                "BenchNoop.perform_later(1)": lambda: BenchNoop.perform_later(1),
            },
            calls,
        )
        whole = "\n".join(_read(name) for name in LIBRARIES) + "\nbind(KEYS)\n"
        whole_sha = client.script_load(whole + _read("enqueue.lua"))
        opening = adapter._scripts.head("enqueue")[0].lower()
        served: dict[str, tuple[str, Callable[[], object]]] = {
            "EVALSHA enqueue, whole prelude, server time per call": (
                "evalsha",
                lambda: client.evalsha(whole_sha, len(keys), *keys, *args),
            ),
            "EVALSHA enqueue, server time per call (INFO commandstats)": (
                "evalsha",
                lambda: client.evalsha(enqueue_sha, len(keys), *keys, *args),
            ),
            f"the adapter's {opening.upper()}, server time per call": (
                opening,
                lambda: adapter._scripts.call("enqueue", keys, args),
            ),
        }
        times: dict[str, list[float]] = {name: [] for name in served}
        for _ in range(5):  # alternating blocks, the median counts
            for name, (command, call) in served.items():
                times[name].append(server_micros(client, call, calls, command))
        result.update({name: statistics.median(values) for name, values in times.items()})
        return result
    finally:
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.delete(key)
        adapter.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.enqueue_breakdown")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--calls", type=int, default=2000, help="calls per timed block")
    options = parser.parse_args()
    result = measure(options.redis_url, options.calls)
    ping = result["PING"]
    for name, micros in result.items():
        ratio = f"  ({micros / ping:.2f}x PING)" if "server" not in name else ""
        print(f"{name:66} {micros:8.1f} us{ratio}")


if __name__ == "__main__":
    main()
