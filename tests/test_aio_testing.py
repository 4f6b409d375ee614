"""Virtual time for asyncio-based tests: the ``aio_virtual_time`` fixture, and
``treadle.aio.testing.virtual_time_loop`` as pytest-asyncio's loop factory."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

import treadle.aio

pytest_plugins = ["pytester"]


async def an_hour_under_a_two_hour_timeout() -> tuple[float, bool]:
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with asyncio.timeout(7200):
        await asyncio.sleep(3600)
    return loop.time() - start, isinstance(loop, treadle.aio.EventLoop)


def test_aio_virtual_time_fixture_takes_no_real_time(aio_virtual_time: Callable[..., Any]) -> None:
    started = time.monotonic()
    elapsed, on_treadle = aio_virtual_time(an_hour_under_a_two_hour_timeout())
    assert on_treadle and 3600 <= elapsed < 3601
    # The same loop serves a second call: its clock went on from where it was.
    assert aio_virtual_time(asyncio.sleep(0, "again")) == "again"
    assert time.monotonic() - started < 5


def test_aio_virtual_time_fixture_times_out_on_virtual_time(
    aio_virtual_time: Callable[..., Any],
) -> None:
    async def main() -> None:
        await asyncio.wait_for(asyncio.sleep(100), 50)

    with pytest.raises(TimeoutError):
        aio_virtual_time(main())


PYTEST_ASYNCIO_RECIPE = """
import asyncio, time
import pytest
import treadle.aio, treadle.aio.testing

def pytest_asyncio_loop_factories(config, item):
    return {"treadle-aio-virtual": treadle.aio.testing.virtual_time_loop}
"""

PYTEST_ASYNCIO_TEST = """
import asyncio, time
import pytest
import treadle.aio

@pytest.mark.asyncio
async def test_an_hour() -> None:
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    assert isinstance(loop, treadle.aio.EventLoop)
    async with asyncio.timeout(7200):
        await asyncio.sleep(3600)
    assert time.monotonic() - started < 5
"""


def test_virtual_time_loop_as_pytest_asyncios_loop_factory(pytester: pytest.Pytester) -> None:
    pytest.importorskip("pytest_asyncio")
    pytester.makeconftest(PYTEST_ASYNCIO_RECIPE)
    pytester.makepyfile(PYTEST_ASYNCIO_TEST)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(passed=1)
