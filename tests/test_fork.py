"""fork(): a child process starts loops of its own and cannot touch its parent's.

Real forks, from inside a running loop: each child reports through its exit status,
which the parent checks, and always leaves with ``os._exit`` so that it never runs the
rest of the test session. POSIX only.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import socket
import threading
import traceback
from collections.abc import Callable

import pytest

import treadle

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork()"),
    pytest.mark.timeout(30),
    # Python 3.12+ warns that fork() in a process with threads may deadlock the child;
    # these children only run treadle code on their own loop and then exit.
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]

# Exit statuses a child uses to tell the parent how it went.
_OK = 0
_FAILED = 1
_REFUSED_AS_EXPECTED = 5


def _in_child(body: Callable[[], int]) -> None:
    """Run ``body`` in the forked child and leave with its status; never return."""
    status = _FAILED
    try:
        status = body()
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(status)


def _wait_for_child(pid: int) -> int:
    _, wait_status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(wait_status)


async def _answer_in_a_fresh_loop() -> int:
    await treadle.sleep(0.001)
    async with treadle.timeout(5):
        return await treadle.create_task(treadle.sleep(0, 42))


def test_a_child_forked_inside_a_running_loop_can_run_its_own() -> None:
    async def main() -> int:
        pid = os.fork()
        if pid == 0:
            _in_child(lambda: 0 if treadle.run(_answer_in_a_fresh_loop()) == 42 else _FAILED)
        return _wait_for_child(pid)

    assert treadle.run(main()) == _OK


def test_the_child_cannot_use_or_disturb_the_parents_loop() -> None:
    def child_checks(parent_loop: treadle.EventLoop, sock: socket.socket) -> int:
        # Registering a descriptor on the parent's epoll (shared across fork) would
        # change what the parent's loop waits for: refused, with a message saying why.
        with pytest.raises(RuntimeError, match=r"fork\(\).*new loop"):
            parent_loop.add_reader(sock, print)
        with pytest.raises(RuntimeError, match=r"fork\(\)"):
            parent_loop.run_until_complete(treadle.sleep(0))
        assert treadle.new_event_loop().run_until_complete(_answer_in_a_fresh_loop()) == 42
        return _REFUSED_AS_EXPECTED

    async def main() -> bytes:
        loop = treadle.get_running_loop()
        here, there = socket.socketpair()
        with here, there:
            pid = os.fork()
            if pid == 0:
                _in_child(lambda: child_checks(loop, here))
            assert _wait_for_child(pid) == _REFUSED_AS_EXPECTED
            # The parent's loop still watches descriptors and wakes for other threads.
            received = loop.create_future()
            loop.add_reader(here, lambda: received.set_result(here.recv(100)))
            threading.Thread(target=there.sendall, args=(b"still here",)).start()
            try:
                return await received  # type: ignore[no-any-return]
            finally:
                loop.remove_reader(here)

    assert treadle.run(main()) == b"still here"


def test_a_child_that_returns_into_the_parents_loop_is_stopped_and_told_why() -> None:
    parent_pid = os.getpid()
    ran_in_child: list[str] = []

    async def parents_other_work() -> None:
        await treadle.sleep(0)
        ran_in_child.append("other work")  # in the child this must not run

    async def main() -> str:
        other = treadle.create_task(parents_other_work())
        pid = os.fork()
        if pid == 0:
            return "child"
        await other
        return f"status {_wait_for_child(pid)}"

    try:
        result = treadle.run(main())
    except RuntimeError as exc:
        if os.getpid() == parent_pid:
            raise
        refused = "fork()" in str(exc) and "new loop" in str(exc) and not ran_in_child
        os._exit(_REFUSED_AS_EXPECTED if refused else _FAILED)
    except BaseException:
        if os.getpid() != parent_pid:
            os._exit(_FAILED)
        raise
    if os.getpid() != parent_pid:
        os._exit(_FAILED)  # treadle.run() returned in the child: it should have refused
    assert result == f"status {_REFUSED_AS_EXPECTED}"


def _job_with_a_loop_of_its_own(n: int) -> tuple[int, int]:
    return os.getpid(), treadle.run(_answer_in_a_fresh_loop()) + n


def test_run_in_executor_with_a_forking_process_pool() -> None:
    async def main() -> list[tuple[int, int]]:
        loop = treadle.get_running_loop()
        context = multiprocessing.get_context("fork")
        with concurrent.futures.ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
            async with treadle.timeout(20):
                jobs = [loop.run_in_executor(pool, _job_with_a_loop_of_its_own, n) for n in [1, 2]]
                return list(await treadle.gather(*jobs))

    results = treadle.run(main())
    assert sorted(answer for _, answer in results) == [43, 44]
    assert all(pid != os.getpid() for pid, _ in results)
