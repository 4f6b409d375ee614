"""What ``mypy --strict`` must infer for treadle's combinators (checked by test_typing.py).

Never run, only type-checked. ``assert_type`` fails the check when an inferred type
differs; a ``# type: ignore[code]`` marks an error mypy must report (``--strict``
includes ``--warn-unused-ignores``, so an error that goes missing fails the check too).
Where treadle mirrors asyncio, the asyncio lines show the types are the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any, assert_type

import treadle


async def number() -> int:
    return 1


async def text() -> str:
    return "a"


@treadle.coroutine
def old_style() -> Generator[Any, Any, bytes]:
    yield from treadle.awaiting(treadle.sleep(0))
    return b"x"


async def gather_types() -> None:
    assert_type(await treadle.gather(number()), tuple[int])
    assert_type(await treadle.gather(number(), text()), tuple[int, str])
    assert_type(await asyncio.gather(number(), text()), tuple[int, str])
    assert_type(
        await treadle.gather(number(), text(), number(), text(), number(), old_style()),
        tuple[int, str, int, str, int, bytes],
    )
    assert_type(
        await treadle.gather(number(), text(), return_exceptions=True),
        tuple[int | BaseException, str | BaseException],
    )
    assert_type(
        await asyncio.gather(number(), text(), return_exceptions=True),
        tuple[int | BaseException, str | BaseException],
    )
    many = [number() for _ in range(10)]
    assert_type(await treadle.gather(*many), list[int])
    assert_type(await asyncio.gather(*many), list[int])
    assert_type(await treadle.gather(*many, return_exceptions=True), list[int | BaseException])
    first, second = await treadle.gather(number(), text())
    assert_type(first, int)
    first + second  # type: ignore[operator]
    first + 1
    failed_or_count, _ = await treadle.gather(number(), text(), return_exceptions=True)
    failed_or_count + 1  # type: ignore[operator]
    await treadle.gather(number, text())  # type: ignore[call-overload]
    await asyncio.gather(number, text())  # type: ignore[call-overload]


async def other_combinator_types(task: treadle.Task[int], fut: treadle.Future[str]) -> None:
    assert_type(await treadle.wait_for(number(), 1), int)
    assert_type(await treadle.wait_for(old_style(), 1), bytes)
    assert_type(treadle.shield(text()), treadle.Future[str])
    assert_type(await treadle.shield(fut), str)
    done, pending = await treadle.wait([task])
    assert_type(done, set[treadle.Task[int]])
    assert_type(pending, set[treadle.Task[int]])
    mixed: list[treadle.Future[Any]] = [task, fut]
    assert_type((await treadle.wait(mixed))[0], set[treadle.Future[Any]])
    a_done, _ = await asyncio.wait([asyncio.ensure_future(number())])
    assert_type(a_done, set[asyncio.Task[int]])
    for next_done in treadle.as_completed([number(), number()]):
        assert_type(await next_done, int)
    async for finished in treadle.as_completed([task]):
        assert_type(finished, treadle.Future[int])
    async with treadle.timeout(1) as deadline:
        assert_type(deadline, treadle.Timeout)
    assert_type(treadle.create_task(number()), treadle.Task[int])
    assert_type(treadle.create_task(old_style()), treadle.Task[bytes])
    assert_type(treadle.ensure_future(number()), treadle.Future[int])
    treadle.create_task(number)  # type: ignore[arg-type]
    await treadle.wait_for(number(), "1")  # type: ignore[arg-type]


def run_types() -> None:
    assert_type(treadle.run(number()), int)
    assert_type(treadle.run(old_style()), bytes)
    assert_type(asyncio.run(number()), int)
    treadle.run(number)  # type: ignore[arg-type]
    assert_type(treadle.new_event_loop(), treadle.EventLoop)
