"""aiohttp's hello-world web server, on asyncio's loop, uvloop or treadle.aio.

Usage: python aiohttp_server.py PORT [--loop asyncio|uvloop|treadle]

One route, ``GET /`` answering ``Hello, World!`` as text/plain, keep-alive; aiohttp's own
request parser and response writer, so the figure is aiohttp's cost on each loop.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from typing import Any

from _httpcommon import BACKLOG, HOST, prepare, ready, unavailable


async def main(port: int) -> None:
    from aiohttp import web

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="Hello, World!")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, port, backlog=BACKLOG)
    await site.start()
    ready()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def loop_factory(name: str) -> Callable[[], Any]:
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    if name == "treadle":
        import treadle.aio

        return treadle.aio.new_event_loop
    return asyncio.new_event_loop


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--loop", choices=["asyncio", "uvloop", "treadle"], default="asyncio")
    args = parser.parse_args()
    prepare()
    try:
        import aiohttp  # noqa: F401

        factory = loop_factory(args.loop)
    except ImportError as exc:
        unavailable(exc)
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main(args.port))
