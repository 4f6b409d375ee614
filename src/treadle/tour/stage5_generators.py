"""Stage 5 of the tour: a Task drives generators, so a fetch reads like stage 1 again.

Stage 4's callbacks chopped each fetch into pieces. Here a fetch is one generator,
factored into sub-coroutines (connect, read, read_all) joined by ``yield from``; it
yields a Future whenever it must wait, and a Task resumes it with the Future's
result. Exceptions travel up the ``yield from`` chain to an ordinary try/except,
with a traceback that reads like blocking code's (see ``demonstrate_exception``).
Standard library only, plus the tour's ``common`` module.
"""

from __future__ import annotations

import os
import selectors
import socket
import sys
import time
import traceback
from collections.abc import Callable, Generator
from selectors import EVENT_READ, EVENT_WRITE
from typing import Any

from treadle.tour.common import (
    FetchResult,
    close_abandoned,
    parse_url,
    record_fetch,
    request_for,
    run_by_hand,
)

# The one selector every socket in this stage registers with, as in the talk.
# (treadle itself keeps its selector inside a loop object; the tour keeps it bare.)
selector = selectors.DefaultSelector()


class Future:
    """A result that is not known yet.

    Whoever learns the result calls set_result; whoever needs it adds a callback,
    which runs with the Future once the result is in.
    """

    def __init__(self) -> None:
        self.done = False
        self.result: Any = None
        self._callbacks: list[Callable[[Future], None]] = []

    def add_done_callback(self, callback: Callable[[Future], None]) -> None:
        """Run callback(self) when the result is set."""
        self._callbacks.append(callback)

    def set_result(self, result: Any) -> None:
        """Record the result and run every callback waiting for it."""
        self.result = result
        self.done = True
        for callback in self._callbacks:
            callback(self)

    def __iter__(self) -> Generator[Future, Any, Any]:
        """Wait for the result with ``yield from``: yield the Future to the Task driving us."""
        yield self
        return self.result


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


def when_ready(sock: socket.socket, events: int) -> Future:
    """A Future that resolves once sock is ready for events (EVENT_READ or EVENT_WRITE)."""
    future = Future()

    def on_ready() -> None:
        selector.unregister(sock)
        future.set_result(None)

    selector.register(sock, events, on_ready)
    return future


def connect(url: str) -> Generator[Future, Any, socket.socket]:
    """Connect to url's host and port without blocking; return the connected socket."""
    host, port, _path = parse_url(url)
    sock = socket.socket()
    sock.setblocking(False)
    # A non-blocking connect returns at once (EINPROGRESS). The socket turns
    # writable when the handshake is over, and SO_ERROR then says how it went.
    sock.connect_ex((host, port))
    yield from when_ready(sock, EVENT_WRITE)
    error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if error:
        sock.close()
        raise OSError(error, os.strerror(error), url)
    return sock


def read(sock: socket.socket) -> Generator[Future, Any, bytes]:
    """Wait until sock is readable, then return what arrived (b"" at EOF)."""
    yield from when_ready(sock, EVENT_READ)
    return sock.recv(4096)


def read_all(sock: socket.socket) -> Generator[Future, Any, bytes]:
    """Read until the server closes the connection."""
    chunks = []
    while chunk := (yield from read(sock)):
        chunks.append(chunk)
    return b"".join(chunks)


def fetch(url: str) -> Generator[Future, Any, FetchResult]:
    """Fetch one URL: stage 1's fetch, with ``yield from`` wherever it would block."""
    host, _port, path = parse_url(url)
    started = time.monotonic()
    sock = yield from connect(url)
    with sock:
        # The request is tiny: the kernel's send buffer takes it all at once.
        sock.sendall(request_for(host, path))
        response = yield from read_all(sock)
    return record_fetch(url, started, response)


def run_once() -> None:
    """Wait until some socket is ready, then run the callback registered for it."""
    for key, _events in selector.select():
        callback = key.data
        callback()


def fetch_all(urls: list[str]) -> list[FetchResult]:
    """Start a Task for every fetch, then run the loop until all of them are done."""
    results = []
    try:
        tasks = [Task(fetch(url)) for url in urls]
        for task in tasks:
            # Each pass serves every ready socket, not just this task's.
            while not task.done:
                run_once()
            results.append(task.result)
    finally:
        close_abandoned(selector)
    return results


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
    runs demo -> fetch -> connect, as if the code had blocked.
    """
    task = Task(demo(url))
    try:
        while not task.done:
            run_once()
    finally:
        close_abandoned(selector)
    result: str = task.result
    return result


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
    sys.exit(run_by_hand(fetch_all, __spec__.name))
