"""Run the TCP echo benchmark: every echo server against the C load generator, in rounds.

Each server runs pinned to one CPU (default 0) and ``echo_load`` to another
(default 1). For every round and workload the servers run one after another
(A B C ... A B C ...), each in a fresh process on a fresh port; the report gives
median round trips/s per server and workload and the ratio of each server to
asyncio streams (and treadle to uvloop streams), measured pairwise within rounds.

``--idle-conns N`` instead measures memory: it opens N idle connections to each
server and reports the growth of the server's resident set size per connection.

    python benchmarks/echo/run.py --seconds 3 --rounds 3
    python benchmarks/echo/run.py --servers asyncio_streams,treadle_streams --verify
    python benchmarks/echo/run.py --idle-conns 10000
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import (
    HERE,
    PYTHON,
    QUIET,
    REPO,
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
    open_fds,
    rss_kib,
    run_to_end,
    wait_quiet,
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
LOAD_SATURATED = 0.90  # echo_load above this CPU share may be the bottleneck
FOREIGN_MAX = 0.08  # other work on the benchmark CPUs above this share marks a run contended


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


@dataclass
class Sample:
    rps: float
    p99_us: float
    cpu_share: float  # server CPU seconds / wall seconds while the load ran
    busy_before: float  # how busy the benchmark CPUs were just before the server started
    foreign: float  # CPU share others used on the benchmark CPUs during the run
    load_share: float  # echo_load's CPU seconds per wall second

    @property
    def contended(self) -> bool:
        return self.busy_before > QUIET or self.foreign > FOREIGN_MAX


@dataclass
class Results:
    samples: dict[tuple[str, str], list[Sample | None]] = field(default_factory=dict)

    def add(self, server: str, workload: str, sample: Sample | None) -> None:
        self.samples.setdefault((server, workload), []).append(sample)

    def rates(self, server: str, workload: str) -> list[float]:
        return [s.rps for s in usable(self.samples.get((server, workload), []))]

    def paired_ratio(self, server: str, base: str, workload: str) -> float | None:
        return paired_ratio(self.samples.get((server, workload), []),
                            self.samples.get((base, workload), []))

    def paired_cost_ratio(self, server: str, base: str, workload: str) -> float | None:
        """Median over rounds of base's server CPU per round trip / server's (>1: cheaper)."""
        pairs = [(x, y) for x, y in zip(self.samples.get((server, workload), []),
                                        self.samples.get((base, workload), []), strict=False)
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


# --- load generator ----------------------------------------------------------------------


def default_load_source() -> Path:
    return Path(os.environ.get("ECHO_LOAD_SRC", REPO.parent / "shared" / "bench" / "echo_load.c"))


def ensure_load_generator(path: Path | None, source: Path) -> Path:
    """Return the echo_load binary, building it into .build/ from ``source`` if needed."""
    if path is not None:
        return path
    binary = HERE / ".build" / "echo_load"
    if binary.exists() and (
        not source.exists() or binary.stat().st_mtime >= source.stat().st_mtime
    ):
        return binary
    if not source.exists():
        sys.exit(f"echo_load source not found at {source}; pass --load-src or --load")
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if not cc:
        sys.exit("no C compiler (gcc/cc) to build echo_load")
    binary.parent.mkdir(exist_ok=True)
    cmd = [cc, "-O2", "-Wall", "-o", str(binary), str(source)]
    log("building load generator: " + " ".join(cmd))
    subprocess.run(cmd, check=True)
    return binary


def parse_result(stdout: str) -> dict[str, float]:
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            pairs = (item.split("=", 1) for item in line.split()[1:] if "=" in item)
            return {k: float(v) for k, v in pairs}
    raise ValueError("no RESULT line in load generator output")


# --- one measurement -----------------------------------------------------------------------


class Bench:
    def __init__(self, kids: Children, args: argparse.Namespace, load: Path) -> None:
        self.kids = kids
        self.args = args
        self.load = load
        self.env = child_env(cold_malloc=args.cold_malloc)
        self.unavailable: dict[str, str] = {}

    def start(self, server: Server) -> tuple[Child, int] | None:
        """Start a server on a fresh port; None (and remember why) if it is unavailable."""
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

    def load_once(self, server: Server, wl: Workload, *, seconds: float, warmup: float,
                  verify: bool) -> tuple[Sample | None, dict[str, float] | None, str]:
        if server.name in self.unavailable:
            return None, None, "unavailable"
        busy = wait_quiet([self.args.server_cpu, self.args.client_cpu], self.args.quiet_wait)
        try:
            started = self.start(server)
        except ServerFailed as exc:
            return None, None, str(exc)
        if started is None:
            return None, None, "unavailable"
        child, port = started
        try:
            cmd = [str(self.load), "--port", str(port), "--conns", str(wl.conns),
                   "--size", str(wl.size), "--seconds", str(seconds), "--warmup", str(warmup)]
            if verify:
                cmd.append("--verify")
            meter = CpuMeter([self.args.server_cpu, self.args.client_cpu], child.pid)
            with meter:
                gen = self.kids.start("echo_load", cmd, cpu=self.args.client_cpu)
                rc, out = run_to_end(self.kids, gen, timeout=seconds + warmup + 30)
            if child.proc.poll() is not None:
                return None, None, f"server died (status {child.proc.returncode}):\n" \
                    + child.stderr_tail()
        except ServerFailed as exc:  # the load generator overran its time limit
            return None, None, str(exc)
        finally:
            self.kids.kill(child)
        try:
            res = parse_result(out)
        except ValueError:
            return None, None, f"load generator failed (status {rc}):\n{out.strip()}"
        if rc != 0 or res.get("errors", 0) or res.get("mismatches", -1) > 0:
            return None, res, (f"errors={res.get('errors', 0):.0f} "
                               f"mismatches={res.get('mismatches', -1):.0f} (status {rc})")
        sample = Sample(res["rps"], res["p99_us"], meter.server_share, busy, meter.foreign_share,
                        meter.load_share)
        return sample, res, "ok"


# --- modes ------------------------------------------------------------------------------------


def run_verify(bench: Bench, servers: list[Server], workloads: list[Workload]) -> list[Server]:
    """Check every echoed byte once per server and workload; return the servers that passed."""
    log("verify pass: echo_load --verify, 1 s per server and workload")
    rows, passed = [], []
    for server in servers:
        cells, ok = [], True
        for wl in workloads:
            sample, _res, status = bench.load_once(server, wl, seconds=1.0, warmup=0.2,
                                                   verify=True)
            if status == "unavailable":
                cells, ok = ["not available"] * len(workloads), False
                break
            if sample is None:
                log(f"  {server.label} {wl.label}: FAILED {status}")
                ok = False
            cells.append("ok" if sample else "FAIL")
        rows.append([server.label, *cells])
        if ok:
            passed.append(server)
    print("### Correctness (echo_load --verify)\n")
    print(md_table(["server", *(w.label for w in workloads)], rows) + "\n")
    return passed


def run_throughput(bench: Bench, servers: list[Server], workloads: list[Workload]) -> Results:
    args = bench.args
    results = Results()
    for rnd in range(1, args.rounds + 1):
        for wl in workloads:
            for server in servers:
                if server.name in bench.unavailable:
                    continue
                for attempt in range(args.retries + 1):
                    sample, _res, status = bench.load_once(server, wl, seconds=args.seconds,
                                                           warmup=args.warmup, verify=False)
                    prefix = f"[round {rnd}/{args.rounds}] {wl.label:<12} {server.label:<26}"
                    if sample is None:
                        if status != "unavailable":
                            log(f"{prefix} FAILED: {status}")
                        break
                    log(f"{prefix} {fmt_rate(sample.rps):>7} rt/s  p99 {sample.p99_us:8.0f} us"
                        f"  server CPU {sample.cpu_share:4.0%}  load CPU {sample.load_share:4.0%}"
                        f"  others {sample.foreign:4.0%}"
                        + (f"  (CPU {sample.busy_before:.0%} busy before)"
                           if sample.busy_before > QUIET else "")
                        + ("  contended" + (", retrying" if attempt < args.retries else "")
                           if sample.contended else ""))
                    if not sample.contended:
                        break
                if status != "unavailable":
                    results.add(server.name, wl.name, sample)
    return results


def report_throughput(bench: Bench, servers: list[Server], workloads: list[Workload],
                      results: Results) -> None:
    args = bench.args
    measured = [s for s in servers if s.name not in bench.unavailable]
    names = {s.name for s in measured}
    print(f"### Echo round trips per second ({machine_summary()})\n")
    print(f"Median of {args.rounds} rounds; {args.seconds:g} s measured after {args.warmup:g} s "
          f"warm-up; server on CPU {args.server_cpu}, echo_load on CPU {args.client_cpu}. "
          "Ratios are medians of per-round ratios (each server against the baseline measured "
          "in the same round). Medians leave out contended runs when uncontended ones exist."
          "\n")
    header = ["server"]
    for wl in workloads:
        header += [f"{wl.label} rt/s", "vs asyncio streams"]
    rows = []
    for s in measured:
        row = [s.label]
        for wl in workloads:
            row.append(fmt_rate(median(results.rates(s.name, wl.name))))
            row.append(fmt_ratio(results.paired_ratio(s.name, BASELINE, wl.name))
                       if BASELINE in names else "-")
        rows.append(row)
    print(md_table(header, rows) + "\n")

    for server, base in COMPARISONS:
        if server in names and base in names:
            rates = [fmt_ratio(results.paired_ratio(server, base, wl.name)) for wl in workloads]
            costs = [fmt_ratio(results.paired_cost_ratio(server, base, wl.name))
                     for wl in workloads]
            print(f"{ALL_SERVERS[server].label} vs {ALL_SERVERS[base].label}: round trips/s "
                  + ", ".join(f"{wl.label} {r}" for wl, r in zip(workloads, rates, strict=True))
                  + "; server CPU per round trip (theirs / ours) "
                  + ", ".join(f"{wl.label} {c}" for wl, c in zip(workloads, costs, strict=True))
                  + "\n")
    for name, why in bench.unavailable.items():
        print(f"{name.split('_')[0]}: not available ({why})\n")

    saturated = []
    for s in measured:
        for wl in workloads:
            samples = results.samples.get((s.name, wl.name), [])
            load = median([x.load_share for x in usable(samples)])
            if load and load > LOAD_SATURATED:
                saturated.append(f"{s.label} ({wl.label})")
    if saturated:
        print(f"echo_load used over {LOAD_SATURATED:.0%} of its CPU against: "
              f"{'; '.join(saturated)}. Those figures are partly the load generator's limit: "
              "differences among them are understated (the server µs per round trip column "
              "below still separates them).\n")
    every = [x for v in results.samples.values() for x in v if x]
    contended = sum(x.contended for x in every)
    if contended:
        print(f"**{contended} of {len(every)} runs shared CPU {args.server_cpu} or "
              f"{args.client_cpu} with other work even after retries**; their figures are "
              "suspect.\n")
    print("Per-round rt/s (* = contended run), and medians of: p99 latency, server CPU time "
          "per round trip, the CPU share of the server and of echo_load, and the CPU share "
          "other processes took on the benchmark CPUs:\n")
    rows = []
    for s in measured:
        for wl in workloads:
            samples = results.samples.get((s.name, wl.name), [])
            per_round = " ".join(fmt_rate(x.rps) + ("*" if x.contended else "") if x else "FAIL"
                                 for x in samples)
            good = usable(samples)
            p99 = median([x.p99_us for x in good])
            cpu = median([x.cpu_share for x in good])
            other = median([x.foreign for x in good])
            load = median([x.load_share for x in good])
            cost = median([x.cpu_share / x.rps * 1e6 for x in good if x.rps])
            rows.append([s.label, wl.label, per_round,
                         "-" if p99 is None else f"{p99:.0f}",
                         "-" if cost is None else f"{cost:.1f}",
                         "-" if cpu is None else f"{cpu:.0%}",
                         "-" if load is None else f"{load:.0%}",
                         "-" if other is None else f"{other:.0%}"])
    print(md_table(["server", "workload", "rounds", "p99 µs", "server µs/rt", "server CPU",
                    "load CPU", "others"], rows))


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


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per run")
    parser.add_argument("--rounds", type=int, default=3)
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
                        help="before each run wait up to S seconds for the server and load CPUs "
                             "to be idle (other load skews results); 0 to not wait")
    parser.add_argument("--retries", type=int, default=2,
                        help="re-run a measurement up to this many times while it is contended "
                             "(other processes used the benchmark CPUs)")
    parser.add_argument("--cold-malloc", action="store_true",
                        help="do not warm glibc's mmap threshold in the servers (README)")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--load", type=Path, help="echo_load binary (default: build into .build/)")
    parser.add_argument("--load-src", type=Path, default=default_load_source())
    args = parser.parse_args()
    if not (0 < args.seconds <= 600 and 0 <= args.warmup <= 60 and 1 <= args.rounds <= 50):
        sys.exit("--seconds must be in (0, 600], --warmup in [0, 60], --rounds in [1, 50]")
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
            if args.verify:
                servers = run_verify(bench, servers, workloads)
            results = run_throughput(bench, servers, workloads)
            report_throughput(bench, servers, workloads, results)
    except KeyboardInterrupt:
        log("interrupted; all child processes killed")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
