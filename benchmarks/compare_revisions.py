"""Is treadle as fast as it was? Two git revisions side by side in one run, alternating.

Each revision's ``src/`` is exported with ``git archive`` to a temporary directory and
put first on ``PYTHONPATH`` for the processes that measure it; the benchmark code is
the working tree's for both (so both run the same workloads). Rounds alternate the two
revisions (old, new; then new, old; ...). Measured:

* the core micro-benchmarks of ``benchmarks/core`` (``child.py BENCH treadle``, one
  fresh process each, pinned with ``taskset``): switches, spawn, call_soon, timers,
  memory;
* the echo benchmark's treadle-streams server (``benchmarks/echo``: its server script,
  its runner's interleaved method and its C load generator ``echo_load``), per workload:
  one server per revision, both kept running; each round one short burst against each,
  the order reversed every other round, as ``echo/run.py`` runs its servers.

The report is a markdown table: each revision's median, the median of the per-round
new/old ratios, and every round's ratio. Progress goes to stderr, the report to stdout::

    .venv/bin/python benchmarks/compare_revisions.py a8ea8b5            # against HEAD
    .venv/bin/python benchmarks/compare_revisions.py a8ea8b5 main --rounds 5
    .venv/bin/python benchmarks/compare_revisions.py HEAD~1 WORKTREE --quick --rounds 1
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CORE_CHILD = HERE / "core" / "child.py"
CORE_BENCHMARKS = ("switches", "spawn", "call_soon", "timers", "memory")
# How each figure reads: True if higher is better.
HIGHER_IS_BETTER = {
    "switches": True,
    "spawn": True,
    "call_soon": True,
    "timers": False,
    "memory": False,
    "echo": True,
    "echo_cost": False,
}
CORE_UNITS = {
    "switches": "switches/s",
    "spawn": "tasks/s",
    "call_soon": "callbacks/s",
    "timers": "s for the timers",
    "memory": "bytes RSS per parked task",
}
WORKTREE = "WORKTREE"  # as a revision: the working tree's src/, uncommitted changes included
ECHO_SERVER = "treadle_streams"  # the echo runner's server measured at both revisions


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _load(name: str, path: Path) -> ModuleType:
    """Import the script at ``path`` as module ``name`` (``run.py`` is in several folders)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before it runs: its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


# The echo benchmark's runner (its Bench, servers, workloads and load generator) and the
# process plumbing and interleaved rounds it shares with the HTTP benchmark.
sys.path.insert(0, str(HERE / "echo"))
import harness  # noqa: E402  (benchmarks/echo/harness.py: the folder is not a package)

echo_run = _load("echo_run", HERE / "echo" / "run.py")
# The echo runner's interleaved burst: (measured seconds, warm-up seconds, rounds).
ECHO_SECONDS, ECHO_WARMUP, ECHO_ROUNDS = echo_run.MODE_DEFAULTS["interleaved"]


# --- the two revisions --------------------------------------------------------------------


@dataclass(frozen=True)
class Revision:
    role: str  # "old" or "new"
    spec: str  # what was asked for: a commit, a branch, HEAD~1, WORKTREE
    label: str  # the short commit (or "working tree")
    src: Path  # the exported src/ directory to put on PYTHONPATH

    def env(self) -> dict[str, str]:
        """The environment of a process that measures this revision."""
        env = harness.child_env()
        env["PYTHONPATH"] = str(self.src)
        return env


def export(role: str, spec: str, into: Path) -> Revision:
    """``spec``'s ``src/`` exported under ``into`` (``WORKTREE``: the working tree's own)."""
    if spec == WORKTREE:
        return Revision(role, spec, "working tree", REPO / "src")
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--verify", "--short", f"{spec}^{{commit}}"],
            cwd=REPO, capture_output=True, text=True, check=True,
        ).stdout.strip()
    except subprocess.CalledProcessError as exc:
        sys.exit(f"{spec!r} names no commit here: {exc.stderr.strip()}")
    target = into / role
    target.mkdir()
    archive = target / "src.tar"
    subprocess.run(
        ["git", "archive", "--format=tar", "-o", str(archive), commit, "src"], cwd=REPO, check=True
    )
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    archive.unlink()
    return Revision(role, spec, commit, target / "src")


