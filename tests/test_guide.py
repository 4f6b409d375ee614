"""Tests for docs/how-coroutines-work.md: its snippets run, and its links and picture hold.

Every ``python`` block runs, in order, in one namespace per ``##`` section; a ``text``
block right after a python block (only blank lines between) is what that block must
print, where ``...`` matches any text; a traceback's marker lines (``~~~^^^``) are
left out of what was printed, since Python versions differ on which lines they mark.
Every relative link must name a file that
exists, and one with a line anchor (``[`Task._step`](../src/treadle/core/tasks.py#L192)``)
must land on the ``def`` or ``class`` its text names. ``docs/timeline.svg`` must parse
as XML and show the two stages. Imports the standard library, pytest and the tour.

When treadle's source moves, ``python tests/test_guide.py --fix-anchors`` rewrites the
anchors from the names (a name that no longer exists still fails the test).
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import io
import itertools
import linecache
import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
GUIDE = DOCS / "how-coroutines-work.md"
SVG = DOCS / "timeline.svg"
SVG_NS = "{http://www.w3.org/2000/svg}"

FENCE = re.compile(r"^```(\w*)\s*$")
LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
ANCHORED = re.compile(r"\[([^\]]+)\]\(([^)\s#]+\.py)#L(\d+)\)")


@dataclass(frozen=True)
class Fence:
    """A fenced block: its language, the guide line its code starts on, and its text."""

    section: str
    language: str
    first: int  # 1-based line of the block's first line of code
    last: int  # 1-based line of the closing fence
    text: str


@dataclass(frozen=True)
class Block:
    """A python block of the guide, and what it must print (None: not checked)."""

    section: str
    first: int
    source: str
    expected: str | None


@dataclass(frozen=True)
class Link:
    """A relative link in the guide's prose."""

    line: int
    text: str
    path: str
    anchor: int | None  # the line number after ``#L``, if any


def read_guide() -> tuple[list[Block], list[Link]]:
    """The guide's python blocks (each with its expected output) and its relative links."""
    lines = GUIDE.read_text(encoding="utf-8").splitlines()
    fences: list[Fence] = []
    links: list[Link] = []
    section = "preamble"
    i = 0
    while i < len(lines):
        opened = FENCE.match(lines[i])
        if opened:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            text = "\n".join(lines[i + 1 : end])
            fences.append(Fence(section, opened.group(1), i + 2, end + 1, text))
            i = end + 1
            continue
        if lines[i].startswith("## "):
            section = lines[i][3:].strip()
        for text, target in LINK.findall(lines[i]):
            if "://" in target or target.startswith(("#", "mailto:")):
                continue
            path, _, fragment = target.partition("#")
            anchor = int(fragment[1:]) if re.fullmatch(r"L\d+", fragment) else None
            links.append(Link(i + 1, text, path, anchor))
        i += 1

    blocks = []
    for fence, following in zip(fences, [*fences[1:], None], strict=True):
        if fence.language != "python":
            continue
        expected = None
        if following is not None and following.language == "text":
            between = lines[fence.last : following.first - 2]
            if not any(row.strip() for row in between):
                expected = following.text
        blocks.append(Block(fence.section, fence.first, fence.text, expected))
    return blocks, links


def matches(output: str, expected: str) -> bool:
    """Whether output is expected, ``...`` standing for any text, trailing spaces ignored."""

    def tidy(text: str) -> str:
        return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())

    pattern = ".*?".join(re.escape(piece) for piece in tidy(expected).split("..."))
    return re.fullmatch(pattern, tidy(output), re.DOTALL) is not None


def definitions(path: Path) -> dict[str, list[int]]:
    """Each class and function of a module by qualified name (``Task._step``): its lines."""
    found: dict[str, list[int]] = {}

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                name = prefix + node.name
                found.setdefault(name, []).append(node.lineno)  # the def line, not decorators
                if isinstance(node, ast.ClassDef):
                    visit(node.body, name + ".")

    visit(ast.parse(path.read_text(encoding="utf-8")).body, "")
    return found


