"""treadle.aio's loop: how it is assembled, and asyncio's API working on it.

The resolution test pins, for every method of ``asyncio.AbstractEventLoop`` and for the
private hooks, whether treadle or asyncio provides it: a Python release that moves
asyncio's internals, or a treadle change that shadows one of asyncio's methods, fails
here first. The rest runs asyncio programs on the loop (the conformance run,
tests/test_aio_conformance.py, covers asyncio's own test suite).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
from loopback import echo_one_line, send_line

import treadle
import treadle.aio
import treadle.aio.engine
from treadle.aio import EventLoop
from treadle.loop import EventLoop as TreadleLoop
from treadle.testing import VirtualClock

_T = TypeVar("_T")

needs_312 = pytest.mark.skipif(sys.version_info < (3, 12), reason="loop_factory= is 3.12+")


def run_aio(main: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    with asyncio.Runner(loop_factory=treadle.aio.new_event_loop) as runner:
        return runner.run(main())


# --- how the loop is put together --------------------------------------------------------

# Where each method comes from. "treadle": treadle's loop; "treadle.aio": this package;
# any other value: the asyncio class that defines it.
EXPECTED_OWNERS = {
    # asyncio's AbstractEventLoop, every method
    "_timer_handle_cancelled": "treadle.aio",
    "add_reader": "BaseSelectorEventLoop",
    "add_signal_handler": "_UnixSelectorEventLoop",
    "add_writer": "BaseSelectorEventLoop",
    "call_at": "treadle.aio",
    "call_exception_handler": "BaseEventLoop",
    "call_later": "BaseEventLoop",
    "call_soon": "treadle.aio",
    "call_soon_threadsafe": "BaseEventLoop",
    "close": "treadle.aio",
    "connect_accepted_socket": "BaseEventLoop",
    "connect_read_pipe": "BaseEventLoop",
    "connect_write_pipe": "BaseEventLoop",
    "create_connection": "BaseEventLoop",
    "create_datagram_endpoint": "BaseEventLoop",
    "create_future": "BaseEventLoop",
    "create_server": "BaseEventLoop",
    "create_task": "BaseEventLoop",
    "create_unix_connection": "_UnixSelectorEventLoop",
    "create_unix_server": "_UnixSelectorEventLoop",
    "default_exception_handler": "BaseEventLoop",
    "get_debug": "BaseEventLoop",
    "get_exception_handler": "BaseEventLoop",
    "get_task_factory": "BaseEventLoop",
    "getaddrinfo": "BaseEventLoop",
    "getnameinfo": "BaseEventLoop",
    "is_closed": "BaseEventLoop",
    "is_running": "BaseEventLoop",
    "remove_reader": "BaseSelectorEventLoop",
    "remove_signal_handler": "_UnixSelectorEventLoop",
    "remove_writer": "BaseSelectorEventLoop",
    "run_forever": "treadle.aio",
    "run_in_executor": "BaseEventLoop",
    "run_until_complete": "BaseEventLoop",
    "sendfile": "BaseEventLoop",
    "set_debug": "BaseEventLoop",
    "set_default_executor": "BaseEventLoop",
    "set_exception_handler": "BaseEventLoop",
    "set_task_factory": "BaseEventLoop",
    "shutdown_asyncgens": "BaseEventLoop",
    "shutdown_default_executor": "BaseEventLoop",
    "sock_accept": "BaseSelectorEventLoop",
    "sock_connect": "BaseSelectorEventLoop",
    "sock_recv": "BaseSelectorEventLoop",
    "sock_recv_into": "BaseSelectorEventLoop",
    "sock_recvfrom": "BaseSelectorEventLoop",
    "sock_recvfrom_into": "BaseSelectorEventLoop",
    "sock_sendall": "BaseSelectorEventLoop",
    "sock_sendfile": "BaseEventLoop",
    "sock_sendto": "BaseSelectorEventLoop",
    "start_tls": "BaseEventLoop",
    "stop": "BaseEventLoop",
    "subprocess_exec": "BaseEventLoop",
    "subprocess_shell": "BaseEventLoop",
    "time": "treadle",
    # the private hooks: treadle's engine ...
    "_run_once": "treadle.aio",
    "_wake_up": "treadle",
    "_loop_for_asyncio": "treadle.aio",
    "_callback_failed": "treadle.aio",
    "_run_ready_debug": "treadle.aio",
    "_check_thread": "treadle.aio",
    "_current_task": "treadle.aio",
    "_tasks": "treadle.aio",
    # ... and asyncio's machinery on it
    "_add_reader": "treadle.aio",
    "_remove_reader": "treadle.aio",
    "_add_writer": "treadle.aio",
    "_remove_writer": "treadle.aio",
    "_selector": "treadle.aio",
    "_make_socket_transport": "treadle.aio",  # which transport: the next test
    "_make_ssl_transport": "treadle.aio",
    "_drain_self_pipe": "BaseSelectorEventLoop",
    "_read_from_self": "BaseSelectorEventLoop",
    "_write_to_self": "BaseSelectorEventLoop",
    "_process_self_data": "_UnixSelectorEventLoop",
    "_add_callback": "BaseEventLoop",
    "_check_closed": "BaseEventLoop",
    "_check_running": "BaseEventLoop",
    "_asyncgen_firstiter": "BaseEventLoop",
    "_asyncgen_finalizer": "BaseEventLoop",
    "__repr__": "BaseEventLoop",
    "__del__": "BaseEventLoop",
}


def owner_of(name: str) -> str:
    """Which class provides ``EventLoop.<name>`` (the function object, however aliased)."""
    found = inspect.getattr_static(EventLoop, name)
    for cls in asyncio.SelectorEventLoop.__mro__[:-1]:
        # Any name: an alias (``_drain_self_pipe = ..._read_from_self``) counts too.
        if any(value is found for value in cls.__dict__.values()):
            return cls.__name__
    if EventLoop.__dict__.get(name) is found and not any(
        cls.__dict__.get(name) is found for cls in TreadleLoop.__mro__
    ):
        return "treadle.aio"
    # treadle's loop: the services (treadle.loop.EventLoop) or the core (CoreLoop).
    if any(cls.__dict__.get(name) is found for cls in TreadleLoop.__mro__[:-1]):
        return "treadle"
    return f"unknown: {found!r}"


def test_every_method_resolves_where_it_is_pinned() -> None:
    abstract = {n for n in dir(asyncio.AbstractEventLoop) if not n.startswith("__")}
    assert abstract <= set(EXPECTED_OWNERS), (
        f"asyncio.AbstractEventLoop has methods this test does not pin: "
        f"{sorted(abstract - set(EXPECTED_OWNERS))}; decide who provides them"
    )
    actual = {name: owner_of(name) for name in EXPECTED_OWNERS}
    assert actual == EXPECTED_OWNERS


@pytest.mark.parametrize(
    ("switch", "maker"),
    [("treadle", "treadle.aio.transport"), ("asyncio", "BaseSelectorEventLoop")],
)
def test_stream_transports_are_made_where_the_switch_says(
    monkeypatch: pytest.MonkeyPatch, switch: str, maker: str
) -> None:
    """treadle.aio's _make_*_transport hand over to treadle's transport or to asyncio's.

    asyncio's side is its selector loop's own method: a Python release that moves it
    fails here (the patch below needs it on that class).
    """
    calls: list[tuple[str, str]] = []

    def recorder(where: str, kind: str) -> Callable[..., str]:
        def make(*args: Any, **kwargs: Any) -> str:
            calls.append((where, kind))
            return "transport"

        return make

    for kind in ("socket", "ssl"):
        name = f"make_{kind}_transport"
        monkeypatch.setattr(
            treadle.aio.transport, name, recorder("treadle.aio.transport", kind)
        )
        monkeypatch.setattr(
            asyncio.selector_events.BaseSelectorEventLoop,
            f"_{name}",
            recorder("BaseSelectorEventLoop", kind),
        )
    loop = treadle.aio.new_event_loop(transport=switch)
    try:
        assert loop._make_socket_transport(None, None) == "transport"
        assert loop._make_ssl_transport(None, None, None) == "transport"
    finally:
        loop.close()
    assert calls == [(maker, "socket"), (maker, "ssl")]


def test_nothing_resolves_to_an_abstract_stub() -> None:
    for name in dir(asyncio.AbstractEventLoop):
        if name.startswith("__"):
            continue
        assert asyncio.AbstractEventLoop.__dict__.get(name) is not inspect.getattr_static(
            EventLoop, name
        ), name


def test_the_loop_has_every_attribute_a_stock_asyncio_loop_has() -> None:
    stock = asyncio.SelectorEventLoop()
    ours = EventLoop()
    try:
        # Its timer heap is treadle's _timers; asyncio's _run_once, the only reader of
        # these two, never runs.
        missing = set(vars(stock)) - set(dir(ours)) - {"_scheduled", "_timer_cancelled_count"}
        assert not missing, f"asyncio's loop state {missing} is missing on treadle.aio's loop"
    finally:
        stock.close()
        ours.close()


def test_the_selector_reads_none_once_closed() -> None:
    loop = EventLoop()
    assert loop._selector is not None
    loop.close()
    assert loop._selector is None


def test_futures_and_tasks_are_asyncios_own() -> None:
    async def main() -> tuple[Any, Any]:
        loop = asyncio.get_running_loop()
        return loop.create_future(), asyncio.current_task()

    fut, task = run_aio(main)
    assert type(fut) is asyncio.Future and type(task) is asyncio.Task
    # The C implementations, where this Python has them.
    assert type(fut).__module__ == asyncio.Future.__module__
    fut.cancel()


def test_handles_made_without_init_hold_every_field_asyncios_init_sets() -> None:
    # call_soon and call_at fill asyncio's handles themselves (outside debug mode): a
    # Python release that adds a slot must fail here, not in a program.
    loop = EventLoop()
    context = contextvars.copy_context()

    def callback(*args: object) -> None: ...

    try:
        pairs = [
            (loop.call_soon(callback, 1, context=context),
             asyncio.Handle(callback, (1,), loop, context)),
            (loop.call_at(5.0, callback, 2, context=context),
             asyncio.TimerHandle(5.0, callback, (2,), loop, context)),
        ]
        for mine, theirs in pairs:
            assert type(mine) is type(theirs)
            slots = {slot for cls in type(theirs).__mro__
                     for slot in getattr(cls, "__slots__", ()) if slot != "__weakref__"}
            assert slots >= {"_callback", "_args", "_cancelled", "_loop", "_context"}
            for slot in slots - {"_scheduled"}:  # in the heap: ours is scheduled
                assert getattr(mine, slot) == getattr(theirs, slot), slot
            assert repr(mine) == repr(theirs)
            mine.cancel()
            assert mine.cancelled()
        # No context given: a copy of the current one, as asyncio's.
        assert loop.call_soon(callback)._context is not loop.call_soon(callback)._context
    finally:
        loop.close()


def test_handles_are_asyncios_with_source_tracebacks_in_debug_mode() -> None:
    loop = EventLoop()
    try:
        loop.set_debug(True)
        handle = loop.call_soon(lambda: None)
        timer = loop.call_later(10, lambda: None)
        at = loop.call_at(loop.time() + 10, lambda: None)
        assert isinstance(handle, asyncio.Handle) and isinstance(timer, asyncio.TimerHandle)
        # Each trace ends at the line that scheduled it, not inside the loop.
        for made in (handle, timer, at):
            last = made._source_traceback[-1]  # type: ignore[attr-defined]
            assert (last.filename, last.name) == (__file__, inspect.currentframe().f_code.co_name)
        at.cancel()
        timer.cancel()
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()


def test_remove_reader_finds_the_registration_of_a_socket_already_closed() -> None:
    loop = EventLoop()
    a, b = socket.socketpair()
    try:
        loop.add_reader(a, lambda: None)
        fd = a.fileno()
        a.close()
        assert loop.remove_reader(a) is True
        assert fd not in loop._selector.get_map()  # type: ignore[union-attr]
    finally:
        b.close()
        loop.close()


# One iteration's order, with stock asyncio as the oracle: treadle.aio's run-once runs the
# descriptors' callbacks from a list of its own, not through the ready queue.
LOOP_KINDS = {"treadle.aio": EventLoop, "asyncio": asyncio.SelectorEventLoop}


def run_one_iteration(loop: asyncio.AbstractEventLoop) -> None:
    loop.call_soon(loop.stop)
    loop.run_forever()


@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_one_iteration_runs_the_queued_then_the_readable_then_the_due(kind: str) -> None:
    loop = LOOP_KINDS[kind]()
    a, b = socket.socketpair()
    events: list[str] = []

    def on_readable() -> None:
        events.append("reader")
        a.recv(1)
        loop.call_soon(events.append, "scheduled by the reader")

    try:
        b.send(b"x")
        loop.add_reader(a, on_readable)
        loop.call_later(0, events.append, "due timer")
        loop.call_soon(events.append, "queued")
        run_one_iteration(loop)
        assert events == ["queued", "reader", "due timer"]
        run_one_iteration(loop)
        assert events[3:] == ["scheduled by the reader"]
    finally:
        a.close()
        b.close()
        loop.close()


@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_a_reader_removed_or_replaced_earlier_in_the_iteration_is_not_called(
    kind: str,
) -> None:
    loop = LOOP_KINDS[kind]()
    pairs = [socket.socketpair() for _ in range(3)]
    kept, removed, replaced = (a for a, _ in pairs)
    events: list[str] = []

    def reader(name: str, sock: socket.socket) -> Callable[[], None]:
        def on_readable() -> None:
            events.append(name)
            sock.recv(1)

        return on_readable

    def remove_and_replace() -> None:
        events.append("queued")
        loop.remove_reader(removed)
        loop.add_reader(replaced, reader("replacement", replaced))

    try:
        for _, b in pairs:
            b.send(b"x")
        loop.add_reader(kept, reader("kept", kept))
        loop.add_reader(removed, reader("removed", removed))
        loop.add_reader(replaced, reader("replaced", replaced))
        loop.call_soon(remove_and_replace)
        run_one_iteration(loop)
        # All three were readable when the loop polled; the removed reader and both
        # readers of the replaced socket sit this iteration out.
        assert events == ["queued", "kept"]
        run_one_iteration(loop)
        assert events[2:] == ["replacement"]
    finally:
        for a, b in pairs:
            loop.remove_reader(a)
            a.close()
            b.close()
        loop.close()


class RecordingPoller:
    """Wraps the loop's poller and records how many events each poll reported."""

    def __init__(self, poller: Any) -> None:
        self._poller = poller
        self.sizes: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._poller, name)

    def poll(self, *args: Any) -> list[tuple[int, int]]:
        events: list[tuple[int, int]] = self._poller.poll(*args)
        self.sizes.append(len(events))
        return events


