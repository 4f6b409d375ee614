"""The crawl's exchanges archived as a WARC/1.1 file (``--warc FILE.warc.gz``), with warcio.

Each exchange becomes a ``request`` record (the request head exactly as the client wrote
it), a ``response`` record and a ``metadata`` record (how the crawl found the URL), one
gzip member each, after a ``warcinfo`` record per run. The response is stored as the
crawler read it: de-chunked and decompressed, so its head is rewritten to match, as
the WARC spec allows for a transformed payload: ``Transfer-Encoding``,
``Content-Encoding`` and a ``Content-Length`` that no longer fits are renamed
``X-Treadle-Orig-*`` (kept, not dropped) and ``Content-Length`` gives the stored
payload's length, so any WARC reader parses it. A body the crawler chose not to read
(a big file it does not parse) is stored empty with ``WARC-Truncated: unspecified``.
Crawler layer: imports warcio (the ``crawl`` extra) and the standard library; does
blocking file I/O.
"""

from __future__ import annotations

import dataclasses
import io
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

__all__ = ["ORIGINAL_HEADER_PREFIX", "Exchange", "WarcArchive", "WarcError"]

ORIGINAL_HEADER_PREFIX = "X-Treadle-Orig-"
"""Prefix of the name a rewritten response header keeps its original value under."""
# Headers describing bytes on the wire that the stored payload no longer has.
_WIRE_ONLY_HEADERS = frozenset({"transfer-encoding", "content-encoding"})
WARC_1_1 = "https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/"


class WarcError(Exception):
    """The WARC file cannot be written (the message says why and what to do)."""


@dataclasses.dataclass(slots=True)
class Exchange:
    """One request and its response, as the crawler saw them."""

    url: str
    request_head: bytes
    """The request head as written to the wire (request line, fields, blank line)."""
    date: datetime
    """When the response began to arrive (UTC)."""
    http_version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    """The response's fields as received, in order."""
    body: bytes
    """The payload as read: de-chunked and decompressed."""
    body_complete: bool = True
    """False when the crawler chose not to read the body (``body`` is then empty)."""


class WarcArchive:
    """A gzipped WARC/1.1 file the crawl appends its exchanges to, record by record.

    ``resume_at``: None starts a new file; a byte offset (what ``flush`` returned at
    the last commit of the crawl's state) cuts the file there, dropping the records of
    URLs the state had not committed and any gzip member a crash tore, and appends.
    ``info`` goes into this run's ``warcinfo`` record.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        info: dict[str, str],
        resume_at: int | None = None,
    ) -> None:
        from warcio.warcwriter import WARCWriter  # type: ignore[import-untyped]

        self.path = Path(path)
        try:
            if resume_at is None or not self.path.exists():
                self._file: IO[bytes] = self.path.open("wb")
            else:
                self._file = self.path.open("r+b")
                size = self._file.seek(0, os.SEEK_END)
                if size < resume_at:
                    self._file.close()
                    raise WarcError(
                        f"the WARC file {str(self.path)!r} is shorter ({size} bytes) than the"
                        f" crawl state says it wrote ({resume_at}): give this crawl's WARC"
                        " file, or a new --state file"
                    )
                self._file.truncate(resume_at)
                self._file.seek(resume_at)
        except OSError as exc:
            raise WarcError(f"cannot write the WARC file {str(self.path)!r}: {exc}") from None
        self._writer = WARCWriter(self._file, gzip=True, warc_version="WARC/1.1")
        record = self._writer.create_warcinfo_record(
            self.path.name, {"format": "WARC File Format 1.1", "conformsTo": WARC_1_1, **info}
        )
        self._writer.write_record(record)
        self.exchanges = 0
        """Exchanges archived by this run."""

    def archive(self, exchange: Exchange, metadata: dict[str, str]) -> None:
        """Write ``exchange`` as request, response and metadata records."""
        from warcio.statusandheaders import StatusAndHeaders  # type: ignore[import-untyped]

        writer = self._writer
        date = _warc_date(exchange.date)
        request_line, *fields = exchange.request_head.decode("latin-1").split("\r\n")
        request = writer.create_warc_record(
            exchange.url,
            "request",
            http_headers=StatusAndHeaders(
                request_line, [_field(line) for line in fields if line], is_http_request=True
            ),
            warc_headers_dict={"WARC-Date": date},
        )
        extra = {"WARC-Date": date, "WARC-Concurrent-To": _record_id(request)}
        if not exchange.body_complete:
            extra["WARC-Truncated"] = "unspecified"
        response = writer.create_warc_record(
            exchange.url,
            "response",
            payload=io.BytesIO(exchange.body),
            length=len(exchange.body),
            http_headers=StatusAndHeaders(
                f"{exchange.status} {exchange.reason}".rstrip(),
                _rewritten(exchange.headers, len(exchange.body)),
                protocol=f"HTTP/{exchange.http_version}",
            ),
            warc_headers_dict=extra,
        )
        fields_text = "".join(f"{name}: {value}\r\n" for name, value in metadata.items())
        fields_bytes = fields_text.encode()
        # Every record is given its length: without one warcio buffers the payload in
        # a temporary file it never closes.
        about = writer.create_warc_record(
            exchange.url,
            "metadata",
            payload=io.BytesIO(fields_bytes),
            length=len(fields_bytes),
            warc_content_type="application/warc-fields",
            warc_headers_dict={"WARC-Date": date, "WARC-Concurrent-To": _record_id(response)},
        )
        for record in (request, response, about):
            writer.write_record(record)
        self.exchanges += 1

    def append(self, records: bytes) -> None:
        """Append whole records (gzip members) another ``WarcArchive`` wrote, as they are."""
        self._file.write(records)

    def flush(self) -> int:
        """Push what was written to the operating system; the file's length."""
        self._file.flush()
        return self._file.tell()

    def close(self) -> None:
        self._file.close()


def _record_id(record: Any) -> str:
    return str(record.rec_headers.get_header("WARC-Record-ID"))


def _warc_date(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _field(line: str) -> tuple[str, str]:
    name, _, value = line.partition(":")
    return name, value.strip(" \t")


def _rewritten(headers: list[tuple[str, str]], payload_length: int) -> list[tuple[str, str]]:
    """The response fields fitted to the stored payload, in order (originals kept)."""
    fields = []
    length = str(payload_length)
    has_length = False
    for name, value in headers:
        lowered = name.lower()
        if lowered in _WIRE_ONLY_HEADERS or (lowered == "content-length" and value != length):
            fields.append((ORIGINAL_HEADER_PREFIX + name, value))
        else:
            has_length = has_length or lowered == "content-length"
            fields.append((name, value))
    if not has_length:
        fields.append(("Content-Length", length))
    return fields
