"""``treadle crawl --processes N``: worker processes fed by a parent that owns the frontier.

The parent keeps the frontier in memory (``MemoryFrontier``) and serves it on a Unix
socket; each worker process runs the ordinary crawler with a ``ProcessFrontier``, which
sends every claim, ack and host-slot request to the parent as one JSON line and reads
the answers in order. The parent is the only writer of the ``--json`` file and of the
``--state`` file, so a record is written once it is acknowledged (and, with a state,
committed), as in a one-process crawl. A worker that dies closes its connection: its
leases go back to the frontier and its host slots free at once. docs/crawling.md says
why this design. Crawler layer: imports treadle's I/O and the frontier.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from treadle.combinators import gather
from treadle.core.futures import Future
from treadle.crawl.frontier import (
    DISALLOWED,
    DONE,
    WAIT,
    FrontierError,
    Lease,
    MemoryFrontier,
    Outcome,
    SharedFrontier,
    job_from_json,
    job_to_json,
    record_with_placeholder,
)
from treadle.crawl.records import Record
from treadle.crawl.state import SavedJob
from treadle.errors import IncompleteReadError
from treadle.loop import create_task, get_running_loop
from treadle.servers import Server, start_unix_server
from treadle.sleeping import sleep
from treadle.streams import StreamReader, StreamWriter
from treadle.threads import to_thread
from treadle.tls import open_unix_connection

__all__ = ["FrontierService", "ProcessFrontier", "WorkerProcesses"]

# A request line may carry a page's links: allow big lines.
_LINE_LIMIT = 64 * 1024 * 1024
# How often the parent commits the state file (as a one-process crawl does).
_COMMIT_INTERVAL = 0.25
# A worker gone (exited or killed) may have left requests in a server's hands: its host
# slots are freed this much later, so that the server never sees more than the cap.
_DEAD_SLOT_GRACE = 1.0
# A worker asked to stop (SIGTERM) that has not exited after this long is killed.
_STOP_GRACE = 10.0


class FrontierService:
    """Serves a ``MemoryFrontier`` to worker processes on a Unix socket at ``path``.

    ``on_records`` gets the page records as they become durable (at once without a
    state; at each commit with one).
    """

    def __init__(
        self,
        frontier: MemoryFrontier,
        path: str,
        on_records: Callable[[list[Record]], None],
        *,
        max_pages: int | None = None,
    ) -> None:
        self.frontier = frontier
        self.path = path
        self._on_records = on_records
        self._max_pages = max_pages
        self._page_claims = 0
        self.stop_reason: str | None = None
        """``max-pages`` once that many pages were handed out, else None."""
        self._server: Server | None = None
        self._owners = 0
        self._committer: Any = None

    async def start(self) -> None:
        self._server = await start_unix_server(self._serve, self.path, limit=_LINE_LIMIT)
        self._committer = create_task(self._commit_periodically())

    async def close(self) -> None:
        if self._committer is not None:
            self._committer.cancel()
            await gather(self._committer, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            self._server.close_clients()
            await self._server.wait_closed()
        self.commit()

    def commit(self) -> None:
        """Save the frontier's changes and hand on the records they made durable."""
        records = self.frontier.commit()
        if records:
            self._on_records(records)

    async def _commit_periodically(self) -> None:
        while True:
            await sleep(_COMMIT_INTERVAL)
            self.commit()

    async def _serve(self, reader: StreamReader, writer: StreamWriter) -> None:
        self._owners += 1
        owner = f"worker-{self._owners}"
        try:
            while True:
                try:
                    line = await reader.readuntil(b"\n")
                except IncompleteReadError:
                    return  # the worker exited (or died)
                reply = self._answer(owner, json.loads(line))
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, OSError):
            return
        finally:
            loop = get_running_loop()
            for key, token in self.frontier.drop_owner(owner):
                loop.call_later(_DEAD_SLOT_GRACE, self.frontier.release_host, key, token)
            writer.close()

    def _answer(self, owner: str, request: list[Any]) -> Any:
        operation, *args = request
        frontier = self.frontier
        if operation == "join":
            roots, seeds = args
            try:
                frontier.join(roots, [job_from_json(job) for job in seeds])
            except FrontierError as exc:
                return ["error", str(exc)]
            return ["ok"]
        if operation == "claim":
            if self.stop_reason is not None:
                return DONE
            claim = frontier.claim(owner)
            if isinstance(claim, tuple):
                token, job = claim
                if not job.is_sitemap and self._max_pages is not None:
                    self._page_claims += 1
                    if self._page_claims > self._max_pages:
                        frontier.release(owner, [token])
                        self.stop_reason = "max-pages"
                        return DONE
                return [token, job_to_json(job)]
            return claim
        if operation == "ack":
            token, outcome, record_json, found, too_deep = args
            committed = frontier.ack(
                owner, token, outcome, record_json, [job_from_json(j) for j in found], too_deep
            )
            if committed and frontier.durable_at_once:
                self.commit()
            return committed
        if operation == "release":
            frontier.release(owner, args[0])
            return None
        if operation == "acquire_host":
            key, cap, spacing, token = args
            # A worker's slot tokens are its own: the ledger holds them under its name.
            return frontier.acquire_host(owner, key, cap, spacing, f"{owner}#{token}")
        if operation == "back_off_host":
            frontier.back_off_host(*args)
            return None
        if operation == "release_host":
            key, token = args
            frontier.release_host(key, f"{owner}#{token}")
            return None
        raise ValueError(f"unknown frontier operation {operation!r}")


