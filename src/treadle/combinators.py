"""Waiting on awaitables: ``gather``, ``wait``, ``wait_for``, ``as_completed``, ``shield``.

``coroutine`` marks a generator function so ``async def`` code can await it, and
``awaiting`` lets a generator coroutine ``yield from`` any awaitable, typed.
``ensure_future`` makes a future of any awaitable.

Each is a small piece of plumbing between futures: done callbacks that count, copy
an outcome across, or release one waiter future. Names, arguments and semantics are
asyncio's. Coordination layer: imports the loop, futures, tasks, ``sleeping.check_seconds``
and ``timeouts`` (``wait_for`` is a ``timeout()`` block around an ``await``).
"""

from __future__ import annotations

import concurrent.futures
import functools
import inspect
import types
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable
from typing import Any, Generic, Literal, ParamSpec, Protocol, TypeAlias, TypeVar, overload

from treadle.core.futures import Future, isfuture
from treadle.core.tasks import iscoroutine
from treadle.errors import CancelledError
from treadle.loop import EventLoop, get_running_loop
from treadle.sleeping import check_seconds
from treadle.timeouts import timeout as _timeout

__all__ = [
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "as_completed",
    "awaiting",
    "coroutine",
    "ensure_future",
    "gather",
    "shield",
    "wait",
    "wait_for",
]

_T = TypeVar("_T")
_P = ParamSpec("_P")
_T1 = TypeVar("_T1")
_T2 = TypeVar("_T2")
_T3 = TypeVar("_T3")
_T4 = TypeVar("_T4")
_T5 = TypeVar("_T5")
_T6 = TypeVar("_T6")
_FutureT = TypeVar("_FutureT", bound=Future[Any])

# What these functions accept: anything ``await`` takes, and a plain generator (the
# ``yield from`` style of coroutine, which a Task drives as well).
_AwaitableOrGenerator: TypeAlias = Awaitable[_T] | Generator[Any, Any, _T]

# The same strings as concurrent.futures (and so asyncio): either module's constants work.
FIRST_COMPLETED = concurrent.futures.FIRST_COMPLETED
FIRST_EXCEPTION = concurrent.futures.FIRST_EXCEPTION
ALL_COMPLETED = concurrent.futures.ALL_COMPLETED


# --- helpers ----------------------------------------------------------------------------


def _is_awaitable(obj: object) -> bool:
    return isfuture(obj) or iscoroutine(obj) or inspect.isawaitable(obj)


def _close_coroutines(objs: Iterable[object]) -> None:
    """Close the coroutines among ``objs``: an argument error means none of them will run,
    and closing spares the user a second, confusing 'never awaited' warning."""
    for obj in objs:
        if iscoroutine(obj):
            obj.close()  # type: ignore[attr-defined]


def _check_awaitables(objs: Iterable[object], where: str) -> None:
    """TypeError naming the first of ``objs`` that cannot be awaited."""
    objs = list(objs)
    for obj in objs:
        if not _is_awaitable(obj):
            _close_coroutines(objs)
            hint = "; did you pass the function instead of calling it?" if callable(obj) else ""
            raise TypeError(
                f"{where} needs awaitables (coroutines, tasks or futures), got {obj!r}{hint}"
            )


@types.coroutine
def _yield_from(gen: Generator[Any, Any, _T]) -> Generator[Any, Any, _T]:
    return (yield from gen)


def _awaitable(aw: _AwaitableOrGenerator[_T]) -> Awaitable[_T]:
    """``aw`` in a form ``await`` accepts: a plain generator (treadle's other coroutine
    style) is not awaitable by itself, so it is driven with ``yield from``."""
    if isinstance(aw, types.GeneratorType) and not inspect.isawaitable(aw):
        return _yield_from(aw)
    return aw  # type: ignore[return-value]  # (a generator marked by @coroutine awaits)


def _release(waiter: Future[Any], *_: object) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _cancelled_error(fut: Future[Any]) -> CancelledError:
    """The CancelledError a cancelled ``fut`` raises (it carries the cancel message)."""
    try:
        fut.result()
    except CancelledError as exc:
        return exc
    return CancelledError()  # not reached: fut is cancelled


# --- gather -----------------------------------------------------------------------------


