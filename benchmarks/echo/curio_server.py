"""Echo server on curio (socket recv / sendall in one task per connection).

Usage: python curio_server.py PORT
"""

from __future__ import annotations

import socket

from _serverlib import BACKLOG, HOST, parse_args, prepare, ready, unavailable

try:
    import curio
    from curio.network import run_server, tcp_server_socket
except ImportError as exc:
    unavailable(exc)


async def handle(client, addr) -> None:  # type: ignore[no-untyped-def]
    # curio does not set TCP_NODELAY itself; asyncio, uvloop and trio all do.
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    async with client:
        try:
            while True:
                data = await client.recv(65536)
                if not data:
                    break
                await client.sendall(data)
        except ConnectionError:
            pass


async def main(port: int) -> None:
    sock = tcp_server_socket(HOST, port, backlog=BACKLOG)
    ready()
    await run_server(sock, handle)


if __name__ == "__main__":
    args = parse_args(__doc__)
    prepare()
    curio.run(main, args.port)
