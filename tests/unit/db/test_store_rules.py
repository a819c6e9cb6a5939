"""Pure ingest rules (no database): symbols, file names, cascades, row validation."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from huracan.data.ingest import (
    infer_from_filename,
    normalize_symbol,
    prepare_frame,
)
from huracan.data.ohlcv import DataValidationError


@pytest.mark.parametrize(("raw", "expected"), [
    ("SOLUSDT", "SOL/USDT"), ("XRPUSDC", "XRP/USDC"), ("1000PEPEUSDT", "1000PEPE/USDT"),
    ("BTCFDUSD", "BTC/FDUSD"), ("BTC/USDT", "BTC/USDT"), ("ALL", None), ("USDT", None),
    ("", None), (None, None), ("BTC/", None),
])
def test_normalize_symbol(raw, expected):
    assert normalize_symbol(raw) == expected


def test_infer_from_filename():
    assert infer_from_filename(Path("binance-usdm_BTCUSDT_funding_20190910-20241231.parquet")
                               ) == ("binance", "BTC/USDT")
    assert infer_from_filename(Path("unknown-agg_BTC_open-interest-1d_x.parquet")) == (None, None)
    assert infer_from_filename(Path("mine.csv")) == (None, None)


def test_funding_rows_rounded_and_checked():
    raw = pd.DataFrame({"timestamp": pd.to_datetime(
        ["2021-11-18 00:00:00.017", "2021-11-18 07:59:59.990", "2021-11-18 16:00:00.011"],
        utc=True), "funding_rate": [0.0001, float("nan"), -0.0002]})
    batch = prepare_frame("funding", raw, "x.parquet", exchange="Binance", symbol="XRPUSDT")
    assert batch.frame.timestamp.dt.strftime("%H:%M:%S.%f").tolist() == [
        "00:00:00.000000", "16:00:00.000000"]
    assert batch.frame.exchange.unique().tolist() == ["binance"]
    assert [(r.row, r.rule) for r in batch.rejections] == [(1, "nan_rate")]


def test_liquidation_rows_need_a_known_side_and_positive_size():
    raw = pd.DataFrame({"timestamp": pd.to_datetime(["2024-01-01"] * 4, utc=True),
                        "symbol": ["BTCUSDT"] * 4, "side": ["sell", "Buy", "long", "x"],
                        "price": [10.0, 10.0, 0.0, 10.0], "quantity": [1.0, 2.0, 1.0, 1.0]})
    batch = prepare_frame("liquidations", raw, "x.csv", exchange="binance")
    assert batch.frame.side.tolist() == ["long", "short"]
    assert batch.frame.size_usd.tolist() == [10.0, 20.0]
    assert [r.rule for r in batch.rejections] == ["non_positive_price", "unknown_side"]


def test_symbol_option_must_agree_with_the_file():
    raw = pd.DataFrame({"timestamp": pd.to_datetime(["2024-01-01"], utc=True),
                        "symbol": ["ETHUSDT"], "funding_rate": [0.0001]})
    with pytest.raises(DataValidationError, match="symbol_mismatch"):
        prepare_frame("funding", raw, "x.csv", exchange="binance", symbol="BTC/USDT")
    with pytest.raises(DataValidationError, match=r"pass --exchange"):
        prepare_frame("funding", raw, "x.csv")
