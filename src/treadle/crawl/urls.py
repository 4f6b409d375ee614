"""URL rules for the crawler: normalisation, and which URLs a crawl may visit.

Pure functions and one small class, no I/O; imports only the standard library, so
any crawler (treadle's, or the aiohttp baseline in ``benchmarks/crawl``) can use it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import SplitResult, quote, urljoin, urlsplit, urlunsplit

__all__ = [
    "Scope",
    "authority_key",
    "is_http_url",
    "normalize_escapes",
    "normalize_url",
    "origin",
    "remove_dot_segments",
]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_HTTP_SCHEMES = frozenset(_DEFAULT_PORTS)
# What the WHATWG URL parser strips from both ends of a URL: C0 controls and space.
_C0_AND_SPACE = "".join(map(chr, range(0x21)))


def remove_dot_segments(path: str) -> str:
    """Resolve ``.`` and ``..`` segments of a URL path (RFC 3986, section 5.2.4).

    ``..`` never climbs above the root: ``/a/../../b`` becomes ``/b``. A trailing
    ``.`` or ``..`` leaves a trailing slash (``/a/b/..`` becomes ``/a/``).
    """
    if "." not in path:
        return path
    segments = path.split("/")
    output: list[str] = []
    for segment in segments:
        if segment == ".":
            continue
        if segment == "..":
            # Keep the empty first segment of an absolute path: it stands for the root.
            if len(output) > 1 or (output and output[0] != ""):
                output.pop()
            continue
        output.append(segment)
    # A path that ended in "." or ".." names a directory: keep its trailing slash.
    if segments[-1] in (".", ".."):
        output.append("")
    resolved = "/".join(output)
    if path.startswith("/") and not resolved.startswith("/"):
        resolved = "/" + resolved
    return resolved


_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
# Characters kept as they are in a path or query: unreserved, reserved and "%".
_SAFE = "/?&=%:@!$'()*+,;~-._[]#"


def normalize_escapes(text: str) -> str:
    """``text`` (a path or query) percent-encoded the one way (RFC 3986, section 6.2.2).

    Escapes of unreserved characters are decoded (``%7E`` becomes ``~``), other escapes
    get upper-case hex (``%2f`` becomes ``%2F``, still distinct from ``/``), and what
    may not appear in a URL (non-ASCII as UTF-8, spaces, quotes) is escaped.
    """

    def escape(match: re.Match[str]) -> str:
        char = chr(int(match[1], 16))
        return char if char in _UNRESERVED else "%" + match[1].upper()

    text = quote(text, safe=_SAFE)
    return _ESCAPE.sub(escape, text) if "%" in text else text


def _split_netloc(netloc: str) -> tuple[str, str, str]:
    """Split ``user@host:port`` into (userinfo with its ``@``, host, port)."""
    userinfo, at, hostport = netloc.rpartition("@")
    userinfo = userinfo + at
    if hostport.startswith("["):
        # An IPv6 literal: the port, if any, follows the closing bracket.
        end = hostport.find("]")
        if end == -1:
            return userinfo, hostport, ""
        return userinfo, hostport[: end + 1], hostport[end + 2 :]
    host, _, port = hostport.partition(":")
    return userinfo, host, port


def _normalize_netloc(scheme: str, netloc: str) -> str:
    userinfo, host, port = _split_netloc(netloc)
    host = host.lower()
    if port == "" or (port.isdigit() and int(port) == _DEFAULT_PORTS.get(scheme)):
        return userinfo + host
    return f"{userinfo}{host}:{port}"


def normalize_url(url: str, base: str | None = None) -> str:
    """Return ``url`` in the one spelling the crawler uses to recognise a page it has seen.

    Leading and trailing spaces and control characters are stripped (as browsers do
    with an ``href``), and ``url`` is resolved against ``base`` if given
    (``urllib.parse.urljoin``). Then dot segments are resolved, the fragment is
    dropped, scheme and host are lower-cased, the default port (``:80`` for http,
    ``:443`` for https) is removed, and an empty path becomes ``/`` (for URLs with a
    host). Path and query are percent-encoded as the wire sees them
    (``normalize_escapes``): ``%7E`` and ``~`` are one URL, but ``%2F`` and ``/`` stay
    apart, because servers may treat them differently.

    Raises ``ValueError`` for a URL ``urllib.parse`` cannot split (for example an
    unclosed IPv6 bracket).
    """
    url = url.strip(_C0_AND_SPACE)
    if base is not None:
        url = urljoin(base, url)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    netloc = parts.netloc
    path = parts.path
    if netloc:
        netloc = _normalize_netloc(scheme, netloc)
        path = remove_dot_segments(path) or "/"
    elif scheme in _HTTP_SCHEMES or path.startswith("/"):
        path = remove_dot_segments(path)
    path = normalize_escapes(path)
    query = normalize_escapes(parts.query)
    return urlunsplit(SplitResult(scheme, netloc, path, query, ""))


def is_http_url(url: str) -> bool:
    """True if ``url`` is an absolute ``http`` or ``https`` URL with a host."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in _HTTP_SCHEMES and bool(parts.hostname)


def authority_key(url: str) -> str | None:
    """``url`` up to the end of its authority (``scheme://user@host:port``), or None.

    What ``urlsplit`` makes of a URL's scheme and netloc depends on this prefix alone
    (the netloc ends at the first ``/``, ``?`` or ``#`` after ``://``), so anything
    computed from those two can be memoised by it. None when ``url`` has no ``://``.
    """
    start = url.find("://") + 3
    if start < 3:
        return None
    end = len(url)
    for delimiter in "/?#":
        found = url.find(delimiter, start, end)
        if found >= 0:
            end = found
    return url[:end]


