"""treadle: a coroutine framework you can read in an afternoon and run in production.

An event loop of callbacks (``loop``), a Future for a result not yet known
(``futures``), and a Task that drives a coroutine or generator by sending it each
result (``tasks``); coordination, I/O, HTTP and a crawler are built on top. This module
re-exports the public API and is the only one that imports from every layer.
"""

from __future__ import annotations

from treadle.clock import Clock, MonotonicClock
from treadle.errors import (
    CancelledError,
    IncompleteReadError,
    InvalidStateError,
    LimitOverrunError,
    QueueEmpty,
    QueueFull,
    QueueShutDown,
)
from treadle.futures import Future, isfuture, wrap_future
from treadle.handles import Handle, TimerHandle
from treadle.loop import EventLoop, get_running_loop
from treadle.runners import run
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
from treadle.streams import StreamReader, StreamWriter, open_connection, open_unix_connection
from treadle.tasks import (
    Task,
    all_tasks,
    coroutine,
    create_task,
    current_task,
    ensure_future,
    iscoroutine,
)

__version__ = "0.1.0"

__all__ = [
    "CancelledError",
    "Clock",
    "EventLoop",
    "Future",
    "Handle",
    "IncompleteReadError",
    "InvalidStateError",
    "LimitOverrunError",
    "MonotonicClock",
    "QueueEmpty",
    "QueueFull",
    "QueueShutDown",
    "Server",
    "StreamReader",
    "StreamWriter",
    "Task",
    "TimerHandle",
    "all_tasks",
    "coroutine",
    "create_task",
    "current_task",
    "ensure_future",
    "getaddrinfo",
    "getnameinfo",
    "get_running_loop",
    "iscoroutine",
    "isfuture",
    "run",
    "sleep",
    "wrap_future",
]
