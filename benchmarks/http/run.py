"""Run the HTTP hello-world benchmark: every server against ``wrk``, in alternating rounds.

Each server runs pinned to one CPU (default 0) and ``wrk -t1 -c100`` to another
(default 1), each run in a fresh server process on a fresh port. Before every
timed run a plain-socket check sends three requests (the second split across
two writes, the third, with ``Connection: close``, pipelined behind it) and
insists on exactly three correct responses followed by a close.
The report gives median requests/s and the ratio of each server to asyncio
protocol, measured pairwise within rounds.

    python benchmarks/http/run.py --seconds 5 --rounds 3
    python benchmarks/http/run.py --servers asyncio_streams,treadle_streams
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "echo"))

from _httpcommon import RESPONSE
from harness import (
    PYTHON,
    QUIET,
    Child,
    Children,
    CpuMeter,
    ServerFailed,
    ServerUnavailable,
    child_env,
    children,
    fmt_rate,
    fmt_ratio,
    free_port,
    machine_summary,
    md_table,
    median,
    run_to_end,
    wait_quiet,
)

HERE = Path(__file__).resolve().parent
BASELINE = "asyncio_protocol"
FOREIGN_MAX = 0.08  # other work on the benchmark CPUs above this share marks a run contended
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


@dataclass
class Sample:
    rps: float
    latency: str  # wrk's average latency, as printed
    cpu_share: float  # server CPU seconds per wall second during the run
    busy_before: float  # how busy the benchmark CPUs were just before the run
    foreign: float  # CPU share others used on the benchmark CPUs during the run
    load_share: float  # wrk's CPU seconds per wall second

    @property
    def contended(self) -> bool:
        return self.busy_before > QUIET or self.foreign > FOREIGN_MAX


@dataclass
class Results:
    samples: dict[str, list[Sample | None]] = field(default_factory=dict)

    def add(self, server: str, sample: Sample | None) -> None:
        self.samples.setdefault(server, []).append(sample)

    def paired_ratio(self, server: str, base: str) -> float | None:
        return paired_ratio(self.samples.get(server, []), self.samples.get(base, []))

    def paired_cost_ratio(self, server: str, base: str) -> float | None:
        """Median over rounds of base's server CPU per request / server's (>1: cheaper)."""
        pairs = [(x, y) for x, y in zip(self.samples.get(server, []),
                                        self.samples.get(base, []), strict=False)
                 if x and y and x.cpu_share and y.rps]
        clean = [(x, y) for x, y in pairs if not (x.contended or y.contended)]
        return median([(y.cpu_share / y.rps) / (x.cpu_share / x.rps) for x, y in clean or pairs])


def usable(samples: list[Sample | None]) -> list[Sample]:
    """The samples to take medians of: uncontended ones if there are any, else all that ran."""
    good = [x for x in samples if x]
    return [x for x in good if not x.contended] or good


def paired_ratio(a: list[Sample | None], b: list[Sample | None]) -> float | None:
    """Median over rounds of a's rate / b's rate in the same round, uncontended pairs first."""
    pairs = [(x, y) for x, y in zip(a, b, strict=False) if x and y and y.rps]
    clean = [(x, y) for x, y in pairs if not (x.contended or y.contended)]
    return median([x.rps / y.rps for x, y in clean or pairs])


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


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
WRK_LAT = re.compile(r"^\s*Latency\s+(\S+)", re.M)
WRK_ERRS = re.compile(r"Socket errors:.*|Non-2xx or 3xx responses:.*")


class Bench:
    def __init__(self, kids: Children, args: argparse.Namespace, wrk: str) -> None:
        self.kids, self.args, self.wrk = kids, args, wrk
        self.env = child_env(cold_malloc=args.cold_malloc)
        self.unavailable: dict[str, str] = {}

    def start(self, server: Server) -> tuple[Child, int] | None:
        if server.name in self.unavailable:
            return None
        port = free_port()
        python, env = PYTHON, self.env
        if server.name in COMPILED_SERVERS:
            # Its own Python, and not the source tree's src/ on the path: the wheel's treadle.
            python = self.args.compiled_python
            env = {key: value for key, value in env.items() if key != "PYTHONPATH"}
        cmd = [python, str(HERE / server.argv[0]), str(port), *server.argv[1:]]
        try:
            child = self.kids.start_server(server.name, cmd, cpu=self.args.server_cpu,
                                           env=env)
        except ServerUnavailable as exc:
            self.unavailable[server.name] = str(exc)
            log(f"{server.family}: not available ({exc})")
            return None
        return child, port

    def measure(self, server: Server) -> tuple[Sample | None, str]:
        if server.name in self.unavailable:
            return None, "unavailable"
        busy = wait_quiet([self.args.server_cpu, self.args.client_cpu], self.args.quiet_wait)
        try:
            started = self.start(server)
        except ServerFailed as exc:
            return None, str(exc)
        if started is None:
            return None, "unavailable"
        child, port = started
        a = self.args
        try:
            check_server(port, exact=server.exact_response)
            cmd = [self.wrk, f"-t{a.threads}", f"-c{a.connections}", f"-d{a.seconds:g}s",
                   "--timeout", "5s", f"http://127.0.0.1:{port}/"]
            meter = CpuMeter([a.server_cpu, a.client_cpu], child.pid)
            with meter:
                gen = self.kids.start("wrk", cmd, cpu=a.client_cpu)
                rc, out = run_to_end(self.kids, gen, timeout=a.seconds + 30)
            if child.proc.poll() is not None:
                return None, f"server died (status {child.proc.returncode}):\n" \
                    + child.stderr_tail()
        except (ServerFailed, OSError) as exc:
            return None, str(exc)
        finally:
            self.kids.kill(child)
        m = WRK_RPS.search(out)
        if rc != 0 or not m:
            return None, f"wrk failed (status {rc}):\n{out.strip()}"
        errors = WRK_ERRS.findall(out)
        if errors:
            return None, "; ".join(errors)
        lat = WRK_LAT.search(out)
        return Sample(float(m.group(1)), lat.group(1) if lat else "?", meter.server_share, busy,
                      meter.foreign_share, meter.load_share), "ok"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="wrk -d, per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=100, help="wrk -c")
    parser.add_argument("--threads", type=int, default=1, help="wrk -t")
    parser.add_argument("--servers", help="comma-separated; default: " +
                        ",".join(s.name for s in SERVERS) +
                        "; extra: " + ",".join(s.name for s in EXTRA_SERVERS))
    parser.add_argument("--quiet-wait", type=float, default=15.0, metavar="S",
                        help="before each run wait up to S seconds for the server and wrk CPUs "
                             "to be idle; 0 to not wait")
    parser.add_argument("--retries", type=int, default=2,
                        help="re-run a measurement up to this many times while it is contended "
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
    args = parser.parse_args()
    if not (0 < args.seconds <= 600 and 1 <= args.rounds <= 50):
        sys.exit("--seconds must be in (0, 600] and --rounds in [1, 50]")
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

    results = Results()
    try:
        with children() as kids:
            bench = Bench(kids, args, args.wrk)
            for rnd in range(1, args.rounds + 1):
                for server in servers:
                    for attempt in range(args.retries + 1):
                        sample, status = bench.measure(server)
                        prefix = f"[round {rnd}/{args.rounds}] {server.label:<26}"
                        if sample is None:
                            if status != "unavailable":
                                log(f"{prefix} FAILED: {status}")
                            break
                        log(f"{prefix} {fmt_rate(sample.rps):>7} req/s  "
                            f"latency avg {sample.latency:>8}  server CPU {sample.cpu_share:4.0%}"
                            f"  wrk CPU {sample.load_share:4.0%}  others {sample.foreign:4.0%}"
                            + (f"  (CPU {sample.busy_before:.0%} busy before)"
                               if sample.busy_before > QUIET else "")
                            + ("  contended" + (", retrying" if attempt < args.retries else "")
                               if sample.contended else ""))
                        if not sample.contended:
                            break
                    if status != "unavailable":
                        results.add(server.name, sample)
    except KeyboardInterrupt:
        log("interrupted; all child processes killed")
        return 130

    measured = [s for s in servers if s.name not in bench.unavailable]
    have = {s.name for s in measured}
    print(f"### HTTP hello world, requests per second ({machine_summary()})\n")
    print(f"`wrk -t{args.threads} -c{args.connections} -d{args.seconds:g}s`, keep-alive, "
          f"13-byte body; median of {args.rounds} rounds; server on CPU {args.server_cpu}, "
          f"wrk on CPU {args.client_cpu}. Ratios are medians of per-round ratios. Medians "
          "leave out contended runs when uncontended ones exist.\n")
    rows, saturated = [], []
    for s in measured:
        samples = results.samples.get(s.name, [])
        good = usable(samples)
        cpu = median([x.cpu_share for x in good])
        other = median([x.foreign for x in good])
        load = median([x.load_share for x in good])
        if load and load > WRK_SATURATED:
            saturated.append(s.label)
        cost = median([x.cpu_share / x.rps * 1e6 for x in good if x.rps])
        rows.append([
            s.label,
            fmt_rate(median([x.rps for x in good])),
            fmt_ratio(results.paired_ratio(s.name, BASELINE)) if BASELINE in have else "-",
            " ".join(fmt_rate(x.rps) + ("*" if x.contended else "") if x else "FAIL"
                     for x in samples),
            "-" if cost is None else f"{cost:.2f}",
            "-" if cpu is None else f"{cpu:.0%}",
            "-" if load is None else f"{load:.0%}",
            "-" if other is None else f"{other:.0%}",
        ])
    print(md_table(["server", "req/s", "vs asyncio protocol", "rounds (* contended)",
                    "server µs/req", "server CPU", "wrk CPU", "others"], rows) + "\n")
    if saturated:
        print(f"wrk used over {WRK_SATURATED:.0%} of its CPU against: {', '.join(saturated)}. "
              "Those figures may be wrk's limit rather than the server's, and the ratios "
              "between them understate the difference.\n")
    every = [x for v in results.samples.values() for x in v if x]
    contended = sum(x.contended for x in every)
    if contended:
        print(f"**{contended} of {len(every)} runs shared CPU {args.server_cpu} or "
              f"{args.client_cpu} with other work even after retries**; their figures are "
              "suspect.\n")
    for server, base in COMPARISONS:
        if server in have and base in have:
            print(f"{ALL_SERVERS[server].label} vs {ALL_SERVERS[base].label}: requests/s "
                  f"{fmt_ratio(results.paired_ratio(server, base))}, server CPU per request "
                  f"(theirs / ours) {fmt_ratio(results.paired_cost_ratio(server, base))}\n")
    for name, why in bench.unavailable.items():
        print(f"{name.split('_')[0]}: not available ({why})\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
