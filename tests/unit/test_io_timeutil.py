"""The bottom-layer helpers: huracan.io's atomic writer (all or nothing), huracan.timeutil's
to_utc, and the one infer_timeframe (huracan.data.ohlcv)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from huracan.data.ohlcv import infer_timeframe
from huracan.io import atomic_write, atomic_write_bytes, atomic_write_text
from huracan.timeutil import to_utc


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "result.json"
    target.write_text("old")
    assert atomic_write_text(target, '{"a": 1}') == target
    assert target.read_text() == '{"a": 1}'
    atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


@pytest.mark.parametrize("stage", ["write", "before_replace"])
def test_a_writer_that_raises_leaves_the_old_file_and_no_partial_one(tmp_path, stage):
    target = tmp_path / "part.parquet"
    target.write_bytes(b"complete old content")

    def write(fh):
        fh.write(b"half of the new")
        if stage == "write":
            raise RuntimeError("disk full")

    def hook():
        raise KeyboardInterrupt  # a BaseException: the temporary goes all the same

    with pytest.raises((RuntimeError, KeyboardInterrupt)):
        atomic_write(target, write, temp_name=".tmp-x.parquet",
                     before_replace=hook if stage == "before_replace" else None)
    assert target.read_bytes() == b"complete old content"
    assert [p.name for p in tmp_path.iterdir()] == ["part.parquet"]


def test_a_failed_first_write_creates_nothing(tmp_path):
    def write(fh):
        fh.write(b"partial")
        raise OSError("no space left on device")

    with pytest.raises(OSError, match="no space"):
        atomic_write(tmp_path / "new.json", write)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", [
    "2024-01-01T02:00+02:00",
    "2024-01-01T00:00Z",
    pd.Timestamp("2023-12-31T19:00", tz="America/New_York"),
    datetime(2024, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=1))),
    datetime(2024, 1, 1, tzinfo=UTC),
])
def test_to_utc_converts_an_aware_time_to_the_same_instant(value):
    ts = to_utc(value, naive="raise")
    assert ts == pd.Timestamp("2024-01-01T00:00", tz="UTC")
    assert str(ts.tz) == "UTC"


@pytest.mark.parametrize("value", ["2024-01-01 00:00", datetime(2024, 1, 1),
                                   np.datetime64("2024-01-01T00:00"), pd.Timestamp("2024-01-01")])
def test_to_utc_reads_a_naive_time_as_utc_or_refuses_it(value):
    assert to_utc(value) == pd.Timestamp("2024-01-01T00:00", tz="UTC")
    assert to_utc(value).tzinfo is not None
    with pytest.raises(ValueError, match=r"start=.* is naive: pass a UTC-aware time"):
        to_utc(value, "start", naive="raise")


@pytest.mark.parametrize("value", ["not a time", None, pd.NaT, float("nan")])
def test_to_utc_refuses_what_is_not_a_time(value):
    with pytest.raises(ValueError, match="cannot read until="):
        to_utc(value, "until")


def test_infer_timeframe_is_the_commonest_spacing():
    hourly = pd.Series(pd.date_range("2024-01-01", periods=48, freq="1h", tz="UTC"))
    assert infer_timeframe(hourly) == "1h"
    # a gap, a duplicate, disorder and jitter of a few seconds change nothing
    messy = pd.concat([hourly.drop(index=range(10, 14)), hourly.iloc[[5]]]).sample(
        frac=1.0, random_state=0) + pd.to_timedelta(np.arange(45) % 3, unit="s")
    assert infer_timeframe(messy) == "1h"
    for freq, tf in (("5min", "5m"), ("8h", "8h"), ("1D", "1d"), ("7D", "1w")):
        assert infer_timeframe(pd.Series(pd.date_range("2024-01-01", periods=5,
                                                       freq=freq))) == tf


@pytest.mark.parametrize(("stamps", "why"), [
    (["2024-01-01"], "fewer than two"),
    (["2024-01-01", "2024-01-01"], "fewer than two"),
    (["2024-01-01", "2024-02-01", "2024-03-01"], "28 days or more"),
])
def test_infer_timeframe_refuses_without_a_regular_spacing(stamps, why):
    with pytest.raises(ValueError, match=why):
        infer_timeframe(pd.Series(pd.to_datetime(stamps, utc=True)))
