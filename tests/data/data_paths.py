"""Paths of the real files in ../shared/data used by the data-download tests, and a fixed "now"."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SPOT_1H = SHARED / "ohlcv" / "binance-spot_BTCUSDT_1h_20180101-20241231.parquet"
PERP_1H = SHARED / "ohlcv" / "binance-usdm_BTCUSDT_1h_20190908-20241231.parquet"
ETH_SPOT_1H = SHARED / "ohlcv" / "binance-spot_ETHUSDT_1h_20180101-20241231.parquet"
FUNDING = SHARED / "derivatives" / "binance-usdm_BTCUSDT_funding_20190910-20241231.parquet"
XRP_FUNDING = (SHARED / "derivatives" / "freqtrade_testdata"
               / "binance-usdm_XRPUSDT_funding_20211118-20211218.parquet")
OPEN_INTEREST = (SHARED / "derivatives"
                 / "unknown-agg_BTC_open-interest-1d_20190330-20241120.parquet")
LIQUIDATIONS = (SHARED / "liquidations"
                / "binance-usdm_ALL_liquidation-events_20251022-20251022.parquet")
#: Fixed "now" for downloads: after the last real bar (2024-12-31 23:00).
NOW = pd.Timestamp("2025-01-01 00:30", tz="UTC")
