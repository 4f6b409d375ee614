"""The compiled build (docs/compiled.md): what must hold on both builds alike.

The whole suite runs on both (CI builds the wheel with TREADLE_COMPILE=1 and runs it);
these tests pin what mypyc once got wrong without the rest of the suite noticing:
subclasses, weak references, the running loop per thread, tracebacks and exception
context around suspension points, the virtual clock, debug mode and introspection.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import subprocess
import sys
import threading
import traceback
import weakref
from typing import Any

import pytest

import treadle
import treadle.core.loop
from treadle.introspect import capture_call_graph
from treadle.testing import VirtualClock


def test_compiled_says_whether_the_core_is_an_extension_module() -> None:
    core_file = treadle.core.loop.__file__
    assert isinstance(treadle.compiled, bool)
    assert treadle.compiled == (not core_file.endswith(".py")), core_file
    # CI sets this when it runs the suite on the compiled wheel (.ci/run).
    if os.environ.get("TREADLE_EXPECT_COMPILED") == "1":
        assert treadle.compiled, f"the suite runs on pure Python ({core_file})"


def test_treadle_aio_run_once_is_compiled_exactly_when_the_core_is() -> None:
    # setup.py's COMPILED_MODULES names it; a build that left it out would measure the
    # aio loop interpreted over the compiled core, its slowest combination.
    import treadle.aio.engine

    engine_file = treadle.aio.engine.__file__
    assert engine_file.endswith(".py") == (not treadle.compiled), engine_file


def test_the_running_loop_is_per_thread() -> None:
    found: list[object] = []

    def other_thread() -> None:
        found.append(treadle.core.running._get_running_loop())

    async def main() -> None:
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()

    treadle.run(main())
    assert found == [None]


def test_a_future_subclass_overrides_and_a_task_subclass_runs() -> None:
    class Doubling(treadle.Future[int]):
        def set_result(self, result: int) -> None:
            super().set_result(result * 2)

    class Named(treadle.Task[Any]):
        def get_name(self) -> str:
            return "named:" + super().get_name()

    async def child() -> int:
        future = Doubling()
        future.get_loop().call_soon(future.set_result, 21)
        return await future

    async def main() -> tuple[int, str, bool]:
        task = Named(child(), name="kid")
        return await task, task.get_name(), isinstance(task, treadle.Future)

    assert treadle.run(main()) == (42, "named:kid", True)


def test_futures_and_tasks_take_weak_references_that_die_with_them() -> None:
    # (A Handle takes them only in the pure build: docs/compiled.md.)
    refs: list[weakref.ReferenceType[Any]] = []

    async def child() -> None:
        pass

    async def main() -> None:
        loop = treadle.get_running_loop()
        task = loop.create_task(child())
        future = loop.create_future()
        refs.extend(weakref.ref(obj) for obj in (task, future))
        assert [ref() for ref in refs] == [task, future]
        await task

    treadle.run(main())
    gc.collect()
    assert [ref() for ref in refs] == [None, None]


def test_an_error_from_another_task_keeps_the_frames_where_it_was_raised() -> None:
    def fail() -> None:
        raise ValueError("boom")

    async def inner() -> None:
        fail()

    async def main() -> list[str]:
        try:
            await treadle.create_task(inner())
        except ValueError as exc:
            return [entry.name for entry in traceback.extract_tb(exc.__traceback__)]
        raise AssertionError("no error")

    names = treadle.run(main())
    assert names[0] == "main" and names[-2:] == ["inner", "fail"], names


def test_exception_context_and_exc_info_survive_a_suspension_in_an_except_block() -> None:
    # User code may wait inside an except block; the compiled core must neither leak
    # the handled exception into other tasks nor lose it from this one.
    seen: dict[str, Any] = {}

    async def other() -> None:
        seen["other"] = sys.exc_info()[1]

    async def main() -> None:
        lock = treadle.Lock()
        try:
            raise KeyError("handled")
        except KeyError as handled:
            async with lock:
                await treadle.create_task(other())
            await treadle.sleep(0)
            seen["after"] = sys.exc_info()[1] is handled
            try:
                raise ValueError("inner")
            except ValueError as inner:
                seen["context"] = inner.__context__ is handled
        seen["outside"] = sys.exc_info()[1]

    treadle.run(main())
    assert seen == {"other": None, "after": True, "context": True, "outside": None}


def test_cancelling_a_compiled_wait_raises_cancelled_error_without_warnings() -> None:
    # Queue.get waits in the wait queue, compiled in the compiled build: the cancel is
    # thrown through it into the interpreted seam (mypyc used a form 3.12 deprecates).
    async def main() -> tuple[bool, object]:
        queue: treadle.Queue[int] = treadle.Queue()
        getter = treadle.create_task(queue.get())
        await treadle.sleep(0)
        getter.cancel()
        try:
            await getter
        except treadle.CancelledError as cancelled:
            return getter.cancelled(), cancelled.__context__
        return False, None

    assert treadle.run(main()) == (True, None)


def test_the_virtual_clock_jumps_over_sleeps() -> None:
    clock = VirtualClock()

    async def main() -> float:
        loop = treadle.get_running_loop()
        start = loop.time()
        await treadle.sleep(3600)
        return loop.time() - start

    assert treadle.run(main(), clock=clock) == 3600


def test_debug_mode_times_each_callback(caplog: pytest.LogCaptureFixture) -> None:
    def marker() -> None:
        pass

    async def main() -> bool:
        loop = treadle.get_running_loop()
        loop.slow_callback_duration = 0.0  # type: ignore[attr-defined]  (every one is slow)
        loop.call_soon(marker)
        await treadle.sleep(0)
        return loop.get_debug()  # type: ignore[no-any-return,attr-defined]

    with caplog.at_level(logging.WARNING, logger="treadle"):
        assert treadle.run(main(), debug=True) is True
    assert any("marker" in record.getMessage() for record in caplog.records), caplog.text


def test_introspection_follows_a_task_waiting_in_the_compiled_wait_queue() -> None:
    async def main() -> list[str]:
        lock = treadle.Lock()
        await lock.acquire()

        async def want_the_lock() -> None:
            async with lock:
                pass

        waiter = treadle.create_task(want_the_lock(), name="waiter")
        await treadle.sleep(0)
        graph = capture_call_graph(waiter)
        lock.release()
        await waiter
        assert graph is not None
        assert waiter.get_parent() is treadle.current_task()
        return [entry.frame.f_code.co_name for entry in graph.call_stack]

    names = treadle.run(main())
    assert "want_the_lock" in names, names


IDLE_SERVER = """
import treadle

async def main():
    server = await treadle.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    print("listening", flush=True)
    async with server:
        await server.serve_forever()

try:
    treadle.run(main())
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_stops_an_idle_server() -> None:
    # Compiled code runs no bytecode between callbacks, where Python would run a signal
    # handler; the interrupt must still reach the loop blocked in the poller.
    child = subprocess.Popen(
        [sys.executable, "-c", IDLE_SERVER],
        stdout=subprocess.PIPE,
        text=True,
        # A child inherits an ignored SIGINT from a shell's background job; restore it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "listening\n"
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=20)
    finally:
        child.kill()
        child.wait()
    assert out == "interrupted\n"