def named(text: str) -> str:
    """The qualified name a link's text gives: ``[`treadle.run()`]`` names ``run``."""
    return text.strip("`").removesuffix("()").removeprefix("treadle.")


BLOCKS, LINKS = read_guide()
SECTIONS = list(dict.fromkeys(block.section for block in BLOCKS))
# Sections whose snippets print the stack through treadle's own frames ("_run_once ->
# _step -> main"): the compiled build's compiled functions have no frames to print.
SHOW_TREADLE_FRAMES = {
    "4. How a Future and a Task resume a coroutine",
    "7. Tracebacks that show the whole chain",
    "8. Seeing where a coroutine is paused",
}


# --- The snippets ------------------------------------------------------------------


def test_the_guide_has_snippets_with_checked_output() -> None:
    assert len(SECTIONS) >= 5
    assert sum(block.expected is not None for block in BLOCKS) >= 10


@pytest.mark.parametrize("section", SECTIONS)
def test_section_snippets_run_and_print_what_the_guide_says(section: str) -> None:
    import treadle

    assert set(SECTIONS) >= SHOW_TREADLE_FRAMES
    if treadle.compiled and section in SHOW_TREADLE_FRAMES:
        pytest.skip("prints treadle's own frames, which the compiled build does not have")
    namespace: dict[str, object] = {"__name__": "guide"}
    filenames = []
    try:
        for block in (block for block in BLOCKS if block.section == section):
            # Registered with linecache so tracebacks (and the snippets that read them)
            # show the source, as they would for a file.
            filename = f"<guide line {block.first}>"
            source = block.source + "\n"
            linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
            filenames.append(filename)
            captured = io.StringIO()
            with contextlib.redirect_stdout(captured):
                exec(compile(source, filename, "exec"), namespace)
            check_output(block, captured.getvalue())
    finally:
        for filename in filenames:
            del linecache.cache[filename]


CARET_LINE = re.compile(r"^ *[~^]+ *\n", re.MULTILINE)


def without_carets(output: str) -> str:
    """Output without the lines that only mark a traceback's expression (``~~~^^^``).

    Python 3.13 marks a call that fills its line (``treadle.run(main())``), which 3.11
    and 3.12 leave unmarked (CPython gh-106922 gave calls their own markers).
    """
    return CARET_LINE.sub("", output)


def check_output(block: Block, output: str) -> None:
    """Fail unless the block printed what the guide says it prints."""
    if block.expected is not None:
        output = without_carets(output)
        assert matches(output, block.expected), (
            f"the block at line {block.first} printed:\n{output}"
            f"\nbut the guide says:\n{block.expected}"
        )


def test_matches_treats_dots_as_any_text() -> None:
    assert matches("frame at 0x7f00, line 3\n", "frame at ..., line 3")
    assert not matches("frame at 0x7f00, line 4", "frame at ..., line 3")
    assert matches("a  \nb\n\n", "a\nb")


def test_without_carets_drops_only_marker_lines() -> None:
    printed = "    run(main())\n    ~~~^^^^^^^^\n    x = y[0] ^ 2\n           ^^^^\n"
    assert without_carets(printed) == "    run(main())\n    x = y[0] ^ 2\n"


# --- The links ---------------------------------------------------------------------


def test_the_guide_links_into_the_source() -> None:
    assert sum(link.anchor is not None for link in LINKS) >= 20


@pytest.mark.parametrize("link", LINKS, ids=lambda link: f"line{link.line}:{named(link.text)}")
def test_link_points_at_what_it_names(link: Link) -> None:
    target = (DOCS / link.path).resolve()
    assert target.is_file(), f"line {link.line}: {link.path} does not exist"
    if link.anchor is None:
        return
    assert target.suffix == ".py", f"line {link.line}: a line anchor into a non-Python file"
    name = named(link.text)
    lines = definitions(target).get(name)
    assert lines is not None, f"line {link.line}: {link.path} defines no {name}"
    assert link.anchor in lines, (
        f"line {link.line}: {name} is at {link.path}#L{lines[-1]}, not #L{link.anchor}"
        " (python tests/test_guide.py --fix-anchors)"
    )