class _GatheringFuture(Future[list[Any]]):
    """The future ``gather`` returns: cancelling it cancels the children instead.

    It ends when the children do: with CancelledError if it was cancelled, otherwise
    as ``gather`` describes.
    """

    __slots__ = ("_cancel_requested", "_children")

    def __init__(self, children: list[Future[Any]], *, loop: EventLoop) -> None:
        super().__init__(loop=loop)
        self._children = children
        # Invariant: True once cancel() reached at least one child.
        self._cancel_requested = False

    def cancel(self, msg: str | None = None) -> bool:
        """Cancel every child not done yet; True if any was cancelled.

        The gathering future itself keeps no cancel message (as asyncio's): a gather
        that is the last child of another gives that one a bare CancelledError.
        """
        if self.done():
            return False
        cancelled_any = False
        for child in self._children:
            if child.cancel(msg=msg):
                cancelled_any = True
        if cancelled_any:
            self._cancel_requested = True
        return cancelled_any


# gather's types follow typeshed's for asyncio: up to six awaitables give a tuple of
# their result types (at run time the result is a list, as asyncio's), more give a
# list; with return_exceptions=True each result may be an exception instead. The
# "overload-overlap" ignores are typeshed's too: a Literal[False] overload overlaps
# the bool one by design.
@overload
def gather(  # type: ignore[overload-overlap]
    aw1: _AwaitableOrGenerator[_T1],
    /,
    *,
    return_exceptions: Literal[False] = False,
) -> Future[tuple[_T1]]: ...
@overload
def gather(  # type: ignore[overload-overlap]
    aw1: _AwaitableOrGenerator[_T1],
    aw2: _AwaitableOrGenerator[_T2],
    /,
    *,
    return_exceptions: Literal[False] = False,
) -> Future[tuple[_T1, _T2]]: ...
@overload
def gather(  # type: ignore[overload-overlap]
    aw1: _AwaitableOrGenerator[_T1],
    aw2: _AwaitableOrGenerator[_T2],
    aw3: _AwaitableOrGenerator[_T3],
    /,
    *,
    return_exceptions: Literal[False] = False,
) -> Future[tuple[_T1, _T2, _T3]]: ...
@overload
def gather(  # type: ignore[overload-overlap]
    aw1: _AwaitableOrGenerator[_T1],
    aw2: _AwaitableOrGenerator[_T2],
    aw3: _AwaitableOrGenerator[_T3],
    aw4: _AwaitableOrGenerator[_T4],
    /,
    *,
    return_exceptions: Literal[False] = False,
) -> Future[tuple[_T1, _T2, _T3, _T4]]: ...
@overload
def gather(  # type: ignore[overload-overlap]
    aw1: _AwaitableOrGenerator[_T1],
    aw2: _AwaitableOrGenerator[_T2],
    aw3: _AwaitableOrGenerator[_T3],
    aw4: _AwaitableOrGenerator[_T4],
    aw5: _AwaitableOrGenerator[_T5],
    /,
    *,
    return_exceptions: Literal[False] = False,
) -> Future[tuple[_T1, _T2, _T3, _T4, _T5]]: ...
@overload
def gather(  # type: ignore[overload-overlap]
    aw1: _AwaitableOrGenerator[_T1],
    aw2: _AwaitableOrGenerator[_T2],
    aw3: _AwaitableOrGenerator[_T3],
    aw4: _AwaitableOrGenerator[_T4],
    aw5: _AwaitableOrGenerator[_T5],
    aw6: _AwaitableOrGenerator[_T6],
    /,
    *,
    return_exceptions: Literal[False] = False,
) -> Future[tuple[_T1, _T2, _T3, _T4, _T5, _T6]]: ...
@overload
def gather(  # type: ignore[overload-overlap]
    *aws: _AwaitableOrGenerator[_T], return_exceptions: Literal[False] = False
) -> Future[list[_T]]: ...
@overload
def gather(
    aw1: _AwaitableOrGenerator[_T1],
    /,
    *,
    return_exceptions: bool,
) -> Future[tuple[_T1 | BaseException]]: ...
@overload
def gather(
    aw1: _AwaitableOrGenerator[_T1],
    aw2: _AwaitableOrGenerator[_T2],
    /,
    *,
    return_exceptions: bool,
) -> Future[tuple[_T1 | BaseException, _T2 | BaseException]]: ...
@overload
def gather(
    aw1: _AwaitableOrGenerator[_T1],
    aw2: _AwaitableOrGenerator[_T2],
    aw3: _AwaitableOrGenerator[_T3],
    /,
    *,
    return_exceptions: bool,
) -> Future[tuple[_T1 | BaseException, _T2 | BaseException, _T3 | BaseException]]: ...
@overload
def gather(
    aw1: _AwaitableOrGenerator[_T1],
    aw2: _AwaitableOrGenerator[_T2],
    aw3: _AwaitableOrGenerator[_T3],
    aw4: _AwaitableOrGenerator[_T4],
    /,
    *,
    return_exceptions: bool,
) -> Future[
    tuple[_T1 | BaseException, _T2 | BaseException, _T3 | BaseException, _T4 | BaseException]
]: ...
@overload
def gather(
    aw1: _AwaitableOrGenerator[_T1],
    aw2: _AwaitableOrGenerator[_T2],
    aw3: _AwaitableOrGenerator[_T3],
    aw4: _AwaitableOrGenerator[_T4],
    aw5: _AwaitableOrGenerator[_T5],
    /,
    *,
    return_exceptions: bool,
) -> Future[
    tuple[
        _T1 | BaseException,
        _T2 | BaseException,
        _T3 | BaseException,
        _T4 | BaseException,
        _T5 | BaseException,
    ]
]: ...
@overload
def gather(
    aw1: _AwaitableOrGenerator[_T1],
    aw2: _AwaitableOrGenerator[_T2],
    aw3: _AwaitableOrGenerator[_T3],
    aw4: _AwaitableOrGenerator[_T4],
    aw5: _AwaitableOrGenerator[_T5],
    aw6: _AwaitableOrGenerator[_T6],
    /,
    *,
    return_exceptions: bool,
) -> Future[
    tuple[
        _T1 | BaseException,
        _T2 | BaseException,
        _T3 | BaseException,
        _T4 | BaseException,
        _T5 | BaseException,
        _T6 | BaseException,
    ]
]: ...
@overload
def gather(
    *aws: _AwaitableOrGenerator[_T], return_exceptions: bool
) -> Future[list[_T | BaseException]]: ...
def gather(*aws: _AwaitableOrGenerator[Any], return_exceptions: bool = False) -> Future[Any]:
    """Run ``aws`` concurrently; a future of their results (a list), in argument order.

    Coroutines are wrapped in tasks; the same awaitable given twice runs once. The
    first exception (or cancellation) of a child is the gather's, and the other
    children keep running; with ``return_exceptions=True`` exceptions are results
    instead. Cancelling the returned future cancels every child not done yet.
    """
    if not aws:
        empty: Future[list[Any]] = get_running_loop().create_future()
        empty.set_result([])
        return empty
    _check_awaitables(aws, "gather()")
    loop = next((aw.get_loop() for aw in aws if isfuture(aw)), None)  # type: ignore[union-attr]
    if loop is None:
        try:
            loop = get_running_loop()
        except RuntimeError:
            _close_coroutines(aws)
            raise

    # Keyed by identity: the arguments stay alive in ``aws``, and need not be hashable.
    futures_by_id: dict[int, Future[Any]] = {}
    children: list[Future[Any]] = []
    for aw in aws:
        fut = futures_by_id.get(id(aw))
        if fut is None:
            fut = futures_by_id[id(aw)] = ensure_future(aw, loop=loop)
        children.append(fut)
    outer = _GatheringFuture(children, loop=loop)
    unfinished = len(futures_by_id)

    def child_done(fut: Future[Any]) -> None:
        nonlocal unfinished
        unfinished -= 1
        if outer.done():
            if not fut.cancelled():
                fut.exception()  # retrieved: the gather's outcome is already decided
            return
        if not return_exceptions:
            if fut.cancelled():
                outer.set_exception(_cancelled_error(fut))
                return
            exc = fut.exception()
            if exc is not None:
                outer.set_exception(exc)
                return
        if unfinished:
            return
        results: list[Any] = []
        for child in children:
            if child.cancelled():
                results.append(_cancelled_error(child))
            else:
                exc = child.exception()
                results.append(child.result() if exc is None else exc)
        if outer._cancel_requested:
            # gather() was cancelled: even though every child is accounted for, the
            # awaiting task asked to be cancelled and must see CancelledError. As in
            # asyncio, it is the last child's (in argument order), whichever ended last.
            # (A last child that ended otherwise gives the cancel message it recorded: a
            # task cancelled while running records it, a gather never does.)
            last = children[-1]
            if last.cancelled():
                outer.set_exception(_cancelled_error(last))
            else:
                message = getattr(last, "_cancel_message", None)
                error = CancelledError() if message is None else CancelledError(message)
                outer.set_exception(error)
        else:
            outer.set_result(results)

    for fut in futures_by_id.values():
        fut.add_done_callback(child_done)
    return outer


