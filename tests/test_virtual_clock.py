"""VirtualClock: time jumps to the next timer when the loop is idle, but real I/O comes first."""

from __future__ import annotations

import math
import socket
import threading
import time
from typing import Any

import pytest

import treadle
from treadle.core.clock import MonotonicClock
from treadle.testing import VirtualClock, run_test, wait_all_tasks_blocked
from treadle.testing.clock import DEFAULT_AUTOJUMP_THRESHOLD


def test_sleep_an_hour_takes_no_real_time() -> None:
    clock = VirtualClock()

    async def main() -> float:
        loop = treadle.get_running_loop()
        start = loop.time()
        await treadle.sleep(3600)
        return loop.time() - start

    real_start = time.monotonic()
    assert treadle.run(main(), clock=clock) == 3600
    assert time.monotonic() - real_start < 10.0  # an hour if it slept; a busy machine's stall
    assert clock.time() == 3600
    assert clock.jumps == 1


def test_the_clock_starts_where_told() -> None:
    async def main() -> float:
        await treadle.sleep(5)
        return treadle.get_running_loop().time()

    assert treadle.run(main(), clock=VirtualClock(start=1000.0)) == 1005.0


def test_timers_fire_in_order_on_virtual_time() -> None:
    fired: list[tuple[str, float]] = []

    async def sleeper(name: str, delay: float) -> None:
        await treadle.sleep(delay)
        fired.append((name, treadle.get_running_loop().time()))

    async def main() -> None:
        loop = treadle.get_running_loop()
        loop.call_later(2.5, lambda: fired.append(("callback", loop.time())))
        tasks = [
            treadle.create_task(sleeper(name, delay))
            for name, delay in [("c", 30), ("a", 1), ("d", 3600), ("b", 2)]
        ]
        for task in tasks:
            await task

    treadle.run(main(), clock=VirtualClock())
    assert fired == [
        ("a", 1.0),
        ("b", 2.0),
        ("callback", 2.5),
        ("c", 30.0),
        ("d", 3600.0),
    ]


def test_time_stands_still_while_work_is_ready() -> None:
    async def busy() -> None:
        for _ in range(100):
            await treadle.sleep(0)

    async def main() -> list[float]:
        loop = treadle.get_running_loop()
        times = [loop.time()]
        task = treadle.create_task(busy())
        await treadle.sleep(0)
        times.append(loop.time())
        await task
        times.append(loop.time())
        await treadle.sleep(0.5)
        times.append(loop.time())
        return times

    assert treadle.run(main(), clock=VirtualClock()) == [0.0, 0.0, 0.0, 0.5]


def test_advance_moves_time_by_hand() -> None:
    clock = VirtualClock()
    clock.advance(2.5)
    assert clock.time() == 2.5
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        clock.advance(math.nan)
    with pytest.raises(ValueError):
        VirtualClock(autojump_threshold=-1)
    with pytest.raises(ValueError):
        VirtualClock(start=math.nan)


def test_with_no_io_in_flight_the_clock_never_waits() -> None:
    clock = VirtualClock(autojump_threshold=0.25)
    assert clock.sleep_time(10.0) == 0.0  # no loop at all, so no I/O
    assert clock.sleep_time(0.0) == 0.0  # already due: don't wait at all

    async def main() -> float:
        return clock.sleep_time(10.0)

    assert treadle.run(main(), clock=clock) == 0.0  # only the wake-up pipe is watched


def test_with_a_socket_watched_the_clock_waits_the_threshold() -> None:
    clock = VirtualClock(autojump_threshold=0.25)
    receiver, sender = socket.socketpair()

    async def main() -> list[float]:
        loop = treadle.get_running_loop()
        loop.add_reader(receiver, lambda: None)
        try:
            return [clock.sleep_time(10.0), clock.sleep_time(0.0)]
        finally:
            loop.remove_reader(receiver)

    try:
        assert treadle.run(main(), clock=clock) == [0.25, 0.0]
    finally:
        receiver.close()
        sender.close()


def test_the_default_threshold_waits_for_real_io() -> None:
    assert VirtualClock().autojump_threshold == DEFAULT_AUTOJUMP_THRESHOLD > 0


