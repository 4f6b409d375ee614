"""Process plumbing and method shared by the echo and HTTP benchmark runners.

Starts pinned child processes in their own process groups, waits for a server's
``READY`` line, and guarantees that every child it started is killed when the
runner exits, whether normally, on an error, on Ctrl-C or on SIGTERM/SIGHUP.
Builds the C programs (the echo load generator, the C floor servers) with the C
compiler. Also: free ports, /proc readers (CPU time, RSS, open fds, CPU busy share,
and the scheduler's nanosecond counters), the measured window of one load burst
against a server kept running (``measure_window``), what both runners' ``Bench``
share (``ServerBench``: starting servers, the interleaved rounds), the order of
bursts in a round, medians and quartiles of per-burst ratios, the pairs table, and
markdown tables. Imports only the standard library.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import selectors
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
READY_TIMEOUT = 15.0


class ServerUnavailable(Exception):
    """The server's framework could not be imported (the script said UNAVAILABLE)."""


class ServerFailed(Exception):
    """The server exited or stayed silent instead of printing READY."""


class WindowLost(ServerFailed):
    """A burst lost its measured window with its server alive: the runner woke only after
    the load generator had ended (a busy machine). Such a burst may run again."""


class BuildFailed(Exception):
    """A C program did not compile."""


class CompilerMissing(BuildFailed):
    """No C compiler to build a C program with."""


def log(msg: str) -> None:
    """A progress line on stderr (stdout is the report)."""
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    stderr_path: Path
    stdout_tail: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr_tail(self, lines: int = 15) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Children:
    """Owns every process a runner starts; ``close()`` kills whatever is still alive."""

    def __init__(self) -> None:
        self._live: list[Child] = []
        self._tmp = Path(tempfile.mkdtemp(prefix="treadle-bench-"))
        self.have_taskset = shutil.which("taskset") is not None

    def pinned(self, cmd: Sequence[str], cpu: int | None) -> list[str]:
        if cpu is None or not self.have_taskset:
            return list(cmd)
        return ["taskset", "-c", str(cpu), *cmd]

    def start(
        self,
        name: str,
        cmd: Sequence[str],
        *,
        cpu: int | None,
        stdin: int | None = subprocess.DEVNULL,
        env: dict[str, str] | None = None,
    ) -> Child:
        err_path = self._tmp / f"{name}.{len(self._live)}.{time.monotonic_ns()}.stderr"
        with open(err_path, "wb") as err:
            proc = subprocess.Popen(
                self.pinned(cmd, cpu),
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=err,
                env=env,
                start_new_session=True,  # own process group: killpg reaches its children
            )
        child = Child(name, proc, err_path)
        self._live.append(child)
        return child

    def wait_for_line(
        self, child: Child, prefixes: Sequence[str], timeout: float
    ) -> str:
        """Read child's stdout until a line starts with one of ``prefixes``; return it."""
        assert child.proc.stdout is not None
        fd = child.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ServerFailed(f"{child.name}: no {'/'.join(prefixes)} within {timeout}s")
                if not sel.select(left):
                    continue
                chunk = os.read(fd, 4096)
                if not chunk:
                    child.proc.wait(timeout=5)
                    raise ServerFailed(
                        f"{child.name}: exited with status {child.proc.returncode}"
                        f" before {'/'.join(prefixes)}\n{child.stderr_tail()}"
                    )
                buf += chunk
                while b"\n" in buf:
                    raw, buf = buf.split(b"\n", 1)
                    line = raw.decode(errors="replace").strip()
                    child.stdout_tail.append(line)
                    if line.startswith(tuple(prefixes)):
                        return line

    def start_server(
        self, name: str, cmd: Sequence[str], *, cpu: int | None, env: dict[str, str] | None = None
    ) -> Child:
        """Start a server and return once it printed READY; raise if it cannot start."""
        child = self.start(name, cmd, cpu=cpu, env=env)
        try:
            line = self.wait_for_line(child, ("READY", "UNAVAILABLE"), READY_TIMEOUT)
        except BaseException:
            self.kill(child)
            raise
        if line.startswith("UNAVAILABLE"):
            self.kill(child)
            raise ServerUnavailable(line.removeprefix("UNAVAILABLE").strip())
        return child

    def kill(self, child: Child, grace: float = 2.0) -> None:
        """SIGTERM the child's process group, then SIGKILL it if it lingers."""
        proc = child.proc
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        else:
            # The leader is gone; anything it left in its group still goes.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        if proc.stdout is not None:
            proc.stdout.close()
        if child in self._live:
            self._live.remove(child)

    def close(self) -> None:
        for child in list(reversed(self._live)):
            try:
                self.kill(child, grace=1.0)
            except Exception as exc:  # keep going: every child must be reaped
                print(f"warning: could not kill {child.name} ({child.pid}): {exc}", file=sys.stderr)
        shutil.rmtree(self._tmp, ignore_errors=True)


