"""Run the tour's stages against one slow server, and draw the table and timelines.

The runner knows a stage only by its module name and its ``fetch_all(urls)``, which
returns one record per URL with ``url``, ``body``, ``started`` and ``finished``
(``time.monotonic()``). Stages are imported when run, so registering one is one line
in STAGES. Imports only the standard library and ``treadle.tour.server``.
"""

from __future__ import annotations

import importlib
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from treadle.tour.server import expected_body


@dataclass(frozen=True)
class Stage:
    """One stage of the tour."""

    number: int
    module: str  # the module's name inside treadle.tour
    idea: str  # what it adds to the stage before, for the table


STAGES: list[Stage] = [
    Stage(1, "stage1_blocking", "blocking sockets, one URL after another"),
    Stage(2, "stage2_callbacks", "non-blocking sockets, a selector, callbacks"),
    Stage(3, "stage3_concurrent_callbacks", "callbacks for every URL at once"),
    Stage(4, "stage4_future", "a Future stands for a pending result"),
    Stage(5, "stage5_generators", "a Task drives generators (yield from)"),
    Stage(6, "stage6_treadle", "async/await on treadle's own loop"),
]


def find_stage(number: int) -> Stage | None:
    """The registered stage with this number, if there is one."""
    return next((stage for stage in STAGES if stage.number == number), None)


class FetchRecord(Protocol):
    """What every stage's fetch_all returns for each URL."""

    @property
    def url(self) -> str: ...
    @property
    def body(self) -> bytes: ...
    @property
    def started(self) -> float: ...
    @property
    def finished(self) -> float: ...


FetchAll = Callable[[list[str]], Sequence[FetchRecord]]


@dataclass(frozen=True)
class StageRun:
    """One stage's run: its records and how long the whole fetch_all took."""

    stage: Stage
    urls: list[str]
    records: Sequence[FetchRecord]
    began: float  # time.monotonic() just before fetch_all
    seconds: float

    @property
    def correct(self) -> int:
        """How many URLs came back, in order, with exactly the server's body."""
        return sum(
            record.url == url and record.body == expected_body(urllib.parse.urlsplit(url).path)
            for url, record in zip(self.urls, self.records, strict=False)
        )


def load(stage: Stage) -> FetchAll:
    """Import a stage's module and return its fetch_all."""
    module = importlib.import_module(f"treadle.tour.{stage.module}")
    fetch_all: FetchAll = module.fetch_all
    return fetch_all


def run_stage(stage: Stage, urls: list[str]) -> StageRun:
    """Run one stage's fetch_all over urls and time it."""
    fetch_all = load(stage)
    began = time.monotonic()
    records = fetch_all(list(urls))
    return StageRun(stage, list(urls), records, began, time.monotonic() - began)


def format_table(runs: Sequence[StageRun]) -> str:
    """One row per run: stage, idea, URLs fetched, seconds, speedup over stage 1."""
    baseline = next((run.seconds for run in runs if run.stage.number == 1), None)
    fetched = [f"{run.correct}/{len(run.urls)}" for run in runs]
    idea_width = max([len("idea"), *(len(run.stage.idea) for run in runs)])
    urls_width = max([len("URLs"), *map(len, fetched)])
    lines = [f"stage  {'idea':<{idea_width}}  {'URLs':<{urls_width}}  seconds  speedup"]
    for run, count in zip(runs, fetched, strict=True):
        speedup = "-" if baseline is None else f"{baseline / max(run.seconds, 1e-9):.1f}x"
        lines.append(
            f"{run.stage.number:>5}  {run.stage.idea:<{idea_width}}  {count:<{urls_width}}"
            f"  {run.seconds:>7.2f}  {speedup:>7}"
        )
    return "\n".join(lines)


def format_timelines(runs: Sequence[StageRun], width: int = 50) -> str:
    """For each run, a row per URL with ``#`` from its start to its finish.

    Every run shares one time axis (the slowest run's length), so stages can be
    compared by eye: serial stages make a staircase, concurrent ones a block.
    """
    scale = max([1e-9, *(run.seconds for run in runs)])

    def column(seconds: float) -> int:
        return min(width, max(0, round(seconds / scale * width)))

    blocks = []
    for run in runs:
        labels = [urllib.parse.urlsplit(record.url).path or "/" for record in run.records]
        label_width = max([1, *map(len, labels)])
        rows = [f"stage {run.stage.number}: {run.stage.idea} ({run.seconds:.2f} s)"]
        for label, record in zip(labels, run.records, strict=True):
            start = column(record.started - run.began)
            end = max(start + 1, column(record.finished - run.began))
            bar = " " * start + "#" * (end - start)
            rows.append(f"  {label:>{label_width}} |{bar:<{width}}|")
        axis = f"0{scale:>{width - 1}.2f} s"
        rows.append(f"  {'':>{label_width}}  {axis}")
        blocks.append("\n".join(rows))
    return "\n\n".join(blocks)
