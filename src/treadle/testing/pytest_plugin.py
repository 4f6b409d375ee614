"""The pytest plugin: runs ``async def test_*`` on a fresh treadle loop.

Loaded through the ``pytest11`` entry point when treadle is installed. A test that
asks for the ``virtual_clock`` fixture runs on virtual time. Every test fails if the
loop reports an error nobody retrieved, or if it leaves tasks running.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import pytest

from treadle.testing.clock import VirtualClock
from treadle.testing.runner import run_test


@pytest.fixture
def virtual_clock() -> Iterator[VirtualClock]:
    """A ``VirtualClock``: the test's loop jumps to the next timer whenever it is idle."""
    yield VirtualClock()


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    function = pyfuncitem.obj
    if not inspect.iscoroutinefunction(function):
        return None
    argnames = pyfuncitem._fixtureinfo.argnames
    kwargs: dict[str, Any] = {name: pyfuncitem.funcargs[name] for name in argnames}
    clock = kwargs.get("virtual_clock")
    run_test(function, clock=clock, **kwargs)
    return True
