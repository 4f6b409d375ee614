"""Tracebacks show the user's code: every user frame of the await chain, in call order.

An exception raised several awaits deep (across tasks, and through ``yield from``
chains) reaches the caller of ``treadle.run()`` with a traceback that lists each user
frame, outermost first, and at most three of treadle's own frames.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import functools
import os
import socket
import ssl
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from oracle_runners import ASYNCIO, TREADLE

import treadle
from treadle import CancelledError

TREADLE_DIR = os.path.dirname(os.path.abspath(treadle.__file__))
THIS_FILE = os.path.abspath(__file__)


class DeepError(Exception):
    pass


def frames_of(exc: BaseException) -> list[traceback.FrameSummary]:
    return list(traceback.extract_tb(exc.__traceback__))


def user_frames(exc: BaseException) -> list[str]:
    """The names of this file's frames in the traceback, outermost first."""
    return [f.name for f in frames_of(exc) if os.path.abspath(f.filename) == THIS_FILE]


def treadle_frames(exc: BaseException) -> list[str]:
    return [
        f"{os.path.basename(f.filename)}:{f.name}"
        for f in frames_of(exc)
        if os.path.abspath(f.filename).startswith(TREADLE_DIR + os.sep)
    ]


def run_and_catch(main: Any) -> DeepError:
    with pytest.raises(DeepError) as info:
        treadle.run(main)
    return info.value


def check(exc: DeepError, expected: list[str]) -> None:
    names = user_frames(exc)
    assert names[0] == "run_and_catch"
    assert names[1:] == expected, traceback.format_exception(exc)
    assert len(treadle_frames(exc)) <= 3, treadle_frames(exc)
    # The innermost frame is where the error was raised.
    assert frames_of(exc)[-1].name == expected[-1]


# --- native coroutines ------------------------------------------------------------------


async def level3() -> None:
    await treadle.sleep(0)
    raise DeepError("three levels down")


async def level2() -> None:
    await treadle.sleep(0)
    await level3()


async def level1() -> None:
    await level2()


async def nested_main() -> None:
    await treadle.sleep(0)
    await level1()


def test_an_exception_several_awaits_deep() -> None:
    exc = run_and_catch(nested_main())
    check(exc, ["nested_main", "level1", "level2", "level3"])


async def child_task_body() -> None:
    await treadle.sleep(0)
    await level2()


async def grandchild_task_body() -> None:
    await treadle.sleep(0)
    raise DeepError("in the grandchild task")


async def child_awaits_grandchild() -> None:
    await treadle.create_task(grandchild_task_body())


async def main_awaits_task() -> None:
    await treadle.create_task(child_task_body())


async def main_awaits_task_awaiting_task() -> None:
    task = treadle.create_task(child_awaits_grandchild())
    await treadle.sleep(0)
    await task


def test_a_task_awaiting_another_task() -> None:
    exc = run_and_catch(main_awaits_task())
    check(exc, ["main_awaits_task", "child_task_body", "level2", "level3"])


def test_a_chain_of_tasks() -> None:
    exc = run_and_catch(main_awaits_task_awaiting_task())
    check(
        exc,
        ["main_awaits_task_awaiting_task", "child_awaits_grandchild", "grandchild_task_body"],
    )


# --- yield from chains ----------------------------------------------------------------------


def gen_level3() -> Any:
    yield
    raise DeepError("at the bottom of a yield from chain")


def gen_level2() -> Any:
    fut = treadle.get_running_loop().create_future()
    treadle.get_running_loop().call_soon(fut.set_result, None)
    yield from fut
    yield from gen_level3()


@treadle.coroutine
def gen_level1() -> Any:
    yield from gen_level2()


def gen_main() -> Any:
    yield
    yield from gen_level1()


async def async_main_awaits_generators() -> None:
    await gen_level1()


def gen_main_awaits_task() -> Any:
    yield from treadle.create_task(gen_level2())


def test_a_yield_from_chain() -> None:
    exc = run_and_catch(gen_main())
    check(exc, ["gen_main", "gen_level1", "gen_level2", "gen_level3"])


def test_async_code_awaiting_a_generator_chain() -> None:
    exc = run_and_catch(async_main_awaits_generators())
    check(exc, ["async_main_awaits_generators", "gen_level1", "gen_level2", "gen_level3"])


