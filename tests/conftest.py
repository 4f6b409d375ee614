"""Shared fixtures: run the same test body on treadle and on asyncio, the oracle.

A test that takes ``fw`` runs twice: once with ``fw`` the ``treadle`` module, once with
``fw`` the ``asyncio`` module. Where treadle mirrors asyncio, both must pass.

A test that needs a server binary (redis-server, PostgreSQL, nginx) skips with a reason
starting ``needs server:`` when it is missing; with ``TREADLE_REQUIRE_SERVERS=1`` in the
environment (CI sets it) such a skip is a failure instead.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import sys
from collections.abc import Callable, Generator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

import treadle

# The fuzzers' budgets: a short run in the normal suite, a long one on demand with
# ``pytest --hypothesis-profile=long`` (hypothesis's own option).
settings.register_profile(
    "short", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "long", max_examples=5_000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("short")

# A suite started as a background job of a script inherits SIGINT ignored, and so would
# the programs the Ctrl-C tests start (Python keeps an inherited SIG_IGN): they would
# never see the Ctrl-C they are sent. The tests need Ctrl-C to work as in a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(params=["treadle", "asyncio"])
def fw(request: pytest.FixtureRequest) -> Any:
    """The framework under test: the ``treadle`` module, or ``asyncio`` as the oracle."""
    return treadle if request.param == "treadle" else asyncio


@pytest.fixture
def new_loop(fw: Any) -> Callable[[], Any]:
    """A factory of fresh, not-running event loops of ``fw``; each is closed after the test."""
    made: list[Any] = []

    def make() -> Any:
        loop = treadle.EventLoop() if fw is treadle else asyncio.new_event_loop()
        made.append(loop)
        return loop

    yield make
    for loop in made:
        if not loop.is_closed():
            loop.close()


@pytest.fixture
def start_generator(fw: Any) -> Callable[[Any, Generator[Any, Any, Any]], Any]:
    """``loop.create_task(generator)`` for a generator, on treadle or on asyncio.

    treadle's Task drives a generator (plain, or marked as a coroutine) on every Python
    (DESIGN.md: both coroutine styles, one Task). asyncio 3.12 stopped: ``iscoroutine()``
    is False for generators, so ``create_task`` raises TypeError (CPython gh-102748).
    There the oracle checks that refusal, then drives the generator from a coroutine
    that awaits it, so each value the generator yields still reaches asyncio's Task
    unchanged.
    """

    class Delegate:
        def __init__(self, generator: Generator[Any, Any, Any]) -> None:
            self.generator = generator

        def __await__(self) -> Generator[Any, Any, Any]:
            return self.generator

    def start(loop: Any, generator: Generator[Any, Any, Any]) -> Any:
        if fw is treadle or sys.version_info < (3, 12):
            return loop.create_task(generator)
        with pytest.raises(TypeError, match="a coroutine was expected"):
            loop.create_task(generator)

        async def delegate() -> Any:
            # A generator marked with types.coroutine is awaitable itself.
            awaitable = generator if inspect.isawaitable(generator) else Delegate(generator)
            return await awaitable

        return loop.create_task(delegate())

    return start


NEEDS_SERVER = "needs server:"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Under ``TREADLE_REQUIRE_SERVERS=1``, a skip for a missing server is a failure."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not (report.skipped and os.environ.get("TREADLE_REQUIRE_SERVERS") == "1"):
        return
    if isinstance(report.longrepr, tuple):
        reason = report.longrepr[2].removeprefix("Skipped: ")
        if reason.startswith(NEEDS_SERVER):
            report.outcome = "failed"
            report.longrepr = f"TREADLE_REQUIRE_SERVERS=1, but the test skipped: {reason}"
