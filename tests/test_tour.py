"""Tests for the tour: the slow server, stages 1-6, the runner and ``treadle tour``.

Every stage runs once against one shared server (module-scoped fixtures) and the
tests assert on the per-URL records and on the concurrency the server saw.
"""

from __future__ import annotations

import ast
import difflib
import gc
import importlib
import io
import itertools
import os
import re
import socket
import subprocess
import sys
import threading
import time
import tokenize
from collections.abc import Iterator
from pathlib import Path

import pytest

import treadle
from treadle.tour import cli, common, runner, stage5_generators, stage6_treadle
from treadle.tour.runner import STAGES, StageRun
from treadle.tour.server import SlowServer, TourServerError, expected_body

DELAY = 0.3
N_URLS = 4
SERIAL = [1, 2]
CONCURRENT = [3, 4, 5, 6]
SELECTOR_STAGES = STAGES[1:5]  # stages 2-5 keep a bare module-level selector
ROOT = Path(__file__).resolve().parents[1]
SRC = str(ROOT / "src")
GUIDE = ROOT / "docs" / "how-coroutines-work.md"
TOUR = Path(common.__file__).parent
STAGE_SOURCES = {stage.number: TOUR / f"{stage.module}.py" for stage in STAGES}


@pytest.fixture(scope="module")
def server() -> Iterator[SlowServer]:
    with SlowServer(delay=DELAY) as server:
        yield server


@pytest.fixture(scope="module")
def urls(server: SlowServer) -> list[str]:
    return [server.url(f"/page/{number}") for number in range(N_URLS)]


@pytest.fixture(scope="module")
def runs(server: SlowServer, urls: list[str]) -> dict[int, tuple[StageRun, int]]:
    """Each stage's run over the same URLs, with the most connections the server saw."""
    results = {}
    for stage in STAGES:
        server.reset_peak()
        run = runner.run_stage(stage, urls)
        results[stage.number] = (run, server.peak_connections)
    return results


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port nothing listens on, for the whole test: bound and never listening.
    Held, not let go: a port let go could be taken and answered by another process (other
    test suites share the machine) before the test connects."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        yield probe.getsockname()[1]


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, env=env, timeout=30
    )


# --- The server ---------------------------------------------------------------------


def test_expected_body_is_deterministic_and_differs_per_path() -> None:
    assert expected_body("/page/1") == expected_body("/page/1")
    assert expected_body("/page/1") != expected_body("/page/2")
    assert len(expected_body("/page/1")) > 4096  # more than one recv's worth


def test_server_sends_headers_then_body_slowly(server: SlowServer) -> None:
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /page/7 HTTP/1.0\r\nHost: x\r\n\r\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    elapsed = time.monotonic() - began
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.0 200 OK"
    assert f"Content-Length: {len(body)}" in lines
    assert "Connection: close" in lines
    assert body == expected_body("/page/7")
    assert elapsed >= DELAY * 0.9
    assert len(chunks) > 1


def test_server_that_cannot_bind_says_why() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(TourServerError) as caught:
            SlowServer(port=port).start()
    message = str(caught.value)
    assert f"tour server could not bind 127.0.0.1:{port}" in message
    assert "Address already in use" in message


def test_server_close_joins_its_threads() -> None:
    before = set(threading.enumerate())
    server = SlowServer(delay=30.0)
    # A connection mid-response when the server closes: close cuts it short, well before
    # the 30 s the response would take (the margin is for a busy machine's stalls).
    with server, socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.0 200 OK")
        began = time.monotonic()
        server.close()
        closed_after = time.monotonic() - began
        assert closed_after < 10.0, f"close() took {closed_after:.2f} s"
    assert set(threading.enumerate()) - before == set()


# --- The stages ---------------------------------------------------------------------


@pytest.mark.parametrize("number", [stage.number for stage in STAGES])
def test_stage_fetches_the_right_bytes(
    number: int, runs: dict[int, tuple[StageRun, int]], urls: list[str]
) -> None:
    run, _peak = runs[number]
    assert [record.url for record in run.records] == urls
    for number_in_path, record in enumerate(run.records):
        assert record.body == expected_body(f"/page/{number_in_path}")
        assert record.started <= record.finished
    assert run.correct == N_URLS


