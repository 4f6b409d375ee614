"""HTTP/1.1 hello-world server on treadle streams, written against treadle's asyncio-shaped API.

Usage: python treadle_streams.py PORT

Until treadle's streams land, the import fails and the script reports
``UNAVAILABLE ImportError: ...`` so the runner skips it.
"""

from __future__ import annotations

from _httpcommon import HOST, MAX_HEAD, RESPONSE, parse_args, prepare, ready, split_requests
from _httpcommon import unavailable as _unavailable

try:
    import treadle
    from treadle import run, start_server  # noqa: F401  (fail early if streams are missing)
except ImportError as exc:
    _unavailable(exc)


async def handle(reader, writer) -> None:  # type: ignore[no-untyped-def]
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
    server = await treadle.start_server(handle, HOST, port)
    ready()
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    args = parse_args(__doc__)
    prepare()
    treadle.run(main(args.port))
