"""Higher-timeframe features: the price features of closed higher-timeframe bars (``htf_<tf>_*``).

For each ``tf`` of ``features.timeframes`` (e.g. ``4h``, ``1d``; a whole multiple of the base
timeframe, refused otherwise) the target's base candles are resampled into ``tf`` bars aligned to
the UTC epoch (4h bars open at 00:00, 04:00, ...; 1d bars at 00:00 UTC): open = first open, high =
max, low = min, close = last close, volume = sum (base units). The price features of
:func:`huracan.features.build.compute_features` are computed on those bars with the compact
:data:`HTF_CONFIG` (returns over 1, 3, 6 HTF bars; realised volatility over 6 and 24; ATR 14,
RSI 14, MACD 12/26/9, volume z-score over 24; no calendar), named ``htf_<tf>_<name>``
(:func:`huracan.features.naming.htf_prefix`), e.g. ``htf_4h_ret_1`` (log return of the last
closed 4h bar, fraction), ``htf_1d_rv_24`` (std of 1d log returns over 24 days, per 1d bar).

Availability (the classic multi-timeframe look-ahead): a ``tf`` bar's close is known only once it
has closed, so a base row whose bar closes at ``C`` reads the ``tf`` bar closing at
``floor(C, tf)`` (the latest ``tf`` close at or before ``C``) and nothing later: the 00:00-04:00
bar's values appear first on the base row of the 03:00 bar (which closes at 04:00).
``htf_<tf>_available`` is 1 when that ``tf`` bar exists, else 0 (its columns NaN).

Gap policy: a ``tf`` bar is built from the base bars PRESENT in its period (a partly missing
period still gives a bar; its volume is the sum of the bars present); a period with no base bar
is a missing ``tf`` bar, the ``tf`` features restart after it (as the base features restart after
a base gap) and a base row whose expected ``tf`` bar is missing gets NaN and ``available`` 0
(never an older ``tf`` bar carried forward). HTF columns are kept NaN during their warm-up (e.g.
about 34 days of 1d bars for the MACD signal), not dropped.

Vectorised (one resample and one exact-time join per ``tf``; features per gap-free ``tf`` run)
and causal: the value at base row ``t`` uses base bars ``<= t`` only (the ``tf`` bar closing at
or before bar ``t``'s close holds base bars opened before it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from huracan.data.ohlcv import timeframe_to_timedelta
from huracan.features.naming import htf_prefix

#: ``compute_features(candles, cfg)`` of :mod:`huracan.features.build` (passed in by it, so this
#: module does not import its caller)
Compute = Callable[[pd.DataFrame, Any], pd.DataFrame]

#: the compact price-feature windows computed on higher-timeframe bars (in HTF bars)
HTF_WINDOWS: dict[str, object] = {
    "return_horizons": [1, 3, 6], "volatility_windows": [6, 24], "atr_period": 14,
    "rsi_period": 14, "macd_fast": 12, "macd_slow": 26, "macd_signal": 9,
    "volume_windows": [24], "calendar": False}


def htf_config(cfg: Any) -> Any:
    """``cfg`` (a :class:`huracan.features.build.FeatureConfig`) with the :data:`HTF_WINDOWS`
    windows, and no families, context or timeframes."""
    return replace(cfg, families=[], family_params={}, context=[], context_paths={},
                   timeframes=[], **HTF_WINDOWS)


def check_timeframes(timeframes: Sequence[str], base: str) -> list[pd.Timedelta]:
    """The length of each of ``timeframes`` (``4h``, ``1d``).

    Raises:
        ValueError: an unknown timeframe, or one that is not a whole multiple (> 1) of ``base``.
    """
    step = timeframe_to_timedelta(base)
    out = []
    for tf in timeframes:
        size = timeframe_to_timedelta(tf)
        if size <= step or size % step != pd.Timedelta(0):
            raise ValueError(f"features.timeframes: {tf} is not a whole multiple of the data's "
                             f"timeframe {base} (e.g. 4h, 1d on 1h bars)")
        out.append(size)
    return out


def resample(base: pd.DataFrame, size: pd.Timedelta) -> pd.DataFrame:
    """OHLCV bars of length ``size`` (UTC-epoch aligned) from the base bars present (``base``
    indexed by open time, NaN rows = missing bars); periods without any base bar are dropped.
    Index: the HTF bar's open time."""
    present = base.dropna(subset=["close"])
    key = present.index.floor(size)
    grouped = present.groupby(key, sort=True)
    out = pd.DataFrame({"open": grouped["open"].first(), "high": grouped["high"].max(),
                        "low": grouped["low"].min(), "close": grouped["close"].last(),
                        "volume": grouped["volume"].sum()})
    out.index = pd.DatetimeIndex(out.index)
    return out


def timeframe_features(base: pd.DataFrame, base_timeframe: str, timeframes: Sequence[str],
                       cfg: Any, compute: Compute) -> pd.DataFrame:
    """The ``htf_<tf>_*`` columns for every base row (module docstring).

    Args:
        base: the target's candles ``open, high, low, close, volume`` on its full bar grid
            (DatetimeIndex of open times; NaN rows at missing bars).
        base_timeframe: the grid's bar size (``1h``).
        timeframes: the higher timeframes (``["4h", "1d"]``).
        cfg: the run's :class:`huracan.features.build.FeatureConfig` (:func:`htf_config` of it
            is applied).
        compute: :func:`huracan.features.build.compute_features`.

    Returns:
        one row per ``base`` row: per ``tf`` the :data:`HTF_WINDOWS` price features (float64,
        NaN when not available or warming up) and ``htf_<tf>_available`` (0.0 / 1.0).

    Raises:
        ValueError: a timeframe that is not a whole multiple of ``base_timeframe``.
    """
    sizes = check_timeframes(timeframes, base_timeframe)
    step = timeframe_to_timedelta(base_timeframe)
    index = pd.DatetimeIndex(base.index)
    hcfg = htf_config(cfg)
    parts = []
    for tf, size in zip(timeframes, sizes, strict=True):
        bars = resample(base, size)
        if bars.empty:
            continue
        grid = pd.date_range(bars.index[0], bars.index[-1], freq=size)
        full = bars.reindex(grid)
        missing = full["close"].isna()
        runs = missing.cumsum()[~missing]
        feats = pd.concat([compute(seg, hcfg)
                           for _, seg in full[~missing].groupby(runs, sort=True)])
        feats.index = feats.index + size  # keyed by the HTF bar's close time
        expected = (index + step).floor(size)  # the latest HTF close at or before the row's
        joined = feats.reindex(expected)
        joined.index = index
        p = htf_prefix(tf)
        joined.columns = [f"{p}{c}" for c in joined.columns]
        joined[f"{p}available"] = pd.Series(expected.isin(feats.index), index=index,
                                            dtype=np.float64)
        parts.append(joined)
    if not parts:
        return pd.DataFrame(index=index)
    return pd.concat(parts, axis=1).astype(np.float64).replace([np.inf, -np.inf], np.nan)
