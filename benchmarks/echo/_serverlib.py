"""Helpers shared by the benchmark servers: arguments, fd limit, allocator warm-up.

Every server script takes a port, listens on 127.0.0.1 and prints ``READY`` on
stdout once it is listening; the runners wait for that line. A script whose
framework cannot be imported prints ``UNAVAILABLE <ExcType>: <message>`` and
exits with status 3 instead, so the runner can skip it.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys

HOST = "127.0.0.1"
BACKLOG = 1024
UNAVAILABLE_EXIT = 3
COLD_MALLOC_ENV = "BENCH_COLD_MALLOC"


def parse_args(
    doc: str | None, *, uvloop_flag: bool = False, compiled_flag: bool = False
) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    parser.add_argument("port", type=int)
    if uvloop_flag:
        parser.add_argument("--uvloop", action="store_true", help="run on uvloop's event loop")
    if compiled_flag:
        parser.add_argument("--compiled", action="store_true", help="insist on compiled treadle")
    return parser.parse_args()


def prepare() -> None:
    """Process set-up every server does before it listens: fd limit and allocator state."""
    raise_nofile()
    if not os.environ.get(COLD_MALLOC_ENV):
        warm_malloc()


def warm_malloc() -> None:
    """Allocate and free one 1 MiB block, as any long-running process has at some point.

    glibc serves blocks above its mmap threshold (128 KiB at start-up) with mmap,
    and raises the threshold the first time such a block is freed. Until then a
    process that reads into large buffers (asyncio's transports ask recv() for
    256 KiB every time) pays mmap + mremap + munmap on every read. Whether a
    fresh benchmark process has crossed that line is an accident of what it
    happened to allocate, so every server starts from the same, warmed, state.
    Set BENCH_COLD_MALLOC=1 (the runners' --cold-malloc) to skip this.
    """
    block = bytearray(1 << 20)
    del block


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
