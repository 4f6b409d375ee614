"""pytest-asyncio running a user's tests on the loop under test (asyncio, treadle.aio).

A pytester run in a fresh interpreter: the user's conftest hands the loop factory to
pytest-asyncio through its ``pytest_asyncio_loop_factories`` hook (pytest-asyncio 1.4+,
the successor of overriding the ``event_loop_policy`` fixture), and the user's tests (a
function-scoped and a module-scoped loop, async fixtures, a server) all run on it.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

USER_CONFTEST = """
import importlib

MODULE, _, FACTORY = {factory_name!r}.partition(":")


def pytest_asyncio_loop_factories(config, item):
    return {{"under_test": getattr(importlib.import_module(MODULE), FACTORY)}}
"""

USER_TESTS = """
import asyncio

import pytest
import pytest_asyncio

EXPECTED_LOOP_MODULE = {expected_loop_module!r}
loops_seen = []


@pytest_asyncio.fixture
async def echo_port():
    async def echo(reader, writer):
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.mark.asyncio
async def test_runs_on_the_loop_under_test():
    assert type(asyncio.get_running_loop()).__module__ == EXPECTED_LOOP_MODULE


@pytest.mark.asyncio
async def test_async_fixture_and_a_server(echo_port):
    reader, writer = await asyncio.open_connection("127.0.0.1", echo_port)
    writer.write(b"ping\\n")
    assert await reader.readline() == b"ping\\n"
    writer.close()
    await writer.wait_closed()


@pytest.mark.asyncio
async def test_timeout_and_cancellation():
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await asyncio.sleep(10)
    task = asyncio.create_task(asyncio.sleep(10))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.asyncio(loop_scope="module")
async def test_module_loop_first():
    loops_seen.append(asyncio.get_running_loop())


@pytest.mark.asyncio(loop_scope="module")
async def test_module_loop_shared():
    assert loops_seen == [asyncio.get_running_loop()]
    assert type(loops_seen[0]).__module__ == EXPECTED_LOOP_MODULE
"""

EXPECTED_LOOP_MODULE = {"asyncio": "asyncio.unix_events", "treadle.aio": "treadle.aio.loop"}


def test_pytest_asyncio_runs_tests_on_the_loop_under_test(
    pytester: pytest.Pytester, loop_name: str, loop_factory_name: str
) -> None:
    pytester.makeconftest(USER_CONFTEST.format(factory_name=loop_factory_name))
    pytester.makepyfile(USER_TESTS.format(expected_loop_module=EXPECTED_LOOP_MODULE[loop_name]))
    pytester.makeini(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\nfilterwarnings = error\n"
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "asyncio", "-v")
    result.assert_outcomes(passed=5)
