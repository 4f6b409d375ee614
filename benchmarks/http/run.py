"""Run the HTTP hello-world benchmark: every server against ``wrk``, in alternating rounds.

Each server runs pinned to one CPU (default 0) and ``wrk -t1 -c100`` to another
(default 1). By default (``--mode interleaved``) every server is started once and
kept running, and each round runs one short wrk burst against each server in turn,
the order reversed every other round (or shuffled, ``--order shuffle --seed N``);
``--mode fresh`` is the earlier method, a fresh server process per run. Before every
burst a plain-socket check sends three requests (the second split across two
writes, the third, with ``Connection: close``, pipelined behind it) and insists on
exactly three correct responses followed by a close. The report gives median
requests/s, the server's CPU time per request, and the median and interquartile
range of per-round ratios against asyncio protocol and for each comparison pair.

    python benchmarks/http/run.py --rounds 10
    python benchmarks/http/run.py --servers asyncio_streams,treadle_streams
    python benchmarks/http/run.py --mode fresh --seconds 5 --rounds 3
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import re
import shutil
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "echo"))

from _httpcommon import RESPONSE
from harness import (
    FOREIGN_MAX,
    QUIET,
    WAIT_MAX,
    WINDOW_END_GUARD,
    Child,
    Children,
    Sample,
    ServerBench,
    ServerFailed,
    WindowLost,
    children,
    command_line,
    cost_ratios,
    ensure_alive,
    fmt_rate,
    fmt_spread,
    log,
    machine_summary,
    md_table,
    measure_window,
    median,
    pairs_table,
    rate_ratios,
    require_schedstat,
    run_to_end,
    usable,
    wait_idle,
    wait_quiet,
    with_retries,
)

HERE = Path(__file__).resolve().parent
BASELINE = "asyncio_protocol"
FLOOR_NOTE = (
    "The C epoll loop (`c_floor.c`) answers with the same bytes and the same system calls "
    "per request as every server here (one recv, one send, part of an epoll_wait) and does "
    "nothing else: its CPU per request is the kernel's share on this machine, and its ratio "
    "against asyncio protocol is the most any server can reach here. A Python framework's "
    "ratio against asyncio cannot exceed the C floor's.")
WRK_SATURATED = 0.90  # wrk above this CPU share may be the bottleneck


@dataclass(frozen=True)
class Server:
    name: str
    label: str
    argv: tuple[str, ...]
    # Its response is ours byte for byte; False for aiohttp (its own headers: Date, Server).
    exact_response: bool = True

    @property
    def family(self) -> str:
        return self.name.split("_")[0]


SERVERS = [
    Server("asyncio_protocol", "asyncio protocol", ("asyncio_protocol.py",)),
    Server("asyncio_streams", "asyncio streams", ("asyncio_streams.py",)),
    Server("uvloop_protocol", "uvloop protocol", ("asyncio_protocol.py", "--uvloop")),
    Server("epoll_floor", "bare epoll loop (Python)", ("epoll_floor.py",)),
    # No framework and no Python: the kernel's share of a request (README, "C floor").
    Server("c_floor", "C epoll loop, no framework (the kernel's share)", ("c_floor.c",)),
    Server("treadle_streams", "treadle streams", ("treadle_streams.py",)),
]
EXTRA_SERVERS = [  # run only when named in --servers
    Server("uvloop_streams", "uvloop streams", ("asyncio_streams.py", "--uvloop")),
    # asyncio's servers on treadle.aio, and aiohttp on three loops (issue 8)
    Server("treadle_aio_protocol", "treadle.aio protocol", ("treadle_aio.py",)),
    Server("treadle_aio_streams", "treadle.aio streams", ("treadle_aio.py", "--streams")),
    Server("treadle_aio_protocol_asyncio_transport", "treadle.aio protocol, asyncio's transport",
           ("treadle_aio.py", "--transport", "asyncio")),
    # On the compiled build (docs/compiled.md), run by --compiled-python.
    Server("treadle_aio_compiled", "treadle.aio protocol, compiled",
           ("treadle_aio.py", "--compiled")),
    Server("aiohttp_asyncio", "aiohttp on asyncio", ("aiohttp_server.py", "--loop", "asyncio"),
           exact_response=False),
    Server("aiohttp_uvloop", "aiohttp on uvloop", ("aiohttp_server.py", "--loop", "uvloop"),
           exact_response=False),
    Server("aiohttp_treadle_aio", "aiohttp on treadle.aio",
           ("aiohttp_server.py", "--loop", "treadle"), exact_response=False),
]
# Pairs compared directly when both ran: (server, against).
COMPARISONS = [
    ("c_floor", "asyncio_protocol"),  # the most any server can reach against asyncio here
    ("treadle_streams", "asyncio_streams"),
    ("treadle_streams", "uvloop_protocol"),
    ("treadle_aio_protocol", "asyncio_protocol"),
    ("treadle_aio_protocol", "uvloop_protocol"),
    ("treadle_aio_protocol", "treadle_aio_protocol_asyncio_transport"),
    ("treadle_aio_compiled", "asyncio_protocol"),
    ("treadle_aio_compiled", "uvloop_protocol"),
    ("treadle_aio_compiled", "treadle_aio_protocol"),
    ("treadle_aio_streams", "asyncio_streams"),
    ("treadle_aio_streams", "uvloop_streams"),
    ("aiohttp_treadle_aio", "aiohttp_asyncio"),
    ("aiohttp_treadle_aio", "aiohttp_uvloop"),
]
ALL_SERVERS = {s.name: s for s in SERVERS + EXTRA_SERVERS}
# The servers run by --compiled-python, on the compiled wheel's treadle.
COMPILED_SERVERS = {"treadle_aio_compiled"}


def check_server(port: int, *, exact: bool = True) -> None:
    """Three requests, one split and two pipelined; expect three exact responses, then EOF.

    ``exact=False`` accepts any three ``200 OK`` responses with the body ``Hello, World!``.
    """
    req = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    last = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(req + req[:10])  # one request and the start of the next
        time.sleep(0.05)
        s.sendall(req[10:] + last)
        got = b""
        while chunk := s.recv(65536):  # the server closes after the third response
            got += chunk
    if exact:
        ok = got == RESPONSE * 3
    else:
        answers = got.split(b"HTTP/1.1 200 OK\r\n")
        ok = answers[0] == b"" and len(answers) == 4 and all(
            a.endswith(b"\r\n\r\nHello, World!") for a in answers[1:]
        )
    if not ok:
        raise ServerFailed(f"HTTP check failed: got {got[:200]!r}...")


WRK_RPS = re.compile(r"Requests/sec:\s*([\d.]+)")
WRK_LAT = re.compile(r"^\s*Latency\s+([\d.]+)(us|ms|s)\b", re.M)
WRK_ERRS = re.compile(r"Socket errors:.*|Non-2xx or 3xx responses:.*")
LATENCY_UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6}
# wrk has no warm-up: its thread starts, connects and requests at once. The server's CPU
# is read from this long after wrk started (accepting the burst's connections stays out)
# to WINDOW_END_GUARD before its end (closing them stays out).
WRK_RAMP = 0.1
WRK_SLACK = 30.0  # beyond -d: wrk's --timeout and its exit


def parse_wrk(out: str) -> tuple[float, float]:
    """(requests/s, average latency in µs) from wrk's output; ServerFailed on errors."""
    rps = WRK_RPS.search(out)
    if not rps:
        raise ServerFailed(f"no Requests/sec in wrk's output:\n{out.strip()}")
    errors = WRK_ERRS.findall(out)
    if errors:
        raise ServerFailed("wrk: " + "; ".join(errors))
    lat = WRK_LAT.search(out)
    latency = float(lat.group(1)) * LATENCY_UNITS[lat.group(2)] if lat else float("nan")
    return float(rps.group(1)), latency


