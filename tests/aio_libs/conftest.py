"""Fixtures of the ecosystem tests: the loop under test, and real servers.

Each test here runs asyncio libraries (aiohttp, httpx, websockets, redis, asyncpg,
uvicorn, pytest-asyncio, anyio) twice: on stock asyncio's loop, the oracle, and on
``treadle.aio``'s. ``run(main)`` runs a coroutine function on a fresh loop of the kind
under test, checks the libraries really ran on that loop, and fails the test on any call
of the loop's exception handler (where an "Unclosed ..." report or an exception nobody
retrieved lands). Servers are started once per session; a missing binary skips with a
reason starting "needs server:" (a failure under TREADLE_REQUIRE_SERVERS=1).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import pytest
from loops_under_test import (
    LOOP_FACTORY_NAMES,
    LoopFactory,
    Run,
    import_loop_factory,
    run_on_fresh_loop,
)
from real_servers import (
    PostgresServer,
    RedisServer,
    find_postgres_bin_dir,
    find_redis_server,
    running_postgres,
    running_redis,
)


@pytest.fixture(params=list(LOOP_FACTORY_NAMES))
def loop_name(request: pytest.FixtureRequest) -> str:
    """Which loop the test runs on: ``asyncio`` (the oracle) or ``treadle.aio``."""
    name: str = request.param
    return name


@pytest.fixture
def loop_factory_name(loop_name: str) -> str:
    """The ``module:attribute`` name of the loop factory under test."""
    return LOOP_FACTORY_NAMES[loop_name]


@pytest.fixture
def loop_factory(loop_factory_name: str) -> LoopFactory:
    """The factory of fresh event loops of the kind under test."""
    return import_loop_factory(loop_factory_name)


@pytest.fixture
def run(loop_factory: LoopFactory) -> Run[Any]:
    """Run a coroutine function to completion on a fresh loop from ``loop_factory``."""
    return functools.partial(run_on_fresh_loop, loop_factory)


@pytest.fixture(scope="session")
def redis_session() -> Iterator[RedisServer]:
    binary = find_redis_server()
    if binary is None:
        pytest.skip("needs server: redis-server not found (Debian package redis-server)")
    with running_redis(binary) as server:
        yield server


@pytest.fixture
def redis_server(redis_session: RedisServer) -> RedisServer:
    """A real redis-server on 127.0.0.1, emptied before the test."""
    redis_session.flush()
    return redis_session


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL on 127.0.0.1 (a throwaway cluster for the session)."""
    bin_dir = find_postgres_bin_dir()
    if bin_dir is None:
        pytest.skip(
            "needs server: PostgreSQL's initdb and postgres not found (Debian package postgresql)"
        )
    with running_postgres(bin_dir) as server:
        yield server
