"""A small Starlette app for the uvicorn tests, importable as ``asgi_app:app``.

``/loop`` names the class of the running event loop, so a test can tell which loop
uvicorn ran the app on; ``/stream`` streams a body; ``/ws`` echoes over a websocket.
Its lifespan records startup and shutdown in ``app.state.events``, and prints each so a
test of a uvicorn subprocess can read them in its output.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    app.state.events = ["startup"]
    print("asgi_app: lifespan startup", flush=True)
    yield
    app.state.events.append("shutdown")
    print("asgi_app: lifespan shutdown", flush=True)


async def loop_name(request: Request) -> JSONResponse:
    loop = asyncio.get_running_loop()
    return JSONResponse({"loop": f"{type(loop).__module__}.{type(loop).__qualname__}"})


async def stream(request: Request) -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for index in range(50):
            await asyncio.sleep(0)
            yield f"line {index}\n".encode()

    return StreamingResponse(chunks(), media_type="text/plain")


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    while (text := await websocket.receive_text()) != "bye":
        await websocket.send_text(text.upper())
    await websocket.close()


app = Starlette(
    routes=[Route("/loop", loop_name), Route("/stream", stream), WebSocketRoute("/ws", echo)],
    lifespan=lifespan,
)