@dataclass
class Results:
    """Every timed burst per server, in round order; None where a burst failed."""

    samples: dict[str, list[Sample | None]] = field(default_factory=dict)

    def add(self, server: str, sample: Sample | None) -> None:
        self.samples.setdefault(server, []).append(sample)

    def of(self, server: str) -> list[Sample | None]:
        return self.samples.get(server, [])


class Bench(ServerBench):
    """Starts servers and runs wrk bursts against them; remembers who is out and why."""

    server_dir = HERE
    compiled_servers = COMPILED_SERVERS

    def __init__(self, kids: Children, args: argparse.Namespace, wrk: str) -> None:
        super().__init__(kids, args)
        self.wrk = wrk

    def burst(self, server: Server, child: Child, port: int, *, seconds: int,
              busy_before: float = 0.0) -> Sample:
        """The HTTP check, then one wrk run against a running server; ServerFailed says why not."""
        a = self.args
        try:
            check_server(port, exact=server.exact_response)
        except OSError as exc:
            ensure_alive(child, "before a burst")
            raise ServerFailed(f"{server.name}: HTTP check failed: {exc}") from None
        cmd = [self.wrk, f"-t{a.threads}", f"-c{a.connections}", f"-d{seconds}s",
               "--timeout", "5s", f"http://127.0.0.1:{port}/"]
        gen = self.kids.start("wrk", cmd, cpu=a.client_cpu)
        started = time.monotonic()
        try:
            window = measure_window(child, gen, self.cpus, started + WRK_RAMP,
                                    started + seconds - WINDOW_END_GUARD)
            rc, out = run_to_end(self.kids, gen, timeout=seconds + WRK_SLACK)
        except BaseException:
            self.kids.kill(gen)
            raise
        ensure_alive(child, "during a burst")
        if rc != 0:
            raise ServerFailed(f"{server.name}: wrk failed (status {rc}):\n{out.strip()}")
        rps, latency = parse_wrk(out)
        if not rps:
            raise ServerFailed(f"{server.name}: not one response in {seconds} s: the server "
                               "stopped answering")
        if window is None:
            raise WindowLost(f"{server.name}: wrk ended before its -d{seconds}s did")
        if not wait_idle(child):
            log(f"warning: {server.name} still busy 2 s after a burst ended")
        return Sample(rps, latency, window, busy_before)

    def describe(self, sample: Sample) -> str:
        w = sample.window
        return (f"{fmt_rate(sample.rate):>7} req/s  {sample.server_us:5.2f} us/req  "
                f"latency avg {sample.latency_us:7.0f} us  server CPU {w.server_cpu:4.0%}  "
                f"wrk CPU {w.load_cpu:4.0%}  others {w.foreign:4.0%}  "
                f"waited {max(w.server_wait, w.load_wait):4.0%}"
                + (f"  (CPUs {sample.busy_before:.0%} busy before)"
                   if sample.busy_before > QUIET else "")
                + ("  wrk-bound" if w.load_cpu > WRK_SATURATED else ""))