def test_more_ready_descriptors_than_one_poll_takes_are_all_served_once() -> None:
    # A quiet iteration (nothing queued, no timers) polls for at most _MAX_EVENTS
    # events; the descriptors beyond them must come in the next polls, none lost.
    loop = EventLoop()
    limit = treadle.aio.engine._MAX_EVENTS
    count = 2 * limit + 1
    trigger, pull = socket.socketpair()
    pairs = [socket.socketpair() for _ in range(count)]
    served: list[int] = []

    def reader(index: int, sock: socket.socket) -> Callable[[], None]:
        def on_readable() -> None:
            served.append(index)
            sock.recv(1)
            if len(served) == count:
                loop.stop()

        return on_readable

    def make_all_readable() -> None:
        # Runs as a reader, so the next iterations start with nothing queued.
        loop.remove_reader(trigger)
        for _, b in pairs:
            b.send(b"x")

    recorder = RecordingPoller(loop._poller)
    try:
        for index, (a, _) in enumerate(pairs):
            loop.add_reader(a, reader(index, a))
        loop.add_reader(trigger, make_all_readable)
        pull.send(b"go")
        loop._poller = recorder
        loop.run_forever()
        assert sorted(served) == list(range(count))
        assert max(recorder.sizes) == limit  # the cap was reached, and held
    finally:
        loop._poller = recorder._poller
        for a, b in pairs:
            loop.remove_reader(a)
            a.close()
            b.close()
        trigger.close()
        pull.close()
        loop.close()


