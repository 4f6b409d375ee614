"""Future: state, results, callbacks, awaiting, misuse, and exceptions nobody retrieved.

Tests that take ``fw`` run on treadle and on asyncio (the oracle).
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import gc
import threading
import types
from typing import Any

import pytest

import treadle


@pytest.fixture
def fut(new_loop: Any) -> Any:
    """A pending future on a fresh, not-running loop of ``fw``."""
    return new_loop().create_future()


def run_one_iteration(loop: Any) -> None:
    loop.call_soon(loop.stop)
    loop.run_forever()


def generator_coroutine(fw: Any) -> Any:
    """``treadle.coroutine``, or its asyncio counterpart ``types.coroutine``."""
    return treadle.coroutine if fw.module is treadle else types.coroutine


# --- state and results --------------------------------------------------------------------


def test_a_new_future_is_pending(fw: Any, new_loop: Any) -> None:
    loop = new_loop()
    fut = loop.create_future()
    assert not fut.done()
    assert not fut.cancelled()
    assert fut.get_loop() is loop
    assert fw.isfuture(fut)
    assert not fw.isfuture(42)
    assert not fw.isfuture(fw.Future)


def test_a_future_made_directly_takes_its_loop(fw: Any, new_loop: Any) -> None:
    loop = new_loop()
    fut = fw.Future(loop=loop)
    assert fut.get_loop() is loop


def test_set_result(fw: Any, fut: Any) -> None:
    fut.set_result([1, 2])
    assert fut.done()
    assert not fut.cancelled()
    assert fut.result() == [1, 2]
    assert fut.exception() is None


def test_set_exception(fw: Any, fut: Any) -> None:
    error = ValueError("bad")
    fut.set_exception(error)
    assert fut.done()
    assert not fut.cancelled()
    assert fut.exception() is error
    with pytest.raises(ValueError, match="bad") as info:
        fut.result()
    assert info.value is error


def test_set_exception_with_a_class(fw: Any, fut: Any) -> None:
    fut.set_exception(KeyError)
    assert isinstance(fut.exception(), KeyError)


def test_cancel(fw: Any, fut: Any) -> None:
    assert fut.cancel() is True
    assert fut.cancelled()
    assert fut.done()
    assert fut.cancel() is False
    with pytest.raises(fw.CancelledError):
        fut.result()
    with pytest.raises(fw.CancelledError):
        fut.exception()


def test_cancel_with_a_message(fw: Any, fut: Any) -> None:
    assert fut.cancel(msg="not needed any more") is True
    with pytest.raises(fw.CancelledError) as info:
        fut.result()
    assert info.value.args == ("not needed any more",)


def test_cancel_a_done_future_does_nothing(fw: Any, fut: Any) -> None:
    fut.set_result(1)
    assert fut.cancel() is False
    assert not fut.cancelled()
    assert fut.result() == 1


def test_cancelled_error_is_a_base_exception(fw: Any) -> None:
    assert issubclass(fw.CancelledError, BaseException)
    assert not issubclass(fw.CancelledError, Exception)


# --- misuse -------------------------------------------------------------------------------


def test_result_and_exception_before_done_raise_invalid_state(fw: Any, fut: Any) -> None:
    with pytest.raises(fw.InvalidStateError):
        fut.result()
    with pytest.raises(fw.InvalidStateError):
        fut.exception()


def test_setting_twice_raises_invalid_state(fw: Any, new_loop: Any) -> None:
    loop = new_loop()
    fut = loop.create_future()
    fut.set_result(1)
    with pytest.raises(fw.InvalidStateError):
        fut.set_result(2)
    with pytest.raises(fw.InvalidStateError):
        fut.set_exception(ValueError())
    assert fut.result() == 1

    failed = loop.create_future()
    failed.set_exception(ValueError())
    with pytest.raises(fw.InvalidStateError):
        failed.set_result(2)
    with pytest.raises(fw.InvalidStateError):
        failed.set_exception(KeyError())
    assert isinstance(failed.exception(), ValueError)


def test_setting_after_cancel_raises_invalid_state(fw: Any, fut: Any) -> None:
    fut.cancel()
    with pytest.raises(fw.InvalidStateError):
        fut.set_exception(ValueError())
    with pytest.raises(fw.InvalidStateError):
        fut.set_result(1)
    assert fut.cancelled()


def test_set_exception_with_stop_iteration(fw: Any, fut: Any) -> None:
    # asyncio 3.11 raises TypeError at once; later asyncio (and treadle) store a
    # RuntimeError caused by the StopIteration instead. Either way a StopIteration is
    # never raised out of the future, where it would end an awaiting generator.
    stop = StopIteration("value")
    try:
        fut.set_exception(stop)
    except TypeError:
        assert not fut.done()
        return
    assert fut.done()
    exc = fut.exception()
    assert isinstance(exc, RuntimeError)
    assert exc.__cause__ is stop
    with pytest.raises(RuntimeError):
        fut.result()


def test_treadle_turns_stop_iteration_into_runtime_error() -> None:
    loop = treadle.EventLoop()
    try:
        for stop in (StopIteration(), StopIteration):
            fut = loop.create_future()
            fut.set_exception(stop)
            assert isinstance(fut.exception(), RuntimeError)
            assert isinstance(fut.exception().__cause__, StopIteration)
    finally:
        loop.close()


def test_set_exception_with_a_non_exception_raises_type_error(fw: Any, fut: Any) -> None:
    with pytest.raises(TypeError):
        fut.set_exception("not an exception")
    assert not fut.done()


# --- done callbacks -----------------------------------------------------------------------


def test_done_callbacks_are_scheduled_not_called_inline(fw: Any, new_loop: Any) -> None:
    loop = new_loop()
    fut = loop.create_future()
    calls: list[tuple[str, Any]] = []
    fut.add_done_callback(lambda f: calls.append(("first", f)))
    fut.add_done_callback(lambda f: calls.append(("second", f)))
    fut.set_result(1)
    assert calls == []  # set_result does not call them
    run_one_iteration(loop)
    assert calls == [("first", fut), ("second", fut)]


def test_a_callback_added_to_a_done_future_is_scheduled(fw: Any, new_loop: Any) -> None:
    loop = new_loop()
    fut = loop.create_future()
    fut.set_result(1)
    calls: list[str] = []
    fut.add_done_callback(lambda f: calls.append("late"))
    assert calls == []  # not run inline by add_done_callback
    run_one_iteration(loop)
    assert calls == ["late"]


def test_done_callbacks_run_once_on_cancel_and_on_exception(fw: Any, new_loop: Any) -> None:
    loop = new_loop()
    calls: list[str] = []
    cancelled = loop.create_future()
    failed = loop.create_future()
    cancelled.add_done_callback(lambda f: calls.append(f"cancelled={f.cancelled()}"))
    failed.add_done_callback(lambda f: calls.append(repr(f.exception())))
    cancelled.cancel()
    failed.set_exception(KeyError("k"))
    run_one_iteration(loop)
    run_one_iteration(loop)
    assert calls == ["cancelled=True", "KeyError('k')"]


def test_add_done_callback_context(fw: Any, new_loop: Any) -> None:
    loop = new_loop()
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="default")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "in the context")
    fut = loop.create_future()
    seen: list[str] = []
    fut.add_done_callback(lambda f: seen.append(var.get()), context=ctx)
    token = var.set("when added")
    fut.add_done_callback(lambda f: seen.append(var.get()))
    var.reset(token)
    fut.set_result(None)
    run_one_iteration(loop)
    assert seen == ["in the context", "when added"]


def test_remove_done_callback(fw: Any, new_loop: Any) -> None:
    loop = new_loop()
    fut = loop.create_future()
    calls: list[str] = []

    def removed(f: Any) -> None:
        calls.append("removed")

    def kept(f: Any) -> None:
        calls.append("kept")

    fut.add_done_callback(removed)
    fut.add_done_callback(kept)
    fut.add_done_callback(removed)
    assert fut.remove_done_callback(removed) == 2
    assert fut.remove_done_callback(removed) == 0
    fut.set_result(None)
    run_one_iteration(loop)
    assert calls == ["kept"]


# --- awaiting -----------------------------------------------------------------------------


def test_await_a_future(fw: Any) -> None:
    async def main() -> Any:
        loop = fw.get_running_loop()
        fut = loop.create_future()
        loop.call_soon(fut.set_result, "awaited")
        return await fut

    assert fw.run(main()) == "awaited"


def test_await_a_failed_future_raises(fw: Any) -> None:
    async def main() -> None:
        loop = fw.get_running_loop()
        fut = loop.create_future()
        loop.call_soon(fut.set_exception, ValueError("failed"))
        await fut

    with pytest.raises(ValueError, match="failed"):
        fw.run(main())


def test_await_a_cancelled_future_raises_cancelled_error(fw: Any) -> None:
    async def main() -> str:
        loop = fw.get_running_loop()
        fut = loop.create_future()
        loop.call_soon(fut.cancel, "gone")
        try:
            await fut
        except fw.CancelledError as exc:
            return f"caught {exc.args}"
        return "not cancelled"

    assert fw.run(main()) == "caught ('gone',)"


def test_await_a_done_future_does_not_suspend(fw: Any) -> None:
    async def main() -> Any:
        fut = fw.get_running_loop().create_future()
        fut.set_result(3)
        return await fut

    assert fw.run(main()) == 3


def test_yield_from_a_future_in_a_generator_driven_by_a_task(
    fw: Any, start_generator: Any
) -> None:
    log: list[str] = []

    def gen_based(fut: Any) -> Any:
        log.append("before")
        value = yield from fut
        log.append(f"got {value}")
        return value * 2

    async def main() -> Any:
        loop = fw.get_running_loop()
        fut = loop.create_future()
        loop.call_soon(fut.set_result, 21)
        return await start_generator(loop, gen_based(fut))

    assert fw.run(main()) == 42
    assert log == ["before", "got 21"]


def test_yield_from_a_future_in_a_coroutine_generator_awaited_by_async_code(fw: Any) -> None:
    @generator_coroutine(fw)
    def wait_for_it(fut: Any) -> Any:
        value = yield from fut
        return value + 1

    async def main() -> Any:
        loop = fw.get_running_loop()
        fut = loop.create_future()
        loop.call_soon(fut.set_result, 1)
        return await wait_for_it(fut)

    assert fw.run(main()) == 2


def test_yield_from_a_failed_future_raises_into_the_generator(fw: Any) -> None:
    @generator_coroutine(fw)
    def wait_for_it(fut: Any) -> Any:
        try:
            yield from fut
        except KeyError as exc:
            return f"caught {exc!r}"
        return "not raised"

    async def main() -> Any:
        loop = fw.get_running_loop()
        fut = loop.create_future()
        loop.call_soon(fut.set_exception, KeyError("k"))
        return await wait_for_it(fut)

    assert fw.run(main()) == "caught KeyError('k')"


# --- exceptions nobody retrieved ----------------------------------------------------------


def _collect_handler_calls(loop: Any) -> list[dict[str, Any]]:
    contexts: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda lp, context: contexts.append(context))
    return contexts


def test_an_exception_nobody_retrieved_is_reported_when_collected() -> None:
    loop = treadle.EventLoop()
    try:
        contexts = _collect_handler_calls(loop)
        fut = loop.create_future()
        error = ValueError("nobody looked")
        fut.set_exception(error)
        del fut
        gc.collect()
        assert len(contexts) == 1
        assert contexts[0]["exception"] is error
        assert "never retrieved" in contexts[0]["message"]
    finally:
        loop.close()


@pytest.mark.parametrize("retrieve", ["exception", "result", "cancel-after"])
def test_a_retrieved_exception_is_not_reported(retrieve: str) -> None:
    loop = treadle.EventLoop()
    try:
        contexts = _collect_handler_calls(loop)
        fut = loop.create_future()
        fut.set_exception(ValueError("looked at"))
        if retrieve == "exception":
            fut.exception()
        elif retrieve == "result":
            with pytest.raises(ValueError):
                fut.result()
        else:
            fut.cancel()
        del fut
        gc.collect()
        assert contexts == []
    finally:
        loop.close()


def test_an_awaited_failed_future_is_not_reported() -> None:
    contexts: list[dict[str, Any]] = []

    async def main() -> None:
        loop = treadle.get_running_loop()
        loop.set_exception_handler(lambda lp, context: contexts.append(context))
        fut = loop.create_future()
        loop.call_soon(fut.set_exception, ValueError("awaited"))
        with pytest.raises(ValueError):
            await fut
        del fut
        gc.collect()

    treadle.run(main())
    gc.collect()
    assert contexts == []


def test_a_result_nobody_retrieved_is_not_reported() -> None:
    loop = treadle.EventLoop()
    try:
        contexts = _collect_handler_calls(loop)
        fut = loop.create_future()
        fut.set_result(1)
        del fut
        gc.collect()
        assert contexts == []
    finally:
        loop.close()


# --- wrap_future --------------------------------------------------------------------------


def test_wrap_future_follows_a_concurrent_future(fw: Any) -> None:
    async def main() -> Any:
        source: concurrent.futures.Future[str] = concurrent.futures.Future()
        wrapped = fw.wrap_future(source)
        assert fw.isfuture(wrapped)
        thread = threading.Thread(target=source.set_result, args=("from a thread",))
        thread.start()
        try:
            return await wrapped
        finally:
            thread.join()

    assert fw.run(main()) == "from a thread"


def test_wrap_future_propagates_an_exception(fw: Any) -> None:
    async def main() -> None:
        source: concurrent.futures.Future[str] = concurrent.futures.Future()
        wrapped = fw.wrap_future(source)
        source.set_exception(OSError("thread failed"))
        await wrapped

    with pytest.raises(OSError, match="thread failed"):
        fw.run(main())


def test_cancelling_the_wrapper_cancels_the_concurrent_future(fw: Any) -> None:
    source: concurrent.futures.Future[str] = concurrent.futures.Future()

    async def main() -> None:
        wrapped = fw.wrap_future(source)
        await fw.cancel_and_wait(wrapped)

    fw.run(main())
    assert source.cancelled()


def test_wrap_future_returns_a_future_unchanged(fw: Any) -> None:
    async def main() -> None:
        fut = fw.get_running_loop().create_future()
        assert fw.wrap_future(fut) is fut
        fut.cancel()

    fw.run(main())


def test_wrap_future_rejects_other_objects(fw: Any) -> None:
    async def main() -> None:
        with pytest.raises((TypeError, AssertionError)):
            fw.wrap_future(42)

    fw.run(main())


def test_resuming_an_await_before_the_future_is_done_raises(fw: Any, fut: Any) -> None:
    # Only a Task may drive an await on a future; a hand-driven one must not get None.
    waiter = fut.__await__()
    assert next(waiter) is fut
    with pytest.raises(RuntimeError):
        waiter.send(None)
    fut.cancel()
