"""A fuzzer for streams: every byte sent is read exactly once, in order, whatever the reads.

Hypothesis draws a schedule: a payload (with separators in it, and sometimes a long run
without any), the sender's chunk sizes, write-buffer high-water mark and drain
cancellations, the receiver's stream limit (small, to provoke LimitOverrunError) and a
list of reads (``read(n)``, ``read(-1)``, ``readexactly``, ``readuntil``, ``readline``,
async iteration), each possibly cancelled by ``timeout``, ``wait_for`` or
``Task.cancel`` after a drawn number of loop steps. The schedule runs over TCP, a UNIX
socket and TLS. Invariant: what the reads returned (plus ``.partial`` of an
IncompleteReadError) is the payload, once, in order; every error is a documented one;
every descriptor is closed afterwards. A second fuzzer runs the schedules whose outcome
does not depend on timing on treadle and on asyncio and compares the two.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass
from typing import Any

import pytest
from hostile_peers import TIME_LIMIT, TRANSPORTS, run_checked, set_high_water, stream_pair
from hypothesis import given
from hypothesis import strategies as st

import treadle

SEPARATORS = (b"\n", b"--", b"\r\n", b"ab")
TOKENS = (b"\n", b"\r\n", b"--", b"-", b"a", b"b", b"ab", b"xyz", b"\x00", b"q" * 97)
# How a read may be interrupted: not at all, by a timeout of 0 or 1 ms around it, by
# wait_for with the same, or by Task.cancel after some loop steps.
CANCELLERS = ("none", "timeout0", "timeout1ms", "wait_for0", "wait_for1ms", "cancel")


@dataclass(frozen=True)
class Read:
    kind: str  # read, read_all, readexactly, readuntil, readline, anext
    size: int  # for read and readexactly
    separator: bytes  # for readuntil
    canceller: str
    steps: int  # for canceller == "cancel": loop steps before Task.cancel


@dataclass(frozen=True)
class Schedule:
    payload: bytes
    chunk_sizes: list[int]
    cancel_drains: list[bool]
    high_water: int
    limit: int
    reads: list[Read]


payloads = st.builds(
    lambda tokens, run_length, run_at: _insert(b"".join(tokens), b"r" * run_length, run_at),
    st.lists(st.sampled_from(TOKENS), max_size=300),
    st.sampled_from([0, 0, 0, 1_000, 70_000, 300_000]),
    st.integers(0, 300),
)


def _insert(data: bytes, run: bytes, at: int) -> bytes:
    at = min(at, len(data))
    return data[:at] + run + data[at:]


reads = st.builds(
    Read,
    kind=st.sampled_from(["read", "read_all", "readexactly", "readuntil", "readline", "anext"]),
    size=st.integers(0, 5000),
    separator=st.sampled_from(SEPARATORS),
    canceller=st.sampled_from(CANCELLERS),
    steps=st.integers(0, 6),
)

schedules = st.builds(
    Schedule,
    payload=payloads,
    chunk_sizes=st.lists(st.integers(1, 100_000), min_size=1, max_size=8),
    cancel_drains=st.lists(st.booleans(), min_size=1, max_size=8),
    high_water=st.sampled_from([0, 1, 100, 16_384, 65_536]),
    limit=st.sampled_from([1, 2, 5, 64, 1_000, 65_536]),
    reads=st.lists(reads, max_size=25),
)


async def send(fw: Any, writer: Any, schedule: Schedule, tls: bool) -> None:
    """Write the payload in the drawn chunks, draining (and cancelling drains) as drawn."""
    set_high_water(writer, schedule.high_water)
    payload = memoryview(schedule.payload)
    sent = 0
    turn = 0
    while sent < len(payload):
        size = schedule.chunk_sizes[turn % len(schedule.chunk_sizes)]
        writer.write(payload[sent : sent + size])
        sent += size
        if schedule.cancel_drains[turn % len(schedule.cancel_drains)]:
            draining = fw.ensure_future(writer.drain())
            await fw.sleep(0)
            draining.cancel()
            with contextlib.suppress(fw.CancelledError):
                await draining
        else:
            await writer.drain()
        turn += 1
    if tls:
        writer.close()  # TLS has no half-close: close_notify ends the data
    else:
        writer.write_eof()


async def read_once(fw: Any, reader: Any, read: Read) -> bytes:
    """One read as drawn, uncancelled; StopAsyncIteration from async iteration is b''."""
    if read.kind == "read":
        data: bytes = await reader.read(read.size)
        assert len(data) <= read.size
        assert data or read.size == 0 or reader.at_eof()
        return data
    if read.kind == "read_all":
        data = await reader.read(-1)
        assert reader.at_eof()
        return data
    if read.kind == "readexactly":
        data = await reader.readexactly(read.size)
        assert len(data) == read.size
        return data
    if read.kind == "readuntil":
        data = await reader.readuntil(read.separator)
        assert data.find(read.separator) == len(data) - len(read.separator)
        return data
    if read.kind == "readline":
        data = await reader.readline()
        assert data.find(b"\n") in (len(data) - 1, -1)
        assert data.endswith(b"\n") or reader.at_eof()
        return data
    try:
        data = await reader.__anext__()
    except StopAsyncIteration:
        assert reader.at_eof()
        return b""
    assert data and (data.endswith(b"\n") or reader.at_eof())
    return data


async def read_interrupted(fw: Any, reader: Any, read: Read) -> bytes | None:
    """One read, interrupted as drawn; None if it was cancelled (and so consumed nothing)."""
    try:
        if read.canceller == "none":
            return await read_once(fw, reader, read)
        if read.canceller.startswith("timeout"):
            async with fw.timeout(0 if read.canceller == "timeout0" else 0.001):
                return await read_once(fw, reader, read)
        if read.canceller.startswith("wait_for"):
            delay = 0 if read.canceller == "wait_for0" else 0.001
            return await fw.wait_for(read_once(fw, reader, read), delay)
    except TimeoutError:
        return None
    reading = fw.ensure_future(read_once(fw, reader, read))
    for _ in range(read.steps):
        if reading.done():
            break
        await fw.sleep(0)
    reading.cancel()
    try:
        return await reading
    except fw.CancelledError:
        return None


async def receive(fw: Any, reader: Any, schedule: Schedule) -> bytes:
    """Run the drawn reads, then read the rest; everything the reads gave, in order."""
    received = bytearray()
    for read in schedule.reads:
        try:
            data = await read_interrupted(fw, reader, read)
        except fw.IncompleteReadError as exc:
            assert reader.at_eof()
            assert exc.expected is None or len(exc.partial) < exc.expected
            data = exc.partial
        except fw.LimitOverrunError as exc:
            # The bytes stay buffered; take some so the next read can make progress.
            assert exc.consumed > schedule.limit
            data = await reader.read(exc.consumed)
            assert data
        if data is not None:
            received += data
    received += await reader.read()
    assert reader.at_eof()
    return bytes(received)


def run_schedule(transport: str, schedule: Schedule) -> None:
    async def main() -> None:
        async with stream_pair(treadle, transport, limit=schedule.limit) as (client, served):
            sending = treadle.ensure_future(send(treadle, client[1], schedule, transport == "tls"))
            received = await treadle.wait_for(receive(treadle, served[0], schedule), 60)
            await sending
        assert len(received) == len(schedule.payload)
        assert received == schedule.payload

    run_checked(treadle, main)


@pytest.mark.timeout(TIME_LIMIT)
@pytest.mark.parametrize("transport", TRANSPORTS)
@given(schedule=schedules)
def test_every_byte_is_read_exactly_once_in_order(transport: str, schedule: Schedule) -> None:
    run_schedule(transport, schedule)


# --- treadle against asyncio, on schedules whose outcome does not depend on timing -------

# readexactly and readuntil give the same answers however the bytes arrive, so the list of
# outcomes must match asyncio's exactly. (After a LimitOverrunError the reader takes
# `limit` bytes with readexactly: at least that many are buffered on both frameworks.)
oracle_reads = st.lists(
    st.one_of(
        st.tuples(st.just("readexactly"), st.integers(0, 3000)),
        st.tuples(st.just("readuntil"), st.sampled_from(SEPARATORS)),
    ),
    max_size=25,
)


async def outcomes(fw: Any, reader: Any, plan: list[tuple[str, Any]], limit: int) -> list[Any]:
    seen: list[Any] = []
    for kind, argument in plan:
        try:
            if kind == "readexactly":
                seen.append(("data", await reader.readexactly(argument)))
            else:
                seen.append(("data", await reader.readuntil(argument)))
        except fw.IncompleteReadError as exc:
            seen.append(("incomplete", exc.partial, exc.expected))
        except fw.LimitOverrunError:
            seen.append(("overrun", await reader.readexactly(limit)))
    seen.append(("rest", await reader.read()))
    return seen


def run_plan(
    fw: Any, transport: str, payload: bytes, chunk: int, limit: int, plan: list[Any]
) -> list[Any]:
    async def main() -> list[Any]:
        async with stream_pair(fw, transport, limit=limit) as (client, served):
            schedule = Schedule(payload, [chunk], [False], 65_536, limit, [])
            sending = fw.ensure_future(send(fw, client[1], schedule, transport == "tls"))
            seen = await fw.wait_for(outcomes(fw, served[0], plan, limit), 60)
            await sending
        return seen

    result: list[Any] = run_checked(fw, main)
    return result


@pytest.mark.timeout(TIME_LIMIT)
@pytest.mark.parametrize("transport", ["tcp", "tls"])
@given(
    payload=payloads,
    chunk=st.integers(1, 100_000),
    limit=st.sampled_from([1, 5, 64, 1_000, 65_536]),
    plan=oracle_reads,
)
def test_outcomes_match_asyncio(
    transport: str, payload: bytes, chunk: int, limit: int, plan: list[Any]
) -> None:
    expected = run_plan(asyncio, transport, payload, chunk, limit, plan)
    assert run_plan(treadle, transport, payload, chunk, limit, plan) == expected


# --- regressions the fuzzer found -------------------------------------------------------


async def test_a_cancelled_read_all_gives_back_what_it_gathered() -> None:
    sender, receiver = socket.socketpair()
    reader, writer = await treadle.open_connection(sock=receiver, limit=1)
    with sender:
        sender.sendall(b"x" * 200_000)  # more than one recv's worth, and no EOF yet
        with pytest.raises(TimeoutError):
            async with treadle.timeout(0.001):
                await reader.read(-1)
        sender.shutdown(socket.SHUT_WR)
        assert await reader.read() == b"x" * 200_000
    writer.close()
    await writer.wait_closed()


async def test_a_cancelled_wait_closed_leaves_the_socket_to_be_closed() -> None:
    sender, peer = socket.socketpair()
    _reader, writer = await treadle.open_connection(sock=sender)
    with peer:
        writer.write(b"x" * 8_000_000)  # the peer never reads: close() waits to flush
        writer.close()
        with pytest.raises(TimeoutError):
            async with treadle.timeout(0):
                await writer.wait_closed()
        writer.abort()
        assert sender.fileno() == -1, "abort() after a cancelled wait_closed() left it open"
        await writer.wait_closed()