@contextlib.contextmanager
def children() -> Iterator[Children]:
    """A ``Children`` whose processes die with the runner, SIGTERM and SIGHUP included."""

    def on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}
    kids = Children()
    try:
        yield kids
    finally:
        # Ignore further Ctrl-C while cleaning up so cleanup itself is not cut short.
        old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            kids.close()
        finally:
            signal.signal(signal.SIGINT, old_int)
            for s, h in old.items():
                signal.signal(s, h)


def child_env(*, cold_malloc: bool = False) -> dict[str, str]:
    """Environment for servers: the repo's ``src`` first on the path, no asyncio debug.

    ``cold_malloc`` asks the servers to skip ``_serverlib.warm_malloc``.
    """
    env = dict(os.environ)
    env.pop("BENCH_COLD_MALLOC", None)
    if cold_malloc:
        env["BENCH_COLD_MALLOC"] = "1"
    src = str(REPO / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("PYTHONASYNCIODEBUG", None)
    env.pop("PYTHONDEVMODE", None)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_c(source: Path, binary: Path) -> Path:
    """Compile ``source`` into ``binary`` (``$CC``, else gcc or cc, ``-O2 -Wall``); return it.

    Skipped when ``binary`` is newer than ``source``. The compiler writes a temporary
    file that is then renamed, so a runner and a test building at once never run half
    a binary. Raises ``CompilerMissing`` or ``BuildFailed`` (with the compiler's output).
    """
    if binary.exists() and binary.stat().st_mtime >= source.stat().st_mtime:
        return binary
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if not cc:
        raise CompilerMissing(f"no C compiler to build {source.name}: install gcc "
                              "(Debian: apt-get install -y gcc) or set CC")
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_name(f".{binary.name}.{os.getpid()}")
    cmd = [cc, "-O2", "-Wall", "-o", str(partial), str(source)]
    log("building: " + shlex.join(cmd))
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        partial.unlink(missing_ok=True)
        raise BuildFailed(f"{shlex.join(cmd)} failed (status {done.returncode}):\n"
                          f"{done.stderr.strip()}")
    os.replace(partial, binary)
    return binary


# --- /proc readers -------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_work_seconds(cpus: Sequence[int]) -> float:
    """CPU seconds spent so far, on ``cpus`` together, running anything (user, system, irq)."""
    total = 0
    with open("/proc/stat") as f:
        for line in f:
            name, _, rest = line.partition(" ")
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
                user, nice, system, _idle, _iowait, irq, softirq = map(int, rest.split()[:7])
                total += user + nice + system + irq + softirq
    return total / CLK_TCK


def _cpu_jiffies(cpu: int) -> tuple[int, int]:
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                vals = [int(v) for v in line.split()[1:]]
                idle = vals[3] + vals[4]  # idle + iowait
                return sum(vals[:8]) - idle, sum(vals[:8])
    return 0, 0


def cpu_busy(cpus: Sequence[int], interval: float = 0.25) -> float:
    """Busiest share (0..1) of ``interval`` that any of ``cpus`` spent busy, per /proc/stat."""
    before = [_cpu_jiffies(c) for c in cpus]
    time.sleep(interval)
    after = [_cpu_jiffies(c) for c in cpus]
    shares = [(b1 - b0) / (t1 - t0) if t1 > t0 else 0.0
              for (b0, t0), (b1, t1) in zip(before, after, strict=True)]
    return max(shares, default=0.0)


QUIET = 0.15  # a CPU counts as idle below this busy share


def wait_quiet(cpus: Sequence[int | None], max_wait: float) -> float:
    """Wait up to ``max_wait`` s until the benchmark CPUs are idle; return the last busy share.

    Other processes on the server's or the load generator's CPU skew results; the
    runners record this figure with every sample and flag contended runs.
    """
    pinned = [c for c in cpus if c is not None]
    if not pinned:
        return 0.0
    deadline = time.monotonic() + max_wait
    while (busy := cpu_busy(pinned)) > QUIET and time.monotonic() < deadline:
        pass
    return busy


# --- bursts against servers kept running ---------------------------------------------------

FOREIGN_MAX = 0.08  # other work on the benchmark CPUs above this share marks a burst contended
WAIT_MAX = 0.05  # server or load runnable but kept off its CPU above this share: contended
# The server's counters are read this far inside the load generator's measured phase.
# At the start: the generator's clock begins only once its pinned binary is exec'd and
# connected, measured here at 7-15 ms after Popen returned on a busy machine (10 and
# 100 connections). At the end: the generator stops at the end of its phase and only
# then closes the connections, so a little slack for the runner's wake-up suffices.
WINDOW_START_GUARD = 0.05
WINDOW_END_GUARD = 0.005


@dataclass(frozen=True)
class ThreadTimes:
    """A process's scheduler counters summed over its threads, in nanoseconds."""

    ran_ns: int  # on a CPU
    waited_ns: int  # runnable, but waiting for a CPU


def thread_times(pid: int) -> ThreadTimes:
    """The kernel's ``/proc/PID/task/*/schedstat`` counters, summed (finer than clock ticks).

    Every thread counts (wrk runs two; a server may run helper threads). Raises
    ``FileNotFoundError`` when the process is gone.
    """
    ran = waited = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                fields = f.read().split()
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that ended after the listing; its time left with it
        ran += int(fields[0])
        waited += int(fields[1])
    return ThreadTimes(ran, waited)


def require_schedstat() -> None:
    """Exit with a clear message if this kernel keeps no per-task scheduler counters."""
    if not os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/schedstat"):
        sys.exit("/proc/PID/task/TID/schedstat is missing: the runners read the server's CPU "
                 "time from it; it needs a Linux kernel built with CONFIG_SCHED_INFO "
                 "(CONFIG_SCHEDSTATS selects it), as every major distribution's is")


@dataclass(frozen=True)
class Window:
    """What the server, the load generator and everything else did over a measured window.

    All shares are per wall second of the window.
    """

    seconds: float
    server_cpu: float  # the server's CPU seconds
    server_wait: float  # the server runnable but off its CPU (someone else ran there)
    load_cpu: float  # the load generator's CPU seconds (near 1: it may be the limit)
    load_wait: float
    foreign: float  # CPU time on the benchmark CPUs neither of the two accounts for

    @property
    def contended(self) -> bool:
        """Other work shared the benchmark CPUs enough to skew this window."""
        return (self.foreign > FOREIGN_MAX or self.server_wait > WAIT_MAX
                or self.load_wait > WAIT_MAX)


@dataclass(frozen=True)
class _Reading:
    at: float
    server: ThreadTimes
    load: ThreadTimes
    work: float


def _read(server_pid: int, load_pid: int, cpus: Sequence[int]) -> _Reading:
    # The server's counters first, timed on both sides: the instant is their midpoint, so
    # a runner descheduled around the read (it is not pinned) skews the window less.
    before = time.monotonic()
    server = thread_times(server_pid)
    at = (before + time.monotonic()) / 2
    return _Reading(at, server, thread_times(load_pid), cpu_work_seconds(cpus) if cpus else 0.0)


def window_between(a: _Reading, b: _Reading, cpus: Sequence[int]) -> Window:
    """The window from reading ``a`` to reading ``b``."""
    wall = b.at - a.at
    server = (b.server.ran_ns - a.server.ran_ns) / 1e9
    load = (b.load.ran_ns - a.load.ran_ns) / 1e9
    # /proc/stat counts in clock ticks (10 ms): over half a second "others" is good to a
    # few percent, enough to see a neighbour; the waits below are exact.
    foreign = max(0.0, (b.work - a.work) - server - load) if cpus else 0.0
    return Window(
        seconds=wall,
        server_cpu=server / wall,
        server_wait=(b.server.waited_ns - a.server.waited_ns) / 1e9 / wall,
        load_cpu=load / wall,
        load_wait=(b.load.waited_ns - a.load.waited_ns) / 1e9 / wall,
        foreign=foreign / wall,
    )


def measure_window(server: Child, load: Child, cpus: Sequence[int | None], start_at: float,
                   end_at: float) -> Window | None:
    """Read both processes' counters at ``start_at`` and ``end_at`` (``time.monotonic()``).

    The caller picks the instants inside the load generator's measured phase, so the
    server's start-up of the connections (accepts, first reads, buffers) and their
    teardown (EOFs, closes) stay out of its CPU per round trip. Returns None when
    either process ended before ``end_at`` (the caller reaps the load generator and
    says why); never waits past ``end_at``.
    """
    pinned = [c for c in cpus if c is not None]
    readings = []
    for when in (start_at, end_at):
        time.sleep(max(0.0, when - time.monotonic()))
        if server.proc.poll() is not None or load.proc.poll() is not None:
            return None
        try:
            readings.append(_read(server.pid, load.pid, pinned))
        except FileNotFoundError:
            return None
    return window_between(readings[0], readings[1], pinned)


def wait_idle(child: Child, *, timeout: float = 2.0, step: float = 0.01,
              idle_share: float = 0.05) -> bool:
    """Wait until ``child`` uses under ``idle_share`` of a CPU over ``step`` s; False on timeout.

    After a burst the server still closes the burst's connections (EOFs, task endings,
    frees); the next burst, against another server on the same CPU, must not share
    the CPU with that.
    """
    deadline = time.monotonic() + timeout
    last = thread_times(child.pid).ran_ns
    while time.monotonic() < deadline:
        time.sleep(step)
        now = thread_times(child.pid).ran_ns
        if now - last < idle_share * step * 1e9:
            return True
        last = now
    return False


def ensure_alive(child: Child, when: str) -> None:
    """Raise ``ServerFailed`` naming the child, its exit status and its stderr if it exited."""
    if child.proc.poll() is not None:
        raise ServerFailed(f"{child.name}: exited with status {child.proc.returncode} {when}"
                           + (f"; its stderr ends:\n{tail}" if (tail := child.stderr_tail())
                              else " (nothing on stderr)"))


def burst_order(names: Sequence[str], round_index: int,
                rng: random.Random | None = None) -> list[str]:
    """The order of the bursts in round ``round_index`` (from 0).

    Without ``rng``: as given in even rounds, reversed in odd ones, so no server always
    follows the same neighbour and a slow drift of the machine favours no one. With
    ``rng`` (seeded, the seed in the report): a fresh shuffle every round.
    """
    order = list(names)
    if rng is not None:
        rng.shuffle(order)
    elif round_index % 2:
        order.reverse()
    return order


@dataclass
class Sample:
    """One burst: the load generator's rate and the window's counters."""

    rate: float  # round trips (echo) or requests (HTTP) per second, as the generator counted
    latency_us: float  # echo: p99 of round trips; HTTP: wrk's average latency
    window: Window
    busy_before: float = 0.0  # the benchmark CPUs' busy share just before, if measured

    @property
    def server_us(self) -> float:
        """The server's CPU time per round trip (request), in microseconds."""
        return self.window.server_cpu / self.rate * 1e6 if self.rate else float("inf")

    @property
    def contended(self) -> bool:
        return self.busy_before > QUIET or self.window.contended


def with_retries(run_one: Callable[[float], Sample], *, retries: int,
                 wait: Callable[[], float], report: Callable[[Sample, str], None],
                 wait_first: bool = False) -> Sample:
    """Run a burst, and again while it is contended, up to ``retries`` more times.

    ``run_one(busy)`` runs the burst, given how busy the CPUs were just before (``wait()``,
    which waits for them to be quiet and returns that share; called before every re-run,
    and before the first run too with ``wait_first``); ``report(sample, note)`` logs each.
    The last burst is returned, contended or not: the report counts and sets aside those.
    """
    busy = wait() if wait_first else 0.0
    for attempt in range(retries + 1):
        if attempt:
            busy = wait()
        sample = run_one(busy)
        retry = sample.contended and attempt < retries
        report(sample, ("  contended" + (", retrying" if retry else ""))
               if sample.contended else "")
        if not retry:
            break
    return sample


def usable(samples: Sequence[Sample | None]) -> list[Sample]:
    """The samples to take medians of: uncontended ones if there are any, else all that ran."""
    good = [x for x in samples if x]
    return [x for x in good if not x.contended] or good


def paired(a: Sequence[Sample | None], b: Sequence[Sample | None]) -> list[tuple[Sample, Sample]]:
    """(a, b) bursts of the same round where both ran; the uncontended pairs if any."""
    pairs = [(x, y) for x, y in zip(a, b, strict=False) if x and y and x.rate and y.rate]
    return [(x, y) for x, y in pairs if not (x.contended or y.contended)] or pairs


def rate_ratios(a: Sequence[Sample | None], b: Sequence[Sample | None]) -> list[float]:
    """Per round: a's rate / b's rate (above 1: a is faster)."""
    return [x.rate / y.rate for x, y in paired(a, b)]


def cost_ratios(a: Sequence[Sample | None], b: Sequence[Sample | None]) -> list[float]:
    """Per round: b's server CPU per item / a's (above 1: a is cheaper)."""
    return [y.server_us / x.server_us for x, y in paired(a, b) if x.window.server_cpu]


def quartiles(values: Sequence[float]) -> tuple[float, float, float] | None:
    """(first quartile, median, third quartile), by linear interpolation; None if empty."""
    if not values:
        return None
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def fmt_spread(values: Sequence[float]) -> str:
    """A ratio's median with its interquartile range: ``1.52x (1.50-1.54)``."""
    q = quartiles(values)
    if q is None:
        return "-"
    return f"{q[1]:.2f}x ({q[0]:.2f}-{q[2]:.2f})"


def command_line() -> str:
    """This runner's command line as typed from the repository root, and the commit."""
    script = Path(sys.argv[0]).resolve()
    with contextlib.suppress(ValueError):
        script = script.relative_to(REPO)
    rev = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5).stdout.strip()
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return (f"python {shlex.join([str(script), *sys.argv[1:]])} ({when}"
            + (f", at {rev}" if rev else "") + ")")


