"""The echo and HTTP benchmark runners' own logic, without load.

What decides the figures in ``benchmarks/echo/run.py`` and ``benchmarks/http/run.py``
and can be checked without running echo_load or wrk: the order of bursts in a round,
the per-round ratios and their quartiles, which bursts count as contended and are
re-run, the measured window's arithmetic, how the HTTP servers split requests and see
``Connection: close``, and that a server which dies or stops answering mid-run is
reported by name and dropped, never waited on without bound.
The last uses tiny stand-in processes (a few hundred milliseconds in all).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import random
import selectors
import shutil
import socket
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path[:0] = [str(BENCH / "echo"), str(BENCH / "http")]

import harness  # noqa: E402  (benchmarks/echo/harness.py: the folder is not a package)
from _httpcommon import split_requests  # noqa: E402  (benchmarks/http/_httpcommon.py)
from harness import (  # noqa: E402
    Sample,
    ServerFailed,
    ThreadTimes,
    Window,
    _Reading,
)


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


echo_run = _load("bench_echo_run", BENCH / "echo" / "run.py")
http_run = _load("bench_http_run", BENCH / "http" / "run.py")

QUIET_WINDOW = Window(seconds=0.5, server_cpu=0.99, server_wait=0.0, load_cpu=0.6,
                      load_wait=0.0, foreign=0.01)


def sample(rate: float, server_cpu: float = 0.99, *, contended: bool = False) -> Sample:
    window = Window(0.5, server_cpu, 0.0, 0.6, 0.0, 0.5 if contended else 0.01)
    return Sample(rate, 100.0, window)


# --- order ------------------------------------------------------------------------------


def test_alternate_order_reverses_every_other_round() -> None:
    names = ["a", "b", "c"]
    orders = [harness.burst_order(names, rnd) for rnd in range(4)]
    assert orders == [["a", "b", "c"], ["c", "b", "a"], ["a", "b", "c"], ["c", "b", "a"]]
    assert names == ["a", "b", "c"]  # the caller's list is left alone


def test_shuffled_order_is_a_permutation_that_the_seed_repeats() -> None:
    names = [f"s{i}" for i in range(6)]
    rng_a, rng_b = random.Random(7), random.Random(7)
    run_a = [harness.burst_order(names, rnd, rng_a) for rnd in range(5)]
    run_b = [harness.burst_order(names, rnd, rng_b) for rnd in range(5)]
    assert run_a == run_b
    assert all(sorted(order) == sorted(names) for order in run_a)
    assert len({tuple(order) for order in run_a}) > 1  # not the same order every round


# --- ratios and quartiles ------------------------------------------------------------------


def test_quartiles_and_their_format() -> None:
    assert harness.quartiles([5.0, 1.0, 3.0, 2.0, 4.0]) == (2.0, 3.0, 4.0)
    assert harness.quartiles([1.0, 2.0]) == (1.25, 1.5, 1.75)
    assert harness.quartiles([1.5]) == (1.5, 1.5, 1.5)
    assert harness.quartiles([]) is None
    assert harness.fmt_spread([1.50, 1.52, 1.54, 1.51, 1.53]) == "1.52x (1.51-1.53)"
    assert harness.fmt_spread([]) == "-"


def test_ratios_pair_bursts_of_the_same_round_and_skip_failed_ones() -> None:
    ours = [sample(150), None, sample(160), sample(140)]
    base = [sample(100), sample(100), None, sample(100)]
    assert harness.rate_ratios(ours, base) == [1.5, 1.4]
    # Same CPU share at a higher rate: less CPU per round trip, by the same factor.
    assert harness.cost_ratios(ours, base) == pytest.approx([1.5, 1.4])
    cheaper = [sample(100, server_cpu=0.5)]
    assert harness.cost_ratios(cheaper, [sample(100, server_cpu=1.0)]) == [2.0]


def test_ratios_leave_out_contended_pairs_while_clean_ones_exist() -> None:
    ours = [sample(150), sample(300, contended=True), sample(160)]
    base = [sample(100), sample(100), sample(100, contended=True)]
    assert harness.rate_ratios(ours, base) == [1.5]
    # Nothing clean left: all pairs count (and the report says they were contended).
    assert harness.rate_ratios(ours[1:], base[1:]) == [3.0, 1.6]
    assert [x.rate for x in harness.usable([sample(1, contended=True), sample(2), None])] == [2]


# --- contention and the measured window ------------------------------------------------------


@pytest.mark.parametrize(("field", "value", "contended"), [
    ("foreign", 0.07, False),
    ("foreign", 0.09, True),
    ("server_wait", 0.06, True),
    ("load_wait", 0.06, True),
    ("server_wait", 0.04, False),
])
def test_a_window_is_contended_when_others_ran_on_the_benchmark_cpus(
        field: str, value: float, contended: bool) -> None:
    fields = dict(seconds=0.5, server_cpu=0.99, server_wait=0.0, load_cpu=0.6, load_wait=0.0,
                  foreign=0.0)
    fields[field] = value
    assert Window(**fields).contended is contended


def test_busy_cpus_before_a_burst_mark_it_contended() -> None:
    assert not Sample(1.0, 1.0, QUIET_WINDOW, busy_before=0.1).contended
    assert Sample(1.0, 1.0, QUIET_WINDOW, busy_before=0.5).contended


def test_window_between_two_readings() -> None:
    a = _Reading(at=10.0, server=ThreadTimes(1_000_000_000, 0),
                 load=ThreadTimes(500_000_000, 10_000_000), work=100.0)
    b = _Reading(at=10.5, server=ThreadTimes(1_490_000_000, 20_000_000),
                 load=ThreadTimes(800_000_000, 10_000_000), work=100.82)
    w = harness.window_between(a, b, [0, 1])
    assert w.seconds == pytest.approx(0.5)
    assert w.server_cpu == pytest.approx(0.98)
    assert w.server_wait == pytest.approx(0.04)
    assert w.load_cpu == pytest.approx(0.6)
    assert w.load_wait == 0.0
    assert w.foreign == pytest.approx(0.06)  # 0.82 s of work, 0.79 s theirs: 0.03 s others
    assert not w.contended
    assert harness.window_between(a, b, []).foreign == 0.0  # unpinned: not measured


def test_server_cpu_per_round_trip() -> None:
    assert Sample(100_000.0, 0.0, QUIET_WINDOW).server_us == pytest.approx(9.9)


def test_a_contended_burst_is_rerun_after_waiting_for_quiet_cpus() -> None:
    runs = iter([sample(1, contended=True), sample(2, contended=True), sample(3)])
    seen: list[tuple[float, str]] = []
    waits: list[int] = []
    got = harness.with_retries(lambda _busy: next(runs), retries=2,
                               wait=lambda: waits.append(1) or 0.0,
                               report=lambda s, note: seen.append((s.rate, note)))
    assert got.rate == 3 and len(waits) == 2
    assert seen == [(1, "  contended, retrying"), (2, "  contended, retrying"), (3, "")]
    # Retries spent: the last, contended, burst is kept and the report says so.
    runs = iter([sample(1, contended=True), sample(2, contended=True)])
    seen.clear()
    got = harness.with_retries(lambda _busy: next(runs), retries=1, wait=lambda: 0.0,
                               report=lambda s, note: seen.append((s.rate, note)))
    assert got.rate == 2 and seen[-1] == (2, "  contended")


# --- the interleaved loop ---------------------------------------------------------------------


def _echo_args(**overrides: object) -> argparse.Namespace:
    args = echo_run.parse_args(["--rounds", "4", "--quiet-wait", "0"])
    args.server_cpu = args.client_cpu = None  # wait_quiet has nothing to watch
    vars(args).update(overrides)
    return args


class _FakeKids:
    def __init__(self) -> None:
        self.killed: list[str] = []

    def kill(self, child: object) -> None:
        self.killed.append(str(child))


class _ScriptedBench(echo_run.Bench):
    """Bursts answered from a script: (server, workload label) -> ServerFailed at burst n."""

    def __init__(self, args: argparse.Namespace, dies: dict[str, int]) -> None:
        super().__init__(_FakeKids(), args, Path("/nonexistent"))
        self.dies = dies
        self.calls: list[str] = []

    def burst(self, child: str, port: int, wl: object, *, seconds: float, warmup: float,
              verify: bool = False, busy_before: float = 0.0) -> Sample:
        self.calls.append(child)
        if len([c for c in self.calls if c == child]) == self.dies.get(child):
            raise ServerFailed(f"{child}: exited with status -11 during a burst")
        return sample({"asyncio_streams": 100e3, "treadle_streams": 150e3}.get(child, 120e3))


def test_interleaved_rounds_alternate_and_a_dead_server_is_dropped_and_reported(
        capsys: pytest.CaptureFixture[str]) -> None:
    names = ["asyncio_streams", "treadle_streams", "uvloop_streams"]
    servers = [echo_run.ALL_SERVERS[n] for n in names]
    wl = echo_run.ALL_WORKLOADS["1k_x10"]
    bench = _ScriptedBench(_echo_args(), dies={"uvloop_streams": 3})  # its 2nd timed burst
    running = {n: (n, 0) for n in names}  # child stand-ins: the name
    results = echo_run.run_interleaved(bench, servers, [wl], running)

    warmup, timed = bench.calls[:3], bench.calls[3:]
    assert warmup == names
    assert timed[:3] == names  # round 1 as listed
    assert timed[3:6] == names[::-1]  # round 2 reversed: uvloop died at its first burst there
    assert timed[6:] == names[:2] + names[1::-1]  # rounds 3, 4 without it
    assert results.of("uvloop_streams", wl.name)[1] is None
    assert len(results.of("uvloop_streams", wl.name)) == 2
    assert "uvloop_streams" not in running and bench.kids.killed == ["uvloop_streams"]
    assert "exited with status -11" in bench.failed["uvloop_streams"]
    assert "round 2/4" in bench.failed["uvloop_streams"]
    assert harness.rate_ratios(results.of("treadle_streams", wl.name),
                               results.of("asyncio_streams", wl.name)) == [1.5] * 4

    echo_run.report_throughput(bench, servers, [wl], results)
    out = capsys.readouterr().out
    assert "Method: interleaved" in out
    assert "| treadle streams | 150k | 6.60 | 1.50x (1.50-1.50) | 1.50x (1.50-1.50) |" in out
    assert "**uvloop streams FAILED**, 1 KiB x 10, round 2/4: uvloop_streams: exited" in out
    assert "treadle streams vs uvloop streams | 1 KiB x 10 | 1.25x (1.25-1.25)" in out


def test_shuffled_rounds_record_their_seed() -> None:
    args = _echo_args(order="shuffle", seed=1234)
    assert "shuffled every round (seed 1234)" in echo_run.method_line(args)
    assert "reversed every other round" in echo_run.method_line(_echo_args())
    assert "fresh process" in echo_run.method_line(_echo_args(mode="fresh"))


def test_mode_defaults_and_bounds() -> None:
    args = echo_run.parse_args([])
    assert (args.mode, args.seconds, args.warmup, args.rounds) == ("interleaved", 0.5, 0.1, 16)
    args = echo_run.parse_args(["--mode", "fresh"])
    assert (args.seconds, args.warmup, args.rounds) == (5.0, 1.0, 3)
    with pytest.raises(SystemExit):
        echo_run.parse_args(["--seconds", "0.05"])
    args = http_run.parse_args([])
    assert (args.mode, args.seconds, args.rounds) == ("interleaved", 1, 10)


# --- wrk's output -------------------------------------------------------------------------------


WRK_OUT = """\
Running 1s test @ http://127.0.0.1:40000/
  1 threads and 100 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   {lat}  120.00us   4.00ms   90.00%
    Req/Sec   120.00k     3.00k  125.00k    80.00%
  120000 requests in 1.00s, 10.00MB read
{extra}Requests/sec: 119876.54
Transfer/sec:     10.00MB
"""


@pytest.mark.parametrize(("lat", "micros"), [("812.00us", 812.0), ("1.50ms", 1500.0),
                                             ("2.00s", 2e6)])
def test_wrk_output_parsed(lat: str, micros: float) -> None:
    assert http_run.parse_wrk(WRK_OUT.format(lat=lat, extra="")) == (119876.54, micros)


def test_wrk_socket_errors_fail_the_burst() -> None:
    out = WRK_OUT.format(lat="1.00ms",
                         extra="  Socket errors: connect 0, read 3, write 0, timeout 0\n")
    with pytest.raises(ServerFailed, match="read 3"):
        http_run.parse_wrk(out)
    with pytest.raises(ServerFailed, match="no Requests/sec"):
        http_run.parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


# --- the HTTP servers' request framing (_httpcommon.split_requests) ----------------------------

GET = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"  # a request head without its blank line


# Request headers that ask to close, and look-alikes that do not (each line without its CRLF).
CLOSING_HEADERS = [
    b"Connection: close", b"CONNECTION: CLOSE", b"Connection: Close", b"connection:close",
    b"Connection:\tclose", b"Connection:  cLoSe  ", b"Connection: keep-alive, close",
    b"Connection: close,Upgrade", b"connection:Upgrade ,\tCLOSE",
]
NOT_CLOSING_HEADERS = [
    b"Connection: keep-alive", b"Connection: closed", b"Connection: keep-alive, closer",
    b"Proxy-Connection: close", b"X-Connection: close", b"X-Note: connection: close",
    b"Host2: close", b"Referer: http://h/close",
]


@pytest.mark.parametrize("header", CLOSING_HEADERS)
def test_a_connection_header_listing_close_closes_in_any_case_and_spacing(header: bytes) -> None:
    assert split_requests(GET + header + b"\r\n\r\n") == (1, True, b"")
    # Among other headers, and in the second of two pipelined requests.
    request = b"GET /a HTTP/1.1\r\n" + header + b"\r\nAccept: */*\r\n\r\n"
    assert split_requests(GET + b"\r\n" + request) == (2, True, b"")


@pytest.mark.parametrize("header", [b""] + [line + b"\r\n" for line in NOT_CLOSING_HEADERS])
def test_close_anywhere_but_a_connection_option_keeps_the_connection(header: bytes) -> None:
    request = b"GET /close HTTP/1.1\r\nHost: close.example\r\n" + header + b"\r\n"
    assert split_requests(request) == (1, False, b"")
    assert split_requests(request * 3) == (3, False, b"")


def test_a_closing_request_still_in_the_tail_closes_once_it_is_complete() -> None:
    closing = GET + b"CONNECTION: CLOSE\r\n\r\n"
    # Split at every byte, fed as a server feeds it (the tail, then the next read):
    # nothing closes until the closing request is whole, and no byte is lost.
    for cut in range(1, len(closing)):
        count, close, tail = split_requests(GET + b"\r\n" + closing[:cut])
        assert (count, close, tail) == (1, False, closing[:cut])
        assert split_requests(tail + closing[cut:] + GET) == (1, True, GET)


@given(st.lists(st.sampled_from([b"\r", b"\n", b"\r\n\r\n", b"GET / HTTP/1.1", b":close"]),
                max_size=12).map(b"".join))
def test_requests_are_counted_and_the_tail_kept_as_every_crlfcrlf_says(buf: bytes) -> None:
    count, _close, tail = split_requests(buf)
    assert count == buf.count(b"\r\n\r\n")  # non-overlapping, from the left
    end = buf.rfind(b"\r\n\r\n")
    assert tail == (buf[end + 4:] if end >= 0 else buf)


# --- a server that dies, and a load generator that hangs (real, tiny processes) ------------------


def _script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


def test_a_server_that_exits_mid_burst_fails_with_its_status_and_stderr(tmp_path: Path) -> None:
    server = _script(tmp_path, "server.py", """\
        import sys, time
        print("READY", flush=True)
        time.sleep(0.15)
        print("boom: lost my socket", file=sys.stderr, flush=True)
        sys.exit(7)
        """)
    load = _script(tmp_path, "load.py", """\
        import time
        time.sleep(0.6)
        print("RESULT rt=10 rps=20.0 p99_us=5.0 errors=0 mismatches=0")
        """)
    wl = echo_run.ALL_WORKLOADS["1k_x10"]
    with harness.children() as kids:
        bench = echo_run.Bench(kids, _echo_args(), load)
        child = kids.start_server("dying", [str(server)], cpu=None)
        with pytest.raises(ServerFailed) as caught:
            bench.burst(child, 1, wl, seconds=0.3, warmup=0.1)
    message = str(caught.value)
    assert "dying: exited with status 7 during a burst" in message
    assert "boom: lost my socket" in message


@pytest.mark.parametrize(("load_body", "load_slack", "seconds", "failure"), [
    # The load generator finishes but counted nothing: the server stopped answering.
    ("time.sleep(0.2)\nprint('RESULT rt=0 rps=0.0 p99_us=0.0 errors=0 mismatches=0')", None,
     0.1, r"silent: not one round trip in 0\.1 s"),
    # The load generator never finishes: killed at its time limit.
    ("time.sleep(30)", 0.3, 0.1, "echo_load: still running after"),
], ids=["server-answers-nothing", "load-generator-hangs"])
def test_a_burst_against_a_silent_server_fails_and_says_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, load_body: str,
        load_slack: float | None, seconds: float, failure: str) -> None:
    server = _script(tmp_path, "server.py", """\
        import time
        print("READY", flush=True)
        time.sleep(30)
        """)
    load = _script(tmp_path, "load.py", "import time\n" + load_body + "\n")
    if load_slack is not None:
        monkeypatch.setattr(echo_run, "LOAD_SLACK", load_slack)
    wl = echo_run.ALL_WORKLOADS["1k_x10"]
    with harness.children() as kids:
        bench = echo_run.Bench(kids, _echo_args(), load)
        child = kids.start_server("silent", [str(server)], cpu=None)
        with pytest.raises(ServerFailed, match=failure):
            bench.burst(child, 1, wl, seconds=seconds, warmup=0.0)


# --- the C floor servers (built by the runners with the C compiler, real sockets) ----------------

needs_cc = pytest.mark.skipif(
    not (os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")),
    reason="no C compiler: the runners build the C floor servers with gcc")


@contextlib.contextmanager
def _c_floor(run: ModuleType, args: argparse.Namespace,
             *bench_args: object) -> Iterator[tuple[harness.Child, int]]:
    """The runner's c_floor, built and started by its own Bench; stopped with SIGTERM."""
    with harness.children() as kids:
        bench = run.Bench(kids, args, *bench_args)
        started = bench.start(run.ALL_SERVERS["c_floor"])
        assert started is not None, bench.unavailable
        child, port = started
        yield child, port
        kids.kill(child)
        assert child.proc.returncode == 0  # SIGTERM: a clean exit, not death by signal


