"""Traces you can open in Perfetto (ui.perfetto.dev) or chrome://tracing.

``with treadle.trace("out.json"):`` (or ``TREADLE_TRACE=out.json`` for a whole
program; ``{pid}`` in the path becomes the process id) writes the Trace Event Format's
JSON array: one track per loop and one per task. A task's track alternates spans
``run`` (a step of its coroutine) and ``wait: <what>`` (named by what it awaited: a
lock, a socket and its peer, a sleep and its deadline, another task). A loop's track
shows each iteration, the time it spent polling, and every callback that is not a task
step; a callback or step that held the loop for ``slow`` seconds or more (0.1 by
default, asyncio's slow-callback threshold) is named ``BLOCKING``.

It is the loop's callback observer (``CoreLoop._run_ready_observed``): while tracing,
every callback is timed, and every step is a callback of its own (a stream's inline
wake-up is scheduled instead). Events are buffered and written in batches, so the file
grows as the program runs; it is a valid JSON array once the trace is closed (and
Perfetto reads an unclosed one too). Introspection layer.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

from treadle.core.handles import Handle, describe_callback
from treadle.core.running import _get_running_loop
from treadle.introspect import runtime
from treadle.introspect.graph import coroutine_frames, is_task
from treadle.introspect.waits import describe_wait

if TYPE_CHECKING:
    from treadle.loop import EventLoop

__all__ = ["Tracer", "start_env_tracer", "trace"]

# Events kept in memory before they are written out.
_BATCH = 4096


def _now_us() -> float:
    return time.perf_counter_ns() / 1000.0


class Tracer:
    """Writes one trace file; attach it to loops (``trace()`` and the hook do)."""

    def __init__(self, path: str | os.PathLike[str], *, slow: float = 0.1) -> None:
        self.path = os.fspath(path)
        self.slow_us = slow * 1e6
        self._file: IO[str] | None = open(self.path, "w", encoding="utf-8")  # noqa: SIM115
        self._file.write("[\n")
        self._first = True
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._next_track = 1
        # Each task's track (a task has one for its whole life, on one loop).
        self._tracks: weakref.WeakKeyDictionary[Any, _TaskTrack] = weakref.WeakKeyDictionary()
        self._loops: dict[int, _LoopTrace] = {}
        # Each loop's track, kept across its runs (treadle.run runs a loop three times).
        self._loop_tracks: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        self._meta("process_name", 0, f"treadle {os.path.basename(sys.argv[0] or 'python')}")

    # --- writing ------------------------------------------------------------------------

    def emit(self, event: str) -> None:
        """Queue one event, already JSON text."""
        pending = self._pending
        pending.append(event)
        if len(pending) >= _BATCH:
            self.flush()

    def flush(self) -> None:
        """Write the queued events to the file."""
        with self._lock:
            events, self._pending = self._pending, []
            if self._file is None or not events:
                return
            text = ",\n".join(events)
            self._file.write(text if self._first else ",\n" + text)
            self._first = False
            self._file.flush()

    def close(self) -> None:
        """End every open span, write the rest and close the file: it is valid JSON now."""
        for loop_trace in list(self._loops.values()):
            loop_trace.finish()
        self._loops.clear()
        self.flush()
        with self._lock:
            if self._file is not None:
                self._file.write("\n]\n")
                self._file.close()
                self._file = None

    def _meta(self, what: str, tid: int, name: str) -> None:
        self.emit(
            f'{{"name":"{what}","ph":"M","pid":{self._pid},"tid":{tid},'
            f'"args":{{"name":{json.dumps(name)}}}}}'
        )
        if what == "thread_name":
            self.emit(
                f'{{"name":"thread_sort_index","ph":"M","pid":{self._pid},"tid":{tid},'
                f'"args":{{"sort_index":{tid}}}}}'
            )

    def new_track(self, name: str) -> int:
        """A new track (a Perfetto "thread") called ``name``; its id."""
        with self._lock:
            tid = self._next_track
            self._next_track += 1
        self._meta("thread_name", tid, name)
        return tid

    def span(self, tid: int, phase: str, name: str, ts: float, args: str = "") -> None:
        """A ``B`` (begin) or ``E`` (end) event, or an ``i`` (instant) one, on track ``tid``."""
        extra = f',"args":{args}' if args else ""
        scope = ',"s":"t"' if phase == "i" else ""
        self.emit(
            f'{{"name":{json.dumps(name)},"ph":"{phase}","ts":{ts:.3f},"pid":{self._pid},'
            f'"tid":{tid}{scope}{extra}}}'
        )

    def complete(self, tid: int, name: str, ts: float, dur: float, cat: str) -> None:
        """An ``X`` event: a span known whole, ``dur`` microseconds from ``ts``."""
        self.emit(
            f'{{"name":{json.dumps(name)},"cat":"{cat}","ph":"X","ts":{ts:.3f},'
            f'"dur":{dur:.3f},"pid":{self._pid},"tid":{tid}}}'
        )

    # --- loops and tasks ------------------------------------------------------------------

    def attach(self, loop: EventLoop) -> None:
        """Start tracing ``loop`` (from its own thread, or before it runs)."""
        if id(loop) in self._loops:
            return
        loop_trace = _LoopTrace(self, loop)
        self._loops[id(loop)] = loop_trace
        loop._callback_observer = loop_trace
        loop._task_observer = runtime.task_created

    def detach(self, loop: EventLoop) -> None:
        """Stop tracing ``loop``: its open spans end now."""
        loop_trace = self._loops.pop(id(loop), None)
        if loop_trace is None:
            return
        if loop._callback_observer is loop_trace:
            loop._callback_observer = None
        loop_trace.finish()
        self.flush()

    def task_created(self, task: Any) -> None:
        """A task was made: give it its track now, to show when it was born and by whom."""
        track = self.track_of(task)
        parent = getattr(task, "get_parent", lambda: None)()
        args = "" if parent is None else json.dumps({"started_by": parent.get_name()})
        self.span(track.tid, "i", "created", _now_us(), args)

    def track_of(self, task: Any) -> _TaskTrack:
        """``task``'s track, made the first time it is seen."""
        track = self._tracks.get(task)
        if track is None:
            track = self._tracks[task] = _TaskTrack(self.new_track(task.get_name()))
            loop_trace = self._loops.get(id(task.get_loop()))
            if loop_trace is not None:
                loop_trace.tracks.add(track)
        return track


