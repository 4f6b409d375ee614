"""The aio loop's run-once: treadle's steps, the ready descriptors' callbacks from a list.

``treadle.aio.EventLoop._run_once`` is ``_run_once`` here (in the pure build; compiled, a
method that calls it). It lives in a module of its own, written against treadle's core loop
(``CoreLoop``) and core ``Handle`` rather than the aio loop, so that the compiled build
(docs/compiled.md) compiles it: compiled, it reads the loop's and the handles' fields
straight from their C structs, where the interpreted aio loop, a Python subclass of the
compiled core, goes through Python's attribute lookup for each. Pure, it is the aio
loop's method itself, as if written in its class.

Side layer: imports treadle's core loop and handles; not asyncio.
"""

from __future__ import annotations

import itertools
from heapq import heappop
from typing import Any, Final

from treadle.core.handles import Handle
from treadle.core.loop import (
    _MAX_SELECT_TIMEOUT,
    _MIN_CANCELLED_TIMERS_TO_PURGE,
    _POLLIN,
    _READ_EVENTS,
    _WRITE_EVENTS,
    CoreLoop,
)

__all__: list[str] = []

# The most events one blocking poll of the one-pass path takes. epoll.poll's default
# (1,023) has it allocate and free a 12 KiB array every poll, about 430 instructions of
# malloc and free; 85 events fill 1,020 bytes, which glibc serves from its per-thread
# cache (up to 1,032 bytes) for about 200. Descriptors beyond them stay ready and the
# next poll reports them (epoll takes the ready ones in turn): at a hundred busy
# connections the saving and the extra poll cancel out; at one event a poll a round
# trip costs 3% fewer instructions (callgrind).
_MAX_EVENTS: Final = 85


# Named _run_once, as the loops' own: introspection finds the running callback in the
# frame of a function of that name (treadle.introspect.snapshot's _RUNNERS).
def _run_once(loop: CoreLoop) -> None:
    """One iteration of treadle's loop, with readiness callbacks run straight from the poll.

    The same steps, in the same order, as ``treadle.core.loop.CoreLoop._run_once``
    (read that first): drop cancelled timers, work out the poll's timeout, poll, take
    the due timers, then run exactly the callbacks ready when the iteration began:
    those already queued, then those of the ready descriptors (in the poller's order,
    each reader before its writer), then the due timers. Here the descriptors'
    callbacks go through a local list instead of the ready queue, and are called
    without arguments: on the aio loop every handle in treadle's reader and writer
    tables is argument-less (asyncio's handles, and the transport's bound methods,
    carry their own). As in the core, a handle is taken when the poll reports its
    descriptor and skipped if it is cancelled before its turn. In debug mode and under
    an introspection observer, which run the ready queue their own way, the core's
    run-once runs instead.
    """
    if loop._debug or loop._callback_observer is not None:
        CoreLoop._run_once(loop)
        return
    ready = loop._ready
    timers = loop._timers
    handle: Any = None
    io_handle: Handle | None = None
    io_ready: list[Handle] = []

    # 0. The common case of a server, in one pass: nothing queued, no timers, not
    # stopping. Steps 1, 2 and 4 then have nothing to do and step 3 blocks: poll, take
    # the ready descriptors' handles, run them (steps 3 and 5 below, the same code).
    # About a thousand instructions of every iteration fewer in the pure build. The
    # copy is deliberate: the same path folded into steps 1-5 behind a flag cost 500
    # instructions an iteration more (11,506 against 10,999 per round trip, one
    # connection, counted with callgrind), and a helper function a call.
    if not ready and not timers and not loop._stopping:
        events = loop._poller.poll(None, _MAX_EVENTS)  # None: no float to convert
        if not events:
            return
        readers = loop._readers
        writers = loop._writers
        for fd, mask in events:
            if mask == _POLLIN:
                reader = readers.get(fd)
                if reader is not None:
                    io_ready.append(reader)
                continue
            if mask & _READ_EVENTS:
                reader = readers.get(fd)
                if reader is not None:
                    io_ready.append(reader)
            if mask & _WRITE_EVENTS:
                writer = writers.get(fd)
                if writer is not None:
                    io_ready.append(writer)
        for io_handle in io_ready:
            handle = io_handle
            if io_handle._cancelled:
                continue
            try:
                io_handle._context.run(io_handle._callback)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                loop._callback_failed(io_handle, exc)
        handle = io_handle = None
        del io_ready
        return

    # 1. Cancelled timers must not pile up.
    if timers:
        if (
            loop._cancelled_timers > _MIN_CANCELLED_TIMERS_TO_PURGE
            and loop._cancelled_timers * 2 > len(timers)
        ):
            loop._purge_cancelled_timers()
        else:
            while timers and timers[0][2]._cancelled:
                heappop(timers)[2]._scheduled = False
                loop._cancelled_timers -= 1

    # 2. How long may the poller block? Not at all if there is work ready.
    deadline = timers[0][0] if timers else None
    if ready or loop._stopping:
        timeout = 0.0
    elif deadline is None:
        timeout = -1.0
    else:
        timeout = min(loop._clock.sleep_time(deadline), _MAX_SELECT_TIMEOUT)

    # 3. Poll, and take the callbacks of the descriptors that are ready.
    if timeout != 0.0 or loop._registered:
        events = loop._poller.poll(timeout)
        if events:
            readers = loop._readers
            writers = loop._writers
            for fd, mask in events:
                # Most events are one bit: an == is cheaper than the & of the general
                # case (which 3.11 does not specialise for ints).
                if mask == _POLLIN:
                    reader = readers.get(fd)
                    if reader is not None:
                        io_ready.append(reader)
                    continue
                if mask & _READ_EVENTS:
                    reader = readers.get(fd)
                    if reader is not None:
                        io_ready.append(reader)
                if mask & _WRITE_EVENTS:
                    writer = writers.get(fd)
                    if writer is not None:
                        io_ready.append(writer)
    if deadline is not None and not ready and not io_ready and not loop._stopping:
        loop._clock.idle(deadline)

    # 4. The queued callbacks run first, the due timers last (queued behind them).
    queued = len(ready)
    if timers:
        now = loop._clock_time()
        while timers and timers[0][0] <= now:
            timer = heappop(timers)[2]
            timer._scheduled = False
            if timer._cancelled:
                loop._cancelled_timers -= 1
            else:
                ready.append(timer)
    due = len(ready) - queued

    # 5. Run them: the queued, the descriptors', the due timers. What they schedule is
    # queued behind the due timers, for the next iteration. (Three loops in this one
    # frame, not a helper: introspection finds the running callback here, in "handle".)
    if queued:
        for _ in itertools.repeat(None, queued):
            handle = ready.popleft()
            if handle._cancelled:
                continue
            try:
                if handle._args:
                    handle._context.run(handle._callback, *handle._args)
                else:
                    handle._context.run(handle._callback)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                loop._callback_failed(handle, exc)
    for io_handle in io_ready:
        handle = io_handle
        if io_handle._cancelled:
            continue
        try:
            io_handle._context.run(io_handle._callback)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            loop._callback_failed(io_handle, exc)
    if due:
        for _ in itertools.repeat(None, due):
            handle = ready.popleft()
            if handle._cancelled:
                continue
            try:
                if handle._args:
                    handle._context.run(handle._callback, *handle._args)
                else:
                    handle._context.run(handle._callback)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                loop._callback_failed(handle, exc)
    # As in the core: a frame kept by a traceback must not keep the last callback.
    handle = io_handle = None
    del io_ready
