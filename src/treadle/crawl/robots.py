"""robots.txt: where it lives, and what it allows, given text someone else fetched.

A thin layer over the standard library's ``urllib.robotparser.RobotFileParser`` used
only as a parser (nothing here fetches); imports ``treadle.crawl.urls`` and the
standard library. One policy covers one origin (scheme, host and port).
"""

from __future__ import annotations

from urllib.robotparser import RobotFileParser

from treadle.crawl.urls import origin

__all__ = ["RobotsPolicy", "robots_url"]


def robots_url(url: str) -> str:
    """The robots.txt URL for the origin of ``url``: ``http://host:port/robots.txt``."""
    return origin(url) + "/robots.txt"


class RobotsPolicy:
    """What one origin's robots.txt lets ``user_agent`` fetch.

    Build one with ``from_text`` (a robots.txt you fetched), ``from_response`` (status
    and body of the fetch, with the usual conventions for errors), ``allow_all`` or
    ``disallow_all``. Matching is ``RobotFileParser``'s: ``Allow``/``Disallow`` values
    are path prefixes, the first matching rule of the group for the agent wins, and
    ``*``/``$`` wildcards are not understood.
    """

    __slots__ = ("_allows_everything", "_kind", "_parser", "user_agent")

    def __init__(self, lines: list[str], user_agent: str, *, kind: str = "rules") -> None:
        """Parse robots.txt ``lines``; prefer the class methods."""
        self._parser = RobotFileParser()
        self._parser.parse(lines)
        # No group at all (no robots.txt, or no User-agent line): RobotFileParser allows
        # every URL then, after parsing and quoting it; a crawl asks once per URL.
        self._allows_everything = not any("user-agent" in line.lower() for line in lines)
        self._kind = kind  # "rules", "allow all" or "disallow all", for repr
        self.user_agent = user_agent
        """The product token rules are matched against, e.g. ``treadle``."""

    @classmethod
    def from_text(cls, text: str, user_agent: str) -> RobotsPolicy:
        """The policy a robots.txt with content ``text`` sets for ``user_agent``."""
        return cls(text.splitlines(), user_agent)

    @classmethod
    def allow_all(cls, user_agent: str) -> RobotsPolicy:
        """The policy when there is no robots.txt (a 404 or any other 4xx but 401/403)."""
        # An empty robots.txt allows everything.
        return cls([], user_agent, kind="allow all")

    @classmethod
    def disallow_all(cls, user_agent: str) -> RobotsPolicy:
        """The policy when robots.txt is forbidden (401, 403) or unreachable (5xx)."""
        return cls(["User-agent: *", "Disallow: /"], user_agent, kind="disallow all")

    @classmethod
    def from_response(cls, status: int, body: bytes, user_agent: str) -> RobotsPolicy:
        """The policy from fetching robots.txt: its final HTTP status and body.

        2xx: parse the body (UTF-8; bad bytes replaced). 401 and 403: disallow all,
        as ``RobotFileParser.read`` does. Any other 4xx: allow all (no robots.txt).
        5xx: disallow all, since the site may be down (RFC 9309, section 2.3.1.4).
        Anything else, such as a 3xx left over after too many redirects: allow all
        (RFC 9309 treats that like a missing robots.txt).
        """
        if 200 <= status < 300:
            return cls.from_text(body.decode("utf-8", errors="replace"), user_agent)
        if status in (401, 403) or 500 <= status < 600:
            return cls.disallow_all(user_agent)
        return cls.allow_all(user_agent)

    def allowed(self, url: str) -> bool:
        """True if the policy lets ``user_agent`` fetch ``url``."""
        return self._allows_everything or self._parser.can_fetch(self.user_agent, url)

    @property
    def crawl_delay(self) -> float | None:
        """Seconds to wait between requests, from ``Crawl-delay``, or None if not set.

        (``RobotFileParser`` reads only whole numbers of seconds.)
        """
        delay = self._parser.crawl_delay(self.user_agent)
        return None if delay is None else float(delay)

    @property
    def sitemaps(self) -> list[str]:
        """The URLs of the ``Sitemap:`` lines, as written (they apply to every agent)."""
        return list(self._parser.site_maps() or ())

    def __repr__(self) -> str:
        return f"<RobotsPolicy {self._kind} for {self.user_agent!r}>"
