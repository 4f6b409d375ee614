"""One crawl, several processes: workers sharing a frontier in Redis, and ``--processes N``.

A site served by treadle in a thread of this process records every request's arrival
and the requests open at once; crawls run as real ``treadle crawl`` processes, killed
with SIGKILL mid-crawl, while the real redis-server under them (append-only file,
fsync always) is restarted. The checks: the union of the workers' ``--json`` records
has each URL exactly once and every URL of the site; no two requests to the host start
closer than the delay nor more run at once than the cap, across all processes; every
worker exits. The engine's scripts are tested directly too: leases of a worker that
stopped living return to the frontier, concurrent claimers never get one URL twice, and
a host's cap holds against concurrent acquirers. Tests synchronise on the crawls'
progress (``-v`` prints a line per recorded URL), never on sleeps.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import itertools
import json
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from aio_libs.real_servers import (
    HOST,
    find_redis_server,
    free_port,
    log_tail,
    redis_answers_ping,
    stop_process_group,
    temporary_directory,
    wait_until_ready,
)
from crawlsite import Exchange, Handler, Site, page
from processes import reaped

import treadle
from treadle.crawl.frontier import DONE, WAIT, Lease, Settlement
from treadle.crawl.records import Record
from treadle.crawl.state import SavedJob

TREADLE = [sys.executable, "-m", "treadle"]
PAGES = 80
# Each response is held this long, so that requests overlap and the cap matters.
HOLD = 0.05
DELAY = 0.04
CAP = 2
LEASE = 1.5


# --- a redis-server that keeps its data across a restart -----------------------------------


class PersistentRedis:
    """A redis-server with an append-only file fsynced at every write, restartable on
    the same port and directory (so what it acknowledged survives the restart)."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> None:
        self.starts += 1
        log = self.directory / f"redis-{self.starts}.log"
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", HOST, "--dir", str(self.directory),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "",
             "--logfile", str(log), "--daemonize", "no"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        wait_until_ready(
            self.process, log, "redis-server", functools.partial(redis_answers_ping, self.port)
        )

    def stop(self) -> None:
        if self.process is not None:
            stop_process_group(self.process, signal.SIGTERM)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def command(self, *words: str) -> bytes:
        """Send one inline command; its raw reply."""
        import socket

        with socket.create_connection((HOST, self.port), timeout=5) as connection:
            connection.sendall(" ".join(words).encode() + b"\r\n")
            return connection.recv(65536)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[PersistentRedis]:
    binary = find_redis_server()
    if binary is None:
        pytest.skip("needs server: redis-server not found (Debian package redis-server)")
    with temporary_directory("treadle-crawl-redis-") as directory:
        server = PersistentRedis(binary, directory)
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def redis_url(redis_server: PersistentRedis) -> str:
    if redis_server.process is None or redis_server.process.poll() is not None:
        redis_server.start()
    assert redis_server.command("FLUSHALL") == b"+OK\r\n", log_tail(redis_server.directory)
    return redis_server.url


# --- a site in a thread of this process ----------------------------------------------------


def held(handler: Handler) -> Handler:
    async def answer(exchange: Exchange) -> None:
        await treadle.sleep(HOLD)
        await handler(exchange)

    return answer


def site_routes(pages: int = PAGES) -> dict[str, Handler]:
    """``/`` links to ``/p0``; ``/pI`` to ``/p(2I+1)``, ``/p(2I+2)`` and one more."""
    routes: dict[str, Handler] = {"/": held(page("/p0"))}
    for i in range(pages):
        links = [f"/p{j}" for j in (2 * i + 1, 2 * i + 2, (7 * i + 3) % pages) if j < pages]
        routes[f"/p{i}"] = held(page(*links))
    return routes


