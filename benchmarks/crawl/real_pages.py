"""Crawl benchmark on real pages: Debian's documentation served by nginx on loopback.

Serves Python's, PostgreSQL's, Apache's and Django's HTML manuals (Debian's doc
packages python3-doc, postgresql-doc, apache2-doc and python-django-doc: about 5,000
pages) with nginx on 127.0.0.1 (a generated config in a temp prefix; directory listing
off; one index page at ``/`` links the manuals' roots), then crawls the whole set with
each crawler, alternated round by round in one run:

- ``treadle``: ``treadle crawl`` (one process), and ``treadle-p2``: the same with
  ``--processes 2`` when ``treadle crawl --help`` lists that option;
- ``aiohttp``: ``aiohttp_crawler.py``, the same design on asyncio + aiohttp, with
  treadle's link extraction (lexbor) and URL rules, so that the frameworks are
  compared, not the parsers; ``aiohttp-stdlib``: the same with ``html.parser``;
- ``scrapy``: ``scrapy_crawler.py``, a Scrapy spider (when Scrapy is installed);
- ``wget``: ``wget -r`` (Debian's), one connection;
- ``treadle-baseline``, with ``--baseline-src DIR``: ``treadle crawl`` from the treadle
  in DIR (an older commit's ``src``), right after ``treadle``: an A/B in the same run.

Same work for all: follow ``<a href>`` and ``<area href>`` on the root's host, every
URL once, politeness off (``--concurrency`` requests at once, no delay; wget has one),
robots.txt obeyed (nginx serves none), no sitemaps. Measured per crawler: the URLs the
server saw it fetch (nginx's access log, robots.txt left out), pages/s, CPU seconds of
its whole process tree (user + sys, from ``os.wait4``, which adds the children a
process reaped), CPU ms per page, peak RSS (the largest sum over the process tree,
sampled from /proc every 20 ms), each also as a ratio to treadle's; and whether every
crawler fetched the same URL set as treadle (the differences are printed).

    python benchmarks/crawl/real_pages.py --setup-only     # apt-get the packages, once
    python benchmarks/crawl/real_pages.py --rounds 2       # the table
    python benchmarks/crawl/real_pages.py --serve          # only serve them (to profile)

``--docs NAME=DIR`` (repeatable) serves other folders instead (the smoke test's tiny
site). Each crawl is bounded by ``--time-limit``; nginx, the crawlers and the temp
prefix are cleaned up on exit, on Ctrl-C and on SIGTERM. Linux only (/proc, taskset).
"""

from __future__ import annotations

import argparse
import compileall
import glob
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
WGET = shutil.which("wget")

# Debian's documentation packages and where their HTML lives (a glob: its newest match).
# python3-doc is the one CI installs; the others are this benchmark's (``--setup``).
# postgresql-doc depends on the release's postgresql-doc-NN (15 on Debian 12).
DOC_PACKAGES = {
    "python": ("python3-doc", "/usr/share/doc/python3/html"),
    "postgresql": ("postgresql-doc", "/usr/share/doc/postgresql-doc-*/html"),
    "apache": ("apache2-doc", "/usr/share/doc/apache2-doc/manual"),
    "django": ("python-django-doc", "/usr/share/doc/python-django-doc/html"),
}
SETUP_PACKAGES = ["nginx", "wget", *(package for package, _ in DOC_PACKAGES.values())]
CRAWLERS = ("treadle", "treadle-p2", "aiohttp", "aiohttp-stdlib", "scrapy", "wget")
# Requests every crawler makes that are not pages of the site.
NOT_PAGES = frozenset({"/robots.txt"})
_MIME_TYPES = {
    "text/html": "html htm",
    "text/css": "css",
    "text/plain": "txt",
    "application/javascript": "js",
    "application/json": "json",
    "image/png": "png",
    "image/gif": "gif",
    "image/jpeg": "jpg jpeg",
    "image/svg+xml": "svg",
}


class BenchmarkError(Exception):
    """The benchmark cannot run as asked (the message says why and what to do)."""