# --- the ways in ----------------------------------------------------------------------


@needs_312
def test_asyncio_run_with_the_loop_factory() -> None:
    async def main() -> str:
        await asyncio.sleep(0.001)
        return type(asyncio.get_running_loop()).__module__

    assert asyncio.run(main(), loop_factory=treadle.aio.new_event_loop) == "treadle.aio.loop"


def test_asyncio_runner_with_the_loop_factory() -> None:
    async def main() -> Any:
        await asyncio.sleep(0.001)
        return asyncio.get_running_loop()

    with asyncio.Runner(loop_factory=treadle.aio.new_event_loop) as runner:
        assert isinstance(runner.run(main()), EventLoop)


def test_treadle_aio_run_returns_the_result_and_closes_the_loop() -> None:
    loops = []

    async def main() -> int:
        loops.append(asyncio.get_running_loop())
        await asyncio.sleep(0)
        return 7

    assert treadle.aio.run(main()) == 7
    assert isinstance(loops[0], EventLoop) and loops[0].is_closed()


def test_treadle_aio_run_debug_mode() -> None:
    async def main() -> bool:
        return asyncio.get_running_loop().get_debug()

    assert treadle.aio.run(main(), debug=True) is True
    assert treadle.aio.run(main(), debug=False) is False


def test_the_policy_makes_treadle_aio_loops() -> None:
    policy = treadle.aio.EventLoopPolicy()
    loop = policy.new_event_loop()
    try:
        assert isinstance(loop, EventLoop)
    finally:
        loop.close()


