"""Measure one (benchmark, framework) pair in this process and print one JSON line.

Meant to be started by ``run.py`` in a fresh, CPU-pinned process::

    python benchmarks/core/child.py switches asyncio [--quick] [--n N] [--no-gc]
    python benchmarks/core/child.py --probe treadle

The last line on stdout is a JSON object: ``{"ok": true, "value": ...}`` on
success, ``{"ok": false, "error": "..."}`` otherwise (exit status 1).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import traceback

import workloads


def probe(framework: str) -> dict[str, object]:
    """Import a framework (and check treadle's API) without running anything."""
    if framework in ("asyncio", "uvloop", "treadle", "treadle-compiled", "floor"):
        workloads.load_shape(framework)
    else:
        __import__(framework)
    return {"ok": True, "framework": framework}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", nargs="?", choices=workloads.BENCHMARKS)
    parser.add_argument("framework", nargs="?", choices=workloads.FRAMEWORKS)
    parser.add_argument("--probe", metavar="FRAMEWORK", choices=workloads.FRAMEWORKS)
    parser.add_argument("--quick", action="store_true", help="a tenth of the iterations")
    parser.add_argument("--n", type=int, help="override the iteration count")
    parser.add_argument("--no-gc", action="store_true", help="disable the cyclic GC first")
    args = parser.parse_args(argv)

    try:
        if args.probe:
            record = probe(args.probe)
        else:
            if not (args.bench and args.framework):
                parser.error("bench and framework are required unless --probe is given")
            n = args.n or workloads.SIZES[args.bench] // (
                workloads.QUICK_DIVISOR if args.quick else 1
            )
            if args.no_gc:
                gc.disable()
            value, elapsed = workloads.run_one(args.bench, args.framework, n)
            record = {
                "ok": True,
                "bench": args.bench,
                "framework": args.framework,
                "n": n,
                "value": value,
                "elapsed": elapsed,
                "python": platform.python_version(),
                "optimize": sys.flags.optimize,
                "gc": gc.isenabled(),
            }
    except Exception as exc:
        traceback.print_exc()
        record = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(record), flush=True)
    return 0 if record["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