def check_imports(revision: Revision) -> None:
    """Refuse to measure unless ``import treadle`` finds the revision's own copy."""
    found = subprocess.run(
        [sys.executable, "-c", "import treadle; print(treadle.__file__)"],
        env=revision.env(), capture_output=True, text=True,
    )
    path = Path(found.stdout.strip() or "?").resolve()
    if found.returncode != 0 or not path.is_relative_to(revision.src.resolve()):
        sys.exit(
            f"{revision.role} ({revision.label}): import treadle found {path}, not the "
            f"export in {revision.src}:\n{found.stderr.strip()}"
        )


def in_turn(revisions: tuple[Revision, Revision], round_number: int) -> list[Revision]:
    """Old then new in odd rounds, new then old in even ones (neither always goes first)."""
    return list(revisions) if round_number % 2 else list(reversed(revisions))


# --- the core micro-benchmarks --------------------------------------------------------------


def run_core_child(revision: Revision, bench: str, args: argparse.Namespace) -> float | None:
    command = [sys.executable, str(CORE_CHILD), bench, "treadle"]
    if args.quick:
        command.append("--quick")
    if shutil.which("taskset") and args.cpu is not None:
        command = ["taskset", "-c", str(args.cpu), *command]
    try:
        done = subprocess.run(
            command, env=revision.env(), capture_output=True, text=True, timeout=args.timeout
        )
    except subprocess.TimeoutExpired:
        log(f"  {bench} on {revision.role}: still running after {args.timeout}s, killed")
        return None
    lines = done.stdout.strip().splitlines()
    record = json.loads(lines[-1]) if lines else {"ok": False, "error": done.stderr[-500:]}
    if not record.get("ok"):
        log(f"  {bench} on {revision.role}: failed: {record.get('error')}")
        return None
    return float(record["value"])


# --- results and the report ---------------------------------------------------------------


@dataclass
class Row:
    """One figure, measured once per round for each revision (None: that run failed)."""

    name: str
    unit: str
    kind: str  # a key of HIGHER_IS_BETTER
    old: list[float | None]
    new: list[float | None]
    # Per round: whether a run of the pair shared its CPUs with other work (echo only).
    contended: list[bool] = field(default_factory=list)

    def ratios(self) -> list[float | None]:
        pairs = zip(self.old, self.new, strict=True)
        return [new / old if new is not None and old else None for old, new in pairs]


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1e6:
        return f"{value / 1e6:.2f}M"
    if abs(value) >= 1e4:
        return f"{value / 1e3:.0f}k"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def report(rows: list[Row], old: Revision, new: Revision, args: argparse.Namespace) -> str:
    kinds = {row.kind for row in rows}
    rounds = []
    if kinds - {"echo", "echo_cost"}:
        rounds.append(f"core: {args.rounds} round(s) of a fresh process per revision"
                      + (", --quick sizes" if args.quick else ""))
    if "echo" in kinds:
        rounds.append(f"echo: both servers kept running, one uncounted burst each, then "
                      f"{args.echo_rounds} round(s) of one burst per revision "
                      f"({args.seconds:g} s measured after {args.warmup:g} s warm-up)")
    lines = [
        f"### treadle {new.label} ({new.spec}) against {old.label} ({old.spec})",
        "",
        f"{harness.machine_summary()}; {'; '.join(rounds)}; the revisions alternating (old "
        "first in odd rounds). new/old is the median of the per-round ratios; whether more "
        "is better is in the last column (1.000: the same).",
        "",
    ]
    table = [
        [
            row.name,
            f"{fmt(median(row.old))} {row.unit}",
            f"{fmt(median(row.new))} {row.unit}",
            fmt_ratio(median(row.ratios())),
            " ".join(
                fmt_ratio(r) + ("*" if i < len(row.contended) and row.contended[i] else "")
                for i, r in enumerate(row.ratios())
            ),
            "higher" if HIGHER_IS_BETTER[row.kind] else "lower",
        ]
        for row in rows
    ]
    lines.append(
        harness.md_table(
            ["benchmark", f"old {old.label}", f"new {new.label}", "new/old", "per round",
             "better"],
            table,
        )
    )
    contended = sum(sum(row.contended) for row in rows if row.kind == "echo")
    if contended:
        lines += [
            "",
            f"\\* {contended} echo round(s) ran while other work shared the benchmark CPUs "
            "(even after retries): those ratios are suspect.",
        ]
    return "\n".join(lines) + "\n"


# --- the runs -------------------------------------------------------------------------------


