"""Programs stuck in known places, for the introspection tests (run as a subprocess).

``python tests/introspect_programs.py SCENARIO [native|aio]`` starts tasks that get stuck
in one known place, prints "ready" once they are, and waits to be killed (or, for
``dump``, dumps its tree and exits). Each scenario runs on treadle's native loop or, as
asyncio code, on treadle.aio.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import time
from typing import Any

import treadle

SCENARIO = sys.argv[1]
FLAVOUR = sys.argv[2] if len(sys.argv) > 2 else "native"
if FLAVOUR == "aio":
    import asyncio

    import treadle.aio

    lib: Any = asyncio
else:
    lib = treadle


def ready() -> None:
    print("ready", flush=True)


async def nap_forever() -> None:
    await lib.sleep(3600)


async def hold_the_lock(lock: Any, held: Any) -> None:
    async with lock:
        held.set()
        await nap_forever()


async def want_the_lock(lock: Any) -> None:
    async with lock:
        pass


async def lock_scenario() -> None:
    lock, held = lib.Lock(), lib.Event()
    holder = lib.create_task(hold_the_lock(lock, held), name="holder")
    await held.wait()
    waiter = lib.create_task(want_the_lock(lock), name="waiter")
    await lib.sleep(0.05)
    ready()
    await lib.gather(holder, waiter)


async def read_from_silent_peer(reader: Any) -> bytes:
    data: bytes = await reader.read(100)
    return data


async def silent_peer_scenario() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    reader, writer = await lib.open_connection("127.0.0.1", port)
    peer, _ = listener.accept()  # accepted, and never written to
    reader_task = lib.create_task(read_from_silent_peer(reader), name="reader")
    await lib.sleep(0.05)
    print(f"port {port}", flush=True)
    ready()
    try:
        await reader_task
    finally:
        writer.close()
        peer.close()
        listener.close()


async def child(n: int) -> None:
    await nap_forever()


async def taskgroup_scenario() -> None:
    async with lib.TaskGroup() as group:
        group.create_task(child(1), name="child-1")
        group.create_task(child(2), name="child-2")
        await lib.sleep(0.05)
        ready()


def generator_leaf(fut: Any) -> Any:
    result = yield from fut
    return result


@treadle.coroutine
def generator_outer(fut: Any) -> Any:
    result = yield from generator_leaf(fut)
    return result


async def generator_scenario() -> None:
    fut = treadle.get_running_loop().create_future()
    task = treadle.create_task(generator_outer(fut), name="gen-task")
    await treadle.sleep(0.05)
    ready()
    await task


def block_the_loop() -> None:
    ready()
    time.sleep(3600)  # the bug being looked for: a blocking call on the loop


async def blocked_scenario() -> None:
    await lib.sleep(0.01)
    treadle.get_running_loop().call_soon(block_the_loop)
    await nap_forever()


async def dump_scenario() -> None:
    lock, held = lib.Lock(), lib.Event()
    holder = lib.create_task(hold_the_lock(lock, held), name="holder")
    await held.wait()
    await lib.sleep(0.05)
    ready()
    # Wait for the signal's dump (the test sends it and reads stderr), then end.
    sys.stdin.readline()
    holder.cancel()


async def watchdog_scenario() -> None:
    await lib.sleep(0.01)
    time.sleep(1.5)  # blocks the loop (in this task's step) past the 0.3 s threshold
    print("unblocked", flush=True)


async def quiet_scenario() -> None:
    """Never asked for introspection: report the threads and the sockets it has."""
    import os
    import threading

    await lib.sleep(0.01)
    fds = []
    for fd in os.listdir("/proc/self/fd"):
        # FileNotFoundError: the directory listing's own descriptor, closed now.
        with contextlib.suppress(FileNotFoundError):
            fds.append(os.readlink(f"/proc/self/fd/{fd}"))
    print("threads", ",".join(sorted(t.name for t in threading.enumerate())), flush=True)
    print("unix sockets", sum(1 for fd in fds if fd.startswith("socket:")), flush=True)
    ready()


SCENARIOS = {
    "quiet": quiet_scenario,
    "lock": lock_scenario,
    "silent-peer": silent_peer_scenario,
    "taskgroup": taskgroup_scenario,
    "generator": generator_scenario,
    "blocked": blocked_scenario,
    "dump": dump_scenario,
    "watchdog": watchdog_scenario,
}

if __name__ == "__main__":
    main = SCENARIOS[SCENARIO]()
    debug = SCENARIO == "watchdog"
    if FLAVOUR == "aio":
        treadle.aio.run(main, debug=debug)
    else:
        treadle.run(main, debug=debug)
