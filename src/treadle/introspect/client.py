"""``treadle ps PID`` and ``treadle pstree PID``: look inside a running treadle program.

Connects to the program's introspection socket (it must run with
``TREADLE_INTROSPECT=1``), asks for a snapshot and prints it: a table (``ps``) or the
tree of who awaits whom with each task's await chain (``pstree``); ``--json`` prints
the snapshot itself. Without a PID, lists the programs that can be asked. Introspection layer.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from treadle.introspect.server import socket_dir, socket_path
from treadle.introspect.snapshot import Snapshot, format_table, format_tree

__all__ = ["ask", "ps_main", "pstree_main"]


class IntrospectionError(Exception):
    """The program could not be asked: the message says why and what to do."""


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def ask(pid: int, *, timeout: float = 1.0) -> Snapshot:
    """The snapshot of program ``pid``; a loop stuck longer than ``timeout`` is reported
    blocked. Raises IntrospectionError if it cannot be asked."""
    path = socket_path(pid)
    try:
        exists = path.exists()
    except PermissionError:
        raise IntrospectionError(
            f"not allowed to reach {path}: only the program's own user may look inside it"
        ) from None
    if not exists:
        alive = os.path.exists(f"/proc/{pid}")
        raise IntrospectionError(
            f"process {pid} is not serving introspection (no {path}); "
            + (
                "start it with TREADLE_INTROSPECT=1 in its environment"
                if alive
                else "no such process"
            )
        )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout + 10.0)
        try:
            conn.connect(str(path))
            # The program may refuse before reading (another user): then read why.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                conn.sendall(json.dumps({"timeout": timeout}).encode() + b"\n")
            chunks = []
            while chunk := conn.recv(1 << 16):
                chunks.append(chunk)
        except ConnectionRefusedError:
            raise IntrospectionError(
                f"nobody listens on {path}: process {pid} has ended (remove the stale file)"
            ) from None
        except PermissionError as exc:
            raise IntrospectionError(f"not allowed to connect to {path}: {exc.strerror}") from None
        except TimeoutError:
            raise IntrospectionError(f"process {pid} did not answer in time") from None
        except ConnectionResetError:
            raise IntrospectionError(
                f"process {pid} closed the connection without an answer"
            ) from None
    try:
        answer: dict[str, Any] = json.loads(b"".join(chunks))
    except ValueError:
        raise IntrospectionError(f"process {pid} sent an answer that is not JSON") from None
    if "error" in answer:
        raise IntrospectionError(f"process {pid} refused: {answer['error']}")
    return answer


def _servers() -> list[int]:
    """The pids with a socket in this user's directory whose process is still alive."""
    try:
        names = os.listdir(socket_dir())
    except OSError:
        return []
    pids = [int(name[:-5]) for name in names if name.endswith(".sock") and name[:-5].isdigit()]
    return sorted(pid for pid in pids if os.path.exists(f"/proc/{pid}"))


def _main(prog: str, argv: list[str] | None, render: Callable[[Snapshot], str]) -> int:
    parser = _OneLineParser(
        prog=prog,
        description=(
            "Show the tasks of a running treadle program started with TREADLE_INTROSPECT=1 "
            "(native, or asyncio on treadle.aio). Without PID: list those programs."
        ),
    )
    parser.add_argument("pid", nargs="?", type=int, metavar="PID", help="the program's process id")
    parser.add_argument(
        "--timeout",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="report a loop as blocked when it does not answer within this (default 1)",
    )
    parser.add_argument("--json", action="store_true", help="print the snapshot as JSON")
    args = parser.parse_args(argv)
    if not args.timeout > 0:
        parser.error(f"--timeout must be a positive number of seconds, got {args.timeout}")
    if args.pid is None:
        pids = _servers()
        if not pids:
            print(f"no treadle program is serving introspection (looked in {socket_dir()})")
        for pid in pids:
            print(pid)
        return 0
    try:
        snapshot = ask(args.pid, timeout=args.timeout)
    except IntrospectionError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(snapshot, indent=1))
    else:
        sys.stdout.write(render(snapshot))
    return 0


def ps_main(argv: list[str] | None = None) -> int:
    """``treadle ps [PID]``: a table of the program's tasks; the exit status."""
    return _main("treadle ps", argv, format_table)


def pstree_main(argv: list[str] | None = None) -> int:
    """``treadle pstree [PID]``: the program's tasks as a tree with await chains."""
    return _main("treadle pstree", argv, format_tree)
