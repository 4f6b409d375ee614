"""``benchmarks/compare_revisions.py`` run for real, small: HEAD against the working tree.

The echo mode runs its whole path (both revisions exported, a treadle-streams server per
revision kept running, the echo runner's interleaved rounds, the report and the JSON)
with a stand-in load generator: a short Python script that takes echo_load's options
and prints its ``RESULT`` line, so the test needs neither a C compiler nor
``echo_load.c``, which lives outside the repository. The core mode runs two of its
benchmarks at ``--quick`` sizes. A few seconds each. Also, without processes: each
revision's server gets its revision's ``src/``, a failed burst runs again only while its
server lives, and ``echo_load.c`` is found from a git worktree.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


compare = _load("bench_compare_revisions", BENCH / "compare_revisions.py")

# echo_load's command line and RESULT line, closed loop: each connection sends one
# message, reads its echo back, then the next; round trips inside the measured phase count.
STAND_IN_LOAD = """\
    import argparse, socket, time
    parser = argparse.ArgumentParser()
    for flag in ("--port", "--conns", "--size"):
        parser.add_argument(flag, type=int, required=True)
    for flag in ("--seconds", "--warmup"):
        parser.add_argument(flag, type=float, required=True)
    args = parser.parse_args()
    message = bytes(i % 251 for i in range(args.size))
    conns = [socket.create_connection(("127.0.0.1", args.port)) for _ in range(args.conns)]
    measured_from = time.monotonic() + args.warmup
    end = measured_from + args.seconds
    round_trips = mismatches = 0
    latencies = []
    while time.monotonic() < end:
        for conn in conns:
            started = time.monotonic()
            conn.sendall(message)
            echoed = b""
            while len(echoed) < len(message):
                chunk = conn.recv(len(message) - len(echoed))
                if not chunk:
                    raise SystemExit("the server closed a connection")
                echoed += chunk
            mismatches += echoed != message
            done = time.monotonic()
            if started >= measured_from and done <= end:
                round_trips += 1
                latencies.append(done - started)
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)] * 1e6 if latencies else 0.0
    print(f"RESULT rt={round_trips} rps={round_trips / args.seconds:.1f} p99_us={p99:.1f} "
          f"errors=0 mismatches={mismatches}")
