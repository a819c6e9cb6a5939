"""Loading real candles, and rejecting corrupted copies with the rule named."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from huracan.data.ohlcv import (
    DataValidationError,
    bars_per_year,
    find_gaps,
    load_ohlcv,
    resample_ohlcv,
    timeframe_to_timedelta,
)
from huracan.data.quality import JsonlQualitySink


@pytest.fixture(scope="module")
def real(sample_path) -> pd.DataFrame:
    return pd.read_parquet(sample_path).iloc[:600].reset_index(drop=True)


def test_shipped_sample_loads_as_complete_hours(sample_path):
    df, src = load_ohlcv(sample_path, "1h")
    assert src == "5m"
    assert df.timestamp.diff().dropna().eq(pd.Timedelta("1h")).all()
    # 71,769 five-minute bars = 5,980 full hours + 9 bars of the unfinished last hour (dropped)
    assert len(df) == 5980
    assert str(df.timestamp.dt.tz) == "UTC"


def test_resample_aggregates_ohlcv(real):
    hourly = resample_ohlcv(real, "5m", "1h")
    first = real.iloc[:12]
    row = hourly.iloc[0]
    assert row.open == first.open.iloc[0] and row.close == first.close.iloc[-1]
    assert row.high == first.high.max() and row.low == first.low.min()
    assert row.volume == pytest.approx(first.volume.sum())


def test_resample_drops_incomplete_bars(real):
    holed = real.drop(index=[15]).reset_index(drop=True)  # one 5m bar missing in hour 2
    hourly = resample_ohlcv(holed, "5m", "1h")
    assert pd.Timestamp("2024-01-01 01:00", tz="UTC") not in set(hourly.timestamp)
    assert len(hourly) == len(resample_ohlcv(real, "5m", "1h")) - 1


def test_real_gaps_are_reported(candles_1h, tmp_path):
    gaps = find_gaps(candles_1h.timestamp, "1h")
    assert len(gaps) == 27  # ../shared/data/README.md: 27 gaps in spot 1h 2018-2024
    longest = max(gaps, key=lambda g: g.bars_missing)
    assert longest.bars_missing == 33  # 2018-02-08 00:00 -> 2018-02-09 10:00: 34 h apart
    assert longest.start.strftime("%Y-%m-%d") == "2018-02-08"


def test_timeframes():
    assert bars_per_year("1h") == 8760
    assert bars_per_year("5m") == 105120
    assert timeframe_to_timedelta("4h") == pd.Timedelta(hours=4)
    with pytest.raises(ValueError, match="timeframe"):
        timeframe_to_timedelta("1x")


def _corrupt(df: pd.DataFrame, kind: str) -> pd.DataFrame:
    df = df.copy()
    if kind == "duplicate":
        df.loc[10, "timestamp"] = df.loc[9, "timestamp"]
    elif kind == "shuffled":
        df = df.sample(frac=1.0, random_state=0).reset_index(drop=True)
    elif kind == "nan_close":
        df.loc[20, "close"] = np.nan
    elif kind == "negative_price":
        df.loc[30, "low"] = -1.0
    elif kind == "high_below_low":
        df.loc[40, "high"] = df.loc[40, "low"] - 1.0
    elif kind == "missing_column":
        df = df.drop(columns=["volume"])
    elif kind == "naive":
        df["timestamp"] = df["timestamp"].dt.tz_localize(None)
    return df


CASES = {
    "duplicate": ("unique_timestamp", "row 10"),
    "shuffled": ("increasing_timestamp", "row "),
    "nan_close": ("not_null", "'close' row 20"),
    "negative_price": ("positive_price", "'low' row 30"),
    "high_below_low": ("high_ge_low", "'high' row 40"),
    "missing_column": ("missing_column", "volume"),
    "naive": ("timestamp_timezone", "naive"),
}


@pytest.mark.parametrize("kind", sorted(CASES))
@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_corrupted_files_are_rejected_naming_rule(real, tmp_path, kind, fmt):
    bad = _corrupt(real, kind)
    path = tmp_path / f"bad.{fmt}"
    if fmt == "parquet":
        bad.to_parquet(path)
    else:
        if kind == "naive":
            bad = bad.assign(timestamp=bad.timestamp.dt.strftime("%Y-%m-%d %H:%M:%S"))
        bad.to_csv(path, index=False)
    sink = JsonlQualitySink(tmp_path / "dq.jsonl")
    with pytest.raises(DataValidationError) as err:
        load_ohlcv(path, "1h", symbol="BTC/USDT", sink=sink)
    rule, where = CASES[kind]
    msg = str(err.value)
    assert "\n" not in msg
    assert str(path) in msg and f"[rule: {rule}]" in msg and where in msg
    logged = [json.loads(line) for line in (tmp_path / "dq.jsonl").read_text().splitlines()]
    assert logged[-1]["issue_type"] == rule and logged[-1]["severity"] == "critical"
    assert logged[-1]["symbol"] == "BTC/USDT"


def test_csv_with_utc_offsets_loads(real, tmp_path):
    path = tmp_path / "ok.csv"
    real.assign(timestamp=real.timestamp.dt.strftime("%Y-%m-%dT%H:%M:%S+00:00")).to_csv(
        path, index=False)
    df, src = load_ohlcv(path)
    assert src == "5m" and len(df) == len(real)
    pd.testing.assert_series_equal(df.close, real.close)


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(DataValidationError, match="file not found"):
        load_ohlcv(tmp_path / "nope.parquet")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(DataValidationError, match="unsupported file type"):
        load_ohlcv(tmp_path / "x.json")
