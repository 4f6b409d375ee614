"""``treadle ps``/``pstree`` on real programs in subprocesses, stuck in known places.

Each program (tests/introspect_programs.py) runs with TREADLE_INTROSPECT=1, natively or
as asyncio code on treadle.aio, and prints "ready" once its tasks are stuck; the test
then asks it from another process, as a user would, and checks the frames, the awaited
objects and who awaits whom. Also: only the program's own user gets in, and a program
that never asked opens nothing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from treadle.introspect import server

ROOT = Path(__file__).resolve().parents[1]
PROGRAMS = ROOT / "tests" / "introspect_programs.py"
READY_TIMEOUT = 30.0
# Where nap_forever() is suspended in the programs' source.
NAP_LINE = PROGRAMS.read_text().splitlines().index("    await lib.sleep(3600)") + 1


class Program:
    """A scenario running in a subprocess, started and read until it says "ready"."""

    def __init__(self, env: dict[str, str], scenario: str, flavour: str = "native") -> None:
        self.env = env
        self.proc = subprocess.Popen(
            [sys.executable, str(PROGRAMS), scenario, flavour],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # blocks until the program prints; the test's timeout guards
            self.lines.append(line.strip())
            if line.strip() == "ready":
                break
        else:
            raise AssertionError(f"{scenario} ended before 'ready': {self.stop()}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.kill()
        _, err = self.proc.communicate(timeout=READY_TIMEOUT)
        return err


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment of the programs and of ``treadle ps``: a runtime directory of
    this test's own, and introspection on."""
    runtime_dir = tmp_path / "run"
    runtime_dir.mkdir(mode=0o700)
    return {
        **os.environ,
        "XDG_RUNTIME_DIR": str(runtime_dir),
        "TREADLE_INTROSPECT": "1",
        "PYTHONPATH": str(ROOT / "src"),
    }


@pytest.fixture
def programs() -> Iterator[list[Program]]:
    """The programs to stop after the test."""
    started: list[Program] = []
    yield started
    for program in started:
        program.stop()


@pytest.fixture
def start(env: dict[str, str], programs: list[Program]) -> Callable[..., Program]:
    """``start(scenario, flavour="native", **env_changes)``: a Program in ``env`` (with
    the changes), stopped after the test."""

    def start_program(scenario: str, flavour: str = "native", **env_changes: str) -> Program:
        program = Program({**env, **env_changes}, scenario, flavour)
        programs.append(program)
        return program

    return start_program


@pytest.fixture(params=["native", "aio"])
def flavour(request: pytest.FixtureRequest) -> str:
    """How the program is written: treadle's own API, or asyncio code on treadle.aio."""
    return str(request.param)


def treadle_cli(
    env: dict[str, str], *args: str, user: str | None = None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "treadle", *args]
    if user is not None:
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def tasks_of(program: Program) -> dict[str, dict[str, Any]]:
    """The program's tasks by name, as ``treadle ps --json`` reports them (one loop)."""
    result = treadle_cli(program.env, "ps", "--json", str(program.pid))
    assert result.returncode == 0, result.stderr
    [loop] = json.loads(result.stdout)["loops"]
    return {task["name"]: task for task in loop["tasks"]}


def functions(task: dict[str, Any]) -> list[str]:
    return [entry["function"] for entry in task["stack"]]


def test_a_lock_held_by_a_sleeping_task(
    env: dict[str, str], start: Callable[..., Program], flavour: str
) -> None:
    program = start("lock", flavour)
    tasks = tasks_of(program)
    holder, waiter, main = tasks["holder"], tasks["waiter"], tasks["Task-1"]
    library = "treadle.locks" if flavour == "native" else "asyncio.locks"
    assert waiter["waiting_on"].startswith(f"Lock.acquire on <{library}.Lock object")
    assert "[locked, waiters:1]" in waiter["waiting_on"]
    assert functions(waiter)[:3] == [
        "want_the_lock",
        "_ContextManagerMixin.__aenter__",
        "Lock.acquire",
    ]
    assert holder["waiting_on"].startswith("sleep(3600) until loop time")
    assert functions(holder)[:3] == ["hold_the_lock", "nap_forever", "sleep"]
    assert holder["location"].endswith(f"introspect_programs.py:{NAP_LINE} in nap_forever")
    assert holder["awaited_by"] == waiter["awaited_by"] == [main["id"]]
    assert main["waiting_on"] == "gather of 2: 2 pending (holder, waiter)"
    if flavour == "native":
        assert holder["parent"] == waiter["parent"] == main["id"]
        assert holder["age"] is not None and holder["age"] >= 0

    table = treadle_cli(env, "ps", str(program.pid))
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()[1:]
    assert header.split() == ["ID", "NAME", "STATE", "AGE", "WAITING", "ON", "LOCATION"]
    assert any(
        row.split()[1:3] == ["waiter", "waiting"] and "Lock.acquire on" in row for row in rows
    )


