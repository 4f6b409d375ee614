"""The public API's static types: ``mypy --strict`` on the snippets in typing_checks/.

One mypy run per session, on every snippet at once (through mypy's API, in-process).
Each snippet states what mypy must infer (``assert_type``) and which lines it must
reject (``# type: ignore[code]``, which ``--strict`` reports when it goes unused).
"""

from __future__ import annotations

from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api")

SNIPPETS = Path(__file__).parent / "typing_checks"


@pytest.fixture(scope="session")
def mypy_report() -> tuple[str, int]:
    stdout, stderr, status = mypy_api.run(
        ["--strict", "--no-error-summary", "--show-error-codes", str(SNIPPETS)]
    )
    return stdout + stderr, status


@pytest.mark.timeout(300)
def test_mypy_infers_what_the_snippets_say(mypy_report: tuple[str, int]) -> None:
    report, status = mypy_report
    assert report == "" and status == 0, report


def test_every_snippet_expects_errors_as_well_as_types() -> None:
    # A snippet with no expected error could not tell a checker that accepts anything.
    for snippet in SNIPPETS.glob("*.py"):
        source = snippet.read_text()
        assert "assert_type(" in source and "# type: ignore[" in source, snippet.name
