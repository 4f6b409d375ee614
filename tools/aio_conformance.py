"""Run CPython's own asyncio test suite on treadle.aio's loop and on stock asyncio; score it.

    python tools/aio_conformance.py                      # this Python, every module
    python tools/aio_conformance.py --python ~/.pyenv/versions/3.13.0/bin/python3
    python tools/aio_conformance.py --modules test_events,test_tasks --select EPoll

Every Python install ships its asyncio tests (``Lib/test/test_asyncio``). Each module
runs twice, in fresh worker processes of the Python under test: once on **stock**
asyncio and once on **treadle.aio**. Both runs inject their loop the same way, through
every hook the suites use to make one: the event loop policy (``asyncio.run``,
``asyncio.Runner``, ``asyncio.new_event_loop``, and the policy reset by
``set_event_loop_policy(None)``), ``asyncio.SelectorEventLoop`` / ``asyncio.EventLoop``
(what the test classes' ``create_event_loop`` and ``new_loop`` call). In the stock run the
injected loop is asyncio's own Unix selector loop (honouring the selector a test
passes); in the treadle run it is ``treadle.aio.EventLoop``.

**Loop-exercising** tests are those that made at least one injected loop in the stock
run; tests that only use mocks, ``TestLoop`` or a bare ``BaseEventLoop`` do not test
the loop and are left out. The score is: of the loop-exercising tests that pass on stock
asyncio, how many pass on treadle.aio. A test that runs past ``--timeout`` seconds is
killed (faulthandler dumps its stack to the log) and counts as failed; its worker starts
again after it.

This lives in tools/ rather than tests/ or benchmarks/: it is a measurement run on
demand against whichever Python is given (a full run takes minutes), not a unit test and
not a speed benchmark. ``tests/test_aio_conformance.py`` runs a fast subset of it.
Run by hand it needs treadle importable by the Python under test (its venv, or
``PYTHONPATH=src``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

MODES = ("stock", "treadle")
# Modules that never run the Unix loop (Windows-only, or the proactor's).
NOT_ON_UNIX = {"test_windows_events", "test_windows_utils", "test_proactor_events"}
DEFAULT_TIMEOUT = 60.0
SRC = Path(__file__).resolve().parent.parent / "src"


# --- the worker: runs one module's tests in this process, one JSON line per event --------


def _install_loop(mode: str) -> list[int]:
    """Make every loop-creation hook asyncio's suites use produce the loop under test.

    Returns a one-element list counting the loops made, for the caller to sample.
    """
    import asyncio
    import asyncio.events
    import asyncio.unix_events

    made = [0]
    if mode == "treadle":
        import treadle.aio

        class InjectedLoop(treadle.aio.EventLoop):
            def __init__(self, selector: object = None) -> None:
                if selector is not None:
                    selector.close()  # type: ignore[attr-defined]  # treadle polls with epoll
                made[0] += 1
                super().__init__()

    else:

        class InjectedLoop(asyncio.unix_events._UnixSelectorEventLoop):  # type: ignore[no-redef]
            def __init__(self, selector: object = None) -> None:
                made[0] += 1
                super().__init__(selector)  # type: ignore[arg-type]

    InjectedLoop.__name__ = InjectedLoop.__qualname__ = f"{mode.capitalize()}Loop"

    class InjectedPolicy(asyncio.unix_events._UnixDefaultEventLoopPolicy):  # type: ignore[misc,name-defined]
        _loop_factory = InjectedLoop

    for module in (asyncio, asyncio.unix_events):
        module.SelectorEventLoop = InjectedLoop  # type: ignore[misc]
        module.DefaultEventLoopPolicy = InjectedPolicy  # type: ignore[misc]
        if hasattr(module, "EventLoop"):
            module.EventLoop = InjectedLoop
    asyncio.set_event_loop_policy(InjectedPolicy())
    return made


def _emit(record: dict[str, object]) -> None:
    sys.__stdout__.write(json.dumps(record) + "\n")  # type: ignore[union-attr]
    sys.__stdout__.flush()  # type: ignore[union-attr]


def _iter_tests(suite: object) -> Iterable[object]:
    import unittest

    if isinstance(suite, unittest.TestSuite):
        for item in suite:
            yield from _iter_tests(item)
    else:
        yield suite


def worker(mode: str, module_name: str, skip: set[str], select: str | None, timeout: float) -> None:
    """Run ``module_name``'s tests (those not in ``skip``), reporting each as a JSON line."""
    import faulthandler
    import unittest

    made = _install_loop(mode)
    module = __import__(f"test.test_asyncio.{module_name}", fromlist=["_"])
    loader = unittest.TestLoader()
    tests = [
        t
        for t in _iter_tests(loader.loadTestsFromModule(module))
        if t.id() not in skip and (select is None or re.search(select, t.id()))  # type: ignore[attr-defined]
    ]

    class Reporter(unittest.TestResult):
        # Set here too: a class skipped as a whole reaches stopTest without startTest.
        outcome = "pass"
        made_before = 0

        def startTest(self, test: unittest.TestCase) -> None:
            super().startTest(test)
            self.outcome = "pass"
            self.made_before = made[0]
            _emit({"start": test.id()})
            faulthandler.dump_traceback_later(timeout, exit=True)

        def stopTest(self, test: unittest.TestCase) -> None:
            faulthandler.cancel_dump_traceback_later()
            super().stopTest(test)
            _emit(
                {
                    "test": test.id(),
                    "outcome": self.outcome,
                    "loop_made": made[0] > self.made_before,
                }
            )

        def addError(self, test: unittest.TestCase, err: object) -> None:
            super().addError(test, err)  # type: ignore[arg-type]
            self._failed(test, "error", self.errors[-1][1])

        def addFailure(self, test: unittest.TestCase, err: object) -> None:
            super().addFailure(test, err)  # type: ignore[arg-type]
            self._failed(test, "fail", self.failures[-1][1])

        def addSubTest(self, test: object, subtest: object, err: object) -> None:
            super().addSubTest(test, subtest, err)  # type: ignore[arg-type]
            if err is not None:
                self._failed(test, "fail", "subtest failed: " + repr(subtest))

        def addSkip(self, test: unittest.TestCase, reason: str) -> None:
            super().addSkip(test, reason)
            self.outcome = "skip"

        def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:
            super().addUnexpectedSuccess(test)
            self.outcome = "fail"

        def _failed(self, test: object, outcome: str, detail: str) -> None:
            if getattr(test, "id", None) is None:  # a class or module fixture failed
                _emit({"fixture_error": str(test), "detail": detail[-2000:]})
                return
            self.outcome = outcome
            _emit({"detail": detail[-3000:]})

    result = Reporter()
    unittest.TestSuite(tests).run(result)  # type: ignore[arg-type]
    _emit({"done": True})