# --- setup ---------------------------------------------------------------------------


def setup() -> None:
    """Install nginx, wget and the documentation packages with apt-get (run as root)."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *SETUP_PACKAGES],
        check=True,
        env=env,
    )


def installed_docs() -> dict[str, Path]:
    """The manuals of ``DOC_PACKAGES`` that are installed, by name."""
    docs = {}
    for name, (_, pattern) in DOC_PACKAGES.items():
        found = sorted(glob.glob(pattern))
        if found and (Path(found[-1]) / "index.html").is_file():
            docs[name] = Path(found[-1])
    return docs


# --- the server ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _nginx_conf(prefix: Path, port: int) -> str:
    types = "".join(f"        {mime} {exts};\n" for mime, exts in _MIME_TYPES.items())
    temp_paths = "".join(
        f"    {kind}_temp_path {prefix}/tmp/{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""\
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    types {{
{types}    }}
    default_type application/octet-stream;
    log_format bench '$request_uri\\t$status\\t$body_bytes_sent\\t$http_user_agent';
    access_log {prefix}/access.log bench;
{temp_paths}    sendfile on;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
        root {prefix}/site;
        index index.html;
        autoindex off;
        disable_symlinks off;
    }}
}}
"""


def _index_page(docs: dict[str, Path]) -> str:
    items = "".join(f'<li><a href="/{name}/">{name}</a></li>\n' for name in docs)
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Manuals</title></head>"
        f"<body><h1>Manuals</h1><ul>\n{items}</ul></body></html>\n"
    )


