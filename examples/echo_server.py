"""An echo server on treadle streams: whatever a client sends comes straight back.

    python examples/echo_server.py [--host HOST] [--port PORT]

Prints the address it listens on (``--port 0`` picks a free port) and serves until
Ctrl-C. Each client runs in its own task; ``drain()`` keeps a client that sends faster
than it reads from filling the server's memory.
"""

from __future__ import annotations

import argparse
import sys

import treadle
from treadle.sockets import format_address


async def echo(reader: treadle.StreamReader, writer: treadle.StreamWriter) -> None:
    """Send every byte back until the client closes; the server closes the stream after."""
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


async def serve(host: str, port: int) -> None:
    async with await treadle.start_server(echo, host, port) as server:
        for sock in server.sockets:
            print(f"listening on {format_address(sock.getsockname())}", flush=True)
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8888, help="port (0: any free port)")
    args = parser.parse_args(argv)
    try:
        treadle.run(serve(args.host, args.port))
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