# --- the driver: runs workers, restarts them after a crash or timeout, scores -------------


@dataclass
class ModuleRun:
    outcomes: dict[str, str] = field(default_factory=dict)
    loop_made: dict[str, bool] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def run_module(
    python: str, mode: str, module: str, select: str | None, timeout: float, log: Path | None
) -> ModuleRun:
    """All of ``module``'s tests in ``mode``, in as many worker processes as crashes need."""
    run = ModuleRun()
    started = time.monotonic()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    env.pop("PYTHONASYNCIODEBUG", None)
    while True:
        skip_file = None
        args = [python, "-X", "faulthandler", __file__, "--worker", mode, module,
                "--timeout", str(timeout)]
        if select:
            args += ["--select", select]
        if run.outcomes:
            skip_file = Path(f"/tmp/aio_conformance_skip_{os.getpid()}_{mode}_{module}.json")
            skip_file.write_text(json.dumps(sorted(run.outcomes)))
            args += ["--skip-file", str(skip_file)]
        proc = subprocess.run(
            args, env=env, capture_output=True, text=True, timeout=max(600.0, timeout * 50)
        )
        if skip_file is not None:
            skip_file.unlink()
        current = None
        done = False
        last_detail = ""
        for line in proc.stdout.splitlines():
            if not line.startswith("{"):
                continue
            record = json.loads(line)
            if "start" in record:
                current = record["start"]
            elif "test" in record:
                run.outcomes[record["test"]] = record["outcome"]
                run.loop_made[record["test"]] = record["loop_made"]
                if record["outcome"] in ("fail", "error"):
                    run.details[record["test"]] = last_detail
                current = None
            elif "detail" in record:
                last_detail = record["detail"]
            elif "done" in record:
                done = True
        if log is not None:
            with log.open("a") as f:
                f.write(f"=== {mode} {module} (exit {proc.returncode})\n{proc.stderr[-20000:]}\n")
        if done:
            break
        if current is None:
            # Died outside any test (an import error, a fixture): nothing more will run.
            run.outcomes[f"{module} (worker)"] = "error"
            run.details[f"{module} (worker)"] = proc.stderr[-3000:]
            break
        # Killed in mid-test (timeout or crash): that test failed; go on after it.
        run.outcomes[current] = "timeout" if "Timeout" in proc.stderr else "crash"
        run.loop_made[current] = True
        run.details[current] = proc.stderr[-3000:]
    run.seconds = time.monotonic() - started
    return run