# --- wait -------------------------------------------------------------------------------


# As typeshed types asyncio.wait: futures and tasks come back as what they are.
@overload
async def wait(
    fs: Iterable[_FutureT], *, timeout: float | None = None, return_when: str = ALL_COMPLETED
) -> tuple[set[_FutureT], set[_FutureT]]: ...
@overload
async def wait(
    fs: Iterable[Awaitable[_T]],
    *,
    timeout: float | None = None,
    return_when: str = ALL_COMPLETED,
) -> tuple[set[Future[_T]], set[Future[_T]]]: ...
async def wait(
    fs: Iterable[Awaitable[Any]],
    *,
    timeout: float | None = None,
    return_when: str = ALL_COMPLETED,
) -> tuple[set[Any], set[Any]]:
    """Wait for the futures and tasks in ``fs``; return the sets ``(done, pending)``.

    ``return_when`` is ``FIRST_COMPLETED``, ``FIRST_EXCEPTION`` or ``ALL_COMPLETED``.
    ``timeout`` (seconds) bounds the wait, which then returns what is done so far; it
    never raises TimeoutError and never cancels anything. Coroutines are refused (wrap
    them in tasks, so that you hold what ends up in ``done``).
    """
    if isfuture(fs) or iscoroutine(fs):
        _close_coroutines([fs])
        raise TypeError(
            f"wait() needs an iterable of futures or tasks, not a single {type(fs).__name__}"
        )
    given = set(fs)
    if return_when not in (FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED):
        _close_coroutines(given)
        raise ValueError(f"invalid return_when value: {return_when!r}")
    try:
        check_seconds(timeout, "wait() timeout")
    except (TypeError, ValueError):
        _close_coroutines(given)
        raise
    if not given:
        raise ValueError("wait() was given no futures; pass at least one")
    if any(iscoroutine(f) for f in given):
        _close_coroutines(given)
        raise TypeError(
            "wait() does not accept coroutines; wrap each in create_task() and pass the tasks"
        )
    _check_awaitables(given, "wait()")
    loop = get_running_loop()
    futures = {ensure_future(f, loop=loop) for f in given}
    return await _wait(futures, timeout, return_when, loop)


