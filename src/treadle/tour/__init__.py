"""The tour: the talk's framework grown in runnable stages, one idea per stage.

Read the stages in order: stage1_blocking, stage2_callbacks,
stage3_concurrent_callbacks, stage4_future, stage5_generators, and stage6_treadle, the
same program on treadle itself. Stages 1 to 5 use only the standard library; each runs
by itself (``python -m treadle.tour.stage3_concurrent_callbacks
URL...``); ``server`` is the slow server they are measured against, ``runner`` and
``cli`` drive ``treadle tour``. This package imports nothing eagerly, so running a
stage with ``python -m`` loads only that stage.
"""