def list_modules(python: str) -> list[str]:
    code = (
        "import os, test.test_asyncio as t; "
        "print(' '.join(sorted(f[:-3] for f in os.listdir(os.path.dirname(t.__file__)) "
        "if f.startswith('test_') and f.endswith('.py'))))"
    )
    names = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return [n for n in names.stdout.split() if n not in NOT_ON_UNIX]


@dataclass
class Score:
    exercising: list[str]  # loop-exercising tests that pass on stock asyncio
    passed: list[str]  # ... of which these pass on treadle.aio
    failed: dict[str, str]  # ... and these do not: test -> outcome

    @property
    def percent(self) -> float:
        return 100.0 * len(self.passed) / len(self.exercising) if self.exercising else 100.0


def score(stock: dict[str, ModuleRun], treadle: dict[str, ModuleRun]) -> Score:
    exercising, passed, failed = [], [], {}
    for module, run in stock.items():
        for test, outcome in run.outcomes.items():
            if outcome != "pass" or not run.loop_made.get(test):
                continue
            exercising.append(test)
            theirs = treadle[module].outcomes.get(test, "missing")
            if theirs == "pass":
                passed.append(test)
            else:
                failed[test] = theirs
    return Score(exercising, passed, failed)


def conformance(
    python: str,
    modules: list[str] | None = None,
    select: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    log: Path | None = None,
    progress: bool = False,
) -> tuple[Score, dict[str, dict[str, ModuleRun]]]:
    """Run ``modules`` (all by default) in both modes on ``python``; the score and the runs."""
    runs: dict[str, dict[str, ModuleRun]] = {mode: {} for mode in MODES}
    for module in modules or list_modules(python):
        for mode in MODES:
            run = run_module(python, mode, module, select, timeout, log)
            runs[mode][module] = run
            if progress:
                outcomes = list(run.outcomes.values())
                counts = {o: outcomes.count(o) for o in sorted(set(outcomes))}
                print(f"  {module:24} {mode:8} {run.seconds:6.1f}s {counts}", file=sys.stderr)
    return score(runs["stock"], runs["treadle"]), runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="the Python under test")
    parser.add_argument("--modules", help="comma-separated test_asyncio modules (default: all)")
    parser.add_argument("--select", help="only tests whose id matches this regular expression")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per test")
    parser.add_argument("--log", type=Path, help="append the workers' stderr here")
    parser.add_argument("--json", type=Path, help="write every test's outcome here")
    parser.add_argument("--worker", nargs=2, metavar=("MODE", "MODULE"), help=argparse.SUPPRESS)
    parser.add_argument("--skip-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        mode, module = args.worker
        skip = set(json.loads(args.skip_file.read_text())) if args.skip_file else set()
        worker(mode, module, skip, args.select, args.timeout)
        return 0
    modules = args.modules.split(",") if args.modules else None
    started = time.monotonic()
    result, runs = conformance(
        args.python, modules, args.select, args.timeout, args.log, progress=True
    )
    version = subprocess.run(
        [args.python, "-c", "import platform; print(platform.python_version())"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    for test, outcome in sorted(result.failed.items()):
        print(f"{outcome:8} {test}")
    if args.json:
        args.json.write_text(json.dumps(
            {mode: {m: {"outcomes": r.outcomes, "loop_made": r.loop_made, "details": r.details}
                    for m, r in by_module.items()} for mode, by_module in runs.items()},
            indent=1,
        ))
    print(
        f"Python {version}: treadle.aio passes {len(result.passed)} of the "
        f"{len(result.exercising)} loop-exercising tests that pass on stock asyncio "
        f"({result.percent:.1f}%), in {time.monotonic() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
