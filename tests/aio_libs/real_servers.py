"""Real servers for the ecosystem tests: redis-server and PostgreSQL on 127.0.0.1.

Each server runs in its own temporary directory on a free port, in its own process
group; startup waits are bounded, and stopping it kills the whole group and removes the
directory, so no process or file outlives the test session. Plain blocking code (no
event loop): the fixtures use it before and after the loops under test run.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
STARTUP_LIMIT = 30.0  # seconds a server may take to accept connections
SHUTDOWN_LIMIT = 10.0  # seconds a server may take to exit once asked to
# A server that fails to bind its port (another process took it between our probe and
# its bind) is started again on another port, this many times in all.
BIND_ATTEMPTS = 3


class ServerStartError(RuntimeError):
    """A server did not come up within its bounded wait; the message has its log's tail."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def accepts_connections(port: int) -> bool:
    """Whether something on 127.0.0.1 accepts a TCP connection on ``port`` now."""
    with socket.socket() as probe:
        probe.settimeout(1.0)
        return probe.connect_ex((HOST, port)) == 0


def log_tail(log: Path, lines: int = 20) -> str:
    """The last lines of a server's log, for an error message."""
    try:
        text = log.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(text.splitlines()[-lines:])


def wait_until_ready(
    process: subprocess.Popen[bytes], log: Path, name: str, ready: Callable[[], bool]
) -> None:
    """Poll ``ready()`` until it is true; fail if ``process`` exits or the limit passes."""
    deadline = time.monotonic() + STARTUP_LIMIT
    while not ready():
        if process.poll() is not None:
            raise ServerStartError(
                f"{name} exited with status {process.returncode} before accepting "
                f"connections; its log ends:\n{log_tail(log)}"
            )
        if time.monotonic() > deadline:
            raise ServerStartError(
                f"{name} did not accept connections within {STARTUP_LIMIT:.0f} s; its log "
                f"ends:\n{log_tail(log)}"
            )
        time.sleep(0.05)  # polling a child process's readiness, not synchronising tests


def stop_process_group(process: subprocess.Popen[bytes], polite: signal.Signals) -> None:
    """Ask a server (leader of its own process group) to exit, then kill what remains."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, polite)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(SHUTDOWN_LIMIT)
    # Children the leader forked (PostgreSQL's backends) share its group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(SHUTDOWN_LIMIT)


def find_redis_server() -> str | None:
    """The redis-server binary on PATH (Debian package redis-server), or None."""
    return shutil.which("redis-server")


def find_postgres_bin_dir() -> Path | None:
    """A directory holding both ``initdb`` and ``postgres``, or None.

    PATH first (a link like /usr/local/bin/postgres counts); then Debian's versioned
    /usr/lib/postgresql/<version>/bin, the newest version first.
    """
    on_path = [shutil.which(name) for name in ("initdb", "postgres")]
    if all(on_path):
        directories = {Path(path).resolve().parent for path in on_path if path}
        if len(directories) == 1:
            return directories.pop()
    root = Path("/usr/lib/postgresql")
    versions = [d for d in root.glob("*/bin") if d.parent.name.replace(".", "").isdigit()]
    versions.sort(key=lambda d: [int(part) for part in d.parent.name.split(".")], reverse=True)
    for bin_dir in versions:
        if (bin_dir / "initdb").exists() and (bin_dir / "postgres").exists():
            return bin_dir
    return None


@contextlib.contextmanager
def temporary_directory(prefix: str, owner: pwd.struct_passwd | None = None) -> Iterator[Path]:
    """A fresh directory (owned by ``owner`` if given), removed with all it holds after."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        if owner is not None:
            os.chown(path, owner.pw_uid, owner.pw_gid)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True)
class RedisServer:
    """A running redis-server: connect to ``url``."""

    port: int

    @property
    def url(self) -> str:
        """The redis:// URL of database 0."""
        return f"redis://{HOST}:{self.port}/0"

    def flush(self) -> None:
        """Empty every database, so each test starts from nothing."""
        with socket.create_connection((HOST, self.port), timeout=5) as connection:
            connection.sendall(b"FLUSHALL\r\n")
            reply = connection.recv(64)
        if reply != b"+OK\r\n":
            raise RuntimeError(f"redis-server answered FLUSHALL with {reply!r}")


