"""A crawl's state in SQLite, so that a crawl stopped by Ctrl-C, SIGTERM or a crash resumes.

The file holds every URL the crawl put on its frontier (the seen set), in the order it
did, and how each ended: still on the frontier, fetched (with its ``Record`` as a JSON
line), disallowed by robots.txt, or too deep. The crawler batches its changes and
commits them a few times a second in one transaction (WAL mode, ``synchronous=NORMAL``:
a commit survives the process being killed, not the machine losing power), and hands a
record on only once it is committed. So a record seen outside is never fetched again,
and a URL whose record was not committed is fetched again on resume. ``repair_json_lines``
brings a ``--json`` file in line with the state after a crash. Crawler layer: imports
the standard library and ``treadle.crawl.records``; does blocking file I/O (small).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from treadle.crawl.records import Record

__all__ = ["CrawlState", "SavedJob", "Snapshot", "StateError", "repair_json_lines"]

# The layout of the file; a file of another version is refused, never misread.
_SCHEMA_VERSION = "1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS crawl (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS urls (
    -- Invariant: id orders the rows as the crawl put their URLs on the frontier.
    id INTEGER PRIMARY KEY,
    url TEXT NOT NULL,
    is_sitemap INTEGER NOT NULL,
    depth INTEGER NOT NULL,
    referrer TEXT,
    redirects_left INTEGER NOT NULL,
    -- NULL: on the frontier; else 'fetched', 'disallowed' or 'too-deep'.
    outcome TEXT,
    -- The Record as a JSON line, when fetched.
    record TEXT,
    UNIQUE (url, is_sitemap)
);
"""
FETCHED = "fetched"
DISALLOWED = "disallowed"
TOO_DEEP = "too-deep"


class StateError(Exception):
    """The state file cannot be used for this crawl (the message says why and what to do)."""


@dataclasses.dataclass(slots=True, frozen=True)
class SavedJob:
    """A URL on the saved frontier, with how it was found (the crawler's job fields)."""

    url: str
    depth: int
    referrer: str | None
    redirects_left: int
    is_sitemap: bool


@dataclasses.dataclass(slots=True)
class Snapshot:
    """What a state file says about a crawl so far."""

    frontier: list[SavedJob] = dataclasses.field(default_factory=list)
    seen: set[str] = dataclasses.field(default_factory=set)
    sitemaps_seen: set[str] = dataclasses.field(default_factory=set)
    records: list[Record] = dataclasses.field(default_factory=list)
    sitemaps: list[Record] = dataclasses.field(default_factory=list)
    disallowed: list[str] = dataclasses.field(default_factory=list)
    too_deep: list[str] = dataclasses.field(default_factory=list)


