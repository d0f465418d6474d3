"""Server-side counters of a Redis server, read before and after a workload.

``total_reads_processed`` counts the read events the server handled on client sockets: a
request, or a whole pipeline sent at once, is one read, so its growth per job is the round
trips per job, whatever client made them. ``total_commands_processed`` counts commands sent
by clients (a pipeline of 100 ``EVALSHA`` is 100), and ``INFO commandstats`` adds the
commands that scripts run inside the server.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RedisCounters"]


class RedisCounters:
    def __init__(self, url: str) -> None:
        import redis  # noqa: PLC0415 - optional: only Redis subjects read these

        self._client: Any = redis.Redis.from_url(url)
        self._before: dict[str, int] = {}

    def _read(self) -> dict[str, int]:
        stats = self._client.info("stats")
        commands = self._client.info("commandstats")
        return {
            "reads": int(stats["total_reads_processed"]),
            "commands": int(stats["total_commands_processed"]),
            "all_commands": sum(int(value["calls"]) for value in commands.values()),
        }

    def start(self) -> None:
        self._before = self._read()

    def per_job(self, jobs: int) -> dict[str, float]:
        """Growth per job since ``start``, less this probe's own two requests per read."""
        after = self._read()
        delta = {key: after[key] - self._before[key] - 2 for key in after}
        return {
            "round_trips_per_job": delta["reads"] / jobs,
            "commands_per_job": delta["commands"] / jobs,
            "commands_incl_scripts_per_job": delta["all_commands"] / jobs,
        }

    def cpu_seconds(self) -> float:
        """CPU time the server has used since it started (``INFO cpu``: user + system)."""
        cpu = self._client.info("cpu")
        return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])

    def close(self) -> None:
        self._client.close()
