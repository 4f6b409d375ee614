"""``treadle crawl --processes N``: worker processes fed by a parent that owns the frontier.

The parent keeps the frontier in memory (``MemoryFrontier``) and serves it on a Unix
socket; each worker process runs the ordinary crawler with a ``ProcessFrontier``. The
parent is the only writer of the ``--json`` file and of the ``--state`` file, so a
record is written once it is acknowledged (and, with a state, committed), as in a
one-process crawl. A worker that dies closes its connection: its leases go back to the
frontier and its host slots free soon after.

The wire is built to cost little per page (docs/crawling.md has the figures): what a
worker's tasks ask for in one turn of its loop goes as one line, a JSON array of
operations, and the parent answers the operations that need an answer (``join``,
``claim``, ``acquire_host``) with one line, in order. Acknowledgements and releases go
one way: on one connection, in order, the parent has them before anything the worker
asks next, and a worker that dies before its line was sent loses nothing (its leases
return). The claims of one turn go as one ``claim`` for as many URLs as there are
tasks asking. Crawler layer: imports treadle's I/O and the frontier.
"""

from __future__ import annotations

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
    FrontierError,
    Lease,
    MemoryFrontier,
    Settlement,
    SharedFrontier,
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

# A line may carry a page's links: allow big lines.
_LINE_LIMIT = 64 * 1024 * 1024
# How much the parent reads from a worker at once.
_READ_SIZE = 256 * 1024
# How often the parent commits the state file (as a one-process crawl does).
_COMMIT_INTERVAL = 0.25
# A worker gone (exited or killed) may have left requests in a server's hands: its host
# slots are freed this much later, so that the server never sees more than the cap.
_DEAD_SLOT_GRACE = 1.0
# A worker asked to stop (SIGTERM) that has not exited after this long is killed.
_STOP_GRACE = 10.0
# The record's fields on the wire, in this order.
_RECORD_FIELDS = tuple(Record.__dataclass_fields__)


def _record_to_wire(record: Record) -> list[Any]:
    return [getattr(record, name) for name in _RECORD_FIELDS]


def _job_to_wire(job: SavedJob) -> list[Any]:
    return [job.url, job.depth, job.referrer, job.redirects_left, job.is_sitemap]


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
        self._server = await start_unix_server(self._serve, self.path)
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
        received = bytearray()
        try:
            while True:
                chunk = await reader.read(_READ_SIZE)
                if not chunk:
                    return  # the worker exited (or died)
                received += chunk
                end = received.rfind(b"\n")
                if end < 0:
                    if len(received) > _LINE_LIMIT:
                        raise FrontierError(f"{owner} sent a line over {_LINE_LIMIT} bytes")
                    continue
                lines = received[:end].split(b"\n")
                del received[: end + 1]
                replies = [self._answer(owner, json.loads(line)) for line in lines]
                if self.frontier.durable_at_once:
                    self.commit()
                answered = [json.dumps(reply) for reply in replies if reply]
                if answered:
                    writer.write(("\n".join(answered) + "\n").encode())
                    await writer.drain()
        except (ConnectionError, OSError):
            return
        except (FrontierError, ValueError, TypeError) as exc:
            # A worker that breaks the protocol is a bug: it is cut off (its leases
            # return to the frontier) and says so, and the crawl goes on without it.
            print(f"treadle crawl: error: {owner} cut off: {exc}", file=sys.stderr)
        finally:
            loop = get_running_loop()
            for key, token in self.frontier.drop_owner(owner):
                loop.call_later(_DEAD_SLOT_GRACE, self.frontier.release_host, key, token)
            writer.close()

    def _answer(self, owner: str, operations: list[list[Any]]) -> list[Any]:
        """Carry out one line's operations in order; the answers of those that have one."""
        frontier = self.frontier
        answers: list[Any] = []
        for operation, *args in operations:
            if operation == "ack":
                token, outcome, fields, found, too_deep = args
                record = None if fields is None else Record(*fields)
                jobs = [SavedJob(*job) for job in found]
                if not frontier.ack(owner, token, outcome, record, jobs, too_deep):
                    raise FrontierError(f"{owner} acknowledged {token!r}, a lease it does not hold")
            elif operation == "claim":
                answers.append(self._claim(owner, args[0]))
            elif operation == "acquire_host":
                key, cap, spacing, token = args
                # A worker's slot tokens are its own: the ledger holds them under its name.
                answers.append(frontier.acquire_host(owner, key, cap, spacing, f"{owner}#{token}"))
            elif operation == "release_host":
                key, token = args
                frontier.release_host(key, f"{owner}#{token}")
            elif operation == "release":
                frontier.release(owner, args[0])
            elif operation == "back_off_host":
                frontier.back_off_host(*args)
            elif operation == "join":
                roots, seeds = args
                try:
                    frontier.join(roots, [SavedJob(*job) for job in seeds])
                except FrontierError as exc:
                    answers.append(str(exc))
                else:
                    answers.append(None)
            else:
                raise FrontierError(f"{owner} sent an unknown operation {operation!r}")
        return answers

    def _claim(self, owner: str, count: int) -> list[Any]:
        """``[leases, otherwise]``: up to ``count`` leases as ``[token, job]``, and what a
        claimer left without one hears."""
        frontier = self.frontier
        if self.stop_reason is not None:
            return [[], DONE]
        leases, otherwise = frontier.claim(owner, count)
        if self._max_pages is not None:
            for at, (_, job) in enumerate(leases):
                if job.is_sitemap:
                    continue
                self._page_claims += 1
                if self._page_claims > self._max_pages:
                    frontier.release(owner, [token for token, _ in leases[at:]])
                    self.stop_reason = "max-pages"
                    leases, otherwise = leases[:at], DONE
                    break
        return [[[token, *_job_to_wire(job)] for token, job in leases], otherwise]