def redis_answers_ping(port: int) -> bool:
    """Whether a redis-server on ``port`` answers PING (it has loaded and is serving)."""
    try:
        with socket.create_connection((HOST, port), timeout=1) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(64) == b"+PONG\r\n"
    except OSError:
        return False


@contextlib.contextmanager
def running_redis(binary: str) -> Iterator[RedisServer]:
    """A redis-server without persistence on a free port, stopped and cleaned up after."""
    with temporary_directory("treadle-redis-") as directory:
        for attempt in range(1, BIND_ATTEMPTS + 1):
            port = free_port()
            log = directory / f"redis-{attempt}.log"
            command = [
                binary,
                "--port", str(port),
                "--bind", HOST,
                "--save", "",
                "--appendonly", "no",
                "--dir", str(directory),
                "--logfile", str(log),
                "--daemonize", "no",
            ]  # fmt: skip
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
            try:
                try:
                    wait_until_ready(
                        process, log, "redis-server", functools.partial(redis_answers_ping, port)
                    )
                except ServerStartError:
                    if attempt < BIND_ATTEMPTS and "Address already in use" in log_tail(log):
                        continue
                    raise
                yield RedisServer(port)
                return
            finally:
                stop_process_group(process, signal.SIGTERM)


@dataclass(frozen=True)
class PostgresServer:
    """A running PostgreSQL: user ``postgres`` (trust auth), database ``postgres``."""

    port: int

    @property
    def dsn(self) -> str:
        """The postgresql:// URL to connect with."""
        return f"postgresql://postgres@{HOST}:{self.port}/postgres"


def unprivileged_account() -> pwd.struct_passwd | None:
    """The account to run PostgreSQL as, or None to run it as ourselves.

    PostgreSQL refuses to run as root: as root, use the ``postgres`` account (Debian's
    package makes it), else ``nobody``.
    """
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise ServerStartError("running as root and there is no 'postgres' or 'nobody' account")


def postgres_is_ready(data: Path, port: int) -> bool:
    """Whether the postmaster reports itself ready (postmaster.pid) and accepts on ``port``.

    Since PostgreSQL 10 the pid file's eighth line is the postmaster's state; a TCP
    connection alone can reach it while it still answers "starting up".
    """
    try:
        lines = (data / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, PermissionError):
        return False
    return len(lines) >= 8 and lines[7].strip() == "ready" and accepts_connections(port)


@contextlib.contextmanager
def running_postgres(bin_dir: Path) -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster on a free port, stopped and removed after."""
    account = unprivileged_account()
    as_account: dict[str, int] = (
        {} if account is None else {"user": account.pw_uid, "group": account.pw_gid}
    )
    with temporary_directory("treadle-postgres-", owner=account) as directory:
        data = directory / "data"
        environment = {"PATH": os.environ.get("PATH", ""), "HOME": str(directory), "LC_ALL": "C"}
        initdb = subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
             "-E", "UTF8", "--no-locale", "--no-sync"],
            cwd=directory, env=environment, capture_output=True, timeout=120,
            extra_groups=[] if account else None, **as_account,
        )  # fmt: skip
        if initdb.returncode != 0:
            raise ServerStartError(
                f"initdb failed with status {initdb.returncode}:\n"
                f"{initdb.stderr.decode(errors='replace')}"
            )
        for attempt in range(1, BIND_ATTEMPTS + 1):
            port = free_port()
            log = directory / f"postgres-{attempt}.log"
            with open(log, "wb") as log_file:
                process = subprocess.Popen(
                    [str(bin_dir / "postgres"), "-D", str(data), "-k", str(directory),
                     "-h", HOST, "-p", str(port), "-c", "fsync=off",
                     "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
                    cwd=directory, env=environment, stdin=subprocess.DEVNULL,
                    stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
                    extra_groups=[] if account else None, **as_account,
                )  # fmt: skip
            try:
                try:
                    wait_until_ready(
                        process, log, "postgres", functools.partial(postgres_is_ready, data, port)
                    )
                except ServerStartError:
                    in_use = re.search(r"could not bind|Address already in use", log_tail(log))
                    if attempt < BIND_ATTEMPTS and in_use:
                        continue
                    raise
                yield PostgresServer(port)
                return
            finally:
                # SIGINT is PostgreSQL's "fast shutdown": it ends sessions and exits.
                stop_process_group(process, signal.SIGINT)
