"""What ``mypy --strict`` must infer in ``yield from`` coroutines (checked by test_typing.py).

Never run, only type-checked; see combinators_typed.py for the conventions.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, assert_type

import treadle


@treadle.coroutine
def consume(queue: treadle.Queue[int], fut: treadle.Future[str]) -> Generator[Any, Any, str]:
    item = yield from treadle.awaiting(queue.get())
    assert_type(item, int)
    label = yield from fut  # a Future needs no helper
    assert_type(label, str)
    slept = yield from treadle.awaiting(treadle.sleep(0.1, "done"))
    assert_type(slept, str)
    inner = yield from treadle.awaiting(produce())
    assert_type(inner, bytes)
    yield from treadle.sleep(0)  # type: ignore[misc]
    return label * item


@treadle.coroutine
def produce() -> Generator[Any, Any, bytes]:
    yield from treadle.awaiting(treadle.sleep(0))
    return b""


async def native(queue: treadle.Queue[int], fut: treadle.Future[str]) -> None:
    assert_type(await consume(queue, fut), str)
    assert_type(treadle.create_task(consume(queue, fut)), treadle.Task[str])
    got = await consume(queue, fut)
    got + 1  # type: ignore[operator]
