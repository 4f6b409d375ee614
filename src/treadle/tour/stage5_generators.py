"""Stage 5 of the tour: a Task drives generators, so a fetch reads like stage 1 again.

Stage 4's callbacks chopped each fetch into pieces. Here a fetch is one generator,
factored into sub-coroutines (connect, read, read_all) joined by ``yield from``; it
yields a Future whenever it must wait, and a Task resumes it with the Future's
result. Exceptions travel up the ``yield from`` chain to an ordinary try/except,
with a traceback that reads like blocking code's (see ``demonstrate_exception``).
The Future, ``when_ready`` and the loop are stage 4's and stage 2's, imported: the
Task and the generators are what is new.
Standard library only, plus the tour's ``common`` module and stages 2 and 4.
"""

from __future__ import annotations

import socket
import sys
import time
import traceback
from collections.abc import Generator
from selectors import EVENT_READ, EVENT_WRITE
from typing import Any

from treadle.tour import common
from treadle.tour.stage2_callbacks import check_connected, selector, start_connecting
from treadle.tour.stage4_future import Future, run_until_done, when_ready


class Task(Future):
    """Drives a generator: resumes it with each result it waited for, until it returns.

    The generator yields a Future whenever it must wait; when that Future resolves,
    the Task sends its result back in. The Task is itself the Future of the
    generator's return value.
    """

    def __init__(self, coro: Generator[Future, Any, Any]) -> None:
        super().__init__()
        self.coro = coro
        self.step(None)

    def step(self, value: Any) -> None:
        """Run the generator until it waits on its next Future, or returns."""
        try:
            waiting_for = self.coro.send(value)
        except StopIteration as returned:
            self.set_result(returned.value)
            return
        waiting_for.add_done_callback(self.wakeup)

    def wakeup(self, future: Future) -> None:
        """The Future we waited for resolved: carry on with its result."""
        self.step(future.result)


def connect(url: str) -> Generator[Future, Any, socket.socket]:
    """Connect to url's host and port without blocking; return the connected socket."""
    host, port, _path = common.parse_url(url)
    sock = start_connecting(host, port)
    yield when_ready(sock, EVENT_WRITE)  # the Task resumes us once the Future resolves
    check_connected(sock, url)
    return sock


def read(sock: socket.socket) -> Generator[Future, Any, bytes]:
    """Wait until sock is readable, then return what arrived (b"" at EOF)."""
    yield when_ready(sock, EVENT_READ)
    return sock.recv(4096)


def read_all(sock: socket.socket) -> Generator[Future, Any, bytes]:
    """Read until the server closes the connection."""
    chunks = []
    while chunk := (yield from read(sock)):
        chunks.append(chunk)
    return b"".join(chunks)


def fetch(url: str) -> Generator[Future, Any, common.FetchResult]:
    """Fetch one URL: stage 1's fetch, with ``yield from`` wherever it would block."""
    host, _port, path = common.parse_url(url)
    started = time.monotonic()
    sock = yield from connect(url)
    with sock:
        # The request is tiny: the kernel's send buffer takes it all at once.
        sock.sendall(common.request_for(host, path))
        response = yield from read_all(sock)
    return common.record_fetch(url, started, response)


def fetch_all(urls: list[str]) -> list[common.FetchResult]:
    """Start a Task for every fetch, then run the loop until all of them are done."""
    try:
        tasks = [Task(fetch(url)) for url in urls]
        return [run_until_done(task) for task in tasks]
    finally:
        common.close_abandoned(selector)


# --- Exceptions through yield from -----------------------------------------------


def demo(url: str) -> Generator[Future, Any, str]:
    """Fetch url, catching a refused connection with an ordinary try/except."""
    try:
        yield from fetch(url)
    except ConnectionRefusedError:
        return traceback.format_exc()
    return f"{url} accepted the connection, so there is no exception to show\n"


def demonstrate_exception(url: str) -> str:
    """Run demo against a URL that refuses connections; return the caught traceback.

    The error is raised in connect after the loop resumed it, yet its traceback
    runs demo -> fetch -> connect -> check_connected, as if the code had blocked.
    """
    try:
        caught: str = run_until_done(Task(demo(url)))
    finally:
        common.close_abandoned(selector)
    return caught


def refused_url() -> str:
    """A loopback URL that nothing listens on: bind a free port, then let it go."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


if __name__ == "__main__":
    # python -m treadle.tour.stage5_generators --demo-exception [URL]
    if sys.argv[1:2] == ["--demo-exception"]:
        print(demonstrate_exception(sys.argv[2] if len(sys.argv) > 2 else refused_url()))
        sys.exit(0)
    sys.exit(common.run_by_hand(fetch_all, __spec__.name))
