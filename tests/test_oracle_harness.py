"""Tests of the oracle harness itself (oracle_runners.py, the ``fw`` fixture).

Its guards must fail a test that deserves it, on treadle and on asyncio alike, and no
test may tell the frameworks apart by identity (``fw`` is a ``Framework``, never the
module, so ``fw is treadle`` would quietly be False: use ``fw.module is treadle``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

TESTS_DIR = Path(__file__).resolve().parent


def test_a_task_left_running_fails_the_run(fw: Any) -> None:
    async def forever() -> None:
        await fw.get_running_loop().create_future()

    async def main() -> None:
        fw.create_task(forever())

    with pytest.raises(AssertionError, match=r"left .*task"):
        fw.run_guarded(main())


def test_an_error_reported_to_the_loop_fails_the_run(fw: Any) -> None:
    def fail() -> None:
        raise ValueError("a callback failed")

    async def main() -> None:
        fw.get_running_loop().call_soon(fail)
        await fw.sleep(0)

    with pytest.raises(AssertionError, match="the loop reported"):
        fw.run_guarded(main())


def test_a_deadlock_on_treadle_fails_at_once_on_virtual_time(fw: Any) -> None:
    if fw.name == "asyncio":
        pytest.skip("asyncio has no virtual time: a deadlock there runs into the time limit")

    async def main() -> None:
        await fw.get_running_loop().create_future()

    with pytest.raises(AssertionError, match="deadlock"):
        fw.run_guarded(main())


def test_settle_returns_once_every_other_task_is_blocked(fw: Any) -> None:
    async def main() -> list[str]:
        log: list[str] = []
        gate = fw.Event()

        async def hop(steps: int) -> None:
            for _ in range(steps):
                await fw.sleep(0)
            log.append(f"hopped {steps}")
            await gate.wait()
            log.append("through the gate")

        tasks = [fw.create_task(hop(steps)) for steps in (5, 50)]
        await fw.settle()
        seen = list(log)
        gate.set()
        await fw.gather(*tasks)
        return seen

    assert fw.run_guarded(main()) == ["hopped 5", "hopped 50"]


def test_run_logged_hands_main_a_list_and_returns_it(fw: Any) -> None:
    async def main(log: list[str]) -> None:
        log.append("before")
        await fw.sleep(0)
        log.append("after")

    assert fw.run_logged(main) == ["before", "after"]


def test_cancel_and_wait_fails_unless_the_task_ends_cancelled(fw: Any) -> None:
    class RaisesButIsNotCancelled:
        def cancel(self) -> bool:
            return True

        def cancelled(self) -> bool:
            return False

        def __await__(self) -> Any:
            raise fw.CancelledError
            yield  # a generator: the error comes when it is awaited

    async def main() -> None:
        await fw.cancel_and_wait(RaisesButIsNotCancelled())

    with pytest.raises(AssertionError, match="did not end cancelled"):
        fw.run_guarded(main())


def test_no_test_compares_fw_with_a_module_by_identity() -> None:
    identity = re.compile(r"\bfw is (not )?(treadle|asyncio)\b")
    found = [
        f"{path.name}:{number}"
        for path in sorted(TESTS_DIR.glob("*.py"))
        if (path.name.startswith("test_") or path.name == "conftest.py")
        and path.name != Path(__file__).name
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if identity.search(line)
    ]
    assert found == [], "compare fw.module with the module instead"
