"""``treadle crawl --processes N``: worker processes fed by a parent that owns the frontier.

The parent keeps the frontier in memory (``MemoryFrontier``) and serves it on a Unix
socket; each worker process runs the ordinary crawler with a ``ProcessFrontier``. The
parent is the only writer of the ``--json`` file and of the ``--state`` file, so a
record is written once it is acknowledged (and, with a state, committed), as in a
one-process crawl. A worker that dies closes its connection: its leases go back to the
frontier and its host slots free soon after.

The wire is built to cost little per page, because every line wakes a process
(docs/crawling.md has the figures). What a worker's tasks ask in one turn of its loop
goes as one line, a JSON array of operations; the parent answers each question
(``join``, ``claim``, ``acquire_host``) by its number when it can, several to a line.
Acknowledgements and releases go one way: on one connection, in order, the parent has
them before anything the worker asks next, and a worker that dies before sending them
loses nothing (its leases return). A worker claims URLs for all its tasks asking at
once, plus a few spare ones. A host slot taken with no spacing is kept when its request
ends, for the worker's next request to that host: the parent, which counts it as held
all along, asks for it back (``give_back``) when another worker waits for that host's
slots and holds fewer, or when the host asked for a pause. Crawler layer: imports
treadle's I/O and the frontier.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
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
from treadle.crawl.warc import WarcArchive
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
# An acknowledgement waits this long at most for a question to ride with (the task that
# sent it claims its next URL at once, as a rule).
_ACK_DELAY = 0.05
# The record's fields on the wire, in this order.
_RECORD_FIELDS = tuple(Record.__dataclass_fields__)


def _record_to_wire(record: Record) -> list[Any]:
    return [getattr(record, name) for name in _RECORD_FIELDS]


def _job_to_wire(job: SavedJob) -> list[Any]:
    return [job.url, job.depth, job.referrer, job.redirects_left, job.is_sitemap]


@dataclasses.dataclass(slots=True)
class _SlotWaiter:
    """A worker's ``acquire_host`` waiting at the parent for a full host's slot."""

    owner: str
    number: int
    cap: int
    spacing: float
    token: str


class FrontierService:
    """Serves a ``MemoryFrontier`` to worker processes on a Unix socket at ``path``.

    ``on_records`` gets the page records as they become durable (at once without a
    state; at each commit with one). With a ``warc`` archive, each worker archives in a
    segment of its own and names it when it joins; the records of a URL are copied from
    the segment into ``warc`` when the URL is acknowledged, so the archive holds the
    URLs recorded, each once (a worker killed leaves the rest in its segment).
    """

    def __init__(
        self,
        frontier: MemoryFrontier,
        path: str,
        on_records: Callable[[list[Record]], None],
        *,
        max_pages: int | None = None,
        warc: WarcArchive | None = None,
    ) -> None:
        self.frontier = frontier
        self._warc = warc
        # Each worker's WARC segment, open for reading.
        self._segments: dict[str, int] = {}
        self.path = path
        self._on_records = on_records
        self._max_pages = max_pages
        self._page_claims = 0
        self.stop_reason: str | None = None
        """``max-pages`` once that many pages were handed out, else None."""
        self._server: Server | None = None
        self._owners = 0
        self._committer: Any = None
        self._writers: dict[str, StreamWriter] = {}
        # Messages for each worker, sent when the line in hand is carried out.
        self._outbox: dict[str, list[list[Any]]] = {}
        # Host key -> the acquires waiting for a slot of that full host, oldest first.
        self._slot_waiters: dict[str, collections.deque[_SlotWaiter]] = {}
        # Host key -> owner -> slots it was asked to give back and has not yet.
        self._giving_back: dict[str, collections.Counter[str]] = {}
        # Host key -> the owners told that others wait for its slots.
        self._told_wanted: dict[str, set[str]] = {}

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
        records = self.frontier.commit(self._warc.flush() if self._warc is not None else None)
        if records:
            self._on_records(records)

    async def _commit_periodically(self) -> None:
        while True:
            await sleep(_COMMIT_INTERVAL)
            self.commit()

    async def _serve(self, reader: StreamReader, writer: StreamWriter) -> None:
        self._owners += 1
        owner = f"worker-{self._owners}"
        self._writers[owner] = writer
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
                for line in lines:
                    self._carry_out(owner, json.loads(line))
                if self.frontier.durable_at_once:
                    self.commit()
                self._send_outboxes()
                await writer.drain()
        except (ConnectionError, OSError):
            return
        except (FrontierError, ValueError, TypeError) as exc:
            # A worker that breaks the protocol is a bug: it is cut off (its leases
            # return to the frontier) and says so, and the crawl goes on without it.
            print(f"treadle crawl: error: {owner} cut off: {exc}", file=sys.stderr)
        finally:
            self._drop(owner)
            writer.close()

    def _drop(self, owner: str) -> None:
        """``owner`` went away: its leases return now, its host slots a little later."""
        del self._writers[owner]
        self._outbox.pop(owner, None)
        segment = self._segments.pop(owner, None)
        if segment is not None:
            os.close(segment)
        for waiters in self._slot_waiters.values():
            for waiter in [waiter for waiter in waiters if waiter.owner == owner]:
                waiters.remove(waiter)
        for giving in self._giving_back.values():
            giving.pop(owner, None)
        for told in self._told_wanted.values():
            told.discard(owner)
        loop = get_running_loop()
        for key, token in self.frontier.drop_owner(owner):
            loop.call_later(_DEAD_SLOT_GRACE, self._release_dead_slot, key, token)

    def _release_dead_slot(self, key: str, token: str) -> None:
        self._release_host(key, token)
        self._send_outboxes()

    def _send_outboxes(self) -> None:
        for owner, messages in self._outbox.items():
            self._writers[owner].write(json.dumps(messages).encode() + b"\n")
        self._outbox.clear()

    def _tell(self, owner: str, message: list[Any]) -> None:
        # A worker gone may still hold host slots (freed after a grace): it hears nothing.
        if owner in self._writers:
            self._outbox.setdefault(owner, []).append(message)

    def _carry_out(self, owner: str, operations: list[list[Any]]) -> None:
        """Carry out one line's operations in order, queueing the answers."""
        frontier = self.frontier
        for operation, *args in operations:
            if operation == "ack":
                token, outcome, fields, found, too_deep, archived = args
                record = None if fields is None else Record(*fields)
                jobs = [SavedJob(*job) for job in found]
                if not frontier.ack(owner, token, outcome, record, jobs, too_deep):
                    raise FrontierError(f"{owner} acknowledged {token!r}, a lease it does not hold")
                if archived is not None and self._warc is not None:
                    start, end = archived
                    self._warc.append(os.pread(self._segments[owner], end - start, start))
            elif operation == "claim":
                number, count = args
                self._tell(owner, ["answer", number, self._claim(owner, count)])
            elif operation == "acquire_host":
                number, key, cap, spacing, slot = args
                # A worker's slot names are its own: the ledger holds them under its name.
                self._acquire_host(_SlotWaiter(owner, number, cap, spacing, f"{owner}#{slot}"), key)
            elif operation == "release_host":
                key, slot = args
                self._release_host(key, f"{owner}#{slot}")
            elif operation == "release":
                frontier.release(owner, args[0])
            elif operation == "back_off_host":
                key, seconds = args
                frontier.back_off_host(key, seconds)
                # Slots kept for reuse would start requests before the pause ends.
                for holder, held in frontier.host_slots(key).items():
                    self._tell(holder, ["give_back", key, held])
            elif operation == "join":
                number, roots, seeds, segment = args
                try:
                    frontier.join(roots, [SavedJob(*job) for job in seeds])
                    if segment is not None and owner not in self._segments:
                        self._segments[owner] = os.open(segment, os.O_RDONLY)
                except (FrontierError, OSError) as exc:
                    self._tell(owner, ["answer", number, str(exc)])
                else:
                    self._tell(owner, ["answer", number, None])
            else:
                raise FrontierError(f"{owner} sent an unknown operation {operation!r}")

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

    def _acquire_host(self, waiter: _SlotWaiter, key: str) -> None:
        """Answer ``waiter`` now, or, the host being full, when a slot frees."""
        waiters = self._slot_waiters.setdefault(key, collections.deque())
        if waiters or sum(self.frontier.host_slots(key).values()) >= waiter.cap:
            waiters.append(waiter)
            self._ask_for_a_slot(key, waiter.owner)
            return
        wait = self.frontier.acquire_host(
            waiter.owner, key, waiter.cap, waiter.spacing, waiter.token
        )
        self._tell(waiter.owner, ["answer", waiter.number, wait])

    def _ask_for_a_slot(self, key: str, wanting: str) -> None:
        """A worker waits for a slot of full host ``key``. If another holds more than
        ``wanting`` would with the slots it waits for, the one holding most gives one
        back; the others are told not to keep slots of ``key`` idle while it waits."""
        held = self.frontier.host_slots(key)
        giving = self._giving_back.setdefault(key, collections.Counter())
        keeping = {
            owner: count - giving[owner] for owner, count in held.items() if owner != wanting
        }
        if not keeping:
            return
        holder, count = max(keeping.items(), key=lambda item: item[1])
        waiting = sum(waiter.owner == wanting for waiter in self._slot_waiters[key])
        if count >= held[wanting] + waiting:
            giving[holder] += 1
            self._tell(holder, ["give_back", key, 1])
        told = self._told_wanted.setdefault(key, set())
        for owner in keeping.keys() - told:
            told.add(owner)
            self._tell(owner, ["wanted", key, True])

    def _release_host(self, key: str, token: str) -> None:
        """Free the slot ``token`` of host ``key`` and give it to the oldest waiter."""
        owner = token.partition("#")[0]
        giving = self._giving_back.get(key)
        if giving is not None and giving[owner] > 0:
            giving[owner] -= 1
        frontier = self.frontier
        frontier.release_host(key, token)
        waiters = self._slot_waiters.get(key)
        while waiters and sum(frontier.host_slots(key).values()) < waiters[0].cap:
            waiter = waiters.popleft()
            wait = frontier.acquire_host(
                waiter.owner, key, waiter.cap, waiter.spacing, waiter.token
            )
            self._tell(waiter.owner, ["answer", waiter.number, wait])
        if not waiters:
            for told in self._told_wanted.pop(key, set()):
                self._tell(told, ["wanted", key, False])