def measure_core(
    revisions: tuple[Revision, Revision], benches: list[str], args: argparse.Namespace
) -> list[Row]:
    rows = {b: Row(b, CORE_UNITS[b], b, [], []) for b in benches}
    for number in range(1, args.rounds + 1):
        for bench in benches:
            for revision in in_turn(revisions, number):
                value = run_core_child(revision, bench, args)
                getattr(rows[bench], revision.role).append(value)
                log(f"[round {number}/{args.rounds}] {bench:<9} {revision.role} "
                    f"{revision.label}: {fmt(value)}")
    return list(rows.values())


class RevisionBench(echo_run.Bench):  # type: ignore[misc,name-defined]
    """The echo runner's Bench, each revision's server started on that revision's ``src/``."""

    def __init__(self, kids: Any, args: argparse.Namespace, load: Path,
                 envs: dict[str, dict[str, str]]) -> None:
        super().__init__(kids, args, load)
        self.envs = envs  # server name -> the environment of its revision

    def server_command(self, server: Any, port: int) -> tuple[list[str], dict[str, str]]:
        command, _source_tree_env = super().server_command(server, port)
        return command, self.envs[server.name]


def echo_servers(revisions: tuple[Revision, Revision]) -> list[Any]:
    """The echo runner's treadle-streams server once per revision, old first."""
    script = echo_run.ALL_SERVERS[ECHO_SERVER].argv
    return [echo_run.Server(f"{ECHO_SERVER}_{r.role}", f"treadle {r.role} {r.label}", script)
            for r in revisions]


def echo_arguments(args: argparse.Namespace) -> argparse.Namespace:
    """The echo runner's options (its defaults), with this run's rounds, bursts and CPUs."""
    echo_args = echo_run.parse_args([])
    vars(echo_args).update(
        rounds=args.echo_rounds, seconds=args.seconds, warmup=args.warmup,
        retries=args.retries, quiet_wait=args.quiet_wait, server_cpu=args.cpu,
        client_cpu=args.client_cpu, order="alternate",
    )
    return echo_args


def measure_echo(revisions: tuple[Revision, Revision], workload_names: list[str], load: Path,
                 args: argparse.Namespace) -> list[Row]:
    """Both revisions' echo servers kept running, in the echo runner's interleaved rounds.

    Per workload: one uncounted burst against each server, then ``--echo-rounds`` rounds
    of one burst each, old first in odd rounds (``harness.burst_order``). A server that
    fails is reported and dropped (its later rounds are None), and the workloads after it
    are not run: there is nothing left to compare.
    """
    workloads = [echo_run.ALL_WORKLOADS[name] for name in workload_names]
    servers = echo_servers(revisions)
    envs = {server.name: r.env() for server, r in zip(servers, revisions, strict=True)}
    results = echo_run.Results()
    with harness.children() as kids:
        bench = RevisionBench(kids, echo_arguments(args), load, envs)
        running = bench.start_all(servers)
        if len(running) < len(servers):
            why = {**bench.unavailable, **bench.failed}
            sys.exit("the echo servers could not start: "
                     + "; ".join(f"{name}: {reason}" for name, reason in why.items()))
        for wl in workloads:
            if len(running) < len(servers):
                break
            bench.interleave(
                servers, running,
                lambda _server, child, port, wl=wl: bench.burst(
                    child, port, wl, seconds=args.seconds, warmup=args.warmup),
                lambda name, sample, wl=wl: results.add(name, wl.name, sample),
                rng=None, workload=wl.label)
    rows = []
    for wl in workloads:
        old, new = (padded(results.of(server.name, wl.name), args.echo_rounds)
                    for server in servers)
        contended = [bool((a and a.contended) or (b and b.contended))
                     for a, b in zip(old, new, strict=True)]
        rows.append(Row(f"echo {wl.label}", "rt/s", "echo",
                        [s.rate if s else None for s in old],
                        [s.rate if s else None for s in new], contended))
        rows.append(Row(f"echo {wl.label}, server CPU", "µs/rt", "echo_cost",
                        [s.server_us if s else None for s in old],
                        [s.server_us if s else None for s in new], contended))
    return rows


def padded(samples: list[Any], rounds: int) -> list[Any]:
    """One entry per round: a dropped server's missing rounds as None."""
    return samples + [None] * (rounds - len(samples))


