"""The crawler's per-URL record: what happened when one URL was fetched.

One ``Record`` per URL, written as one JSON Lines line and read back; the report is
computed from a list of them. Imports only the standard library.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["Record", "status_class"]


def status_class(status: int | None) -> str:
    """``"2xx"`` ... ``"5xx"`` for an HTTP status, ``"error"`` for None (no response),
    ``"other"`` for a status outside 200-599."""
    if status is None:
        return "error"
    if 200 <= status < 600:
        return f"{status // 100}xx"
    return "other"


@dataclasses.dataclass(slots=True)
class Record:
    """The outcome of fetching one URL.

    A fetch that got a response has a ``status``; one that failed (connection refused,
    timeout, bad response...) has ``exception`` instead, a short ``"Type: message"``
    text, and ``error_kind``. A redirect has its resolved target in ``next_url``.
    ``num_urls`` counts the in-scope links found on the page and ``num_new_urls`` those
    the crawl had not seen; ``referrer`` and ``depth`` say how the URL was found.
    """

    url: str
    """The URL requested, as it went on the wire (normalised and percent-encoded)."""
    status: int | None = None
    """The HTTP status code, or None if no response arrived."""
    next_url: str | None = None
    """For a redirect, the absolute URL of its Location; else None."""
    exception: str | None = None
    """Why the fetch failed, or None if it got a response."""
    size: int = 0
    """Bytes of body received."""
    content_type: str | None = None
    """The Content-Type header as received, or None."""
    encoding: str | None = None
    """The text encoding the body was decoded with (HTML only), or None."""
    num_urls: int = 0
    """In-scope links found on the page."""
    num_new_urls: int = 0
    """Of those, how many the crawl had not seen before."""
    started: float = 0.0
    """When the first try began, in seconds since the crawl started."""
    elapsed: float = 0.0
    """Seconds from the start of the first try to the end of the last."""
    tries: int = 0
    """How many requests for the URL reached the server (1 if the first try succeeded)."""
    referrer: str | None = None
    """The page whose link (or redirect) led here; None for a root."""
    depth: int = 0
    """Links followed from a root to get here: 0 for a root, 1 for a page a root links to.
    A redirect's target has the depth of the redirect."""
    error_kind: str | None = None
    """For a failed fetch, the kind of failure (``dns``, ``refused``, ``tls``, ``timeout``,
    ``reset``, ``protocol``...), to group errors by; else None."""

    @property
    def status_class(self) -> str:
        """``"2xx"``, ``"3xx"``, ``"4xx"`` or ``"5xx"``; ``"error"`` for a failed fetch,
        ``"other"`` for a status outside 200-599."""
        return "error" if self.exception is not None else status_class(self.status)

    def to_json(self) -> str:
        """One JSON Lines line (no newline), keys in the order the fields are declared."""
        return json.dumps({name: getattr(self, name) for name in _FIELD_ORDER})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Record:
        """A Record from a mapping such as a parsed ``to_json`` line.

        ``url`` is required; missing fields take their defaults. An unknown key raises
        ``ValueError`` rather than being dropped silently.
        """
        names = _FIELD_NAMES
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown Record field(s): {', '.join(unknown)}")
        if "url" not in data:
            raise ValueError("a Record needs a 'url'")
        values = dict(data)
        for name in ("started", "elapsed"):
            if name in values:
                values[name] = float(values[name])
        return cls(**values)

    @classmethod
    def from_json(cls, line: str) -> Record:
        """A Record from one line written by ``to_json``."""
        data = json.loads(line)
        if not isinstance(data, dict):
            raise ValueError(f"a Record line must hold a JSON object, got {line[:60]!r}")
        return cls.from_dict(data)


_FIELD_ORDER = tuple(field.name for field in dataclasses.fields(Record))
_FIELD_NAMES = frozenset(_FIELD_ORDER)