# --- statistics and formatting ---------------------------------------------------------


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def fmt_rate(v: float | None) -> str:
    if v is None:
        return "-"
    if v >= 100_000:
        return f"{v / 1000:.0f}k"
    if v >= 1000:
        return f"{v / 1000:.1f}k"
    return f"{v:.0f}"


def fmt_ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(out)


def machine_summary() -> str:
    cpus = os.cpu_count()
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"Python {sys.version.split()[0]}, {cpus} CPUs ({model or 'unknown'})"


def run_to_end(kids: Children, child: Child, timeout: float) -> tuple[int, str]:
    """Wait for a child to finish within ``timeout`` (killing it if not); return (rc, stdout)."""
    try:
        out, _ = child.proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kids.kill(child)
        raise ServerFailed(f"{child.name}: still running after {timeout:.0f}s, killed") from None
    rc = child.proc.returncode
    kids.kill(child)  # closes the pipe and forgets it
    return rc, out.decode(errors="replace")


# --- what both runners' Bench share ------------------------------------------------------

BUILD_DIR = HERE / ".build"  # git-ignored; the C servers' binaries are named <runner>_<source>


class ServerSpec(Protocol):
    """A runner's server entry: ``argv`` is a script or C source (in the runner's folder)
    and its flags; the ``.c`` ones are built with ``build_c`` and run directly."""

    @property
    def name(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def family(self) -> str: ...
    @property
    def argv(self) -> tuple[str, ...]: ...


class ServerBench:
    """Starts a runner's servers and runs its interleaved rounds; remembers who is out and why.

    A runner subclasses it with its folder (``server_dir``), the servers that run on the
    compiled build's Python (``compiled_servers``), its bursts and ``describe``.
    """

    server_dir: Path = HERE
    compiled_servers: Collection[str] = ()

    def __init__(self, kids: Children, args: argparse.Namespace) -> None:
        self.kids = kids
        self.args = args
        self.cpus = [args.server_cpu, args.client_cpu]
        self.env = child_env(cold_malloc=args.cold_malloc)
        self.unavailable: dict[str, str] = {}  # server name -> why it cannot run here
        self.failed: dict[str, str] = {}  # server name -> where and how it failed

    def server_command(self, server: ServerSpec, port: int) -> tuple[list[str], dict[str, str]]:
        """The command line and environment that start ``server`` on ``port``.

        Raises ``CompilerMissing`` or ``BuildFailed`` for a C server that cannot be built.
        """
        script, *flags = server.argv
        if script.endswith(".c"):
            binary = build_c(self.server_dir / script,
                             BUILD_DIR / f"{self.server_dir.name}_{Path(script).stem}")
            return [str(binary), str(port), *flags], self.env
        python, env = PYTHON, self.env
        if server.name in self.compiled_servers:
            # Its own Python, and not the source tree's src/ on the path: the wheel's treadle.
            python = self.args.compiled_python
            env = {key: value for key, value in env.items() if key != "PYTHONPATH"}
        return [python, str(self.server_dir / script), str(port), *flags], env

    def start(self, server: ServerSpec) -> tuple[Child, int] | None:
        """Start a server on a fresh port; None (and remember why) if it is unavailable.

        ``ServerFailed`` if it cannot start (a C server that does not compile included).
        """
        if server.name in self.unavailable:
            return None
        port = free_port()
        try:
            cmd, env = self.server_command(server, port)
            child = self.kids.start_server(server.name, cmd, cpu=self.args.server_cpu, env=env)
        except (ServerUnavailable, CompilerMissing) as exc:
            self.unavailable[server.name] = str(exc)
            log(f"{server.family}: not available ({exc})")
            return None
        except BuildFailed as exc:
            raise ServerFailed(f"{server.name}: {exc}") from None
        return child, port

    def start_all(self, servers: Sequence[ServerSpec]) -> dict[str, tuple[Child, int]]:
        """Start every server once (interleaved mode); those that cannot start are reported."""
        running = {}
        for server in servers:
            try:
                started = self.start(server)
            except ServerFailed as exc:
                self.fail(server, "at start", exc)
                continue
            if started is not None:
                running[server.name] = started
        return running

    def fail(self, server: ServerSpec, where: str, exc: ServerFailed) -> None:
        self.failed[server.name] = f"{where}: {exc}"
        log(f"FAILED {server.label}, {where}: {exc}")

    def describe(self, sample: Sample) -> str:
        """One burst's figures for its progress line."""
        raise NotImplementedError

    def log_burst(self, prefix: str) -> Callable[[Sample, str], None]:
        """A ``with_retries`` reporter: one progress line per burst on stderr."""
        return lambda sample, note: log(f"{prefix} {self.describe(sample)}{note}")

    def again_if_window_lost(self, run: Callable[[], Sample], child: Child,
                             label: str) -> Sample:
        """``run()``, run again (up to ``args.retries`` times) while it raises ``WindowLost``
        and ``child`` (its server) still runs; a server that exited fails at once."""
        for attempt in range(self.args.retries + 1):
            try:
                return run()
            except WindowLost as exc:
                if child.proc.poll() is not None or attempt == self.args.retries:
                    raise
                log(f"  {label}: {exc}; the server still runs: the burst runs again")
        raise AssertionError("unreachable: the last attempt returns or raises")

    def interleave(self, servers: Sequence[ServerSpec], running: dict[str, tuple[Child, int]],
                   burst: Callable[[ServerSpec, Child, int], Sample],
                   record: Callable[[str, Sample | None], None], *,
                   rng: random.Random | None, workload: str = "") -> None:
        """One uncounted burst per running server, then ``args.rounds`` rounds of one each.

        ``burst(server, child, port)`` runs one burst; ``record(name, sample)`` keeps each
        counted one (None where it failed); ``workload`` labels the progress lines. The
        order within a round is ``burst_order``'s. A server whose burst raises
        ``ServerFailed`` is reported, killed and taken out of ``running``.
        """
        args = self.args
        where_prefix = f"{workload}, " if workload else ""
        name_column = f"{workload:<12} " if workload else ""

        def timed_or_failed(server: ServerSpec, where: str, counted: bool) -> Sample | None:
            child, port = running[server.name]

            def one_burst() -> Sample:
                return self.again_if_window_lost(lambda: burst(server, child, port), child,
                                                 server.label)

            try:
                if not counted:
                    return one_burst()
                # Each burst's own counters (others' CPU time, the two processes' waits)
                # say whether it was contended; how busy the CPUs were before the round is
                # only waited out (wait_quiet), not held against the round's bursts.
                return with_retries(
                    lambda _busy: one_burst(), retries=args.retries,
                    wait=lambda: wait_quiet(self.cpus, args.quiet_wait),
                    report=self.log_burst(f"[{where}] {name_column}{server.label:<26}"))
            except ServerFailed as exc:
                self.fail(server, where_prefix + where, exc)
                self.kids.kill(running.pop(server.name)[0])
                return None

        by_name = {s.name: s for s in servers}
        # One uncounted burst each: the first connections grow buffers and caches.
        for server in servers:
            if server.name in running:
                timed_or_failed(server, "warm-up burst", counted=False)
        for rnd in range(args.rounds):
            busy = wait_quiet(self.cpus, args.quiet_wait)
            if busy > QUIET:
                log(f"round {rnd + 1}: the benchmark CPUs still {busy:.0%} busy after "
                    f"{args.quiet_wait:g} s")
            for name in burst_order([s.name for s in servers if s.name in running], rnd, rng):
                record(name, timed_or_failed(by_name[name], f"round {rnd + 1}/{args.rounds}",
                                             counted=True))


def pairs_table(comparisons: Sequence[tuple[str, str]], labels: Mapping[str, str],
                of: Callable[[str, str], Sequence[Sample | None]],
                workloads: Sequence[tuple[str, str]], unit: str) -> str:
    """The report's "Pairs" section for the ``comparisons`` whose servers both ran; "" if none.

    ``labels``: the measured servers' labels by name; ``of(server, workload)``: its bursts;
    ``workloads``: (name, label) of each, a column when there are several (the HTTP runner
    has one, ``("", "")``); ``unit``: what one item is (``rt``, ``req``).
    """
    by_workload = len(workloads) > 1 or any(label for _, label in workloads)
    rows = []
    for a, b in comparisons:
        if a not in labels or b not in labels:
            continue
        for wl_name, wl_label in workloads:
            mine, theirs = of(a, wl_name), of(b, wl_name)
            rows.append([f"{labels[a]} vs {labels[b]}", *([wl_label] if by_workload else []),
                         fmt_spread(rate_ratios(mine, theirs)),
                         fmt_spread(cost_ratios(mine, theirs))])
    if not rows:
        return ""
    header = ["comparison", *(["workload"] if by_workload else []), f"{unit}/s ratio",
              f"server CPU/{unit} ratio (theirs / ours)"]
    return ("Pairs (median of per-round ratios, interquartile range in brackets):\n\n"
            + md_table(header, rows) + "\n")
