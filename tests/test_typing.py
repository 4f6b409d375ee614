"""The public API's static types: ``mypy --strict`` on the snippets in typing_checks/.

One mypy run per session, on every snippet at once (through mypy's API, in-process).
Each snippet states what mypy must infer (``assert_type``) and which lines it must
reject (``# type: ignore[code]``, which ``--strict`` reports when it goes unused).
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api")

SNIPPETS = Path(__file__).parent / "typing_checks"
INTERPRETER_AT_IMPORT = {
    "recursion limit": sys.getrecursionlimit(),
    "gc thresholds": gc.get_threshold(),
}


@pytest.fixture(scope="session")
def mypy_report() -> tuple[str, int]:
    # mypy tunes the interpreter for itself and leaves it so: a recursion limit of 2**14
    # (the guide's snippet that must overflow the stack at 5000 links then did not) and a
    # garbage collector that runs 300 times less often (garbage a test leaves, with its
    # ResourceWarnings, then surfaces tests later). Put both back.
    recursion_limit, gc_thresholds = sys.getrecursionlimit(), gc.get_threshold()
    try:
        stdout, stderr, status = mypy_api.run(
            ["--strict", "--no-error-summary", "--show-error-codes", str(SNIPPETS)]
        )
    finally:
        sys.setrecursionlimit(recursion_limit)
        gc.set_threshold(*gc_thresholds)
    return stdout + stderr, status


def test_the_mypy_run_leaves_the_interpreter_as_it_found_it(
    mypy_report: tuple[str, int],
) -> None:
    assert sys.getrecursionlimit() == INTERPRETER_AT_IMPORT["recursion limit"]
    assert gc.get_threshold() == INTERPRETER_AT_IMPORT["gc thresholds"]


@pytest.mark.timeout(300)
def test_mypy_infers_what_the_snippets_say(mypy_report: tuple[str, int]) -> None:
    report, status = mypy_report
    assert report == "" and status == 0, report


def test_every_snippet_expects_errors_as_well_as_types() -> None:
    # A snippet with no expected error could not tell a checker that accepts anything.
    for snippet in SNIPPETS.glob("*.py"):
        source = snippet.read_text()
        assert "assert_type(" in source and "# type: ignore[" in source, snippet.name