def run_interleaved(bench: Bench, servers: list[Server]) -> Results:
    """Servers started once and kept running, wrk bursts alternated within each round."""
    args = bench.args
    results = Results()
    bench.interleave(
        servers, bench.start_all(servers),
        lambda server, child, port: bench.burst(server, child, port, seconds=args.seconds),
        results.add, rng=random.Random(args.seed) if args.order == "shuffle" else None)
    return results


def run_fresh(bench: Bench, servers: list[Server]) -> Results:
    """The earlier method: a fresh server process for every run, servers in a fixed order."""
    args = bench.args
    results = Results()

    def fresh_burst(server: Server, busy: float) -> Sample:
        started = bench.start(server)
        if started is None:
            raise ServerFailed(f"{server.name}: not available")
        child, port = started
        try:
            return bench.burst(server, child, port, seconds=args.seconds, busy_before=busy)
        finally:
            bench.kids.kill(child)

    for rnd in range(1, args.rounds + 1):
        for server in servers:
            if server.name in bench.unavailable:
                continue
            where = f"round {rnd}/{args.rounds}"
            try:
                sample: Sample | None = with_retries(
                    functools.partial(fresh_burst, server), retries=args.retries,
                    wait=lambda: wait_quiet(bench.cpus, args.quiet_wait),
                    report=bench.log_burst(f"[{where}] {server.label:<26}"), wait_first=True)
            except ServerFailed as exc:
                if server.name in bench.unavailable:
                    continue
                bench.fail(server, where, exc)
                sample = None
            results.add(server.name, sample)
    return results


