"""Context-symbol features: another market's candles beside the target's, joined by bar time.

For each context symbol ``S`` (``features.context``, e.g. ``BTC/USDT``, ``ETH/USDT``) the columns
``ctx_<PAIR>_*`` (:func:`huracan.features.naming.context_prefix`) of a target row ``t`` are built
from the context bar with the SAME open time ``t`` (both bars close at ``t + timeframe``: as of the
target bar's close) and earlier context bars only:

- ``ctx_<PAIR>_ret_k``: ``ln(close^S_t / close^S_{t-k})`` for ``k`` in ``features.return_horizons``
  (log return, fraction over ``k`` bars);
- ``ctx_<PAIR>_rv_n``: sample std (ddof=1) of the context's 1-bar log returns over the last ``n``
  bars (``features.volatility_windows``; per bar, not annualised);
- ``ctx_<PAIR>_beta_w`` / ``ctx_<PAIR>_corr_w``: the rolling OLS beta ``cov(r^T, r^S) /
  var(r^S)`` and Pearson correlation of the target's 1-bar log return on the context's over the
  last ``w`` bars (``features.context_windows``; the market-model beta of Sharpe 1964 / the
  rolling beta of freqtrade FreqAI's ``include_corr_pairlist`` examples);
- ``ctx_<PAIR>_rs_k``: relative strength, ``ret^T_k - ret^S_k`` (log returns, fraction);
- ``ctx_<PAIR>_available``: 1 when the context bar with the same open time exists, else 0.

Gap policy: the context closes are placed on the target's bar grid (from the target's first to
its last bar); a missing context bar is NaN and never filled forward from an earlier bar nor back
from a later one. Every window needs ALL its bars present (target and context alike): a return or
rolling statistic whose window touches a missing bar is NaN, exactly as the target's own features
restart after a gap (:func:`huracan.features.build.build_features`). Context history before the
target's first bar is not used, so a served request (which carries ``ctx_<PAIR>_close`` per bar,
:class:`huracan.data.candle_request.ServingSpec`) rebuilds the same values as training.
Context columns may be NaN; they are kept (like the market-structure families), not dropped.

Everything is vectorised (pandas rolling windows) and causal: row ``t`` reads bars ``<= t`` only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from huracan.features.naming import context_prefix


def grid_close(candles: pd.DataFrame, grid: pd.DatetimeIndex) -> pd.Series:
    """The ``close`` of ``candles`` (column ``timestamp`` = bar open time, UTC, or a
    DatetimeIndex) placed on ``grid``; bars absent from ``candles`` are NaN (no fill)."""
    frame = candles.set_index("timestamp") if "timestamp" in candles.columns else candles
    close = pd.Series(frame["close"].to_numpy(np.float64), index=pd.DatetimeIndex(frame.index))
    close = close[~close.index.duplicated(keep="first")]
    return close.reindex(grid)


def complete_returns(close: pd.Series, horizons: Sequence[int]) -> dict[int, pd.Series]:
    """``ln(close_t / close_{t-k})`` per ``k``, NaN unless all ``k`` 1-bar returns of the window
    exist (no return spans a missing bar). ``close`` lies on the full bar grid."""
    logc = np.log(close)
    r1 = logc.diff()
    ok = r1.notna().astype(np.float64)
    out = {}
    for k in horizons:
        full = ok.rolling(k, min_periods=k).sum() >= k
        out[int(k)] = (logc - logc.shift(k)).where(full)
    return out


def context_features(target_close: pd.Series, contexts: Mapping[str, pd.Series],
                     return_horizons: Sequence[int], volatility_windows: Sequence[int],
                     context_windows: Sequence[int]) -> pd.DataFrame:
    """The ``ctx_<PAIR>_*`` columns (module docstring) of every context symbol.

    Args:
        target_close: the target's closes on its full bar grid (DatetimeIndex of open times,
            NaN at missing bars), length ``n``.
        contexts: context symbol -> its closes on the SAME grid (:func:`grid_close`).
        return_horizons, volatility_windows, context_windows: windows in bars.

    Returns:
        ``n`` rows on the grid; per symbol ``ret_k``, ``rv_n``, ``beta_w``, ``corr_w``, ``rs_k``
        (float64, NaN where a window touches a missing bar) and ``available`` (0.0 / 1.0).

    Raises:
        ValueError: a context series not on the target's grid.
    """
    grid = pd.DatetimeIndex(target_close.index)
    own = complete_returns(target_close, [1, *return_horizons])
    cols: dict[str, pd.Series] = {}
    for symbol, close in contexts.items():
        if not pd.DatetimeIndex(close.index).equals(grid):
            raise ValueError(f"context {symbol}: closes not on the target's bar grid")
        p = context_prefix(symbol)
        rets = complete_returns(close, [1, *return_horizons])
        r1 = rets[1]
        for k in return_horizons:
            cols[f"{p}ret_{k}"] = rets[k]
        for n in volatility_windows:
            cols[f"{p}rv_{n}"] = r1.rolling(n, min_periods=n).std()
        for w in context_windows:
            cov = own[1].rolling(w, min_periods=w).cov(r1)
            var = r1.rolling(w, min_periods=w).var()
            cols[f"{p}beta_{w}"] = cov / var.where(var > 0)
            cols[f"{p}corr_{w}"] = own[1].rolling(w, min_periods=w).corr(r1)
        for k in return_horizons:
            cols[f"{p}rs_{k}"] = own[k] - rets[k]
        cols[f"{p}available"] = close.notna().astype(np.float64)
    out = pd.DataFrame(cols, index=grid)
    return out.replace([np.inf, -np.inf], np.nan)
