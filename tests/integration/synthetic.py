"""Synthetic 1h candle files with a known edge, or none (imported by the test modules beside it).

Every price is a trade at the bid or the ask (a fair coin) around a mid, as in
``tests/unit/test_execution.py``'s ``bounce_candles``: the close-to-close returns then carry a
bid-ask bounce (negative first-order autocorrelation) that no order filled at the next open can
earn. ``drift`` adds a slow AR(1) component to the mid's per-bar log return: a real, persistent
edge a model reading past returns can learn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def synthetic_candles(n: int, *, seed: int, spread: float = 0.0005, vol: float = 0.004,
                      trades: int = 12, phi: float = 0.0, drift_sd: float = 0.0
                      ) -> pd.DataFrame:
    """``n`` 1h candles (``timestamp`` UTC, open/high/low/close/volume) from 2024-01-01.

    Args:
        spread: bid-ask spread, fraction of the mid (each trade pays half of it).
        vol: the mid's per-bar log-return volatility (random walk).
        trades: trades per bar (open = first, close = last, high/low = extremes).
        phi, drift_sd: the AR(1) drift of the mid's per-bar log return, ``mu_t = phi mu_{t-1} +
            N(0, drift_sd)``; ``drift_sd = 0``: no edge (a random-walk mid).
    """
    rng = np.random.default_rng(seed)
    mu = np.zeros(n)
    eps = rng.normal(0.0, drift_sd, n) if drift_sd > 0 else np.zeros(n)
    for t in range(1, n):
        mu[t] = phi * mu[t - 1] + eps[t]
    steps = rng.normal(0.0, vol / np.sqrt(trades), size=n * trades) + np.repeat(mu, trades) / trades
    mid = 30000.0 * np.exp(np.cumsum(steps)).reshape(n, trades)
    px = mid * (1 + rng.choice([-1.0, 1.0], size=mid.shape) * spread / 2)
    ts = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC")
    return pd.DataFrame({"timestamp": ts.astype("datetime64[ms, UTC]"), "open": px[:, 0],
                         "high": px.max(1), "low": px.min(1), "close": px[:, -1],
                         "volume": rng.uniform(50.0, 150.0, n)})


def write_candles(path: Path, frame: pd.DataFrame) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return path


def edge_file(tmp: Path, n: int = 4000) -> Path:
    """A series with a real, slow autocorrelated component (AR(1) drift, phi 0.99)."""
    return write_candles(tmp / "edge_1h.parquet",
                         synthetic_candles(n, seed=11, phi=0.99, drift_sd=0.0003))


def no_edge_file(tmp: Path, n: int = 4000) -> Path:
    """A random-walk mid with a bid-ask bounce only: no edge under next-open fills."""
    return write_candles(tmp / "bounce_1h.parquet",
                         synthetic_candles(n, seed=12, spread=0.004, vol=0.003))


def random_walk_file(tmp: Path, n: int = 4000) -> Path:
    """A random-walk mid traded at a 1 bp spread: nothing to forecast at all."""
    return write_candles(tmp / "random_walk_1h.parquet",
                         synthetic_candles(n, seed=13, spread=0.0001, vol=0.004))


def edge_like_sample(sample: Path, out: Path, seed: int = 21) -> Path:
    """The shipped 5m sample's timestamps and volumes with synthetic prices that carry a real,
    slow edge: each hour's AR(1) drift (phi 0.99, innovations 0.0003 per hour, as
    :func:`edge_file`) spread over its twelve 5m bars, plus 0.4 % hourly noise. Same bars, so the
    same splits, folds and windows as the sample: the tests of gate mechanics that need a
    candidate beating cash run on it unchanged."""
    real = pd.read_parquet(sample)
    ts = pd.DatetimeIndex(real["timestamp"])
    hour = ((ts - ts[0].floor("1h")) // pd.Timedelta("1h")).to_numpy()
    rng = np.random.default_rng(seed)
    mu = np.zeros(int(hour.max()) + 1)
    eps = rng.normal(0.0, 0.0003, len(mu))
    for t in range(1, len(mu)):
        mu[t] = 0.99 * mu[t - 1] + eps[t]
    steps = mu[hour] / 12 + rng.normal(0.0, 0.004 / np.sqrt(12), len(ts))
    close = 42000.0 * np.exp(np.cumsum(steps))
    open_ = np.r_[42000.0, close[:-1]]
    wick = np.abs(rng.normal(0.0, 0.0005, (2, len(ts))))
    frame = pd.DataFrame({"timestamp": real["timestamp"], "open": open_,
                          "high": np.maximum(open_, close) * (1 + wick[0]),
                          "low": np.minimum(open_, close) * (1 - wick[1]), "close": close,
                          "volume": real["volume"].to_numpy()})
    return write_candles(out, frame)