def method_line(args: argparse.Namespace) -> str:
    """The header paragraph: how the figures below were made."""
    wrk = f"`wrk -t{args.threads} -c{args.connections} -d{args.seconds}s`"
    cpus = f"servers on CPU {args.server_cpu}, wrk on CPU {args.client_cpu}"
    common = (f"Keep-alive, 13-byte body. Server CPU per request: the server's scheduler "
              f"time (/proc/PID/task/*/schedstat, ns) from {WRK_RAMP:g} s after wrk started "
              f"to {WINDOW_END_GUARD * 1000:g} ms before its end, divided by wrk's requests/s. "
              "Ratios: the median of per-round ratios, each server against the other measured "
              "in the same round, with the interquartile range of those ratios in brackets "
              "(above 1, the server is faster or cheaper). A burst is contended when others "
              f"used over {FOREIGN_MAX:.0%} of the benchmark CPUs, the server or wrk waited "
              f"over {WAIT_MAX:.0%} of the window for its CPU"
              + (", or the CPUs were busy before it" if args.mode == "fresh" else "")
              + f": it is re-run up to {args.retries} times and left out of medians when "
              "uncontended bursts exist.")
    if args.mode == "interleaved":
        order = (f"shuffled every round (seed {args.seed})" if args.order == "shuffle"
                 else "the order reversed every other round")
        how = (f"Method: interleaved. Every server started once and kept running ({cpus}); "
               f"one uncounted burst per server, then {args.rounds} rounds of one {wrk} burst "
               f"per server, {order}.")
    else:
        how = (f"Method: fresh servers (--mode fresh). {args.rounds} rounds; in each, every "
               f"server in turn in a fresh process on a fresh port ({cpus}), one {wrk} run.")
    return f"{how} {common}"


def report(bench: Bench, servers: list[Server], results: Results) -> None:
    args = bench.args
    measured = [s for s in servers if s.name not in bench.unavailable and results.of(s.name)]
    have = {s.name for s in measured}
    base = ALL_SERVERS[BASELINE].label
    print(f"### HTTP hello world, requests per second ({machine_summary()})\n")
    print(method_line(args) + "\n")
    rows, saturated = [], []
    for s in measured:
        samples = results.of(s.name)
        good = usable(samples)
        contended = sum(x.contended for x in samples if x)
        load = median([x.window.load_cpu for x in good])
        if load and load > WRK_SATURATED:
            saturated.append(s.label)
        against = BASELINE in have and s.name != BASELINE
        cpu = median([x.window.server_cpu for x in good])
        cost = median([x.server_us for x in good])
        rows.append([
            s.label,
            fmt_rate(median([x.rate for x in good])),
            "-" if cost is None else f"{cost:.2f}",
            fmt_spread(rate_ratios(samples, results.of(BASELINE))) if against else "-",
            fmt_spread(cost_ratios(samples, results.of(BASELINE))) if against else "-",
            "-" if cpu is None else f"{cpu:.0%}",
            "-" if load is None else f"{load:.0%}",
            f"{len(good)}/{len(samples)}" + (f", {contended} contended" if contended else "")
            + (f", {bound} wrk-bound" if (bound := sum(
                x.window.load_cpu > WRK_SATURATED for x in good)) else "")
            + (", FAILED" if None in samples else ""),
        ])
    print(md_table(["server", "req/s", "server µs/req", f"req/s vs {base}",
                    f"CPU/req vs {base}", "server CPU", "wrk CPU", "bursts used"], rows) + "\n")
    if pairs := pairs_table(COMPARISONS, {s.name: s.label for s in measured},
                            lambda name, _workload: results.of(name), [("", "")], "req"):
        print(pairs)
    if "c_floor" in have:
        print(FLOOR_NOTE + "\n")
    if saturated:
        print(f"wrk used over {WRK_SATURATED:.0%} of its CPU against: {', '.join(saturated)}. "
              "Those figures may be wrk's limit rather than the server's, and the req/s ratios "
              "between them understate the difference; the CPU per request ones do not.\n")
    every = [x for v in results.samples.values() for x in v if x]
    contended = sum(x.contended for x in every)
    if contended:
        print(f"**{contended} of {len(every)} bursts shared CPU {args.server_cpu} or "
              f"{args.client_cpu} with other work even after retries**; their figures are "
              "suspect.\n")
    for name, why in bench.failed.items():
        stopped = "; it was stopped and not run again" if args.mode == "interleaved" else ""
        print(f"**{ALL_SERVERS[name].label} FAILED**, {why.splitlines()[0]}{stopped}.\n")
    for name, why in bench.unavailable.items():
        print(f"{name.split('_')[0]}: not available ({why})\n")