# --- asyncio's API on the loop ----------------------------------------------------------


def test_tcp_streams_echo() -> None:
    async def main() -> bytes:
        server = await asyncio.start_server(echo_one_line, "127.0.0.1", 0)
        async with server:
            return await send_line(asyncio.open_connection, server, b"ping\n")

    assert run_aio(main) == b"ping\n"


def test_udp_round_trip() -> None:
    async def main() -> tuple[bytes, Any]:
        loop = asyncio.get_running_loop()
        received: asyncio.Future[tuple[bytes, Any]] = loop.create_future()

        class Echo(asyncio.DatagramProtocol):
            def connection_made(self, transport: Any) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: Any) -> None:
                self.transport.sendto(data.upper(), addr)

        class Client(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                received.set_result((data, addr))

        server, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
        address = server.get_extra_info("sockname")
        client, _ = await loop.create_datagram_endpoint(Client, remote_addr=address)
        client.sendto(b"hello")
        try:
            return await received
        finally:
            client.close()
            server.close()

    data, addr = run_aio(main)
    assert data == b"HELLO" and addr[0] == "127.0.0.1"


def test_subprocess_output() -> None:
    async def main() -> tuple[bytes, int]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "print('out')", stdout=asyncio.subprocess.PIPE
        )
        out, _ = await proc.communicate()
        return out, proc.returncode or 0

    assert run_aio(main) == (b"out\n", 0)


