"""``--processes N``'s wire: the parent's ``FrontierService`` and workers' ``ProcessFrontier``.

The service and the workers' frontiers run on one loop here (a worker that must die
for real runs in a child process); a service that records the operations it receives
shows how many questions went over the wire. What is checked: claims of one turn go as
one, spare URLs return with the worker (released or killed), a slot kept by a worker
serves its next request without a question, and a kept slot goes back as soon as
another worker waits for the host or the host asks for a pause. The whole crawl over
processes (exactly once, politeness, a worker killed) is in test_crawl_distributed.py.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import treadle
from treadle.crawl.frontier import DONE, WAIT, FrontierError, Lease, MemoryFrontier, Settlement
from treadle.crawl.processes import _ACK_DELAY, FrontierService, ProcessFrontier
from treadle.crawl.records import Record
from treadle.crawl.state import SavedJob
from treadle.testing import wait_all_tasks_blocked

ROOT = "http://example.com/"


def jobs(count: int) -> list[SavedJob]:
    return [SavedJob(f"{ROOT}{i}", 1, None, 10, False) for i in range(count)]


class RecordingService(FrontierService):
    """Keeps every operation it receives, by name: ``operations["claim"]`` ..."""

    def __init__(self, path: str) -> None:
        self.records: list[Record] = []
        super().__init__(MemoryFrontier(), path, self.records.extend)
        self.operations: dict[str, list[list[Any]]] = {}

    def _carry_out(self, owner: str, operations: list[list[Any]]) -> None:
        for name, *args in operations:
            self.operations.setdefault(name, []).append(args)
        super()._carry_out(owner, operations)


@asynccontextmanager
async def serving(tmp_path: Path, seeds: int = 10) -> AsyncIterator[RecordingService]:
    service = RecordingService(str(tmp_path / "frontier.sock"))
    await service.start()
    try:
        service.frontier.join([ROOT], jobs(seeds))
        yield service
    finally:
        await service.close()


@asynccontextmanager
async def worker(service: FrontierService, *, spare: int = 0) -> AsyncIterator[ProcessFrontier]:
    frontier = ProcessFrontier(service.path, spare=spare)
    try:
        await frontier.join([ROOT], [])
        yield frontier
    finally:
        await frontier.close()


async def settled(*frontiers: ProcessFrontier) -> None:
    """Return once the parent carried out what these workers sent, and what they sent
    in turn for what it told them: a question (``join`` again, which changes nothing)
    is answered after everything sent before it on the same connection."""
    for _ in range(2):
        for frontier in frontiers:
            await frontier.join([ROOT], [])


async def settled_service(service: RecordingService) -> None:
    """Return once the parent carried out what a worker already gone sent it."""
    async with worker(service) as other:
        await other.join([ROOT], [])


def errors_reported(loop: treadle.EventLoop) -> list[dict[str, Any]]:
    """The contexts of the errors ``loop`` reports from now on (callbacks that raised)."""
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    return errors

async def test_the_claims_of_one_turn_go_as_one_claim(tmp_path: Path) -> None:
    async with serving(tmp_path) as service, worker(service) as frontier:
        leases = await treadle.gather(*(frontier.claim() for _ in range(3)))
        assert all(isinstance(lease, Lease) for lease in leases)
        assert len({lease.token for lease in leases if isinstance(lease, Lease)}) == 3
        assert [count for _, count in service.operations["claim"]] == [3]


async def test_acks_go_one_way_and_their_records_come_out_of_the_parent(tmp_path: Path) -> None:
    async with serving(tmp_path, seeds=1) as service, worker(service) as frontier:
        lease = await frontier.claim()
        assert isinstance(lease, Lease)
        record = Record(url=lease.job.url, status=200, num_urls=2)
        found = [SavedJob(f"{ROOT}new", 2, lease.job.url, 10, False)]
        assert await frontier.ack(lease, Settlement("fetched", record, found, [])) is record
        next_lease = await frontier.claim()  # the ack went first, on the same line
        assert isinstance(next_lease, Lease) and next_lease.job.url == f"{ROOT}new"
    assert [(r.url, r.status, r.num_urls, r.num_new_urls) for r in service.records] == [
        (f"{ROOT}0", 200, 2, 1)
    ]


async def test_spare_urls_are_claimed_ahead_and_go_back_with_the_release(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path) as service, worker(service, spare=4) as frontier:
        first = await frontier.claim()
        assert isinstance(first, Lease)
        assert len(service.frontier.left()) == 10
        assert [count for _, count in service.operations["claim"]] == [5]
        spare = await frontier.claim()  # no question asked
        await settled(frontier)
        assert len(service.operations["claim"]) == 1
        more = [await frontier.claim() for _ in range(2)]  # 2 spare left: ask for more
        await frontier.release([first, spare, *more])  # type: ignore[list-item]
        await settled(frontier)
        assert len(service.operations["claim"]) == 2
        leases, _ = service.frontier.claim("someone", 10)
        assert len(leases) == 10


CHILD = """
import sys, treadle
from treadle.crawl.processes import ProcessFrontier