def find_load_source() -> Path:
    """``echo_load.c``: where the echo runner looks, else beside the main checkout.

    The echo runner looks in ``shared/bench`` beside the repository; a worktree is
    elsewhere, so its main checkout's neighbour is tried next.
    """
    default: Path = echo_run.default_load_source()
    if default.exists() or "ECHO_LOAD_SRC" in os.environ:
        return default
    common = subprocess.run(
        ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
        cwd=REPO, capture_output=True, text=True,
    ).stdout.strip()
    if common:
        beside_main = Path(common).parent.parent / "shared" / "bench" / "echo_load.c"
        if beside_main.exists():
            return beside_main
    return default


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", help="the revision to compare against (a commit, tag, branch)")
    parser.add_argument("new", nargs="?", default="HEAD",
                        help=f"the revision measured (default HEAD; {WORKTREE}: the working tree)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="alternated rounds of the core benchmarks (default 5)")
    parser.add_argument("--echo-rounds", type=int,
                        help=f"echo: alternated rounds per workload (default {ECHO_ROUNDS}, "
                             "as echo/run.py; with --quick, --rounds)")
    parser.add_argument("--only", default=",".join((*CORE_BENCHMARKS, "echo")),
                        help="what to run, from " + ",".join((*CORE_BENCHMARKS, "echo")))
    parser.add_argument("--quick", action="store_true",
                        help="a tenth of the core iterations; echo: --rounds rounds")
    parser.add_argument("--workloads", default="1k_x10,1k_x100,64k_x10",
                        help="echo workloads, from " + ",".join(echo_run.ALL_WORKLOADS))
    parser.add_argument("--seconds", type=float, default=ECHO_SECONDS,
                        help=f"echo: measured seconds per burst (default {ECHO_SECONDS:g})")
    parser.add_argument("--warmup", type=float, default=ECHO_WARMUP,
                        help=f"echo: echo_load's warm-up seconds per burst "
                             f"(default {ECHO_WARMUP:g})")
    parser.add_argument("--retries", type=int, default=2,
                        help="echo: re-runs of a burst that shared its CPUs with other work")
    parser.add_argument("--quiet-wait", type=float, default=15.0,
                        help="echo: seconds to wait for idle CPUs before each round")
    parser.add_argument("--cpu", type=int, default=0, help="CPU for the measured processes")
    parser.add_argument("--client-cpu", type=int, default=1, help="echo: CPU for echo_load")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds before a core child is abandoned")
    parser.add_argument("--load", type=Path, help="echo: an echo_load binary")
    parser.add_argument("--load-src", type=Path,
                        help="echo: echo_load.c, built into benchmarks/echo/.build/ (default: "
                             "shared/bench/ beside the repository or its main checkout)")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args(argv)
    chosen = [item.strip() for item in args.only.split(",") if item.strip()]
    unknown = set(chosen) - {*CORE_BENCHMARKS, "echo"}
    if unknown:
        parser.error(f"--only: unknown {', '.join(sorted(unknown))}")
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    if set(workloads) - set(echo_run.ALL_WORKLOADS):
        parser.error(f"--workloads: choose from {', '.join(echo_run.ALL_WORKLOADS)}")
    if args.echo_rounds is None:
        args.echo_rounds = args.rounds if args.quick else ECHO_ROUNDS
    if args.rounds < 1 or args.echo_rounds < 1:
        parser.error("--rounds and --echo-rounds must be at least 1")
    if not (0.1 <= args.seconds <= 600 and 0 <= args.warmup <= 60):
        parser.error("--seconds must be in [0.1, 600], --warmup in [0, 60]")
    load = None
    if "echo" in chosen:  # before the core runs: a missing load generator fails at once
        harness.require_schedstat()
        if (os.cpu_count() or 1) < 2:
            log("warning: fewer than 2 CPUs; the echo server and load generator share one")
            args.cpu = args.client_cpu = None
        load = echo_run.ensure_load_generator(args.load, args.load_src or find_load_source())

    with tempfile.TemporaryDirectory(prefix="treadle-revisions-") as tmp:
        revisions = (export("old", args.old, Path(tmp)), export("new", args.new, Path(tmp)))
        for revision in revisions:
            check_imports(revision)
            log(f"{revision.role}: {revision.spec} = {revision.label}, from {revision.src}")
        rows = measure_core(revisions, [b for b in CORE_BENCHMARKS if b in chosen], args)
        if load is not None:
            rows += measure_echo(revisions, workloads, load, args)
        print(report(rows, *revisions, args))
        if args.json:
            args.json.write_text(json.dumps(
                {"old": revisions[0].label, "new": revisions[1].label,
                 "rows": [{"name": r.name, "unit": r.unit, "old": r.old, "new": r.new,
                           "ratios": r.ratios()} for r in rows]}, indent=1))
    failed = any(v is None for row in rows for v in (*row.old, *row.new))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
