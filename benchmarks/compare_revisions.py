"""Is treadle as fast as it was? Two git revisions side by side in one run, alternating.

Each revision's ``src/`` is exported with ``git archive`` to a temporary directory and
put first on ``PYTHONPATH`` for the processes that measure it; the benchmark code is
the working tree's for both (so both run the same workloads). Rounds alternate the two
revisions (old, new; then new, old; ...). Measured:

* the core micro-benchmarks of ``benchmarks/core`` (``child.py BENCH treadle``, one
  fresh process each, pinned with ``taskset``): switches, spawn, call_soon, timers,
  memory;
* the echo benchmark's treadle-streams server (``benchmarks/echo``: its server script,
  its runner's measurement and its C load generator ``echo_load``), per workload.

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
# process plumbing it shares with the HTTP benchmark.
sys.path.insert(0, str(HERE / "echo"))
import harness  # noqa: E402  (benchmarks/echo/harness.py: the folder is not a package)

echo_run = _load("echo_run", HERE / "echo" / "run.py")


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
    if shutil.which("taskset"):
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
    lines = [
        f"### treadle {new.label} ({new.spec}) against {old.label} ({old.spec})",
        "",
        f"{harness.machine_summary()}; {args.rounds} round(s), the revisions alternating "
        f"(old first in odd rounds){'; --quick sizes' if args.quick else ''}. new/old is "
        "the median of the per-round ratios; whether more is better is in the last column "
        "(1.000: the same).",
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
    """The echo runner's measurement, with each revision's server on its own PYTHONPATH."""

    def __init__(self, kids: Any, args: argparse.Namespace, load: Path,
                 envs: dict[str, dict[str, str]]) -> None:
        super().__init__(kids, args, load)
        self.envs = envs

    def start(self, server: Any) -> Any:
        self.env = self.envs[server.name]
        return super().start(server)


def measure_echo(
    revisions: tuple[Revision, Revision], workload_names: list[str], args: argparse.Namespace
) -> list[Row]:
    workloads = [echo_run.ALL_WORKLOADS[name] for name in workload_names]
    script = echo_run.ALL_SERVERS["treadle_streams"].argv
    servers = {
        r.role: echo_run.Server(f"treadle_streams_{r.role}", f"treadle streams {r.role}", script)
        for r in revisions
    }
    envs = {servers[r.role].name: r.env() for r in revisions}
    load = echo_run.ensure_load_generator(args.load, args.load_src)
    echo_args = argparse.Namespace(
        rounds=1, seconds=args.seconds, warmup=args.warmup, retries=args.retries,
        quiet_wait=args.quiet_wait, server_cpu=args.cpu, client_cpu=args.client_cpu,
        cold_malloc=False,
    )
    samples: dict[tuple[str, str], list[Any]] = {}
    with harness.children() as kids:
        bench = RevisionBench(kids, echo_args, load, envs)
        for number in range(1, args.rounds + 1):
            order = [servers[r.role] for r in in_turn(revisions, number)]
            log(f"echo round {number}/{args.rounds}")
            results = echo_run.run_throughput(bench, order, workloads)
            for key, taken in results.samples.items():
                samples.setdefault(key, []).extend(taken)
        if bench.unavailable:
            sys.exit(f"the echo server could not start: {bench.unavailable}")
    rows = []
    for wl in workloads:
        old = samples.get((servers["old"].name, wl.name), [])
        new = samples.get((servers["new"].name, wl.name), [])
        contended = [bool((a and a.contended) or (b and b.contended))
                     for a, b in zip(old, new, strict=True)]
        rows.append(Row(f"echo {wl.label}", "rt/s", "echo", [s.rps if s else None for s in old],
                        [s.rps if s else None for s in new], contended))
        rows.append(Row(f"echo {wl.label}, server CPU", "µs/rt", "echo_cost",
                        [_cost(s) for s in old], [_cost(s) for s in new], contended))
    return rows


def _cost(sample: Any) -> float | None:
    """The server's CPU time per round trip, in µs (None if the run failed)."""
    return sample.cpu_share / sample.rps * 1e6 if sample and sample.rps else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", help="the revision to compare against (a commit, tag, branch)")
    parser.add_argument("new", nargs="?", default="HEAD",
                        help=f"the revision measured (default HEAD; {WORKTREE}: the working tree)")
    parser.add_argument("--rounds", type=int, default=5, help="alternated rounds (default 5)")
    parser.add_argument("--only", default=",".join((*CORE_BENCHMARKS, "echo")),
                        help="what to run, from " + ",".join((*CORE_BENCHMARKS, "echo")))
    parser.add_argument("--quick", action="store_true",
                        help="a tenth of the core iterations; echo runs 1 s after 0.2 s warm-up")
    parser.add_argument("--workloads", default="1k_x10,1k_x100,64k_x10",
                        help="echo workloads, from " + ",".join(echo_run.ALL_WORKLOADS))
    parser.add_argument("--seconds", type=float, default=3.0, help="echo: measured seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="echo: warm-up seconds")
    parser.add_argument("--retries", type=int, default=2,
                        help="echo: re-runs of a run that shared its CPUs with other work")
    parser.add_argument("--quiet-wait", type=float, default=15.0,
                        help="echo: seconds to wait for idle CPUs before each run")
    parser.add_argument("--cpu", type=int, default=0, help="CPU for the measured processes")
    parser.add_argument("--client-cpu", type=int, default=1, help="echo: CPU for echo_load")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds before a core child is abandoned")
    parser.add_argument("--load", type=Path, help="echo: an echo_load binary")
    parser.add_argument("--load-src", type=Path, default=echo_run.default_load_source(),
                        help="echo: echo_load.c, built into benchmarks/echo/.build/")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args(argv)
    chosen = [item.strip() for item in args.only.split(",") if item.strip()]
    unknown = set(chosen) - {*CORE_BENCHMARKS, "echo"}
    if unknown:
        parser.error(f"--only: unknown {', '.join(sorted(unknown))}")
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    if set(workloads) - set(echo_run.ALL_WORKLOADS):
        parser.error(f"--workloads: choose from {', '.join(echo_run.ALL_WORKLOADS)}")
    if args.quick:
        args.seconds, args.warmup = min(args.seconds, 1.0), min(args.warmup, 0.2)

    with tempfile.TemporaryDirectory(prefix="treadle-revisions-") as tmp:
        revisions = (export("old", args.old, Path(tmp)), export("new", args.new, Path(tmp)))
        for revision in revisions:
            check_imports(revision)
            log(f"{revision.role}: {revision.spec} = {revision.label}, from {revision.src}")
        rows = measure_core(revisions, [b for b in CORE_BENCHMARKS if b in chosen], args)
        if "echo" in chosen:
            rows += measure_echo(revisions, workloads, args)
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