@pytest.mark.parametrize("number", SERIAL)
def test_serial_stages_fetch_one_url_at_a_time(
    number: int, runs: dict[int, tuple[StageRun, int]]
) -> None:
    run, peak = runs[number]
    assert peak == 1
    for before, after in zip(run.records, run.records[1:], strict=False):
        assert after.started >= before.finished


@pytest.mark.parametrize("number", CONCURRENT)
def test_concurrent_stages_overlap_every_fetch(
    number: int, runs: dict[int, tuple[StageRun, int]]
) -> None:
    run, peak = runs[number]
    serial, _ = runs[1]
    assert peak == N_URLS
    # Every fetch started before any finished.
    assert max(r.started for r in run.records) < min(r.finished for r in run.records)
    assert run.seconds <= serial.seconds / 2


@pytest.mark.parametrize("stage", SELECTOR_STAGES, ids=lambda stage: stage.module)
def test_a_refused_url_leaves_the_selector_empty(
    stage: runner.Stage, urls: list[str], refused_port: int
) -> None:
    module = importlib.import_module(f"treadle.tour.{stage.module}")
    refused = f"http://127.0.0.1:{refused_port}/"
    with pytest.raises(ConnectionRefusedError) as caught:
        module.fetch_all([urls[0], refused, urls[1]])
    assert caught.value.filename == refused
    del caught
    gc.collect()  # any socket left unclosed would warn now, and warnings are errors
    assert len(module.selector.get_map()) == 0
    assert [record.body for record in module.fetch_all(urls[:1])] == [expected_body("/page/0")]


def test_stage6_a_refused_url_cancels_the_other_fetches_and_closes_them(
    urls: list[str], refused_port: int
) -> None:
    refused = f"http://127.0.0.1:{refused_port}/"
    with pytest.raises(ConnectionRefusedError) as caught:
        stage6_treadle.fetch_all([urls[0], refused, urls[1]])
    assert caught.value.filename == refused
    del caught
    # treadle.run cancelled the two good fetches, and their ``async with writer``
    # closed the connections; one left open would warn now, and warnings are errors.
    gc.collect()
    records = stage6_treadle.fetch_all(urls[:1])
    assert [record.body for record in records] == [expected_body("/page/0")]


def test_stage6_uses_only_treadles_public_api() -> None:
    source = Path(stage6_treadle.__file__).read_text()
    tree = ast.parse(source)
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not any(name.startswith("treadle.") for name in imported)
    # From treadle it imports only the tour's idea-free helpers.
    assert {
        module for module in imported_modules(STAGE_SOURCES[6]) if module.startswith("treadle.")
    } == {"treadle.tour.common"}
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "treadle"
    }
    assert used == {"run", "open_connection", "gather"}
    assert used <= set(treadle.__all__)


def test_stage5_exception_travels_up_the_yield_from_chain(refused_port: int) -> None:
    url = f"http://127.0.0.1:{refused_port}/"
    text = stage5_generators.demonstrate_exception(url)
    assert text.startswith("Traceback (most recent call last):")
    last_line = text.rstrip().splitlines()[-1]
    assert last_line == f"ConnectionRefusedError: [Errno 111] Connection refused: {url!r}"
    frames = [line.split(", in ")[1] for line in text.splitlines() if ", in " in line]
    assert frames == ["demo", "fetch", "connect", "check_connected"]


def test_stage5_by_hand_shows_the_traceback() -> None:
    done = run_module("treadle.tour.stage5_generators", "--demo-exception")
    assert done.returncode == 0
    assert ", in connect" in done.stdout
    assert "ConnectionRefusedError" in done.stdout


@pytest.mark.parametrize("stage", STAGES, ids=lambda stage: stage.module)
def test_stage_by_hand_reports_a_refused_url_in_one_line(
    stage: runner.Stage, refused_port: int
) -> None:
    url = f"http://127.0.0.1:{refused_port}/"
    done = run_module(f"treadle.tour.{stage.module}", url)
    assert done.returncode == 1
    assert done.stderr == f"error: {url} refused the connection (ConnectionRefusedError)\n"
    assert done.stdout == ""


