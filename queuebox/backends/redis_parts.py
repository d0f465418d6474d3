"""What the parts of the Redis store share: the adapter's client, key names, scripts, queue
registry and wake channel, set once by ``RedisAdapter.__init__``.

The optional interfaces the store declares beyond the core (``redis_flow``, ``redis_monitor``,
``redis_search``) are written as classes over these parts, so that each lives in a module
of its own and ``RedisAdapter`` inherits them all.
"""

from __future__ import annotations

import contextlib
from typing import Any

from queuebox.backends.redis_client import translated_errors
from queuebox.backends.redis_keys import KeyCache
from queuebox.backends.redis_registry import QueueRegistry
from queuebox.backends.redis_scripts import ScriptRunner

__all__ = ["RedisParts"]


class RedisParts:
    """The attributes every part of the Redis store reads (set by ``RedisAdapter``)."""

    _client: Any
    _keys: KeyCache
    _scripts: ScriptRunner
    _registry: QueueRegistry
    _channel: str
    _url: str

    def _translated_errors(self) -> contextlib.AbstractContextManager[None]:
        return translated_errors(self._url)

    def _time_ms(self) -> int:
        seconds, micros = self._client.time()
        return int(seconds) * 1000 + int(micros) // 1000