def test_a_generator_awaiting_a_generator_task() -> None:
    exc = run_and_catch(gen_main_awaits_task())
    check(exc, ["gen_main_awaits_task", "gen_level2", "gen_level3"])


# --- the exception object itself ------------------------------------------------------------


def test_the_exception_is_the_one_raised() -> None:
    raised: list[BaseException] = []

    async def main() -> None:
        error = DeepError("this one")
        raised.append(error)
        await treadle.sleep(0)
        raise error

    exc = run_and_catch(main())
    assert exc is raised[0]
    assert str(exc) == "this one"


def test_an_awaited_task_error_caught_in_user_code_has_the_full_chain() -> None:
    caught: list[BaseException] = []

    async def main() -> None:
        try:
            await treadle.create_task(child_task_body())
        except DeepError as exc:
            caught.append(exc)

    treadle.run(main())
    names = user_frames(caught[0])
    assert names == ["main", "child_task_body", "level2", "level3"]


# --- regressions: bugs found by these tests, now fixed -------------------------------------


def test_run_keeps_the_explicit_cause(fw: Any) -> None:
    cause = KeyError("the cause")

    async def main() -> None:
        raise ValueError("the effect") from cause

    with pytest.raises(ValueError) as info:
        fw.run(main())
    assert info.value.__cause__ is cause


def test_run_keeps_the_implicit_context(fw: Any) -> None:

    async def main() -> None:
        try:
            raise KeyError("first")
        except KeyError:
            raise ValueError("second")  # noqa: B904

    with pytest.raises(ValueError) as info:
        fw.run(main())
    assert isinstance(info.value.__context__, KeyError)
    assert info.value.__suppress_context__ is False
    assert "During handling of the above exception" in "".join(
        traceback.format_exception(info.value)
    )


def test_retrieving_an_exception_twice_does_not_grow_its_traceback(fw: Any, new_loop: Any) -> None:
    loop = new_loop()
    fut = loop.create_future()
    fut.set_exception(DeepError("once"))

    def first_retriever() -> None:
        with pytest.raises(DeepError):
            fut.result()

    def second_retriever() -> list[str]:
        try:
            fut.result()
        except DeepError as exc:
            return [f.name for f in traceback.extract_tb(exc.__traceback__)]
        return []

    first_retriever()
    names = second_retriever()
    assert "first_retriever" not in names
    assert names[0] == "second_retriever"


def test_a_task_awaited_twice_shows_only_the_second_awaiters_chain(
    request: pytest.FixtureRequest,
) -> None:

    async def first_awaiter(task: treadle.Task[None]) -> None:
        with pytest.raises(DeepError):
            await task

    async def main_awaits_a_failed_task_twice() -> None:
        task = treadle.create_task(grandchild_task_body())
        await treadle.create_task(first_awaiter(task))
        await task

    exc = run_and_catch(main_awaits_a_failed_task_twice())
    check(exc, ["main_awaits_a_failed_task_twice", "grandchild_task_body"])


# --- no stray context: a wait never happens inside an ``except`` block ----------------------

SRC_DIR = os.path.dirname(os.path.abspath(treadle.__file__))


def awaits_inside_except_blocks(source: str) -> list[int]:
    """The lines of ``source`` where an except block suspends (await, async for/with, yield)."""
    suspending = (ast.Await, ast.AsyncFor, ast.AsyncWith, ast.Yield, ast.YieldFrom)
    lines = []
    for handler in ast.walk(ast.parse(source)):
        if isinstance(handler, ast.ExceptHandler):
            for statement in handler.body:
                lines += [n.lineno for n in ast.walk(statement) if isinstance(n, suspending)]
    return lines


def test_the_scanner_finds_an_await_inside_an_except_block() -> None:
    source = "async def f():\n    try:\n        pass\n    except OSError:\n        await g()\n"
    assert awaits_inside_except_blocks(source) == [5]
    assert awaits_inside_except_blocks(source.replace("await g()", "g()")) == []


def test_no_code_of_treadle_suspends_inside_an_except_block() -> None:
    # Anything raised while suspended there (a timeout, a cancellation) would carry the
    # handled exception as its __context__; mypyc cannot compile it either.
    found = []
    for directory, _, files in os.walk(SRC_DIR):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                with open(path, encoding="utf-8") as f:
                    lines = awaits_inside_except_blocks(f.read())
                found += [f"{os.path.relpath(path, SRC_DIR)}:{line}" for line in lines]
    assert found == []


