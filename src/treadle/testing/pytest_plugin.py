"""The pytest plugin: runs ``async def`` tests and their async fixtures on a fresh treadle loop.

Loaded through the ``pytest11`` entry point when treadle is installed. Which tests are
treadle's: those marked ``@pytest.mark.treadle``, and, in the default ``auto`` mode
(ini option ``treadle_mode``), every other ``async def`` test that no other framework
claims (a test marked ``asyncio``, ``anyio`` or ``trio``, one that uses ``anyio_backend``,
and every test while pytest-asyncio runs in its auto mode are left alone). One loop
serves a test's async fixtures, its body and their teardown; a test that asks for
``virtual_clock`` runs on virtual time. A test fails if it leaves tasks running or the
loop reports an error nobody retrieved. See docs/testing.md.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest

from treadle.testing.clock import VirtualClock
from treadle.testing.runner import LeakedTasksError, LoopHarness, StrayErrorsError

_MODES = ("auto", "strict")
# Markers by which other plugins (pytest-asyncio, anyio, pytest-trio) claim a test.
_OTHER_FRAMEWORKS = ("asyncio", "anyio", "trio")

_harness_key = pytest.StashKey[LoopHarness]()
_is_treadles_key = pytest.StashKey[bool]()
# How many async generator fixtures still need the loop for their teardown.
_teardowns_pending_key = pytest.StashKey[int]()
_body_ran_key = pytest.StashKey[bool]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "treadle_mode",
        "which async tests treadle runs: 'auto' (every async test no other plugin "
        "claims, the default) or 'strict' (only tests marked treadle)",
        default="auto",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "treadle: run this async test and its async fixtures on a fresh treadle loop"
    )
    mode = config.getini("treadle_mode")
    if mode not in _MODES:
        raise pytest.UsageError(
            f"treadle_mode must be 'auto' or 'strict', not {mode!r}: "
            "fix it in your pytest configuration (or -o treadle_mode=...)"
        )


@pytest.fixture
def aio_virtual_time() -> Iterator[Callable[[Any], Any]]:
    """``run(coro)`` for asyncio code: runs it on a treadle.aio loop on virtual time.

    One loop (``treadle.aio.testing.virtual_time_loop``) serves every call in the test
    and is closed after it. Works in a plain ``def`` test; see docs/aio.md for
    pytest-asyncio.
    """
    import asyncio  # only here: loading the plugin must not import asyncio

    from treadle.aio.testing import virtual_time_loop

    with asyncio.Runner(loop_factory=virtual_time_loop) as runner:
        yield runner.run


@pytest.fixture
def virtual_clock() -> VirtualClock:
    """A ``VirtualClock``: the test's loop jumps to the next timer whenever it is idle.

    While a socket is watched or a thread is working, it first waits for them (up to
    ``autojump_threshold`` real seconds of silence), so real I/O beats virtual deadlines.
    """
    return VirtualClock()


def _pytest_asyncio_in_auto_mode(config: pytest.Config) -> bool:
    if not config.pluginmanager.has_plugin("asyncio"):
        return False
    mode = config.getoption("asyncio_mode", None)
    if mode is None:
        try:
            mode = config.getini("asyncio_mode")
        except ValueError:  # an older or different plugin named "asyncio"
            return False
    return bool(mode == "auto")


def _decide_is_treadles(item: pytest.Item) -> bool:
    if not isinstance(item, pytest.Function) or not inspect.iscoroutinefunction(item.obj):
        return False
    if item.get_closest_marker("treadle") is not None:
        return True
    if any(item.get_closest_marker(name) for name in _OTHER_FRAMEWORKS):
        return False
    if "anyio_backend" in item.fixturenames:
        return False
    if item.config.getini("treadle_mode") == "strict":
        return False
    return not _pytest_asyncio_in_auto_mode(item.config)


def _is_treadles(item: pytest.Item) -> bool:
    """Whether treadle runs this test (decided once per test)."""
    decided = item.stash.get(_is_treadles_key, None)
    if decided is None:
        decided = item.stash[_is_treadles_key] = _decide_is_treadles(item)
    return decided


def _harness_for(item: pytest.Function, request: pytest.FixtureRequest) -> LoopHarness:
    """The test's loop, made on first use (with the virtual clock if the test uses it)."""
    harness = item.stash.get(_harness_key, None)
    if harness is None:
        clock = None
        if "virtual_clock" in item.fixturenames:
            clock = request.getfixturevalue("virtual_clock")
        harness = item.stash[_harness_key] = LoopHarness(clock)
    return harness


