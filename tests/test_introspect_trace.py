"""treadle.trace / TREADLE_TRACE: the Trace Event Format, checked event by event.

The file must be a JSON array whose events have the fields the format requires, whose
``B``/``E`` spans match on every track, whose timestamps never go back on a track, and
whose spans say what happened: a task's steps, its waits named by what it awaited, the
loop's iterations, and a blocking callback marked as such.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

import treadle

ROOT = Path(__file__).resolve().parents[1]

REQUIRED = {"name", "ph", "pid", "tid"}
PHASES = {"B", "E", "X", "i", "M"}


def validate(events: list[dict[str, Any]]) -> dict[int, str]:
    """Check the format; the name of each track, by tid."""
    assert isinstance(events, list) and events
    tracks: dict[int, str] = {}
    open_spans: dict[int, list[str]] = defaultdict(list)
    last_ts: dict[int, float] = {}
    for event in events:
        assert event.keys() >= REQUIRED, event
        assert event["ph"] in PHASES, event
        tid = event["tid"]
        if event["ph"] == "M":
            if event["name"] == "thread_name":
                tracks[tid] = event["args"]["name"]
            continue
        assert isinstance(event["ts"], int | float), event
        # Timestamps never go back on a track (an X event's end counts), to the
        # nanosecond the file is written in (ts + dur in floating point may be off by less).
        assert event["ts"] >= last_ts.get(tid, 0.0) - 1e-3, (event, last_ts.get(tid))
        last_ts[tid] = event["ts"] + event.get("dur", 0.0)
        if event["ph"] == "B":
            open_spans[tid].append(event["name"])
        elif event["ph"] == "E":
            assert open_spans[tid], f"an E with no B on track {tid}: {event}"
            begun = open_spans[tid].pop()
            assert event["name"] in (begun, "iteration") or begun.startswith(event["name"]), (
                begun,
                event,
            )
        elif event["ph"] == "X":
            assert event["dur"] >= 0
    assert not any(open_spans.values()), f"spans never ended: {dict(open_spans)}"
    return tracks


def spans_of(events: list[dict[str, Any]], tid: int) -> list[str]:
    return [e["name"] for e in events if e["tid"] == tid and e["ph"] == "B"]


# A callback that blocks the loop, and the threshold the trace marks it by: far apart
# from each other and from what a busy machine's stall adds to an ordinary callback, so
# that only this one is marked BLOCKING.
BLOCKS_FOR = 0.5
SLOW = 0.4


async def contended() -> None:
    lock = treadle.Lock()

    async def worker() -> None:
        async with lock:
            await treadle.sleep(0.01)

    async with treadle.TaskGroup() as group:
        group.create_task(worker(), name="w1")
        group.create_task(worker(), name="w2")
    treadle.get_running_loop().call_soon(time.sleep, BLOCKS_FOR)
    await treadle.sleep(0.01)


def test_a_trace_has_task_tracks_waits_iterations_and_blocking_callbacks(tmp_path: Path) -> None:
    path = tmp_path / "trace.json"
    with treadle.trace(path, slow=SLOW):
        treadle.run(contended())
    events = json.loads(path.read_text())
    tracks = validate(events)
    by_name = {name: tid for tid, name in tracks.items()}
    assert {"w1", "w2", "Task-1"} <= by_name.keys() or {"w1", "w2"} <= by_name.keys()
    [loop_tid] = [tid for tid, name in tracks.items() if name.startswith("loop (")]
    w1, w2 = spans_of(events, by_name["w1"]), spans_of(events, by_name["w2"])
    assert w1[0] == "run" and w1[1].startswith("wait: sleep(0.01) until loop time")
    assert w2[1].startswith("wait: Lock.acquire on <treadle.locks.Lock")
    assert any(e["name"] == "created" and e["tid"] == by_name["w1"] for e in events)
    loop_events = [e for e in events if e["tid"] == loop_tid and e["ph"] != "M"]
    assert any(e["name"].startswith("iteration (") for e in loop_events)
    assert any(e["name"] == "poll" for e in loop_events)
    blocking = [e for e in loop_events if e["name"].startswith("BLOCKING: ")]
    assert [e["name"] for e in blocking] == [f"BLOCKING: module.sleep({BLOCKS_FOR})"]
    assert blocking[0]["dur"] >= BLOCKS_FOR * 1e6


def test_a_trace_begun_inside_a_running_program(tmp_path: Path) -> None:
    path = tmp_path / "inner.json"

    async def main() -> None:
        await treadle.sleep(0)
        with treadle.trace(path):
            await contended()
        await treadle.sleep(0)

    treadle.run(main())
    tracks = validate(json.loads(path.read_text()))
    assert {"w1", "w2"} <= set(tracks.values())


def test_traces_do_not_nest(tmp_path: Path) -> None:
    with (
        treadle.trace(tmp_path / "a.json"),
        pytest.raises(RuntimeError, match="do not nest"),
        treadle.trace(tmp_path / "b.json"),
    ):
        pass


PROGRAM = """
import sys, treadle
async def child():
    await treadle.sleep(0.001)
async def main():
    await treadle.gather(*(treadle.create_task(child(), name=f"c{i}") for i in range(3)))
if sys.argv[1] == "aio":
    import treadle.aio
    treadle.aio.run(main())
else:
    treadle.run(main())
"""


@pytest.mark.parametrize("flavour", ["native", "aio"])
def test_treadle_trace_traces_a_whole_program(tmp_path: Path, flavour: str) -> None:
    pattern = str(tmp_path / "prog-{pid}.json")
    proc = subprocess.run(
        [sys.executable, "-c", PROGRAM, flavour],
        env={**os.environ, "TREADLE_TRACE": pattern, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    [written] = list(tmp_path.glob("prog-*.json"))
    assert written.name != "prog-{pid}.json"
    events = json.loads(written.read_text())
    tracks = validate(events)
    assert {"c0", "c1", "c2"} <= set(tracks.values())
    by_name = {name: tid for tid, name in tracks.items()}
    assert spans_of(events, by_name["c0"])[1].startswith("wait: sleep(0.001) until loop time")
