"""A fast, meaningful slice of the conformance run (tools/aio_conformance.py): CPython's
own asyncio tests of the loop's core services, on stock asyncio and on treadle.aio.

The slice: the epoll loop's tests of callbacks and timers, readers and writers, TCP,
UNIX and UDP connections and servers, TLS, pipes, subprocesses, signals, executors and
closing (test_events), the ``sock_*`` methods (test_sock_lowlevel), and debug mode's
slow-callback log (test_base_events). Every loop-exercising test of it that passes on
stock asyncio must pass on treadle.aio. The full run takes minutes per Python version
(see docs/aio.md).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parent.parent / "tools" / "aio_conformance.py"

SLICES = [
    (
        "test_events",
        r"EPollEventLoopTests\.test_(call_soon|call_later|close|run_until_complete|"
        r"reader_callback|writer_callback|remove_fds_after_closing|internal_fds|"
        r"create_connection|create_server|create_unix_server|create_datagram_endpoint|"
        r"create_ssl_connection|read_pipe|write_pipe|signal_handling_args|"
        r"subprocess_exec|subprocess_interactive|run_in_executor|prompt_cancellation)$",
    ),
    ("test_sock_lowlevel", r"EPoll"),
    ("test_base_events", r"slow_callbacks"),
]


def load_tool():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("aio_conformance", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(600)
@pytest.mark.parametrize(("module", "select"), SLICES, ids=[m for m, _ in SLICES])
def test_cpythons_asyncio_tests_pass_on_treadle_aio(module: str, select: str) -> None:
    tool = load_tool()
    score, runs = tool.conformance(sys.executable, [module], select, timeout=60)
    assert score.exercising, f"the slice of {module} selected no loop-exercising test"
    details = {test: runs["treadle"][module].details.get(test, "") for test in score.failed}
    assert not score.failed, "\n\n".join(f"{t}: {score.failed[t]}\n{d}" for t, d in details.items())
