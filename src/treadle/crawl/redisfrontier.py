"""The shared frontier on Redis: crawler processes on one or many machines share one crawl.

Every operation is one Lua script (Redis 7.0 commands only), so each is atomic on the
server, and each is safe to send again after a lost reply (claims and host slots carry
the worker's token; an acknowledgement is remembered under its token). Times are the
Redis server's (``TIME``), so workers on machines with skewed clocks agree. A worker
proves it is alive by renewing its entry in the workers hash; a worker whose entry
expired is dead, and ``keep_alive`` (any live worker's) returns its leases to the
frontier and frees its host slots. Connection errors (a Redis restart) are retried with
backoff. The keys, the protocol and the failure cases are in docs/crawling.md.
Crawler layer, asyncio side: imports redis.asyncio (the ``crawl`` extra), so it runs on
``treadle.aio``'s loop.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from treadle.crawl.frontier import (
    DEFAULT_LEASE,
    DISALLOWED,
    DONE,
    HOST_FULL_RETRY,
    SITEMAP,
    WAIT,
    FrontierError,
    Lease,
    Outcome,
    SharedFrontier,
    default_worker_name,
    job_from_json,
    job_key,
    job_to_json,
    record_with_placeholder,
)
from treadle.crawl.records import Record
from treadle.crawl.state import SavedJob

try:
    import redis.asyncio as aioredis
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ModuleNotFoundError as missing:  # pragma: no cover - depends on the install
    raise ModuleNotFoundError(
        "--frontier redis://... needs the redis package, which comes with the 'crawl'"
        " extra: pip install 'treadle[crawl]'",
        name=missing.name,
    ) from None

__all__ = ["RedisFrontier"]

# How long one operation keeps retrying a Redis that does not answer before the crawl
# gives up (a restart takes seconds; a Redis gone for minutes needs a person).
RETRY_FOR = 300.0
_RETRY_FIRST = 0.05
_RETRY_MOST = 2.0
# How long ``close`` waits for commands whose callers were cancelled.
_CLOSE_WAIT = 5.0

_LUA_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

# KEYS: meta, seen, queue. ARGV: roots (JSON), then (seen key, job) pairs.
_JOIN = """
local roots = redis.call('HGET', KEYS[1], 'roots')
if roots and roots ~= ARGV[1] then return {'other', roots} end
if not roots then redis.call('HSET', KEYS[1], 'roots', ARGV[1], 'layout', '1') end
for i = 2, #ARGV, 2 do
  if redis.call('SADD', KEYS[2], ARGV[i]) == 1 then redis.call('RPUSH', KEYS[3], ARGV[i + 1]) end
end
return {'ok', ''}
"""

# KEYS: meta, queue, leases, claims, workers. ARGV: token, worker, lease ms.
_CLAIM = _LUA_NOW + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'lost'} end
local again = redis.call('HGET', KEYS[4], ARGV[1])
if again then return {'job', again} end
redis.call('HSET', KEYS[5], ARGV[2], now + tonumber(ARGV[3]))
local job = redis.call('LPOP', KEYS[2])
if not job then
  if redis.call('HLEN', KEYS[3]) == 0 then return {'done'} end
  return {'wait'}
end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[4], ARGV[1], job)
return {'job', job}
"""

# KEYS: leases, claims, acked, seen, queue, too-deep, disallowed, sitemaps, records of
# the worker. ARGV: token, worker, outcome, record JSON (a disallowed URL: the URL),
# number of found jobs, then (seen key, job) pairs, then too-deep URLs.
_ACK = """
local done = redis.call('HGET', KEYS[3], ARGV[1])
if done then return {'ok', done} end
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return {'lost', ''} end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
local new = 0
local found = tonumber(ARGV[5])
for i = 6, 5 + 2 * found, 2 do
  if redis.call('SADD', KEYS[4], ARGV[i]) == 1 then
    redis.call('RPUSH', KEYS[5], ARGV[i + 1])
    new = new + 1
  end
end
for i = 6 + 2 * found, #ARGV do
  if redis.call('SISMEMBER', KEYS[4], 'page ' .. ARGV[i]) == 0 then
    redis.call('SADD', KEYS[6], ARGV[i])
  end
end
local committed = ''
if ARGV[3] == 'disallowed' then
  redis.call('RPUSH', KEYS[7], ARGV[4])
else
  local first, last = string.find(ARGV[4], '"num_new_urls": -1', 1, true)
  committed = string.sub(ARGV[4], 1, first - 1) .. '"num_new_urls": ' .. new
    .. string.sub(ARGV[4], last + 1)
  if ARGV[3] == 'sitemap' then
    redis.call('RPUSH', KEYS[8], committed)
  else
    redis.call('RPUSH', KEYS[9], committed)
  end
end
redis.call('HSET', KEYS[3], ARGV[1], committed)
return {'ok', committed}
"""