"""


def _burst_order(err: str, round_prefix: str) -> list[str]:
    """Whose bursts a round ran, in order, from the progress lines (a re-run counted once)."""
    roles = [line.split()[7] for line in err.splitlines() if line.startswith(round_prefix)]
    return [role for role, _reruns in itertools.groupby(roles)]


def test_echo_mode_measures_both_revisions_in_alternated_bursts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    load = tmp_path / "echo_load"
    load.write_text(f"#!{sys.executable}\n" + textwrap.dedent(STAND_IN_LOAD))
    load.chmod(0o755)
    figures = tmp_path / "figures.json"
    status = compare.main([
        # The README's smoke run (--quick: as many echo rounds as --rounds), tiny bursts;
        # one retry, so a burst descheduled on a busy machine is run again, not failed.
        "HEAD", "WORKTREE", "--only", "echo", "--quick", "--rounds", "2", "--workloads", "1k_x10",
        "--seconds", "0.2", "--warmup", "0.1", "--retries", "1", "--quiet-wait", "0",
        "--load", str(load), "--json", str(figures),
    ])
    out, err = capsys.readouterr()
    assert status == 0, err

    # Old first in round 1, new first in round 2, each after one uncounted burst.
    assert _burst_order(err, "[round 1/2] 1 KiB x 10") == ["old", "new"]
    assert _burst_order(err, "[round 2/2] 1 KiB x 10") == ["new", "old"]
    assert "echo: both servers kept running, one uncounted burst each, then 2 round(s)" in out
    report_rows = [line for line in out.splitlines() if line.startswith("| echo 1 KiB x 10")]
    assert [row.split(" | ")[0] for row in report_rows] == [
        "| echo 1 KiB x 10", "| echo 1 KiB x 10, server CPU"]
    for row in report_rows:
        per_round = row.split(" | ")[4].replace("*", "").split()
        assert len(per_round) == 2 and all(float(ratio) > 0 for ratio in per_round), row

    rows = json.loads(figures.read_text())["rows"]
    assert [(row["name"], row["unit"]) for row in rows] == [
        ("echo 1 KiB x 10", "rt/s"), ("echo 1 KiB x 10, server CPU", "µs/rt")]
    for row in rows:
        for value in (*row["old"], *row["new"]):
            assert isinstance(value, float) and value > 0, row
        assert len(row["old"]) == len(row["new"]) == len(row["ratios"]) == 2


def test_each_revision_s_echo_server_runs_on_that_revision_s_src(tmp_path: Path) -> None:
    revisions = (compare.Revision("old", "abc1234", "abc1234", tmp_path / "old" / "src"),
                 compare.Revision("new", "WORKTREE", "working tree", tmp_path / "src"))
    servers = compare.echo_servers(revisions)
    envs = {server.name: r.env() for server, r in zip(servers, revisions, strict=True)}
    args = compare.echo_run.parse_args([])
    bench = compare.RevisionBench(None, args, Path("/nonexistent"), envs)
    for server, revision in zip(servers, revisions, strict=True):
        command, env = bench.server_command(server, 4321)
        assert command[1:] == [str(BENCH / "echo" / "treadle_streams.py"), "4321"]
        assert env["PYTHONPATH"] == str(revision.src)
        assert revision.role in server.label and revision.label in server.label


def test_core_mode_alternates_fresh_processes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    figures = tmp_path / "figures.json"
    status = compare.main(["HEAD", "WORKTREE", "--only", "switches,memory", "--quick",
                           "--rounds", "2", "--json", str(figures)])
    out, err = capsys.readouterr()
    assert status == 0, err
    for bench in ("switches", "memory"):
        assert [line.split()[3] for line in err.splitlines()
                if line.startswith("[round 1/2]") and line.split()[2] == bench] == ["old", "new"]
        assert [line.split()[3] for line in err.splitlines()
                if line.startswith("[round 2/2]") and line.split()[2] == bench] == ["new", "old"]
    assert "core: 2 round(s) of a fresh process per revision, --quick sizes" in out
    rows = json.loads(figures.read_text())["rows"]
    assert [row["name"] for row in rows] == ["switches", "memory"]
    for row in rows:
        assert all(isinstance(v, float) and v > 0 for v in (*row["old"], *row["new"])), row


def test_echo_load_source_is_found_beside_the_main_checkout_from_a_worktree(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    main_checkout, worktree = tmp_path / "main", tmp_path / "wt" / "branch"
    source = tmp_path / "shared" / "bench" / "echo_load.c"
    source.parent.mkdir(parents=True)
    source.write_text("int main(void) { return 0; }\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q", str(main_checkout)], check=True)
    subprocess.run([*git, "-C", str(main_checkout), "commit", "-q", "--allow-empty", "-m", "0"],
                   check=True)
    subprocess.run([*git, "-C", str(main_checkout), "worktree", "add", "-q", str(worktree)],
                   check=True)
    monkeypatch.delenv("ECHO_LOAD_SRC", raising=False)
    # Where the echo runner looks: shared/ beside the repository, here beside the worktree.
    beside_worktree = worktree.parent / "shared" / "bench" / "echo_load.c"
    monkeypatch.setattr(compare.echo_run, "default_load_source", lambda: beside_worktree)
    monkeypatch.setattr(compare, "REPO", worktree)
    assert compare.find_load_source() == source
    monkeypatch.setenv("ECHO_LOAD_SRC", str(beside_worktree))  # asked for: taken as it is
    assert compare.find_load_source() == beside_worktree
    monkeypatch.delenv("ECHO_LOAD_SRC")
    source.unlink()  # nowhere: the runner's own default, which its error message names
    assert compare.find_load_source() == beside_worktree