@pytest.mark.parametrize("stage", STAGES, ids=lambda stage: stage.module)
def test_stage_by_hand_prints_a_summary(
    stage: runner.Stage, urls: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    module = importlib.import_module(f"treadle.tour.{stage.module}")
    assert common.run_by_hand(module.fetch_all, module.__name__, urls[:2]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{urls[0]}  {len(expected_body('/page/0'))} bytes")
    assert out[-1].startswith("fetched 2 URL(s) in ")


# --- Each stage holds its idea ------------------------------------------------------


def code_lines(path: Path) -> list[str]:
    """The lines of a module that do something: no blank lines, comments, docstrings or
    imports, and no indentation (as the ``duplicates`` tool compares them)."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    left_out: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            left_out.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
        is_scope = isinstance(
            node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
        )
        if is_scope and ast.get_docstring(node, clean=False) is not None:
            docstring = node.body[0]
            left_out.update(range(docstring.lineno, (docstring.end_lineno or 0) + 1))
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            row, column = token.start
            lines[row - 1] = lines[row - 1][:column]
    return [
        line.strip()
        for number, line in enumerate(lines, 1)
        if number not in left_out and line.strip()
    ]


def shared_lines(one: list[str], other: list[str], shortest_run: int = 6) -> int:
    """How many lines two modules share in runs of at least ``shortest_run`` lines."""
    matcher = difflib.SequenceMatcher(None, one, other, autojunk=False)
    return sum(block.size for block in matcher.get_matching_blocks() if block.size >= shortest_run)


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, by its full name (``from treadle.tour import common``
    imports ``treadle.tour.common``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module == "treadle.tour":
            names.update(f"treadle.tour.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def top_level_definitions(path: Path) -> dict[str, str]:
    """Each function, class and assignment at a module's top level: its AST, no docstrings."""
    found = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            for scope in ast.walk(node):
                is_scope = isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                if is_scope and ast.get_docstring(scope, clean=False) is not None:
                    scope.body = scope.body[1:]
            found[node.name] = ast.dump(node)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = ast.dump(node)
    return found


def is_standard_library(module: str) -> bool:
    return module.split(".")[0] in sys.stdlib_module_names


@pytest.mark.parametrize("number", [stage.number for stage in STAGES])
def test_stages_import_the_standard_library_common_earlier_stages_and_at_six_treadle(
    number: int,
) -> None:
    foreign = {
        module
        for module in imported_modules(STAGE_SOURCES[number])
        if not is_standard_library(module)
    }
    earlier = {f"treadle.tour.{stage.module}" for stage in STAGES if stage.number < number}
    assert foreign - earlier == (
        {"treadle", "treadle.tour.common"} if number == 6 else {"treadle.tour.common"}
    )


def test_common_imports_only_the_standard_library() -> None:
    assert all(map(is_standard_library, imported_modules(TOUR / "common.py")))


def test_common_holds_what_stages_share_and_no_stage_redefines_it() -> None:
    provided = {
        name for name in top_level_definitions(TOUR / "common.py") if not name.startswith("_")
    }
    users: dict[str, set[int]] = {name: set() for name in provided}
    for number, path in STAGE_SOURCES.items():
        assert not provided & set(top_level_definitions(path)), f"stage {number} redefines"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            # Stages name what they use from common as ``common.<name>``.
            if isinstance(node, ast.Attribute) and ast.unparse(node.value) == "common":
                users[node.attr].add(number)
    # What only one stage needs belongs in that stage.
    assert {name: stages for name, stages in users.items() if len(stages) < 2} == {}


# Before common.py, every two stages shared 40 to 89 code lines (the URL, request,
# response and record helpers and the command line, in every file), and each stage
# carried its predecessor's Fetcher, Future or loop forward by copy. Now a stage defines
# only what its lesson changes and imports the rest from the stage that introduced it,
# so no two stages share a run of code lines as long as the ``duplicates`` tool's six.
@pytest.mark.parametrize(
    ("earlier", "later"),
    list(itertools.combinations(STAGE_SOURCES, 2)),
    ids=lambda number: f"stage{number}",
)
def test_no_two_stages_share_a_run_of_code(earlier: int, later: int) -> None:
    shared = shared_lines(code_lines(STAGE_SOURCES[earlier]), code_lines(STAGE_SOURCES[later]))
    assert shared == 0


def test_no_stage_copies_a_definition_from_an_earlier_stage() -> None:
    introduced: dict[str, int] = {}  # a definition's AST: the stage that defined it
    for number, path in STAGE_SOURCES.items():
        for name, definition in top_level_definitions(path).items():
            assert definition not in introduced, (
                f"stage {number} repeats stage {introduced[definition]}'s {name}: import it"
            )
            introduced[definition] = number


def test_stage3_is_stage2_with_a_new_fetch_all() -> None:
    stage2, stage3 = (
        importlib.import_module(f"treadle.tour.{STAGES[number - 1].module}") for number in (2, 3)
    )
    assert set(top_level_definitions(STAGE_SOURCES[3])) == {"fetch_all"}
    assert (stage3.Fetcher, stage3.selector) == (stage2.Fetcher, stage2.selector)
    assert stage3.fetch_all is not stage2.fetch_all


# The stages each later stage imports what it keeps from.
BUILDS_ON = {3: {2}, 4: {2}, 5: {2, 4}}


@pytest.mark.parametrize("number", BUILDS_ON, ids=lambda number: f"stage{number}")
def test_later_stages_import_what_they_keep(number: int) -> None:
    stages = {
        stage.number
        for stage in STAGES
        if f"treadle.tour.{stage.module}" in imported_modules(STAGE_SOURCES[number])
    }
    assert stages == BUILDS_ON[number]


def guide_diffs() -> list[str]:
    return re.findall(r"^```diff\n(.*?)^```$", GUIDE.read_text(encoding="utf-8"), re.M | re.S)


def is_subsequence(lines: list[str], of: list[str]) -> bool:
    remaining = iter(of)
    return all(line in remaining for line in lines)


@pytest.mark.parametrize("diff", guide_diffs(), ids=lambda diff: diff.splitlines()[0].strip())
def test_the_guides_diffs_are_diffs_between_neighbouring_stages(diff: str) -> None:
    rows = [row for row in diff.splitlines() if row.strip()]
    before = [row[1:].strip() for row in rows if row[0] in " -"]
    after = [row[1:].strip() for row in rows if row[0] in " +"]
    assert any(
        is_subsequence(before, code_lines(STAGE_SOURCES[number]))
        and is_subsequence(after, code_lines(STAGE_SOURCES[number + 1]))
        for number in list(STAGE_SOURCES)[:-1]
    )


def test_the_guide_shows_stage_diffs() -> None:
    assert len(guide_diffs()) >= 2  # stage 2 to 3, and stage 5 to 6


# --- treadle tour -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--stage", "9"], "--stage must be one of 1, 2, 3, 4, 5, 6, got 9"),
        (["--urls", "0"], "--urls must be a positive integer, got 0"),
        (["--urls", "-3"], "--urls must be a positive integer, got -3"),
        (["--urls", "many"], "--urls must be a positive integer, got many"),
        (["--delay", "-1"], "--delay must be a number of seconds, 0 or more, got -1"),
        (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    ],
)
def test_cli_bad_input_is_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err == f"treadle tour: error: {message}\n"
    assert captured.out == ""


def test_cli_bad_input_from_the_shell_is_one_line() -> None:
    done = run_module("treadle.tour.cli", "--urls", "-3")
    assert done.returncode == 2
    assert done.stderr == "treadle tour: error: --urls must be a positive integer, got -3\n"
    assert "Traceback" not in done.stdout + done.stderr


def test_cli_runs_every_stage_and_draws_timelines(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--urls", "2", "--delay", "0.05"]) == 0
    out = capsys.readouterr().out
    for stage in STAGES:
        assert f"stage {stage.number}: {stage.idea} (" in out  # a timeline heading
    table = out[out.index("stage  idea") :].split("\n\n")[0].splitlines()
    assert len(table) == 1 + len(STAGES)
    assert all(" 2/2 " in row for row in table[1:])
    assert table[1].rstrip().endswith("1.0x")
    assert table[-1].split()[:2] == ["6", "async/await"]
    assert "/page/1 |#" in out


def test_cli_single_stage_has_no_speedup(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--stage", "3", "--urls", "3", "--delay", "0.05"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("    3  "))
    assert row.split()[-1] == "-"
    assert "3/3" in row


def test_timeline_shows_overlap() -> None:
    stage = STAGES[0]

    class Record:
        def __init__(self, url: str, started: float, finished: float) -> None:
            self.url, self.body, self.started, self.finished = url, b"", started, finished

    serial = StageRun(stage, ["a", "b"], [Record("/a", 0, 1), Record("/b", 1, 2)], 0, 2)
    text = runner.format_timelines([serial], width=10)
    assert "/a |#####     |" in text
    assert "/b |     #####|" in text
