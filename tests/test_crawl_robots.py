"""robots.txt policy (treadle.crawl.robots)."""

from __future__ import annotations

from urllib.robotparser import RobotFileParser

import pytest

from treadle.crawl.robots import RobotsPolicy, robots_url

ROBOTS = """\
# A comment
User-agent: treadle
Disallow: /no-treadle/
Crawl-delay: 2

User-agent: *
Allow: /private/open
Disallow: /private/
Disallow: /tmp
"""


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://example.com/a/b?c#d", "http://example.com/robots.txt"),
        ("HTTPS://Example.com:443/x", "https://example.com/robots.txt"),
        ("http://example.com:8080/x", "http://example.com:8080/robots.txt"),
        ("http://user:pw@example.com/x", "http://example.com/robots.txt"),
        ("http://[::1]:8000/x", "http://[::1]:8000/robots.txt"),
    ],
)
def test_robots_url(url: str, expected: str) -> None:
    assert robots_url(url) == expected


class TestFromText:
    def test_generic_group(self) -> None:
        policy = RobotsPolicy.from_text(ROBOTS, "othercrawler")
        assert policy.allowed("http://example.com/")
        assert policy.allowed("http://example.com/no-treadle/x")
        assert not policy.allowed("http://example.com/private/secret")
        assert policy.allowed("http://example.com/private/open")
        assert not policy.allowed("http://example.com/tmp/file")
        assert not policy.allowed("http://example.com/tmpfile")  # a prefix rule
        assert policy.crawl_delay is None

    def test_agent_specific_group_replaces_the_generic_one(self) -> None:
        policy = RobotsPolicy.from_text(ROBOTS, "treadle")
        assert not policy.allowed("http://example.com/no-treadle/x")
        assert policy.allowed("http://example.com/private/secret")

    def test_agent_with_version_matches_its_product_token(self) -> None:
        policy = RobotsPolicy.from_text(ROBOTS, "treadle/0.1")
        assert not policy.allowed("http://example.com/no-treadle/")

    def test_crawl_delay_is_a_float(self) -> None:
        delay = RobotsPolicy.from_text(ROBOTS, "treadle").crawl_delay
        assert delay == 2.0
        assert isinstance(delay, float)

    def test_empty_robots_txt_allows_everything(self) -> None:
        policy = RobotsPolicy.from_text("", "treadle")
        assert policy.allowed("http://example.com/anything")
        assert policy.crawl_delay is None

    def test_disallow_everything(self) -> None:
        policy = RobotsPolicy.from_text("User-agent: *\nDisallow: /\n", "treadle")
        assert not policy.allowed("http://example.com/")
        assert not policy.allowed("http://example.com")


def test_allow_all() -> None:
    policy = RobotsPolicy.allow_all("treadle")
    assert policy.allowed("http://example.com/private/")
    assert policy.crawl_delay is None


def test_disallow_all() -> None:
    policy = RobotsPolicy.disallow_all("treadle")
    assert not policy.allowed("http://example.com/")
    assert not policy.allowed("http://example.com/any/path?q=1")


@pytest.mark.parametrize(
    ("status", "allows_private", "allows_root"),
    [
        (200, False, True),  # parsed
        (404, True, True),  # missing: allow all
        (410, True, True),
        (401, False, False),  # forbidden: disallow all
        (403, False, False),
        (500, False, False),  # unreachable: disallow all
        (503, False, False),
        (302, True, True),  # a redirect left unresolved: as if missing
    ],
)
def test_from_response(status: int, allows_private: bool, allows_root: bool) -> None:
    policy = RobotsPolicy.from_response(status, ROBOTS.encode(), "othercrawler")
    assert policy.allowed("http://example.com/private/x") is allows_private
    assert policy.allowed("http://example.com/") is allows_root


def test_from_response_tolerates_bad_utf8() -> None:
    body = b"User-agent: *\nDisallow: /caf\xe9/\nDisallow: /x/\n"
    policy = RobotsPolicy.from_response(200, body, "treadle")
    assert not policy.allowed("http://example.com/x/1")


def test_repr() -> None:
    assert repr(RobotsPolicy.allow_all("t")) == "<RobotsPolicy allow all for 't'>"
    assert repr(RobotsPolicy.disallow_all("t")) == "<RobotsPolicy disallow all for 't'>"
    assert repr(RobotsPolicy.from_text("", "t")) == "<RobotsPolicy rules for 't'>"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "# only a comment\n",
        "Sitemap: http://example.com/s.xml\n",
        "Crawl-delay: 3\n",  # no User-agent: no group
        "User-agent: other\nDisallow: /\n",
        "User-agent: *\nDisallow: /private\n",
        "Disallow: /\nUser-agent: treadle\nDisallow: /p\n",
    ],
)
@pytest.mark.parametrize(
    "url", ["http://example.com/", "http://example.com/private/x?q=%2F", "http://example.com/p"]
)
def test_answers_are_the_standard_librarys(text: str, url: str) -> None:
    # A policy without any group answers without asking RobotFileParser: the same answer.
    oracle = RobotFileParser()
    oracle.parse(text.splitlines())
    assert RobotsPolicy.from_text(text, "treadle").allowed(url) == oracle.can_fetch("treadle", url)