def chain_of(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception chained to it, each once."""
    found: list[BaseException] = []
    pending = [exc]
    while pending:
        current = pending.pop()
        if any(current is seen for seen in found):
            continue
        found.append(current)
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]
    return found


async def cancelled_error_during(fw: Any, read: Callable[[], Awaitable[Any]]) -> BaseException:
    """The CancelledError a read sees when its task is cancelled while it waits."""
    seen: list[BaseException] = []

    async def reading() -> None:
        try:
            await read()
        except fw.CancelledError as exc:
            seen.append(exc)
            raise

    task = fw.create_task(reading())
    await fw.settle()
    task.cancel()
    with pytest.raises(fw.CancelledError):
        await task
    return seen[0]


async def timeout_error_during(fw: Any, read: Callable[[], Awaitable[Any]]) -> BaseException:
    with pytest.raises(TimeoutError) as info:
        async with fw.timeout(0):
            await read()
    return info.value


def check_no_stray_context(cancelled: BaseException, timed_out: BaseException) -> None:
    assert cancelled.__context__ is None, repr(cancelled.__context__)
    assert isinstance(timed_out.__cause__, CancelledError | asyncio.CancelledError)
    assert timed_out.__cause__.__context__ is None, repr(timed_out.__cause__.__context__)
    for exc in chain_of(timed_out):
        assert not isinstance(exc, BlockingIOError | ssl.SSLError), chain_of(timed_out)


def test_loop_sock_recv_timeout_and_cancellation_have_no_context(fw: Any) -> None:
    async def main() -> None:
        a, b = socket.socketpair()
        with a, b:
            b.setblocking(False)
            loop = fw.get_running_loop()
            read = functools.partial(loop.sock_recv, b, 10)
            check_no_stray_context(
                await cancelled_error_during(fw, read), await timeout_error_during(fw, read)
            )

    fw.run(main())


@pytest.mark.parametrize("method", ["read", "readexactly", "readuntil"])
def test_stream_read_timeout_and_cancellation_have_no_context(fw: Any, method: str) -> None:
    args = {"read": (10,), "readexactly": (10,), "readuntil": (b"\n",)}[method]

    async def main() -> None:
        a, b = socket.socketpair()
        with b:
            reader, writer = await fw.open_connection(sock=a)
            read = functools.partial(getattr(reader, method), *args)
            # Each on a fresh connection: the first read of one tries recv() first.
            cancelled = await cancelled_error_during(fw, read)
            writer.close()
            await writer.wait_closed()
        a, b = socket.socketpair()
        with b:
            reader, writer = await fw.open_connection(sock=a)
            read = functools.partial(getattr(reader, method), *args)
            check_no_stray_context(cancelled, await timeout_error_during(fw, read))
            writer.close()
            await writer.wait_closed()

    fw.run(main())


def test_tls_read_timeout_and_cancellation_have_no_context(
    fw: Any, tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_context, client_context = tls_contexts

    async def silent(reader: Any, writer: Any) -> None:
        await reader.read()  # until the client closes
        writer.close()

    async def connect(port: int) -> Any:
        return await fw.open_connection(
            "127.0.0.1", port, ssl=client_context, server_hostname="localhost"
        )

    async def main() -> None:
        server = await fw.start_server(silent, "127.0.0.1", 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await connect(port)
        cancelled = await cancelled_error_during(fw, functools.partial(reader.read, 10))
        writer.close()
        await writer.wait_closed()
        reader, writer = await connect(port)
        timed_out = await timeout_error_during(fw, functools.partial(reader.read, 10))
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        check_no_stray_context(cancelled, timed_out)

    fw.run(main())


def test_an_error_raised_after_handling_an_awaited_failure_has_no_context(fw: Any) -> None:
    # Found with the above: a task stepped its coroutine from inside an except block,
    # so an exception raised later in the same step took the handled one as context.
    async def main() -> BaseException | None:
        loop = fw.get_running_loop()
        fut = loop.create_future()
        loop.call_soon(fut.set_exception, KeyError("handled"))
        with contextlib.suppress(KeyError):
            await fut
        try:
            raise ValueError("unrelated")
        except ValueError as exc:
            return exc.__context__

    assert fw.run(main()) is None


# --- as short as asyncio's: the same program, its frames counted on both ------------------

FRAMEWORK_DIRS = {
    "treadle": TREADLE_DIR,
    "asyncio": os.path.dirname(os.path.abspath(asyncio.__file__)),
}


def outcome(exc: BaseException, framework: str) -> tuple[int, list[list[str]]]:
    """How many of the framework's frames the whole chain shows, and each exception's
    user frames (outermost first)."""
    framework_dir = FRAMEWORK_DIRS[framework] + os.sep
    count = 0
    users = []
    for link in chain_of(exc):
        frames = frames_of(link)
        count += sum(os.path.abspath(f.filename).startswith(framework_dir) for f in frames)
        users.append([f.name for f in frames if os.path.abspath(f.filename) == THIS_FILE])
    return count, users


async def read_forever(reader: Any) -> bytes:
    data: bytes = await reader.read(10)
    return data


async def inner_failure(fw: Any) -> None:
    await fw.sleep(0)
    raise DeepError("inner")


async def raise_from_across_tasks(fw: Any) -> None:
    await fw.sleep(0)
    try:
        await fw.create_task(inner_failure(fw))
    except DeepError as exc:
        raise ValueError("outer") from exc


async def raise_while_handling_across_tasks(fw: Any) -> None:
    await fw.sleep(0)
    try:
        await fw.create_task(inner_failure(fw))
    except DeepError:
        raise ValueError("outer")  # noqa: B904 (the implicit chaining is the point)


async def frames_program(fw: Any, case: str) -> None:
    a, b = socket.socketpair()
    with b:
        reader, writer = await fw.open_connection(sock=a)
        try:
            if case == "timeout":
                async with fw.timeout(0):
                    await read_forever(reader)
            elif case == "cancel":
                task = fw.create_task(read_forever(reader))
                await fw.settle()
                task.cancel()
                await task
            elif case == "raise from":
                await fw.create_task(raise_from_across_tasks(fw))
            else:
                await fw.create_task(raise_while_handling_across_tasks(fw))
        finally:
            writer.close()
            await writer.wait_closed()


def run_frames_program(fw: Any, case: str) -> BaseException:
    with pytest.raises(BaseException) as info:
        fw.run(frames_program(fw, case))
    return info.value


@pytest.mark.parametrize("case", ["timeout", "cancel", "raise from", "raise while handling"])
def test_tracebacks_are_as_short_as_asyncios(case: str) -> None:
    ours, our_users = outcome(run_frames_program(TREADLE, case), "treadle")
    theirs, their_users = outcome(run_frames_program(ASYNCIO, case), "asyncio")
    assert our_users == their_users  # trimming loses none of the user's frames
    assert ours <= theirs, (ours, theirs)


@pytest.mark.parametrize("case", ["timeout", "cancel", "raise from", "raise while handling"])
def test_the_treadle_frames_left_show_meaningful_lines(case: str) -> None:
    exc = run_frames_program(TREADLE, case)
    for link in chain_of(exc):
        for frame in frames_of(link):
            if os.path.abspath(frame.filename).startswith(TREADLE_DIR + os.sep):
                assert frame.line, frame
                assert "noqa" not in frame.line, frame


def test_debug_mode_keeps_treadles_frames_in_chained_exceptions() -> None:
    with pytest.raises(ValueError) as info:
        treadle.run(raise_from_across_tasks(treadle), debug=True)
    cause = info.value.__cause__
    assert cause is not None
    names = [f"{os.path.basename(f.filename)}:{f.name}" for f in frames_of(cause)]
    assert "tasks.py:_step" in names, names


async def loops_back_on_itself() -> None:
    try:
        await treadle.create_task(inner_failure(treadle))
    except DeepError as exc:
        first = exc
    second = ValueError("its context loops back")
    second.__context__ = first
    first.__context__ = second
    raise second


def test_a_chain_that_loops_back_is_trimmed_once_and_keeps_the_user_frames() -> None:
    with pytest.raises(ValueError) as info:
        treadle.run(loops_back_on_itself())
    first = info.value.__context__
    assert first is not None and first.__context__ is info.value
    assert user_frames(first) == ["loops_back_on_itself", "inner_failure"]
    assert treadle_frames(first) == []
