"""``run()`` and ``new_event_loop()``: the entry point, its checks, its clean-up, Ctrl-C.

Tests that take ``fw`` run ``treadle.run`` and ``asyncio.run`` (the oracle).
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import textwrap
import threading
from typing import Any

import pytest
from processes import interrupt, reaped, spawn

import treadle


def test_run_returns_the_result(fw: Any) -> None:
    async def main(x: int) -> int:
        await fw.sleep(0)
        return x + 1

    assert fw.run(main(41)) == 42


def test_run_raises_the_exception(fw: Any) -> None:
    async def main() -> None:
        raise ArithmeticError("from main")

    with pytest.raises(ArithmeticError, match="from main"):
        fw.run(main())


def test_get_running_loop_inside_and_outside(fw: Any) -> None:
    loops: list[Any] = []

    async def main() -> None:
        loop = fw.get_running_loop()
        loops.append(loop)
        assert loop.is_running()
        assert fw.get_running_loop() is loop

    fw.run(main())
    with pytest.raises(RuntimeError, match="no running event loop"):
        fw.get_running_loop()
    assert loops[0].is_closed()


def test_each_run_gets_a_fresh_loop(fw: Any) -> None:
    async def main() -> Any:
        return fw.get_running_loop()

    first = fw.run(main())
    second = fw.run(main())
    assert first is not second


def test_run_inside_a_running_loop_raises(fw: Any) -> None:
    async def inner() -> None:
        pass

    async def main() -> None:
        coro = inner()
        try:
            with pytest.raises(RuntimeError, match="running event loop"):
                fw.run(coro)
        finally:
            coro.close()

    fw.run(main())


@pytest.mark.parametrize("main", [lambda: None, 42, None], ids=["function", "int", "None"])
def test_run_with_a_non_coroutine_raises_value_error(fw: Any, main: Any) -> None:
    with pytest.raises(ValueError, match="coroutine"):
        fw.run(main)


def test_run_with_the_function_instead_of_a_call_says_so() -> None:
    async def main() -> None:
        pass

    with pytest.raises(ValueError, match=r"run\(main\(\)\)"):
        treadle.run(main)  # type: ignore[arg-type]


async def leftover(fw: Any, log: list[str], name: str) -> None:
    """A task still waiting when main returns: logs its cancellation, then its finally
    block, which awaits first (a cancelled task may still await while it cleans up)."""
    try:
        await fw.get_running_loop().create_future()
    except fw.CancelledError:
        log.append(f"{name} cancelled")
        raise
    finally:
        await fw.sleep(0)
        log.append(f"{name} finally")


def start_leftover(fw: Any, log: list[str], name: str, keep: list[Any]) -> None:
    """Start ``leftover`` as a task of the running loop and append the task to ``keep``.

    asyncio holds only weak references to tasks: a leftover waiting on a future nobody
    else holds is garbage from then on, and a collection before run() cancels it destroys
    it pending ("Task was destroyed but it is pending"), so the oracle would pass or fail
    by when the collector happened to run. The caller keeps ``keep`` past run(). (treadle's
    loop holds its tasks itself: test_tasks.py checks that without such a list.)
    """
    keep.append(fw.get_running_loop().create_task(leftover(fw, log, name)))


def test_run_cancels_leftover_tasks_and_runs_their_finally_blocks(fw: Any) -> None:
    log: list[str] = []
    tasks: list[Any] = []

    async def main() -> str:
        start_leftover(fw, log, "a", tasks)
        start_leftover(fw, log, "b", tasks)
        await fw.sleep(0)
        gc.collect()  # the moment that would destroy an unreferenced asyncio task
        return "main done"

    assert fw.run(main()) == "main done"
    assert sorted(log) == ["a cancelled", "a finally", "b cancelled", "b finally"]


def test_a_leftover_task_that_fails_on_cancel_is_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def fails_when_cancelled() -> None:
        try:
            await treadle.get_running_loop().create_future()
        finally:
            raise OSError("failed while cancelled")

    async def main() -> None:
        treadle.create_task(fails_when_cancelled())
        await treadle.sleep(0)

    treadle.run(main())
    errors = [r for r in caplog.records if r.name == "treadle" and r.exc_info]
    errors = [r for r in errors if "failed while cancelled" in str(r.exc_info[1])]  # type: ignore[index]
    assert len(errors) == 1
    assert errors[0].exc_info is not None
    assert isinstance(errors[0].exc_info[1], OSError)


def test_run_closes_async_generators(fw: Any) -> None:
    log: list[str] = []
    keep: list[Any] = []

    async def agen() -> Any:
        try:
            log.append("started")
            yield 1
            yield 2
        finally:
            log.append("agen finally")

    async def main() -> None:
        gen = agen()
        keep.append(gen)  # still referenced, so only run()'s shutdown can close it
        assert await gen.__anext__() == 1

    fw.run(main())
    assert log == ["started", "agen finally"]


def test_run_shuts_down_the_default_executor(fw: Any) -> None:
    workers: list[threading.Thread] = []

    async def main() -> None:
        loop = fw.get_running_loop()
        await loop.run_in_executor(None, lambda: workers.append(threading.current_thread()))
        assert workers[0].is_alive()

    fw.run(main())
    # shutdown_default_executor() joined the pool's threads before run() returned.
    assert not workers[0].is_alive()


def test_run_closes_the_loop(fw: Any) -> None:
    async def main() -> Any:
        return fw.get_running_loop()

    loop = fw.run(main())
    assert loop.is_closed()
    assert not loop.is_running()


def test_run_closes_the_loop_after_an_exception(fw: Any) -> None:
    loops: list[Any] = []

    async def main() -> None:
        loops.append(fw.get_running_loop())
        raise ValueError

    with pytest.raises(ValueError):
        fw.run(main())
    assert loops[0].is_closed()


def test_run_debug(fw: Any) -> None:
    async def main() -> bool:
        return bool(fw.get_running_loop().get_debug())

    assert fw.run(main(), debug=True) is True
    assert fw.run(main(), debug=False) is False


def test_treadle_run_is_not_in_debug_mode_by_default() -> None:
    async def main() -> bool:
        return treadle.get_running_loop().get_debug()

    assert treadle.run(main()) is False


def test_a_cancelled_main_raises_cancelled_error(fw: Any) -> None:
    async def main() -> None:
        fw.current_task().cancel()
        await fw.sleep(0)

    with pytest.raises(fw.CancelledError):
        fw.run(main())


def test_run_works_in_a_thread_other_than_main(fw: Any) -> None:
    results: list[Any] = []

    async def main() -> str:
        await fw.sleep(0)
        return threading.current_thread().name

    thread = threading.Thread(target=lambda: results.append(fw.run(main())), name="worker")
    thread.start()
    thread.join()
    assert results == ["worker"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_run_restores_the_sigint_handler(fw: Any) -> None:
    before = signal.getsignal(signal.SIGINT)
    if before is not signal.default_int_handler:
        pytest.skip("something else owns SIGINT in this process")
    inside: list[Any] = []

    async def main() -> None:
        inside.append(signal.getsignal(signal.SIGINT))

    fw.run(main())
    assert inside[0] is not signal.default_int_handler  # run() handles Ctrl-C itself
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_run_keeps_a_custom_sigint_handler(fw: Any) -> None:
    def custom(signum: int, frame: Any) -> None:
        pass

    previous = signal.signal(signal.SIGINT, custom)
    try:
        inside: list[Any] = []

        async def main() -> None:
            inside.append(signal.getsignal(signal.SIGINT))

        fw.run(main())
        assert inside == [custom]
        assert signal.getsignal(signal.SIGINT) is custom
    finally:
        signal.signal(signal.SIGINT, previous)


# --- regressions: bugs found by these tests, now fixed -------------------------------------


def test_system_exit_from_main_propagates_past_leftover_tasks(fw: Any) -> None:
    log: list[str] = []
    tasks: list[Any] = []

    async def main() -> None:
        start_leftover(fw, log, "leftover", tasks)
        await fw.sleep(0)
        gc.collect()  # the moment that would destroy an unreferenced asyncio task
        raise SystemExit(3)

    with pytest.raises(SystemExit) as info:
        fw.run(main())
    assert info.value.code == 3
    assert log == ["leftover cancelled", "leftover finally"]


def test_system_exit_from_main_is_not_reported_as_never_retrieved(
    fw: Any, caplog: pytest.LogCaptureFixture
) -> None:

    async def main() -> None:
        raise SystemExit(4)

    gc.collect()  # garbage from earlier tests must not be blamed on this one
    with pytest.raises(SystemExit):
        fw.run(main())
    gc.collect()
    reports = [r.getMessage() for r in caplog.records if "SystemExit(4)" in r.getMessage()]
    assert reports == []


# --- Ctrl-C -------------------------------------------------------------------------------

_CTRL_C_SCRIPT = textwrap.dedent(
    """
    import sys
    import {fw} as fw

    async def main():
        loop = fw.get_running_loop()
        try:
            print("ready", flush=True)
            await loop.create_future()
        finally:
            print("finally ran", flush=True)

    fw.run(main())
    print("run returned", flush=True)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.timeout(30)
def test_ctrl_c_runs_finally_blocks_then_raises_keyboard_interrupt(fw: Any) -> None:
    script = _CTRL_C_SCRIPT.format(fw=fw.__name__)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with reaped(spawn([sys.executable, "-c", script], env=env)) as process:
        assert process.stdout is not None
        ready = process.stdout.readline()
        assert ready == "ready\n"
        stdout, stderr = interrupt(process, timeout=20)
    assert "finally ran" in stdout
    assert "run returned" not in stdout
    assert process.returncode != 0
    assert "KeyboardInterrupt" in stderr


def test_new_event_loop_gives_a_fresh_loop_that_is_not_running(fw: Any) -> None:
    async def main() -> Any:
        await fw.sleep(0)
        return fw.get_running_loop()

    first = fw.new_event_loop()
    second = fw.new_event_loop()
    try:
        assert first is not second
        assert not first.is_running() and not first.is_closed()
        assert first.run_until_complete(main()) is first
        assert not first.is_running()
        assert second.run_until_complete(main()) is second
    finally:
        first.close()
        second.close()
    assert first.is_closed()


def test_new_event_loop_is_exported() -> None:
    assert "new_event_loop" in treadle.__all__
    assert isinstance(treadle.new_event_loop.__doc__, str)
