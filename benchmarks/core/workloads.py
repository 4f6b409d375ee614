"""The five core workloads, written once per API shape.

asyncio, uvloop, treadle and the bare-Python floor share one asyncio-shaped
implementation driven through a small adapter (``Shape``), so every one of them
runs byte-for-byte the same workload code; trio and curio get their idiomatic
equivalents (``trio.open_nursery``, ``curio.TaskGroup``). Each workload returns
``(value, elapsed_seconds)``; timing always starts and stops inside the
running loop, so interpreter start-up, imports and loop construction are
excluded.
"""

from __future__ import annotations

import gc
import random
import resource
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from time import perf_counter
from typing import Any

# Workload sizes: full run and --quick smoke run.
SIZES = {
    "switches": 200_000,
    "spawn": 100_000,
    "call_soon": 1_000_000,
    "timers": 100_000,
    "memory": 100_000,
}
QUICK_DIVISOR = 10
TIMER_SEED = 20240601
TIMER_MAX_DELAY = 0.100  # seconds; delays are uniform in [0, TIMER_MAX_DELAY]

BENCHMARKS = tuple(SIZES)
# treadle-compiled: the same treadle code, built with TREADLE_COMPILE=1 and run from the
# environment it is installed in (run.py --compiled-python); it must say it is compiled.
FRAMEWORKS = ("asyncio", "uvloop", "trio", "curio", "treadle", "treadle-compiled", "floor")
LOOP_ONLY = ("asyncio", "uvloop", "treadle", "treadle-compiled", "floor")  # with a loop
SUPPORTED = {
    "switches": FRAMEWORKS,
    "spawn": FRAMEWORKS,
    "call_soon": LOOP_ONLY,
    "timers": LOOP_ONLY,
    "memory": FRAMEWORKS,
}
TREADLE_API = ("run", "sleep", "create_task", "get_running_loop", "Event", "gather")


