"""The ``treadle`` command's dispatcher: usage, unknown commands, a missing extra."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from treadle.__main__ import main


def test_no_command_prints_usage_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: treadle COMMAND" in capsys.readouterr().out


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("crawl", "demo-site", "tour"):
        assert command in out


def test_an_unknown_command_is_one_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crawll"]) == 2
    assert "unknown command 'crawll'" in capsys.readouterr().err


def test_a_missing_extra_names_the_package_and_the_install_command() -> None:
    # Run in a fresh interpreter where httptools cannot be imported.
    script = (
        "import sys; sys.modules['httptools'] = None\n"
        "from treadle.__main__ import main\n"
        "sys.exit(main(['crawl', '--demo']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "pip install 'treadle[crawl]'" in done.stderr
    assert "httptools" in done.stderr


def test_a_reader_that_stops_early_ends_the_command_quietly() -> None:
    # `treadle ... | head`: the reader is gone before the report is written (its end of
    # the pipe is closed at once), so every write fails; no traceback may follow.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "treadle", "crawl", "--demo", "--pages", "30",
             "--latency", "0", "-q"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 141
