"""treadle's core: the part of the talk to read first, in this order.

``loop.py`` (the loop's design principles, then ``_run_once``), ``handles.py``,
``futures.py``, ``tasks.py`` (``Task._step`` and the suspend/resume seam), then the
leaves ``clock.py``, ``running.py`` and ``tracebacks.py``; docs/map.md has the whole map.
Its modules import nothing from treadle outside core/ but the leaves ``errors`` and
``describe``; this file imports nothing at all (import the modules:
``treadle.core.tasks``).
"""
