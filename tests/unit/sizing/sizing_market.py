"""Synthetic candles and their execution-model bars for the sizer's tests (imported by the test
modules beside it)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from huracan.evaluation.backtest import BacktestConfig
from huracan.evaluation.execution import MarketBars, market_bars

#: next-open fills with every linear cost and a borrow rate: fee 4 bps + half-spread 2 bps +
#: slippage 1 bp per unit of turnover, 10 %/yr borrow on spot shorts
COSTLY = BacktestConfig(fee=0.0004, half_spread=2.0, slippage_bps=1.0, borrow_rate=0.1)


def candles(n: int, seed: int, vol: float = 0.006) -> pd.DataFrame:
    """``n + 1`` hourly candles of a random walk whose opens sit a little off the previous close
    (a close-to-open gap), with wicks around them."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, vol, n + 1)))
    open_ = np.concatenate([[100.0], close[:-1] * (1.0 + rng.normal(0.0, 5e-4, n))])
    high = np.maximum(open_, close) * (1.0 + np.abs(rng.normal(0.0, 0.002, n + 1)))
    low = np.minimum(open_, close) * (1.0 - np.abs(rng.normal(0.0, 0.002, n + 1)))
    ts = pd.date_range("2024-01-01", periods=n + 1, freq="1h", tz="UTC")
    return pd.DataFrame({"timestamp": ts, "open": open_, "high": high, "low": low,
                         "close": close, "volume": rng.uniform(50.0, 150.0, n + 1)})


def funding(start: str = "2024-01-01", periods: int = 200, seed: int = 0) -> pd.DataFrame:
    """8-hourly funding settlements with random rates (fraction, both signs)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"timestamp": pd.date_range(start, periods=periods, freq="8h", tz="UTC"),
                         "funding_rate": rng.normal(1e-4, 2e-4, periods)})


def bars(n: int, seed: int, cfg: BacktestConfig = COSTLY, *, perpetual: bool = False,
         settlements: pd.DataFrame | None = None
         ) -> tuple[MarketBars, np.ndarray, np.ndarray]:
    """``(bars, low_return, high_return)`` of ``n`` rows of :func:`candles`: the execution
    model's bars (:func:`market_bars`) and the next bar's extremes relative to each close."""
    c = candles(n, seed)
    close = c["close"].to_numpy()
    frame = pd.DataFrame({
        "bar_close": close[:-1], "bar_high": c["high"].to_numpy()[:-1],
        "bar_low": c["low"].to_numpy()[:-1], "bar_volume": c["volume"].to_numpy()[:-1],
        "next_open": c["open"].to_numpy()[1:], "next_return": close[1:] / close[:-1] - 1.0},
        index=pd.DatetimeIndex(c["timestamp"].iloc[:-1], name="timestamp"))
    b = market_bars(frame, cfg, 8760.0, perpetual=perpetual, funding=settlements)
    low = c["low"].to_numpy()[1:] / close[:-1] - 1.0
    return b, low, c["high"].to_numpy()[1:] / close[:-1] - 1.0
