"""The websockets library's client and server on the loop under test (asyncio, treadle.aio)."""

from __future__ import annotations

from typing import Any

import pytest
from loops_under_test import Run
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK


async def echo(connection: ServerConnection) -> None:
    """Echo text as is and bytes reversed, until the client closes."""
    async for message in connection:
        await connection.send(message if isinstance(message, str) else message[::-1])


def test_echo_between_client_and_server(run: Run[Any]) -> None:
    async def main() -> tuple[Any, ...]:
        async with serve(echo, "127.0.0.1", 0) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}") as client:
                texts = []
                for index in range(100):
                    await client.send(f"message {index}")
                    texts.append(await client.recv())
                await client.send(b"\x00" * 100_000 + b"end")
                reversed_bytes = await client.recv()
                await client.close()
                with pytest.raises(ConnectionClosedOK):
                    await client.recv()
                return texts, reversed_bytes, client.close_code

    texts, reversed_bytes, close_code = run(main)
    assert texts == [f"message {index}" for index in range(100)]
    assert reversed_bytes == b"dne" + b"\x00" * 100_000
    assert close_code == 1000


def test_server_closing_ends_the_client(run: Run[Any]) -> None:
    async def main() -> tuple[int | None, str | None]:
        async def close_at_once(connection: ServerConnection) -> None:
            await connection.close(code=4000, reason="bye")

        async with serve(close_at_once, "127.0.0.1", 0) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}") as client:
                # A code other than 1000 or 1001 is an error close.
                with pytest.raises(ConnectionClosedError):
                    await client.recv()
                return client.close_code, client.close_reason

    assert run(main) == (4000, "bye")
