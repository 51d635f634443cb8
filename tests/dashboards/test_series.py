from __future__ import annotations

import pytest

from dashboards import paths, selectors, services
from dashboards.recorder import Recorder
from webconnect.realtime import protocol


def test_it_finds_numbers_by_dotted_path() -> None:
    payload = {"temp": 21.5, "cpu": {"load": [0.5, 0.75]}}
    assert paths.number_at(payload, "temp") == 21.5
    assert paths.number_at(payload, "cpu.load.1") == 0.75
    assert paths.number_at(3, "") == 3.0


def test_it_says_when_a_path_matches_nothing_or_is_not_numeric() -> None:
    with pytest.raises(paths.PathError) as missing:
        paths.number_at({"temp": 1}, "humidity")
    assert missing.value.code == "no_match"
    assert "matches nothing" in missing.value.message
    with pytest.raises(paths.PathError) as text:
        paths.number_at({"temp": "hot"}, "temp")
    assert text.value.code == "not_numeric"
    assert "'hot'" in text.value.message
    with pytest.raises(paths.PathError):
        paths.number_at({"ok": True}, "ok")  # a boolean is not a reading


def test_a_null_value_is_skipped_without_a_problem() -> None:
    extracted = services.extract_points({"a": None, "b": 2, "c": "x"}, ["a", "b", "c"])
    assert extracted.points == [("b", 2.0)]
    assert [p["path"] for p in extracted.problems] == ["c"]


@pytest.mark.django_db
def test_query_downsamples_in_the_database() -> None:
    services.points_store(("demo.s", "temp", 1000 * i, float(i)) for i in range(100))
    rows = selectors.series_query(channel="demo.s", path="temp", from_ms=0, to_ms=99_000, step_ms=10_000)
    assert len(rows) == 10
    assert rows[0] == {"t": 0, "avg": 4.5, "min": 0.0, "max": 9.0, "n": 10}
    assert rows[-1]["t"] == 90_000
    assert rows[-1]["max"] == 99.0
    # The range is inclusive and other series do not leak in.
    services.points_store([("demo.s", "humidity", 5000, 50.0), ("demo.t", "temp", 5000, 500.0)])
    rows = selectors.series_query(channel="demo.s", path="temp", from_ms=5000, to_ms=5000, step_ms=1000)
    assert rows == [{"t": 5000, "avg": 5.0, "min": 5.0, "max": 5.0, "n": 1}]


def test_it_refuses_bad_ranges() -> None:
    with pytest.raises(selectors.QueryError, match="after"):
        selectors.check_range(10, 5, 1)
    with pytest.raises(selectors.QueryError, match="more than the limit"):
        selectors.check_range(0, 10**12, 1)
    with pytest.raises(selectors.QueryError, match="at least 1"):
        selectors.check_range(0, 10, 0)


@pytest.mark.django_db
def test_recorder_stores_widget_paths_and_counts_bad_values() -> None:
    recorder = Recorder(buffer_size=10)
    recorder.refresh({"demo.s": {"temp", "humidity"}})
    prefix, suffix = protocol.message_frame_parts("demo.s", {"temp": 20.5, "humidity": "wet"}, {}, "json")
    recorder.deliver("demo.s", 1, protocol.complete_message(prefix, 1, "e", suffix))
    recorder.deliver("demo.s", 0, '{"header":{"type":"join"}}')  # not a channel message
    assert recorder.flush() == 1
    assert recorder.rejected == 1
    assert (
        selectors.series_query(channel="demo.s", path="temp", from_ms=0, to_ms=2**62, step_ms=2**60)[0]["avg"] == 20.5
    )


def test_recorder_buffer_is_bounded() -> None:
    recorder = Recorder(buffer_size=3)
    for offset in range(1, 11):
        recorder.deliver("demo.s", offset, "{}")
    assert len(recorder.buffer) == 3
    assert recorder.dropped == 7
