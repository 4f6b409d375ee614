"""HTTP/1.1 hello-world server on asyncio streams; ``--uvloop`` runs it on uvloop.

Usage: python asyncio_streams.py PORT [--uvloop]

The like-for-like peer of ``treadle_streams.py``: the same loop on the same API.
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


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    tail = b""
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            count, close, tail = split_requests(tail + data if tail else data)
            if count:
                writer.write(RESPONSE * count if count > 1 else RESPONSE)
                await writer.drain()
            if close or len(tail) > MAX_HEAD:
                break
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, HOST, port, backlog=BACKLOG)
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