def _exchange(sock: socket.socket, message: bytes, expected: int) -> bytes:
    """Send ``message`` while reading; return once ``expected`` bytes came back."""
    sock.setblocking(False)
    received = bytearray()
    sent = 0
    with selectors.DefaultSelector() as sel:
        sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
        while len(received) < expected:
            if sent == len(message):
                sel.modify(sock, selectors.EVENT_READ)
            events = sel.select(5.0)
            assert events, f"no progress after 5 s: {len(received)} of {expected} bytes back"
            for _key, mask in events:
                if mask & selectors.EVENT_WRITE and sent < len(message):
                    with contextlib.suppress(BlockingIOError):
                        sent += sock.send(message[sent:sent + 65536])
                if mask & selectors.EVENT_READ:
                    chunk = sock.recv(1 << 20)
                    assert chunk, f"EOF after {len(received)} of {expected} bytes"
                    received += chunk
    return bytes(received)


@needs_cc
def test_the_c_echo_floor_echoes_every_byte() -> None:
    with _c_floor(echo_run, _echo_args(), Path("/nonexistent")) as (_child, port), \
            socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for size in (1024, 65536, 1024):
            message = random.randbytes(size)
            assert _exchange(sock, message, size) == message


@needs_cc
def test_the_c_echo_floor_waits_for_a_slow_reader_without_spinning() -> None:
    with _c_floor(echo_run, _echo_args(), Path("/nonexistent")) as (child, port), \
            socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        # Send without reading until the server stops taking bytes: its sends came up
        # short, it holds the rest and no longer reads (the socket stays unwritable).
        message = random.randbytes(16 << 20)
        sock.setblocking(False)
        sent = 0
        with selectors.DefaultSelector() as sel:
            sel.register(sock, selectors.EVENT_WRITE)
            while sel.select(0.3):
                with contextlib.suppress(BlockingIOError):
                    sent += sock.send(message[sent:sent + 65536])
        assert 0 < sent < len(message)
        # Stalled on its peer, the server must sleep in epoll_wait, not retry send().
        before = harness.thread_times(child.pid).ran_ns
        time.sleep(0.2)  # a measured interval, not a synchronisation
        assert harness.thread_times(child.pid).ran_ns - before < 20_000_000
        # Reading again lets it go on: every byte comes back, in order.
        assert _exchange(sock, message[sent:], len(message)) == message