async def _wait(
    fs: set[Future[_T]], timeout: float | None, return_when: str, loop: EventLoop
) -> tuple[set[Future[_T]], set[Future[_T]]]:
    waiter: Future[None] = loop.create_future()
    timer = None if timeout is None else loop.call_later(timeout, _release, waiter)
    unfinished = len(fs)

    def on_done(f: Future[_T]) -> None:
        nonlocal unfinished
        unfinished -= 1
        if (
            unfinished <= 0
            or return_when == FIRST_COMPLETED
            or (return_when == FIRST_EXCEPTION and not f.cancelled() and f.exception() is not None)
        ):
            _release(waiter)

    for f in fs:
        f.add_done_callback(on_done)
    try:
        await waiter
    finally:
        if timer is not None:
            timer.cancel()
        for f in fs:
            f.remove_done_callback(on_done)
    done = {f for f in fs if f.done()}
    return done, fs - done


# --- wait_for ---------------------------------------------------------------------------


async def wait_for(aw: _AwaitableOrGenerator[_T], timeout: float | None) -> _T:
    """Await ``aw``, but for at most ``timeout`` seconds; then cancel it, raise TimeoutError.

    ``timeout=None`` waits as long as it takes. As in asyncio 3.12+ this is a
    ``timeout()`` block around ``await aw``: a coroutine runs in the calling task, and
    the caller waits for the cancelled ``aw`` to finish. A future that completes in the
    loop iteration where the deadline passes, but after the caller's last wakeup, still
    times out (its result stays on the future), as in asyncio 3.12+; 3.11 returned it.
    A cancellation of the caller stays a cancellation. A ``timeout`` of zero or less (as
    in asyncio 3.12+) gives the result of ``aw`` if it is already done, and otherwise
    cancels it and raises TimeoutError; a NaN ``timeout`` is a ValueError.
    """
    try:
        check_seconds(timeout, "wait_for() timeout")
        _check_awaitables([aw], "wait_for()")
    except (TypeError, ValueError):
        _close_coroutines([aw])
        raise
    if timeout is None:
        return await _awaitable(aw)
    if timeout <= 0:
        # No time at all: cancel at once (the result of what is already done is kept).
        fut = ensure_future(aw)
        if fut.done():
            return fut.result()
        await _cancel_and_wait(fut)
        try:
            return fut.result()
        except CancelledError as exc:
            raise TimeoutError(f"wait_for() timed out after {timeout!r} seconds") from exc
    async with _timeout(timeout):
        return await _awaitable(aw)