def test_a_read_from_a_silent_peer_names_the_peer(
    start: Callable[..., Program], flavour: str
) -> None:
    program = start("silent-peer", flavour)
    port = next(line.split()[1] for line in program.lines if line.startswith("port "))
    tasks = tasks_of(program)
    reader = tasks["reader"]
    assert reader["waiting_on"] == f"read from stream, peer 127.0.0.1:{port}"
    assert functions(reader)[:2] == ["read_from_silent_peer", "StreamReader.read"]
    assert tasks["Task-1"]["waiting_on"] == "task 'reader'"
    assert reader["awaited_by"] == [tasks["Task-1"]["id"]]


def test_a_task_group_waiting_on_its_children(
    env: dict[str, str], start: Callable[..., Program], flavour: str
) -> None:
    program = start("taskgroup", flavour)
    tasks = tasks_of(program)
    main = tasks["Task-1"]
    assert main["waiting_on"] == "TaskGroup: 2 task(s) to finish (child-1, child-2)"
    assert "TaskGroup.__aexit__" in functions(main)
    for name in ("child-1", "child-2"):
        assert tasks[name]["awaited_by"] == [main["id"]]
        assert functions(tasks[name])[:2] == ["child", "nap_forever"]

    tree = treadle_cli(env, "pstree", str(program.pid))
    assert tree.returncode == 0, tree.stderr
    lines = tree.stdout.splitlines()
    assert lines[1].startswith("Task-1 [waiting, ") and lines[1].endswith(
        "]: TaskGroup: 2 task(s) to finish (child-1, child-2)"
    )
    child_lines = [line for line in lines if line.lstrip("├└─ ").startswith("child-")]
    assert [line.split()[0] for line in child_lines] == ["├──", "└──"]
    assert any(
        line.strip().startswith(f"nap_forever (introspect_programs.py:{NAP_LINE})")
        for line in lines
    )


def test_a_generator_coroutine_in_yield_from(start: Callable[..., Program]) -> None:
    program = start("generator")
    tasks = tasks_of(program)
    task = tasks["gen-task"]
    assert functions(task) == ["generator_outer", "generator_leaf", "Future.__await__"]
    assert task["waiting_on"] == "<Future pending>"
    assert task["parent"] == tasks["Task-1"]["id"]
    assert task["awaited_by"] == [tasks["Task-1"]["id"]]


def test_a_blocked_loop_is_reported_blocked_not_waited_for(
    env: dict[str, str], start: Callable[..., Program], flavour: str
) -> None:
    program = start("blocked", flavour)
    result = treadle_cli(env, "ps", "--timeout", "0.5", str(program.pid))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].startswith("LOOP BLOCKED for at least 0.5 s in callback block_the_loop()")
    assert any(line.strip().startswith("block_the_loop (") for line in lines)
    assert any("Task-1" in line and "sleep(3600)" in line for line in lines)


def test_the_socket_is_private_to_the_user(
    env: dict[str, str], start: Callable[..., Program]
) -> None:
    program = start("lock")
    directory = Path(env["XDG_RUNTIME_DIR"]) / "treadle"
    path = directory / f"{program.pid}.sock"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_uid == directory.stat().st_uid == os.getuid()


@pytest.mark.skipif(
    os.getuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv"
)
def test_another_user_cannot_get_in(env: dict[str, str], programs: list[Program]) -> None:
    probe = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", ""],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"user 65534 cannot run this Python: {probe.stderr.strip()}")
    # A runtime directory the other user can walk up to (pytest's own tree is 0700).
    top = Path(tempfile.mkdtemp(prefix="treadle-test-"))
    os.chmod(top, 0o711)
    runtime_dir = top / "run"
    runtime_dir.mkdir(mode=0o711)
    env = {**env, "XDG_RUNTIME_DIR": str(runtime_dir)}
    try:
        program = Program(env, "lock")
        programs.append(program)
        check_other_user_is_refused(env, runtime_dir, program)
    finally:
        programs.pop().stop()
        shutil.rmtree(top)


def check_other_user_is_refused(env: dict[str, str], runtime_dir: Path, program: Program) -> None:
    # The directory (0700) keeps them out ...
    refused = treadle_cli(env, "ps", str(program.pid), user="65534")
    assert refused.returncode == 1
    assert "not allowed to reach" in refused.stderr
    # ... and were it opened by mistake, so do the socket's mode and then SO_PEERCRED.
    directory = runtime_dir / "treadle"
    socket_file = directory / f"{program.pid}.sock"
    os.chmod(directory, 0o755)
    refused = treadle_cli(env, "ps", str(program.pid), user="65534")
    assert refused.returncode == 1
    assert "not allowed to connect" in refused.stderr
    os.chmod(socket_file, 0o777)
    refused = treadle_cli(env, "ps", str(program.pid), user="65534")
    assert refused.returncode == 1
    assert "refused: not the same user" in refused.stderr