class ProcessFrontier(SharedFrontier):
    """A worker process's side of ``FrontierService``.

    What the tasks ask in one turn of the loop goes as one line; acknowledgements and
    releases go one way. ``spare``: how many URLs beyond those its tasks ask for it
    keeps claimed, so that a task rarely waits for the parent for its next URL.
    ``segment``: the WARC file this worker's crawler archives in (the parent copies
    from it), if any.
    """

    def __init__(self, path: str, *, spare: int = 0, segment: str | None = None) -> None:
        self.path = path
        self.segment = segment
        self.worker = f"pid-{os.getpid()}"
        self._writer: StreamWriter | None = None
        self._reader_task: Any = None
        self._numbers = itertools.count(1)
        # The questions sent and not answered yet, by number, each with what to do with
        # an answer that comes after its asker was cancelled.
        self._questions: dict[int, tuple[Future[Any], Callable[[Any], None] | None]] = {}
        # The operations of this turn, not sent yet.
        self._operations: list[list[Any]] = []
        self._flush_handle: Any = None
        self._flush_soon = False
        # Tasks waiting for a URL: their claim goes with the next line.
        self._claimers: list[Future[Lease | Literal["wait", "done"]]] = []
        self._spare: collections.deque[Lease] = collections.deque()
        self._spare_wanted = spare
        self._spare_asked = 0  # spare URLs in a claim not answered yet
        self._released = False  # the worker gave its URLs back: it is stopping
        # Host slots: (key, the gate's token) -> (this worker's name of the ledger's
        # slot, whether it may be kept for the next request); slots kept, by host;
        # how many slots of a host the parent asked back.
        self._slots_in_use: dict[tuple[str, str], tuple[str, bool]] = {}
        self._slots_kept: dict[str, list[str]] = {}
        self._give_back: collections.Counter[str] = collections.Counter()
        # By host: the tasks waiting for a slot; whether an acquire stands at the
        # parent; whether other workers wait for its slots (keep none idle then).
        self._slot_waiters: dict[str, collections.deque[Future[str | float]]] = {}
        self._standing: set[str] = set()
        self._wanted_elsewhere: set[str] = set()
        self._slot_names = itertools.count()
        # Set once the parent's side closed: every request from then on fails with it.
        self._gone: FrontierError | None = None

    # --- the line -------------------------------------------------------------------------

    def _send(self, operation: list[Any], *, soon: bool = True) -> None:
        """Queue ``operation`` for the next line: sent this turn if ``soon``, else within
        ``_ACK_DELAY`` (with whatever is asked by then)."""
        if self._gone is not None:
            raise self._gone
        if self._writer is None:
            raise FrontierError("join the crawl first: the frontier is not connected")
        self._operations.append(operation)
        self._schedule_flush(soon)

    def _schedule_flush(self, soon: bool) -> None:
        if self._flush_handle is not None:
            if self._flush_soon or not soon:
                return
            self._flush_handle.cancel()
        loop = get_running_loop()
        self._flush_soon = soon
        self._flush_handle = (
            loop.call_soon(self._flush) if soon else loop.call_later(_ACK_DELAY, self._flush)
        )

    def _ask(
        self,
        name: str,
        *args: Any,
        if_abandoned: Callable[[Any], None] | None = None,
        soon: bool = True,
    ) -> Future[Any]:
        """Send a question (as ``_send``); the future of its answer. ``if_abandoned``
        gets an answer that comes once the future was cancelled."""
        answer = self._question(name, *args, if_abandoned=if_abandoned)
        self._schedule_flush(soon)
        return answer

    def _question(
        self, name: str, *args: Any, if_abandoned: Callable[[Any], None] | None = None
    ) -> Future[Any]:
        if self._gone is not None:
            raise self._gone
        if self._writer is None:
            raise FrontierError("join the crawl first: the frontier is not connected")
        number = next(self._numbers)
        answer: Future[Any] = get_running_loop().create_future()
        self._operations.append([name, number, *args])
        self._questions[number] = (answer, if_abandoned)
        return answer

    def _flush(self) -> None:
        self._flush_handle = None
        if self._gone is not None or self._writer is None:
            return
        if self._claimers:
            claimers, self._claimers = self._claimers, []
            spare = max(0, self._spare_wanted - len(self._spare) - self._spare_asked)
            self._spare_asked += spare
            answer = self._question("claim", len(claimers) + spare)
            answer.add_done_callback(lambda done: self._hand_out(done, claimers, spare))
        if self._operations:
            line = json.dumps(self._operations).encode() + b"\n"
            self._operations = []
            try:
                self._writer.write(line)
            except ConnectionError as exc:
                # A write can fail (EPIPE) before the reader sees the line end: the
                # parent is gone all the same; the reader fails the questions asked.
                self._gone = FrontierError(
                    f"the parent process serving the frontier went away ({exc})"
                )

    async def _read_answers(self, reader: StreamReader) -> None:
        try:
            while True:
                line = await reader.readuntil(b"\n")
                for kind, *args in json.loads(line):
                    if kind == "answer":
                        number, result = args
                        answer, if_abandoned = self._questions.pop(number)
                        if not answer.done():
                            answer.set_result(result)
                        elif if_abandoned is not None:
                            if_abandoned(result)
                    elif kind == "give_back":
                        self._give_back_slots(*args)
                    elif kind == "wanted":
                        self._slots_wanted(*args)
        except (IncompleteReadError, ConnectionError) as exc:
            self._gone = FrontierError(
                f"the parent process serving the frontier went away ({exc})"
            )
        gone = self._gone or FrontierError("the frontier's connection failed")
        for answer, _ in self._questions.values():
            if not answer.done():
                answer.set_exception(gone)
        waiters: list[Future[Any]] = [*self._claimers]
        for slot_waiters in self._slot_waiters.values():
            waiters += slot_waiters
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(gone)

    # --- the crawl ------------------------------------------------------------------------

    async def join(self, roots: list[str], seeds: list[SavedJob]) -> None:
        if self._writer is None:
            reader, self._writer = await open_unix_connection(self.path, limit=_LINE_LIMIT)
            self._reader_task = create_task(self._read_answers(reader))
        refused = await self._ask(
            "join", roots, [_job_to_wire(job) for job in seeds], self.segment
        )
        if refused is not None:
            raise FrontierError(refused)

    async def claim(self) -> Lease | Literal["wait", "done"]:
        if self._gone is not None:
            raise self._gone
        if self._spare:
            lease = self._spare.popleft()
            if len(self._spare) <= self._spare_wanted // 2 and not self._spare_asked:
                # More before they run out (the question rides with the next acks).
                self._ask_for_spare(self._spare_wanted - len(self._spare))
            return lease
        claimer: Future[Lease | Literal["wait", "done"]] = get_running_loop().create_future()
        self._claimers.append(claimer)
        self._schedule_flush(soon=True)
        return await claimer

    def _ask_for_spare(self, spare: int) -> None:
        # Spare URLs are left yet: the question can ride with the next acknowledgements.
        self._spare_asked += spare
        answer = self._ask("claim", spare, soon=False)
        answer.add_done_callback(lambda done: self._hand_out(done, [], spare))

    def _hand_out(
        self,
        answer: Future[Any],
        claimers: list[Future[Lease | Literal["wait", "done"]]],
        spare: int,
    ) -> None:
        """Give the claimers of one ``claim`` its leases in order, the rest kept spare."""
        self._spare_asked -= spare
        if answer.cancelled():
            return
        failure = answer.exception()
        if failure is not None:
            for claimer in claimers:
                if not claimer.done():
                    claimer.set_exception(failure)
            return
        leases, otherwise = answer.result()
        given = collections.deque(Lease(SavedJob(*job), token) for token, *job in leases)
        if self._released and given:
            # Claimed ahead, come after the worker gave its URLs back: back too.
            self._send(["release", [lease.token for lease in given]])
            given.clear()
        for claimer in claimers:
            # A claimer cancelled (its worker stopping) leaves its URL spare: spare
            # URLs go back with the worker's other leases (``release``).
            if not claimer.done():
                claimer.set_result(given.popleft() if given else otherwise)
        self._spare.extend(given)

    async def ack(self, lease: Lease, settled: Settlement) -> Record | None:
        """Send the acknowledgement (one way); ``settled.record`` as it is (the parent,
        which writes the records, counts its ``num_new_urls``)."""
        record = settled.record
        fields = None
        if settled.outcome != DISALLOWED and record is not None:
            fields = _record_to_wire(record)
        found = [_job_to_wire(job) for job in settled.found]
        archived = settled.archived
        if archived is not None and self.segment is None:
            raise FrontierError("a record was archived, and this worker named no WARC segment")
        self._send(
            ["ack", lease.token, settled.outcome, fields, found, settled.too_deep, archived],
            soon=False,
        )
        return record

    async def release(self, leases: list[Lease]) -> None:
        """Give back ``leases`` and the spare URLs (the worker is stopping: spare URLs
        claimed and not come yet go back when they come)."""
        tokens = [lease.token for lease in [*leases, *self._spare]]
        self._spare.clear()
        self._released = True
        self._send(["release", tokens])

    # --- host slots -----------------------------------------------------------------------

    async def acquire_host(self, key: str, cap: int, spacing: float, token: str) -> float:
        """As ``SharedFrontier.acquire_host``. With no spacing, a slot this worker kept
        is taken without asking; else the task waits for one of its own to free or for
        the parent's answer to the one acquire of the host it keeps standing there."""
        if spacing > 0 or self._give_back[key]:
            return await self._acquire_once(key, cap, spacing, token)
        kept = self._slots_kept.get(key)
        if kept:
            self._slots_in_use[key, token] = (kept.pop(), True)
            return 0.0
        waiter: Future[str | float] = get_running_loop().create_future()
        self._slot_waiters.setdefault(key, collections.deque()).append(waiter)
        if key not in self._standing:
            self._stand_for_a_slot(key, cap)
        got = await waiter
        if isinstance(got, str):
            self._slots_in_use[key, token] = (got, True)
            return 0.0
        return got

    async def _acquire_once(self, key: str, cap: int, spacing: float, token: str) -> float:
        """Ask the parent for a slot for this one request (released when it ends)."""
        slot = str(next(self._slot_names))

        def give_back_if_given(wait: float) -> None:
            if wait <= 0 and self._gone is None:
                self._send(["release_host", key, slot])

        wait: float = await self._ask(
            "acquire_host", key, cap, spacing, slot, if_abandoned=give_back_if_given
        )
        if wait <= 0:
            self._slots_in_use[key, token] = (slot, False)
        return wait

    def _stand_for_a_slot(self, key: str, cap: int) -> None:
        slot = str(next(self._slot_names))
        self._standing.add(key)
        answer = self._ask("acquire_host", key, cap, 0.0, slot)
        answer.add_done_callback(lambda done: self._slot_answered(done, key, cap, slot))

    def _slot_answered(self, answer: Future[Any], key: str, cap: int, slot: str) -> None:
        """The standing acquire of ``key`` was answered: the slot goes to the oldest task
        waiting (or is kept), and another acquire stands for the tasks still waiting; a
        wait (the host paused) goes to every task waiting."""
        self._standing.discard(key)
        if answer.cancelled() or answer.exception() is not None:
            return  # the connection is gone: the waiters heard it
        wait: float = answer.result()
        waiters = self._slot_waiters.get(key, collections.deque())
        if wait <= 0:
            self._free_slot(key, slot)
            if any(not waiter.done() for waiter in waiters):
                self._stand_for_a_slot(key, cap)
            return
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(wait)

    def _free_slot(self, key: str, slot: str) -> None:
        """Slot ``slot`` of ``key`` is free: to a task waiting, back to the parent if it
        asked, else kept for the next request."""
        waiters = self._slot_waiters.get(key)
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(slot)
                return
        if self._give_back[key] > 0 or key in self._wanted_elsewhere:
            if self._give_back[key] > 0:
                self._give_back[key] -= 1
            self._send(["release_host", key, slot])
        else:
            self._slots_kept.setdefault(key, []).append(slot)

    async def back_off_host(self, key: str, seconds: float) -> None:
        self._send(["back_off_host", key, seconds])

    async def release_host(self, key: str, token: str) -> None:
        slot, keep = self._slots_in_use.pop((key, token), ("", False))
        if not slot:
            return  # never taken
        if keep and not self._give_back[key]:
            self._free_slot(key, slot)
            return
        if self._give_back[key] > 0:
            self._give_back[key] -= 1
        self._send(["release_host", key, slot])

    def _give_back_slots(self, key: str, count: int) -> None:
        """The parent asks for ``count`` slots of ``key``: the kept ones go now, the
        others when their requests end."""
        held = len(self._slots_kept.get(key, ())) + sum(k == key for k, _ in self._slots_in_use)
        self._give_back[key] = min(self._give_back[key] + count, held)
        kept = self._slots_kept.get(key, [])
        while kept and self._give_back[key] > 0:
            self._give_back[key] -= 1
            self._send(["release_host", key, kept.pop()])

    def _slots_wanted(self, key: str, wanted: bool) -> None:
        """Another worker waits for slots of ``key`` (or no longer): while it does, this
        worker keeps none idle."""
        if not wanted:
            self._wanted_elsewhere.discard(key)
            return
        self._wanted_elsewhere.add(key)
        for slot in self._slots_kept.pop(key, []):
            self._send(["release_host", key, slot])

    async def close(self) -> None:
        """Give back the slots kept, send what is queued, close (the leases return)."""
        if self._writer is not None:
            if self._gone is None:
                for key, kept in self._slots_kept.items():
                    for slot in kept:
                        self._send(["release_host", key, slot])
                self._slots_kept.clear()
                self._flush()
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()
        if self._reader_task is not None:
            self._reader_task.cancel()
            await gather(self._reader_task, return_exceptions=True)


