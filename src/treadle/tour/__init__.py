"""The tour: the talk's framework grown in runnable stages, one idea per stage.

Read the stages in order: stage1_blocking, stage2_callbacks,
stage3_concurrent_callbacks, stage4_future, stage5_generators. Each uses only the
standard library and runs by itself (``python -m treadle.tour.stage3_concurrent_callbacks
URL...``); ``server`` is the slow server they are measured against, ``runner`` and
``cli`` drive ``treadle tour``. This package imports nothing eagerly, so running a
stage with ``python -m`` loads only that stage.
"""
