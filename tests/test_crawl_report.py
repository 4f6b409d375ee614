"""Per-URL records (treadle.crawl.records), the final report and the progress line
(treadle.crawl.report)."""

from __future__ import annotations

import json

import pytest
from crawlsite import RECORD_FIELDS

from treadle.crawl.records import Record, status_class
from treadle.crawl.report import ProgressSnapshot, format_report, human_bytes, summarize


def full_record() -> Record:
    return Record(
        url="http://example.com/a",
        status=301,
        next_url="http://example.com/b",
        exception=None,
        size=123,
        content_type="text/html; charset=utf-8",
        encoding="utf-8",
        num_urls=7,
        num_new_urls=3,
        started=0.25,
        elapsed=0.5,
        tries=2,
    )


class TestRecord:
    def test_to_json_is_one_line_with_keys_in_a_stable_order(self) -> None:
        line = full_record().to_json()
        assert "\n" not in line
        assert list(json.loads(line)) == RECORD_FIELDS

    def test_round_trip(self) -> None:
        record = full_record()
        assert Record.from_json(record.to_json()) == record
        assert Record.from_dict(json.loads(record.to_json())) == record

    def test_round_trip_of_an_error_with_awkward_text(self) -> None:
        record = Record(url="http://e.com/\u00e9", exception='OSError: "bad"\nnext line')
        line = record.to_json()
        assert "\n" not in line
        assert Record.from_json(line) == record

    def test_defaults(self) -> None:
        record = Record.from_dict({"url": "http://e.com/"})
        assert record == Record(url="http://e.com/")
        assert (record.status, record.size, record.tries, record.elapsed) == (None, 0, 0, 0.0)

    def test_times_become_floats(self) -> None:
        record = Record.from_dict({"url": "u", "started": 1, "elapsed": 2})
        assert isinstance(record.started, float)
        assert isinstance(record.elapsed, float)

    def test_unknown_or_missing_keys_are_errors(self) -> None:
        with pytest.raises(ValueError, match=r"unknown Record field.*bogus"):
            Record.from_dict({"url": "u", "bogus": 1})
        with pytest.raises(ValueError, match="needs a 'url'"):
            Record.from_dict({"status": 200})
        with pytest.raises(ValueError, match="JSON object"):
            Record.from_json("[1, 2]")

    @pytest.mark.parametrize(
        ("status", "exception", "expected"),
        [
            (200, None, "2xx"),
            (204, None, "2xx"),
            (302, None, "3xx"),
            (404, None, "4xx"),
            (503, None, "5xx"),
            (None, "TimeoutError: ", "error"),
            (None, None, "error"),
            (200, "ValueError: body cut short", "error"),
            (101, None, "other"),
            (999, None, "other"),
        ],
    )
    def test_status_class(self, status: int | None, exception: str | None, expected: str) -> None:
        assert Record(url="u", status=status, exception=exception).status_class == expected
        if exception is None:
            assert status_class(status) == expected


def sample_records() -> list[Record]:
    return [
        Record(url="http://e.com/", status=200, size=1000, elapsed=0.10, tries=1),
        Record(url="http://e.com/a", status=200, size=2000, elapsed=0.90, tries=1),
        Record(url="http://e.com/r", status=301, next_url="http://e.com/a", elapsed=0.01, tries=1),
        Record(url="http://e.com/r2", status=302, next_url="http://e.com/", elapsed=0.02, tries=1),
        Record(url="http://e.com/m", status=404, size=50, elapsed=0.05, tries=1),
        Record(url="http://e.com/x", status=500, size=20, elapsed=0.30, tries=1),
        Record(
            url="http://e.com/slow",
            exception="TimeoutError: read timed out",
            elapsed=5.0,
            tries=4,
        ),
    ]


class TestSummary:
    def test_counts(self) -> None:
        summary = summarize(sample_records(), wall_time=2.0)
        assert summary.pages == 7
        assert summary.by_class == {
            "2xx": 2,
            "3xx": 2,
            "4xx": 1,
            "5xx": 1,
            "error": 1,
            "other": 0,
        }
        assert summary.by_status == {200: 2, 301: 1, 302: 1, 404: 1, 500: 1}
        assert summary.total_bytes == 3070
        assert summary.pages_per_second == 3.5
        assert summary.errors == 1
        assert summary.tries == 10

    def test_zero_wall_time(self) -> None:
        assert summarize([], 0.0).pages_per_second == 0.0


