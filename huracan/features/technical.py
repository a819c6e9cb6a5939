"""Technical indicators on one gap-free run of candles (pure pandas, causal).

Every function takes a frame with ``open, high, low, close, volume`` indexed by bar open time and
returns columns aligned to it; the value at row t uses rows <= t only (rolling windows and
exponential averages look backwards; warm-up rows are NaN). Units: returns are log returns in
fractions over the stated number of bars; volatility is the per-bar standard deviation (not
annualised); price-distance indicators are divided by the close so they compare across assets.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def log_returns(close: pd.Series, horizons: list[int]) -> pd.DataFrame:
    """``ret_k = ln(close_t / close_{t-k})`` for each k in ``horizons`` (bars)."""
    logc = np.log(close)
    return pd.DataFrame({f"ret_{k}": logc - logc.shift(k) for k in horizons})


def realized_volatility(close: pd.Series, windows: list[int]) -> pd.DataFrame:
    """``rv_n``: sample std (ddof=1) of 1-bar log returns over the last n bars."""
    r1 = np.log(close).diff()
    return pd.DataFrame({f"rv_{n}": r1.rolling(n, min_periods=n).std() for n in windows})


def wilder_atr(df: pd.DataFrame, period: int = 14) -> pd.Series:
    """Average true range with Wilder's smoothing (alpha = 1/period), divided by close.

    Follows Wilder (1978), *New Concepts in Technical Trading Systems*; same as TA-Lib's ATR/close.
    """
    prev_close = df["close"].shift(1)
    tr = pd.concat(
        [df["high"] - df["low"], (df["high"] - prev_close).abs(), (df["low"] - prev_close).abs()],
        axis=1,
    ).max(axis=1, skipna=False)
    atr = tr.ewm(alpha=1.0 / period, adjust=False, min_periods=period).mean()
    return (atr / df["close"]).rename(f"atr_{period}")


def rsi(close: pd.Series, period: int = 14) -> pd.Series:
    """Relative Strength Index in [0, 100] with Wilder's smoothing (Wilder 1978)."""
    delta = close.diff()
    gain = delta.clip(lower=0).ewm(alpha=1.0 / period, adjust=False, min_periods=period).mean()
    loss = (-delta.clip(upper=0)).ewm(alpha=1.0 / period, adjust=False, min_periods=period).mean()
    rs = gain / loss
    out = 100.0 - 100.0 / (1.0 + rs)
    out = out.where(loss > 0, 100.0).where(gain.notna())
    return out.rename(f"rsi_{period}")


def macd(close: pd.Series, fast: int = 12, slow: int = 26, signal: int = 9) -> pd.DataFrame:
    """MACD (Appel 1979): EMA(fast) - EMA(slow), its EMA(signal) and the histogram, / close."""
    ema_fast = close.ewm(span=fast, adjust=False, min_periods=fast).mean()
    ema_slow = close.ewm(span=slow, adjust=False, min_periods=slow).mean()
    line = ema_fast - ema_slow
    sig = line.ewm(span=signal, adjust=False, min_periods=signal).mean()
    return pd.DataFrame(
        {"macd": line / close, "macd_signal": sig / close, "macd_hist": (line - sig) / close}
    )


def volume_zscore(volume: pd.Series, windows: list[int]) -> pd.DataFrame:
    """``vol_z_n``: z-score of ln(1 + volume) against its last n bars (including bar t)."""
    lv = np.log1p(volume)
    cols = {}
    for n in windows:
        mean = lv.rolling(n, min_periods=n).mean()
        std = lv.rolling(n, min_periods=n).std()
        cols[f"vol_z_{n}"] = (lv - mean) / std.replace(0.0, np.nan)
    return pd.DataFrame(cols)


def bar_shape(df: pd.DataFrame) -> pd.DataFrame:
    """``range`` = (high - low) / close; ``close_loc`` = (close - low) / (high - low), in [0, 1]
    (0.5 when high == low)."""
    span = df["high"] - df["low"]
    return pd.DataFrame({
        "range": span / df["close"],
        "close_loc": ((df["close"] - df["low"]) / span).where(span > 0, 0.5),
    })


def calendar(index: pd.DatetimeIndex) -> pd.DataFrame:
    """Hour of day and day of week (UTC) on the unit circle: ``hour_sin/cos``, ``dow_sin/cos``.

    Known at the bar's open, so causal by construction.
    """
    hour = index.hour + index.minute / 60.0
    dow = index.dayofweek + hour / 24.0
    return pd.DataFrame(
        {
            "hour_sin": np.sin(2 * np.pi * hour / 24.0),
            "hour_cos": np.cos(2 * np.pi * hour / 24.0),
            "dow_sin": np.sin(2 * np.pi * dow / 7.0),
            "dow_cos": np.cos(2 * np.pi * dow / 7.0),
        },
        index=index,
    )