class _TaskTrack:
    """A task's track: which span is open on it now."""

    __slots__ = ("__weakref__", "open", "tid")

    def __init__(self, tid: int) -> None:
        self.tid = tid
        self.open: str | None = None  # the name of the span begun and not ended


class _LoopTrace:
    """The callback observer of one loop: turns callbacks into spans."""

    def __init__(self, tracer: Tracer, loop: EventLoop) -> None:
        self.tracer = tracer
        self.loop = loop
        tid = tracer._loop_tracks.get(loop)
        if tid is None:
            thread = threading.current_thread().name
            tid = tracer._loop_tracks[loop] = tracer.new_track(f"loop ({thread})")
        self.tid = tid
        self.tracks: weakref.WeakSet[_TaskTrack] = weakref.WeakSet()
        self.in_iteration = False
        self.last_iteration_ended = _now_us()
        self.callback_began_at = 0.0
        self.task: Any = None  # the task whose step is running, if one is

    # The observer's four methods, in the order the loop calls them.

    def callbacks_began(self, count: int) -> None:
        now = _now_us()
        idle = now - self.last_iteration_ended
        if idle > 0:
            self.tracer.complete(self.tid, "poll", self.last_iteration_ended, idle, "loop")
        self.in_iteration = True
        self.tracer.span(self.tid, "B", f"iteration ({count} ready)", now)

    def callback_began(self, handle: Handle) -> None:
        owner = getattr(handle._callback, "__self__", None)
        now = _now_us()
        self.callback_began_at = now
        if owner is not None and is_task(owner):
            self.task = owner
            track = self.tracer.track_of(owner)
            if track.open is not None:
                self.tracer.span(track.tid, "E", track.open, now)
            track.open = "run"
            self.tracer.span(track.tid, "B", "run", now)
        else:
            self.task = None

    def callback_ended(self, handle: Handle) -> None:
        now = _now_us()
        took = now - self.callback_began_at
        task = self.task
        tracer = self.tracer
        if task is None:
            name = describe_callback(handle._callback, handle._args)
            if took >= tracer.slow_us:
                name = "BLOCKING: " + name
            tracer.complete(self.tid, name, self.callback_began_at, took, "callback")
            return
        self.task = None
        track = tracer.track_of(task)
        tracer.span(track.tid, "E", "run", now)
        track.open = None
        if took >= tracer.slow_us:
            tracer.complete(
                self.tid,
                f"BLOCKING: step of {task.get_name()}",
                self.callback_began_at,
                took,
                "callback",
            )
        if task.done():
            # Not task.exception(): that would mark the error as seen, and hide it.
            outcome = (
                "cancelled"
                if task.cancelled()
                else ("raised" if getattr(task, "_exception", None) is not None else "returned")
            )
            tracer.span(track.tid, "i", outcome, now)
            return
        frames = coroutine_frames(task.get_coro())
        waiting = describe_wait(task, frames, self.loop.time(), brief=True)
        track.open = "wait: " + (waiting or "ready to run")
        tracer.span(track.tid, "B", track.open, now)

    def callbacks_ended(self) -> None:
        now = _now_us()
        if self.in_iteration:
            self.tracer.span(self.tid, "E", "iteration", now)
            self.in_iteration = False
        self.last_iteration_ended = now

    def finish(self) -> None:
        """End the spans still open on this loop's tracks."""
        now = _now_us()
        if self.in_iteration:
            self.tracer.span(self.tid, "E", "iteration", now)
            self.in_iteration = False
        for track in list(self.tracks):
            if track.open is not None:
                self.tracer.span(track.tid, "E", track.open, now)
                track.open = None


@contextlib.contextmanager
def trace(path: str | os.PathLike[str], *, slow: float = 0.1) -> Iterator[Tracer]:
    """Trace every loop that runs (or is running here) inside the block to ``path``.

    Around ``treadle.run(...)``, or inside a running program around the part to look
    at. Open the file in https://ui.perfetto.dev or chrome://tracing. A callback or
    step that holds the loop ``slow`` seconds or more is marked BLOCKING.
    """
    if runtime.active_tracer is not None:
        raise RuntimeError(
            f"a trace to {runtime.active_tracer.path} is already on; traces do not nest"
        )
    tracer = Tracer(path, slow=slow)
    runtime.active_tracer = tracer
    loop = _get_running_loop()
    if loop is not None:
        tracer.attach(loop)  # type: ignore[arg-type]
    try:
        yield tracer
    finally:
        runtime.active_tracer = None
        for loop_trace in list(tracer._loops.values()):
            tracer.detach(loop_trace.loop)
        tracer.close()


_env_tracer_lock = threading.Lock()


def start_env_tracer(path: str) -> Tracer:
    """The tracer of ``TREADLE_TRACE=path``: one per process, closed at exit."""
    import atexit

    with _env_tracer_lock:
        tracer = Tracer(path.replace("{pid}", str(os.getpid())))
        atexit.register(tracer.close)
        return tracer