# KEYS: leases, claims, queue. ARGV: worker, then tokens.
_RELEASE = """
for i = 2, #ARGV do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[1] then
    local job = redis.call('HGET', KEYS[2], ARGV[i])
    redis.call('HDEL', KEYS[1], ARGV[i])
    redis.call('HDEL', KEYS[2], ARGV[i])
    redis.call('LPUSH', KEYS[3], job)
  end
end
return 0
"""

# KEYS: workers, leases, claims, queue. ARGV: worker, lease ms.
# Renews the worker; returns the leases of expired workers to the frontier.
_KEEP_ALIVE = _LUA_NOW + """
redis.call('HSET', KEYS[1], ARGV[1], now + tonumber(ARGV[2]))
local workers = redis.call('HGETALL', KEYS[1])
for i = 1, #workers, 2 do
  if tonumber(workers[i + 1]) < now then redis.call('HDEL', KEYS[1], workers[i]) end
end
local leases = redis.call('HGETALL', KEYS[2])
local returned = 0
for i = 1, #leases, 2 do
  if redis.call('HEXISTS', KEYS[1], leases[i + 1]) == 0 then
    redis.call('LPUSH', KEYS[4], redis.call('HGET', KEYS[3], leases[i]))
    redis.call('HDEL', KEYS[2], leases[i])
    redis.call('HDEL', KEYS[3], leases[i])
    returned = returned + 1
  end
end
return returned
"""

# KEYS: workers, leases, claims, queue. ARGV: worker.
# The worker is leaving: what it still holds goes back, and it is no longer alive (so
# its host slots free too).
_RETIRE = """
local leases = redis.call('HGETALL', KEYS[2])
for i = 1, #leases, 2 do
  if leases[i + 1] == ARGV[1] then
    redis.call('LPUSH', KEYS[4], redis.call('HGET', KEYS[3], leases[i]))
    redis.call('HDEL', KEYS[2], leases[i])
    redis.call('HDEL', KEYS[3], leases[i])
  end
end
redis.call('HDEL', KEYS[1], ARGV[1])
return 0
"""

# KEYS: host. ARGV: back-off ms.
_BACK_OFF_HOST = _LUA_NOW + """
local next_start = tonumber(redis.call('HGET', KEYS[1], 'next_start') or '0')
if now + tonumber(ARGV[1]) > next_start then
  redis.call('HSET', KEYS[1], 'next_start', now + tonumber(ARGV[1]))
end
return 0
"""

# KEYS: host, host slots, workers. ARGV: worker, token, cap, spacing ms.
# 0: the slot is taken; -1: the host is at its cap; else ms to wait for the next start.
_ACQUIRE_HOST = _LUA_NOW + """
local next_start = tonumber(redis.call('HGET', KEYS[1], 'next_start') or '0')
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then return 0 end
local slots = redis.call('HGETALL', KEYS[2])
local live = 0
for i = 1, #slots, 2 do
  local expires = redis.call('HGET', KEYS[3], slots[i + 1])
  if not expires or tonumber(expires) < now then
    redis.call('HDEL', KEYS[2], slots[i])
  else
    live = live + 1
  end
end
if live >= tonumber(ARGV[3]) then return -1 end
if now < next_start then return next_start - now end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[1], 'next_start', now + tonumber(ARGV[4]))
return 0
"""


