"""Build the model matrix: causal features, the forward-return label, the 1-bar P&L return.

Gaps: the candles are reindexed to the full timeframe grid and cut into gap-free segments; every
indicator restarts in each segment (warm-up rows are NaN), and labels never reach across a gap.
Rows with any NaN feature or label are dropped, so no value is computed across a missing bar.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from huracan.data.ohlcv import complete_grid
from huracan.features import technical as ta

LABEL = "label"
NEXT_RETURN = "next_return"


@dataclass(frozen=True)
class FeatureConfig:
    """Feature windows (all in bars) and the label horizon.

    Attributes:
        horizon: label = simple forward return over ``horizon`` bars, ``close_{t+h}/close_t - 1``.
    """

    horizon: int = 1
    return_horizons: list[int] = field(default_factory=lambda: [1, 3, 6, 12, 24])
    volatility_windows: list[int] = field(default_factory=lambda: [12, 24, 72])
    atr_period: int = 14
    rsi_period: int = 14
    macd_fast: int = 12
    macd_slow: int = 26
    macd_signal: int = 9
    volume_windows: list[int] = field(default_factory=lambda: [24, 168])
    calendar: bool = True

    def __post_init__(self) -> None:
        if self.horizon < 1:
            raise ValueError(f"features.horizon must be >= 1 bar, got {self.horizon}")


@dataclass
class FeatureSet:
    """Features and targets, one row per usable bar in time order.

    Attributes:
        frame: indexed by bar open time (UTC); columns = ``feature_names`` + ``label`` +
            ``next_return``.
        feature_names: model input columns.
        horizon: label horizon in bars.
    """

    frame: pd.DataFrame
    feature_names: list[str]
    horizon: int

    @property
    def X(self) -> np.ndarray:
        return self.frame[self.feature_names].to_numpy(np.float32)

    @property
    def y(self) -> np.ndarray:
        return self.frame[LABEL].to_numpy(np.float64)


def compute_features(candles: pd.DataFrame, cfg: FeatureConfig) -> pd.DataFrame:
    """Features for one gap-free run of candles indexed by open time (NaN during warm-up)."""
    parts = [
        ta.log_returns(candles["close"], cfg.return_horizons),
        ta.realized_volatility(candles["close"], cfg.volatility_windows),
        ta.wilder_atr(candles, cfg.atr_period).to_frame(),
        ta.bar_shape(candles),
        ta.rsi(candles["close"], cfg.rsi_period).to_frame(),
        ta.macd(candles["close"], cfg.macd_fast, cfg.macd_slow, cfg.macd_signal),
        ta.volume_zscore(candles["volume"], cfg.volume_windows),
    ]
    if cfg.calendar:
        parts.append(ta.calendar(pd.DatetimeIndex(candles.index)))
    return pd.concat(parts, axis=1)


def build_features(candles: pd.DataFrame, timeframe: str, cfg: FeatureConfig) -> FeatureSet:
    """Turn validated candles into a :class:`FeatureSet`.

    Args:
        candles: columns ``timestamp, open, high, low, close, volume`` (gaps allowed).
        timeframe: bar size of ``candles`` (``1h``).
        cfg: feature windows and label horizon.

    Returns:
        the usable rows (complete features and label), in time order.

    Raises:
        ValueError: when no row survives the warm-up (too little data).
    """
    grid = complete_grid(candles, timeframe).set_index("timestamp")
    missing = grid["close"].isna()
    segment = missing.cumsum()  # a new segment id after every missing bar
    frames = []
    for _, seg in grid[~missing].groupby(segment[~missing], sort=True):
        feats = compute_features(seg, cfg)
        close = seg["close"]
        feats[LABEL] = close.shift(-cfg.horizon) / close - 1.0
        feats[NEXT_RETURN] = close.shift(-1) / close - 1.0
        frames.append(feats)
    frame = pd.concat(frames).replace([np.inf, -np.inf], np.nan).dropna()
    if frame.empty:
        raise ValueError("no usable rows after feature warm-up; need a longer gap-free history")
    names = [c for c in frame.columns if c not in (LABEL, NEXT_RETURN)]
    frame.index.name = "timestamp"
    return FeatureSet(frame=frame, feature_names=names, horizon=cfg.horizon)
