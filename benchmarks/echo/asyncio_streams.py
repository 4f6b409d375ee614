"""Echo server on asyncio streams (StreamReader/StreamWriter); ``--uvloop`` runs it on uvloop.

Usage: python asyncio_streams.py PORT [--uvloop]
"""

from __future__ import annotations

import asyncio

from _serverlib import BACKLOG, HOST, parse_args, prepare, ready, unavailable


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
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
