"""Which loop runs in this thread: each thread sees its own, whatever the others run.

``get_running_loop()`` answers the thread that last started or stopped a loop from a
shortcut (``treadle.core.running``); these tests have two threads take turns at it.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

import treadle


def _in_thread_with_a_loop(started: threading.Event, may_stop: threading.Event) -> Any:
    """Run a loop in a new thread until ``may_stop``; its result is what it saw."""
    seen: list[Any] = []

    async def main() -> None:
        seen.append(treadle.get_running_loop())
        started.set()
        while not may_stop.is_set():
            await treadle.to_thread(may_stop.wait)

    thread = threading.Thread(target=treadle.run, args=(main(),))
    thread.start()
    return thread, seen


def test_each_thread_sees_its_own_loop_while_another_starts_and_stops_one() -> None:
    async def main() -> list[bool]:
        mine = treadle.get_running_loop()
        started, may_stop = threading.Event(), threading.Event()
        thread, seen = _in_thread_with_a_loop(started, may_stop)
        await treadle.to_thread(started.wait)
        # The other thread started its loop last: this thread still sees its own.
        answers = [treadle.get_running_loop() is mine, seen[0] is not mine]
        may_stop.set()
        await treadle.to_thread(thread.join)
        # ... and after the other one stopped.
        answers.append(treadle.get_running_loop() is mine)
        return answers

    assert treadle.run(main()) == [True, True, True]
    with pytest.raises(RuntimeError, match="no running event loop"):
        treadle.get_running_loop()


def test_a_thread_without_a_loop_sees_none_after_the_last_loop_started_elsewhere() -> None:
    started, may_stop = threading.Event(), threading.Event()
    thread, seen = _in_thread_with_a_loop(started, may_stop)
    started.wait()
    try:
        with pytest.raises(RuntimeError, match="no running event loop"):
            treadle.get_running_loop()
    finally:
        may_stop.set()
        thread.join()
    assert isinstance(seen[0], treadle.EventLoop)