async def _cancel_and_wait(fut: Future[Any]) -> None:
    """Cancel ``fut`` and wait until it is done (a task may take a while to stop)."""
    waiter: Future[None] = get_running_loop().create_future()

    def release(_: Future[Any]) -> None:
        _release(waiter)

    fut.add_done_callback(release)
    try:
        fut.cancel()
        await waiter
    finally:
        fut.remove_done_callback(release)


# --- as_completed -----------------------------------------------------------------------


class _Cancellable(Protocol):
    """What we need of the loop's timer handles: a way to disarm them."""

    def cancel(self) -> None: ...


class _AsCompleted(Generic[_T]):
    """What ``as_completed`` returns: iterate it with ``for`` or with ``async for``."""

    def __init__(self, fs: Iterable[_AwaitableOrGenerator[_T]], timeout: float | None) -> None:
        if isfuture(fs) or iscoroutine(fs):
            _close_coroutines([fs])
            raise TypeError(
                f"as_completed() needs an iterable of awaitables, not a single {type(fs).__name__}"
            )
        given = set(fs)
        try:
            check_seconds(timeout, "as_completed() timeout")
            _check_awaitables(given, "as_completed()")
            loop = get_running_loop()
        except (TypeError, ValueError, RuntimeError):
            _close_coroutines(given)
            raise
        self._loop = loop
        # Not done yet; emptied at once when the timeout passes.
        self._todo: set[Future[_T]] = {ensure_future(f, loop=loop) for f in given}
        # Done and not handed out yet, in completion order; None marks a timeout.
        self._done: deque[Future[_T] | None] = deque()
        # Consumers waiting for _done to fill.
        self._waiters: list[Future[None]] = []
        self._left = len(self._todo)  # how many awaitables iteration still hands out
        self._timer: _Cancellable | None = None
        for f in self._todo:
            f.add_done_callback(self._on_done)
        if self._todo and timeout is not None:
            self._timer = loop.call_later(timeout, self._on_timeout)

    def _wake_waiters(self) -> None:
        for waiter in self._waiters:
            _release(waiter)
        self._waiters.clear()

    def _on_done(self, f: Future[_T]) -> None:
        if f not in self._todo:
            return  # the timeout came first
        self._todo.remove(f)
        self._done.append(f)
        if not self._todo and self._timer is not None:
            self._timer.cancel()
        self._wake_waiters()

    def _on_timeout(self) -> None:
        for f in self._todo:
            f.remove_done_callback(self._on_done)
            self._done.append(None)
        self._todo.clear()
        self._wake_waiters()

    async def _next_done(self) -> Future[_T]:
        while not self._done:
            waiter: Future[None] = self._loop.create_future()
            self._waiters.append(waiter)
            await waiter
        f = self._done.popleft()
        if f is None:
            raise TimeoutError("as_completed() timed out")
        return f

    async def _next_result(self) -> _T:
        return (await self._next_done()).result()

    def __iter__(self) -> _AsCompleted[_T]:
        return self

    def __next__(self) -> Coroutine[Any, Any, _T]:
        if self._left <= 0:
            raise StopIteration
        self._left -= 1
        return self._next_result()

    def __aiter__(self) -> _AsCompleted[_T]:
        return self

    async def __anext__(self) -> Future[_T]:
        if self._left <= 0:
            raise StopAsyncIteration
        self._left -= 1
        return await self._next_done()


def as_completed(
    fs: Iterable[_AwaitableOrGenerator[_T]], *, timeout: float | None = None
) -> _AsCompleted[_T]:
    """Iterate over ``fs`` in the order they complete.

    ``for aw in as_completed(fs)`` gives awaitables, each returning the next result (or
    raising the next exception) to come in, as asyncio 3.11 does. ``async for f in
    as_completed(fs)`` gives the futures and tasks themselves, done, as asyncio 3.13
    does. Once ``timeout`` seconds pass, each remaining awaitable raises TimeoutError
    (nothing is cancelled); at once if ``timeout`` is zero or less. NaN is a ValueError.
    """
    return _AsCompleted(fs, timeout)


