"""Small helpers shared by the benchmark servers: argument parsing and fd limits.

Every server script takes a port, listens on 127.0.0.1 and prints ``READY`` on
stdout once it is listening; the runners wait for that line. A script whose
framework cannot be imported prints ``UNAVAILABLE <ExcType>: <message>`` and
exits with status 3 instead, so the runner can skip it.
"""

from __future__ import annotations

import argparse
import resource
import sys

HOST = "127.0.0.1"
BACKLOG = 1024
UNAVAILABLE_EXIT = 3


def parse_args(doc: str | None, *, uvloop_flag: bool = False) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    parser.add_argument("port", type=int)
    if uvloop_flag:
        parser.add_argument("--uvloop", action="store_true", help="run on uvloop's event loop")
    return parser.parse_args()


def raise_nofile() -> int:
    """Raise the soft RLIMIT_NOFILE as far as the hard limit allows; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        return soft
    return hard


def ready() -> None:
    print("READY", flush=True)


def unavailable(exc: BaseException) -> None:
    """Report that the framework under test cannot be imported, then exit."""
    print(f"UNAVAILABLE {type(exc).__name__}: {exc}", flush=True)
    sys.exit(UNAVAILABLE_EXIT)
