"""httpx's ``AsyncClient`` on the loop under test (asyncio, treadle.aio).

The server is a small HTTP/1.1 responder on asyncio's streams, on 127.0.0.1 port 0 and
on the same loop: requests, concurrent requests, a read timeout and a refused port.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from loops_under_test import Run


@asynccontextmanager
async def http_server() -> AsyncIterator[tuple[str, asyncio.Event]]:
    """Serve on 127.0.0.1 port 0; yield its base URL and the event that frees ``/slow``.

    ``/echo`` answers with a JSON record of the request; ``/slow`` answers only once the
    event is set. Keep-alive: one connection serves many requests.
    """
    release_slow = asyncio.Event()
    handlers: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                request_line, *header_lines = head.decode("latin-1").split("\r\n")[:-2]
                method, target, _ = request_line.split(" ")
                headers = dict(line.lower().split(": ", 1) for line in header_lines)
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if target == "/slow":
                    await release_slow.wait()
                record = {"method": method, "target": target, "body": body.decode()}
                payload = json.dumps(record).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed its connection: the normal end of keep-alive
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", release_slow
    finally:
        release_slow.set()
        server.close()
        await server.wait_closed()
        # Python 3.11's wait_closed() does not wait for the handlers: the clients have
        # closed their connections, so each handler ends on its own.
        await asyncio.gather(*handlers)


def test_requests_to_a_local_server(run: Run[Any]) -> None:
    async def main() -> tuple[Any, ...]:
        async with http_server() as (base, _), httpx.AsyncClient(base_url=base) as client:
            got = (await client.get("/echo", params={"q": "a b"})).json()
            posted = (await client.post("/echo", content=b"x" * 70_000)).json()
            many = await asyncio.gather(*(client.get(f"/echo/{n}") for n in range(25)))
            async with client.stream("GET", "/echo") as response:
                streamed = b"".join([chunk async for chunk in response.aiter_bytes()])
            return got, len(posted["body"]), [r.json()["target"] for r in many], streamed

    got, posted_length, targets, streamed = run(main)
    assert got == {"method": "GET", "target": "/echo?q=a+b", "body": ""}
    assert posted_length == 70_000
    assert targets == [f"/echo/{n}" for n in range(25)]
    assert json.loads(streamed)["target"] == "/echo"


def test_read_timeout_then_the_client_still_works(run: Run[Any]) -> None:
    async def main() -> int:
        async with (
            http_server() as (base, release_slow),
            httpx.AsyncClient(base_url=base) as client,
        ):
            with pytest.raises(httpx.ReadTimeout):
                await client.get("/slow", timeout=httpx.Timeout(5.0, read=0.2))
            release_slow.set()
            return (await client.get("/echo")).status_code

    assert run(main) == 200


def test_refused_port_raises_connect_error(run: Run[Any]) -> None:
    async def main() -> None:
        async with http_server() as (base, _):
            pass  # closed: its port now refuses connections
        async with httpx.AsyncClient() as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(f"{base}/echo")

    run(main)
