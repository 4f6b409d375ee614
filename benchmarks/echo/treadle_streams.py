"""Echo server on treadle streams, written against treadle's asyncio-shaped API.

Usage: python treadle_streams.py PORT [--compiled]

``--compiled`` insists on the compiled build (``treadle.compiled``), so that the
runner's "treadle streams, compiled" can't silently measure pure Python.

If treadle cannot be imported, the script reports ``UNAVAILABLE ImportError: ...``
and the runner skips it.
"""

from __future__ import annotations

from _serverlib import HOST, parse_args, prepare, ready, unavailable

try:
    import treadle
    from treadle import run, start_server  # noqa: F401  (fail early if streams are missing)
except ImportError as exc:
    unavailable(exc)


async def handle(reader, writer) -> None:  # type: ignore[no-untyped-def]
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
    server = await treadle.start_server(handle, HOST, port)
    ready()
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    args = parse_args(__doc__, compiled_flag=True)
    if getattr(treadle, "compiled", False) != args.compiled:
        unavailable(ImportError(f"treadle.compiled is not {args.compiled} ({treadle.__file__})"))
    prepare()
    treadle.run(main(args.port))
