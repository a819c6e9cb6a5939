"""The prediction log's store functions (huracan.data.prediction_store): rows, content-addressed
inputs Parquet, insert/read on SQLite and Postgres, and the logged candles of a span of bars."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from huracan.data.lake import CandleLake
from huracan.data.prediction_store import (
    default_inputs_root,
    inputs_digest,
    insert_predictions,
    logged_candles,
    prediction_row,
    read_predictions,
    write_inputs,
)
from huracan.db.tables import Prediction

T0 = pd.Timestamp("2024-01-01", tz="UTC")


def candles(n: int, start: pd.Timestamp = T0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    return pd.DataFrame({"timestamp": pd.date_range(start, periods=n, freq="1h", tz="UTC"),
                         "open": close, "high": close * 1.01, "low": close * 0.99,
                         "close": close, "volume": rng.uniform(1, 2, n)})


def answer_row(ts: pd.Timestamp, forecast: float = 0.001) -> dict:
    return {"timestamp": ts, "forecast": forecast, "regime": "normal", "position": 1.0,
            "size": 1.0, "leverage": 1.0, "sizer": None, "registered_model": "huracan-BTCUSDT-1h",
            "model_version": "3", "run_id": "abc"}


def row_for(frame: pd.DataFrame, root, served_at, **kw) -> dict:
    digest = inputs_digest(frame)
    path = write_inputs(root, digest, frame, symbol="BTC/USDT", timeframe="1h")
    return prediction_row(answer_row(frame["timestamp"].iloc[-1]), source="serve",
                          symbol="BTC/USDT", timeframe="1h", execution={"fee": 0.001},
                          inputs_digest=digest, inputs_rows=len(frame), inputs_path=path,
                          served_at=served_at, latency_ms=12.5, **kw)


def test_prediction_row_has_the_tables_columns_and_nulls_for_nan():
    row = prediction_row({**answer_row(T0), "position": np.nan}, source="size",
                         symbol="BTC/USDT", timeframe="1h", execution=None,
                         inputs_digest="ab" * 32, inputs_rows=10, inputs_path=None,
                         served_at="2024-01-01T01:00:00", latency_ms=None)
    assert set(row) == {c.name for c in Prediction.__table__.columns} - {"id"}
    assert row["position"] is None and row["forecast"] == 0.001
    assert row["bar_time"] == T0.to_pydatetime() and row["served_at"].tzinfo is not None
    with pytest.raises(ValueError, match="source 'web'"):
        prediction_row(answer_row(T0), source="web", symbol="X", timeframe="1h",
                       execution=None, inputs_digest="", inputs_rows=1, inputs_path=None,
                       served_at=T0, latency_ms=None)


def test_write_inputs_is_content_addressed_and_idempotent(tmp_path):
    frame = candles(50)
    wire = frame.assign(timestamp=frame["timestamp"].map(lambda t: t.isoformat()))
    digest = inputs_digest(wire)  # strings or datetimes: the same candles, the same digest
    assert digest == inputs_digest(frame)
    path = write_inputs(tmp_path, digest, wire, symbol="BTC/USDT", timeframe="1h")
    assert path == tmp_path / "symbol=BTC-USDT" / "timeframe=1h" / digest[:2] / f"{digest}.parquet"
    assert inputs_digest(pd.read_parquet(path)) == digest
    mtime = path.stat().st_mtime_ns
    assert write_inputs(tmp_path, digest, wire, symbol="BTC/USDT", timeframe="1h") == path
    assert path.stat().st_mtime_ns == mtime  # not rewritten
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporaries


def test_default_inputs_root(monkeypatch, tmp_path):
    monkeypatch.delenv("HURACAN_PREDICTION_INPUTS", raising=False)
    monkeypatch.setenv("HURACAN_LAKE", str(tmp_path / "lake"))
    assert default_inputs_root() == tmp_path / "lake" / "predictions"
    monkeypatch.setenv("HURACAN_PREDICTION_INPUTS", str(tmp_path / "in"))
    assert default_inputs_root() == tmp_path / "in"


def test_insert_and_read_round_trip(engine, tmp_path):
    rows = [row_for(candles(30 + i), tmp_path, T0 + pd.Timedelta(hours=40 + i)) for i in range(3)]
    ids = insert_predictions(engine, rows)
    assert len(ids) == 3 and ids == sorted(ids)
    got = read_predictions(engine, symbol="BTC/USDT", timeframe="1h")
    assert got["id"].tolist() == ids
    assert got["bar_time"].tolist() == [T0 + pd.Timedelta(hours=29 + i) for i in range(3)]
    assert got["execution"].iloc[0] == {"fee": 0.001}
    assert got["inputs_rows"].tolist() == [30, 31, 32]
    assert got["served_at"].dt.tz is not None
    assert len(read_predictions(engine, start=T0 + pd.Timedelta(hours=30))) == 2
    assert len(read_predictions(engine, end=T0 + pd.Timedelta(hours=30))) == 1
    assert read_predictions(engine, source="paper").empty
    assert read_predictions(engine, model_name="other").empty


def test_logged_candles_union_newest_served_wins_and_lake_rows(engine, tmp_path):
    base = candles(100)
    first = base.iloc[:60]
    revised = base.iloc[20:80].copy()
    revised.loc[revised.index[0], "close"] *= 1.001  # bar 20 seen differently the second time
    revised.loc[revised.index[0], "high"] *= 1.002
    revised.loc[revised.index[50], ["close", "high"]] *= 1.001  # bar 70 too
    rows = [row_for(first, tmp_path / "in", T0 + pd.Timedelta(hours=61)),
            row_for(revised, tmp_path / "in", T0 + pd.Timedelta(hours=81))]
    # a paper row: its inputs are the last inputs_rows bars of a lake partition
    lake = CandleLake(tmp_path / "lake")
    lake.append(base, "binance", "BTC/USDT", "1h")
    part = lake.partition("binance", "BTC/USDT", "1h")
    paper = prediction_row(answer_row(base["timestamp"].iloc[89]), source="paper",
                           symbol="BTC/USDT", timeframe="1h", execution=None,
                           inputs_digest="00" * 32, inputs_rows=30, inputs_path=part,
                           served_at=T0 + pd.Timedelta(hours=91), latency_ms=None, account="p")
    insert_predictions(engine, [*rows, paper])
    got, bars = logged_candles(engine, "BTC/USDT", "1h", T0, T0 + pd.Timedelta(days=30))
    assert list(bars) == [base["timestamp"].iloc[i] for i in (59, 79, 89)]
    assert got["timestamp"].tolist() == base["timestamp"].iloc[:90].tolist()
    # bar 20: both requests sent it, the newer's wins; bar 70: the lake's row was served last
    assert got["close"].iloc[20] == revised["close"].iloc[0]
    assert got["close"].iloc[70] == base["close"].iloc[70]
    got2, bars2 = logged_candles(engine, "BTC/USDT", "1h", T0, base["timestamp"].iloc[80])
    assert len(bars2) == 2 and got2["timestamp"].iloc[-1] == base["timestamp"].iloc[79]
    assert got2["close"].iloc[70] == revised["close"].iloc[50]  # without the lake row
    empty, none = logged_candles(engine, "ETH/USDT", "1h", T0, T0 + pd.Timedelta(days=1))
    assert empty.empty and len(none) == 0
