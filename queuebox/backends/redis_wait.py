"""How idle workers of the Redis store wait for work: an object the adapter holds.

Two ways, both cut short by new work within milliseconds (see ``docs/redis.md``):

* ``wait_for_work``: the pub/sub wake channel, for workers on several queues or all of them;
  the worker then claims (a second round trip).
* ``wait_and_claim``: a worker on one queue blocks on the queue's wake list (``BLPOP``, one
  key, so one slot on Redis Cluster) with the ``claim.lua`` call pipelined behind it on the
  same connection; Redis runs the claim the moment a token arrives, so the jobs come back
  with the wake-up. The claim is the same atomic claim-and-lock script with lock tokens.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from redis.cluster import RedisCluster

from queuebox.backends.base import JobRecord
from queuebox.backends.redis_calls import claim_call
from queuebox.backends.redis_codec import ClaimedBatch
from queuebox.backends.redis_functions import is_missing
from queuebox.backends.redis_keys import KeyCache, check_queue, wake_list
from queuebox.backends.redis_registry import QueueRegistry
from queuebox.backends.redis_scripts import REDIRECTIONS, ScriptRunner
from queuebox.errors import StorageUnavailable

__all__ = ["ClaimFunction", "Waiting"]

_MIN_BLOCK = 0.001  # seconds: a shorter wait claims at once instead of blocking

#: ``claim(worker_id, queues, limit=..., lease=...)``: the adapter's plain claim.
ClaimFunction = Callable[..., list[JobRecord]]


class Waiting:
    """The waits of one adapter: its wake subscription (one per process, reopened after a
    fork) and the lock that lets one thread at a time wait on it."""

    def __init__(
        self,
        client: Any,
        scripts: ScriptRunner,
        keys: KeyCache,
        registry: QueueRegistry,
        channel: str,
        *,
        claim: ClaimFunction,
        translated_errors: Callable[[], contextlib.AbstractContextManager[None]],
    ) -> None:
        self._client = client
        self._scripts = scripts
        self._keys = keys
        self._registry = registry
        self._channel = channel
        self._claim = claim
        self._translated_errors = translated_errors
        self._lock = threading.Lock()
        self._pubsub: Any = None
        self._pid = os.getpid()

    # -- one queue: block on its wake list, claim in the same round trip --------------------

    def wait_and_claim(
        self, worker_id: str, queue: str, *, limit: int, lease: float, timeout: float
    ) -> list[JobRecord]:
        """Claim up to ``limit`` jobs of ``queue`` as soon as it has work, waiting at most
        ``timeout`` seconds (less when a scheduled job or an expired lock falls due sooner);
        ``[]`` when nothing could be claimed by then."""
        keys = self._keys(check_queue(queue))
        with self._translated_errors():
            now_ms, ready, soonest = self._scripts.call("due", keys, [])
            wait = max(0.0, timeout)
            if soonest:
                wait = min(wait, (int(soonest) - int(now_ms)) / 1000)
            if int(ready) or wait < _MIN_BLOCK:
                return self._claim(worker_id, [queue], limit=limit, lease=lease)
            reply = self._block_then_claim(queue, claim_call(keys, worker_id, limit, lease), wait)
        if reply is None:  # the script cache was flushed, or the slot moved: the usual way
            return self._claim(worker_id, [queue], limit=limit, lease=lease)
        return ClaimedBatch.unpack(queue, reply).records()

    def _block_then_claim(self, queue: str, call: Any, wait: float) -> Any:
        _, keys, args = call
        client = self._client
        if isinstance(client, RedisCluster):
            # redis-py refuses EVALSHA in cluster pipelines: use the node's own connection
            # (the wake list and the queue's keys share one hash slot, so one node).
            cluster: Any = client
            client = cluster.get_redis_connection(cluster.get_node_from_key(keys[0]))
        socket_timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
        if socket_timeout:  # block for less than the socket waits for a reply
            wait = min(wait, float(socket_timeout) / 2)
        pipe = client.pipeline(transaction=False)
        pipe.blpop([wake_list(self._keys.prefix, queue)], timeout=round(wait, 3))
        pipe.execute_command(*self._scripts.head("claim"), len(keys), *keys, *args)
        _, reply = pipe.execute(raise_on_error=False)
        if is_missing(reply):
            self._scripts.load_all()
            return None
        if isinstance(reply, REDIRECTIONS) and isinstance(self._client, RedisCluster):
            return None  # the slot moved: let the cluster client follow it
        if isinstance(reply, Exception):
            raise reply
        return reply

    # -- any queues: the pub/sub wake channel ------------------------------------------------

    def wait_for_work(self, queues: Sequence[str] | None, timeout: float) -> None:
        """Block on the wake channel until an enqueue (or release, retry, error) on one of
        ``queues``, the next scheduled run_at or lock expiry, or ``timeout``."""
        deadline = time.monotonic() + max(0.0, timeout)
        if not self._lock.acquire(timeout=max(0.0, timeout)):
            return
        try:
            with self._translated_errors():
                self._wait(queues, deadline)
        except StorageUnavailable:
            self._drop_subscription()
            raise
        finally:
            self._lock.release()

    def _wait(self, queues: Sequence[str] | None, deadline: float) -> None:
        if self._pubsub is None or self._pid != os.getpid():
            self._pid = os.getpid()
            self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            self._pubsub.subscribe(self._channel)
        wanted = None if queues is None else {check_queue(queue) for queue in queues}
        while self._pubsub.get_message(timeout=0) is not None:
            pass  # stale news: the check below reads the current state instead
        names = self._registry.names(queues)
        replies = self._scripts.call_many([("due", self._keys(q), []) for q in names])
        for reply in replies:
            now_ms, ready, soonest = int(reply[0]), int(reply[1]), reply[2]
            if ready:
                return
            if soonest:
                deadline = min(deadline, time.monotonic() + (int(soonest) - now_ms) / 1000)
        while (remaining := deadline - time.monotonic()) > 0:
            message = self._pubsub.get_message(timeout=remaining)
            if message is None or message.get("type") != "message":
                continue
            data = message["data"]
            queue = data.decode() if isinstance(data, bytes) else str(data)
            if wanted is None:
                self._registry.note(queue)
                return
            if queue in wanted:
                return

    def close(self) -> None:
        with self._lock:
            self._drop_subscription()

    def _drop_subscription(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None and self._pid == os.getpid():
            with contextlib.suppress(Exception):
                pubsub.close()