def test_the_server_refuses_a_peer_of_another_uid(monkeypatch: pytest.MonkeyPatch) -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX)
    with ours, theirs:
        assert server.peer_uid(ours) == os.getuid()
        monkeypatch.setattr(server, "peer_uid", lambda conn: os.getuid() + 1)
        # The other user's request: read and discarded, never parsed.
        theirs.sendall(b'{"timeout": "not even a number"}\n')
        theirs.shutdown(socket.SHUT_WR)
        server._Server._answer(None, ours)  # type: ignore[arg-type]
        assert theirs.recv(1000) == b'{"error": "refused: not the same user"}\n'
        assert theirs.recv(1000) == b""  # the server ended its side: no reset


def test_a_program_that_never_asked_opens_nothing(
    env: dict[str, str], start: Callable[..., Program]
) -> None:
    program = start("quiet", TREADLE_INTROSPECT="0")
    assert program.lines[:2] == ["threads MainThread", "unix sockets 2"]  # the loop's wake-up pair
    assert not (Path(env["XDG_RUNTIME_DIR"]) / "treadle").exists()
    asked = start("quiet")
    assert asked.lines[:2] == ["threads MainThread,treadle-introspect", "unix sockets 3"]


def test_ps_explains_a_program_that_is_not_serving(
    env: dict[str, str], start: Callable[..., Program]
) -> None:
    program = start("quiet", TREADLE_INTROSPECT="0")
    result = treadle_cli(env, "ps", str(program.pid))
    assert result.returncode == 1
    assert "is not serving introspection" in result.stderr
    assert "start it with TREADLE_INTROSPECT=1" in result.stderr


def test_ps_without_a_pid_lists_the_programs(
    env: dict[str, str], start: Callable[..., Program]
) -> None:
    program = start("lock")
    result = treadle_cli(env, "ps")
    assert result.returncode == 0
    assert result.stdout.split() == [str(program.pid)]


def test_dump_on_a_signal_writes_the_tree_and_goes_on(start: Callable[..., Program]) -> None:
    program = start("dump", TREADLE_INTROSPECT="0", TREADLE_DUMP_ON="SIGUSR1")
    os.kill(program.pid, signal.SIGUSR1)
    assert program.proc.stdin is not None
    program.proc.stdin.write("done\n")
    program.proc.stdin.flush()
    assert program.proc.wait(timeout=READY_TIMEOUT) == 0, "the dump must not stop the program"
    err = program.stop()
    assert "holder [waiting" in err and "sleep(3600)" in err
    assert "hold_the_lock (introspect_programs.py:" in err


def test_a_bad_dump_signal_is_a_clear_error(env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, str(PROGRAMS), "quiet"],
        env={**env, "TREADLE_DUMP_ON": "SIGNOPE"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "TREADLE_DUMP_ON must name a signal that can be caught, such as SIGUSR1" in result.stderr


def test_debug_mode_watchdog_names_the_blocking_step(env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, str(PROGRAMS), "watchdog"],
        env={**env, "TREADLE_INTROSPECT": "0", "TREADLE_BLOCKED_AFTER": "0.3"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["unblocked"]
    assert re.search(
        r"LOOP BLOCKED for at least \d+\.\d s in callback Task\._wakeup\(", result.stderr
    )
    assert "watchdog_scenario (" in result.stderr


def test_debug_mode_watchdog_stops_at_once_even_while_waiting_for_an_answer() -> None:
    import time

    import treadle
    from treadle.introspect import runtime

    loop = treadle.new_event_loop()  # never runs: it will never answer the watchdog
    try:
        # It asks after 1 s (a fresh Event to be answered on) and would wait for the answer
        # until 3 s. White-box: the test waits for the question, not for a guessed time,
        # so a busy machine that starts the thread late still stops it mid-wait.
        watchdog = runtime._Watchdog(loop, 2.0)
        not_asked_yet = watchdog._answered
        deadline = time.monotonic() + 30
        while watchdog._answered is not_asked_yet:
            assert time.monotonic() < deadline, "the watchdog never asked the loop"
            time.sleep(0.01)
        started = time.monotonic()
        watchdog.stop()
        stopped_after = time.monotonic() - started
        assert stopped_after < 1.0, f"stop() waited {stopped_after:.2f} s for the answer"
    finally:
        loop.close()
