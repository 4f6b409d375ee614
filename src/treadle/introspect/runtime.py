"""Switching introspection on: the loop hook, the environment variables, dumps and the watchdog.

Importing ``treadle`` adds one hook to ``treadle.loop.run_hooks``, run as each loop
starts and stops; it keeps the set of running loops and does only what was asked for:

* ``TREADLE_INTROSPECT=1``: serve ``treadle ps``/``pstree`` on a Unix socket
  (``server.py``) and note each task's birth, for its age;
* ``TREADLE_DUMP_ON=SIGUSR1`` (any signal name): that signal dumps the task tree on
  stderr, without stopping the program;
* ``TREADLE_TRACE=path``: write a Perfetto trace of every loop (``trace.py``);
* a loop in debug mode (``treadle.run(..., debug=True)``) gets a watchdog thread that
  dumps the tree, naming the callback, when the loop is stuck longer than
  ``TREADLE_BLOCKED_AFTER`` seconds (default 1).

Unasked, nothing is opened: no socket, no thread, no signal handler. Introspection layer.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable
from types import FrameType
from typing import IO, TYPE_CHECKING, Any

from treadle.core.tasks import Task
from treadle.introspect.snapshot import (
    Snapshot,
    format_tree,
    note_birth,
    take_blocked_snapshot,
    take_snapshot,
)

if TYPE_CHECKING:
    from treadle.introspect.trace import Tracer
    from treadle.loop import EventLoop

__all__ = [
    "active_tracer",
    "dump_tasks",
    "on_loop_run",
    "process_snapshot",
    "reread_settings",
    "running_loops",
    "settings",
    "task_created",
]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


class Settings:
    """What the environment asked for, read once (at import) and re-readable by tests."""

    def __init__(self, environ: dict[str, str] | os._Environ[str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.serve = _flag(env, "TREADLE_INTROSPECT")
        self.dump_signal = _signal_number(env.get("TREADLE_DUMP_ON", ""))
        self.trace_path = env.get("TREADLE_TRACE") or None
        blocked = env.get("TREADLE_BLOCKED_AFTER", "1")
        try:
            self.blocked_after = float(blocked)
        except ValueError:
            raise ValueError(
                f"TREADLE_BLOCKED_AFTER must be a number of seconds, got {blocked!r}"
            ) from None
        if not self.blocked_after > 0:
            raise ValueError(f"TREADLE_BLOCKED_AFTER must be above zero, got {blocked!r}")


def _flag(env: Any, name: str) -> bool:
    value = env.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name} must be 1 or 0 (or true/false), got {value!r}")


def _signal_number(text: str) -> int | None:
    text = text.strip().upper()
    if not text:
        return None
    name = text if text.startswith("SIG") else "SIG" + text
    number = getattr(signal, name, None)
    if not isinstance(number, int) or name in ("SIGKILL", "SIGSTOP"):
        raise ValueError(
            f"TREADLE_DUMP_ON must name a signal that can be caught, such as SIGUSR1; got {text!r}"
        )
    return int(number)


_settings: Settings | None = None


def settings() -> Settings:
    """The environment's settings, read on first use (a bad value raises then, clearly)."""
    global _settings
    if _settings is None:
        _settings = Settings()
    return _settings


def reread_settings() -> Settings:
    """Read the environment again (for tests that change it)."""
    global _settings
    _settings = None
    return settings()


# Every loop in a run_forever() now, in this process.
running_loops: weakref.WeakSet[EventLoop] = weakref.WeakSet()

# The tracer of TREADLE_TRACE, or of an active ``with treadle.trace():``.
active_tracer: Tracer | None = None

_signal_installed = False


def _note_birth(task: Task[Any], _now: Callable[[], float] = time.monotonic) -> None:
    task._born = _now()


def task_created(task: Any) -> None:
    """The loops' task observer while introspection or tracing is on."""
    if _settings is not None and _settings.serve:
        note_birth(task)
    if active_tracer is not None:
        active_tracer.task_created(task)


