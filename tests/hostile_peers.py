"""Shared pieces of the stream fuzzer and the hostile-client server tests.

Connected stream pairs over TCP, a UNIX socket and TLS (for treadle, and for asyncio
as the oracle), and a runner that fails a run which leaves descriptors open. The
loopback helpers they share with the other I/O tests (``tls_contexts``, ``reset``,
``abort``, ``open_fds``) come from loopback.py and are offered here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from loopback import HandOver, abort, address_of, open_fds, tls_contexts
from loopback import reset as reset  # offered to the hostile-client tests

import treadle
from treadle.testing import run_test

TRANSPORTS = ("tcp", "unix", "tls")
server_address = address_of  # the hostile-client tests' name for it


def run_checked(fw: Any, main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run ``main()`` on ``fw`` (treadle with the plugin's leak checks); fds must come back."""
    before = open_fds()
    result = run_test(main) if fw is treadle else asyncio.run(main())
    after = open_fds()
    assert after == before, f"the run left {after - before} file descriptor(s) open"
    return result


@contextlib.asynccontextmanager
async def stream_pair(
    fw: Any, transport: str, *, limit: int
) -> AsyncIterator[tuple[tuple[Any, Any], tuple[Any, Any]]]:
    """``((client_reader, client_writer), (server_reader, server_writer))`` over ``transport``.

    The server side comes from ``fw.start_server`` (with ``limit``), so the fuzzers cover
    the server's streams too. Both writers are aborted on the way out.
    """
    handler = HandOver(fw.get_running_loop())
    server_context, client_context = tls_contexts()
    with tempfile.TemporaryDirectory() as directory:
        if transport == "unix":
            path = os.path.join(directory, "s")
            server = await fw.start_unix_server(handler, path, limit=limit)
            client = await fw.open_unix_connection(path, limit=limit)
        elif transport == "tls":
            server = await fw.start_server(handler, "127.0.0.1", 0, limit=limit, ssl=server_context)
            client = await fw.open_connection(
                *address_of(server),
                limit=limit,
                ssl=client_context,
                server_hostname="localhost",
            )
        else:
            server = await fw.start_server(handler, "127.0.0.1", 0, limit=limit)
            client = await fw.open_connection(*address_of(server), limit=limit)
        try:
            served = await handler.accepted
            yield client, served
        finally:
            handler.release()
            accepted = handler.accepted
            writers = [client[1]] + ([accepted.result()[1]] if accepted.done() else [])
            for writer in writers:
                abort(writer)
            server.close()
            await server.wait_closed()
            for writer in writers:
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()


def set_high_water(writer: Any, high: int) -> None:
    target = writer.transport if hasattr(writer, "transport") else writer
    target.set_write_buffer_limits(high=high)


def _time_limit() -> int:
    from hypothesis import settings

    return 300 if settings.default.max_examples <= 100 else 6 * 3600


# Per fuzz test: the short profile finishes in seconds; the long one runs as long as it takes.
TIME_LIMIT = _time_limit()
