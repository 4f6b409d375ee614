"""URL normalisation and crawl scope (treadle.crawl.urls), and the crawler's pure
modules' promise to import nothing but the standard library and each other."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from treadle.crawl.urls import (
    Scope,
    authority_key,
    is_http_url,
    normalize_url,
    origin,
    remove_dot_segments,
)

NORMALIZE_CASES = [
    # (url, base, expected)
    ("http://example.com", None, "http://example.com/"),
    ("HTTP://Example.COM/Path", None, "http://example.com/Path"),
    ("http://example.com:80/a", None, "http://example.com/a"),
    ("https://example.com:443/a", None, "https://example.com/a"),
    ("http://example.com:443/a", None, "http://example.com:443/a"),
    ("https://example.com:80/a", None, "https://example.com:80/a"),
    ("http://example.com:8080", None, "http://example.com:8080/"),
    ("http://example.com:/a", None, "http://example.com/a"),
    ("http://example.com/a#frag", None, "http://example.com/a"),
    ("http://example.com/a?x=1&y=2#frag", None, "http://example.com/a?x=1&y=2"),
    ("http://example.com/a/./b/../c", None, "http://example.com/a/c"),
    ("http://example.com/../../a", None, "http://example.com/a"),
    ("http://example.com/a/b/..", None, "http://example.com/a/"),
    # Unreserved escapes decoded, others upper-cased; %2F stays apart from "/".
    ("http://example.com/%7Euser/a%2fb?q=%20", None, "http://example.com/~user/a%2Fb?q=%20"),
    ("http://example.com/%41%62?x=%7e", None, "http://example.com/Ab?x=~"),
    ("http://example.com/caf\u00e9?q=a b", None, "http://example.com/caf%C3%A9?q=a%20b"),
    ("http://[::1]:80/x", None, "http://[::1]/x"),
    ("http://[::1]:8080/x", None, "http://[::1]:8080/x"),
    ("http://user:pw@Example.com:80/", None, "http://user:pw@example.com/"),
    ("b/c", "http://example.com/a/", "http://example.com/a/b/c"),
    ("../c", "http://example.com/a/b/", "http://example.com/a/c"),
    ("/x", "http://example.com/a/b", "http://example.com/x"),
    ("?q=1", "http://example.com/p?r=2#s", "http://example.com/p?q=1"),
    ("", "http://example.com/p?r=2#s", "http://example.com/p?r=2"),
    ("#top", "http://example.com/p", "http://example.com/p"),
    ("//Other.org/x", "https://example.com/", "https://other.org/x"),
    ("  /padded \n", "http://example.com/", "http://example.com/padded"),
    ("HTTPS://Example.com:443", "http://base/", "https://example.com/"),
    ("mailto:Someone@Example.com", None, "mailto:Someone@Example.com"),
]


@pytest.mark.parametrize(("url", "base", "expected"), NORMALIZE_CASES)
def test_normalize_url(url: str, base: str | None, expected: str) -> None:
    assert normalize_url(url, base) == expected


@pytest.mark.parametrize(("url", "base", "expected"), NORMALIZE_CASES)
def test_normalize_url_is_idempotent(url: str, base: str | None, expected: str) -> None:
    assert normalize_url(normalize_url(url, base)) == expected


def test_normalize_url_rejects_what_urllib_cannot_split() -> None:
    with pytest.raises(ValueError):
        normalize_url("http://[::1/x")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/a/b/c", "/a/b/c"),
        ("/a/./b", "/a/b"),
        ("/a/../b", "/b"),
        ("/../../b", "/b"),
        ("/a/b/.", "/a/b/"),
        ("/a/b/..", "/a/"),
        ("/..", "/"),
        ("/a//../b", "/a/b"),
        ("/a.b/c..d", "/a.b/c..d"),
        ("a/../b", "b"),
    ],
)
def test_remove_dot_segments(path: str, expected: str) -> None:
    assert remove_dot_segments(path) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://example.com/", True),
        ("HTTPS://example.com", True),
        ("ftp://example.com/", False),
        ("mailto:a@example.com", False),
        ("javascript:void(0)", False),
        ("/relative", False),
        ("http:///no-host", False),
        ("http://[::1/broken", False),
    ],
)
def test_is_http_url(url: str, expected: bool) -> None:
    assert is_http_url(url) is expected


def test_origin() -> None:
    assert origin("HTTP://user@Example.com:80/a?b#c") == "http://example.com"
    assert origin("https://example.com:8443/a") == "https://example.com:8443"


class TestStrictScope:
    def test_root_host_and_its_www_variant(self) -> None:
        scope = Scope(["http://example.com/start"])
        assert scope.allows("http://example.com/other")
        assert scope.allows("https://example.com/secure")
        assert scope.allows("http://www.example.com/")
        assert scope.allows("http://EXAMPLE.com/")
        assert scope.allows("http://example.com:8080/")  # ports are not compared

    def test_www_root_allows_bare_host(self) -> None:
        scope = Scope("http://www.example.com/")
        assert scope.allows("http://example.com/")
        assert scope.allows("http://www.example.com/")

    @pytest.mark.parametrize(
        "url",
        [
            # other hosts
            "http://docs.example.com/",
            "http://example.org/",
            "http://notexample.com/",
            "http://www.www.example.com/",
            # only http and https
            "ftp://example.com/",
            "mailto:me@example.com",
            "/relative/path",
            "http://[::1/broken",
        ],
    )
    def test_rejects_other_hosts_and_schemes(self, url: str) -> None:
        assert not Scope("http://example.com/").allows(url)

    def test_several_roots(self) -> None:
        scope = Scope(["http://a.example/", "https://b.example/"])
        assert scope.allows("http://a.example/x")
        assert scope.allows("http://www.b.example/x")
        assert not scope.allows("http://c.example/")


class TestLenientScope:
    def test_same_last_two_labels(self) -> None:
        scope = Scope("http://www.example.com/", strict=False)
        assert scope.allows("http://docs.example.com/")
        assert scope.allows("http://a.b.example.com/")
        assert scope.allows("http://example.com/")
        assert not scope.allows("http://example.org/")
        assert not scope.allows("http://com/")

    def test_strict_is_the_default(self) -> None:
        assert Scope("http://example.com/").strict is True
        assert not Scope("http://example.com/").allows("http://docs.example.com/")


class TestIPScope:
    @pytest.mark.parametrize("strict", [True, False])
    def test_ipv4_root_matches_exactly(self, strict: bool) -> None:
        scope = Scope("http://127.0.0.1:8080/", strict=strict)
        assert scope.allows("http://127.0.0.1:8080/page")
        assert scope.allows("https://127.0.0.1/")
        assert not scope.allows("http://127.0.0.2:8080/")
        # Same last two labels, but an address is not a domain name.
        assert not scope.allows("http://10.0.0.1/")
        assert not scope.allows("http://www.127.0.0.1/")

    @pytest.mark.parametrize("strict", [True, False])
    def test_ipv6_root_matches_exactly(self, strict: bool) -> None:
        scope = Scope("http://[::1]:8000/", strict=strict)
        assert scope.allows("http://[::1]:8000/x")
        assert scope.allows("http://[0:0::1]/x")  # the same address, spelled otherwise
        assert not scope.allows("http://[::2]:8000/")
        assert not scope.allows("http://127.0.0.1:8000/")


class TestExclude:
    def test_exclude_drops_matching_urls(self) -> None:
        scope = Scope("http://example.com/", exclude=r"/private/|\.pdf$")
        assert scope.allows("http://example.com/public/")
        assert not scope.allows("http://example.com/private/x")
        assert not scope.allows("http://example.com/doc.pdf")

    def test_exclude_accepts_a_compiled_pattern(self) -> None:
        scope = Scope("http://example.com/", exclude=re.compile("LOGOUT", re.IGNORECASE))
        assert not scope.allows("http://example.com/logout")

    def test_invalid_exclude_names_pattern_and_reason(self) -> None:
        with pytest.raises(ValueError, match=r"invalid exclude pattern '\(oops'.*missing \)"):
            Scope("http://example.com/", exclude="(oops")


def test_scope_needs_http_roots() -> None:
    with pytest.raises(ValueError, match="at least one root"):
        Scope([])
    with pytest.raises(ValueError, match="http or https URL"):
        Scope("ftp://example.com/")


def test_scope_repr() -> None:
    assert repr(Scope("http://e.com/", exclude="x")) == (
        "Scope(['http://e.com/'], strict=True, include=None, exclude='x')"
    )


# (The package __init__ also re-exports the crawler, which does I/O, so it is not listed.)
PURE_MODULES = ["urls", "links", "robots", "records", "report", "demosite_content"]
# Third-party parsers a pure module may use when installed (no I/O, an optional extra).
OPTIONAL_PARSERS = {"links": {"selectolax"}}


@pytest.mark.parametrize("name", PURE_MODULES)
def test_pure_modules_import_only_stdlib_and_each_other(name: str) -> None:
    import treadle.crawl

    path = Path(treadle.crawl.__file__).with_name(f"{name}.py")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module)
    for module in imported:
        top = module.partition(".")[0]
        allowed = top in sys.stdlib_module_names or top in OPTIONAL_PARSERS.get(name, set())
        assert allowed or module.startswith("treadle.crawl."), f"{name}.py imports {module}"
        if top == "treadle":
            assert module.removeprefix("treadle.crawl.") in PURE_MODULES, module


# --- memoised by authority: the same answers as computed afresh -----------------------

_URL_PIECES = st.sampled_from(
    ["http", "HTTPS", "ftp", ":", "//", "/", "?", "#", "@", "[", "]", "::1", "127.0.0.1",
     "Example.com", "www.example.com", "other.org", ":80", ":8080", "\t", " ", "\x00", "a"]
)
_URLS = st.lists(_URL_PIECES, max_size=10).map("".join)


def _fresh_origin(url: str) -> str:
    parts = urlsplit(normalize_url(url))
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


@given(st.lists(_URLS, min_size=1, max_size=8))
@settings(max_examples=300)
def test_memoised_scope_and_origin_answer_as_computed_afresh(urls: list[str]) -> None:
    # A memoised answer given for one URL must hold for every URL with its authority.
    scope = Scope(["http://example.com/", "http://127.0.0.1/"])
    for url in urls:
        assert scope.allows_host(url) == scope._decide_host(url), url
        try:
            expected = _fresh_origin(url)
        except ValueError:
            with pytest.raises(ValueError):
                origin(url)
            continue
        assert origin(url) == expected, url


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("http://example.com/a?b#c", "http://example.com"),
        ("http://example.com?b/c", "http://example.com"),
        ("https://u@h:8080#x/y", "https://u@h:8080"),
        ("http://h", "http://h"),
        ("no-scheme/a", None),
    ],
)
def test_authority_key(url: str, key: str | None) -> None:
    assert authority_key(url) == key
