"""Send lines to an echo server and print each echo as it comes back.

    python examples/echo_client.py [--host HOST] [--port PORT] [MESSAGE ...]

Each MESSAGE is sent as one line; with no MESSAGE, the lines of standard input are
(read in a worker thread, so the loop is never blocked waiting for the keyboard).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator

import treadle


async def lines_from(messages: list[str]) -> AsyncIterator[str]:
    if messages:
        for message in messages:
            yield message
        return
    loop = treadle.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        yield line.rstrip("\n")


async def talk(host: str, port: int, messages: list[str]) -> int:
    reader, writer = await treadle.open_connection(host, port)
    async with writer:
        async for line in lines_from(messages):
            writer.write(line.encode() + b"\n")
            await writer.drain()
            echo = await reader.readline()
            if not echo:
                print("the server closed the connection", file=sys.stderr)
                return 1
            print(echo.decode().rstrip("\n"), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="server address")
    parser.add_argument("--port", type=int, default=8888, help="server port")
    parser.add_argument("messages", nargs="*", help="lines to send (default: stdin)")
    args = parser.parse_args(argv)
    try:
        return treadle.run(talk(args.host, args.port, args.messages))
    except OSError as exc:
        print(f"echo_client: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
