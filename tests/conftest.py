"""Shared fixtures: run the same test body on treadle and on asyncio, the oracle.

A test that takes ``fw`` runs twice: once on treadle, once on asyncio. ``fw`` is an
``oracle_runners.Framework``: the module's names (``fw.sleep``, ``fw.Lock`` ...), a
guarded runner (``fw.run_guarded(main())``) and ``fw.settle()``. Where treadle mirrors
asyncio, both must pass.

Every test fails if it leaves file descriptors open, unless it is marked ``keeps_fds``.
TLS tests get contexts from a throwaway CA: ``server_context``, ``client_context``,
``tls_contexts`` (the two together) and ``ca``.

A test that needs a server binary (redis-server, PostgreSQL, nginx) skips with a reason
starting ``needs server:`` when it is missing; with ``TREADLE_REQUIRE_SERVERS=1`` in the
environment (CI sets it) such a skip is a failure instead.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import os
import signal
import ssl
import sys
import time
import traceback
from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest
import trustme
from hypothesis import HealthCheck, settings
from loopback import new_client_context, new_server_context, open_fd_names, throwaway_ca
from oracle_runners import ASYNCIO, TREADLE, Framework

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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "keeps_fds: the test may leave file descriptors open (skip the fd-leak check)"
    )


# Test modules whose every test keeps fds, with the reason (for modules this conftest's
# owner may not edit; elsewhere mark the test, or set ``pytestmark``, in the module).
KEEPS_FDS_MODULES = {
    "test_tour.py": "the tour's stages 2-5 open a module-level selector when first imported",
    "test_guide.py": "the guide's snippets import the tour's stages (a module-level selector)",
}
# How long the fd check waits for descriptors that other threads (a threaded server, an
# executor) are still closing, in steps of FD_CLOSE_POLL seconds. Only a test that leaks
# waits it out, so it is sized for a busy machine that runs such a thread late.
FD_CLOSE_GRACE = 5.0
FD_CLOSE_POLL = 0.01


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in KEEPS_FDS_MODULES:
            item.add_marker(pytest.mark.keeps_fds)


def release_what_a_failed_test_holds() -> None:
    """Free, now, what the test that just failed still holds, so that the failing test
    owns every warning its leftovers raise.

    pytest keeps the failure's traceback (``sys.last_traceback``, for post-mortem
    debugging) until the next test's call starts; through it the failed test's frames
    keep their locals: a child process, its pipes, a socket. Freed then, or by a later
    garbage collection, they would fail that later test with a ResourceWarning. Clearing
    the frames' locals here and collecting makes the warnings come during this test's
    teardown, which pytest reports as this test's error.
    """
    failed = getattr(sys, "last_traceback", None)
    if failed is None:
        return
    traceback.clear_frames(failed)
    # Python 3.11 and 3.12 keep a dict of a frame's locals once anyone read f_locals (the
    # failure's report did); clear_frames leaves it, reading f_locals again empties it.
    entry: Any = failed
    while entry is not None:
        entry.tb_frame.f_locals  # noqa: B018 (read for its effect)
        entry = entry.tb_next
    gc.collect()


@pytest.fixture(autouse=True)
def no_fd_leak(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves file descriptors open; ``@pytest.mark.keeps_fds`` opts out.

    Fixtures of a wider scope (a module's server) are set up before this one and torn
    down after it, so they do not count. Descriptors another thread is still closing get
    up to ``FD_CLOSE_GRACE`` seconds; garbage the test left is collected meanwhile. A
    test that failed has what it still holds released first (for every test, marked or
    not), so that its leftovers fail it and not a later test.
    """
    checked = not request.node.get_closest_marker("keeps_fds")
    before = open_fd_names() if checked else {}
    yield
    release_what_a_failed_test_holds()
    if not checked:
        return
    deadline = time.monotonic() + FD_CLOSE_GRACE
    # Fewer descriptors after than before is no leak of this test's: something an earlier
    # test or a library set up (an interpreter-wide resource, garbage) was closed.
    while len(after := open_fd_names()) > len(before) and time.monotonic() < deadline:
        # Sockets the test dropped in a reference cycle close now, with a ResourceWarning
        # that fails this test, rather than during a later test, which they would fail.
        gc.collect()
        time.sleep(FD_CLOSE_POLL)
    new = {fd: name for fd, name in after.items() if before.get(fd) != name}
    assert len(after) <= len(before), (
        f"the test left file descriptors open ({len(before)} before, {len(after)} after);"
        f" new since it started: {new}"
    )


@pytest.fixture(params=["treadle", "asyncio"])
def fw(request: pytest.FixtureRequest) -> Framework:
    """The framework under test: treadle, or asyncio as the oracle."""
    return TREADLE if request.param == "treadle" else ASYNCIO


@pytest.fixture
def ca() -> trustme.CA:
    """The suite's throwaway certificate authority."""
    return throwaway_ca()


@pytest.fixture
def server_context() -> ssl.SSLContext:
    """A fresh TLS server context with a certificate for localhost and 127.0.0.1."""
    return new_server_context()


@pytest.fixture
def client_context() -> ssl.SSLContext:
    """A fresh TLS client context that trusts ``ca``."""
    return new_client_context()


@pytest.fixture
def tls_contexts(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """``(server_context, client_context)``."""
    return server_context, client_context


@pytest.fixture
def new_loop(fw: Framework) -> Callable[[], Any]:
    """A factory of fresh, not-running event loops of ``fw``; each is closed after the test."""
    made: list[Any] = []

    def make() -> Any:
        loop = treadle.EventLoop() if fw.module is treadle else asyncio.new_event_loop()
        made.append(loop)
        return loop

    yield make
    for loop in made:
        if not loop.is_closed():
            loop.close()


@pytest.fixture
def start_generator(fw: Framework) -> Callable[[Any, Generator[Any, Any, Any]], Any]:
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
        if fw.module is treadle or sys.version_info < (3, 12):
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
