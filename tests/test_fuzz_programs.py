"""Differential fuzzing: random small concurrent programs must run alike on treadle and asyncio.

The programs, the interpreter and the virtual-time asyncio loop are in
``fuzz_programs.py``. The normal suite runs a short profile; ``pytest
--hypothesis-profile=long tests/test_fuzz_programs.py`` runs thousands of programs.
Each difference the fuzzer found is also pinned here as an explicit example.
"""

from __future__ import annotations

from typing import Any

import pytest
from fuzz_programs import Op, Program, compare, programs, render, run_on, run_program
from hypothesis import given, settings

# The short run takes seconds; the long one (thousands of programs, then shrinking a
# failure) may take many minutes, and each program is bounded by its own budgets.
pytestmark = pytest.mark.timeout(120 if settings().max_examples <= 100 else 0)


# A program takes about a millisecond on each framework: even the short profile can
# afford a few hundred. The long profile also draws larger programs.
@settings(max_examples=max(settings().max_examples, 400))
@given(programs(large=settings().max_examples > 1000))
def test_treadle_runs_random_programs_as_asyncio_does(program: Program) -> None:
    difference = compare(program)
    assert difference is None, difference


def test_a_program_is_rendered_with_numbered_ops() -> None:
    program = Program(
        tasks=(
            (Op("sleep", 0.5, number=1), Op("timeout", (1, "no"), ((Op("get", number=3),),), 2)),
        ),
        queue_maxsize=1,
        semaphore_value=2,
    )
    text = render(program)
    assert "task t0:" in text
    assert "[1] sleep(0.5)" in text
    assert "[2] async with timeout(1):" in text
    assert "        [3] get" in text


def test_a_hang_is_reported_not_waited_for() -> None:
    # Both tasks wait for an event nobody sets: the time limit reports them, on both.
    program = Program(
        tasks=((Op("event_wait", number=1),), (Op("event_wait", number=2),)),
        queue_maxsize=0,
        semaphore_value=1,
    )
    run = run_program(program, "treadle")
    assert run.trace[0] == (100.0, "main", "time limit", "still running: ['t0', 't1']")
    assert run.final_states == {
        "t0": "cancelled: CancelledError('')",
        "t1": "cancelled: CancelledError('')",
    }
    assert compare(program) is None


# --- the differences the fuzzer found, pinned on both frameworks ------------------------


@pytest.fixture(params=["asyncio", "treadle"])
def fw_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_a_cancelled_gather_raises_the_last_childs_cancellation(fw_name: str) -> None:
    # asyncio raises the CancelledError of the last child in argument order, whichever
    # child finished last; treadle raised a bare CancelledError() from the last to finish.
    async def main(fw: Any) -> Any:
        async def cancels_itself() -> None:
            fw.current_task().cancel("stop")  # returns, so the task ends cancelled

        async def parent() -> Any:
            try:
                await fw.gather(fw.sleep(10), cancels_itself(), return_exceptions=True)
            except fw.CancelledError as exc:
                return exc.args
            return "not cancelled"

        task = fw.create_task(parent())
        await fw.sleep(1)
        task.cancel()
        return await task

    assert run_on(fw_name, main) == ("stop",)


def test_a_cancelled_gather_whose_last_child_then_failed_keeps_the_cancel_message(
    fw_name: str,
) -> None:
    # The gather is cancelled with a message while its last child runs; the child then
    # fails instead. asyncio raises CancelledError with that message; treadle raised a
    # bare CancelledError().
    async def main(fw: Any) -> Any:
        async def cancels_the_parent_then_fails() -> None:
            parent.cancel("stop")
            raise ValueError("failed")

        async def gathers() -> Any:
            try:
                await fw.gather(cancels_the_parent_then_fails(), return_exceptions=True)
            except fw.CancelledError as exc:
                return exc.args
            return "not cancelled"

        parent = fw.create_task(gathers())
        return await parent

    assert run_on(fw_name, main) == ("stop",)


def test_a_cancelled_gather_whose_last_child_is_a_gather_raises_a_bare_cancellation(
    fw_name: str,
) -> None:
    # As above, but the last child is itself a gather: cancelling it cancels its
    # children and records no message of its own, so asyncio raises CancelledError()
    # with no message; treadle raised CancelledError("stop").
    async def main(fw: Any) -> Any:
        async def cancels_the_parent_then_fails() -> None:
            parent.cancel("stop")
            raise ValueError("failed")

        async def gathers() -> Any:
            try:
                await fw.gather(fw.gather(cancels_the_parent_then_fails()),
                                return_exceptions=True)
            except fw.CancelledError as exc:
                return exc.args
            return "not cancelled"

        parent = fw.create_task(gathers())
        return await parent

    assert run_on(fw_name, main) == ()