class ProcessFrontier(SharedFrontier):
    """A worker process's side of ``FrontierService``: each operation is one request line."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.worker = f"pid-{os.getpid()}"
        self._writer: StreamWriter | None = None
        self._replies: collections.deque[Future[Any]] = collections.deque()
        self._reader_task: Any = None
        # Set once the parent's side closed: every request from then on fails with it.
        self._gone: FrontierError | None = None

    async def _request(self, *request: Any) -> Any:
        if self._gone is not None:
            raise self._gone
        if self._writer is None:
            reader, self._writer = await open_unix_connection(self.path, limit=_LINE_LIMIT)
            self._reader_task = create_task(self._read_replies(reader))
        reply: Future[Any] = get_running_loop().create_future()
        # The service answers in order: each reply goes to the oldest request waiting.
        self._replies.append(reply)
        self._writer.write(json.dumps(request).encode() + b"\n")
        await self._writer.drain()
        return await reply

    async def _read_replies(self, reader: StreamReader) -> None:
        try:
            while True:
                line = await reader.readuntil(b"\n")
                reply = self._replies.popleft()
                if not reply.done():
                    reply.set_result(json.loads(line))
        except (IncompleteReadError, ConnectionError) as exc:
            self._gone = FrontierError(
                f"the parent process serving the frontier went away ({exc})"
            )
        while self._replies:
            reply = self._replies.popleft()
            if not reply.done():
                reply.set_exception(self._gone)

    async def join(self, roots: list[str], seeds: list[SavedJob]) -> None:
        reply = await self._request("join", roots, [job_to_json(job) for job in seeds])
        if reply[0] == "error":
            raise FrontierError(reply[1])

    async def claim(self) -> Lease | Literal["wait", "done"]:
        reply = await self._request("claim")
        if reply == DONE:
            return DONE
        if reply == WAIT:
            return WAIT
        token, job = reply
        return Lease(job_from_json(job), token)

    async def ack(
        self,
        lease: Lease,
        outcome: Outcome,
        record: Record | None,
        found: list[SavedJob],
        too_deep: list[str],
    ) -> Record | None:
        payload = None
        if outcome != DISALLOWED and record is not None:
            payload = record_with_placeholder(record)
        committed = await self._request(
            "ack", lease.token, outcome, payload, [job_to_json(job) for job in found], too_deep
        )
        if committed is None:
            return None
        return Record.from_json(committed) if committed else record

    async def release(self, leases: list[Lease]) -> None:
        await self._request("release", [lease.token for lease in leases])

    async def acquire_host(self, key: str, cap: int, spacing: float, token: str) -> float:
        wait: float = await self._request("acquire_host", key, cap, spacing, token)
        return wait

    async def back_off_host(self, key: str, seconds: float) -> None:
        await self._request("back_off_host", key, seconds)

    async def release_host(self, key: str, token: str) -> None:
        await self._request("release_host", key, token)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()
        if self._reader_task is not None:
            self._reader_task.cancel()
            await gather(self._reader_task, return_exceptions=True)


class WorkerProcesses:
    """Starts ``count`` worker processes running ``treadle crawl ARGS --worker-of SOCKET``
    against ``service``, waits for them, and stops them all when asked (or cancelled)."""

    def __init__(self, count: int, crawl_args: list[str]) -> None:
        self.count = count
        self.crawl_args = crawl_args
        self.processes: list[subprocess.Popen[bytes]] = []
        self._directory = tempfile.TemporaryDirectory(prefix="treadle-crawl-")
        self.socket_path = str(Path(self._directory.name) / "frontier.sock")
        self.returncodes: list[int] = []

    def start(self) -> None:
        command = [sys.executable, "-m", "treadle", "crawl", *self.crawl_args]
        command += ["--worker-of", self.socket_path]
        for _ in range(self.count):
            # A session of its own: a Ctrl-C at the terminal reaches the parent only,
            # which stops the workers itself (and prints the report).
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
            )
            self.processes.append(process)

    async def wait(self) -> list[int]:
        """Wait until every worker has exited; their exit statuses."""
        self.returncodes = list(await gather(*(to_thread(p.wait) for p in self.processes)))
        return self.returncodes

    async def stop(self) -> None:
        """Ask every worker still running to stop (SIGTERM), kill those that do not."""
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                await to_thread(process.wait, _STOP_GRACE)
                continue
            except subprocess.TimeoutExpired:
                process.kill()
            await to_thread(process.wait)

    def cleanup(self) -> None:
        self._directory.cleanup()
