"""Echo server on trio (SocketStream.receive_some / send_all).

Usage: python trio_server.py PORT
"""

from __future__ import annotations

import functools

from _serverlib import BACKLOG, HOST, parse_args, prepare, ready, unavailable

try:
    import trio
except ImportError as exc:
    unavailable(exc)


async def handle(stream: trio.SocketStream) -> None:
    try:
        while True:
            data = await stream.receive_some(65536)
            if not data:
                break
            await stream.send_all(data)
    except trio.BrokenResourceError:
        pass


async def main(port: int) -> None:
    async with trio.open_nursery() as nursery:
        # nursery.start returns once the listeners are bound and listening.
        await nursery.start(
            functools.partial(trio.serve_tcp, handle, port, host=HOST, backlog=BACKLOG)
        )
        ready()


if __name__ == "__main__":
    args = parse_args(__doc__)
    prepare()
    trio.run(main, args.port)