class TestFormatReport:
    def test_totals_and_status_classes(self) -> None:
        text = format_report(sample_records(), 2.0)
        assert "pages            7" in text
        assert "3,070 (3.0 KiB)" in text
        assert "wall time        2.00 s" in text
        assert "pages per second 3.5" in text
        assert "tries            10" in text
        for line in [
            "2xx           2   (200: 2)",
            "3xx           2   (301: 1, 302: 1)",
            "4xx           1   (404: 1)",
            "5xx           1   (500: 1)",
            "error         1",
        ]:
            assert line in text
        assert "other" not in text
        assert text.endswith("\n")

    def test_slowest_pages_slowest_first(self) -> None:
        text = format_report(sample_records(), 2.0, slowest=3)
        section = text.split("Slowest 3\n")[1].split("\n\n")[0].splitlines()
        assert len(section) == 3
        assert section[0].split() == ["5.000", "s", "error", "http://e.com/slow"]
        assert section[1].split() == ["0.900", "s", "200", "http://e.com/a"]
        assert section[2].split() == ["0.300", "s", "500", "http://e.com/x"]

    def test_errors_list_url_and_exception(self) -> None:
        text = format_report(sample_records(), 2.0)
        errors = text.split("Errors (1)\n")[1]
        assert "http://e.com/slow" in errors
        assert "TimeoutError: read timed out" in errors
        assert "http://e.com/m" not in errors  # a 404 is a response, not an error

    def test_errors_are_capped(self) -> None:
        records = [Record(url=f"http://e.com/{i}", exception="OSError: x") for i in range(30)]
        text = format_report(records, 1.0, max_errors=5)
        assert "Errors (30)" in text
        assert "http://e.com/4\n" in text
        assert "http://e.com/5\n" not in text
        assert "... and 25 more" in text

    def test_empty_crawl(self) -> None:
        text = format_report([], 0.0)
        assert "pages            0" in text
        assert "Slowest" not in text
        assert "Errors" not in text

    def test_other_statuses_appear_when_present(self) -> None:
        text = format_report([Record(url="u", status=999)], 1.0)
        assert "other         1   (999: 1)" in text


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (5 * 1024**2, "5.0 MiB"),
        (3 * 1024**3, "3.0 GiB"),
        (2 * 1024**5, "2048.0 TiB"),
    ],
)
def test_human_bytes(n: int, expected: str) -> None:
    assert human_bytes(n) == expected


class TestProgress:
    def test_line_holds_every_number(self) -> None:
        line = ProgressSnapshot(done=1234, queued=56, in_flight=100, errors=3, elapsed=10.0)
        text = line.format()
        assert "\n" not in text
        assert text.split() == [
            "done",
            "1,234",
            "queued",
            "56",
            "busy",
            "100",
            "123.4/s",
            "errors",
            "3",
            "retries",
            "0",
            "10.0s",
        ]
        assert str(line) == text

    def test_width_is_stable_so_it_can_be_redrawn(self) -> None:
        small = ProgressSnapshot(done=1, queued=0, in_flight=1, errors=0, elapsed=0.5)
        large = ProgressSnapshot(done=99999, queued=9999, in_flight=100, errors=99, elapsed=99.0)
        assert len(small.format()) == len(large.format())

    def test_no_division_by_zero_at_start(self) -> None:
        snapshot = ProgressSnapshot(done=0, queued=1, in_flight=0, errors=0, elapsed=0.0)
        assert snapshot.pages_per_second == 0.0
        assert "0.0/s" in snapshot.format()

    def test_waits_and_robots_fetches_fit_80_columns(self) -> None:
        waits = {f"http://host-{i}.example.org:8080": 12.5 for i in range(10)}
        snapshot = ProgressSnapshot(
            done=99999999, queued=9999999, in_flight=9999, errors=99999, elapsed=999999.0,
            retries=99999, host_waits=waits, robots={"https://slow.example": "try 2/4"},
        )
        lines = snapshot.format().splitlines()
        assert len(lines) == 3
        assert all(len(line) <= 79 for line in lines), lines
        assert lines[1].startswith("waiting: host-0.example.org:8080 12.5s")
        assert lines[2] == "robots.txt: slow.example try 2/4"