class ThreadedSite:
    """A ``crawlsite.Site`` served by treadle in a thread, for crawls in other processes."""

    def __init__(self, routes: dict[str, Handler]) -> None:
        self.site = Site(routes)
        self._ready = threading.Event()
        self._thread = threading.Thread(target=treadle.run, args=(self._serve(),), daemon=True)
        self._loop: Any = None
        self._stop: Any = None

    async def _serve(self) -> None:
        self._loop = treadle.get_running_loop()
        self._stop = self._loop.create_future()
        async with self.site:
            self._ready.set()
            await self._stop

    def __enter__(self) -> Site:
        self._thread.start()
        assert self._ready.wait(30), "the site did not start"
        return self.site

    def __exit__(self, *exc_info: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(30)


@pytest.fixture
def site() -> Iterator[Site]:
    with ThreadedSite(site_routes()) as serving:
        yield serving


def expected_urls(site: Site) -> set[str]:
    return {site.url("/")} | {site.url(f"/p{i}") for i in range(PAGES)}


def check_politeness(site: Site) -> None:
    """Requests arrived spaced by the delay, and never more than the cap at once.

    The ledger spaces the grants of slots by the delay (times 1 to 1.5) on one clock
    (Redis's, or the parent's); each arrival adds its worker's time from grant to wire,
    which a loaded machine (two cores, many processes) stretches by tens of milliseconds
    now and then. So a pair of arrivals may come closer than the delay, but no run of
    them: every five consecutive arrivals span at least 2.5 delays (the grants span 4),
    and the median gap is at least the delay. Without a shared ledger, three workers'
    requests come three times as often and fail both.
    """
    times = sorted(site.stats.times)
    gaps = sorted(b - a for a, b in itertools.pairwise(times))
    assert gaps[len(gaps) // 2] >= DELAY, gaps[len(gaps) // 2]
    spans = [times[i + 4] - times[i] for i in range(len(times) - 4)]
    assert min(spans) >= 2.5 * DELAY, (min(spans), gaps[:5])
    assert site.stats.peak_requests <= CAP


# --- crawl processes ---------------------------------------------------------------------


def crawl_args(root: str) -> list[str]:
    return [
        *TREADLE, "crawl", root, "-v", "--delay", str(DELAY), "--max-per-host", str(CAP),
        "--retry-backoff", "0.01", "--no-sitemaps",
    ]  # fmt: skip


def worker_command(root: str, redis_url: str, crawl_id: str, name: str, tmp: Path) -> list[str]:
    return [
        *crawl_args(root), "--frontier", redis_url, "--crawl-id", crawl_id,
        "--worker-id", name, "--json", str(tmp / f"{name}.jsonl"), "--lease", str(LEASE),
    ]  # fmt: skip


def start(command: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_urls(process: subprocess.Popen[str], count: int) -> int:
    """Read ``process``'s -v lines until ``count`` URLs were recorded (or it ended)."""
    assert process.stderr is not None
    seen = 0
    while seen < count:
        line = process.stderr.readline()
        if not line:
            break
        seen += "http://127.0.0.1:" in line
    return seen


def json_urls(*paths: Path) -> collections.Counter[str]:
    urls: collections.Counter[str] = collections.Counter()
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            urls[json.loads(line)["url"]] += 1
    return urls


def finish(process: subprocess.Popen[str]) -> tuple[str, str]:
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stdout + stderr
    return stdout, stderr


# --- the Redis crawl -------------------------------------------------------------------------


class Watched:
    """A crawl process whose ``-v`` lines a thread reads as they come, counting URLs.

    Every watched process of a test shares one condition, so the test can wait for
    progress anywhere (which worker gets the URLs is the frontier's choice, not the
    test's: a worker that starts late may find the crawl nearly done).
    """

    def __init__(self, command: list[str], progress: threading.Condition) -> None:
        self.process = start(command)
        self.urls = 0
        self.stderr: list[str] = []
        self._progress = progress
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._progress:
                self.stderr.append(line)
                self.urls += "http://127.0.0.1:" in line
                self._progress.notify_all()

    def finish(self) -> str:
        """Wait for the process to end (it must succeed); its stdout."""
        assert self.process.stdout is not None
        stdout = self.process.stdout.read()
        self.process.wait(timeout=120)
        self._reader.join(30)
        stderr = "".join(self.stderr)
        assert self.process.returncode == 0, stdout + stderr
        assert "Traceback" not in stderr, stderr
        return stdout

    def close(self) -> None:
        """Kill the process if it runs, reap it, and close its pipes."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=60)
        self._reader.join(30)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


def wait_for(progress: threading.Condition, reached: Callable[[], bool], what: str) -> None:
    with progress:
        assert progress.wait_for(reached, timeout=120), f"timed out waiting until {what}"


def test_three_workers_one_killed_and_redis_restarted_record_each_url_once(
    redis_server: PersistentRedis, redis_url: str, tmp_path: Path
) -> None:
    # A larger site than the other tests': the kill and the restart must both come while
    # the survivors still have pages to take, at any start-up skew among the workers.
    pages = 3 * PAGES // 2
    with ThreadedSite(site_routes(pages)) as site:
        names = ["w0", "w1", "w2"]
        commands = {
            name: worker_command(site.url(), redis_url, "three", name, tmp_path) for name in names
        }
        progress = threading.Condition()
        workers = {name: Watched(commands[name], progress) for name in names}
        with contextlib.ExitStack() as stack:
            for watched in workers.values():
                stack.callback(watched.close)
            # The first worker to record 8 URLs is killed with SIGKILL, holding leases
            # (its claims run ahead of its records): they must come back when they expire.
            wait_for(
                progress, lambda: any(w.urls >= 8 for w in workers.values()), "a worker has 8 URLs"
            )
            victim = next(name for name, w in workers.items() if w.urls >= 8)
            workers[victim].process.kill()
            workers[victim].process.wait(timeout=60)
            survivors = [w for name, w in workers.items() if name != victim]

            def recorded() -> int:
                return sum(w.urls for w in survivors)

            at_kill = recorded()
            wait_for(progress, lambda: recorded() >= at_kill + 8, "the survivors record 8 more")
            redis_server.restart()
            # The crawl goes on after the restart: the survivors record more URLs.
            at_restart = recorded()
            wait_for(progress, lambda: recorded() >= at_restart + 8, "8 more after the restart")
            for name, watched in workers.items():
                if name != victim:
                    assert f"Worker {name} of the crawl 'three'" in watched.finish()
            # Started again under its name, the killed worker repairs its file (a line it
            # acknowledged but had not written is added, a torn one cut) and finds the
            # crawl done.
            with (tmp_path / f"{victim}.jsonl").open("a") as out:
                out.write('{"url": "http://127.0.0.1:1/torn", "sta')
            finish(start(commands[victim]))
        site_urls = {site.url("/")} | {site.url(f"/p{i}") for i in range(pages)}
    urls = json_urls(*(tmp_path / f"{name}.jsonl" for name in names))
    assert urls.most_common(1)[0][1] == 1, "a URL recorded twice"
    assert set(urls) == site_urls, "a URL lost (or one not on the site)"
    check_politeness(site)
    # Each worker reads robots.txt once; every page is fetched once, but for those
    # the killed worker had claimed, fetched again by the others.
    fetched = collections.Counter(site.stats.paths)
    assert fetched.pop("/robots.txt") <= 3


def test_a_worker_joining_another_crawl_under_the_same_id_is_refused(
    site: Site, redis_url: str, tmp_path: Path
) -> None:
    first = subprocess.run(
        [*worker_command(site.url(), redis_url, "mine", "a", tmp_path), "--max-pages", "1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert first.returncode == 4, first.stderr  # stopped by --max-pages: joined all the same
    other = subprocess.run(
        worker_command("http://127.0.0.1:9/", redis_url, "mine", "b", tmp_path),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert other.returncode == 6, other.stderr
    assert f"is a crawl of {site.url('/')}: give those roots to join it" in other.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--frontier", "redis://127.0.0.1:1/0"], "--frontier needs --crawl-id NAME"),
        (["--crawl-id", "x"], "--crawl-id names a worker of a shared crawl"),
        (["--frontier", "http://x/", "--crawl-id", "x"], "--frontier must be a Redis URL"),
        (
            ["--frontier", "redis://127.0.0.1:1/0", "--crawl-id", "x", "--state", "s.db"],
            "--state is not supported with it",
        ),
        (
            ["--processes", "2", "--timeline", "t.html"],
            "--timeline is not supported with --processes",
        ),
    ],
)
def test_combinations_that_cannot_work_are_refused_clearly(extra: list[str], message: str) -> None:
    done = subprocess.run(
        [*TREADLE, "crawl", "http://127.0.0.1:9/", *extra],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert message in done.stderr


# --- the engine's scripts, directly ---------------------------------------------------------


def run_on_aio(main: Any) -> Any:
    import treadle.aio

    return treadle.aio.run(main)


def jobs(count: int) -> list[SavedJob]:
    return [SavedJob(f"http://example.com/{i}", 1, None, 10, False) for i in range(count)]


def test_a_dead_workers_leases_return_to_the_frontier(redis_url: str) -> None:
    from treadle.crawl.redisfrontier import RedisFrontier

    async def main() -> None:
        dead = RedisFrontier(redis_url, "reclaim", worker="dead", lease=0.3)
        alive = RedisFrontier(redis_url, "reclaim", worker="alive", lease=30)
        try:
            await dead.join(["http://example.com/"], jobs(2))
            await alive.join(["http://example.com/"], [])
            taken = [await dead.claim(), await dead.claim()]
            assert all(isinstance(lease, Lease) for lease in taken)
            assert await alive.claim() == WAIT, "leases are out: not done"
            # The dead worker renews nothing; once its entry expires (on the server's
            # clock) the next keep-alive of a live worker returns its URLs.
            reclaimed: list[str] = []
            for _ in range(500):
                await alive.keep_alive()
                claim = await alive.claim()
                if isinstance(claim, Lease):
                    reclaimed.append(claim.job.url)
                    record = Record(url=claim.job.url, status=200)
                    assert await alive.ack(claim, Settlement("fetched", record, [], [])) is not None
                if len(reclaimed) == 2:
                    break
                await treadle.sleep(0.01)
            assert sorted(reclaimed) == sorted(lease.job.url for lease in taken)  # type: ignore[union-attr]
            late = taken[0]
            assert isinstance(late, Lease)
            record = Record(url=late.job.url, status=200)
            late_ack = await dead.ack(late, Settlement("fetched", record, [], []))
            assert late_ack is None, "its lease was lost"
            assert await alive.claim() == DONE
            assert [r.url for r in await alive.records_of("alive")] == reclaimed
            assert await alive.records_of("dead") == []
        finally:
            await dead.close()
            await alive.close()

    run_on_aio(main())


def test_concurrent_claimers_never_share_a_url_and_each_ack_counts_once(redis_url: str) -> None:
    from treadle.crawl.redisfrontier import RedisFrontier

    async def main() -> tuple[list[str], int]:
        import asyncio

        workers = [RedisFrontier(redis_url, "race", worker=f"w{i}") for i in range(6)]
        claimed: list[str] = []
        new_links = 0

        async def work(frontier: RedisFrontier, index: int) -> None:
            nonlocal new_links
            while True:
                claim = await frontier.claim()
                if claim == DONE:
                    return
                if claim == WAIT:
                    await asyncio.sleep(0.001)
                    continue
                assert isinstance(claim, Lease)
                claimed.append(claim.job.url)
                # Every page links to the same few others: each is new once only.
                found = [SavedJob(f"http://example.com/{i % 50}", 2, None, 10, False)
                         for i in range(index, index + 10)]  # fmt: skip
                record = Record(url=claim.job.url, status=200)
                committed = await frontier.ack(claim, Settlement("fetched", record, found, []))
                assert committed is not None
                new_links += committed.num_new_urls

        try:
            await workers[0].join(["http://example.com/"], jobs(200))
            await asyncio.gather(*(work(w, i) for i, w in enumerate(workers)))
        finally:
            for frontier in workers:
                await frontier.close()
        return claimed, new_links

    claimed, new_links = run_on_aio(main())
    assert len(claimed) == len(set(claimed)) == 200
    assert new_links == 0, "the links were all seen already (they are among the seeds)"


def test_a_hosts_cap_holds_against_concurrent_acquirers(redis_url: str) -> None:
    from treadle.crawl.redisfrontier import RedisFrontier

    async def main() -> int:
        import asyncio

        workers = [RedisFrontier(redis_url, "cap", worker=f"w{i}") for i in range(4)]
        holding = peak = 0

        async def request(frontier: RedisFrontier, token: str) -> None:
            nonlocal holding, peak
            while (wait := await frontier.acquire_host("h", 3, 0.0, token)) > 0:
                await asyncio.sleep(wait)
            holding += 1
            peak = max(peak, holding)
            await asyncio.sleep(0.002)
            holding -= 1
            await frontier.release_host("h", token)

        try:
            for frontier in workers:
                await frontier.join(["http://example.com/"], [])
            await asyncio.gather(*(request(w, str(n)) for n in range(10) for w in workers))
        finally:
            for frontier in workers:
                await frontier.close()
        return peak

    assert run_on_aio(main()) == 3


# --- --processes N ---------------------------------------------------------------------------


def processes_command(root: str, tmp: Path) -> list[str]:
    return [
        *crawl_args(root), "--processes", "2", "--state", str(tmp / "crawl.db"),
        "--json", str(tmp / "crawl.jsonl"),
    ]  # fmt: skip


def test_two_processes_one_killed_record_each_url_once_and_politely(
    site: Site, tmp_path: Path
) -> None:
    parent = start(processes_command(site.url(), tmp_path))
    with reaped(parent):
        assert wait_for_urls(parent, 10) == 10
        children = psutil.Process(parent.pid).children()
        assert len(children) == 2
        children[0].kill()  # its leases go back to the frontier at once
        stdout, stderr = finish(parent)
    assert "Traceback" not in stderr
    urls = json_urls(tmp_path / "crawl.jsonl")
    assert urls.most_common(1)[0][1] == 1
    assert set(urls) == expected_urls(site)
    check_politeness(site)
    assert f"pages            {len(urls)}" in stdout


WARCIO = [sys.executable, "-c", "import sys; from warcio.cli import main; sys.exit(main())"]


def archived_responses(path: Path) -> collections.Counter[str]:
    """The target URIs of a WARC file's response records, after ``warcio check`` passed."""
    from warcio.archiveiterator import ArchiveIterator

    checked = subprocess.run([*WARCIO, "check", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    targets: collections.Counter[str] = collections.Counter()
    with path.open("rb") as stream:
        for record in ArchiveIterator(stream):
            if record.rec_type == "response":
                targets[record.rec_headers.get_header("WARC-Target-URI")] += 1
    return targets


def test_two_processes_one_killed_archive_each_recorded_url_once(
    site: Site, tmp_path: Path
) -> None:
    """Each worker archives in a segment of its own; the parent copies a URL's records
    into the archive when it is acknowledged: the killed worker's unacknowledged
    records stay out, and the URLs it was fetching are archived once, by the other."""
    pytest.importorskip("warcio")
    warc = tmp_path / "crawl.warc.gz"
    parent = start([*processes_command(site.url(), tmp_path), "--warc", str(warc)])
    with reaped(parent):
        assert wait_for_urls(parent, 10) == 10
        children = psutil.Process(parent.pid).children()
        children[0].kill()
        finish(parent)
    urls = json_urls(tmp_path / "crawl.jsonl")
    assert set(urls) == expected_urls(site)
    assert archived_responses(warc) == collections.Counter(set(urls))


@pytest.mark.parametrize(
    ("sent", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"]
)
def test_a_signal_stops_every_process_prints_the_report_and_the_crawl_resumes(
    site: Site, tmp_path: Path, sent: signal.Signals, status: int
) -> None:
    pytest.importorskip("warcio")
    command = [*processes_command(site.url(), tmp_path), "--warc", str(tmp_path / "c.warc.gz")]
    parent = start(command)
    with reaped(parent):
        assert wait_for_urls(parent, 10) == 10
        children = psutil.Process(parent.pid).children()
        parent.send_signal(sent)
        stdout, stderr = parent.communicate(timeout=60)
    assert parent.returncode == status, stdout + stderr
    assert "Traceback" not in stderr
    assert stdout.startswith("Interrupted: the report covers the URLs that finished.\n")
    assert "run the same command to resume it" in stdout
    assert not any(child.is_running() and child.status() != "zombie" for child in children)
    first = json_urls(tmp_path / "crawl.jsonl")
    assert 10 <= len(first) < len(expected_urls(site))
    finish(start(command))
    urls = json_urls(tmp_path / "crawl.jsonl")
    assert urls.most_common(1)[0][1] == 1
    assert set(urls) == expected_urls(site)
    assert archived_responses(tmp_path / "c.warc.gz") == collections.Counter(set(urls))


def test_a_back_off_one_worker_hears_holds_back_every_worker(redis_url: str) -> None:
    from treadle.crawl.redisfrontier import RedisFrontier

    async def main() -> tuple[float, float]:
        told, other = (RedisFrontier(redis_url, "pause", worker=name) for name in "ab")
        try:
            await told.join(["http://example.com/"], [])
            await other.join(["http://example.com/"], [])
            assert await other.acquire_host("h", 4, 0.0, "1") == 0.0
            await other.release_host("h", "1")
            await told.back_off_host("h", 30.0)  # a 503 with Retry-After: 30
            return (
                await other.acquire_host("h", 4, 0.0, "2"),
                await told.acquire_host("h", 4, 0.0, "3"),
            )
        finally:
            await told.close()
            await other.close()

    waits = run_on_aio(main())
    # Real time since the pause began (a busy machine's stall too) comes off the 30 s.
    assert all(20.0 < wait <= 30.0 for wait in waits), waits


def test_a_worker_stopped_mid_crawl_ends_at_once_and_gives_its_urls_back(redis_url: str) -> None:
    """Cancelled (Ctrl-C, SIGTERM), a worker ends promptly, though redis-py can swallow
    a cancellation mid-command, and the URLs it was fetching go back to the frontier."""
    import asyncio

    from treadle.crawl.crawler import Crawler
    from treadle.crawl.redisfrontier import RedisFrontier

    async def main() -> tuple[list[str], list[str], Site]:
        site = Site(site_routes())
        async with site:
            first = RedisFrontier(redis_url, "stop", worker="first")
            recorded: list[str] = []
            twenty = asyncio.Event()

            def on_record(record: Record) -> None:
                recorded.append(record.url)
                if len(recorded) == 20:
                    twenty.set()

            crawl = asyncio.ensure_future(
                Crawler(site.url(), frontier=first, max_per_host=CAP, sitemaps=False,
                        on_record=on_record).crawl()
            )  # fmt: skip
            await twenty.wait()
            crawl.cancel()
            # Bounded: a worker whose cancellation was swallowed would poll forever.
            await asyncio.wait([crawl], timeout=10)
            assert crawl.cancelled(), "the stopped crawl did not end"
            await first.close()
            second = RedisFrontier(redis_url, "stop", worker="second")
            rest = Crawler(site.url(), frontier=second, max_per_host=CAP, sitemaps=False)
            await rest.crawl()
            await second.close()
        return recorded, [record.url for record in rest.records], site

    first, rest, site = run_on_aio(main())
    assert len(first) >= 20
    assert sorted(first + rest) == sorted(expected_urls(site)), "each URL once, none lost"


def test_worker_processes_slot_tokens_are_their_own(tmp_path: Path) -> None:
    """Each worker numbers its host slots from 0: the parent keeps them apart, so one
    worker's slot 0 is not taken for another's (which let two requests through at once):
    the second worker's acquire waits until the first gives its slot back."""
    from treadle.crawl.frontier import MemoryFrontier
    from treadle.crawl.processes import FrontierService, ProcessFrontier
    from treadle.testing import wait_all_tasks_blocked

    async def main() -> tuple[float, bool, float]:
        service = FrontierService(MemoryFrontier(), str(tmp_path / "s"), lambda records: None)
        await service.start()
        first, second = ProcessFrontier(service.path), ProcessFrontier(service.path)
        try:
            await first.join(["http://example.com/"], [])
            await second.join(["http://example.com/"], [])
            taken = await first.acquire_host("h", 1, 0.0, "0")
            refused = treadle.create_task(second.acquire_host("h", 1, 0.0, "0"))
            await wait_all_tasks_blocked()
            waited = not refused.done()
            await first.release_host("h", "0")
            return taken, waited, await refused
        finally:
            await first.close()
            await second.close()
            await service.close()

    taken, waited, later = treadle.run(main())
    assert (taken, later) == (0.0, 0.0)
    assert waited, "the host's one slot was given twice"