class CrawlState:
    """One crawl's state file: ``load`` it, then queue changes and ``commit`` them.

    Changes wait in memory, in the order they were made, until ``commit`` writes them
    all in one transaction. ``close`` commits what is pending.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.Error as exc:
            raise StateError(f"cannot open the state file {str(self.path)!r}: {exc}") from None
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            version = self._get("schema")
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StateError(
                f"{str(self.path)!r} is not a crawl state file ({exc}): give a new file"
            ) from None
        if version is None:
            self._set("schema", _SCHEMA_VERSION)
        elif version != _SCHEMA_VERSION:
            self._db.close()
            raise StateError(
                f"{str(self.path)!r} was written by another version of treadle"
                f" (layout {version}, this one reads {_SCHEMA_VERSION}): give a new file"
            )
        self._pending: list[tuple[str, tuple[object, ...]]] = []
        self._pending_records: list[Record] = []
        self.commits = 0
        """Transactions committed so far."""

    def _get(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM crawl WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO crawl VALUES (?, ?)", (key, value))

    def load(self, roots: list[str]) -> Snapshot:
        """What the file holds, after checking it is a crawl of ``roots`` (or new)."""
        saved = self._get("roots")
        if saved is None:
            self._set("roots", json.dumps(roots))
            return Snapshot()
        if json.loads(saved) != roots:
            raise StateError(
                f"the state file {str(self.path)!r} belongs to a crawl of"
                f" {', '.join(json.loads(saved))}: give those roots to resume it,"
                " or a new --state file"
            )
        snapshot = Snapshot()
        rows = self._db.execute(
            "SELECT url, is_sitemap, depth, referrer, redirects_left, outcome, record"
            " FROM urls ORDER BY id"
        )
        for url, is_sitemap, depth, referrer, redirects_left, outcome, record in rows:
            if outcome == TOO_DEEP:
                snapshot.too_deep.append(url)
                continue
            (snapshot.sitemaps_seen if is_sitemap else snapshot.seen).add(url)
            if outcome is None:
                job = SavedJob(url, depth, referrer, redirects_left, bool(is_sitemap))
                snapshot.frontier.append(job)
            elif outcome == DISALLOWED:
                snapshot.disallowed.append(url)
            else:
                (snapshot.sitemaps if is_sitemap else snapshot.records).append(
                    Record.from_json(record)
                )
        return snapshot

    def saved_records(self) -> list[Record]:
        """The page records committed so far, in the order they were queued."""
        rows = self._db.execute(
            "SELECT record FROM urls WHERE outcome = ? AND is_sitemap = 0 ORDER BY id",
            (FETCHED,),
        )
        return [Record.from_json(record) for (record,) in rows]

    # --- changes ------------------------------------------------------------------------

    def queued(self, job: SavedJob) -> None:
        """``job.url`` went on the frontier (a too-deep URL found again, shallower, too)."""
        self._pending.append(
            (
                "INSERT INTO urls (url, is_sitemap, depth, referrer, redirects_left)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (url, is_sitemap) DO UPDATE SET"
                " depth = excluded.depth, referrer = excluded.referrer,"
                " redirects_left = excluded.redirects_left, outcome = NULL",
                (job.url, job.is_sitemap, job.depth, job.referrer, job.redirects_left),
            )
        )

    def too_deep(self, url: str, depth: int) -> None:
        """``url`` was found, deeper than the crawl goes."""
        self._pending.append(
            (
                "INSERT OR IGNORE INTO urls (url, is_sitemap, depth, redirects_left, outcome)"
                " VALUES (?, 0, ?, 0, ?)",
                (url, depth, TOO_DEEP),
            )
        )

    def fetched(self, record: Record, *, is_sitemap: bool = False) -> None:
        """``record.url`` is done. A page's record is handed on by the next ``commit``."""
        self._done(record.url, is_sitemap, FETCHED, record.to_json())
        if not is_sitemap:
            self._pending_records.append(record)

    def disallowed(self, url: str) -> None:
        """robots.txt disallows ``url``: it is done, without a record."""
        self._done(url, False, DISALLOWED, None)

    def _done(self, url: str, is_sitemap: bool, outcome: str, record: str | None) -> None:
        # The URL's row exists (it was queued first); an upsert all the same, so that a
        # slip elsewhere could never drop an outcome.
        self._pending.append(
            (
                "INSERT INTO urls (url, is_sitemap, depth, redirects_left, outcome, record)"
                " VALUES (?, ?, 0, 0, ?, ?) ON CONFLICT (url, is_sitemap) DO UPDATE SET"
                " outcome = excluded.outcome, record = excluded.record",
                (url, is_sitemap, outcome, record),
            )
        )

    def note_warc_length(self, length: int) -> None:
        """The WARC file (``--warc``) holds ``length`` bytes of this crawl's records."""
        self._pending.append(("INSERT OR REPLACE INTO crawl VALUES ('warc_length', ?)", (length,)))

    def warc_length(self) -> int | None:
        """The length of the WARC file at the last commit, or None if none was noted."""
        value = self._get("warc_length")
        return None if value is None else int(value)

    @property
    def pending(self) -> int:
        """Changes not committed yet."""
        return len(self._pending)

    def commit(self) -> list[Record]:
        """Write the pending changes in one transaction; the page records it made durable."""
        if not self._pending:
            return []
        pending, self._pending = self._pending, []
        records, self._pending_records = self._pending_records, []
        self._db.execute("BEGIN")
        try:
            for statement, parameters in pending:
                self._db.execute(statement, parameters)
        except BaseException:
            self._db.execute("ROLLBACK")
            self._pending[:0] = pending
            self._pending_records[:0] = records
            raise
        self._db.execute("COMMIT")
        self.commits += 1
        return records

    def close(self) -> list[Record]:
        """Commit what is pending and close the file; the page records that commit made durable."""
        try:
            return self.commit()
        finally:
            self._db.close()


def repair_json_lines(path: str | os.PathLike[str], records: Iterable[Record]) -> int:
    """Make the JSON Lines file at ``path`` hold each of ``records`` once; lines added.

    After a crash the file may end in a torn line (cut before its newline): it is cut
    off. Lines already there are kept; the records missing from the file (committed to
    the state just before the crash, not yet written) are appended. A line whose URL is
    not among ``records`` means the file is another crawl's: ``StateError``.
    """
    path = Path(path)
    by_url = {record.url: record for record in records}
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = b""
    complete = data[: data.rfind(b"\n") + 1]
    written = set()
    for number, line in enumerate(complete.splitlines(), 1):
        try:
            url = Record.from_json(line.decode()).url
        except (ValueError, UnicodeDecodeError) as exc:
            raise StateError(
                f"line {number} of the --json file {str(path)!r} is not a record ({exc}):"
                " give this crawl's --json file, or a new one"
            ) from None
        if url not in by_url or url in written:
            raise StateError(
                f"the --json file {str(path)!r} holds {url} (line {number}), which the"
                " crawl (its state file, or its worker in Redis) does not record once:"
                " give this crawl's --json file, or a new one"
            )
        written.add(url)
    missing = [record for url, record in by_url.items() if url not in written]
    with path.open("r+b" if data else "wb") as file:
        file.truncate(len(complete))
        file.seek(len(complete))
        file.write(b"".join(record.to_json().encode() + b"\n" for record in missing))
    return len(missing)