class WorkerProcesses:
    """Starts ``count`` worker processes running ``treadle crawl ARGS --worker-of SOCKET``
    against ``service``, waits for them, and stops them all when asked (or cancelled).
    With ``warc_segments`` each worker archives in a WARC segment of its own, in the
    same temporary folder as the socket (``FrontierService`` copies from them)."""

    def __init__(self, count: int, crawl_args: list[str], *, warc_segments: bool = False) -> None:
        self.count = count
        self.crawl_args = crawl_args
        self.processes: list[subprocess.Popen[bytes]] = []
        self._directory = tempfile.TemporaryDirectory(prefix="treadle-crawl-")
        self.socket_path = str(Path(self._directory.name) / "frontier.sock")
        self._warc_segments = warc_segments
        self.returncodes: list[int] = []

    def start(self) -> None:
        command = [sys.executable, "-m", "treadle", "crawl", *self.crawl_args]
        command += ["--worker-of", self.socket_path]
        for number in range(self.count):
            segment = []
            if self._warc_segments:
                segment = ["--warc", str(Path(self._directory.name) / f"segment-{number}.warc.gz")]
            # A session of its own: a Ctrl-C at the terminal reaches the parent only,
            # which stops the workers itself (and prints the report).
            process = subprocess.Popen(
                [*command, *segment],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
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
