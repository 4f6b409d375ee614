"""``treadle tour [--stage K] [--urls N] [--delay SECONDS]``: watch the idea grow.

Starts the slow server, runs every stage (or just stage K) against the same N URLs,
and prints a table and a timeline per stage. Bad input gets one line on stderr and
exit status 2. Imports only the standard library and treadle.tour.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from typing import NoReturn

from treadle.tour.runner import STAGES, Stage, find_stage, format_table, format_timelines, run_stage
from treadle.tour.server import SlowServer, TourServerError

PROG = "treadle tour"
MAX_URLS = 200  # each URL holds two sockets open at once (client and server side)


class UsageError(Exception):
    """The command line asked for something the tour cannot do."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


@dataclass(frozen=True)
class Options:
    """What the command line asked for, checked."""

    stages: list[Stage]
    urls: int
    delay: float


def parse_args(argv: list[str] | None) -> Options:
    """Read the command line; raise UsageError with a one-line message if it is wrong."""
    parser = _Parser(
        prog=PROG,
        description="Fetch the same URLs from a slow local server with each stage of the "
        "tour, from blocking sockets to a Task driving generators, and compare.",
    )
    numbers = ", ".join(str(stage.number) for stage in STAGES)
    parser.add_argument("--stage", metavar="K", help=f"run only stage K ({numbers})")
    parser.add_argument("--urls", metavar="N", default="5", help="URLs to fetch (default 5)")
    parser.add_argument(
        "--delay",
        metavar="SECONDS",
        default="0.5",
        help="how long the server takes over each response (default 0.5)",
    )
    args = parser.parse_args(argv)

    stages = STAGES
    if args.stage is not None:
        stage = find_stage(int(args.stage)) if args.stage.isdigit() else None
        if stage is None:
            raise UsageError(f"--stage must be one of {numbers}, got {args.stage}")
        stages = [stage]

    if not args.urls.isdigit() or int(args.urls) < 1:
        raise UsageError(f"--urls must be a positive integer, got {args.urls}")
    if int(args.urls) > MAX_URLS:
        raise UsageError(f"--urls must be at most {MAX_URLS}, got {args.urls}")

    try:
        delay = float(args.delay)
    except ValueError:
        delay = math.nan
    if not (math.isfinite(delay) and delay >= 0):
        raise UsageError(f"--delay must be a number of seconds, 0 or more, got {args.delay}")

    return Options(stages, int(args.urls), delay)


def main(argv: list[str] | None = None) -> int:
    """Run ``treadle tour``; return the exit status."""
    try:
        options = parse_args(argv)
    except UsageError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2

    runs = []
    try:
        with SlowServer(delay=options.delay) as server:
            urls = [server.url(f"/page/{number}") for number in range(1, options.urls + 1)]
            print(
                f"Fetching {options.urls} URL(s) from a slow server on 127.0.0.1:{server.port}"
                f" (about {options.delay:.2f} s per response).\n"
            )
            for stage in options.stages:
                print(f"stage {stage.number}: {stage.idea} ...", end=" ", flush=True)
                try:
                    run = run_stage(stage, urls)
                except (OSError, ValueError) as error:
                    print()
                    print(f"{PROG}: error: stage {stage.number} failed: {error}", file=sys.stderr)
                    return 1
                print(f"{run.seconds:.2f} s")
                runs.append(run)
    except TourServerError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return 130

    print()
    print(format_table(runs))
    print()
    print(format_timelines(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
