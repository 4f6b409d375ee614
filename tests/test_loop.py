"""The event loop: callbacks, timers, file descriptors, errors, threads and debug mode.

Where treadle mirrors asyncio, a test takes ``fw`` and ``new_loop`` and runs on both
(asyncio is the oracle). White-box checks of treadle's own structures say so.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import treadle
from treadle.testing import VirtualClock

# --- helpers ----------------------------------------------------------------------------


def run_one_iteration(loop: Any) -> None:
    """Run exactly one iteration: stop() takes effect after the current one."""
    loop.call_soon(loop.stop)
    loop.run_forever()


def runtime_errors_in_one_iteration(
    loop: Any, action: Callable[[], object], *, from_another_thread: bool = False
) -> list[RuntimeError]:
    """Call ``action`` from a callback of one iteration of ``loop``; the RuntimeErrors it raised.

    With ``from_another_thread``, the callback calls it in a thread it starts and joins.
    """
    errors: list[RuntimeError] = []

    def calling() -> None:
        try:
            action()
        except RuntimeError as exc:
            errors.append(exc)

    def in_loop() -> None:
        if not from_another_thread:
            calling()
            return
        thread = threading.Thread(target=calling)
        thread.start()
        thread.join()

    loop.call_soon(in_loop)
    run_one_iteration(loop)
    return errors


class _PollSpy:
    """Wraps treadle's poller (or asyncio's selector) and calls ``on_block`` before blocking."""

    def __init__(self, real: Any, on_block: Callable[[float | None], None]) -> None:
        self._real = real
        self._on_block = on_block

    def poll(self, timeout: float) -> Any:  # treadle's poller
        if timeout < 0 or timeout > 0:
            self._on_block(timeout)
        return self._real.poll(timeout)

    def select(self, timeout: float | None = None) -> Any:  # asyncio's selector
        if timeout is None or timeout > 0:
            self._on_block(timeout)
        return self._real.select(timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def spy_on_blocking(loop: Any, on_block: Callable[[float | None], None]) -> None:
    """Call ``on_block(timeout)`` whenever ``loop`` is about to block waiting for I/O."""
    if isinstance(loop, treadle.EventLoop):
        loop._poller = _PollSpy(loop._poller, on_block)
    else:
        loop._selector = _PollSpy(loop._selector, on_block)


def logger_name(fw: Any) -> str:
    return "treadle" if fw.module is treadle else "asyncio"


# --- call_soon ----------------------------------------------------------------------------


def test_call_soon_runs_callbacks_in_fifo_order_exactly_once(fw: Any, new_loop: Any) -> None:
    loop = new_loop()
    calls: list[int] = []
    for i in range(10):
        loop.call_soon(calls.append, i)
    run_one_iteration(loop)
    assert calls == list(range(10))
    # Nothing is run a second time.
    run_one_iteration(loop)
    run_one_iteration(loop)
    assert calls == list(range(10))


def test_call_soon_passes_arguments_and_returns_a_handle(fw: Any, new_loop: Any) -> None:
    loop = new_loop()
    calls: list[tuple[Any, ...]] = []
    handle = loop.call_soon(lambda *args: calls.append(args), 1, "two", None)
    assert isinstance(handle, asyncio.Handle if fw.module is asyncio else treadle.Handle)
    run_one_iteration(loop)
    assert calls == [(1, "two", None)]


def test_a_callback_scheduled_during_an_iteration_waits_for_the_next(
    fw: Any, new_loop: Any
) -> None:
    loop = new_loop()
    log: list[str] = []
    ticks = 0

    def ticker() -> None:
        nonlocal ticks
        ticks += 1
        log.append(f"tick{ticks}")
        if ticks < 4:
            loop.call_soon(ticker)
        else:
            loop.stop()

    def chain(names: str) -> None:
        # Logs the first name, and schedules the rest for the next iteration.
        log.append(names[0])
        if names[1:]:
            loop.call_soon(chain, names[1:])

    loop.call_soon(ticker)
    loop.call_soon(chain, "abc")
    loop.run_forever()
    assert log == ["tick1", "a", "tick2", "b", "tick3", "c", "tick4"]


def test_stop_finishes_the_current_iteration_only(fw: Any, new_loop: Any) -> None:
    loop = new_loop()
    log: list[str] = []

    def first() -> None:
        log.append("first")
        loop.call_soon(log.append, "scheduled by first")

    loop.call_soon(first)
    loop.call_soon(loop.stop)
    loop.call_soon(log.append, "after stop, same iteration")
    loop.run_forever()
    assert log == ["first", "after stop, same iteration"]
    run_one_iteration(loop)
    assert log == ["first", "after stop, same iteration", "scheduled by first"]


def test_call_soon_runs_in_the_context_given(fw: Any, new_loop: Any) -> None:
    loop = new_loop()
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="outside")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "inside")
    seen: list[str] = []
    loop.call_soon(lambda: seen.append(var.get()), context=ctx)
    loop.call_soon(lambda: seen.append(var.get()))
    run_one_iteration(loop)
    assert seen == ["inside", "outside"]


# --- timers -----------------------------------------------------------------------------


def test_due_timers_fire_in_deadline_order(fw: Any, new_loop: Any) -> None:
    loop = new_loop()
    fired: list[str] = []
    now = loop.time()
    # Deadlines already in the past fire on the next iteration, earliest first.
    loop.call_at(now - 1, fired.append, "minus 1")
    loop.call_at(now - 3, fired.append, "minus 3")
    loop.call_later(-2, fired.append, "minus 2 (call_later)")
    loop.call_at(now - 2.5, fired.append, "minus 2.5")
    run_one_iteration(loop)
    assert fired == ["minus 3", "minus 2.5", "minus 2 (call_later)", "minus 1"]


def test_future_timers_fire_in_deadline_order_on_virtual_time() -> None:
    loop = treadle.EventLoop(clock=VirtualClock())
    try:
        fired: list[tuple[str, float]] = []

        def record(name: str) -> None:
            fired.append((name, loop.time()))

        loop.call_later(3, record, "c")
        loop.call_later(1, record, "a")
        loop.call_at(2, record, "b")
        loop.call_later(3.5, loop.stop)
        loop.run_forever()
        assert fired == [("a", 1.0), ("b", 2.0), ("c", 3.0)]
    finally:
        loop.close()


def test_timers_with_the_same_deadline_fire_in_scheduling_order() -> None:
    # asyncio's heap does not promise this; treadle does (the heap holds a sequence number).
    loop = treadle.EventLoop()
    try:
        fired: list[int] = []
        when = loop.time() - 1
        for i in range(200):
            loop.call_at(when, fired.append, i)
        run_one_iteration(loop)
        assert fired == list(range(200))
    finally:
        loop.close()


def test_timer_handle_when(fw: Any, new_loop: Any) -> None:
    loop = new_loop()
    at = loop.call_at(12345.5, print)
    assert at.when() == 12345.5
    before = loop.time()
    later = loop.call_later(10, print)
    after = loop.time()
    assert before + 10 <= later.when() <= after + 10
    at.cancel()
    later.cancel()


def test_handle_cancel_prevents_the_call(fw: Any, new_loop: Any) -> None:
    loop = new_loop()
    calls: list[str] = []
    soon = loop.call_soon(calls.append, "soon")
    timer = loop.call_at(loop.time() - 1, calls.append, "timer")
    kept = loop.call_soon(calls.append, "kept")
    assert not soon.cancelled()
    assert not timer.cancelled()
    soon.cancel()
    timer.cancel()
    soon.cancel()  # twice is harmless
    assert soon.cancelled()
    assert timer.cancelled()
    assert not kept.cancelled()
    run_one_iteration(loop)
    run_one_iteration(loop)
    assert calls == ["kept"]


def test_a_callback_can_cancel_a_later_callback_of_the_same_iteration(
    fw: Any, new_loop: Any
) -> None:
    loop = new_loop()
    calls: list[str] = []
    handles: list[Any] = []
    loop.call_soon(lambda: handles[0].cancel())
    handles.append(loop.call_soon(calls.append, "cancelled"))
    loop.call_soon(calls.append, "ran")
    run_one_iteration(loop)
    assert calls == ["ran"]


def test_cancelled_timers_do_not_pile_up_in_the_heap() -> None:
    loop = treadle.EventLoop()
    try:
        # A live timer with the earliest deadline sits on top of the heap, so only a
        # purge (not popping cancelled timers off the top) can drop the others.
        live = loop.call_later(500, print)
        timers = [loop.call_later(1000 + i, print) for i in range(10_000)]
        assert len(loop._timers) == 10_001
        for timer in timers:
            timer.cancel()
        run_one_iteration(loop)
        assert len(loop._timers) == 1
        assert loop._timers[0][2] is live
        live.cancel()
    finally:
        loop.close()


def test_a_due_timer_runs_once_in_the_iteration_that_purges_cancelled_timers(
    fw: Any, new_loop: Any
) -> None:
    # Regression: the purge put the live timers in a new heap while the iteration went
    # on popping due timers from the old one, so a timer due then ran again later (a
    # Timeout's stale callback cancelled its task inside the next timeout block).
    loop = new_loop()
    calls: list[str] = []
    loop.call_at(loop.time() - 1, calls.append, "due")
    cancelled = [loop.call_later(1000 + i, print) for i in range(500)]
    for timer in cancelled:
        timer.cancel()
    for _ in range(3):
        run_one_iteration(loop)
    assert calls == ["due"]


def test_cancelled_timers_at_the_top_of_the_heap_are_dropped() -> None:
    loop = treadle.EventLoop()
    try:
        timers = [loop.call_later(1000 + i, print) for i in range(50)]
        for timer in timers:
            timer.cancel()
        run_one_iteration(loop)
        assert loop._timers == []
    finally:
        loop.close()


# --- errors in callbacks ------------------------------------------------------------------


def test_an_exception_in_a_callback_goes_to_the_handler_and_the_loop_carries_on(
    fw: Any, new_loop: Any
) -> None:
    loop = new_loop()
    contexts: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda lp, context: contexts.append(context))
    calls: list[str] = []

    def broken() -> None:
        calls.append("broken")
        raise ZeroDivisionError("boom")

    handle = loop.call_soon(broken)
    loop.call_soon(calls.append, "after")
    run_one_iteration(loop)
    run_one_iteration(loop)
    assert calls == ["broken", "after"]
    assert len(contexts) == 1
    context = contexts[0]
    assert isinstance(context["exception"], ZeroDivisionError)
    assert "broken" in context["message"]
    assert context["handle"] is handle


def test_set_and_get_exception_handler(fw: Any, new_loop: Any) -> None:
    loop = new_loop()
    assert loop.get_exception_handler() is None

    def handler(lp: Any, context: dict[str, Any]) -> None:
        pass

    loop.set_exception_handler(handler)
    assert loop.get_exception_handler() is handler
    loop.set_exception_handler(None)
    assert loop.get_exception_handler() is None
    with pytest.raises(TypeError):
        loop.set_exception_handler(42)


def test_default_exception_handler_logs_the_error(
    fw: Any, new_loop: Any, caplog: pytest.LogCaptureFixture
) -> None:
    loop = new_loop()

    def failing_callback() -> None:
        raise KeyError("the key")

    loop.call_soon(failing_callback)
    with caplog.at_level(logging.ERROR, logger=logger_name(fw)):
        run_one_iteration(loop)
    records = [r for r in caplog.records if r.name == logger_name(fw)]
    assert len(records) == 1
    record = records[0]
    assert record.levelno == logging.ERROR
    assert "failing_callback" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], KeyError)


def test_call_exception_handler_with_a_message_only(
    fw: Any, new_loop: Any, caplog: pytest.LogCaptureFixture
) -> None:
    loop = new_loop()
    with caplog.at_level(logging.ERROR, logger=logger_name(fw)):
        loop.call_exception_handler({"message": "something odd", "detail": 7})
    records = [r for r in caplog.records if r.name == logger_name(fw)]
    assert len(records) == 1
    assert "something odd" in records[0].getMessage()
    assert "detail" in records[0].getMessage()


def test_an_error_in_a_custom_handler_is_logged_not_raised(
    fw: Any, new_loop: Any, caplog: pytest.LogCaptureFixture
) -> None:
    loop = new_loop()

    def bad_handler(lp: Any, context: dict[str, Any]) -> None:
        raise RuntimeError("the handler itself failed")

    loop.set_exception_handler(bad_handler)
    calls: list[str] = []
    loop.call_soon(lambda: 1 / 0)
    loop.call_soon(calls.append, "carried on")
    with caplog.at_level(logging.ERROR, logger=logger_name(fw)):
        run_one_iteration(loop)
        loop.call_exception_handler({"message": "direct call"})
    assert calls == ["carried on"]
    records = [r for r in caplog.records if r.name == logger_name(fw)]
    assert len(records) == 2
    for record in records:
        assert record.exc_info is not None
        assert isinstance(record.exc_info[1], RuntimeError)
        assert "handler" in record.getMessage().lower()


# --- running, stopping, closing -------------------------------------------------------


def test_run_until_complete_returns_the_result(fw: Any, new_loop: Any) -> None:
    loop = new_loop()
    fut = loop.create_future()
    loop.call_soon(fut.set_result, "value")
    assert loop.run_until_complete(fut) == "value"

    async def coro() -> int:
        return 42

    assert loop.run_until_complete(coro()) == 42


def test_run_until_complete_raises_the_exception(fw: Any, new_loop: Any) -> None:
    loop = new_loop()

    async def coro() -> None:
        raise ValueError("from the coroutine")

    with pytest.raises(ValueError, match="from the coroutine"):
        loop.run_until_complete(coro())


def test_is_running_and_is_closed(fw: Any, new_loop: Any) -> None:
    loop = new_loop()
    seen: list[bool] = []
    assert not loop.is_running()
    assert not loop.is_closed()
    loop.call_soon(lambda: seen.append(loop.is_running()))
    run_one_iteration(loop)
    assert seen == [True]
    assert not loop.is_running()
    loop.close()
    assert loop.is_closed()
    loop.close()  # closing twice is harmless
    assert loop.is_closed()


def test_running_a_running_loop_raises(fw: Any, new_loop: Any) -> None:
    loop = new_loop()
    errors: list[BaseException] = []
    still_running: list[bool] = []
    # asyncio 3.13.0-3.13.2: a refused run_forever() still runs its cleanup, which marks
    # the outer loop as not running (CPython gh-130145, fixed in 3.13.3), so a second
    # attempt would really run a nested loop. There the oracle checks the first refusal.
    forgets_it_runs = fw.module is asyncio and (3, 13, 0) <= sys.version_info[:3] < (3, 13, 3)

    def nested() -> None:
        for attempt in (loop.run_forever, lambda: loop.run_until_complete(loop.create_future())):
            try:
                attempt()
            except RuntimeError as exc:
                errors.append(exc)
            still_running.append(loop.is_running())
            if forgets_it_runs:
                break

    loop.call_soon(nested)
    run_one_iteration(loop)
    assert still_running == ([False] if forgets_it_runs else [True, True])
    assert len(errors) == len(still_running)
    for exc in errors:
        assert "already running" in str(exc)
    # The loop still works afterwards.
    assert (
        loop.run_until_complete(asyncio.sleep(0) if fw.module is asyncio else treadle.sleep(0))
        is None
    )


def test_running_a_closed_loop_raises(fw: Any, new_loop: Any) -> None:
    loop = new_loop()
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        loop.run_forever()
    coro = fw.sleep(0)
    with pytest.raises(RuntimeError, match="closed"):
        loop.run_until_complete(coro)
    coro.close()
    with pytest.raises(RuntimeError, match="closed"):
        loop.call_soon(print)
    with pytest.raises(RuntimeError, match="closed"):
        loop.call_later(1, print)


def test_closing_a_running_loop_raises(fw: Any, new_loop: Any) -> None:
    loop = new_loop()
    errors = runtime_errors_in_one_iteration(loop, loop.close)
    assert len(errors) == 1
    assert "running" in str(errors[0])
    assert not loop.is_closed()


def test_close_discards_pending_callbacks(fw: Any, new_loop: Any) -> None:
    loop = new_loop()
    calls: list[str] = []
    loop.call_soon(calls.append, "never")
    loop.close()
    assert calls == []


# --- threads ------------------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_call_soon_threadsafe_wakes_a_loop_blocked_in_the_selector(fw: Any, new_loop: Any) -> None:
    loop = new_loop()
    fut = loop.create_future()
    blocked = threading.Event()
    # Runs in the loop's thread just before it blocks with no timer and nothing ready:
    # only the wake-up can get it out.
    spy_on_blocking(loop, lambda timeout: blocked.set())

    def other_thread() -> None:
        blocked.wait(5)
        loop.call_soon_threadsafe(fut.set_result, "woken")

    thread = threading.Thread(target=other_thread)
    thread.start()
    try:
        assert loop.run_until_complete(fut) == "woken"
    finally:
        thread.join()
    assert blocked.is_set()


def test_debug_mode_rejects_call_soon_from_another_thread(fw: Any, new_loop: Any) -> None:
    loop = new_loop()
    loop.set_debug(True)
    errors = runtime_errors_in_one_iteration(
        loop, lambda: loop.call_soon(print), from_another_thread=True
    )
    assert len(errors) == 1
    assert "thread" in str(errors[0]).lower()


def test_run_in_executor_uses_the_default_pool(fw: Any, new_loop: Any) -> None:
    loop = new_loop()
    loop_thread = threading.get_ident()

    def work(a: int, b: int) -> tuple[int, int]:
        return a + b, threading.get_ident()

    total, worker_thread = loop.run_until_complete(loop.run_in_executor(None, work, 2, 3))
    assert total == 5
    assert worker_thread != loop_thread
    loop.run_until_complete(loop.shutdown_default_executor())


def test_run_in_executor_propagates_the_exception(fw: Any, new_loop: Any) -> None:
    loop = new_loop()

    def fail() -> None:
        raise LookupError("from the pool")

    with pytest.raises(LookupError, match="from the pool"):
        loop.run_until_complete(loop.run_in_executor(None, fail))
    loop.run_until_complete(loop.shutdown_default_executor())


def test_shutdown_default_executor_joins_its_threads(fw: Any, new_loop: Any) -> None:
    loop = new_loop()
    threads: list[threading.Thread] = []
    loop.run_until_complete(
        loop.run_in_executor(None, lambda: threads.append(threading.current_thread()))
    )
    assert threads[0].is_alive()
    assert loop.run_until_complete(loop.shutdown_default_executor()) is None
    assert not threads[0].is_alive()
    with pytest.raises(RuntimeError):
        loop.run_in_executor(None, print)


def test_shutdown_default_executor_without_an_executor(fw: Any, new_loop: Any) -> None:
    loop = new_loop()
    assert loop.run_until_complete(loop.shutdown_default_executor()) is None


# --- file descriptors ---------------------------------------------------------------------


@pytest.fixture
def sockpair() -> Any:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


@pytest.mark.parametrize("as_object", [False, True], ids=["fd", "fileobj"])
def test_add_reader_calls_back_when_readable(
    fw: Any, new_loop: Any, sockpair: Any, as_object: bool
) -> None:
    loop = new_loop()
    a, b = sockpair
    target = a if as_object else a.fileno()
    fut = loop.create_future()
    received: list[bytes] = []

    def on_readable(tag: str) -> None:
        received.append(a.recv(100))
        fut.set_result(tag)

    loop.add_reader(target, on_readable, "tag")
    b.send(b"hello")
    assert loop.run_until_complete(fut) == "tag"
    assert received == [b"hello"]
    assert loop.remove_reader(target) is True
    assert loop.remove_reader(target) is False


def test_remove_reader_stops_the_callbacks(fw: Any, new_loop: Any, sockpair: Any) -> None:
    loop = new_loop()
    a, b = sockpair
    calls: list[str] = []
    loop.add_reader(a, calls.append, "read")
    b.send(b"data that nobody reads")
    run_one_iteration(loop)
    assert calls == ["read"]
    assert loop.remove_reader(a.fileno()) is True
    run_one_iteration(loop)
    run_one_iteration(loop)
    assert calls == ["read"]


@pytest.mark.parametrize("kind", ["reader", "writer"])
def test_add_reader_or_writer_replaces_the_earlier_one(
    fw: Any, new_loop: Any, sockpair: Any, kind: str
) -> None:
    loop = new_loop()
    a, b = sockpair
    add, remove = getattr(loop, f"add_{kind}"), getattr(loop, f"remove_{kind}")
    b.send(b"x")  # a is readable, and writable all along
    calls: list[str] = []
    add(a, calls.append, "first")
    add(a.fileno(), calls.append, "second")  # the same fd, named by its number
    run_one_iteration(loop)
    assert calls == ["second"]
    assert remove(a) is True
    assert remove(a) is False
    add(a, calls.append, "third")
    assert remove(a.fileno()) is True
    assert remove(a) is False


@pytest.mark.parametrize("as_object", [False, True], ids=["fd", "fileobj"])
def test_add_writer_calls_back_when_writable(
    fw: Any, new_loop: Any, sockpair: Any, as_object: bool
) -> None:
    loop = new_loop()
    a, b = sockpair
    target = b if as_object else b.fileno()
    fut = loop.create_future()

    def on_writable() -> None:
        b.send(b"ping")
        loop.remove_writer(target)
        fut.set_result(None)

    loop.add_writer(target, on_writable)
    loop.run_until_complete(fut)
    assert a.recv(100) == b"ping"
    assert loop.remove_writer(target) is False


def test_reader_and_writer_on_the_same_fd(fw: Any, new_loop: Any, sockpair: Any) -> None:
    loop = new_loop()
    a, b = sockpair
    calls: list[str] = []
    loop.add_writer(a, calls.append, "writable")
    loop.add_reader(a, calls.append, "readable")
    b.send(b"x")
    run_one_iteration(loop)
    assert sorted(calls) == ["readable", "writable"]
    assert loop.remove_writer(a) is True
    calls.clear()
    run_one_iteration(loop)
    assert calls == ["readable"]
    assert loop.remove_reader(a) is True
    calls.clear()
    run_one_iteration(loop)
    assert calls == []


def test_remove_without_add_returns_false(fw: Any, new_loop: Any, sockpair: Any) -> None:
    loop = new_loop()
    a, _ = sockpair
    assert loop.remove_reader(a) is False
    assert loop.remove_writer(a.fileno()) is False


def _closed_socket() -> socket.socket:
    s = socket.socket()
    s.close()
    return s


@pytest.mark.parametrize(
    "bad", ["abc", -1, "closed socket", 1.5], ids=["str", "negative", "closed", "float"]
)
@pytest.mark.parametrize("method", ["add_reader", "add_writer", "remove_reader", "remove_writer"])
def test_a_bad_fd_raises_value_error(fw: Any, new_loop: Any, bad: Any, method: str) -> None:
    loop = new_loop()
    fd = _closed_socket() if bad == "closed socket" else bad
    args = (print,) if method.startswith("add") else ()
    with pytest.raises(ValueError):
        getattr(loop, method)(fd, *args)


# --- debug mode and argument checks ------------------------------------------------------


def test_debug_mode_warns_about_a_slow_callback(
    fw: Any, new_loop: Any, caplog: pytest.LogCaptureFixture
) -> None:
    loop = new_loop()
    assert loop.get_debug() is False or fw.module is asyncio  # asyncio may follow -X dev
    loop.set_debug(True)
    assert loop.get_debug() is True
    # Far above what a busy machine's stall adds to the quick callback, which must not
    # be reported; the dawdling one runs past it.
    loop.slow_callback_duration = 0.2

    def dawdling_callback() -> None:
        end = time.monotonic() + 0.25
        while time.monotonic() < end:
            pass

    def quick_callback() -> None:
        pass

    loop.call_soon(dawdling_callback)
    loop.call_soon(quick_callback)
    with caplog.at_level(logging.WARNING, logger=logger_name(fw)):
        run_one_iteration(loop)
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(messages) == 1
    assert "dawdling_callback" in messages[0]
    assert "quick_callback" not in messages[0]


def test_no_slow_callback_warning_outside_debug_mode(caplog: pytest.LogCaptureFixture) -> None:
    loop = treadle.EventLoop()
    try:
        loop.slow_callback_duration = 0.0
        loop.call_soon(print)
        with caplog.at_level(logging.WARNING, logger="treadle"):
            run_one_iteration(loop)
        assert caplog.records == []
    finally:
        loop.close()


@pytest.mark.parametrize("bad", [42, "not callable", None])
def test_scheduling_a_non_callable_raises_type_error(bad: Any) -> None:
    # asyncio checks this only in debug mode; treadle always does.
    loop = treadle.EventLoop()
    try:
        with pytest.raises(TypeError, match="callable"):
            loop.call_soon(bad)
        with pytest.raises(TypeError, match="callable"):
            loop.call_soon_threadsafe(bad)
        with pytest.raises(TypeError, match="callable"):
            loop.call_later(1, bad)
        with pytest.raises(TypeError, match="callable"):
            loop.call_at(1, bad)
        assert len(loop._ready) == 0
        assert loop._timers == []
    finally:
        loop.close()


def test_scheduling_a_non_callable_in_debug_mode(fw: Any, new_loop: Any) -> None:
    loop = new_loop()
    loop.set_debug(True)
    with pytest.raises(TypeError):
        loop.call_soon(42)
    with pytest.raises(TypeError):
        loop.call_later(1, 42)


def test_call_later_and_call_at_reject_nan() -> None:
    # asyncio accepts NaN and then never (or always) fires it; treadle refuses it.
    loop = treadle.EventLoop()
    try:
        with pytest.raises(ValueError, match="NaN"):
            loop.call_later(float("nan"), print)
        with pytest.raises(ValueError, match="NaN"):
            loop.call_at(float("nan"), print)
        assert loop._timers == []
    finally:
        loop.close()


# --- futures, tasks and the task factory --------------------------------------------------


def test_create_future_and_create_task(fw: Any, new_loop: Any) -> None:
    loop = new_loop()
    fut = loop.create_future()
    assert isinstance(fut, fw.Future)
    assert fut.get_loop() is loop
    assert not fut.done()
    fut.cancel()

    async def coro() -> str:
        return "done"

    task = loop.create_task(coro(), name="named")
    assert isinstance(task, fw.Task)
    assert task.get_loop() is loop
    assert task.get_name() == "named"
    assert loop.run_until_complete(task) == "done"


def test_set_task_factory(fw: Any, new_loop: Any) -> None:
    loop = new_loop()
    made: list[Any] = []

    def factory(lp: Any, coro: Any, **kwargs: Any) -> Any:
        task = fw.Task(coro, loop=lp, **kwargs)
        made.append(task)
        return task

    assert loop.get_task_factory() is None
    loop.set_task_factory(factory)
    assert loop.get_task_factory() is factory

    async def coro() -> int:
        return 7

    task = loop.create_task(coro())
    assert made == [task]
    assert loop.run_until_complete(task) == 7

    loop.set_task_factory(None)
    assert loop.get_task_factory() is None
    assert loop.run_until_complete(loop.create_task(coro())) == 7
    assert made == [task]
    with pytest.raises(TypeError):
        loop.set_task_factory(42)


def test_loop_time_is_monotonic(fw: Any, new_loop: Any) -> None:
    loop = new_loop()
    first = loop.time()
    second = loop.time()
    assert second >= first


# --- more oracle checks -------------------------------------------------------------------


def test_stop_before_run_forever_runs_one_iteration(fw: Any, new_loop: Any) -> None:
    loop = new_loop()
    calls: list[str] = []
    loop.call_soon(calls.append, "first iteration")
    loop.call_soon(lambda: loop.call_soon(calls.append, "second iteration"))
    loop.stop()
    loop.run_forever()
    assert calls == ["first iteration"]
    run_one_iteration(loop)
    assert calls == ["first iteration", "second iteration"]


def test_running_a_loop_inside_another_running_loop_raises(fw: Any, new_loop: Any) -> None:
    outer = new_loop()
    inner = new_loop()
    errors = runtime_errors_in_one_iteration(outer, inner.run_forever)
    assert len(errors) == 1
    assert not inner.is_running()


def test_run_until_complete_with_a_future_of_another_loop_raises(fw: Any, new_loop: Any) -> None:
    loop = new_loop()
    other = new_loop()
    fut = other.create_future()
    with pytest.raises(ValueError):
        loop.run_until_complete(fut)
    fut.cancel()


def test_a_reader_callback_that_raises_goes_to_the_handler(
    fw: Any, new_loop: Any, sockpair: Any
) -> None:
    loop = new_loop()
    a, b = sockpair
    contexts: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda lp, context: contexts.append(context))
    calls: list[str] = []

    def bad_reader() -> None:
        a.recv(100)
        calls.append("read")
        raise OSError("reader failed")

    loop.add_reader(a, bad_reader)
    b.send(b"1")
    run_one_iteration(loop)
    b.send(b"2")
    run_one_iteration(loop)
    assert calls == ["read", "read"]  # still registered after the error
    assert [type(c["exception"]) for c in contexts] == [OSError, OSError]
    loop.remove_reader(a)


def test_debug_mode_rejects_a_coroutine_function_as_callback(fw: Any, new_loop: Any) -> None:
    loop = new_loop()
    loop.set_debug(True)

    async def coroutine_function() -> None:
        pass

    with pytest.raises(TypeError):
        loop.call_soon(coroutine_function)
    with pytest.raises(TypeError):
        loop.call_later(1, coroutine_function)


# --- regressions: bugs found by these tests, now fixed -------------------------------------


@pytest.mark.parametrize("fatal", [SystemExit, KeyboardInterrupt])
def test_the_loop_runs_normally_after_a_task_raised_system_exit(
    fw: Any, new_loop: Any, fatal: type[BaseException]
) -> None:
    loop = new_loop()

    async def fails() -> None:
        raise fatal

    with pytest.raises(fatal):
        loop.run_until_complete(fails())

    async def takes_two_iterations() -> str:
        await fw.sleep(0)
        await fw.sleep(0)
        return "finished"

    assert loop.run_until_complete(takes_two_iterations()) == "finished"


@pytest.mark.timeout(10)
@pytest.mark.parametrize("delay", [1e7, math.inf], ids=["115-days", "inf"])
def test_a_timer_far_in_the_future_does_not_break_the_selector(
    fw: Any, new_loop: Any, delay: float
) -> None:
    loop = new_loop()
    far = loop.call_later(delay, print)
    blocked = threading.Event()
    spy_on_blocking(loop, lambda timeout: blocked.set())

    def other_thread() -> None:
        blocked.wait(5)
        loop.call_soon_threadsafe(loop.stop)

    thread = threading.Thread(target=other_thread)
    thread.start()
    try:
        loop.run_forever()
    finally:
        blocked.set()
        thread.join()
    far.cancel()


def test_debug_mode_rejects_setting_a_future_from_another_thread(fw: Any, new_loop: Any) -> None:
    loop = new_loop()
    loop.set_debug(True)
    fut = loop.create_future()
    fut.add_done_callback(lambda f: None)
    errors = runtime_errors_in_one_iteration(
        loop, lambda: fut.set_result(1), from_another_thread=True
    )
    assert len(errors) == 1


def test_a_task_cannot_be_made_on_a_closed_loop(fw: Any, new_loop: Any) -> None:
    loop = new_loop()
    loop.close()

    async def coro() -> None:
        pass

    c = coro()
    try:
        with pytest.raises(RuntimeError, match="closed"):
            fw.Task(c, loop=loop)
    finally:
        c.close()


def test_completing_a_future_of_a_closed_loop_raises(fw: Any, new_loop: Any) -> None:
    loop = new_loop()
    fut = loop.create_future()
    fut.add_done_callback(lambda f: None)
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        fut.set_result(1)
