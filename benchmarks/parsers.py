"""Which HTTP/1.1 parser the client uses: h11 against httptools on the same responses.

Parses N copies of a typical response (an 8 KiB HTML page with a content length, and
a chunked one) with each parser, fed in 4 KiB pieces as a socket delivers them, and
prints microseconds per response and the ratio. Run:
    python benchmarks/parsers.py
Needs: pip install h11 httptools
"""

from __future__ import annotations

import time

import h11
import httptools

BODY = b"<html>" + b"x" * 8000 + b"</html>"
FIXED = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
    b"Content-Length: %d\r\nServer: demo\r\nDate: Tue, 24 Nov 2026 18:00:00 GMT\r\n"
    b"Cache-Control: no-cache\r\n\r\n" % len(BODY)
) + BODY
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"".join(b"%x\r\n%s\r\n" % (1024, BODY[i : i + 1024]) for i in range(0, 8192, 1024))
    + b"0\r\n\r\n"
)
N = 20_000


def pieces(response: bytes) -> list[bytes]:
    return [response[i : i + 4096] for i in range(0, len(response), 4096)]


def parse_h11(chunks: list[bytes]) -> int:
    connection = h11.Connection(h11.CLIENT)
    connection.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    connection.send(h11.EndOfMessage())
    size = 0
    for chunk in chunks:
        connection.receive_data(chunk)
    while True:
        event = connection.next_event()
        if isinstance(event, h11.Data):
            size += len(event.data)
        elif event is h11.NEED_DATA or isinstance(event, h11.EndOfMessage):
            return size


class _Collector:
    def __init__(self) -> None:
        self.size = 0
        self.headers: list[tuple[bytes, bytes]] = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.size += len(body)


def parse_httptools(chunks: list[bytes]) -> int:
    collector = _Collector()
    parser = httptools.HttpResponseParser(collector)
    for chunk in chunks:
        parser.feed_data(chunk)
    return collector.size


def main() -> None:
    for label, response in (("content-length", FIXED), ("chunked", CHUNKED)):
        chunks = pieces(response)
        results = {}
        for name, parse in (("h11", parse_h11), ("httptools", parse_httptools)):
            assert parse(chunks) >= 8000
            started = time.perf_counter()
            for _ in range(N):
                parse(chunks)
            results[name] = (time.perf_counter() - started) / N * 1e6
        ratio = results["h11"] / results["httptools"]
        print(
            f"{label:>15}: h11 {results['h11']:6.1f} us, httptools {results['httptools']:5.1f} us"
            f" per response -> httptools {ratio:.1f}x faster"
        )


if __name__ == "__main__":
    main()
