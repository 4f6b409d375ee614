"""conftest's TREADLE_REQUIRE_SERVERS=1: a skip for a missing server binary fails the run.

Runs pytest on a small test file with this suite's conftest.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

SKIPS = """
import pytest

def test_needs_a_server():
    pytest.skip("needs server: redis-server not found")

@pytest.mark.skipif(True, reason="needs server: nginx not found")
def test_marked_as_needing_a_server():
    pass

def test_skips_for_another_reason():
    pytest.skip("not on this platform")
"""


@pytest.fixture
def skipping_suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text(encoding="utf-8"))
    pytester.makepyfile(test_skips=SKIPS)
    return pytester


def test_without_the_variable_a_missing_server_is_a_skip(
    skipping_suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TREADLE_REQUIRE_SERVERS", raising=False)
    result = skipping_suite.runpytest("-p", "no:cacheprovider", "-p", "no:asyncio")
    result.assert_outcomes(skipped=3)


def test_with_the_variable_a_missing_server_fails(
    skipping_suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TREADLE_REQUIRE_SERVERS", "1")
    result = skipping_suite.runpytest("-p", "no:cacheprovider", "-p", "no:asyncio", "-rA")
    # The marked test skips during setup, so its failure counts as an error.
    result.assert_outcomes(failed=1, errors=1, skipped=1)
    expected = "TREADLE_REQUIRE_SERVERS=1, but the test skipped: needs server: {} not found"
    result.stdout.fnmatch_lines(
        [expected.format("nginx"), expected.format("redis-server")], consecutive=False
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
