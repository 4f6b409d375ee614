"""Helpers for testing code that runs on treadle: a virtual clock and a pytest plugin.

``VirtualClock`` makes the loop's time jump straight to the next timer whenever nothing
is ready, so timeout logic runs instantly and deterministically. The pytest plugin
(``treadle.testing.pytest_plugin``, loaded automatically when treadle is installed) runs
``async def test_*`` functions on a fresh loop. Side layer: uses the public API, and
peeks at the loop's ready queue to tell when every task is blocked.
"""

from __future__ import annotations

from treadle.testing.clock import VirtualClock
from treadle.testing.runner import run_test, wait_all_tasks_blocked

__all__ = ["VirtualClock", "run_test", "wait_all_tasks_blocked"]
