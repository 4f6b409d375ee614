"""See inside a running program: call graphs, ``treadle ps``, dumps and traces.

* ``capture_call_graph(task)``/``print_call_graph(task)``: where a task is suspended
  (its await chain, frame by frame), what it waits on, and who awaits it, up to the
  roots; the shape of Python 3.14's ``asyncio.capture_call_graph``.
* ``TREADLE_INTROSPECT=1``: a running program answers ``treadle ps PID`` and
  ``treadle pstree PID`` on a private Unix socket (``server.py`` says why it is safe).
* ``dump_tasks(file)``, ``TREADLE_DUMP_ON=SIGUSR1``, and debug mode's watchdog: the
  task tree written out while the program goes on (``runtime.py``).
* ``trace(path)``/``TREADLE_TRACE=path``: a Perfetto trace, a track per task.

Introspection layer, under the loop services (``treadle`` re-exports it): reads the
core's tasks and loops; the loop calls in through hooks that cost nothing while unused
(``CoreLoop._task_observer``, ``CoreLoop._callback_observer``, ``loop.run_hooks``).
docs/introspection.md tells the whole story.
"""

from __future__ import annotations

from treadle import loop as _loop
from treadle.introspect.graph import (
    FrameCallGraphEntry,
    FutureCallGraph,
    capture_call_graph,
    format_call_graph,
    print_call_graph,
)
from treadle.introspect.runtime import dump_tasks, on_loop_run
from treadle.introspect.trace import trace

__all__ = [
    "FrameCallGraphEntry",
    "FutureCallGraph",
    "capture_call_graph",
    "dump_tasks",
    "format_call_graph",
    "print_call_graph",
    "trace",
]

if on_loop_run not in _loop.run_hooks:
    _loop.run_hooks.append(on_loop_run)
