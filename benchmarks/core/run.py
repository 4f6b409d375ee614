"""Run the core micro-benchmarks across frameworks and print a markdown table.

Every (benchmark, framework) measurement is a fresh ``child.py`` process pinned
to one CPU with ``taskset``; rounds are alternated (all frameworks for one
benchmark, then the next benchmark, then the whole set again) and the table
shows per-cell medians over the rounds. Usage::

    .venv/bin/python benchmarks/core/run.py [--rounds 5] [--only switches,spawn]
        [--frameworks asyncio,treadle] [--quick] [--json OUT] [--no-gc]

A framework that cannot be imported is reported as "NAME: not available (...)"
and skipped; a child that fails is reported and its cell reads "error".
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import workloads  # noqa: E402  (sibling module; this directory is not a package)

CHILD = HERE / "child.py"
ROOT = HERE.parent.parent

# How each benchmark's figure reads: "rate" (higher is better) or "cost" (lower is better).
KIND = {
    "switches": "rate",
    "spawn": "rate",
    "call_soon": "rate",
    "timers": "cost",
    "memory": "cost",
}


def row_label(bench: str, n: int) -> str:
    return {
        "switches": "switches/s",
        "spawn": "spawn tasks/s",
        "call_soon": "call_soon callbacks/s",
        "timers": f"{n // 1000}k call_later timers, total seconds",
        "memory": "bytes RSS per parked task",
    }[bench]


def fmt_value(bench: str, value: float) -> str:
    if bench == "timers":
        return f"{value:.3f}"
    if bench == "memory":
        return f"{value:,.0f}"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e3:
        return f"{value / 1e3:.0f}k"
    return f"{value:.0f}"


def treadle_ratio(bench: str, asyncio_value: float, treadle_value: float) -> float:
    """Always oriented so that > 1 means treadle is better."""
    if KIND[bench] == "rate":
        return treadle_value / asyncio_value
    return asyncio_value / treadle_value


def csv_choice(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    chosen = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in chosen if item not in allowed]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (choose from {', '.join(allowed)})")
    return [item for item in allowed if item in chosen]  # canonical order


# The interpreter of the environment the compiled wheel is installed in (--compiled-python).
COMPILED_PYTHON = [str(ROOT / ".venv-compiled" / "bin" / "python")]


def python_command(framework: str, curio_asserts: bool) -> list[str]:
    command = list(COMPILED_PYTHON) if framework == "treadle-compiled" else [sys.executable]
    if framework == "curio" and not curio_asserts:
        # curio 1.6's Kernel.reschedule_task asserts `task not in ready`, a scan of
        # the whole ready deque; with 100k freshly spawned tasks that makes spawn
        # and memory quadratic. -O strips the assert; see README.md.
        command.append("-O")
    return command


def last_json_line(text: str) -> dict[str, Any] | None:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                record: dict[str, Any] = json.loads(line)
            except ValueError:
                return None
            return record
    return None


def probe(framework: str) -> str | None:
    """None if the framework imports (and, for treadle, has its API); else the error."""
    try:
        proc = subprocess.run(
            [*python_command(framework, True), str(CHILD), "--probe", framework],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        return "import timed out"
    record = last_json_line(proc.stdout)
    if record is None:
        tail = proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        return tail[0]
    return None if record.get("ok") else str(record.get("error"))


def measure(
    bench: str, framework: str, args: argparse.Namespace, pin: list[str]
) -> tuple[float | None, str | None]:
    command = [*pin, *python_command(framework, args.curio_asserts), str(CHILD), bench, framework]
    if args.quick:
        command.append("--quick")
    if args.no_gc:
        command.append("--no-gc")
    try:
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=args.timeout, cwd=HERE
        )
    except subprocess.TimeoutExpired:
        return None, f"timed out after {args.timeout}s"
    record = last_json_line(proc.stdout)
    if record is not None and record.get("ok"):
        return float(record["value"]), None
    if record is not None:
        return None, str(record.get("error"))
    tail = proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
    return None, tail[0]


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = [
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths))
        + "|"
    )
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Core micro-benchmarks: treadle against asyncio, uvloop, trio, curio "
        "and a bare-Python floor."
    )
    parser.add_argument("--rounds", type=int, default=5, help="alternated rounds (default 5)")
    parser.add_argument(
        "--only",
        default=",".join(workloads.BENCHMARKS),
        help="comma-separated benchmarks (default: all)",
    )
    parser.add_argument(
        "--frameworks",
        default=",".join(workloads.FRAMEWORKS),
        help="comma-separated frameworks (default: all)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: 1/{workloads.QUICK_DIVISOR} of the iterations",
    )
    parser.add_argument("--json", metavar="OUT", help="also save raw per-round results here")
    parser.add_argument("--cpu", type=int, default=0, help="CPU to pin children to (default 0)")
    parser.add_argument(
        "--compiled-python",
        default=COMPILED_PYTHON[0],
        help="the Python of the environment the compiled wheel is installed in, for "
        "treadle-compiled (default: .venv-compiled/bin/python; docs/compiled.md)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds before a child is abandoned; a pair that times out is not retried "
        "in later rounds (default 300)",
    )
    parser.add_argument(
        "--no-gc",
        action="store_true",
        help="disable the cyclic GC in the children (default: GC on, as users run)",
    )
    parser.add_argument(
        "--curio-asserts",
        action="store_true",
        help="run curio without -O (its ready-queue assert turns spawn and memory quadratic)",
    )
    args = parser.parse_args(argv)
    COMPILED_PYTHON[0] = args.compiled_python
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    benches = csv_choice(args.only, workloads.BENCHMARKS, "benchmark")
    frameworks = csv_choice(args.frameworks, workloads.FRAMEWORKS, "framework")

    taskset = shutil.which("taskset")
    pin = [taskset, "-c", str(args.cpu)] if taskset else []
    if not taskset:
        print("warning: taskset not found; children run unpinned", file=sys.stderr)

    unavailable: dict[str, str] = {}
    for framework in frameworks:
        error = probe(framework)
        if error is not None:
            unavailable[framework] = error
            print(f"{framework}: not available ({error})", flush=True)
    live = [fw for fw in frameworks if fw not in unavailable]

    divisor = workloads.QUICK_DIVISOR if args.quick else 1
    sizes = {bench: workloads.SIZES[bench] // divisor for bench in benches}
    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "executable": sys.executable,
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "pinned_cpu": args.cpu if taskset else None,
        "rounds": args.rounds,
        "quick": args.quick,
        "gc": not args.no_gc,
        "curio_optimize": not args.curio_asserts,
        "sizes": sizes,
    }

    # values[bench][framework][round] is the figure, or None where that child failed.
    values: dict[str, dict[str, list[float | None]]] = {
        b: {f: [] for f in live if f in workloads.SUPPORTED[b]} for b in benches
    }
    errors: dict[str, dict[str, list[str]]] = {b: {f: [] for f in values[b]} for b in benches}
    given_up: set[tuple[str, str]] = set()
    for round_no in range(1, args.rounds + 1):
        for bench in benches:
            for framework in values[bench]:
                if (bench, framework) in given_up:
                    values[bench][framework].append(None)
                    continue
                value, error = measure(bench, framework, args, pin)
                if error is not None and error.startswith("timed out"):
                    given_up.add((bench, framework))  # a hang would only hang again
                values[bench][framework].append(value)
                if error is not None:
                    errors[bench][framework].append(error)
                shown = f"ERROR: {error}" if error is not None else fmt_value(bench, value or 0.0)
                print(
                    f"round {round_no}/{args.rounds} {bench:9} {framework:8} {shown}",
                    file=sys.stderr,
                    flush=True,
                )

    def ok(runs: list[float | None]) -> list[float]:
        return [v for v in runs if v is not None]

    medians = {
        bench: {fw: statistics.median(ok(runs)) for fw, runs in per_fw.items() if ok(runs)}
        for bench, per_fw in values.items()
    }

    def round_ratios(bench: str) -> list[float]:
        """treadle-vs-asyncio ratio of each round where both children succeeded."""
        pairs = zip(
            values[bench].get("asyncio", []), values[bench].get("treadle", []), strict=False
        )
        return [treadle_ratio(bench, a, t) for a, t in pairs if a and t]

    def cell(bench: str, framework: str) -> str:
        if framework in unavailable:
            return "n/a"
        if framework not in workloads.SUPPORTED[bench]:
            return "-"
        if framework not in medians[bench]:
            return "error"
        return fmt_value(bench, medians[bench][framework])

    with_ratio = "asyncio" in frameworks and "treadle" in frameworks
    header = ["benchmark", *frameworks]
    spread_header = ["benchmark", *frameworks]
    if with_ratio:
        header.append("treadle vs asyncio (>1 = treadle better)")
        spread_header.append("treadle vs asyncio, per-round range")
    rows = []
    spread_rows = []
    ratios: dict[str, list[float]] = {}
    for bench in benches:
        row = [row_label(bench, sizes[bench]), *(cell(bench, fw) for fw in frameworks)]
        spread = [bench]
        for fw in frameworks:
            runs = ok(values[bench].get(fw, []))
            if len(runs) >= 2 and statistics.median(runs):
                spread.append(f"{(max(runs) - min(runs)) / statistics.median(runs):.0%}")
            else:
                spread.append("-")
        if with_ratio:
            ratios[bench] = round_ratios(bench)
            if ratios[bench]:
                how = "treadle/asyncio" if KIND[bench] == "rate" else "asyncio/treadle"
                row.append(f"{statistics.median(ratios[bench]):.2f}x ({how})")
                spread.append(f"{min(ratios[bench]):.2f}-{max(ratios[bench]):.2f}")
            else:
                row.append("-")
                spread.append("-")
        rows.append(row)
        spread_rows.append(spread)

    print(f"# treadle core micro-benchmarks ({meta['date']})")
    print()
    print(
        f"Python {meta['python']} on {meta['cpu_model']} ({meta['cpus']} CPUs); each cell is "
        f"the median of {args.rounds} fresh processes"
        + (f" pinned to CPU {args.cpu}" if taskset else " (unpinned)")
        + "; rounds alternated across frameworks."
        + (" QUICK run (1/10 of the iterations)." if args.quick else "")
        + (" Cyclic GC disabled in the children." if args.no_gc else " Cyclic GC on.")
        + (" curio run with -O (see README)." if "curio" in live and not args.curio_asserts else "")
    )
    print()
    print(markdown_table(header, rows))
    print()
    if with_ratio:
        print(
            "Ratio column: for rates (switches, spawn, call_soon) treadle/asyncio; for "
            "timers (seconds) and memory (bytes) asyncio/treadle. In every row >1 means "
            "treadle is better. It is the median of the per-round ratios (asyncio and treadle "
            "are paired within each round), so it can differ slightly "
            "from the ratio of the two medians shown."
        )
        print()
    print("Round-to-round spread, (max - min) / median:")
    print()
    print(markdown_table(spread_header, spread_rows))
    failed = [(b, f, errs) for b, per_fw in errors.items() for f, errs in per_fw.items() if errs]
    if failed:
        print()
        print("Failures:")
        for bench, framework, errs in failed:
            for error in dict.fromkeys(errs):  # distinct messages, first-seen order
                times = errs.count(error)
                print(f"- {bench} / {framework} ({times}/{args.rounds} rounds): {error}")

    if args.json:
        out = {
            "meta": meta,
            "unavailable": unavailable,
            "values": values,
            "medians": medians,
            "treadle_vs_asyncio_per_round": ratios,
            "errors": errors,
        }
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
