"""uvicorn serving a Starlette app on the loop under test (asyncio, treadle.aio).

In process: ``uvicorn.Server`` runs as a task on the loop under test, on a socket the
test bound and listens on (so the client needs no readiness poll). As a subprocess:
``uvicorn --loop <module:factory> asgi_app:app``, the command a user types, with its
readiness found by polling its port, and SIGINT's graceful shutdown checked.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from asgi_app import app
from loops_under_test import Run
from real_servers import HOST, accepts_connections, free_port, stop_process_group, wait_until_ready
from websockets.asyncio.client import connect

EXPECTED_LOOP_CLASS = {
    "asyncio": "asyncio.unix_events._UnixSelectorEventLoop",
    "treadle.aio": "treadle.aio.loop.EventLoop",
}


def test_uvicorn_server_in_process(run: Run[Any], loop_name: str) -> None:
    async def main() -> tuple[Any, ...]:
        listener = socket.socket()
        listener.bind((HOST, 0))
        listener.listen(100)
        port = listener.getsockname()[1]
        config = uvicorn.Config(app, lifespan="on", log_level="warning", ws="websockets-sansio")
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve(sockets=[listener]))
        try:
            async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}") as client:
                loop_class = (await client.get("/loop")).json()["loop"]
                many = await asyncio.gather(*(client.get("/loop") for _ in range(20)))
                body = (await client.get("/stream")).text
            async with connect(f"ws://{HOST}:{port}/ws") as websocket:
                replies = []
                for word in ("one", "two", "three"):
                    await websocket.send(word)
                    replies.append(await websocket.recv())
                await websocket.send("bye")
        finally:
            server.should_exit = True
            await serving
            listener.close()
        statuses = {response.status_code for response in many}
        return loop_class, statuses, body, replies, app.state.events

    loop_class, statuses, body, replies, events = run(main)
    assert loop_class == EXPECTED_LOOP_CLASS[loop_name]
    assert statuses == {200}
    assert body == "".join(f"line {index}\n" for index in range(50))
    assert replies == ["ONE", "TWO", "THREE"]
    assert events == ["startup", "shutdown"]


def test_uvicorn_command_with_loop_option(
    loop_name: str, loop_factory_name: str, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "uvicorn.log"
    command = [
        sys.executable, "-m", "uvicorn", "--loop", loop_factory_name,
        "--app-dir", str(Path(__file__).parent), "--host", HOST, "--port", str(port),
        "--lifespan", "on", "asgi_app:app",
    ]  # fmt: skip
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
            env=environment, start_new_session=True,
        )  # fmt: skip
    try:
        wait_until_ready(process, log, "uvicorn", lambda: accepts_connections(port))
        with urllib.request.urlopen(f"http://{HOST}:{port}/loop", timeout=10) as response:
            answer = json.load(response)
        with urllib.request.urlopen(f"http://{HOST}:{port}/stream", timeout=10) as response:
            body = response.read().decode()
        os.killpg(process.pid, signal.SIGINT)
        status = process.wait(timeout=15)
    finally:
        stop_process_group(process, signal.SIGINT)
    output = log.read_text()
    assert answer == {"loop": EXPECTED_LOOP_CLASS[loop_name]}, output
    assert body == "".join(f"line {index}\n" for index in range(50))
    assert status == 0, output
    assert "asgi_app: lifespan shutdown" in output, output
    assert "Traceback" not in output, output