class RedisFrontier(SharedFrontier):
    """A crawl's frontier in the Redis database at ``url``, under ``crawl_id``.

    ``worker`` names this worker (its records are kept under that name, so that a worker
    started again under it can repair its ``--json`` file); ``lease`` is how long its
    leases outlive its last sign of life.
    """

    def __init__(
        self, url: str, crawl_id: str, *, worker: str | None = None, lease: float = DEFAULT_LEASE
    ) -> None:
        if not crawl_id or any(ch.isspace() for ch in crawl_id):
            raise FrontierError(
                f"--crawl-id must be a non-empty name without spaces, got {crawl_id!r}"
            )
        self.url = url
        self.crawl_id = crawl_id
        self.worker = worker or default_worker_name()
        # This run of the worker: leases and host slots belong to it, so a worker started
        # again under the same name never takes over the leases of its dead self.
        self._incarnation = f"{self.worker}/{os.urandom(6).hex()}"
        self._lease_ms = max(1, round(lease * 1000))
        self.keep_alive_interval = lease / 3
        self._claims = itertools.count()
        try:
            self._redis: Any = aioredis.Redis.from_url(url)
        except ValueError as exc:
            raise FrontierError(
                f"--frontier {url!r} is not a Redis URL ({exc}): give redis://HOST:PORT/DB"
            ) from None
        prefix = f"treadle:{{{crawl_id}}}:"
        self._key = {
            name: prefix + name
            for name in (
                "meta", "seen", "queue", "leases", "claims", "acked", "workers",
                "too-deep", "disallowed", "sitemaps",
            )
        }  # fmt: skip
        self._prefix = prefix
        self._scripts = {
            name: self._redis.register_script(source)
            for name, source in (
                ("join", _JOIN), ("claim", _CLAIM), ("ack", _ACK), ("release", _RELEASE),
                ("keep_alive", _KEEP_ALIVE), ("acquire_host", _ACQUIRE_HOST),
                ("back_off_host", _BACK_OFF_HOST), ("retire", _RETIRE),
            )
        }  # fmt: skip
        self.retries = 0
        """Operations sent again after a connection error."""
        self._joined = False
        # Commands under way (see ``_retrying``).
        self._calls: set[asyncio.Future[Any]] = set()

    def _keys(self, *names: str) -> list[str]:
        return [self._key[name] for name in names]

    async def _call(self, operation: str, keys: list[str], args: list[Any]) -> Any:
        """Run one script, retrying connection errors with backoff for up to ``RETRY_FOR``."""
        script = self._scripts[operation]
        return await self._retrying(lambda: script(keys=keys, args=args))

    async def _retrying(self, attempt: Callable[[], Awaitable[Any]]) -> Any:
        """``await attempt()``, again after each connection error (with backoff), until
        ``RETRY_FOR`` has passed. Every operation is safe to repeat (see the scripts)."""
        give_up = time.monotonic() + RETRY_FOR
        wait = _RETRY_FIRST
        while True:
            # redis-py can swallow a cancellation that lands mid-command (its issues
            # #2028, #2551: seen here too, a stopped crawl's workers kept polling). So
            # each command runs in a task of its own, awaited through a shield: the
            # caller's cancellation always reaches the caller, and the command ends on
            # its own (``close`` waits for it).
            call = asyncio.ensure_future(attempt())
            self._calls.add(call)
            call.add_done_callback(self._call_done)
            try:
                return await asyncio.shield(call)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                failure: Exception = exc
            if time.monotonic() > give_up:
                raise FrontierError(
                    f"Redis at {self.url} did not answer for {RETRY_FOR:.0f} s"
                    f" ({type(failure).__name__}: {failure}); its leases return to the"
                    " frontier when they expire: start the worker again once Redis is back"
                ) from failure
            self.retries += 1
            await asyncio.sleep(wait)
            wait = min(wait * 2, _RETRY_MOST)

    def _call_done(self, call: asyncio.Future[Any]) -> None:
        self._calls.discard(call)
        if not call.cancelled():
            # Its caller retrieved the outcome, or was cancelled and no longer wants
            # it: a command whose caller left is as if never answered (every one is
            # safe to send again, and a lease nobody acknowledges expires).
            call.exception()

    async def join(self, roots: list[str], seeds: list[SavedJob]) -> None:
        args: list[Any] = [json.dumps(roots)]
        for job in seeds:
            args += [job_key(job.url, job.is_sitemap), job_to_json(job)]
        try:
            status, saved = await self._call("join", self._keys("meta", "seen", "queue"), args)
        except RedisError as exc:
            raise FrontierError(f"cannot use Redis at {self.url}: {exc}") from None
        if status == b"other":
            raise FrontierError(
                f"the crawl {self.crawl_id!r} in Redis is a crawl of"
                f" {', '.join(json.loads(saved))}: give those roots to join it,"
                " or another --crawl-id"
            )
        self._joined = True
        await self.keep_alive()

    async def claim(self) -> Lease | Literal["wait", "done"]:
        token = f"{self._incarnation}#{next(self._claims)}"
        reply = await self._call(
            "claim",
            self._keys("meta", "queue", "leases", "claims", "workers"),
            [token, self._incarnation, self._lease_ms],
        )
        kind = reply[0]
        if kind == b"job":
            return Lease(job_from_json(reply[1]), token)
        if kind == b"lost":
            raise FrontierError(
                f"the crawl {self.crawl_id!r} is gone from Redis at {self.url} (restarted"
                " without persistence, or flushed?): its frontier is lost; see"
                " docs/crawling.md for the persistence a crawl needs"
            )
        return DONE if kind == b"done" else WAIT

    async def ack(
        self,
        lease: Lease,
        outcome: Outcome,
        record: Record | None,
        found: list[SavedJob],
        too_deep: list[str],
    ) -> Record | None:
        if outcome == DISALLOWED or record is None:
            payload = lease.job.url
        else:
            payload = record_with_placeholder(record)
        args: list[Any] = [lease.token, self._incarnation, outcome, payload, len(found)]
        for job in found:
            args += [job_key(job.url, job.is_sitemap), job_to_json(job)]
        args += too_deep
        status, committed = await self._call(
            "ack",
            [
                *self._keys(
                    "leases", "claims", "acked", "seen", "queue", "too-deep", "disallowed",
                    "sitemaps",
                ),
                self._prefix + "records:" + self.worker,
            ],
            args,
        )  # fmt: skip
        if status == b"lost":
            return None
        if outcome == DISALLOWED or record is None:
            return record
        return Record.from_json(committed.decode())

    async def release(self, leases: list[Lease]) -> None:
        if leases:
            await self._call(
                "release",
                self._keys("leases", "claims", "queue"),
                [self._incarnation, *(lease.token for lease in leases)],
            )

    async def keep_alive(self) -> None:
        await self._call(
            "keep_alive",
            self._keys("workers", "leases", "claims", "queue"),
            [self._incarnation, self._lease_ms],
        )

    async def back_off_host(self, key: str, seconds: float) -> None:
        await self._call("back_off_host", [self._prefix + "host:" + key], [round(seconds * 1000)])

    async def acquire_host(self, key: str, cap: int, spacing: float, token: str) -> float:
        reply = await self._call(
            "acquire_host",
            [self._prefix + "host:" + key, self._prefix + "slots:" + key, self._key["workers"]],
            [
                self._incarnation,
                f"{self._incarnation}#{token}",
                cap,
                round(spacing * 1000),
            ],
        )
        if reply < 0:
            return HOST_FULL_RETRY
        return float(reply) / 1000

    async def release_host(self, key: str, token: str) -> None:
        slots = self._prefix + "slots:" + key
        await self._retrying(lambda: self._redis.hdel(slots, f"{self._incarnation}#{token}"))

    async def records_of(self, worker: str) -> list[Record]:
        key = self._prefix + "records:" + worker
        lines = await self._retrying(lambda: self._redis.lrange(key, 0, -1))
        return [Record.from_json(line.decode()) for line in lines]

    async def summary(self) -> dict[str, int]:
        """How the whole crawl stands: URLs seen, queued, leased, workers alive."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.scard(self._key["seen"])
            pipe.llen(self._key["queue"])
            pipe.hlen(self._key["leases"])
            pipe.hlen(self._key["workers"])
            seen, queued, leased, workers = await pipe.execute()
        return {"seen": seen, "queued": queued, "leased": leased, "workers": workers}

    async def close(self) -> None:
        if self._calls:
            # Commands whose callers were cancelled: let them end, briefly.
            _, pending = await asyncio.wait(list(self._calls), timeout=_CLOSE_WAIT)
            for call in pending:
                call.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        try:
            if self._joined:
                # A claim that completed after its caller was cancelled left a lease
                # nobody will acknowledge: give back all this run still holds.
                await asyncio.wait_for(
                    self._call("retire", self._keys("workers", "leases", "claims", "queue"),
                               [self._incarnation]),
                    _CLOSE_WAIT,
                )  # fmt: skip
        finally:
            await self._redis.aclose()


# The outcomes the scripts know, checked against the engine-neutral names.
assert (DISALLOWED, SITEMAP, DONE, WAIT) == ("disallowed", "sitemap", "done", "wait")
