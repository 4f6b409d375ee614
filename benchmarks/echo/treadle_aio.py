"""The asyncio echo servers of this directory, unchanged, on treadle.aio's loop.

Usage: python treadle_aio.py PORT [--streams] [--transport treadle|asyncio] [--compiled]

Without ``--streams`` it runs ``asyncio_protocol.py``'s server (``Protocol.data_received``
→ ``transport.write``), with it ``asyncio_streams.py``'s (``read``/``write``/``drain``).
``--transport`` picks treadle.aio's stream transport: treadle's own (the default) or
asyncio's, to tell the loop's share of a difference from the transport's.
``--compiled`` insists on the compiled build (``treadle.compiled``), so that the runner's
"treadle.aio protocol, compiled" can't silently measure pure Python.
"""

from __future__ import annotations

import argparse
import asyncio

import asyncio_protocol
import asyncio_streams
from _serverlib import prepare, unavailable

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--streams", action="store_true", help="asyncio streams, not Protocol")
    parser.add_argument("--transport", choices=["treadle", "asyncio"], default="treadle")
    parser.add_argument("--compiled", action="store_true", help="insist on compiled treadle")
    args = parser.parse_args()
    prepare()
    try:
        import treadle.aio
    except ImportError as exc:
        unavailable(exc)
    if treadle.compiled != args.compiled:
        unavailable(ImportError(f"treadle.compiled is not {args.compiled} ({treadle.__file__})"))
    server = asyncio_streams if args.streams else asyncio_protocol
    with asyncio.Runner(
        loop_factory=lambda: treadle.aio.new_event_loop(transport=args.transport)
    ) as runner:
        runner.run(server.main(args.port))
