"""redis.asyncio against a real redis-server, on the loop under test (asyncio, treadle.aio).

The server is started once per session by the ``redis_server`` fixture (real_servers.py)
and emptied before each test.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis.asyncio as redis
from loops_under_test import Run
from real_servers import RedisServer


def test_set_get_and_a_pipeline(run: Run[Any], redis_server: RedisServer) -> None:
    async def main() -> tuple[Any, ...]:
        async with redis.from_url(redis_server.url) as client:
            await client.set("greeting", "hello")
            got = await client.get("greeting")
            async with client.pipeline(transaction=True) as pipeline:
                for index in range(100):
                    pipeline.rpush("numbers", index)
                pipeline.lrange("numbers", 0, -1)
                pipeline.incrby("counter", 7)
                results = await pipeline.execute()
            concurrent = await asyncio.gather(*(client.incr("hits") for _ in range(50)))
            return got, results[-2], results[-1], sorted(concurrent)

    got, numbers, counter, hits = run(main)
    assert got == b"hello"
    assert numbers == [str(index).encode() for index in range(100)]
    assert counter == 7
    assert hits == list(range(1, 51))


def test_pub_sub(run: Run[Any], redis_server: RedisServer) -> None:
    async def main() -> list[Any]:
        async with (
            redis.from_url(redis_server.url) as publisher,
            redis.from_url(redis_server.url) as subscriber_client,
            subscriber_client.pubsub() as subscriber,
        ):
            await subscriber.subscribe("news")
            confirmation = await subscriber.get_message(timeout=5)
            assert confirmation is not None and confirmation["type"] == "subscribe"
            for index in range(10):
                assert await publisher.publish("news", f"item {index}") == 1
            received = []
            while len(received) < 10:
                message = await subscriber.get_message(ignore_subscribe_messages=True, timeout=5)
                assert message is not None, f"a message did not arrive; got {received}"
                received.append(message["data"])
            await subscriber.unsubscribe("news")
            return received

    assert run(main) == [f"item {index}".encode() for index in range(10)]


def test_blpop_times_out_and_wakes_on_push(run: Run[Any], redis_server: RedisServer) -> None:
    async def main() -> tuple[Any, ...]:
        async with (
            redis.from_url(redis_server.url) as waiter,
            redis.from_url(redis_server.url) as pusher,
        ):
            started = time.monotonic()
            timed_out = await waiter.blpop(["jobs"], timeout=0.3)
            waited = time.monotonic() - started
            blocked = asyncio.create_task(waiter.blpop(["jobs"], timeout=10))
            # The pop is blocked once the server counts a blocked client.
            while (await pusher.info("clients"))["blocked_clients"] == 0:
                await asyncio.sleep(0.01)
            await pusher.rpush("jobs", "job-1")
            return timed_out, waited, await blocked

    timed_out, waited, popped = run(main)
    assert timed_out is None
    assert 0.25 <= waited < 5
    assert popped == (b"jobs", b"job-1")
