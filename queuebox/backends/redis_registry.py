"""The queue registry of the Redis store: the set ``<prefix>:queues`` of every queue that ever
held a job, which workers on all queues read (a script never touches two queues, so no
script can list them).

A queue is added by the client the first time an enqueue or tick script reports that it is
not registered yet: ``SADD`` to the registry, then ``reg`` in the queue's ``meta`` hash, so a
crash in between only repeats the ``SADD``. Workers on every queue keep a copy for
``registry_ttl`` seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from queuebox.backends.redis_keys import KeyCache, check_queue, registry_key
from queuebox.validation import is_queue_name

__all__ = ["QueueRegistry"]

#: One plain Redis command: its name and arguments.
Command = tuple[str | int, ...]


class QueueRegistry:
    """The queues of one prefix, read through a cache; thread-safe."""

    def __init__(self, client: Any, keys: KeyCache, ttl: float) -> None:
        self._client = client
        self._keys = keys
        self.key = registry_key(keys.prefix)
        self.ttl = ttl
        self._known: set[str] = set()
        self._known_at = float("-inf")
        self._lock = threading.Lock()

    def names(self, queues: Sequence[str] | None) -> list[str]:
        """The queue names to work on, sorted; ``None`` means every registered queue (the
        cached copy while it is fresh)."""
        if queues is not None:
            return sorted({check_queue(queue) for queue in queues})
        with self._lock:
            if time.monotonic() - self._known_at < self.ttl:
                return sorted(self._known)
        names = self._client.smembers(self.key)
        decoded = {n.decode() if isinstance(n, bytes) else str(n) for n in names}
        with self._lock:
            self._known |= {name for name in decoded if is_queue_name(name)}
            self._known_at = time.monotonic()
            return sorted(self._known)

    def everything(self) -> list[str]:
        """Every registered queue, read from the registry itself rather than the cache."""
        with self._lock:
            self._known_at = float("-inf")
        return self.names(None)

    def note(self, queue: str) -> None:
        """``queue`` has jobs (a wake-up named it): list it without reading the registry."""
        if is_queue_name(queue):
            with self._lock:
                self._known.add(queue)

    def unregistered(self, replies: Sequence[tuple[str, Any]]) -> list[str]:
        """Note the queues of enqueue or tick ``replies`` (queue, reply); return those whose
        script said they are not registered yet (``reply[1]`` false)."""
        with self._lock:
            self._known.update(queue for queue, _ in replies)
        return sorted({queue for queue, reply in replies if not int(reply[1])})

    def noted(self, queue: str, reply: Any) -> bool:
        """Note ``queue`` from one enqueue or tick ``reply``; whether it still needs
        registering (``register``). The request path: no lock once the queue is known."""
        if queue not in self._known:  # (a set read races with no writer harmfully)
            with self._lock:
                self._known.add(queue)
        return not int(reply[1])

    def commands(self, queues: Sequence[str]) -> list[Command]:
        """The commands that register ``queues``, in the order they must run."""
        return [
            command
            for queue in queues
            for command in (("SADD", self.key, queue), ("HSET", self._keys(queue).meta, "reg", 1))
        ]

    def register(self, replies: Sequence[tuple[str, Any]]) -> None:
        """``unregistered`` then ``commands``, run on the sync client."""
        for command in self.commands(self.unregistered(replies)):
            self._client.execute_command(*command)

    def forget(self) -> None:
        with self._lock:
            self._known.clear()
            self._known_at = float("-inf")
