"""The Redis store on a real three-master Redis Cluster that this module starts and stops.

The cluster runs as ``redis-server`` processes on free loopback ports, with their files in a
temporary directory and no persistence; the fixture kills them even when a test fails.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from test_redis_support import UNREACHABLE_URL, isolated_prefix, url_with

from queuebox.backends import from_url
from queuebox.backends.base import CancelOutcome
from queuebox.backends.redis import RedisAdapter
from queuebox.backends.redis_keys import QueueKeys, registry_key
from queuebox.testing import AdapterContract, AdapterFactory, UnreachableFactory, new_job

SLOT_RANGES = [(0, 5460), (5461, 10922), (10923, 16383)]


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(count: int) -> list[int]:
    """``count`` ports whose cluster bus ports (port + 10000) are free as well."""
    ports: list[int] = []
    candidate = 7101 + (os.getpid() % 200) * 5
    while len(ports) < count and candidate < 20000:
        if _free(candidate) and _free(candidate + 10000):
            ports.append(candidate)
        candidate += 1
    assert len(ports) == count, "no free loopback ports for a test cluster"
    return ports


def _wait_until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except redis.RedisError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"the test cluster did not become ready: {what}")


@pytest.fixture(scope="module")
def cluster_url(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The cluster's URL. It asks for ``redis_url`` as well, which puts these tests in the
    Redis server tier: a machine with Redis to test against has its ``redis-server``."""
    binary = shutil.which("redis-server")
    if binary is None:
        message = "the Redis Cluster tests need the redis-server binary on PATH"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    root = tmp_path_factory.mktemp("redis-cluster")
    ports = _free_ports(3)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for port in ports:
            workdir: Path = root / str(port)
            workdir.mkdir()
            processes.append(
                subprocess.Popen(
                    [
                        binary,
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "5000",
                        "--dir",
                        str(workdir),
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--protected-mode",
                        "no",
                        "--logfile",
                        str(workdir / "redis.log"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        nodes: list[Any] = [redis.Redis(host="127.0.0.1", port=port) for port in ports]
        for node in nodes:
            _wait_until(node.ping, 10, "servers answering PING")
        for node, (first, last) in zip(nodes, SLOT_RANGES, strict=True):
            node.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
        for port in ports[1:]:
            nodes[0].execute_command("CLUSTER", "MEET", "127.0.0.1", port)

        def ready() -> bool:
            for node in nodes:
                info = node.execute_command("CLUSTER", "INFO").decode()
                if "cluster_state:ok" not in info or "cluster_known_nodes:3" not in info:
                    return False
            return True

        _wait_until(ready, 30, "cluster_state:ok on every node")
        for node in nodes:
            node.close()
        yield f"redis+cluster://127.0.0.1:{ports[0]}"
    finally:
        for process in processes:
            process.kill()
        for process in processes:
            process.wait(10)


@pytest.fixture
def cluster_prefix(cluster_url: str) -> Iterator[str]:
    with isolated_prefix(cluster_url) as prefix:
        yield prefix


class TestRedisClusterContract(AdapterContract):
    @pytest.fixture
    def adapter_factory(self, cluster_url: str, cluster_prefix: str) -> AdapterFactory:
        url = url_with(cluster_url, prefix=cluster_prefix)
        return lambda: RedisAdapter.from_url(url)

    @pytest.fixture
    def unreachable_adapter_factory(self) -> UnreachableFactory:
        """A cluster client connects when it is built, to find the nodes: an unreachable
        cluster fails there, so the calls are checked on an unreachable single node."""
        return lambda: RedisAdapter.from_url(UNREACHABLE_URL)


def test_each_queue_lives_in_one_slot_and_queues_spread(
    cluster_url: str, cluster_prefix: str
) -> None:
    adapter = from_url(url_with(cluster_url, prefix=cluster_prefix))
    assert isinstance(adapter, RedisAdapter)
    client: Any = adapter.client
    try:
        queues = ["default", "email", "reports", "a", "b", "c"]
        tick = adapter.now().replace(microsecond=0)
        for queue in queues:
            adapter.schedule([new_job(queue, args=[1]), new_job(queue, delay=600)])
            adapter.schedule_tick(f"R-{queue}", tick, new_job(queue, delay=600, unique_key="u"))
            job = adapter.claim("w1", [queue], limit=1, lease=60)[0]
            adapter.fail(job.id, job.lock_token or "", error="E")
        slots = {}
        for queue in queues:
            keys = QueueKeys.of(cluster_prefix, queue)
            base = keys.meta[: -len("meta")]
            names = list(keys)
            names += [base + "s:" + m.decode() for m in client.zrange(keys.sidx, 0, -1)]
            assert client.exists(*names) >= 6  # meta, jobs, failed, unique, ticks, a bucket...
            assert client.exists(keys.unique, keys.ticks) == 2
            queue_slots = {client.cluster_keyslot(name) for name in names}
            assert len(queue_slots) == 1, f"the keys of {queue!r} span slots {queue_slots}"
            slots[queue] = queue_slots.pop()
        assert len(set(slots.values())) == len(queues), slots
        owners = {
            client.get_node_from_key(QueueKeys.of(cluster_prefix, q).jobs).name for q in queues
        }
        assert len(owners) >= 2, "queues should spread over several masters"
        assert client.smembers(registry_key(cluster_prefix)) == {q.encode() for q in queues}
        assert [c.queue for c in adapter.counts()] == sorted(queues)
        assert adapter.recurring_ticks() == {f"R-{queue}": tick for queue in queues}
        jobs = adapter.claim("w2", None, limit=10, lease=60)
        assert jobs == []  # the rest are scheduled for later or failed
    finally:
        adapter.close()


def test_script_cache_flushed_on_every_node(cluster_url: str, cluster_prefix: str) -> None:
    adapter = RedisAdapter.from_url(url_with(cluster_url, prefix=cluster_prefix))
    client = adapter.client
    try:
        adapter.schedule([new_job(q) for q in ("x", "y", "z")])
        client.script_flush()  # every primary
        jobs = adapter.claim("w1", None, limit=3, lease=60)
        client.script_flush()  # every primary
        assert adapter.complete_many([(j.id, j.lock_token or "") for j in jobs]) == [True] * 3
        assert adapter.counts() == []
    finally:
        adapter.close()


def test_wait_and_claim_blocks_on_the_queues_own_node(
    cluster_url: str, cluster_prefix: str
) -> None:
    url = url_with(cluster_url, prefix=cluster_prefix)
    waiter, producer = RedisAdapter.from_url(url), RedisAdapter.from_url(url)

    def wake_with(queue: str, *, flush: bool = False) -> tuple[list[Any], list[Any]]:
        got: list[list[Any]] = []
        thread = threading.Thread(
            target=lambda: got.append(
                waiter.wait_and_claim("w1", queue, limit=5, lease=60, timeout=5)
            )
        )
        thread.start()
        time.sleep(0.1)
        if flush:  # every primary: the pipelined claim meets NOSCRIPT, then claims anew
            waiter.client.script_flush()
        enqueued = time.monotonic()
        stored = producer.schedule([new_job(queue, args=[1]), new_job(queue, args=[2])])
        thread.join(5)
        assert time.monotonic() - enqueued < 1
        return got[0], stored

    try:
        for queue in ("default", "email", "reports"):  # queues on different masters
            claimed, stored = wake_with(queue)
            assert [job.id for job in claimed] == [record.id for record in stored]
            acks = [(job.id, job.lock_token or "") for job in claimed]
            assert waiter.complete_many([*acks, (acks[0][0], "wrong")]) == [True, True, False]
        claimed, stored = wake_with("email", flush=True)
        assert [job.id for job in claimed] == [record.id for record in stored]
        assert waiter.wait_and_claim("w1", "email", limit=5, lease=60, timeout=0.05) == []
    finally:
        waiter.close()
        producer.close()


def test_split_round_trips_go_to_the_queues_own_node(cluster_url: str, cluster_prefix: str) -> None:
    adapter = RedisAdapter.from_url(url_with(cluster_url, prefix=cluster_prefix))
    try:
        for queue in ("default", "email", "reports"):  # queues on different masters
            adapter.schedule([new_job(queue, args=[n]) for n in range(3)])
            first = adapter.claim("w1", [queue], limit=1, lease=60)
            if queue == "reports":
                adapter.client.script_flush()  # every primary: NOSCRIPT, then run again
            receive = adapter.send_complete_and_claim(
                [(first[0].id, first[0].lock_token or "")],
                worker_id="w1",
                queue=queue,
                limit=5,
                lease=60,
            )
            results, batch = receive()
            assert results == [True] and len(batch) == 2
            jobs = batch.records()
            assert {job.queue for job in jobs} == {queue}
            assert adapter.complete_many([(j.id, j.lock_token or "") for j in jobs]) == [True] * 2
        assert adapter.counts() == []
    finally:
        adapter.close()


def test_asyncio_and_cancellation_across_the_nodes(cluster_url: str, cluster_prefix: str) -> None:
    adapter = RedisAdapter.from_url(url_with(cluster_url, prefix=cluster_prefix))
    queues = ("default", "email", "reports")  # on different masters

    async def enqueue() -> list[Any]:
        try:
            return await adapter.aschedule(
                [new_job(queue, args=[n]) for queue in queues for n in range(3)]
            )
        finally:
            await adapter.aclose()

    try:
        records = asyncio.run(enqueue())
        assert [adapter.get(record.id) for record in records] == records
        adapter.client.script_flush()  # every primary: NOSCRIPT on each node, then sent again
        records += asyncio.run(enqueue())
        assert sum(c.ready for c in adapter.counts()) == 18
        held = adapter.claim("w1", None, limit=18, lease=60)
        asked = [job.id for job in held if job.id.endswith("/1")]
        assert {job_id.split("/")[0] for job_id in asked} == set(queues)
        assert {adapter.cancel(job_id) for job_id in asked} == {CancelOutcome.REQUESTED}
        assert adapter.cancel_requested([job.id for job in held]) == set(asked)
        locks = [(job.id, job.lock_token or "") for job in held]
        assert adapter.extend_many(locks, lease=60) == [True] * 18
        marked = [
            adapter.mark_cancelled(job.id, job.lock_token or "") for job in held if job.id in asked
        ]
        assert marked == [True] * 3
        assert sum(c.cancelled for c in adapter.counts()) == 3
    finally:
        adapter.close()
