"""Traceback trimming: an exception shows the user's frames, not treadle's plumbing.

The await chain runs through Task steps and Future plumbing; a user reading a
traceback wants their own frames in call order, so Task unlinks treadle's frames from
every exception a coroutine raises (except in debug mode). A leaf: imports nothing
from treadle.
"""

from __future__ import annotations

import itertools
import os
import types

__all__ = ["trim_traceback", "trim_tracebacks"]

# The directory of treadle's own source (this file is in its core/ folder): frames from
# any file under it are trimmed. So are those of the compiled build, which mypyc names
# by the path they were compiled from, relative to the project (setup.py): src/treadle/.
_OWN_FILES = (os.path.dirname(os.path.dirname(__file__)), os.path.join("src", "treadle", ""))


def trim_traceback(tb: types.TracebackType | None) -> types.TracebackType | None:
    """``tb`` without treadle's own frames, except the innermost (where the error arose)."""
    if tb is None:
        return None
    frames = []
    while tb is not None:
        frames.append(tb)
        tb = tb.tb_next
    kept = [
        entry
        for i, entry in enumerate(frames)
        if i == len(frames) - 1 or not entry.tb_frame.f_code.co_filename.startswith(_OWN_FILES)
    ]
    for entry, following in itertools.pairwise(kept):
        entry.tb_next = following
    kept[-1].tb_next = None
    return kept[0]


def trim_tracebacks(exc: BaseException) -> None:
    """Trim the traceback of ``exc`` and of every exception chained to it.

    Follows ``__cause__``, ``__context__`` and the members of an exception group, each
    exception once (a chain may loop back on itself).
    """
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        current.__traceback__ = trim_traceback(current.__traceback__)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                pending.append(linked)
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
