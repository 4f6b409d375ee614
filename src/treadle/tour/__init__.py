"""The tour: the talk's framework grown in runnable stages, one idea per stage.

Read the stages in order: stage1_blocking, stage2_callbacks,
stage3_concurrent_callbacks, stage4_future, stage5_generators, and stage6_treadle, the
same program on treadle itself. Each stage file holds its idea and nothing else: what
every stage needs and none is about (URLs, the request, the per-URL record, running a
stage by hand) is in ``common``, and what a stage keeps from an earlier one it imports
from the stage that introduced it, so the file is its lesson. Stages 1 to 5 use only
the standard library, ``common`` and earlier stages; each runs by itself (``python -m
treadle.tour.stage3_concurrent_callbacks URL...``); ``server`` is the slow server they
are measured against, ``runner`` and ``cli`` drive ``treadle tour``. This package
imports nothing eagerly, so running a stage with ``python -m`` loads only that stage,
``common`` and the stages it builds on.
"""
