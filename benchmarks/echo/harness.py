"""Process plumbing shared by the echo and HTTP benchmark runners.

Starts pinned child processes in their own process groups, waits for a server's
``READY`` line, and guarantees that every child it started is killed when the
runner exits, whether normally, on an error, on Ctrl-C or on SIGTERM/SIGHUP.
Also: free ports, /proc readers (CPU time, RSS, open fds, CPU busy share),
medians and markdown tables.
"""

from __future__ import annotations

import contextlib
import os
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
READY_TIMEOUT = 15.0


class ServerUnavailable(Exception):
    """The server's framework could not be imported (the script said UNAVAILABLE)."""


class ServerFailed(Exception):
    """The server exited or stayed silent instead of printing READY."""


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


# --- /proc readers -------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


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


def reaped_children_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class CpuMeter:
    """Who used the benchmark CPUs while the load ran: the server, the load, or others.

    Wrap the load generator's whole life (start to reaped) in ``with meter:``.
    ``server_share`` is the server's CPU seconds per wall second, ``load_share``
    the load generator's (near 100 % means the load, not the server, may be the
    limit); ``foreign_share`` is CPU time on the benchmark CPUs that neither the server
    nor the (reaped) load generator accounts for, per wall second: other
    processes, or kernel work not charged to either. A few percent is normal;
    tens of percent mean a neighbour ran on the benchmark CPUs.
    """

    def __init__(self, cpus: Sequence[int | None], server_pid: int) -> None:
        self.cpus = [c for c in cpus if c is not None]
        self.pid = server_pid
        self.server_share = self.load_share = self.foreign_share = 0.0

    def __enter__(self) -> CpuMeter:
        self._t = time.monotonic()
        self._work = cpu_work_seconds(self.cpus)
        self._server = cpu_seconds(self.pid)
        self._reaped = reaped_children_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.monotonic() - self._t
        if wall <= 0 or exc[0] is not None:
            return
        with contextlib.suppress(OSError):
            server = cpu_seconds(self.pid) - self._server
            load = reaped_children_seconds() - self._reaped
            work = cpu_work_seconds(self.cpus) - self._work if self.cpus else server + load
            self.server_share = server / wall
            self.load_share = load / wall
            self.foreign_share = max(0.0, work - server - load) / wall


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
