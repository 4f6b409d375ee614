"""Child processes in tests: start one with text pipes, interrupt it, never leave it running.

Imports only the standard library.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Iterator
from typing import Any


def spawn(command: list[str], **popen_args: Any) -> subprocess.Popen[str]:
    """Start ``command`` with its stdout and stderr piped, as text."""
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen_args
    )


@contextlib.contextmanager
def reaped(process: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """Kill and reap ``process`` if the block leaves it running (after a failed assert, say),
    and close its pipes whether or not it ran to the end: a pipe left to the garbage
    collector fails a later test with a ResourceWarning."""
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


def interrupt(process: subprocess.Popen[str], timeout: float) -> tuple[str, str]:
    """Press Ctrl-C: send SIGINT and wait for ``process`` to end; its stdout and stderr."""
    process.send_signal(signal.SIGINT)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # Killed and reaped here: a process left running would be collected during a
        # later test, and fail that one (ResourceWarning, fd count).
        process.kill()
        process.communicate()
        raise
    return stdout, stderr