def _close_loop(item: pytest.Item) -> None:
    """Close the test's loop now: sync fixtures torn down later see it gone (its fds too)."""
    __tracebackhide__ = True
    harness = item.stash.get(_harness_key, None)
    if harness is None:
        return
    del item.stash[_harness_key]
    try:
        harness.close()
    except (LeakedTasksError, StrayErrorsError) as error:
        _report_plainly(error)


def _close_loop_if_done(item: pytest.Item) -> None:
    """Close the loop once the body ran and no async fixture's teardown still needs it."""
    __tracebackhide__ = True
    if item.stash.get(_body_ran_key, False) and not item.stash.get(_teardowns_pending_key, 0):
        _close_loop(item)


def _report_plainly(error: AssertionError) -> None:
    """Fail with the plugin's own check's message alone: its source would only distract."""
    __tracebackhide__ = True
    pytest.fail(f"{type(error).__name__}: {error}", pytrace=False)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("treadle") is None:
        return
    if _pytest_asyncio_in_auto_mode(item.config):
        # pytest-asyncio's auto mode replaces every async test (and fixture) by its own
        # at collection: there is no taking one back.
        pytest.fail(
            f"{item.name} is marked treadle, but pytest-asyncio runs in auto mode and takes "
            "every async test: set asyncio_mode = strict (its default) and mark its own "
            "tests @pytest.mark.asyncio",
            pytrace=False,
        )
    others = [name for name in _OTHER_FRAMEWORKS if item.get_closest_marker(name)]
    if others:
        pytest.fail(
            f"{item.name} is marked both treadle and {' and '.join(others)}: "
            "keep only the marker of the framework that should run it",
            pytrace=False,
        )


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not _is_treadles(pyfuncitem):
        return None
    __tracebackhide__ = True
    kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    harness = _harness_for(pyfuncitem, pyfuncitem._request)
    try:
        harness.run_body(pyfuncitem.obj(**kwargs))
    except (LeakedTasksError, StrayErrorsError) as error:
        _report_plainly(error)
    finally:
        pyfuncitem.stash[_body_ran_key] = True
    _close_loop_if_done(pyfuncitem)
    return True


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    # The loop normally closes after the body or the last async fixture's teardown; if
    # the body never ran (a fixture failed), it closes here, after every fixture.
    try:
        return (yield)
    finally:
        _close_loop(item)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, Any, Any]:
    function = fixturedef.func
    item = getattr(request, "_pyfuncitem", None)
    is_async = inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function)
    if not is_async or item is None or not _is_treadles(item):
        return (yield)
    if fixturedef.scope != "function":
        pytest.fail(
            f"async fixture {fixturedef.argname!r} has scope {fixturedef.scope!r}, but treadle "
            "runs each test on a fresh loop, so it supports only function-scoped async "
            "fixtures: drop the scope, or make the fixture a plain (sync) one",
            pytrace=False,
        )
    # pytest calls fixturedef.func itself; for the duration of this setup it calls a
    # sync stand-in that runs the async fixture to completion on the test's loop.
    fixturedef.func = _on_test_loop(function, item, request)  # type: ignore[misc]
    try:
        return (yield)
    finally:
        fixturedef.func = function  # type: ignore[misc]


def _on_test_loop(
    function: Callable[..., Any], item: pytest.Function, request: pytest.FixtureRequest
) -> Callable[..., Any]:
    """A sync fixture function that runs the async ``function`` on ``item``'s loop."""
    if request.instance is not None and hasattr(function, "__func__"):
        function = function.__func__.__get__(request.instance)
    name = getattr(function, "__name__", repr(function))

    if inspect.iscoroutinefunction(function):

        def set_up(**kwargs: Any) -> Any:
            __tracebackhide__ = True
            return _harness_for(item, request).run(function(**kwargs))

        return set_up

    def set_up_and_tear_down(**kwargs: Any) -> Iterator[Any]:
        __tracebackhide__ = True
        harness = _harness_for(item, request)
        generator = function(**kwargs)

        async def start() -> Any:
            __tracebackhide__ = True
            try:
                return await generator.__anext__()
            except StopAsyncIteration:
                raise ValueError(f"async fixture {name!r} did not yield a value") from None

        async def finish() -> None:
            __tracebackhide__ = True
            try:
                await generator.__anext__()
            except StopAsyncIteration:
                return
            await generator.aclose()
            raise ValueError(f"async fixture {name!r} yielded more than once: yield only once")

        value = harness.run(start())
        item.stash[_teardowns_pending_key] = item.stash.get(_teardowns_pending_key, 0) + 1
        yield value
        item.stash[_teardowns_pending_key] -= 1
        try:
            harness.run(finish())
        finally:
            _close_loop_if_done(item)

    return set_up_and_tear_down