# origin's answers by authority_key (a crawl meets few origins; a crawler asks for each
# URL's several times); forgotten all at once when this many are kept.
_ORIGINS_KEPT = 4096
_origins: dict[str, str] = {}


def origin(url: str) -> str:
    """The scheme, host and port of ``url`` (normalised), e.g. ``http://example.com:8080``.

    robots.txt and politeness limits apply per origin.
    """
    key = authority_key(url)
    found = _origins.get(key) if key is not None else None
    if found is None:
        parts = urlsplit(normalize_url(url))
        found = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        if key is not None:
            if len(_origins) >= _ORIGINS_KEPT:
                _origins.clear()
            _origins[key] = found
    return found


def _ip_or_none(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _www_variants(host: str) -> tuple[str, str]:
    bare = host.removeprefix("www.")
    return bare, "www." + bare


def _last_two_labels(host: str) -> str:
    return ".".join(host.rstrip(".").split(".")[-2:])


class Scope:
    """Which URLs a crawl started at ``roots`` may visit.

    Only ``http`` and ``https`` URLs are ever allowed. In strict mode (the default) a
    URL's host must be a root's host or its ``www.`` variant, in either direction: a
    root at ``example.com`` allows ``www.example.com`` and a root at
    ``www.example.com`` allows ``example.com``. In lenient mode the host need only
    share its last two labels with a root's host (``docs.example.com`` and
    ``example.com``; note this is coarse for hosts like ``example.co.uk``). A root
    whose host is an IP address (v4 or v6) matches that address exactly, in either
    mode. Ports are not compared, as in the classic crawler. ``include`` and
    ``exclude``, regular expressions searched anywhere in the URL (``re.search``),
    keep only the URLs ``include`` matches and drop those ``exclude`` matches.
    """

    __slots__ = (
        "_exclude",
        "_host_decisions",
        "_hosts",
        "_include",
        "_ips",
        "_suffixes",
        "roots",
        "strict",
    )

    def __init__(
        self,
        roots: str | Iterable[str],
        *,
        strict: bool = True,
        include: str | re.Pattern[str] | None = None,
        exclude: str | re.Pattern[str] | None = None,
    ) -> None:
        if isinstance(roots, str):
            roots = [roots]
        self.roots: tuple[str, ...] = tuple(roots)
        """The root URLs, as given."""
        self.strict = strict
        """True for strict host matching, False for lenient (last two labels)."""
        if not self.roots:
            raise ValueError("Scope needs at least one root URL")
        # Invariant: a host is allowed iff it is in _hosts, its IP is in _ips, or
        # (lenient mode, non-IP host) its last two labels are in _suffixes.
        self._hosts: set[str] = set()
        self._ips: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
        self._suffixes: set[str] = set()
        for root in self.roots:
            host = _host_of(root)
            if host is None:
                raise ValueError(f"scope root must be an http or https URL, got {root!r}")
            ip = _ip_or_none(host)
            if ip is not None:
                self._ips.add(ip)
            elif strict:
                self._hosts.update(_www_variants(host))
            else:
                self._suffixes.add(_last_two_labels(host))
        self._include = _compile_pattern(include, "include")
        # allows_host's answers by "scheme://authority" (a crawl meets few), so that a
        # link costs a dict look-up, not a urlsplit and an IP address parse.
        self._host_decisions: dict[str, bool] = {}
        self._exclude = _compile_pattern(exclude, "exclude")

    def allows(self, url: str) -> bool:
        """True if the crawl may visit ``url`` (an absolute URL)."""
        if self._exclude is not None and self._exclude.search(url):
            return False
        if self._include is not None and not self._include.search(url):
            return False
        return self.allows_host(url)

    def allows_host(self, url: str) -> bool:
        """True if ``url`` is an http(s) URL on an allowed host, whatever ``include`` and
        ``exclude`` say (they choose pages; a sitemap on the site is read regardless)."""
        key = authority_key(url)  # the answer depends on the scheme and host alone
        if key is None:
            return self._decide_host(url)
        decision = self._host_decisions.get(key)
        if decision is None:
            if len(self._host_decisions) >= _HOST_DECISIONS_KEPT:
                self._host_decisions.clear()
            decision = self._host_decisions[key] = self._decide_host(url)
        return decision

    def _decide_host(self, url: str) -> bool:
        host = _host_of(url)
        if host is None:
            return False
        if host in self._hosts:
            return True
        ip = _ip_or_none(host)
        if ip is not None:
            return ip in self._ips
        return bool(self._suffixes) and _last_two_labels(host) in self._suffixes

    def __repr__(self) -> str:
        include = self._include.pattern if self._include is not None else None
        exclude = self._exclude.pattern if self._exclude is not None else None
        return (
            f"Scope({list(self.roots)!r}, strict={self.strict!r},"
            f" include={include!r}, exclude={exclude!r})"
        )


# How many answers a Scope keeps (it forgets them all when it has this many).
_HOST_DECISIONS_KEPT = 4096


def _host_of(url: str) -> str | None:
    """The lower-cased host of an http(s) URL, or None for anything else."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme.lower() not in _HTTP_SCHEMES or not host:
        return None
    return host


def _compile_pattern(
    pattern: str | re.Pattern[str] | None, name: str
) -> re.Pattern[str] | None:
    if pattern is None or isinstance(pattern, re.Pattern):
        return pattern
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid {name} pattern {pattern!r}: {exc}") from None
