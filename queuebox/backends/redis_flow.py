"""``FlowControl`` on the Redis store: paused queues (the limits of ``NewJob.limit_key`` are
kept by the scripts themselves, inside the claim; see ``lua/lib_limits.lua``).

A queue's pause is the ``paused`` field of its ``meta`` hash, which every claim, peek and
``due`` read in the queue's own slot; the set ``<prefix>:paused`` lists the paused queues for
``paused_queues`` (a script cannot touch both on Redis Cluster, so the flag is what counts:
a queue is listed before its flag is set and unlisted after it is cleared).
"""

from __future__ import annotations

from queuebox.backends.base import FlowControl
from queuebox.backends.redis_keys import check_queue, paused_key
from queuebox.backends.redis_parts import RedisParts
from queuebox.validation import is_queue_name

__all__ = ["RedisFlowControl"]


class RedisFlowControl(RedisParts, FlowControl):
    def pause(self, queue: str) -> bool:
        """Listed in ``<prefix>:paused``, then flagged by ``pause.lua`` (two round trips)."""
        name = check_queue(queue)
        with self._translated_errors():
            self._client.sadd(paused_key(self._keys.prefix), name)
            return bool(self._scripts.call("pause", self._keys(name), [1, self._channel]))

    def resume(self, queue: str) -> bool:
        """``pause.lua`` clears the flag and wakes the queue's idle workers; then unlisted."""
        name = check_queue(queue)
        with self._translated_errors():
            changed = bool(self._scripts.call("pause", self._keys(name), [0, self._channel]))
            self._client.srem(paused_key(self._keys.prefix), name)
        return changed

    def paused_queues(self) -> set[str]:
        """The listed queues whose flag is set: one ``SMEMBERS``, then one pipeline."""
        with self._translated_errors():
            listed = self._client.smembers(paused_key(self._keys.prefix))
            names = sorted(
                name
                for name in (n.decode() if isinstance(n, bytes) else str(n) for n in listed)
                if is_queue_name(name)
            )
            if not names:
                return set()
            pipe = self._client.pipeline(transaction=False)
            for name in names:
                pipe.hexists(self._keys(name).meta, "paused")
            flags = pipe.execute()
        return {name for name, flag in zip(names, flags, strict=True) if flag}
