"""Run the TCP echo benchmark: every echo server against the C load generator, in rounds.

Each server runs pinned to one CPU (default 0) and ``echo_load`` to another
(default 1). By default (``--mode interleaved``) every server is started once and
kept running; for each workload, each round runs one short echo_load burst (new
connections, a warm-up, a measured phase) against each server in turn, the order
reversed every other round (or shuffled: ``--order shuffle --seed N``). The server's
CPU time per round trip is read from the kernel's nanosecond counters over the inside
of each burst's measured phase. The report gives, per server and workload, median
round trips/s and server µs per round trip, and the median and interquartile range
of per-round ratios against asyncio streams and for each pair in ``COMPARISONS``.
``--mode fresh`` is the earlier method (a fresh server process per run, servers in
a fixed order), kept for comparison.

``--idle-conns N`` instead measures memory: it opens N idle connections to each
server and reports the growth of the server's resident set size per connection.

    python benchmarks/echo/run.py --rounds 16
    python benchmarks/echo/run.py --servers asyncio_streams,treadle_streams --verify
    python benchmarks/echo/run.py --mode fresh --seconds 3 --rounds 3
    python benchmarks/echo/run.py --idle-conns 10000
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness import (
    BUILD_DIR,
    FOREIGN_MAX,
    HERE,
    PYTHON,
    QUIET,
    REPO,
    WAIT_MAX,
    WINDOW_END_GUARD,
    WINDOW_START_GUARD,
    BuildFailed,
    Child,
    Children,
    Sample,
    ServerBench,
    ServerFailed,
    WindowLost,
    build_c,
    children,
    command_line,
    cost_ratios,
    ensure_alive,
    fmt_rate,
    fmt_ratio,
    fmt_spread,
    log,
    machine_summary,
    md_table,
    measure_window,
    median,
    open_fds,
    pairs_table,
    rate_ratios,
    require_schedstat,
    rss_kib,
    run_to_end,
    usable,
    wait_idle,
    wait_quiet,
    with_retries,
)


@dataclass(frozen=True)
class Server:
    name: str
    label: str
    argv: tuple[str, ...]  # script (relative to this directory) and its flags

    @property
    def family(self) -> str:
        return self.name.split("_")[0]


SERVERS = [
    Server("asyncio_streams", "asyncio streams", ("asyncio_streams.py",)),
    Server("asyncio_protocol", "asyncio protocol", ("asyncio_protocol.py",)),
    Server("uvloop_streams", "uvloop streams", ("asyncio_streams.py", "--uvloop")),
    Server("uvloop_protocol", "uvloop protocol", ("asyncio_protocol.py", "--uvloop")),
    Server("trio", "trio", ("trio_server.py",)),
    Server("curio", "curio", ("curio_server.py",)),
    Server("epoll_floor", "bare epoll loop (Python)", ("epoll_floor.py",)),
    # No framework and no Python: the kernel's share of a round trip (README, "C floor").
    Server("c_floor", "C epoll loop, no framework (the kernel's share)", ("c_floor.c",)),
    Server("treadle_streams", "treadle streams", ("treadle_streams.py",)),
    # The same script on the compiled build, run by --compiled-python (docs/compiled.md);
    # it refuses to run on a pure treadle.
    Server("treadle_compiled", "treadle streams, compiled", ("treadle_streams.py", "--compiled")),
]
EXTRA_SERVERS = [  # asyncio's servers on treadle.aio (issue 8): run when named in --servers
    Server("treadle_aio_protocol", "treadle.aio protocol", ("treadle_aio.py",)),
    Server("treadle_aio_streams", "treadle.aio streams", ("treadle_aio.py", "--streams")),
    Server("treadle_aio_protocol_asyncio_transport", "treadle.aio protocol, asyncio's transport",
           ("treadle_aio.py", "--transport", "asyncio")),
    # On the compiled build, run by --compiled-python like treadle_compiled.
    Server("treadle_aio_compiled", "treadle.aio protocol, compiled",
           ("treadle_aio.py", "--compiled")),
]
# The servers run by --compiled-python, on the compiled wheel's treadle.
COMPILED_SERVERS = {"treadle_compiled", "treadle_aio_compiled"}
ALL_SERVERS = {s.name: s for s in SERVERS + EXTRA_SERVERS}
# Pairs compared directly when both ran: (server, against).
COMPARISONS = [
    ("c_floor", "asyncio_protocol"),  # the most any server can reach against asyncio here
    ("treadle_streams", "uvloop_streams"),
    ("treadle_compiled", "uvloop_streams"),
    ("treadle_compiled", "treadle_streams"),
    ("treadle_aio_protocol", "asyncio_protocol"),
    ("treadle_aio_protocol", "uvloop_protocol"),
    ("treadle_aio_protocol", "treadle_aio_protocol_asyncio_transport"),
    ("treadle_aio_compiled", "asyncio_protocol"),
    ("treadle_aio_compiled", "uvloop_protocol"),
    ("treadle_aio_compiled", "treadle_aio_protocol"),
    ("treadle_aio_streams", "asyncio_streams"),
    ("treadle_aio_streams", "uvloop_streams"),
]
BASELINE = "asyncio_streams"
FLOOR_NOTE = (
    "The C epoll loop (`c_floor.c`) makes the system calls every server here makes per round "
    "trip (one recv, one send, part of an epoll_wait) and nothing else: its CPU per round "
    "trip is the kernel's share on this machine, and its ratio against asyncio protocol is "
    "the most any server can reach here. A Python framework's ratio against asyncio cannot "
    "exceed the C floor's.")
LOAD_SATURATED = 0.90  # echo_load above this CPU share may be the bottleneck


@dataclass(frozen=True)
class Workload:
    name: str
    label: str
    size: int
    conns: int


WORKLOADS = [
    Workload("1k_x10", "1 KiB x 10", 1024, 10),
    Workload("1k_x100", "1 KiB x 100", 1024, 100),
    Workload("64k_x10", "64 KiB x 10", 65536, 10),
]
ALL_WORKLOADS = {w.name: w for w in WORKLOADS}


# --- load generator ----------------------------------------------------------------------


def default_load_source() -> Path:
    return Path(os.environ.get("ECHO_LOAD_SRC", REPO.parent / "shared" / "bench" / "echo_load.c"))


def ensure_load_generator(path: Path | None, source: Path) -> Path:
    """Return the echo_load binary, building it into .build/ from ``source`` if needed."""
    if path is not None:
        return path
    binary = BUILD_DIR / "echo_load"
    if binary.exists() and not source.exists():
        return binary
    if not source.exists():
        sys.exit(f"echo_load source not found at {source}; pass --load-src or --load")
    try:
        return build_c(source, binary)
    except BuildFailed as exc:
        sys.exit(str(exc))


def parse_result(stdout: str) -> dict[str, float]:
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            pairs = (item.split("=", 1) for item in line.split()[1:] if "=" in item)
            return {k: float(v) for k, v in pairs}
    raise ValueError("no RESULT line in load generator output")


# --- one burst --------------------------------------------------------------------------------

LOAD_SLACK = 10.0  # echo_load's connect timeout (5 s) and exit, beyond warm-up + measured time


@dataclass
class Results:
    """Every timed burst per (server, workload), in round order; None where a burst failed."""

    samples: dict[tuple[str, str], list[Sample | None]] = field(default_factory=dict)

    def add(self, server: str, workload: str, sample: Sample | None) -> None:
        self.samples.setdefault((server, workload), []).append(sample)

    def of(self, server: str, workload: str) -> list[Sample | None]:
        return self.samples.get((server, workload), [])


class Bench(ServerBench):
    """Starts servers and runs echo_load bursts against them; remembers who is out and why."""

    server_dir = HERE
    compiled_servers = COMPILED_SERVERS

    def __init__(self, kids: Children, args: argparse.Namespace, load: Path) -> None:
        super().__init__(kids, args)
        self.load = load

    def burst(self, child: Child, port: int, wl: Workload, *, seconds: float, warmup: float,
              verify: bool = False, busy_before: float = 0.0) -> Sample:
        """One echo_load run against a running server; ``ServerFailed`` says what went wrong.

        The server's CPU is read over the middle of echo_load's measured phase (see
        ``harness.measure_window``); afterwards the runner waits until the server has
        finished closing the burst's connections, so the next burst starts on an idle CPU.
        """
        cmd = [str(self.load), "--port", str(port), "--conns", str(wl.conns),
               "--size", str(wl.size), "--seconds", f"{seconds:g}", "--warmup", f"{warmup:g}"]
        if verify:
            cmd.append("--verify")
        gen = self.kids.start("echo_load", cmd, cpu=self.args.client_cpu)
        started = time.monotonic()  # Popen returns once the pinned binary is being exec'd
        try:
            window = measure_window(
                child, gen, self.cpus, started + warmup + min(WINDOW_START_GUARD, seconds / 4),
                started + warmup + seconds - min(WINDOW_END_GUARD, seconds / 4))
            rc, out = run_to_end(self.kids, gen, timeout=warmup + seconds + LOAD_SLACK)
        except BaseException:
            self.kids.kill(gen)
            raise
        gen_stderr = gen.stderr_tail(5)
        ensure_alive(child, "during a burst")
        try:
            res = parse_result(out)
        except ValueError:
            raise ServerFailed(f"{child.name}: echo_load failed (status {rc}): "
                               f"{out.strip()} {gen_stderr}") from None
        if rc != 0 or res.get("errors", 0) or res.get("mismatches", -1) > 0:
            raise ServerFailed(f"{child.name}: echo_load saw errors={res.get('errors', 0):.0f} "
                               f"mismatches={res.get('mismatches', -1):.0f} (status {rc}) "
                               f"{gen_stderr}")
        if not res.get("rt"):
            raise ServerFailed(f"{child.name}: not one round trip in {seconds:g} s: the server "
                               "stopped answering")
        if window is None:
            raise WindowLost(f"{child.name}: echo_load ended before its measured phase did")
        if not wait_idle(child):
            log(f"warning: {child.name} still busy 2 s after a burst ended")
        return Sample(res["rps"], res["p99_us"], window, busy_before)

    def describe(self, sample: Sample) -> str:
        w = sample.window
        return (f"{fmt_rate(sample.rate):>7} rt/s  {sample.server_us:5.1f} us/rt  "
                f"p99 {sample.latency_us:6.0f} us  server CPU {w.server_cpu:4.0%}  "
                f"load CPU {w.load_cpu:4.0%}  others {w.foreign:4.0%}  "
                f"waited {max(w.server_wait, w.load_wait):4.0%}"
                + (f"  (CPUs {sample.busy_before:.0%} busy before)"
                   if sample.busy_before > QUIET else "")
                + ("  echo_load-bound" if w.load_cpu > LOAD_SATURATED else ""))


# --- modes ------------------------------------------------------------------------------------

VERIFY_SECONDS, VERIFY_WARMUP = 1.0, 0.2


def run_verify(bench: Bench, servers: list[Server], workloads: list[Workload],
               running: dict[str, tuple[Child, int]] | None) -> list[Server]:
    """Check every echoed byte once per server and workload; return the servers that passed.

    ``running``: the servers kept running (interleaved mode); None starts a fresh one for
    each check. A server that fails is stopped and not timed.
    """
    log(f"verify pass: echo_load --verify, {VERIFY_SECONDS:g} s per server and workload")
    rows, passed = [], []
    for server in servers:
        cells, ok = [], True
        for wl in workloads:
            child: Child | None = None
            try:
                started = (running.get(server.name) if running is not None
                           else bench.start(server))
                if started is None:
                    cells, ok = ["not available"] * len(workloads), False
                    break
                child, port = started
                bench.burst(child, port, wl, seconds=VERIFY_SECONDS, warmup=VERIFY_WARMUP,
                            verify=True)
                cells.append("ok")
            except ServerFailed as exc:
                log(f"  {server.label} {wl.label}: FAILED {exc}")
                cells.append("FAIL")
                ok = False
            finally:
                if running is None and child is not None:
                    bench.kids.kill(child)
        rows.append([server.label, *cells])
        if ok:
            passed.append(server)
        elif running is not None and server.name in running:
            bench.kids.kill(running.pop(server.name)[0])
    print("### Correctness (echo_load --verify)\n")
    print(md_table(["server", *(w.label for w in workloads)], rows) + "\n")
    return passed


def run_interleaved(bench: Bench, servers: list[Server], workloads: list[Workload],
                    running: dict[str, tuple[Child, int]]) -> Results:
    """Bursts against servers kept running, alternated within each round (the default mode)."""
    args = bench.args
    results = Results()
    rng = random.Random(args.seed) if args.order == "shuffle" else None
    for wl in workloads:
        bench.interleave(
            servers, running,
            lambda _server, child, port, wl=wl: bench.burst(
                child, port, wl, seconds=args.seconds, warmup=args.warmup),
            lambda name, sample, wl=wl: results.add(name, wl.name, sample),
            rng=rng, workload=wl.label)
    return results


def run_fresh(bench: Bench, servers: list[Server], workloads: list[Workload]) -> Results:
    """The earlier method: a fresh server process for every burst, servers in a fixed order."""
    args = bench.args
    results = Results()

    def fresh_burst(server: Server, wl: Workload, busy: float) -> Sample:
        started = bench.start(server)
        if started is None:
            raise ServerFailed(f"{server.name}: not available")
        child, port = started
        try:
            return bench.burst(child, port, wl, seconds=args.seconds, warmup=args.warmup,
                               busy_before=busy)
        finally:
            bench.kids.kill(child)

    for rnd in range(1, args.rounds + 1):
        for wl in workloads:
            for server in servers:
                if server.name in bench.unavailable:
                    continue
                where = f"round {rnd}/{args.rounds}"
                try:
                    sample: Sample | None = with_retries(
                        functools.partial(fresh_burst, server, wl), retries=args.retries,
                        wait=lambda: wait_quiet(bench.cpus, args.quiet_wait),
                        report=bench.log_burst(f"[{where}] {wl.label:<12} {server.label:<26}"),
                        wait_first=True)
                except ServerFailed as exc:
                    if server.name in bench.unavailable:
                        continue
                    bench.fail(server, f"{wl.label}, {where}", exc)
                    sample = None
                results.add(server.name, wl.name, sample)
    return results


# --- report -----------------------------------------------------------------------------------


def method_line(args: argparse.Namespace) -> str:
    """The header paragraph: how the figures below were made."""
    cpus = f"servers on CPU {args.server_cpu}, echo_load on CPU {args.client_cpu}"
    window = (f"Server CPU per round trip: the server's scheduler time (/proc/PID/task/*/"
              f"schedstat, ns) over echo_load's measured phase, from {WINDOW_START_GUARD * 1000:g} "
              f"ms after its start to {WINDOW_END_GUARD * 1000:g} ms before its end (the "
              "burst's connection start-up and teardown stay out), divided by echo_load's "
              "round trips/s.")
    ratios = ("Ratios: the median of per-round ratios, each server against the other measured "
              "in the same round, with the interquartile range of those ratios in brackets "
              "(for round trips/s: server / baseline; for CPU per round trip: baseline / "
              "server; above 1, the server is faster). A burst is contended when others used "
              f"over {FOREIGN_MAX:.0%} of the benchmark CPUs, the server or echo_load waited "
              f"over {WAIT_MAX:.0%} of the window for its CPU"
              + (", or the CPUs were busy before it" if args.mode == "fresh" else "") + ": "
              f"it is re-run up to {args.retries} times and left out of medians when "
              "uncontended bursts exist.")
    if args.mode == "interleaved":
        order = (f"shuffled every round (seed {args.seed})" if args.order == "shuffle"
                 else "the order reversed every other round")
        how = (f"Method: interleaved. Every server started once and kept running ({cpus}); "
               f"for each workload one uncounted burst per server, then {args.rounds} rounds "
               f"of one burst per server, {order}; a burst is one echo_load run, new "
               f"connections, {args.seconds:g} s measured after {args.warmup:g} s warm-up.")
    else:
        how = (f"Method: fresh servers (--mode fresh). {args.rounds} rounds; in each, for each "
               f"workload, every server in turn in a fresh process on a fresh port ({cpus}), "
               f"{args.seconds:g} s measured after {args.warmup:g} s warm-up.")
    return f"{how} {window} {ratios}"


def report_throughput(bench: Bench, servers: list[Server], workloads: list[Workload],
                      results: Results) -> None:
    args = bench.args
    measured = [s for s in servers if s.name not in bench.unavailable
                and any(results.of(s.name, wl.name) for wl in workloads)]
    names = {s.name for s in measured}
    base = ALL_SERVERS[BASELINE].label
    print(f"### Echo round trips per second ({machine_summary()})\n")
    print(method_line(args) + "\n")
    saturated = []
    for wl in workloads:
        print(f"#### {wl.label}\n")
        rows = []
        for s in measured:
            samples = results.of(s.name, wl.name)
            good = usable(samples)
            ran = [x for x in samples if x]
            contended = sum(x.contended for x in ran)
            load = median([x.window.load_cpu for x in good])
            if load and load > LOAD_SATURATED:
                saturated.append(f"{s.label} ({wl.label})")
            against = (BASELINE in names and s.name != BASELINE)
            rows.append([
                s.label,
                fmt_rate(median([x.rate for x in good])),
                fmt_num(median([x.server_us for x in good]), ".2f"),
                fmt_spread(rate_ratios(samples, results.of(BASELINE, wl.name)))
                if against else "-",
                fmt_spread(cost_ratios(samples, results.of(BASELINE, wl.name)))
                if against else "-",
                fmt_num(median([x.latency_us for x in good]), ".0f"),
                fmt_pct(median([x.window.server_cpu for x in good])),
                fmt_pct(median([x.window.load_cpu for x in good])),
                f"{len(good)}/{len(samples)}" + (f", {contended} contended" if contended else "")
                + (f", {bound} load-bound" if (bound := sum(
                    x.window.load_cpu > LOAD_SATURATED for x in good)) else "")
                + (", FAILED" if None in samples else ""),
            ])
        print(md_table(["server", "rt/s", "server µs/rt", f"rt/s vs {base}",
                        f"CPU/rt vs {base}", "p99 µs", "server CPU", "load CPU",
                        "bursts used"], rows) + "\n")

    if pairs := pairs_table(COMPARISONS, {s.name: s.label for s in measured}, results.of,
                            [(wl.name, wl.label) for wl in workloads], "rt"):
        print(pairs)
    if "c_floor" in names:
        print(FLOOR_NOTE + "\n")
    if saturated:
        print(f"echo_load used over {LOAD_SATURATED:.0%} of its CPU against: "
              f"{'; '.join(saturated)}. Those rt/s figures are partly the load generator's "
              "limit and their rt/s ratios understate differences; the server µs/rt column "
              "and the CPU/rt ratios still separate them.\n")
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


def fmt_num(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def fmt_pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.0%}"



def settle_rss(pid: int, timeout: float = 5.0) -> int:
    """VmRSS once two readings 0.25 s apart agree (or after ``timeout``)."""
    last = rss_kib(pid)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        time.sleep(0.25)
        now = rss_kib(pid)
        if now == last:
            return now
        last = now
    return last


def run_idle(bench: Bench, servers: list[Server], n: int) -> None:
    kids, args = bench.kids, bench.args
    measured: list[tuple[Server, tuple[int, int] | None]] = []  # (before, after) KiB
    for server in servers:
        wait_quiet([args.server_cpu, args.client_cpu], args.quiet_wait)
        try:
            started = bench.start(server)
        except ServerFailed as exc:
            log(f"{server.label}: could not start: {exc}")
            measured.append((server, None))
            continue
        if started is None:
            continue
        child, port = started
        client: Child | None = None
        try:
            time.sleep(0.3)
            before = settle_rss(child.pid)
            fds0 = open_fds(child.pid)
            cmd = [PYTHON, str(HERE / "idle_client.py"), str(port), "--conns", str(n),
                   "--server-pid", str(child.pid)]
            client = kids.start("idle_client", cmd, cpu=args.client_cpu,
                                stdin=subprocess.PIPE)
            line = kids.wait_for_line(client, ("CONNECTED", "ERROR"), timeout=120)
            if line.startswith("ERROR"):
                raise ServerFailed(f"idle client: {line}")
            deadline = time.monotonic() + 60
            while (accepted := open_fds(child.pid) - fds0) < n:
                if child.proc.poll() is not None or time.monotonic() > deadline:
                    raise ServerFailed(f"server accepted only {accepted} of {n}")
                time.sleep(0.05)
            after = settle_rss(child.pid)
        except (ServerFailed, OSError) as exc:
            log(f"{server.label}: idle measurement failed: {exc}")
            measured.append((server, None))
            continue
        finally:
            kids.kill(child)  # server first, so TIME_WAIT lands on its side
            if client is not None:
                kids.kill(client)
        measured.append((server, (before, after)))
        log(f"{server.label}: RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB, "
            f"{(after - before) / n:.2f} KiB per connection")

    per_conn = {s.name: (m[1] - m[0]) / n for s, m in measured if m}
    base = per_conn.get(BASELINE)
    rows = []
    for server, m in measured:
        if m is None:
            rows.append([server.label, str(n), "-", "-", "FAILED", "-"])
            continue
        growth = per_conn[server.name]
        rows.append([server.label, str(n), f"{m[0] / 1024:.1f}", f"{m[1] / 1024:.1f}",
                     f"{growth:.2f}", fmt_ratio(growth / base) if base else "-"])
    print(f"### Server memory per idle connection ({machine_summary()})\n")
    print(f"VmRSS of the server before and after a client opened {n} idle connections "
          "(accepted, nothing sent); growth divided by the number of connections.\n")
    print(md_table(["server", "conns", "RSS before MiB", "RSS after MiB", "KiB per conn",
                    "vs asyncio streams"], rows) + "\n")
    for name, why in bench.unavailable.items():
        print(f"{name.split('_')[0]}: not available ({why})\n")


# --- main ---------------------------------------------------------------------------------------


def pick(names: str | None, table: dict[str, object], default: list[str], what: str) -> list[str]:
    if not names:
        return default
    chosen = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in table]
    if unknown:
        sys.exit(f"unknown {what}: {', '.join(unknown)}; choose from {', '.join(table)}")
    return chosen


# Per mode: (--seconds, --warmup, --rounds) when not given.
MODE_DEFAULTS = {"interleaved": (0.5, 0.1, 16), "fresh": (5.0, 1.0, 3)}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--mode", choices=list(MODE_DEFAULTS), default="interleaved",
                        help="interleaved (default): servers kept running, short bursts "
                             "alternated; fresh: a fresh server process per burst, servers "
                             "in a fixed order (the earlier method, for comparison)")
    parser.add_argument("--seconds", type=float,
                        help="measured seconds per burst (default 0.5; fresh: 5)")
    parser.add_argument("--warmup", type=float,
                        help="echo_load's warm-up seconds per burst (default 0.1; fresh: 1)")
    parser.add_argument("--rounds", type=int, help="rounds per workload (default 16; fresh: 3)")
    parser.add_argument("--order", choices=["alternate", "shuffle"], default="alternate",
                        help="burst order within a round: as listed, reversed every other "
                             "round (default), or shuffled every round (--seed)")
    parser.add_argument("--seed", type=int,
                        help="seed for --order shuffle (default: a random one, reported)")
    parser.add_argument("--servers", help="comma-separated from " + ",".join(ALL_SERVERS))
    parser.add_argument(
        "--compiled-python",
        default=str(HERE.parent.parent / ".venv-compiled" / "bin" / "python"),
        help="the Python with the compiled wheel installed, for treadle_compiled and "
        "treadle_aio_compiled "
        "(default: .venv-compiled/bin/python)",
    )
    parser.add_argument("--workloads", help="comma-separated from " + ",".join(ALL_WORKLOADS))
    parser.add_argument("--verify", action="store_true",
                        help="first check every echoed byte once (echo_load --verify); "
                             "servers that fail are not timed")
    parser.add_argument("--idle-conns", type=int, metavar="N",
                        help="measure server RSS growth per idle connection instead")
    parser.add_argument("--quiet-wait", type=float, default=15.0, metavar="S",
                        help="before each round (fresh: each burst) wait up to S seconds for "
                             "the server and load CPUs to be idle; 0 to not wait")
    parser.add_argument("--retries", type=int, default=2,
                        help="re-run a burst up to this many times while it is contended "
                             "(other processes used the benchmark CPUs)")
    parser.add_argument("--cold-malloc", action="store_true",
                        help="do not warm glibc's mmap threshold in the servers (README)")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--load", type=Path, help="echo_load binary (default: build into .build/)")
    parser.add_argument("--load-src", type=Path, default=default_load_source())
    args = parser.parse_args(argv)
    seconds, warmup, rounds = MODE_DEFAULTS[args.mode]
    args.seconds = seconds if args.seconds is None else args.seconds
    args.warmup = warmup if args.warmup is None else args.warmup
    args.rounds = rounds if args.rounds is None else args.rounds
    if not (0.1 <= args.seconds <= 600 and 0 <= args.warmup <= 60 and 1 <= args.rounds <= 200):
        parser.error("--seconds must be in [0.1, 600], --warmup in [0, 60], "
                     "--rounds in [1, 200]")
    if args.seed is None:
        args.seed = random.randrange(1 << 32)
    return args


def main() -> int:
    args = parse_args()
    require_schedstat()
    if (os.cpu_count() or 1) < 2:
        log("warning: fewer than 2 CPUs; server and load generator will share a CPU")
        args.server_cpu = args.client_cpu = None

    servers = [ALL_SERVERS[n] for n in
               pick(args.servers, ALL_SERVERS, [s.name for s in SERVERS], "servers")]
    workloads = [ALL_WORKLOADS[n] for n in
                 pick(args.workloads, ALL_WORKLOADS, [w.name for w in WORKLOADS], "workloads")]

    try:
        with children() as kids:
            if args.idle_conns:
                bench = Bench(kids, args, Path("/nonexistent"))
                run_idle(bench, servers, args.idle_conns)
                return 0
            load = ensure_load_generator(args.load, args.load_src)
            bench = Bench(kids, args, load)
            print(f"<!-- Made by: {command_line()} -->\n")
            if args.mode == "interleaved":
                # A burst costs its warm-up and measured time plus ~0.1 s (start, idle
                # wait); a round adds wait_quiet's 0.25 s look at the CPUs.
                minutes = len(workloads) * (
                    len(servers) * (args.rounds + 1) * (args.warmup + args.seconds + 0.1)
                    + args.rounds * 0.25) / 60
                log(f"{args.rounds} rounds x {len(servers)} servers x {len(workloads)} "
                    f"workloads: about {minutes:.1f} min on quiet CPUs")
                running = bench.start_all(servers)
                if args.verify:
                    servers = run_verify(bench, servers, workloads, running)
                servers = [s for s in servers if s.name in running]
                results = run_interleaved(bench, servers, workloads, running)
            else:
                if args.verify:
                    servers = run_verify(bench, servers, workloads, None)
                results = run_fresh(bench, servers, workloads)
            report_throughput(bench, servers, workloads, results)
    except KeyboardInterrupt:
        log("interrupted; all child processes killed")
        return 130
    return 1 if bench.failed else 0


if __name__ == "__main__":
    sys.exit(main())