class ProcessFrontier(SharedFrontier):
    """A worker process's side of ``FrontierService``: the operations its tasks ask for in
    one turn of the loop go as one line; acknowledgements and releases go one way."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.worker = f"pid-{os.getpid()}"
        self._writer: StreamWriter | None = None
        self._reader_task: Any = None
        # The operations of this turn, not sent yet, and the futures of their answers.
        self._operations: list[list[Any]] = []
        self._answers: list[Future[Any]] = []
        # Tasks waiting for a URL whose claim goes with this turn's line.
        self._claimers: list[Future[Lease | Literal["wait", "done"]]] = []
        self._flush_scheduled = False
        # The answers awaited, a list per line sent: the parent answers lines in order.
        self._awaited: list[list[Future[Any]]] = []
        # Set once the parent's side closed: every request from then on fails with it.
        self._gone: FrontierError | None = None

    def _send(self, operation: list[Any], *, answered: bool = False) -> Future[Any] | None:
        """Queue ``operation`` for this turn's line; the future of its answer if it has one."""
        if self._gone is not None:
            raise self._gone
        if self._writer is None:
            raise FrontierError("join the crawl first: the frontier is not connected")
        self._operations.append(operation)
        answer: Future[Any] | None = None
        if answered:
            answer = get_running_loop().create_future()
            self._answers.append(answer)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            get_running_loop().call_soon(self._flush)
        return answer

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._claimers:
            claimers, self._claimers = self._claimers, []
            answer = get_running_loop().create_future()
            self._operations.append(["claim", len(claimers)])
            self._answers.append(answer)
            answer.add_done_callback(lambda done: self._hand_out(done, claimers))
        if not self._operations or self._writer is None or self._gone is not None:
            return
        line = json.dumps(self._operations).encode() + b"\n"
        self._operations = []
        if self._answers:
            self._awaited.append(self._answers)
            self._answers = []
        self._writer.write(line)

    def _hand_out(
        self, answer: Future[Any], claimers: list[Future[Lease | Literal["wait", "done"]]]
    ) -> None:
        """Give the claimers of one ``claim`` the leases its answer holds, in order."""
        if answer.exception() is not None:
            for claimer in claimers:
                if not claimer.done():
                    claimer.set_exception(answer.exception())  # type: ignore[arg-type]
            return
        leases, otherwise = answer.result()
        unwanted = []
        for at, claimer in enumerate(claimers):
            if at < len(leases):
                token, *job = leases[at]
                if claimer.done():  # cancelled: the stopping worker gives its URL back
                    unwanted.append(token)
                else:
                    claimer.set_result(Lease(SavedJob(*job), token))
            elif not claimer.done():
                claimer.set_result(otherwise)
        if unwanted and self._gone is None:
            self._send(["release", unwanted])

    async def _read_answers(self, reader: StreamReader) -> None:
        try:
            while True:
                line = await reader.readuntil(b"\n")
                for answer, result in zip(self._awaited.pop(0), json.loads(line), strict=True):
                    if not answer.done():
                        answer.set_result(result)
        except (IncompleteReadError, ConnectionError) as exc:
            self._gone = FrontierError(
                f"the parent process serving the frontier went away ({exc})"
            )
        gone = self._gone or FrontierError("the frontier's connection failed")
        for answers in [*self._awaited, self._answers]:
            for answer in answers:
                if not answer.done():
                    answer.set_exception(gone)
        for claimer in self._claimers:
            if not claimer.done():
                claimer.set_exception(gone)

    async def join(self, roots: list[str], seeds: list[SavedJob]) -> None:
        if self._writer is None:
            reader, self._writer = await open_unix_connection(self.path, limit=_LINE_LIMIT)
            self._reader_task = create_task(self._read_answers(reader))
        answer = self._send(["join", roots, [_job_to_wire(job) for job in seeds]], answered=True)
        assert answer is not None
        refused = await answer
        if refused is not None:
            raise FrontierError(refused)

    async def claim(self) -> Lease | Literal["wait", "done"]:
        if self._gone is not None:
            raise self._gone
        claimer: Future[Lease | Literal["wait", "done"]] = get_running_loop().create_future()
        self._claimers.append(claimer)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            get_running_loop().call_soon(self._flush)
        return await claimer

    async def ack(self, lease: Lease, settled: Settlement) -> Record | None:
        """Send the acknowledgement (one way); ``settled.record`` as it is (the parent,
        which writes the records, counts its ``num_new_urls``)."""
        record = settled.record
        fields = None
        if settled.outcome != DISALLOWED and record is not None:
            fields = _record_to_wire(record)
        found = [_job_to_wire(job) for job in settled.found]
        self._send(["ack", lease.token, settled.outcome, fields, found, settled.too_deep])
        return record

    async def release(self, leases: list[Lease]) -> None:
        self._send(["release", [lease.token for lease in leases]])

    async def acquire_host(self, key: str, cap: int, spacing: float, token: str) -> float:
        answer = self._send(["acquire_host", key, cap, spacing, token], answered=True)
        assert answer is not None
        wait: float = await answer
        return wait

    async def back_off_host(self, key: str, seconds: float) -> None:
        self._send(["back_off_host", key, seconds])

    async def release_host(self, key: str, token: str) -> None:
        self._send(["release_host", key, token])

    async def close(self) -> None:
        """Send what is queued, then close the connection (its leases return)."""
        if self._writer is not None:
            self._flush()
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
