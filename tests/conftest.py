"""Shared fixtures: real candles from ../shared/data and the shipped sample."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SAMPLE = REPO / "huracan" / "datasets" / "binance-spot_BTCUSDT_5m_20240101-20240906.parquet"
SPOT_1H = SHARED_DATA / "ohlcv" / "binance-spot_BTCUSDT_1h_20180101-20241231.parquet"


@pytest.fixture(scope="session")
def sample_path() -> Path:
    return SAMPLE


@pytest.fixture(scope="session")
def candles_1h() -> pd.DataFrame:
    """Real BTC/USDT 1h spot candles (2018-2024, with the exchange's gaps left in)."""
    if not SPOT_1H.exists():
        pytest.skip(f"{SPOT_1H} not found (../shared/data is expected beside the checkout)")
    return pd.read_parquet(SPOT_1H)


@pytest.fixture(scope="session")
def sample_1h() -> pd.DataFrame:
    """The shipped 5m sample resampled to complete 1h bars."""
    from huracan.data.ohlcv import load_ohlcv

    df, _ = load_ohlcv(SAMPLE, "1h")
    return df