class Nginx:
    """nginx serving ``docs`` (name -> folder) under ``/name/`` on 127.0.0.1, in ``prefix``."""

    def __init__(self, prefix: Path, docs: dict[str, Path], *, cpu: str | None) -> None:
        if NGINX is None:
            raise BenchmarkError("nginx is not installed: run with --setup (apt-get install nginx)")
        self.prefix = prefix
        site = prefix / "site"
        site.mkdir(parents=True)
        (prefix / "tmp").mkdir()
        for name, folder in docs.items():
            (site / name).symlink_to(folder.resolve(), target_is_directory=True)
        (site / "index.html").write_text(_index_page(docs), encoding="utf-8")
        (site / "index.html").chmod(0o644)
        self.access_log = prefix / "access.log"
        self.port = _free_port()
        conf = prefix / "nginx.conf"
        conf.write_text(_nginx_conf(prefix, self.port), encoding="utf-8")
        command = [NGINX, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
        if cpu is not None:
            command = ["taskset", "-c", cpu, *command]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_listening()
        self.root = f"http://127.0.0.1:{self.port}/"
        for path in ["/", *(f"/{name}/" for name in docs)]:
            status = self._status(path)
            if status != 200:
                self.stop()
                raise BenchmarkError(
                    f"nginx answers {status} for {path}: its worker (user nobody when"
                    " started by root) must be able to read the folder and every folder"
                    " above it"
                )

    def _status(self, path: str) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("GET", path)
            return connection.getresponse().status
        finally:
            connection.close()

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        errors = (self.prefix / "error.log").read_text(errors="replace")[-2000:]
        self.stop()
        raise BenchmarkError(f"nginx did not start on port {self.port}:\n{errors}")

    def log_offset(self) -> int:
        """Where the access log ends now (its lines after this are the next crawl's)."""
        return self.access_log.stat().st_size if self.access_log.exists() else 0

    def requests_since(self, offset: int) -> list[tuple[str, int]]:
        """``(request URI, status)`` of each request logged after ``offset``."""
        with self.access_log.open("rb") as log:
            log.seek(offset)
            lines = log.read().decode("utf-8", "replace").splitlines()
        requests = []
        for line in lines:
            uri, status, *_ = line.split("\t")
            requests.append((uri, int(status)))
        return requests

    def stop(self) -> None:
        """Stop nginx (gracefully, then for sure) and wait for it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --- the crawlers ----------------------------------------------------------------------


def treadle_has_processes() -> bool:
    """True when ``treadle crawl --help`` lists ``--processes``."""
    help_text = subprocess.run(
        [sys.executable, "-m", "treadle", "crawl", "--help"],
        capture_output=True, text=True, check=False,
    ).stdout
    return "--processes" in help_text


def compile_treadle(baseline_src: str | None) -> None:
    """Write the bytecode of the treadle crawled (and of the baseline's), as installing
    a package does: the other crawlers' packages come compiled, and a source tree under
    ``PYTHONDONTWRITEBYTECODE=1`` would be compiled again by every process (~0.1 s of
    CPU each, counted three times for ``--processes 2``)."""
    found = subprocess.run(
        [sys.executable, "-c", "import treadle, os; print(os.path.dirname(treadle.__file__))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    folders = [found] + ([str(Path(baseline_src) / "treadle")] if baseline_src else [])
    for folder in folders:
        compileall.compile_dir(folder, quiet=1)


def scrapy_installed() -> bool:
    """True when Scrapy can be imported by this Python."""
    probe = subprocess.run([sys.executable, "-c", "import scrapy"], capture_output=True,
                           check=False)
    return probe.returncode == 0


def available_crawlers() -> dict[str, str]:
    """Each crawler of ``CRAWLERS``: "" if it can run here, else why not (one line)."""
    return {
        "treadle": "",
        "treadle-p2": "" if treadle_has_processes() else "treadle crawl has no --processes",
        "aiohttp": "",
        "aiohttp-stdlib": "",
        "scrapy": "" if scrapy_installed() else "Scrapy is not installed (pip install scrapy)",
        "wget": "" if WGET else "wget is not installed (apt-get install wget)",
    }


def crawler_command(name: str, root: str, concurrency: int, workdir: Path) -> list[str]:
    """The command line that crawls ``root`` with crawler ``name``."""
    python = sys.executable
    if name in ("treadle", "treadle-p2", "treadle-baseline"):
        command = [python, "-m", "treadle", "crawl", root, "-q", "--no-sitemaps",
                   "--max-tasks", str(concurrency), "--max-per-host", str(concurrency),
                   "--user-agent", f"bench-{name}"]
        return command + (["--processes", "2"] if name == "treadle-p2" else [])
    if name in ("aiohttp", "aiohttp-stdlib"):
        parser = ["--parser", "stdlib"] if name == "aiohttp-stdlib" else []
        return [python, str(HERE / "aiohttp_crawler.py"), root, "--max-tasks", str(concurrency),
                *parser]
    if name == "scrapy":
        return [python, str(HERE / "scrapy_crawler.py"), root, "--concurrency", str(concurrency)]
    if name == "wget":
        assert WGET is not None
        # -l inf: wget stops at depth 5 by default. --follow-tags: links only, as the
        # others (not images, scripts or style sheets). Files are written, then deleted.
        return [WGET, "-r", "-l", "inf", "--follow-tags=a,area", "--delete-after", "-nv",
                "-U", "bench-wget", "-P", str(workdir / "wget"), "-o",
                str(workdir / "wget.log"), root]
    raise ValueError(f"unknown crawler {name!r}; one of {', '.join(CRAWLERS)}")


def finished(crawler: str, exit_status: int) -> bool:
    """True if ``exit_status`` says the crawl went through: 0, or for wget also 8 (some
    URLs answered 4xx or 5xx) and 4 (some failed to connect: Django's tutorial links
    to ``http://127.0.0.1:8000/``, which wget, like the others, takes for this host)."""
    return exit_status == 0 or (crawler == "wget" and exit_status in (4, 8))


def _tree_rss(pid: int) -> int:
    """The resident bytes of ``pid`` and all its descendants (0 once it is gone)."""
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            with open(f"/proc/{current}/statm") as statm:
                total += int(statm.read().split()[1]) * page
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    stack.extend(int(child) for child in children.read().split())
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return total


@dataclass
class Crawl:
    """One crawl's measurements."""

    crawler: str
    round: int
    seconds: float
    cpu_seconds: float
    peak_rss_bytes: int
    exit_status: int
    urls: list[str] = field(repr=False)
    requests: int
    timed_out: bool

    @property
    def pages(self) -> int:
        return len(self.urls)

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_ms_per_page(self) -> float:
        return self.cpu_seconds * 1000 / self.pages if self.pages else 0.0


class Runner:
    """Runs crawls one at a time; kills the running one (its whole group) on demand."""

    def __init__(self, workdir: Path, time_limit: float) -> None:
        self.workdir = workdir
        self.time_limit = time_limit
        self._running: subprocess.Popen[bytes] | None = None

    def run(
        self, name: str, command: list[str], cpu: str | None, env: dict[str, str] | None = None
    ) -> tuple[float, float, int, int, bool]:
        """Run ``command``: (wall s, CPU s of its tree, peak tree RSS, exit status, timed out)."""
        if cpu is not None:
            command = ["taskset", "-c", cpu, *command]
        out = (self.workdir / f"{name}.out").open("wb")
        started = time.perf_counter()
        self._running = process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=self.workdir, env=env,
        )
        peak = 0
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.wait(0.02):
                peak = max(peak, _tree_rss(process.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        timer = threading.Timer(self.time_limit, self._kill, args=(process,))
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
            done.set()
            sampler.join()
            out.close()
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        self._running = None
        # The group's stragglers (none for a crawler that waits for its children).
        self._kill(process)
        peak = max(peak, usage.ru_maxrss * 1024)
        timed_out = seconds >= self.time_limit
        return seconds, usage.ru_utime + usage.ru_stime, peak, process.returncode, timed_out

    @staticmethod
    def _kill(process: subprocess.Popen[bytes]) -> None:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)

    def kill_running(self) -> None:
        """Kill the crawl under way, if any, with all its processes."""
        if self._running is not None:
            self._kill(self._running)


def page_urls(requests: list[tuple[str, int]]) -> list[str]:
    """The distinct URIs requested, robots.txt left out, in first-request order."""
    return list(dict.fromkeys(uri for uri, _ in requests if uri not in NOT_PAGES))


# --- the report ------------------------------------------------------------------------


def _ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}x" if reference else "-"


def summarise(crawls: list[Crawl]) -> dict[str, dict[str, float]]:
    """Per crawler, the medians over its rounds."""
    summary: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(crawl.crawler for crawl in crawls):
        mine = [crawl for crawl in crawls if crawl.crawler == name]
        summary[name] = {
            "urls": statistics.median(crawl.pages for crawl in mine),
            "requests": statistics.median(crawl.requests for crawl in mine),
            "pages_per_s": statistics.median(crawl.pages_per_s for crawl in mine),
            "cpu_seconds": statistics.median(crawl.cpu_seconds for crawl in mine),
            "cpu_ms_per_page": statistics.median(crawl.cpu_ms_per_page for crawl in mine),
            "best_cpu_ms_per_page": min(crawl.cpu_ms_per_page for crawl in mine),
            "peak_rss_mib": statistics.median(crawl.peak_rss_bytes for crawl in mine) / 2**20,
        }
    return summary


def format_table(summary: dict[str, dict[str, float]], reference: str = "treadle") -> str:
    """The Markdown table: each figure, and its ratio to ``reference``'s."""
    ref = summary.get(reference)
    lines = [
        "| crawler | URLs | pages/s | CPU s | CPU ms/page | peak RSS MiB |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for name, row in summary.items():
        cells = [name, f"{row['urls']:,.0f}"]
        for key, fmt in (("pages_per_s", ",.0f"), ("cpu_seconds", ".1f"),
                         ("cpu_ms_per_page", ".2f"), ("peak_rss_mib", ".0f")):
            cell = format(row[key], fmt)
            if ref is not None and name != reference:
                cell += f" ({_ratio(row[key], ref[key])})"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def url_set_differences(crawls: list[Crawl], reference: str = "treadle",
                        show: int = 10) -> list[str]:
    """Lines describing how each crawl's URL set differs from the reference's first."""
    base = next((crawl for crawl in crawls if crawl.crawler == reference), None)
    if base is None:
        return [f"no {reference} crawl to compare with"]
    expected = set(base.urls)
    lines = []
    for crawl in crawls:
        got = set(crawl.urls)
        if got == expected:
            continue
        missing, extra = sorted(expected - got), sorted(got - expected)
        lines.append(f"{crawl.crawler} round {crawl.round}: {len(missing)} URLs fewer, "
                     f"{len(extra)} more than {reference} round {base.round}")
        lines += [f"  - {uri}" for uri in missing[:show]]
        lines += [f"  + {uri}" for uri in extra[:show]]
    return lines


# --- the run ---------------------------------------------------------------------------


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the run the way Ctrl-C does (so the cleanup runs)."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setup", action="store_true",
                        help=f"apt-get install {' '.join(SETUP_PACKAGES)} first")
    parser.add_argument("--setup-only", action="store_true", help="install, then stop")
    parser.add_argument("--docs", action="append", metavar="NAME=DIR",
                        help="serve DIR under /NAME/ (repeatable; default: the manuals installed)")
    parser.add_argument("--crawlers", default=",".join(CRAWLERS),
                        help=f"comma-separated, in this order each round ({','.join(CRAWLERS)})")
    parser.add_argument("--rounds", type=int, default=1, help="alternated rounds (1)")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="requests at once (wget: 1) (8)")
    parser.add_argument("--time-limit", type=float, default=600.0,
                        help="seconds one crawl may take before it is killed (600)")
    parser.add_argument("--no-pin", action="store_true",
                        help="do not pin nginx to CPU 1 and one-process crawlers to CPU 0")
    parser.add_argument("--json", metavar="FILE", help="write every crawl's figures and URLs")
    parser.add_argument("--baseline-src", metavar="DIR",
                        help="also crawl with the treadle in DIR (PYTHONPATH, e.g. a worktree's"
                        " src of an older commit) as treadle-baseline, right after treadle: A/B")
    parser.add_argument("--serve", action="store_true",
                        help="only serve the pages (print the root URL) until Ctrl-C: to profile")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.concurrency < 1 or args.time_limit <= 0:
        parser.error("--rounds and --concurrency must be at least 1, --time-limit above 0")
    return args


def _docs_from(args: argparse.Namespace) -> dict[str, Path]:
    if not args.docs:
        docs = installed_docs()
        if not docs:
            raise BenchmarkError("no documentation package is installed: run with --setup")
        return docs
    docs = {}
    for item in args.docs:
        name, eq, folder = item.partition("=")
        if not eq or not name or "/" in name or not Path(folder).is_dir():
            raise BenchmarkError(f"--docs takes NAME=DIR with an existing DIR, got {item!r}")
        docs[name] = Path(folder)
    return docs


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.setup or args.setup_only:
        setup()
        if args.setup_only:
            return 0
    try:
        docs = _docs_from(args)
        wanted = [name.strip() for name in args.crawlers.split(",") if name.strip()]
        unknown = [name for name in wanted if name not in CRAWLERS]
        if unknown:
            raise BenchmarkError(f"unknown crawlers {unknown}; choose from {', '.join(CRAWLERS)}")
        missing = {name: why for name, why in available_crawlers().items()
                   if why and name in wanted}
        for name, why in missing.items():
            print(f"skipping {name}: {why}", file=sys.stderr)
        crawlers = [name for name in wanted if name not in missing]
        if args.baseline_src:
            if not (Path(args.baseline_src) / "treadle" / "__init__.py").is_file():
                raise BenchmarkError(f"--baseline-src {args.baseline_src} holds no treadle package")
            at = crawlers.index("treadle") + 1 if "treadle" in crawlers else 0
            crawlers.insert(at, "treadle-baseline")
        compile_treadle(args.baseline_src)
        with _terminate_as_interrupt():
            if args.serve:
                serve(docs, args)
                return 0
            crawls = run_all(docs, crawlers, args)
    except BenchmarkError as exc:
        print(f"real_pages: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("real_pages: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    summary = summarise(crawls)
    print(f"\n# Real pages: {', '.join(docs)}; {args.rounds} alternated round(s), medians; "
          f"concurrency {args.concurrency} (wget 1); Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs\n")
    print(format_table(summary))
    if args.rounds > 1:
        best = summary.get("treadle", {}).get("best_cpu_ms_per_page", 0.0)
        print("\nCPU ms/page in each crawler's least disturbed round: " + ", ".join(
            f"{name} {row['best_cpu_ms_per_page']:.2f}"
            + (f" ({_ratio(row['best_cpu_ms_per_page'], best)})" if name != "treadle" else "")
            for name, row in summary.items()))
    differences = url_set_differences(crawls)
    print("\nSame URL set as treadle: " + ("all crawls" if not differences else "no"))
    for line in differences:
        print(line)
    failed = [c for c in crawls if c.timed_out or not finished(c.crawler, c.exit_status)]
    for crawl in failed:
        print(f"{crawl.crawler} round {crawl.round}: exit status {crawl.exit_status}"
              f"{' (killed at the time limit)' if crawl.timed_out else ''}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"docs": {k: str(v) for k, v in docs.items()},
                       "skipped": missing,
                       "summary": summary,
                       "crawls": [asdict(crawl) for crawl in crawls]}, out)
    return 1 if failed else 0


def serve(docs: dict[str, Path], args: argparse.Namespace) -> None:
    """Serve ``docs`` until Ctrl-C or SIGTERM (which raise KeyboardInterrupt)."""
    workdir = Path(tempfile.mkdtemp(prefix="treadle-real-pages-"))
    workdir.chmod(0o755)
    nginx: Nginx | None = None
    try:
        nginx = Nginx(workdir / "nginx", docs, cpu=None if args.no_pin else "1")
        print(nginx.root, flush=True)
        nginx.process.wait()
    finally:
        if nginx is not None:
            nginx.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def run_all(docs: dict[str, Path], crawlers: list[str], args: argparse.Namespace) -> list[Crawl]:
    """Serve ``docs``, crawl them ``args.rounds`` times with each crawler; clean up."""
    workdir = Path(tempfile.mkdtemp(prefix="treadle-real-pages-"))
    workdir.chmod(0o755)  # nginx's worker (nobody, when started by root) reads below it
    nginx: Nginx | None = None
    runner = Runner(workdir, args.time_limit)
    crawls: list[Crawl] = []
    try:
        nginx = Nginx(workdir / "nginx", docs, cpu=None if args.no_pin else "1")
        print(f"serving {', '.join(docs)} at {nginx.root}", file=sys.stderr)
        for round_number in range(1, args.rounds + 1):
            for name in crawlers:
                cpu = None if args.no_pin or name == "treadle-p2" else "0"
                command = crawler_command(name, nginx.root, args.concurrency, workdir)
                offset = nginx.log_offset()
                env = None
                if name == "treadle-baseline":
                    env = dict(os.environ, PYTHONPATH=str(Path(args.baseline_src).resolve()))
                seconds, cpu_s, peak, status, timed_out = runner.run(name, command, cpu, env)
                requests = nginx.requests_since(offset)
                crawl = Crawl(name, round_number, seconds, cpu_s, peak, status,
                              page_urls(requests), len(requests), timed_out)
                crawls.append(crawl)
                print(f"round {round_number} {name}: {crawl.pages} URLs, "
                      f"{crawl.pages_per_s:.0f} pages/s, {crawl.cpu_ms_per_page:.2f} ms CPU/page, "
                      f"{crawl.peak_rss_bytes / 2**20:.0f} MiB, exit {status}", file=sys.stderr)
                if not finished(name, status) or timed_out:
                    tail = (workdir / f"{name}.out").read_text(errors="replace")[-1500:]
                    print(f"  {name} output ends:\n{tail}", file=sys.stderr)
                shutil.rmtree(workdir / "wget", ignore_errors=True)
    finally:
        runner.kill_running()
        if nginx is not None:
            nginx.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return crawls


if __name__ == "__main__":
    sys.exit(main())
