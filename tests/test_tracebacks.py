"""Tracebacks show the user's code: every user frame of the await chain, in call order.

An exception raised several awaits deep (across tasks, and through ``yield from``
chains) reaches the caller of ``treadle.run()`` with a traceback that lists each user
frame, outermost first, and at most three of treadle's own frames.
"""

from __future__ import annotations

import os
import traceback
from typing import Any

import pytest

import treadle

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