async def main():
    frontier = ProcessFrontier(sys.argv[1], spare=4)
    await frontier.join([sys.argv[2]], [])
    lease = await frontier.claim()
    print(lease.job.url, len(frontier._spare), flush=True)
    await treadle.sleep(3600)

treadle.run(main())
"""


async def test_a_worker_killed_holding_a_batch_gives_every_url_back(tmp_path: Path) -> None:
    async with serving(tmp_path) as service:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, service.path, ROOT],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert child.stdout is not None
            line = await treadle.to_thread(child.stdout.readline)
            assert line.split()[1] == "4", line  # one URL and four spare
            child.send_signal(signal.SIGKILL)
        finally:
            await treadle.to_thread(child.wait)
            child.stdout.close()  # type: ignore[union-attr]
        got: list[str] = []
        waits = 0
        async with worker(service) as frontier:
            while (lease := await frontier.claim()) != DONE:
                if lease == WAIT:  # the parent has not seen the connection end yet
                    waits += 1
                    assert waits < 1000, "the killed worker's URLs did not come back"
                    await treadle.sleep(0.01)
                    continue
                assert isinstance(lease, Lease), lease
                got.append(lease.job.url)
                await frontier.ack(lease, Settlement("fetched", Record(url=lease.job.url), [], []))
    assert sorted(got) == sorted(job.url for job in jobs(10)), "each URL once, none lost"


async def test_a_kept_slot_serves_the_next_request_without_a_question(tmp_path: Path) -> None:
    async with serving(tmp_path) as service, worker(service) as frontier:
        for token in "012":
            assert await frontier.acquire_host("h", 2, 0.0, token) == 0.0
            await frontier.release_host("h", token)
        assert len(service.operations["acquire_host"]) == 1
        # Spaced requests need the ledger's clock: a question each, and the slot back.
        assert await frontier.acquire_host("s", 2, 30.0, "3") == 0.0
        await frontier.release_host("s", "3")
        # The ledger's clock is real (time.monotonic): the wait left is 30 s less what
        # passed since the first request, a stall of a busy machine included.
        assert 20.0 < await frontier.acquire_host("s", 2, 30.0, "4") <= 30.0
        assert len(service.operations["acquire_host"]) == 3
        assert len(service.operations["release_host"]) == 1
        assert service.frontier.host_slots("h") == {"worker-1": 1}  # kept
        assert service.frontier.host_slots("s") == {}


async def test_a_worker_waiting_for_a_host_gets_the_slot_another_keeps(tmp_path: Path) -> None:
    async with serving(tmp_path) as service, worker(service) as first, worker(service) as second:
        for token in "01":
            assert await first.acquire_host("h", 2, 0.0, token) == 0.0
        await first.release_host("h", "0")  # kept: the first worker holds both
        assert service.frontier.host_slots("h") == {"worker-1": 2}
        assert await second.acquire_host("h", 2, 0.0, "0") == 0.0  # the kept one
        assert service.frontier.host_slots("h") == {"worker-1": 1, "worker-2": 1}
        waiting = treadle.create_task(second.acquire_host("h", 2, 0.0, "1"))
        await wait_all_tasks_blocked()  # the acquire is sent
        await settled(first, second)
        assert service.frontier.host_slots("h") == {"worker-1": 1, "worker-2": 1}, (
            "the cap of 2 let a third request through"
        )
        assert not waiting.done()
        await first.release_host("h", "1")  # others wait: not kept, given to the waiter
        assert await waiting == 0.0
        assert service.frontier.host_slots("h") == {"worker-2": 2}


async def test_a_pause_asked_by_one_worker_takes_back_the_slots_others_keep(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path) as service, worker(service) as first, worker(service) as second:
        assert await first.acquire_host("h", 4, 0.0, "0") == 0.0
        await first.release_host("h", "0")  # kept
        await second.back_off_host("h", 30.0)  # a 503 with Retry-After: 30
        await settled(second, first)
        assert service.frontier.host_slots("h") == {}
        # Real time since the pause began (a busy machine's stall too) comes off the 30 s.
        assert 20.0 < await first.acquire_host("h", 4, 0.0, "1") <= 30.0


async def test_a_worker_gone_holding_slots_is_not_asked_for_them(tmp_path: Path) -> None:
    """A worker gone keeps its host slots for a grace period (its last requests may be
    in the server's hands): a worker waiting for that host meanwhile must not make the
    parent tell the gone one to give them back (it once failed on the gone writer)."""
    async with serving(tmp_path) as service, worker(service) as second:
        first = ProcessFrontier(service.path)
        await first.join([ROOT], [])
        assert await first.acquire_host("h", 1, 0.0, "0") == 0.0
        await first.close()  # gone, its slot still held
        await settled(second)
        waiting = treadle.create_task(second.acquire_host("h", 1, 0.0, "0"))
        await settled(second)
        assert not waiting.done()
        assert await waiting == 0.0  # once the grace is over


async def test_tasks_waiting_for_a_host_each_get_a_slot_as_they_free(tmp_path: Path) -> None:
    """One acquire stands at the parent for a worker's tasks waiting for a full host:
    when it is answered and tasks still wait, another stands for them."""
    async with serving(tmp_path) as service, worker(service) as first, worker(service) as second:
        for token in "01":
            assert await first.acquire_host("h", 2, 0.0, token) == 0.0
        waiting = [treadle.create_task(second.acquire_host("h", 2, 0.0, t)) for t in "01"]
        await wait_all_tasks_blocked()
        await settled(first, second)
        for token in "01":
            await first.release_host("h", token)  # others wait: given back, not kept
        assert await treadle.gather(*waiting) == [0.0, 0.0]
        assert service.frontier.host_slots("h") == {"worker-2": 2}


async def test_closing_with_an_ack_waiting_to_ride_sends_it_once_and_nothing_after(
    tmp_path: Path,
) -> None:
    # An ack waits up to _ACK_DELAY for a question to ride with; close() sends it at
    # once, and the flush that was waiting must not run on the closed connection after.
    loop = treadle.get_running_loop()
    errors = errors_reported(loop)
    async with serving(tmp_path, seeds=1) as service:
        async with worker(service) as frontier:
            lease = await frontier.claim()
            assert isinstance(lease, Lease)
            record = Record(url=lease.job.url, status=200)
            await frontier.ack(lease, Settlement("fetched", record, [], []))
        # Past the moment the waiting flush was due (timers run in deadline order).
        due = treadle.Event()
        loop.call_later(_ACK_DELAY * 2, due.set)
        await due.wait()
        await settled_service(service)
    assert errors == []
    assert [r.url for r in service.records] == [f"{ROOT}0"]


async def test_a_worker_whose_parent_is_gone_fails_its_questions_not_the_loop(
    tmp_path: Path,
) -> None:
    # Writes to a parent that went away fail (EPIPE) before the reader sees the end of
    # the line: the worker must take that as the parent gone, not raise in a callback.
    errors = errors_reported(treadle.get_running_loop())
    async with serving(tmp_path, seeds=3) as service:
        frontier = ProcessFrontier(service.path)
        await frontier.join([ROOT], [])
    outcomes: list[BaseException | None] = []
    for _ in range(3):  # one flush a turn, each writing to the closed line
        try:
            await frontier.claim()
            outcomes.append(None)
        except FrontierError as exc:
            outcomes.append(exc)
    await frontier.close()
    assert errors == []
    assert all(isinstance(outcome, FrontierError) for outcome in outcomes)
