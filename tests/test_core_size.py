"""The core stays small enough to read in one sitting: under 900 lines of code.

``src/treadle/core/`` is the part of treadle a reader takes first (docs/map.md), and its
size is a promise: what is a service rather than scheduling lives outside it. A line of
code is a line holding something other than a comment, a docstring or nothing, counted
with ``tokenize`` (and ``ast`` for the docstrings), as docs/map.md counts them.
"""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

import treadle.core

CORE_DIR = Path(treadle.core.__file__).resolve().parent
LIMIT = 900

_NOT_CODE = {
    tokenize.COMMENT,
    tokenize.NL,
    tokenize.NEWLINE,
    tokenize.INDENT,
    tokenize.DEDENT,
    tokenize.ENDMARKER,
}


def code_lines(source: str) -> int:
    """How many lines of ``source`` hold code: not blank, not only comments, no docstring."""
    docstrings: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        # A string standing alone as a statement: a docstring (or a bare string, as inert).
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            docstrings.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in _NOT_CODE:
            lines.update(range(token.start[0], token.end[0] + 1))
    return len(lines - docstrings)


def core_sizes() -> dict[str, int]:
    """Lines of code of each module in ``treadle/core/``."""
    return {
        path.name: code_lines(path.read_text(encoding="utf-8"))
        for path in sorted(CORE_DIR.glob("*.py"))
    }


def test_the_core_is_under_900_lines_of_code() -> None:
    sizes = core_sizes()
    total = sum(sizes.values())
    assert total < LIMIT, (
        f"src/treadle/core/ has {total} lines of code ({sizes}), the limit is {LIMIT}: "
        "move what is a service rather than scheduling out of the core (docs/map.md)"
    )


def test_the_count_leaves_out_comments_docstrings_and_blank_lines() -> None:
    source = (
        '"""Module docstring,\non two lines."""\n'
        "\n"
        "# a comment\n"
        "def f(x):\n"
        '    """Docstring."""\n'
        "    return (x +  # a trailing comment\n"
        '            len("a string that is code"))\n'
        "\n"
        "message = (\n"
        '    "pieces of a string "\n'
        '    "are code too"\n'
        ")\n"
    )
    assert code_lines(source) == 7