# Per mode: (--seconds, --rounds) when not given.
MODE_DEFAULTS = {"interleaved": (1, 10), "fresh": (5, 3)}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--mode", choices=list(MODE_DEFAULTS), default="interleaved",
                        help="interleaved (default): servers kept running, short wrk bursts "
                             "alternated; fresh: a fresh server process per run (the earlier "
                             "method, for comparison)")
    parser.add_argument("--seconds", type=int,
                        help="wrk -d per burst, whole seconds (default 1; fresh: 5)")
    parser.add_argument("--rounds", type=int, help="default 10; fresh: 3")
    parser.add_argument("--order", choices=["alternate", "shuffle"], default="alternate",
                        help="burst order within a round: as listed, reversed every other "
                             "round (default), or shuffled every round (--seed)")
    parser.add_argument("--seed", type=int,
                        help="seed for --order shuffle (default: a random one, reported)")
    parser.add_argument("--connections", type=int, default=100, help="wrk -c")
    parser.add_argument("--threads", type=int, default=1, help="wrk -t")
    parser.add_argument("--servers", help="comma-separated; default: " +
                        ",".join(s.name for s in SERVERS) +
                        "; extra: " + ",".join(s.name for s in EXTRA_SERVERS))
    parser.add_argument("--quiet-wait", type=float, default=15.0, metavar="S",
                        help="before each round (fresh: each run) wait up to S seconds for "
                             "the server and wrk CPUs to be idle; 0 to not wait")
    parser.add_argument("--retries", type=int, default=2,
                        help="re-run a burst up to this many times while it is contended "
                             "(other processes used the benchmark CPUs)")
    parser.add_argument("--cold-malloc", action="store_true",
                        help="do not warm glibc's mmap threshold in the servers "
                             "(see ../echo/README.md)")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--wrk", default=shutil.which("wrk"), help="wrk binary")
    parser.add_argument(
        "--compiled-python",
        default=str(HERE.parent.parent / ".venv-compiled" / "bin" / "python"),
        help="the Python with the compiled wheel installed, for treadle_aio_compiled "
        "(default: .venv-compiled/bin/python)",
    )
    args = parser.parse_args(argv)
    seconds, rounds = MODE_DEFAULTS[args.mode]
    args.seconds = seconds if args.seconds is None else args.seconds
    args.rounds = rounds if args.rounds is None else args.rounds
    if not (1 <= args.seconds <= 600 and 1 <= args.rounds <= 200):
        parser.error("--seconds must be in [1, 600] and --rounds in [1, 200]")
    if args.seed is None:
        args.seed = random.randrange(1 << 32)
    return args


def main() -> int:
    args = parse_args()
    require_schedstat()
    if not args.wrk:
        sys.exit("wrk not found: install it (Debian: apt-get install -y wrk) or pass --wrk")
    if (os.cpu_count() or 1) < 2:
        log("warning: fewer than 2 CPUs; server and wrk will share a CPU")
        args.server_cpu = args.client_cpu = None
    names = [n.strip() for n in (args.servers or "").split(",") if n.strip()] or \
        [s.name for s in SERVERS]
    unknown = [n for n in names if n not in ALL_SERVERS]
    if unknown:
        sys.exit(f"unknown servers: {', '.join(unknown)}; choose from {', '.join(ALL_SERVERS)}")
    servers = [ALL_SERVERS[n] for n in names]

    try:
        with children() as kids:
            bench = Bench(kids, args, args.wrk)
            print(f"<!-- Made by: {command_line()} -->\n")
            results = (run_interleaved(bench, servers) if args.mode == "interleaved"
                       else run_fresh(bench, servers))
    except KeyboardInterrupt:
        log("interrupted; all child processes killed")
        return 130
    report(bench, servers, results)
    return 1 if bench.failed else 0


if __name__ == "__main__":
    sys.exit(main())
