"""treadle: a coroutine framework you can read in an afternoon and run in production.

The core (``treadle/core/``): an event loop of callbacks, a Future for a result not
yet known, and a Task that drives a coroutine or generator by sending it each result.
``treadle.loop.EventLoop`` adds asyncio's services to the core loop; coordination, I/O,
HTTP and a crawler are built on top (docs/map.md is the map). This module re-exports the
public API and is the only one that imports from every layer.
"""

from __future__ import annotations

from treadle.combinators import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    as_completed,
    awaiting,
    coroutine,
    ensure_future,
    gather,
    shield,
    wait,
    wait_for,
)
from treadle.core import loop as _core_loop
from treadle.core.clock import Clock, MonotonicClock
from treadle.core.futures import Future, isfuture
from treadle.core.handles import Handle, TimerHandle
from treadle.core.tasks import Task, iscoroutine
from treadle.errors import (
    CancelledError,
    IncompleteReadError,
    InvalidStateError,
    LimitOverrunError,
    QueueEmpty,
    QueueFull,
    QueueShutDown,
)
from treadle.introspect import (
    FrameCallGraphEntry,
    FutureCallGraph,
    capture_call_graph,
    dump_tasks,
    format_call_graph,
    print_call_graph,
    trace,
)
from treadle.locks import BoundedSemaphore, Condition, Event, Lock, Semaphore
from treadle.loop import (
    EventLoop,
    all_tasks,
    create_task,
    current_task,
    get_running_loop,
    wrap_future,
)
from treadle.queues import LifoQueue, PriorityQueue, Queue
from treadle.runners import new_event_loop, run
from treadle.servers import Server, start_server, start_unix_server
from treadle.sleeping import sleep
from treadle.sockets import (
    getaddrinfo,
    getnameinfo,
    sock_accept,
    sock_connect,
    sock_recv,
    sock_recv_into,
    sock_recvfrom,
    sock_sendall,
    sock_sendto,
    wait_readable,
    wait_writable,
)
from treadle.streams import StreamReader, StreamWriter
from treadle.taskgroups import TaskGroup
from treadle.threads import to_thread
from treadle.timeouts import Timeout, timeout, timeout_at
from treadle.tls import open_connection, open_unix_connection

__version__ = "0.1.0"

#: Whether this treadle is the compiled build (a wheel built with TREADLE_COMPILE=1: its
#: core and I/O hot path made into extension modules by mypyc from the same source)
#: rather than pure Python. docs/compiled.md says what differs: nothing but speed.
compiled: bool = not _core_loop.__file__.endswith(".py")

__all__ = [
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "BoundedSemaphore",
    "CancelledError",
    "Clock",
    "Condition",
    "Event",
    "EventLoop",
    "FrameCallGraphEntry",
    "Future",
    "FutureCallGraph",
    "Handle",
    "IncompleteReadError",
    "InvalidStateError",
    "LifoQueue",
    "LimitOverrunError",
    "Lock",
    "MonotonicClock",
    "PriorityQueue",
    "Queue",
    "QueueEmpty",
    "QueueFull",
    "QueueShutDown",
    "Semaphore",
    "Server",
    "StreamReader",
    "StreamWriter",
    "Task",
    "TaskGroup",
    "Timeout",
    "TimerHandle",
    "all_tasks",
    "as_completed",
    "awaiting",
    "capture_call_graph",
    "compiled",
    "coroutine",
    "create_task",
    "current_task",
    "dump_tasks",
    "ensure_future",
    "format_call_graph",
    "gather",
    "get_running_loop",
    "getaddrinfo",
    "getnameinfo",
    "iscoroutine",
    "isfuture",
    "new_event_loop",
    "open_connection",
    "open_unix_connection",
    "print_call_graph",
    "run",
    "shield",
    "sleep",
    "sock_accept",
    "sock_connect",
    "sock_recv",
    "sock_recv_into",
    "sock_recvfrom",
    "sock_sendall",
    "sock_sendto",
    "start_server",
    "start_unix_server",
    "timeout",
    "timeout_at",
    "to_thread",
    "trace",
    "wait",
    "wait_for",
    "wait_readable",
    "wait_writable",
    "wrap_future",
]
