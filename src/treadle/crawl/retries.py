"""Which failed fetches deserve another try, and how long to wait before it.

A retry must be able to fix the failure: a timeout, a reset, or a status a busy or
restarting server sends (408, 429, 500, 502, 503, 504). A name that does not resolve,
a port that refuses a fresh connection, or a certificate that does not verify will
fail the same way next time. Waits grow exponentially with jitter; a ``Retry-After``
header (seconds or an HTTP-date, parsed by ``email.utils``) overrides them. Pure
functions; imports treadle's errors and the standard library.
"""

from __future__ import annotations

import email.utils
import random
import socket
import ssl
from datetime import UTC, datetime

from treadle.errors import (
    ConnectError,
    HTTPError,
    ProtocolError,
    ReadTimeout,
    RemoteDisconnected,
    SitemapError,
)

__all__ = [
    "RETRYABLE_STATUSES",
    "backoff_delay",
    "error_kind",
    "is_retryable_error",
    "parse_retry_after",
]

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
"""Statuses that say "not now" rather than "never"."""


def _connect_cause(exc: BaseException) -> BaseException | None:
    """What a ``ConnectError`` wraps (the OSError or SSLError), or None (a connect timeout)."""
    return exc.__cause__ if isinstance(exc, ConnectError) else None


def error_kind(exc: BaseException) -> str:
    """A short name for the kind of failure, used to group errors in the report.

    ``dns``, ``refused``, ``tls``, ``connect-timeout``, ``connect``, ``timeout``,
    ``reset``, ``protocol``, ``sitemap``, or the exception's class name for anything else.
    """
    if isinstance(exc, SitemapError):
        return "sitemap"
    if isinstance(exc, ConnectError):
        cause = _connect_cause(exc)
        if isinstance(cause, socket.gaierror):
            return "dns"
        if isinstance(cause, ConnectionRefusedError):
            return "refused"
        if isinstance(cause, ssl.SSLError):
            return "tls"
        if cause is None and "timed out" in str(exc):
            return "connect-timeout"
        return "connect"
    if isinstance(exc, ReadTimeout | TimeoutError):
        return "timeout"
    if isinstance(exc, RemoteDisconnected | ConnectionError):
        return "reset"
    if isinstance(exc, ProtocolError):
        return "protocol"
    return type(exc).__name__


def is_retryable_error(exc: BaseException) -> bool:
    """True for a failure another try may fix: timeouts, resets, a connect that timed out."""
    if not isinstance(exc, HTTPError | ConnectionError | TimeoutError):
        return False
    kind = error_kind(exc)
    return kind in ("timeout", "reset", "connect-timeout", "connect")


def backoff_delay(
    tries: int, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Seconds to wait after the ``tries``-th failed try: ``base * 2**(tries-1)``, at most
    ``cap``, times a jitter factor in [0.5, 1.5) so that clients do not retry in step."""
    delay: float = min(cap, base * 2 ** (tries - 1))
    jitter: float = (rng or random).uniform(0.5, 1.5)
    return delay * jitter


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait, or None if absent or unreadable.

    The value is either whole seconds (``120``) or an HTTP-date; a date in the past
    means zero. ``now`` (aware, UTC) is for tests.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())