def _server_has_read(server_port: int, client: socket.socket) -> bool:
    """Whether the server side of ``client``'s connection has no unread bytes (/proc/net/tcp)."""
    local = f"0100007F:{server_port:04X}"
    remote = f"0100007F:{client.getsockname()[1]:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[2] == remote:
            return int(fields[4].split(":")[1], 16) == 0
    raise AssertionError(f"no server side for {remote} in /proc/net/tcp")


@needs_cc
def test_the_c_http_floor_answers_pipelined_split_and_closing_requests() -> None:
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    closing = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    response = http_run.RESPONSE
    args = http_run.parse_args(["--quiet-wait", "0"])
    args.server_cpu = args.client_cpu = None
    with _c_floor(http_run, args, "wrk") as (_child, port), \
            socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        # Two pipelined requests in one write: two responses.
        assert _exchange(sock, request * 2, 2 * len(response)) == response * 2
        # A request split inside its final CRLFCRLF, the server reading the first part
        # on its own: nothing until the rest comes, which brings a closing request along.
        sock.setblocking(True)
        sock.sendall(request[:-3])
        deadline = time.monotonic() + 5
        while not _server_has_read(port, sock):
            assert time.monotonic() < deadline, "the server never read the first part"
            time.sleep(0.001)
        sock.sendall(request[-3:] + closing)
        rest = b""
        while chunk := sock.recv(65536):  # the server closes after the closing request
            rest += chunk
        assert rest == response * 2


