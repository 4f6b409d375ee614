"""Open N idle TCP connections to 127.0.0.1:PORT and hold them, for memory measurements.

Usage: python idle_client.py PORT --conns N [--server-pid PID] [--hold SECONDS]

Plain blocking sockets, no framework. Connections are opened in batches; with
``--server-pid`` the client waits between batches until the server has accepted
nearly everything so far (counting /proc/PID/fd), so a small listen backlog
never overflows. It prints ``CONNECTED <n>`` once all connections are open, then
holds them, sending nothing, until stdin closes, it is killed, or ``--hold``
seconds pass.
"""

from __future__ import annotations

import argparse
import os
import resource
import select
import socket
import sys
import time


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--conns", type=int, required=True)
    parser.add_argument("--server-pid", type=int)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--hold", type=float, default=300.0, help="give up holding after this")
    parser.add_argument("--timeout", type=float, default=60.0, help="limit for connecting all")
    args = parser.parse_args()

    limit = raise_nofile()
    if args.conns + 32 > limit:
        print(f"ERROR RLIMIT_NOFILE is {limit}; cannot hold {args.conns} connections",
              flush=True)
        return 2

    base = fd_count(args.server_pid) if args.server_pid else 0
    deadline = time.monotonic() + args.timeout
    socks: list[socket.socket] = []
    while len(socks) < args.conns:
        if time.monotonic() > deadline:
            print(f"ERROR only {len(socks)} of {args.conns} connected in {args.timeout}s",
                  flush=True)
            return 1
        for _ in range(min(args.batch, args.conns - len(socks))):
            s = socket.create_connection(("127.0.0.1", args.port), timeout=10)
            socks.append(s)
        if args.server_pid:
            # Let the server's accepts catch up to within one batch of us.
            while fd_count(args.server_pid) - base < len(socks) - args.batch:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.002)
    print(f"CONNECTED {len(socks)}", flush=True)

    # Hold until the runner closes our stdin (or kills us), bounded by --hold.
    end = time.monotonic() + args.hold
    while (left := end - time.monotonic()) > 0:
        r, _, _ = select.select([sys.stdin], [], [], min(left, 1.0))
        if r and not sys.stdin.buffer.read1(4096):
            break
    for s in socks:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