class _IOArrivesWhileWaiting:
    """A poller that makes data arrive on a socket when the loop blocks with a timeout."""

    def __init__(self, real: Any, sender: socket.socket) -> None:
        self._real = real
        self._sender = sender
        self.sent = False

    def poll(self, timeout: float) -> Any:
        if timeout > 0 and not self.sent:
            self.sent = True
            self._sender.send(b"arrived during the wait")
        return self._real.poll(timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@pytest.mark.timeout(20)
def test_autojump_threshold_lets_real_io_arrive_before_jumping() -> None:
    receiver, sender = socket.socketpair()
    receiver.setblocking(False)
    log: list[tuple[str, float]] = []

    async def main() -> None:
        loop = treadle.get_running_loop()
        # The data arrives only if the loop waits in the selector (for up to the
        # threshold) before it jumps to the timer 1000 virtual seconds away.
        spy = _IOArrivesWhileWaiting(loop._poller, sender)
        loop._poller = spy
        readable = loop.create_future()
        loop.add_reader(receiver, lambda: readable.done() or readable.set_result(None))
        timer = loop.call_later(1000, readable.cancel)  # the jump would fail the test
        try:
            await readable
            log.append((receiver.recv(100).decode(), loop.time()))
        finally:
            loop.remove_reader(receiver)
            timer.cancel()
            loop._poller = spy._real
        assert spy.sent

    try:
        treadle.run(main(), clock=VirtualClock(autojump_threshold=5.0))
    finally:
        receiver.close()
        sender.close()
    assert log == [("arrived during the wait", 0.0)]


@pytest.mark.timeout(20)
def test_autojump_threshold_with_a_real_peer_thread() -> None:
    # A peer thread answers a request over a real socket; the loop has a far-away
    # timer. With a generous threshold the reply wins over the jump.
    receiver, sender = socket.socketpair()
    receiver.setblocking(False)

    def peer() -> None:
        sender.settimeout(10)
        request = sender.recv(100)
        sender.send(b"reply to " + request)

    thread = threading.Thread(target=peer)
    thread.start()

    async def main() -> tuple[bytes, float]:
        loop = treadle.get_running_loop()
        readable = loop.create_future()
        loop.add_reader(receiver, lambda: readable.done() or readable.set_result(None))
        timer = loop.call_later(1000, readable.cancel)
        try:
            receiver.send(b"ping")
            await readable
            return receiver.recv(100), loop.time()
        finally:
            loop.remove_reader(receiver)
            timer.cancel()

    try:
        assert treadle.run(main(), clock=VirtualClock(autojump_threshold=5.0)) == (
            b"reply to ping",
            0.0,
        )
    finally:
        thread.join()
        receiver.close()
        sender.close()


def test_with_a_threshold_and_no_io_the_clock_still_jumps() -> None:
    async def main() -> float:
        await treadle.sleep(10)
        await treadle.sleep(20)
        return treadle.get_running_loop().time()

    real_start = time.monotonic()
    assert treadle.run(main(), clock=VirtualClock(autojump_threshold=0.01)) == 30.0
    assert time.monotonic() - real_start < 5.0


# --- the pytest plugin's fixture --------------------------------------------------------------


async def test_the_virtual_clock_fixture(virtual_clock: VirtualClock) -> None:
    loop = treadle.get_running_loop()
    assert loop.clock is virtual_clock
    await treadle.sleep(100)
    assert loop.time() == 100


async def test_wait_all_tasks_blocked_on_virtual_time(virtual_clock: VirtualClock) -> None:
    log: list[str] = []

    async def worker(gate: treadle.Future[None]) -> None:
        for i in range(5):
            await treadle.sleep(0)
            log.append(f"step {i}")
        await gate
        log.append("released")

    gate: treadle.Future[None] = treadle.get_running_loop().create_future()
    task = treadle.create_task(worker(gate))
    await wait_all_tasks_blocked()
    assert log == [f"step {i}" for i in range(5)]
    gate.set_result(None)
    await task
    assert log[-1] == "released"
    assert treadle.get_running_loop().time() == 0.0


def test_a_stopping_loop_does_not_jump_ahead() -> None:
    loop = treadle.EventLoop(clock=VirtualClock())
    try:
        fired: list[str] = []
        loop.call_later(100, fired.append, "timer")
        loop.stop()
        loop.run_forever()  # one iteration that must not wait (and so must not jump)
        assert fired == []
        assert loop.time() == 0.0
    finally:
        loop.close()


# --- real I/O under the pytest plugin's virtual clock ------------------------------------------


async def _echo_once(reader: treadle.StreamReader, writer: treadle.StreamWriter) -> None:
    writer.write(await reader.read(100))
    await writer.drain()
    writer.close()
    await writer.wait_closed()


@pytest.mark.timeout(20)
async def test_a_loopback_exchange_under_a_timeout_on_virtual_time(
    virtual_clock: VirtualClock,
) -> None:
    server = await treadle.start_server(_echo_once, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with treadle.timeout(5):
            reader, writer = await treadle.open_connection("127.0.0.1", port)
            writer.write(b"ping over loopback")
            await writer.drain()
            assert await reader.read(100) == b"ping over loopback"
            writer.close()
            await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()
    assert treadle.get_running_loop().time() < 5


@pytest.mark.timeout(20)
async def test_a_thread_under_a_timeout_on_virtual_time(virtual_clock: VirtualClock) -> None:
    async with treadle.timeout(5):
        await treadle.to_thread(time.sleep, 0.05)
    assert virtual_clock.jumps == 0


@pytest.mark.timeout(20)
async def test_sleeping_an_hour_with_no_io_takes_no_real_time(virtual_clock: VirtualClock) -> None:
    # A threshold far above what a busy machine can hold the test up: a clock that waited
    # for it before jumping would show, one that jumps at once stays well under.
    virtual_clock.autojump_threshold = 15.0
    real_start = time.monotonic()
    await treadle.sleep(3600)
    assert treadle.get_running_loop().time() == 3600
    assert time.monotonic() - real_start < 5.0


def test_run_test_counts_threads_as_work_in_flight() -> None:
    async def main() -> float:
        async with treadle.timeout(5):
            await treadle.to_thread(time.sleep, 0.05)
        return treadle.get_running_loop().time()

    assert run_test(main, clock=VirtualClock()) == 0.0


@pytest.mark.timeout(20)
async def test_a_loopback_exchange_with_a_peer_thread_on_virtual_time(
    virtual_clock: VirtualClock,
) -> None:
    # The peer answers from another thread, as a server under test in a thread would: the
    # loop must wait for its reply rather than jump past the timeout.
    listener = socket.create_server(("127.0.0.1", 0))

    def peer() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.sendall(b"reply to " + connection.recv(100))

    thread = threading.Thread(target=peer)
    thread.start()
    try:
        async with treadle.timeout(5):
            reader, writer = await treadle.open_connection(*listener.getsockname())
            writer.write(b"ping")
            assert await reader.read(100) == b"reply to ping"
            writer.close()
            await writer.wait_closed()
    finally:
        listener.close()
        await treadle.to_thread(thread.join)
    assert virtual_clock.time() == 0.0


def test_the_real_clock_sleeps_until_the_deadline_and_never_a_negative_time() -> None:
    clock = MonotonicClock()
    now = clock.time()
    assert 0.0 < clock.sleep_time(now + 60.0) <= 60.0
    assert clock.sleep_time(now - 5.0) == 0.0  # past: no wait, not -5
    assert clock.sleep_time(float("-inf")) == 0.0


def test_a_loop_on_the_real_clock_reads_monotonic_time_and_another_clock_is_asked() -> None:
    loop = treadle.new_event_loop()
    try:
        before = time.monotonic()
        assert before <= loop.time() <= time.monotonic()
    finally:
        loop.close()

    class Shifted:  # a clock of its own (the compiled MonotonicClock takes no subclass)
        def __init__(self) -> None:
            self._real = MonotonicClock()

        def time(self) -> float:
            return self._real.time() + 1000.0

        def sleep_time(self, deadline: float) -> float:
            return self._real.sleep_time(deadline - 1000.0)

        def idle(self, deadline: float) -> None:
            pass

    shifted = treadle.EventLoop(clock=Shifted())
    try:
        assert shifted.time() >= time.monotonic() + 999.0  # its own time()
    finally:
        shifted.close()