@needs_cc
def test_the_c_http_floor_closes_exactly_when_split_requests_does() -> None:
    args = http_run.parse_args(["--quiet-wait", "0"])
    args.server_cpu = args.client_cpu = None
    response = http_run.RESPONSE
    with _c_floor(http_run, args, "wrk") as (_child, port):
        for header, closes in [*((h, True) for h in CLOSING_HEADERS),
                               *((h, False) for h in NOT_CLOSING_HEADERS)]:
            request = GET + header + b"\r\n\r\n"
            assert split_requests(request)[1] is closes, header
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                assert _exchange(sock, request, len(response)) == response, header
                sock.settimeout(5)
                if closes:
                    assert sock.recv(1) == b"", header  # the server closed it
                else:
                    sock.sendall(GET + b"\r\n")  # still open: a second request is answered
                    assert _exchange(sock, b"", len(response)) == response, header


class _StandInProcess:
    def __init__(self, status: int | None) -> None:
        self.status = status

    def poll(self) -> int | None:
        return self.status


class _StandInChild:
    def __init__(self, name: str, status: int | None) -> None:
        self.name = name
        self.proc = _StandInProcess(status)


@pytest.mark.parametrize(("status", "losses", "retries", "attempts", "fails"), [
    (None, 2, 2, 3, False),  # alive: bursts that lost their window run again, the third counts
    (None, 3, 2, 3, True),  # alive, but losing it past --retries: the failure stands
    (-11, 1, 2, 1, True),  # the server died: no second burst
])
def test_a_burst_that_lost_its_window_runs_again_only_while_its_server_lives(
        status: int | None, losses: int, retries: int, attempts: int, fails: bool) -> None:
    calls: list[int] = []

    def burst() -> harness.Sample:
        calls.append(1)
        if len(calls) <= losses:
            raise harness.WindowLost("server: echo_load ended before its measured phase did")
        return "sample"  # type: ignore[return-value]

    bench = harness.ServerBench(None, argparse.Namespace(  # type: ignore[arg-type]
        server_cpu=0, client_cpu=1, cold_malloc=False, retries=retries))
    child = _StandInChild("server", status)
    if fails:
        with pytest.raises(harness.WindowLost, match="ended before its measured"):
            bench.again_if_window_lost(burst, child, "server")  # type: ignore[arg-type]
    else:
        assert bench.again_if_window_lost(burst, child, "server") == "sample"  # type: ignore[arg-type]
    assert len(calls) == attempts


def test_a_failure_other_than_a_lost_window_is_not_run_again() -> None:
    calls: list[int] = []

    def burst() -> harness.Sample:
        calls.append(1)
        raise harness.ServerFailed("server: echo_load saw errors=3 mismatches=0")

    bench = harness.ServerBench(None, argparse.Namespace(  # type: ignore[arg-type]
        server_cpu=0, client_cpu=1, cold_malloc=False, retries=2))
    with pytest.raises(harness.ServerFailed, match="errors=3"):
        bench.again_if_window_lost(burst, _StandInChild("server", None), "server")  # type: ignore[arg-type]
    assert calls == [1]
