"""Echo server on asyncio's Protocol/Transport callbacks; ``--uvloop`` runs it on uvloop.

Usage: python asyncio_protocol.py PORT [--uvloop]
"""

from __future__ import annotations

import asyncio

from _serverlib import BACKLOG, HOST, parse_args, prepare, ready, unavailable


class Echo(asyncio.Protocol):
    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        # The transport buffers whatever the socket does not take at once.
        self.transport.write(data)


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, HOST, port, backlog=BACKLOG)
    ready()
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    args = parse_args(__doc__, uvloop_flag=True)
    prepare()
    if args.uvloop:
        try:
            import uvloop
        except ImportError as exc:
            unavailable(exc)
        uvloop.run(main(args.port))
    else:
        asyncio.run(main(args.port))
