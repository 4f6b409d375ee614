"""conftest's hygiene checks: a test that leaks file descriptors fails, and it alone.

Runs pytest on small test files with this suite's conftest.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

TESTS = Path(__file__).parent

# The first test fails while its child's pipes are still open, in a local: the failure's
# traceback keeps them alive past the test. The two after it leak nothing; the first of
# them collects garbage, as hypothesis does, and with it whatever the failure left.
FAILS_HOLDING_PIPES = """
import gc
import subprocess
import sys

def test_fails_holding_a_childs_pipes():
    child = subprocess.Popen(
        [sys.executable, "-c", "pass"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    child.wait()
    assert child.returncode == 1, "fails on purpose, its pipes still open"

def test_next():
    gc.collect()

def test_after_next():
    pass
"""

# The second test closes what the first leaks (pytest runs here, in this process).
LEAKS_A_PIPE = """
import os

kept = []

def test_leaks_a_pipe():
    kept.extend(os.pipe())

def test_closes_what_the_first_leaked():
    for fd in kept:
        os.close(fd)
"""


def run_with_the_suites_conftest(
    pytester: pytest.Pytester, *, in_a_fresh_interpreter: bool = False, **files: str
) -> pytest.RunResult:
    conftest = (TESTS / "conftest.py").read_text(encoding="utf-8")
    # A leaking test waits out the grace other threads get to close their descriptors;
    # these tests have no such threads, and need not wait seconds.
    grace = re.search(r"^FD_CLOSE_GRACE = .*$", conftest, re.MULTILINE)
    assert grace is not None, "the conftest no longer has FD_CLOSE_GRACE"
    pytester.makeconftest(conftest.replace(grace[0], "FD_CLOSE_GRACE = 0.1"))
    pytester.makepyfile(**files)
    args = ("-p", "no:cacheprovider", "-p", "no:asyncio", "-W", "error", "-rA")
    if not in_a_fresh_interpreter:
        return pytester.runpytest(*args)
    # The conftest imports the suite's helper modules (loopback, oracle_runners).
    pythonpath = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    pytester._monkeypatch.setenv("PYTHONPATH", pythonpath)
    return pytester.runpytest_subprocess(*args)


def test_a_failed_test_owns_the_resource_warnings_of_what_it_held(
    pytester: pytest.Pytester,
) -> None:
    # In a fresh interpreter: as in a real run, only pytest itself holds the failure.
    result = run_with_the_suites_conftest(
        pytester, in_a_fresh_interpreter=True, test_holds=FAILS_HOLDING_PIPES
    )
    # The failure, and its leftovers at teardown, are the first test's alone.
    result.assert_outcomes(failed=1, errors=1, passed=2)
    result.stdout.fnmatch_lines(
        [
            "PASSED test_holds.py::test_next",
            "PASSED test_holds.py::test_after_next",
            "ERROR test_holds.py::test_fails_holding_a_childs_pipes - *",
            "FAILED test_holds.py::test_fails_holding_a_childs_pipes - *",
        ],
        consecutive=False,
    )
    result.stdout.fnmatch_lines(["*ResourceWarning: unclosed file*"])


def test_a_leaked_descriptor_is_named_in_the_failure(pytester: pytest.Pytester) -> None:
    result = run_with_the_suites_conftest(pytester, test_leaks=LEAKS_A_PIPE)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        ["*the test left file descriptors open (* before, * after); new since it started: *"]
    )
    result.stdout.fnmatch_lines(["*new since it started: {*: 'pipe:[[]*"])
