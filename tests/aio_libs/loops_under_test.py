"""The loops the ecosystem tests run on, and how a test body runs on one.

``asyncio`` is stock asyncio's loop, the oracle; ``treadle.aio`` is treadle's. A loop is
named ``module:attribute`` of its factory, as ``uvicorn --loop`` takes it.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
LoopFactory = Callable[[], asyncio.AbstractEventLoop]
Run = Callable[[Callable[[], Coroutine[Any, Any, T]]], T]

LOOP_FACTORY_NAMES = {
    "asyncio": "asyncio:new_event_loop",
    "treadle.aio": "treadle.aio:new_event_loop",
}


def import_loop_factory(name: str) -> LoopFactory:
    """The loop factory that ``module:attribute`` names."""
    module_name, _, attribute = name.partition(":")
    factory: LoopFactory = getattr(importlib.import_module(module_name), attribute)
    return factory


def run_on_fresh_loop(loop_factory: LoopFactory, main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main()`` on a fresh loop from ``loop_factory`` under ``asyncio.Runner``.

    Checks that ``main`` really ran on that loop, and fails on any call of the loop's
    exception handler: where an "Unclosed ..." report or an exception nobody retrieved
    lands. Collects garbage before checking, so that objects a library forgot to close
    report it inside the test.
    """
    handler_calls: list[dict[str, Any]] = []
    made: list[asyncio.AbstractEventLoop] = []

    def make() -> asyncio.AbstractEventLoop:
        loop = loop_factory()
        loop.set_exception_handler(lambda _loop, context: handler_calls.append(context))
        made.append(loop)
        return loop

    async def checked() -> T:
        running = asyncio.get_running_loop()
        assert made == [running], f"ran on {running!r}, not on the loop under test"
        return await main()

    with asyncio.Runner(loop_factory=make) as runner:
        result = runner.run(checked())
    gc.collect()
    assert not handler_calls, f"the loop's exception handler was called: {handler_calls}"
    return result
