"""Shared fixtures: run the same test body on treadle and on asyncio, the oracle.

A test that takes ``fw`` runs twice: once with ``fw`` the ``treadle`` module, once with
``fw`` the ``asyncio`` module. Where treadle mirrors asyncio, both must pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
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
