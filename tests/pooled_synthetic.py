"""Synthetic feature sets of three symbols on one hourly grid with different calendars (one
listed late, one with an outage and delisted early), for the pooled-model tests
(tests/unit/test_pooled_fit.py, tests/unit/models/test_pooled_sequence.py)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from huracan.features.build import LABEL, LABEL_END, FeatureSet

SYMBOLS = ("BTC/USDT", "ETH/USDT", "LTC/USDT")
HORIZON = 2
START = pd.Timestamp("2024-01-01", tz="UTC")


def hours(ts: pd.DatetimeIndex | np.ndarray) -> np.ndarray:
    return (pd.DatetimeIndex(ts) - START) / pd.Timedelta("1h")


def feature_set(index: pd.DatetimeIndex, X: np.ndarray, y: np.ndarray,
                names: Sequence[str] = ("x0", "x1", "x2")) -> FeatureSet:
    frame = pd.DataFrame(X, index=index, columns=list(names))
    frame[LABEL] = y
    frame[LABEL_END] = index + HORIZON * pd.Timedelta("1h")
    return FeatureSet(frame=frame, feature_names=list(names), horizon=HORIZON, timeframe="1h")


def calendars() -> dict[str, pd.DatetimeIndex]:
    grid = pd.date_range(START, periods=1500, freq="1h")
    return {
        "BTC/USDT": grid,
        "ETH/USDT": grid[230:],                                   # listed late
        "LTC/USDT": grid[:600].append(grid[700:1350]),            # outage, delisted early
    }


def synthetic(label: str = "time", seed: int = 5) -> dict[str, FeatureSet]:
    """Features at each symbol's own level; the label is the row's time in hours
    (``label="time"``) or the planted ``sign(symbol) * 0.01 * x0 + noise``."""
    rng = np.random.default_rng(seed)
    out = {}
    for i, (sym, idx) in enumerate(calendars().items()):
        X = rng.standard_normal((len(idx), 3)) * (1 + i) + 50.0 * i
        if label == "time":
            y = hours(idx).astype(np.float64)
        else:
            sign = 1.0 if sym != "ETH/USDT" else -1.0
            y = sign * 0.01 * (X[:, 0] - 50.0 * i) / (1 + i) + 0.002 * rng.standard_normal(len(idx))
        out[sym] = feature_set(idx, X, y)
    return out