def on_loop_run(loop: EventLoop) -> Callable[[], object] | None:
    """The hook in ``treadle.loop.run_hooks``: called as ``loop`` starts running."""
    global active_tracer
    asked = settings()
    running_loops.add(loop)
    if asked.serve:
        from treadle.introspect.server import ensure_serving

        ensure_serving()
    if asked.dump_signal is not None:
        _install_dump_signal(asked.dump_signal)
    if asked.trace_path is not None and active_tracer is None:
        from treadle.introspect.trace import start_env_tracer

        active_tracer = start_env_tracer(asked.trace_path)
    tracer = active_tracer
    if tracer is not None:
        loop._task_observer = task_created
    elif asked.serve:
        loop._task_observer = _note_birth  # the whole of it, on every spawn: keep it short
    if asked.serve:
        # Tasks made before the loop first ran (treadle.run's main task) count from now.
        for task in list(loop._tasks):
            note_birth(task, only_if_unknown=True)
    if tracer is not None:
        tracer.attach(loop)
    watchdog = _Watchdog(loop, asked.blocked_after) if loop.get_debug() else None

    def stopped() -> None:
        running_loops.discard(loop)
        if watchdog is not None:
            watchdog.stop()
        if tracer is not None:
            tracer.detach(loop)
        loop._task_observer = None

    return stopped


# --- snapshots of the whole process ----------------------------------------------------


def _snapshot_of(loop: EventLoop, timeout: float) -> Snapshot:
    """``loop``'s snapshot: taken on its thread, or reported blocked after ``timeout``."""
    if loop._thread_id == threading.get_ident():
        # Asked from the loop's own thread (an API call or a signal): take it here.
        return take_snapshot(loop)
    answered = threading.Event()
    result: list[Snapshot] = []

    def take() -> None:
        result.append(take_snapshot(loop))
        answered.set()

    started = time.monotonic()
    try:
        loop.call_soon_threadsafe(take)
    except RuntimeError:  # closed meanwhile: nothing left to show
        return {"loop": repr(loop), "thread": "-", "thread_id": None, "blocked": None, "tasks": []}
    if answered.wait(timeout):
        return result[0]
    return take_blocked_snapshot(loop, time.monotonic() - started)


def process_snapshot(timeout: float = 1.0) -> Snapshot:
    """Every running loop of this process, each as ``take_snapshot`` gives it.

    A loop that does not answer within ``timeout`` seconds is reported as blocked,
    with the callback it is stuck in.
    """
    loops = [loop for loop in list(running_loops) if loop.is_running()]
    return {
        "pid": os.getpid(),
        "argv": sys.argv,
        "loops": [_snapshot_of(loop, timeout) for loop in loops],
    }


def dump_tasks(file: IO[str] | None = None, *, timeout: float = 1.0) -> None:
    """Write the task tree of every running loop to ``file`` (stderr by default).

    The program goes on running; from any thread, or from a signal handler.
    """
    out = sys.stderr if file is None else file
    out.write(format_tree(process_snapshot(timeout)))
    out.flush()


def _on_dump_signal(signum: int, frame: FrameType | None) -> None:
    dump_tasks()


def _install_dump_signal(signum: int) -> None:
    global _signal_installed
    if _signal_installed or threading.current_thread() is not threading.main_thread():
        return
    current = signal.getsignal(signum)
    if current not in (signal.SIG_DFL, None) and current is not _on_dump_signal:
        print(
            f"treadle: TREADLE_DUMP_ON: signal {signal.Signals(signum).name} already has a "
            "handler; the task tree will not be dumped on it",
            file=sys.stderr,
        )
        _signal_installed = True
        return
    signal.signal(signum, _on_dump_signal)
    _signal_installed = True


class _Watchdog:
    """Debug mode's: dumps the task tree when the loop is stuck in one callback too long.

    Every ``threshold`` seconds it asks the loop, with ``call_soon_threadsafe``, to
    answer; an idle loop answers at once (the request wakes its poller), a stuck one
    does not, and then it is reported once, with the callback it is stuck in.
    """

    def __init__(self, loop: EventLoop, threshold: float) -> None:
        self.loop = loop
        self.threshold = threshold
        self._stopping = threading.Event()
        # Set by the loop when it answers the latest request (or by stop()).
        self._answered = threading.Event()
        self._thread = threading.Thread(
            target=self._watch, name=f"treadle-watchdog-{id(loop):#x}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._answered.set()  # whatever it waits for, it need not any more
        self._thread.join()

    def _watch(self) -> None:
        loop = self.loop
        while not self._stopping.wait(self.threshold / 2):
            answered = self._answered = threading.Event()
            if self._stopping.is_set():
                return
            started = time.monotonic()
            try:
                loop.call_soon_threadsafe(answered.set)
            except RuntimeError:  # the loop closed
                return
            if answered.wait(self.threshold) or self._stopping.is_set():
                continue
            snapshot = take_blocked_snapshot(loop, time.monotonic() - started)
            sys.stderr.write(
                format_tree({"pid": os.getpid(), "argv": sys.argv, "loops": [snapshot]})
            )
            sys.stderr.flush()
            while not answered.wait(0.05) and not self._stopping.is_set():
                pass
