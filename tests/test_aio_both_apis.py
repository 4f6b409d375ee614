"""One program, both APIs: treadle's API inside asyncio tasks on treadle.aio's loop, and a
clear refusal (naming ``treadle.aio.run``) for asyncio code inside plain ``treadle.run``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
from loopback import echo_one_line, send_line
from oracle_runners import wait_on

import treadle
import treadle.aio
from treadle.crawl import DemoSite
from treadle.crawl.cli import DEMO_MAX_DEPTH
from treadle.crawl.crawler import Crawler
from treadle.crawl.demosite import DemoSiteServer

_T = TypeVar("_T")


def run_aio(main: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    with asyncio.Runner(loop_factory=treadle.aio.new_event_loop) as runner:
        return runner.run(main())


# --- treadle's API inside asyncio tasks ---------------------------------------------------


def test_treadle_sleep_and_current_task_inside_an_asyncio_task() -> None:
    async def main() -> tuple[bool, bool]:
        await treadle.sleep(0.001)
        await treadle.sleep(0)
        task = asyncio.current_task()
        return treadle.current_task() is task, task in treadle.all_tasks()

    assert run_aio(main) == (True, True)


def test_treadle_streams_talk_to_asyncio_streams_both_ways() -> None:
    async def main() -> tuple[bytes, bytes]:
        asyncio_server = await asyncio.start_server(echo_one_line, "127.0.0.1", 0)
        treadle_server = await treadle.start_server(echo_one_line, "127.0.0.1", 0)
        async with asyncio_server:
            first = await send_line(treadle.open_connection, asyncio_server, b"to asyncio\n")
        async with treadle_server:
            second = await send_line(asyncio.open_connection, treadle_server, b"to treadle\n")
        return first, second

    assert run_aio(main) == (b"to asyncio\n", b"to treadle\n")


def test_treadle_timeout_cancels_asyncio_code_and_raises_timeout_error() -> None:
    async def main() -> str:
        try:
            async with treadle.timeout(0.01):
                await asyncio.sleep(10)
        except TimeoutError:
            return "timed out"
        return "not timed out"

    assert run_aio(main) == "timed out"


def test_asyncio_cancellation_is_a_treadle_cancellation() -> None:
    assert issubclass(asyncio.CancelledError, treadle.CancelledError)

    async def main() -> str:
        task = asyncio.create_task(asyncio.sleep(10))
        await asyncio.sleep(0)
        task.cancel()
        try:
            await task
        except treadle.CancelledError:
            return "caught as treadle's"
        return "not caught"

    assert run_aio(main) == "caught as treadle's"


def test_treadle_task_group_runs_and_cancels_asyncio_tasks() -> None:
    events: list[str] = []

    async def failer() -> None:
        await treadle.sleep(0.001)
        raise ValueError("boom")

    async def main() -> None:
        async with treadle.TaskGroup() as group:
            group.create_task(wait_on(asyncio.sleep(10), events, "sibling"))
            group.create_task(failer())

    with pytest.raises(ExceptionGroup) as caught:
        run_aio(main)
    assert caught.group_contains(ValueError, match="boom")
    assert events == ["sibling CancelledError"]


def test_treadle_locks_and_queues_inside_asyncio_tasks() -> None:
    async def main() -> list[int]:
        queue: treadle.Queue[int] = treadle.Queue()
        lock = treadle.Lock()
        got: list[int] = []

        async def consumer() -> None:
            for _ in range(3):
                async with lock:
                    got.append(await queue.get())

        task = asyncio.create_task(consumer())
        for i in range(3):
            await queue.put(i)
            await asyncio.sleep(0)
        await task
        return got

    assert run_aio(main) == [0, 1, 2]


def test_treadle_http_client_against_an_asyncio_server() -> None:
    pytest.importorskip("httptools")
    import treadle.http

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main() -> tuple[int, bytes]:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            async with treadle.http.Client() as client:
                response = await client.get(f"http://127.0.0.1:{port}/")
                return response.status, await response.read()

    assert run_aio(main) == (200, b"hello")


def test_the_crawler_crawls_the_demo_site_on_the_aio_loop() -> None:
    pytest.importorskip("httptools")
    site = DemoSite(pages=20, delay_scale=0)

    async def main() -> tuple[set[str], set[str]]:
        async with DemoSiteServer(site) as server:
            # The demo's endless calendar needs a depth bound, as in `treadle crawl --demo`.
            crawler = Crawler(
                server.origin + "/", robots=False, retry_backoff=0, max_depth=DEMO_MAX_DEPTH
            )
            records = await crawler.crawl()
            return {r.url for r in records}, site.expected_reachable(
                origin=server.origin, obey_robots=False, max_depth=DEMO_MAX_DEPTH
            )

    crawled, expected = run_aio(main)
    assert crawled == expected


# --- asyncio code inside plain treadle.run --------------------------------------------------


@pytest.mark.parametrize(
    "use_asyncio",
    [
        pytest.param(lambda: asyncio.sleep(1), id="asyncio.sleep"),
        pytest.param(lambda: asyncio.open_connection("127.0.0.1", 9), id="open_connection"),
        pytest.param(lambda: asyncio.to_thread(int), id="to_thread"),
        pytest.param(lambda: _no_await(asyncio.current_task), id="current_task"),
        pytest.param(lambda: _no_await(asyncio.get_running_loop().create_future), id="loop"),
    ],
)
def test_asyncio_inside_treadle_run_names_treadle_aio_run(use_asyncio: Any) -> None:
    async def main() -> None:
        await use_asyncio()

    with pytest.raises(RuntimeError) as caught:
        treadle.run(main())
    message = str(caught.value)
    assert "treadle.aio.run" in message and "no running event loop" not in message
    assert "\n" not in message


async def _no_await(call: Callable[[], object]) -> None:
    call()


def test_asyncios_running_loop_is_restored_after_treadle_run() -> None:
    async def main() -> None:
        await treadle.sleep(0)

    treadle.run(main())
    assert asyncio._get_running_loop() is None

    async def nested() -> bool:
        # treadle.run from inside an asyncio callback: asyncio's record comes back.
        loop = asyncio.get_running_loop()
        treadle.run(main())
        return asyncio.get_running_loop() is loop

    assert asyncio.run(nested()) is True
