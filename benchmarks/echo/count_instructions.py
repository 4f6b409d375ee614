"""Count an echo server's instructions per round trip under callgrind (load-independent).

The server script runs under ``valgrind --tool=callgrind``; a small blocking client in
this process opens C connections and does rounds in which it sends one S-byte message
on every connection, then reads every echo back in full (so the server sees up to C
connections ready per poll, as under ``echo_load``). After a warm-up of rounds,
``callgrind_control`` zeroes the server's counters, the client does N rounds, and
``callgrind_control`` dumps them: the server's user-space instructions over exactly
N x C round trips, divided by N x C. Other load on the machine does not move the figure
much (by a few percent at 1k_x10, through how many connections one poll reports); the
kernel's work is not in it.

``--stop-server`` makes a round exactly one poll reporting every connection: the client
waits until the server sleeps (in its poll), stops it (SIGSTOP, and waits until it is
stopped), sends on every connection, continues it (SIGCONT) and reads the echoes. The
same code then gives the same count to within a tenth of a percent at every workload.
(The stop interrupts the server's poll, which Python restarts: one poll more per round
than the server would make.)

    python benchmarks/echo/count_instructions.py treadle_streams.py
    python benchmarks/echo/count_instructions.py --python .venv-compiled/bin/python \\
        treadle_streams.py --compiled
    python benchmarks/echo/count_instructions.py --workloads 1k_x10,64k_x10 asyncio_streams.py
    python benchmarks/echo/count_instructions.py --stop-server --workloads 1k_x1,1k_x10 \
        treadle_aio.py

The script path is relative to this directory; what follows it goes to the server.
Prints one line per workload: ``workload instructions-per-round-trip``.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# 1k_x1: one connection, so every poll reports one event (the same count run to run, and
# the case closest to a server under real load, where a poll reports one to a few).
WORKLOADS = {
    "1k_x1": (1024, 1),
    "1k_x10": (1024, 10),
    "1k_x100": (1024, 100),
    "64k_x10": (65536, 10),
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_state(pid: int, states: tuple[str, ...], what: str) -> None:
    """Return once process ``pid`` is in one of ``states`` (as /proc/PID/stat spells them)."""
    stat = Path(f"/proc/{pid}/stat")
    deadline = time.monotonic() + 60
    # The state follows the parenthesised command name, which may hold spaces.
    while stat.read_text().rpartition(")")[2].split()[0] not in states:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server (pid {pid}) did not {what}")
        time.sleep(0.0005)


def do_rounds(
    conns: list[socket.socket], message: bytes, rounds: int, stop_pid: int | None = None
) -> None:
    """Send ``message`` on every connection, read every echo back in full; ``rounds`` times.

    With ``stop_pid``, that process (the server) is stopped while the messages are sent
    and continued before the echoes are read: it finds every connection ready at once.
    """
    size = len(message)
    buffer = bytearray(size)
    view = memoryview(buffer)
    for _ in range(rounds):
        if stop_pid is not None:
            # Stopped in its poll every round, never while finishing the last one.
            wait_for_state(stop_pid, ("S",), "go back to its poll")
            os.kill(stop_pid, signal.SIGSTOP)
            wait_for_state(stop_pid, ("T", "t"), "stop")
        for conn in conns:
            conn.sendall(message)
        if stop_pid is not None:
            os.kill(stop_pid, signal.SIGCONT)
        for conn in conns:
            got = 0
            while got < size:
                n = conn.recv_into(view[got:])
                if n == 0:
                    raise ConnectionError("the server closed the connection mid-echo")
                got += n
            if buffer != message:
                raise AssertionError("the echo differs from the message sent")


def callgrind_control(option: str, pid: int) -> None:
    subprocess.run(["callgrind_control", option, str(pid)], check=True, capture_output=True)


def total_instructions(dump: Path) -> int:
    for line in dump.read_text().splitlines():
        match = re.match(r"(?:summary|totals):\s+(\d+)", line)
        if match:
            return int(match.group(1))
    raise RuntimeError(f"no instruction total in {dump}")


def count(
    python: str,
    server: list[str],
    size: int,
    nconns: int,
    rounds: int,
    warmup: int,
    keep: Path | None,
    stop_server: bool = False,
) -> float:
    """Instructions the server spends per round trip on this workload."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "callgrind.out")
        proc = subprocess.Popen(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                python,
                str(HERE / server[0]),
                str(port),
                *server[1:],
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line.startswith("READY"):
                raise RuntimeError(f"the server did not start: {line!r}")
            conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(nconns)]
            for conn in conns:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            message = bytes(range(256)) * (size // 256)
            stop_pid = proc.pid if stop_server else None
            do_rounds(conns, message, warmup, stop_pid)
            callgrind_control("-z", proc.pid)
            do_rounds(conns, message, rounds, stop_pid)
            callgrind_control("-d", proc.pid)
            for conn in conns:
                conn.close()
            dumps = sorted(Path(tmp).glob("callgrind.out.*"))
            deadline = time.monotonic() + 60
            while not dumps and time.monotonic() < deadline:
                time.sleep(0.2)
                dumps = sorted(Path(tmp).glob("callgrind.out.*"))
            time.sleep(0.5)  # the dump is written before callgrind_control returns; be safe
            if keep is not None:
                keep.write_bytes(dumps[0].read_bytes())
            return total_instructions(dumps[0]) / (rounds * nconns)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="the Python that runs the server")
    parser.add_argument(
        "--workloads",
        default="1k_x10,1k_x100,64k_x10",
        help=f"comma-separated, of {', '.join(WORKLOADS)}",
    )
    parser.add_argument(
        "--round-trips",
        type=int,
        default=2000,
        help="round trips counted per workload (rounded to whole rounds)",
    )
    parser.add_argument("--warmup", type=int, default=20, help="rounds before counting starts")
    parser.add_argument(
        "--keep",
        metavar="PREFIX",
        help="keep each workload's dump as PREFIX.WORKLOAD, for callgrind_annotate",
    )
    parser.add_argument(
        "--stop-server",
        action="store_true",
        help="stop the server while each round is sent: one poll per round, exact counts",
    )
    parser.add_argument("server", nargs=argparse.REMAINDER, help="server script and its flags")
    args = parser.parse_args()
    if not args.server:
        parser.error("name the server script, e.g. treadle_streams.py")
    for name in args.workloads.split(","):
        if name not in WORKLOADS:
            parser.error(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}")
        size, nconns = WORKLOADS[name]
        rounds = max(1, args.round_trips // nconns)
        keep = None if args.keep is None else Path(f"{args.keep}.{name}")
        per_rt = count(
            args.python, args.server, size, nconns, rounds, args.warmup, keep, args.stop_server
        )
        print(f"{name} {per_rt:,.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