def test_signal_handler_runs_on_the_loop() -> None:
    async def main() -> int:
        loop = asyncio.get_running_loop()
        got: asyncio.Future[int] = loop.create_future()
        loop.add_signal_handler(signal.SIGUSR1, got.set_result, signal.SIGUSR1)
        try:
            os.kill(os.getpid(), signal.SIGUSR1)
            return await asyncio.wait_for(got, 10)
        finally:
            loop.remove_signal_handler(signal.SIGUSR1)

    assert run_aio(main) == signal.SIGUSR1


def test_run_in_executor_and_to_thread() -> None:
    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, sum, [1, 2]), await asyncio.to_thread(abs, -4)

    assert run_aio(main) == (3, 4)


def test_async_generators_are_closed_at_shutdown() -> None:
    closed = []

    async def agen() -> Any:
        try:
            yield 1
            yield 2
        finally:
            closed.append(True)

    async def main() -> None:
        gen = agen()
        await gen.__anext__()  # left suspended: the runner's shutdown_asyncgens closes it
        keep.append(gen)

    keep: list[Any] = []
    run_aio(main)
    assert closed == [True]


def test_task_factory_without_context_is_called_without_it() -> None:
    calls = []

    def factory(loop: Any, coro: Any) -> asyncio.Task[Any]:
        calls.append(loop)
        return asyncio.Task(coro, loop=loop)

    async def main() -> int:
        loop = asyncio.get_running_loop()
        loop.set_task_factory(factory)
        try:
            return await asyncio.create_task(asyncio.sleep(0, 5))
        finally:
            loop.set_task_factory(None)

    assert run_aio(main) == 5 and len(calls) == 1


def test_another_asyncio_loop_running_is_refused() -> None:
    async def main() -> None:
        inner = EventLoop()
        coro = asyncio.sleep(0)
        try:
            with pytest.raises(RuntimeError, match="another loop is running"):
                inner.run_until_complete(coro)
        finally:
            coro.close()
            inner.close()

    asyncio.run(main())


# --- virtual time ------------------------------------------------------------------------


def test_virtual_time_for_asyncio_code() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        async with asyncio.timeout(7200):
            await asyncio.sleep(3600)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.sleep(10), 5)
        return loop.time() - start

    started = time.monotonic()
    elapsed = treadle.aio.run(main(), clock=VirtualClock())
    assert 3605 <= elapsed < 3606
    assert time.monotonic() - started < 5


# --- import hygiene ------------------------------------------------------------------------


def test_import_treadle_does_not_import_asyncio() -> None:
    code = (
        "import sys, treadle, treadle.testing; "
        "assert 'asyncio' not in sys.modules, sorted(m for m in sys.modules if 'asyncio' in m); "
        "import treadle.aio; assert 'asyncio' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