# --- awaiting: await from a generator coroutine ------------------------------------------


def coroutine(
    func: Callable[_P, Generator[Any, Any, _T]],
) -> Callable[_P, Coroutine[object, object, _T]]:
    """Mark a generator function as a coroutine, so ``async def`` code can ``await`` it.

    Inside it, ``yield from`` works on futures, generators and native coroutines alike
    (``yield from treadle.awaiting(aw)`` is the typed way; see docs/typing.md).
    """
    # Typed Coroutine[object, object, _T], not [Any, Any, _T]: an explicit Any in an
    # argument makes mypy give up on gather()'s overloads and infer Any.
    if inspect.iscoroutinefunction(func):
        return func
    target = func.func if isinstance(func, functools.partial) else func
    if not inspect.isgeneratorfunction(target):
        raise TypeError(
            f"treadle.coroutine expects a generator function (a def with yield), got {func!r}"
        )
    return types.coroutine(func)  # type: ignore[return-value]


def awaiting(aw: _AwaitableOrGenerator[_T]) -> Generator[Any, Any, _T]:
    """``yield from awaiting(aw)`` in a generator coroutine is ``await aw`` in ``async def``.

    Works on anything ``await`` takes (native coroutines such as ``treadle.sleep(1)``,
    tasks, futures, ``@treadle.coroutine`` generators) and is typed so that
    ``mypy --strict`` knows the result: ``n = yield from awaiting(queue.get())``.
    """
    if isinstance(aw, types.GeneratorType):
        return aw  # a generator coroutine: ``yield from`` drives it as it is
    _check_awaitables([aw], "awaiting()")
    return aw.__await__()  # type: ignore[union-attr]  # (a generator was returned above)


# --- shield -----------------------------------------------------------------------------


def shield(aw: _AwaitableOrGenerator[_T]) -> Future[_T]:
    """A future of ``aw``'s outcome that can be cancelled without cancelling ``aw``.

    When the task awaiting ``shield(aw)`` is cancelled, ``aw`` keeps running. Its
    exception, if it then fails, is never lost: if ``aw`` was a coroutine (so nobody
    else holds its task) the exception goes to the loop's exception handler; if it was
    a future or task, it stays on that future for its holder (which reports it if no
    one ever retrieves it).
    """
    _check_awaitables([aw], "shield()")
    owned = not isfuture(aw)  # shield() made the task, so nobody else can look at it
    inner = ensure_future(aw)
    if inner.done():
        return inner
    loop = inner.get_loop()
    outer: Future[_T] = loop.create_future()

    def inner_done(inner: Future[_T]) -> None:
        if outer.cancelled():
            if owned and not inner.cancelled() and (exc := inner.exception()) is not None:
                loop.call_exception_handler(
                    {
                        "message": "a shielded task failed after the shield was cancelled",
                        "exception": exc,
                        "future": inner,
                    }
                )
            return
        if inner.cancelled():
            outer.cancel()
        elif (exc := inner.exception()) is not None:
            outer.set_exception(exc)
        else:
            outer.set_result(inner.result())

    def outer_done(outer: Future[_T]) -> None:
        if not inner.done() and not owned:
            inner.remove_done_callback(inner_done)

    inner.add_done_callback(inner_done)
    outer.add_done_callback(outer_done)
    return outer


async def _await(awaitable: Awaitable[_T]) -> _T:
    return await awaitable


def ensure_future(
    obj: Awaitable[_T] | Generator[Any, Any, _T], *, loop: EventLoop | None = None
) -> Future[_T]:
    """``obj`` if it is a future; a Task running it if it is a coroutine, a generator or
    another awaitable."""
    if isfuture(obj):
        fut: Future[_T] = obj  # type: ignore[assignment]
        if loop is not None and fut.get_loop() is not loop:
            raise ValueError("the future belongs to a different loop than the one given")
        return fut
    loop = get_running_loop() if loop is None else loop
    if iscoroutine(obj):
        return loop.create_task(obj)  # type: ignore[arg-type]
    if inspect.isawaitable(obj):
        return loop.create_task(_await(obj))
    raise TypeError(f"a future, a coroutine or an awaitable was expected, got {obj!r}")