def rss_bytes() -> int:
    """Current resident set size; falls back to peak RSS where /proc is absent."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def timer_delays(n: int) -> list[float]:
    rng = random.Random(TIMER_SEED)
    return [rng.uniform(0.0, TIMER_MAX_DELAY) for _ in range(n)]


# --------------------------------------------------------------------------
# asyncio-shaped frameworks: asyncio, uvloop, treadle, floor


@dataclass(frozen=True)
class Shape:
    """The asyncio-shaped entry points a workload needs from a framework."""

    run: Callable[[Coroutine[Any, Any, Any]], Any]
    sleep: Callable[[float], Any]
    create_task: Callable[[Coroutine[Any, Any, Any]], Any]
    get_running_loop: Callable[[], Any]
    Event: Callable[[], Any]


def load_shape(framework: str) -> Shape:
    """Import ``framework`` and collect its entry points; raises if any is missing."""
    if framework in ("asyncio", "uvloop"):
        import asyncio

        if framework == "asyncio":
            run: Callable[[Coroutine[Any, Any, Any]], Any] = asyncio.run
        else:
            import uvloop

            def run(coro: Coroutine[Any, Any, Any]) -> Any:
                with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                    return runner.run(coro)

        return Shape(
            run, asyncio.sleep, asyncio.create_task, asyncio.get_running_loop, asyncio.Event
        )
    if framework in ("treadle", "treadle-compiled"):
        import treadle

        missing = [name for name in TREADLE_API if not hasattr(treadle, name)]
        if missing:
            raise AttributeError(f"module 'treadle' has no attribute(s) {', '.join(missing)}")
        if getattr(treadle, "compiled", False) != (framework == "treadle-compiled"):
            raise ImportError(
                f"{framework} wanted, but {treadle.__file__} is "
                f"{'compiled' if framework == 'treadle' else 'pure Python'}"
            )
        return Shape(
            treadle.run,
            treadle.sleep,
            treadle.create_task,
            treadle.get_running_loop,
            treadle.Event,
        )
    if framework == "floor":
        import floor

        return Shape(floor.run, floor.sleep, floor.create_task, floor.get_running_loop, floor.Event)
    raise ValueError(f"{framework} is not asyncio-shaped")


async def _noop() -> None:
    pass


async def shaped_switches(shape: Shape, n: int) -> tuple[float, float]:
    sleep = shape.sleep
    t0 = perf_counter()
    for _ in range(n):
        await sleep(0)
    elapsed = perf_counter() - t0
    return n / elapsed, elapsed


async def shaped_spawn(shape: Shape, n: int) -> tuple[float, float]:
    create_task = shape.create_task
    t0 = perf_counter()
    tasks = [create_task(_noop()) for _ in range(n)]
    for task in tasks:
        await task
    elapsed = perf_counter() - t0
    return n / elapsed, elapsed


def _nothing() -> None:
    pass


async def shaped_call_soon(shape: Shape, n: int) -> tuple[float, float]:
    loop = shape.get_running_loop()
    call_soon = loop.call_soon
    finished = loop.create_future()
    cb = _nothing
    t0 = perf_counter()
    for _ in range(n):
        call_soon(cb)
    call_soon(finished.set_result, None)  # FIFO: runs after the n callbacks
    await finished
    elapsed = perf_counter() - t0
    return n / elapsed, elapsed


async def shaped_timers(shape: Shape, n: int) -> tuple[float, float]:
    loop = shape.get_running_loop()
    call_later = loop.call_later
    finished = loop.create_future()
    delays = timer_delays(n)
    remaining = n

    def fire() -> None:
        nonlocal remaining
        remaining -= 1
        if not remaining:
            finished.set_result(None)

    t0 = perf_counter()
    for delay in delays:
        call_later(delay, fire)
    await finished
    elapsed = perf_counter() - t0
    return elapsed, elapsed


async def shaped_memory(shape: Shape, n: int) -> tuple[float, float]:
    create_task, sleep = shape.create_task, shape.sleep
    event = shape.Event()
    parked = 0

    async def waiter() -> None:
        nonlocal parked
        parked += 1
        await event.wait()

    gc.collect()
    before = rss_bytes()
    t0 = perf_counter()
    tasks = [create_task(waiter()) for _ in range(n)]
    while parked < n:
        await sleep(0)
    after = rss_bytes()
    event.set()
    for task in tasks:
        await task
    elapsed = perf_counter() - t0
    return (after - before) / n, elapsed


SHAPED = {
    "switches": shaped_switches,
    "spawn": shaped_spawn,
    "call_soon": shaped_call_soon,
    "timers": shaped_timers,
    "memory": shaped_memory,
}


# --------------------------------------------------------------------------
# trio


def trio_bench(bench: str, n: int) -> tuple[float, float]:
    import trio

    async def switches() -> tuple[float, float]:
        sleep = trio.sleep
        t0 = perf_counter()
        for _ in range(n):
            await sleep(0)
        elapsed = perf_counter() - t0
        return n / elapsed, elapsed

    async def spawn() -> tuple[float, float]:
        t0 = perf_counter()
        async with trio.open_nursery() as nursery:
            start_soon = nursery.start_soon
            for _ in range(n):
                start_soon(_noop)
        elapsed = perf_counter() - t0
        return n / elapsed, elapsed

    async def memory() -> tuple[float, float]:
        event = trio.Event()
        parked = 0

        async def waiter() -> None:
            nonlocal parked
            parked += 1
            await event.wait()

        gc.collect()
        before = rss_bytes()
        t0 = perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(waiter)
            while parked < n:
                await trio.sleep(0)
            after = rss_bytes()
            event.set()
        elapsed = perf_counter() - t0
        return (after - before) / n, elapsed

    main = {"switches": switches, "spawn": spawn, "memory": memory}[bench]
    result: tuple[float, float] = trio.run(main)
    return result


# --------------------------------------------------------------------------
# curio


def curio_bench(bench: str, n: int) -> tuple[float, float]:
    import curio

    async def switches() -> tuple[float, float]:
        sleep = curio.sleep
        t0 = perf_counter()
        for _ in range(n):
            await sleep(0)
        elapsed = perf_counter() - t0
        return n / elapsed, elapsed

    async def spawn() -> tuple[float, float]:
        t0 = perf_counter()
        async with curio.TaskGroup() as group:
            for _ in range(n):
                await group.spawn(_noop)
        elapsed = perf_counter() - t0
        return n / elapsed, elapsed

    async def memory() -> tuple[float, float]:
        event = curio.Event()
        parked = 0

        async def waiter() -> None:
            nonlocal parked
            parked += 1
            await event.wait()

        gc.collect()
        before = rss_bytes()
        t0 = perf_counter()
        async with curio.TaskGroup() as group:
            for _ in range(n):
                await group.spawn(waiter)
            while parked < n:
                await curio.sleep(0)
            after = rss_bytes()
            await event.set()
        elapsed = perf_counter() - t0
        return (after - before) / n, elapsed

    main = {"switches": switches, "spawn": spawn, "memory": memory}[bench]
    result: tuple[float, float] = curio.run(main)
    return result


# --------------------------------------------------------------------------


def run_one(bench: str, framework: str, n: int) -> tuple[float, float]:
    """Run one workload once in this process; returns (figure, elapsed seconds)."""
    if framework not in SUPPORTED[bench]:
        raise ValueError(f"{bench} is not defined for {framework}")
    if framework == "trio":
        return trio_bench(bench, n)
    if framework == "curio":
        return curio_bench(bench, n)
    shape = load_shape(framework)
    result: tuple[float, float] = shape.run(SHAPED[bench](shape, n))
    return result
