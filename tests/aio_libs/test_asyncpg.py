"""asyncpg against a real PostgreSQL, on the loop under test (asyncio, treadle.aio).

The server is a throwaway cluster started once per session by the ``postgres_server``
fixture (real_servers.py): a pool, COPY of 1,000 rows, and ``wait_for`` cancelling a
``pg_sleep`` with the connection usable after.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
from loops_under_test import Run
from real_servers import PostgresServer


def test_pool_runs_queries_concurrently(run: Run[Any], postgres_server: PostgresServer) -> None:
    async def main() -> tuple[Any, ...]:
        async with asyncpg.create_pool(postgres_server.dsn, min_size=2, max_size=5) as pool:
            squares = await asyncio.gather(
                *(pool.fetchval("SELECT $1::int * $1::int", n) for n in range(30))
            )
            # Five sleeps of 0.2 s on five connections overlap: well under 1 s in all.
            started = time.monotonic()
            await asyncio.gather(*(pool.execute("SELECT pg_sleep(0.2)") for _ in range(5)))
            overlapped = time.monotonic() - started
            async with pool.acquire() as connection, connection.transaction():
                row = await connection.fetchrow("SELECT 'x'::text AS letter, 2 AS number")
            return squares, overlapped, dict(row)

    squares, overlapped, row = run(main)
    assert squares == [n * n for n in range(30)]
    assert overlapped < 0.9
    assert row == {"letter": "x", "number": 2}


def test_copy_of_a_thousand_rows(run: Run[Any], postgres_server: PostgresServer) -> None:
    rows = [(index, f"name-{index}", index * 0.5) for index in range(1000)]

    async def main() -> tuple[Any, ...]:
        connection = await asyncpg.connect(postgres_server.dsn)
        try:
            await connection.execute(
                "CREATE TEMPORARY TABLE items (id int PRIMARY KEY, name text, weight float8)"
            )
            status = await connection.copy_records_to_table("items", records=rows)
            count, total = await connection.fetchrow("SELECT count(*), sum(id) FROM items")
            back = await connection.fetch("SELECT id, name, weight FROM items ORDER BY id")
            return status, count, total, [tuple(record) for record in back]
        finally:
            await connection.close()

    status, count, total, back = run(main)
    assert status == "COPY 1000"
    assert (count, total) == (1000, sum(range(1000)))
    assert back == rows


def test_wait_for_cancels_pg_sleep_and_the_connection_stays_usable(
    run: Run[Any], postgres_server: PostgresServer
) -> None:
    async def main() -> tuple[Any, ...]:
        connection = await asyncpg.connect(postgres_server.dsn)
        try:
            started = time.monotonic()
            timed_out = False
            try:
                await asyncio.wait_for(connection.execute("SELECT pg_sleep(30)"), 0.3)
            except TimeoutError:
                timed_out = True
            waited = time.monotonic() - started
            after = await connection.fetchval("SELECT 41 + 1")
            return timed_out, waited, after, connection.is_closed()
        finally:
            await connection.close()

    timed_out, waited, after, closed = run(main)
    assert timed_out
    assert waited < 5
    assert (after, closed) == (42, False)