def fix_anchors() -> int:
    """Rewrite every anchor in the guide to where its name is defined now; how many moved."""
    text = GUIDE.read_text(encoding="utf-8")
    moved = 0

    def fix(match: re.Match[str]) -> str:
        nonlocal moved
        label, path, line = match.group(1), match.group(2), int(match.group(3))
        lines = definitions((DOCS / path).resolve()).get(named(label))
        if lines is None or line in lines:
            return match.group(0)
        moved += 1
        return f"[{label}]({path}#L{lines[-1]})"

    GUIDE.write_text(ANCHORED.sub(fix, text), encoding="utf-8")
    return moved


# --- The picture -------------------------------------------------------------------


def load_timeline() -> ModuleType:
    spec = importlib.util.spec_from_file_location("guide_timeline", DOCS / "timeline.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bars(root: ET.Element) -> list[tuple[float, float]]:
    """The (left, right) of every bar in a timeline SVG, top to bottom."""
    rects = [rect for rect in root.iter(f"{SVG_NS}rect") if rect.find(f"{SVG_NS}title") is not None]
    return [(float(r.get("x", 0)), float(r.get("x", 0)) + float(r.get("width", 0))) for r in rects]


def test_the_guide_shows_the_picture() -> None:
    assert any(link.path == "timeline.svg" for link in LINKS)


def test_timeline_svg_is_valid_and_shows_a_staircase_over_a_block() -> None:
    root = ET.parse(SVG).getroot()
    assert root.tag == f"{SVG_NS}svg"
    headings = [t.text or "" for t in root.iter(f"{SVG_NS}text") if t.get("class") == "heading"]
    assert [heading.split(":")[0] for heading in headings] == ["stage 1", "stage 3"]
    found = bars(root)
    assert len(found) % 2 == 0 and len(found) >= 4
    serial, concurrent = found[: len(found) // 2], found[len(found) // 2 :]
    # Stage 1: each bar starts where the one before ended. Stage 3: all start together.
    for (_, before_end), (after_start, _) in itertools.pairwise(serial):
        assert after_start >= before_end - 2
    starts = [start for start, _ in concurrent]
    assert max(starts) - min(starts) < 5
    assert max(end for _, end in concurrent) < serial[1][1]


def test_timeline_render_draws_any_runs() -> None:
    timeline = load_timeline()
    from treadle.tour.runner import STAGES, StageRun

    @dataclass(frozen=True)
    class Record:
        url: str
        body: bytes
        started: float
        finished: float

    records = [Record(f"http://x/<{n}>&", b"", 10 + n, 11 + n) for n in range(3)]
    run = StageRun(STAGES[0], [r.url for r in records], records, 10.0, 3.0)
    root = ET.fromstring(timeline.render([run], 'a "title" & more'))
    # The plot runs from x=100 to x=690; each fetch takes a third of the 3 s run.
    assert [(round(a), round(b)) for a, b in bars(root)] == [(100, 297), (297, 493), (493, 690)]
    labels = [t.text for t in root.iter(f"{SVG_NS}text") if t.get("class") == "label"]
    assert labels == ["/<0>&", "/<1>&", "/<2>&"]
    assert timeline.nice_step(2.5) == 0.5


if __name__ == "__main__":
    if sys.argv[1:] == ["--fix-anchors"]:
        print(f"moved {fix_anchors()} anchor(s) in {GUIDE.relative_to(ROOT)}")
        sys.exit(0)
    print(f"usage: python {sys.argv[0]} --fix-anchors", file=sys.stderr)
    sys.exit(2)
