"""The Parquet candle lake: partitions, append-only-new, missing ranges, compaction."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest

from huracan.data.lake import CandleLake, symbol_from_key, symbol_key


@pytest.fixture
def bars(spot_1h) -> pd.DataFrame:
    return spot_1h.iloc[:100].reset_index(drop=True)


def test_partition_layout_and_symbol_keys(tmp_path):
    lake = CandleLake(tmp_path)
    assert lake.partition("Binance", "BTC/USDT:USDT", "1h") == (
        tmp_path / "ohlcv" / "exchange=binance" / "symbol=BTC-USDT_USDT" / "timeframe=1h")
    for s in ("BTC/USDT", "BTC/USDT:USDT", "1000BONK/USDT:USDT"):
        assert symbol_from_key(symbol_key(s)) == s


def test_append_writes_only_new_bars(tmp_path, bars):
    lake = CandleLake(tmp_path)
    first = lake.append(bars.iloc[:60], "binance", "BTC/USDT", "1h")
    assert first.written == 60 and first.skipped == 0 and first.path is not None
    again = lake.append(bars.iloc[:60], "binance", "BTC/USDT", "1h")
    assert again.written == 0 and again.path is None
    more = lake.append(bars.iloc[40:], "binance", "BTC/USDT", "1h")
    assert more.written == 40 and more.skipped == 20
    out = lake.read("binance", "BTC/USDT", "1h")
    pd.testing.assert_frame_equal(out, bars)
    assert len(lake.parts("binance", "BTC/USDT", "1h")) == 2
    schema = pq.read_schema(first.path)
    assert str(schema.field("timestamp").type) == "timestamp[ms, tz=UTC]"
    assert lake.series() == [("binance", "BTC/USDT", "1h")]


def test_read_window_and_hive_partitions(tmp_path, bars):
    lake = CandleLake(tmp_path)
    lake.append(bars, "binance", "BTC/USDT", "1h")
    part = lake.read("binance", "BTC/USDT", "1h", start=bars.timestamp[10], end=bars.timestamp[20])
    assert len(part) == 10 and part.timestamp.iloc[0] == bars.timestamp[10]
    everything = pd.read_parquet(tmp_path / "ohlcv")  # any Hive-aware reader sees the keys
    assert set(everything["exchange"].astype(str)) == {"binance"}
    assert set(everything["timeframe"].astype(str)) == {"1h"}


def test_missing_ranges(tmp_path, bars):
    lake = CandleLake(tmp_path)
    ts = bars.timestamp
    assert lake.missing_ranges("binance", "BTC/USDT", "1h", ts[0], ts[50]) == [(ts[0], ts[50])]
    lake.append(bars.iloc[20:40], "binance", "BTC/USDT", "1h")
    assert lake.missing_ranges("binance", "BTC/USDT", "1h", ts[0], ts[60]) == [
        (ts[0], ts[20]), (ts[40], ts[60])]
    assert lake.missing_ranges("binance", "BTC/USDT", "1h", ts[20], ts[40]) == []
    assert lake.missing_ranges("okx", "BTC/USDT", "1h", ts[20], ts[40]) == [(ts[20], ts[40])]


def test_compact_merges_parts(tmp_path, bars):
    lake = CandleLake(tmp_path)
    for i in range(0, 100, 25):
        lake.append(bars.iloc[i:i + 25], "binance", "BTC/USDT", "1h")
    assert len(lake.parts("binance", "BTC/USDT", "1h")) == 4
    lake.compact("binance", "BTC/USDT", "1h")
    assert len(lake.parts("binance", "BTC/USDT", "1h")) == 1
    pd.testing.assert_frame_equal(lake.read("binance", "BTC/USDT", "1h"), bars)


def test_append_refuses_unvalidated_shapes(tmp_path, bars):
    lake = CandleLake(tmp_path)
    with pytest.raises(ValueError, match="naive"):
        lake.append(bars.assign(timestamp=bars.timestamp.dt.tz_localize(None)), "b", "X/Y", "1h")
    with pytest.raises(ValueError, match="duplicated"):
        lake.append(pd.concat([bars, bars.iloc[:1]]), "b", "X/Y", "1h")
    with pytest.raises(ValueError, match="volume"):
        lake.append(bars.drop(columns="volume"), "b", "X/Y", "1h")
