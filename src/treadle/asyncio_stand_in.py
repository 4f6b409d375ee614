"""What asyncio sees as its running loop while treadle's native loop runs: a clear refusal.

Inside ``treadle.run()`` asyncio code (``asyncio.sleep(1)``, an aiohttp or httpx call)
cannot run: treadle's native loop makes treadle Futures, not asyncio's. Left alone,
asyncio would say "no running event loop", which sends people looking for the wrong
bug. So while a native loop runs, and asyncio has been imported, asyncio's running-loop
record holds ``STAND_IN``, whose every use raises one line naming the way out:
``treadle.aio.run()``. Core loop layer: imports nothing from treadle, and never imports
asyncio (it only looks for it in ``sys.modules``).
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

__all__ = ["NOT_IMPORTED", "STAND_IN", "restore_asyncio_running_loop", "swap_asyncio_running_loop"]

ASYNCIO_INSIDE_NATIVE_LOOP = (
    "asyncio code was called inside treadle.run(), whose native loop asyncio cannot use; "
    "run the program with treadle.aio.run(main()) instead, which runs asyncio and treadle "
    "code alike"
)


class _AsyncioStandIn:
    """Registered as asyncio's running loop; any use of it raises ``RuntimeError``.

    Hashing raises too: ``asyncio.current_task()`` and ``asyncio.all_tasks()`` look the
    running loop up in a dict.
    """

    __slots__ = ()

    def __getattr__(self, name: str) -> NoReturn:
        raise RuntimeError(ASYNCIO_INSIDE_NATIVE_LOOP)

    def __hash__(self) -> int:
        raise RuntimeError(ASYNCIO_INSIDE_NATIVE_LOOP)

    def __repr__(self) -> str:
        return "<treadle's native event loop, which asyncio cannot use>"


STAND_IN: Any = _AsyncioStandIn()


class _NotImported:
    """``swap_asyncio_running_loop``'s answer when asyncio is not imported."""

    __slots__ = ()


NOT_IMPORTED: Any = _NotImported()


def swap_asyncio_running_loop(loop: object) -> object:
    """Make ``loop`` asyncio's running loop, if asyncio is imported; what was there before.

    ``NOT_IMPORTED`` when asyncio is not imported (then nothing changed).
    """
    events = sys.modules.get("asyncio.events")
    if events is None:
        return NOT_IMPORTED
    previous = events._get_running_loop()
    events._set_running_loop(loop)
    return previous


def restore_asyncio_running_loop(previous: object) -> None:
    """Undo ``swap_asyncio_running_loop``, given what it returned."""
    if previous is not NOT_IMPORTED:
        sys.modules["asyncio.events"]._set_running_loop(previous)
