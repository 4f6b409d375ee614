"""HTTP/1.1 hello-world server on asyncio Protocol callbacks; ``--uvloop`` runs it on uvloop.

Usage: python asyncio_protocol.py PORT [--uvloop]
"""

from __future__ import annotations

import asyncio

from _httpcommon import (
    BACKLOG,
    HOST,
    MAX_HEAD,
    RESPONSE,
    parse_args,
    prepare,
    ready,
    split_requests,
    unavailable,
)


class Hello(asyncio.Protocol):
    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.tail = b""

    def data_received(self, data: bytes) -> None:
        if self.tail:
            data = self.tail + data
        count, close, self.tail = split_requests(data)
        if count:
            self.transport.write(RESPONSE * count if count > 1 else RESPONSE)
        if close or len(self.tail) > MAX_HEAD:
            self.transport.close()


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Hello, HOST, port, backlog=BACKLOG)
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
