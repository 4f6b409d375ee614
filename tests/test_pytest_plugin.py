"""The pytest plugin, seen from a user's test run: each test writes a small test file and
runs pytest on it with pytester, then asserts on the outcomes and on the report."""

from __future__ import annotations

import importlib.util

import pytest

pytest_plugins = ["pytester"]


def run_in_subprocess(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Run pytest on pytester's directory in a fresh interpreter (plugins load as for a user).

    pytest-asyncio, when installed, warns unless its fixture loop scope is set.
    """
    if importlib.util.find_spec("pytest_asyncio") is not None:
        pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "--strict-markers", *args)


# --- async fixtures -----------------------------------------------------------------------------

ASYNC_FIXTURES = """
import time

import pytest

import treadle

log = []


@pytest.fixture
async def answer():
    await treadle.sleep(0)
    return 42


@pytest.fixture
async def resource():
    loop = treadle.get_running_loop()
    log.append(("setup", loop))
    yield "resource"
    await treadle.sleep(0)
    log.append(("teardown", treadle.get_running_loop() is loop, loop.is_closed()))


@pytest.fixture
async def echo_server():
    async def echo(reader, writer):
        writer.write(await reader.read(100))
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await treadle.start_server(echo, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.fixture
async def slept(virtual_clock):
    await treadle.sleep(600)
    yield treadle.get_running_loop().time()
    await treadle.sleep(600)
    log.append(("slept teardown", treadle.get_running_loop().time()))


async def test_a_coroutine_fixture(answer):
    assert answer == 42


async def test_an_async_generator_fixture_runs_on_the_test_loop(resource):
    assert resource == "resource"
    assert log == [("setup", treadle.get_running_loop())]


def test_its_teardown_ran_on_that_loop_before_it_closed():
    assert log[1] == ("teardown", True, False)
    log.clear()


async def test_a_fixture_can_leave_a_server_running_for_the_test(echo_server):
    reader, writer = await treadle.open_connection("127.0.0.1", echo_server)
    writer.write(b"hello")
    assert await reader.read(100) == b"hello"
    writer.close()
    await writer.wait_closed()


async def test_fixtures_share_the_virtual_clock(slept, virtual_clock):
    real_start = time.monotonic()
    assert slept == 600
    assert treadle.get_running_loop().clock is virtual_clock
    await treadle.sleep(30)
    assert virtual_clock.time() == 630
    assert time.monotonic() - real_start < 10  # 30 if it slept; a busy machine's stall


def test_the_clock_kept_running_through_teardown():
    assert log == [("slept teardown", 1230)]


class TestInAClass:
    @pytest.fixture
    async def prefix(self):
        return type(self).__name__

    async def test_a_method_fixture(self, prefix):
        assert prefix == "TestInAClass"
"""


def test_async_fixtures_run_on_the_tests_loop(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(ASYNC_FIXTURES)
    result = run_in_subprocess(pytester)
    result.assert_outcomes(passed=7)


def test_the_loop_is_closed_before_sync_fixtures_are_torn_down(
    pytester: pytest.Pytester,
) -> None:
    # A sync fixture that checks for leaked file descriptors must not see the loop's own.
    pytester.makepyfile(
        """
        import os
        import pytest
        import treadle

        @pytest.fixture(autouse=True)
        def no_fd_leak():
            before = len(os.listdir("/proc/self/fd"))
            yield
            assert len(os.listdir("/proc/self/fd")) == before

        @pytest.fixture
        async def resource():
            yield await treadle.sleep(0)

        async def test_plain():
            await treadle.sleep(0)

        async def test_with_an_async_fixture(resource, virtual_clock):
            await treadle.sleep(10)
        """
    )
    result = run_in_subprocess(pytester)
    result.assert_outcomes(passed=2)


def test_an_async_fixture_of_a_wider_scope_is_refused_clearly(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture(scope="module")
        async def shared():
            return 1

        async def test_it(shared):
            pass
        """
    )
    result = run_in_subprocess(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*async fixture 'shared' has scope 'module'*only function-scoped*"]
    )


def test_a_fixture_that_leaks_a_task_fails_at_teardown(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        import treadle

        @pytest.fixture
        async def forgetful():
            treadle.create_task(treadle.sleep(1000))
            yield

        async def test_it(forgetful):
            pass
        """
    )
    result = run_in_subprocess(pytester)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*LeakedTasksError: the test's fixtures left 1 task(s)*"])


def test_a_test_that_leaks_a_task_fails(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import treadle

        async def test_it():
            treadle.create_task(treadle.sleep(1000))
        """
    )
    result = run_in_subprocess(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*LeakedTasksError: the test left 1 task(s)*"])


# --- the failure report points at the user's line ------------------------------------------------


def test_a_failing_test_shows_its_own_line_not_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import treadle

        async def helper():
            await treadle.sleep(0)
            raise ValueError("raised in the helper")

        async def test_assert():
            await treadle.sleep(0)
            assert 1 + 1 == 3, "the user's assertion"

        async def test_raise():
            await helper()

        async def test_leak():
            treadle.create_task(treadle.sleep(1000))

        async def test_stray_error():
            treadle.get_running_loop().call_soon(lambda: 1 / 0)
            await treadle.sleep(0)
        """
    )
    result = run_in_subprocess(pytester)
    result.assert_outcomes(failed=4)
    output = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            ">*assert 1 + 1 == 3*",
            ">*await helper()",
            '>*raise ValueError("raised in the helper")',
            "*LeakedTasksError: the test left 1 task(s) running*",
            "*StrayErrorsError: the loop reported 1 unexpected error(s)*",
        ]
    )
    for plugin_source in ("run_until_complete", "run_body", "run_test", "pytest_pyfunc_call"):
        assert plugin_source not in output
    assert "treadle/testing" not in output
    assert "treadle/core/tasks.py" not in output


# --- virtual time and real I/O ------------------------------------------------------------------


# --- which async tests are treadle's ----------------------------------------------------------

OTHER_PLUGINS_TESTS = """
import asyncio

import pytest

import treadle


def on_asyncio():
    asyncio.get_running_loop()


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_marked_anyio():
    on_asyncio()


async def test_asking_for_anyio_backend(anyio_backend):
    on_asyncio()


@pytest.mark.asyncio
async def test_marked_asyncio():
    on_asyncio()


async def test_unmarked():
    treadle.get_running_loop()


@pytest.mark.treadle
async def test_marked_treadle():
    treadle.get_running_loop()
"""


def test_tests_of_anyio_and_pytest_asyncio_are_left_to_them(pytester: pytest.Pytester) -> None:
    pytest.importorskip("anyio")
    pytest.importorskip("pytest_asyncio")
    pytester.makepyfile(OTHER_PLUGINS_TESTS)
    result = run_in_subprocess(pytester, "-v")
    result.assert_outcomes(passed=5)


def test_pytest_asyncio_in_auto_mode_keeps_every_async_test(pytester: pytest.Pytester) -> None:
    pytest.importorskip("pytest_asyncio")
    pytester.makepyfile(
        """
        import asyncio
        import pytest

        @pytest.fixture
        async def on_asyncio():
            return asyncio.get_running_loop()

        async def test_unmarked_goes_to_pytest_asyncio(on_asyncio):
            assert asyncio.get_running_loop() is on_asyncio

        @pytest.mark.treadle
        async def test_marked_treadle_is_refused_clearly():
            pass
        """
    )
    result = run_in_subprocess(pytester, "-o", "asyncio_mode=auto")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*marked treadle, but pytest-asyncio runs in auto mode*asyncio_mode = strict*"]
    )


def test_strict_mode_runs_only_marked_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        import treadle

        pytestmark = pytest.mark.treadle

        async def test_in_a_marked_module():
            treadle.get_running_loop()
        """,
    )
    pytester.makepyfile(
        test_unmarked="""
        async def test_unmarked():
            pass
        """
    )
    result = run_in_subprocess(pytester, "-o", "treadle_mode=strict", "-p", "no:asyncio")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*async def functions are not natively supported*"])


def test_an_unknown_mode_is_a_clear_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("async def test_it(): pass")
    result = run_in_subprocess(pytester, "-o", "treadle_mode=sometimes")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*treadle_mode must be 'auto' or 'strict', not 'sometimes'*"])


def test_a_test_marked_for_two_frameworks_is_refused(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.treadle
        @pytest.mark.asyncio
        async def test_it():
            pass
        """
    )
    result = run_in_subprocess(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*marked both treadle and asyncio*"])
