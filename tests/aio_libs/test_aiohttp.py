"""aiohttp's server, client and websockets on the loop under test (asyncio, treadle.aio).

The server is aiohttp's own, on 127.0.0.1 port 0; the client talks to it over real
sockets. Every session, runner and websocket is closed: an "Unclosed ..." report fails
the test (the ``run`` fixture and warnings as errors).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from loops_under_test import Run

SLOW_RELEASE = web.AppKey("slow_release", asyncio.Event)


def make_app() -> web.Application:
    """A small app: a JSON echo, a streamed body, a websocket echo, and a slow page."""

    async def echo_json(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"got": body, "method": request.method})

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for index in range(100):
            await response.write(f"chunk {index}\n".encode())
        await response.write_eof()
        return response

    async def websocket_echo(request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        async for message in socket:
            if message.type == aiohttp.WSMsgType.TEXT:
                await socket.send_str(f"echo: {message.data}")
            elif message.type == aiohttp.WSMsgType.BINARY:
                await socket.send_bytes(message.data[::-1])
        return socket

    async def slow(request: web.Request) -> web.Response:
        # Answers only once the test releases it, after the client's timeout.
        await request.app[SLOW_RELEASE].wait()
        return web.Response(text="late")

    app = web.Application()
    app[SLOW_RELEASE] = asyncio.Event()
    app.router.add_post("/json", echo_json)
    app.router.add_get("/stream", stream)
    app.router.add_get("/ws", websocket_echo)
    app.router.add_get("/slow", slow)
    return app


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 port 0; yield its base URL; clean up after."""
    runner = web.AppRunner(app, shutdown_timeout=5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        port = server.sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def test_client_and_server_exchange_json_and_a_streamed_body(run: Run[Any]) -> None:
    async def main() -> tuple[Any, ...]:
        async with serving(make_app()) as base, aiohttp.ClientSession() as session:
            async with session.post(f"{base}/json", json={"n": [1, 2, 3]}) as response:
                echoed = (response.status, await response.json())
            async with session.get(f"{base}/stream") as response:
                lines = [line async for line in response.content]
            concurrent = await asyncio.gather(
                *(session.post(f"{base}/json", json=index) for index in range(20))
            )
            statuses = []
            for response in concurrent:
                statuses.append((await response.json())["got"])
                response.release()
            return echoed, lines, statuses

    echoed, lines, statuses = run(main)
    assert echoed == (200, {"got": {"n": [1, 2, 3]}, "method": "POST"})
    assert lines == [f"chunk {index}\n".encode() for index in range(100)]
    assert statuses == list(range(20))


def test_websocket_echo(run: Run[Any]) -> None:
    async def main() -> list[Any]:
        async with (
            serving(make_app()) as base,
            aiohttp.ClientSession() as session,
            session.ws_connect(f"{base}/ws") as socket,
        ):
            received = []
            for index in range(50):
                await socket.send_str(f"hello {index}")
                received.append(await socket.receive_str())
            await socket.send_bytes(b"\x00\x01\x02abc")
            received.append(await socket.receive_bytes())
            await socket.close()
            received.append(socket.closed)
            return received

    received = run(main)
    assert received[:50] == [f"echo: hello {index}" for index in range(50)]
    assert received[50:] == [b"cba\x02\x01\x00", True]


def test_client_timeout_cancels_the_request_and_the_session_still_works(run: Run[Any]) -> None:
    async def main() -> int:
        app = make_app()
        async with serving(app) as base, aiohttp.ClientSession() as session:
            with pytest.raises(asyncio.TimeoutError):
                await session.get(f"{base}/slow", timeout=aiohttp.ClientTimeout(total=0.2))
            app[SLOW_RELEASE].set()
            async with session.post(f"{base}/json", json=1) as response:
                return response.status

    assert run(main) == 200


def test_refused_connection_raises_client_connector_error(run: Run[Any]) -> None:
    async def main() -> None:
        async with serving(make_app()) as base:
            pass  # the server is gone: its port now refuses
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientConnectorError):
                await session.get(f"{base}/json")

    run(main)
