"""The sizer's shared inputs: what its training job (:mod:`huracan.sizing.job`) and its live
serving (:mod:`huracan.sizing.serve`, the forecaster's pyfunc) both read.

- :func:`registered_sizer_name` and :data:`POLICY_ARTIFACT`: where a sizer is registered and
  where its run keeps the PPO zip.
- :func:`regime_onehot` (:data:`REGIME_COLUMNS`), :func:`intrabar_returns`: the per-bar
  observation inputs besides the forecast.
- :func:`candle_frame`, :func:`sizer_bars`: the execution model's bars of the sizer's rows.
- :func:`sizing_frame`, :func:`oos_rows`: the per-bar frame of a walk-forward OOS frame.
- :func:`load_funding`: the perpetual's funding settlements.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from huracan.evaluation.backtest import BacktestConfig
from huracan.evaluation.execution import MarketBars, market_bars
from huracan.regime.detection import REGIMES, UNKNOWN

#: the one-hot regime columns of the sizer's observation, in order
REGIME_COLUMNS = tuple(f"regime_{r}" for r in (*REGIMES, UNKNOWN))
#: where a sizer run keeps its PPO policy (an SB3 zip)
POLICY_ARTIFACT = "sizer/policy.zip"


def registered_sizer_name(symbol: str, timeframe: str) -> str:
    """``huracan-sizer-<SYMBOL>-<tf>``, e.g. ``huracan-sizer-BTCUSDT-1h``."""
    return f"huracan-sizer-{symbol.replace('/', '').replace(':', '')}-{timeframe}"


def regime_onehot(regimes: Any) -> pd.DataFrame:
    """One column per :data:`REGIME_COLUMNS`, 1.0 on the bar's regime (missing -> unknown)."""
    reg = pd.Series(regimes, dtype=object).fillna(UNKNOWN).astype(str)
    reg = reg.where(reg.isin([*REGIMES, UNKNOWN]), UNKNOWN)
    return pd.DataFrame({c: (reg == c.removeprefix("regime_")).to_numpy(np.float64)
                         for c in REGIME_COLUMNS})


def intrabar_returns(timestamps: pd.DatetimeIndex, candles: pd.DataFrame, timeframe: str,
                     next_return: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(low_{t+1} / close_t - 1, high_{t+1} / close_t - 1)`` per row, bracketing
    ``next_return`` (a missing next bar gives the close-to-close return itself)."""
    from huracan.data.ohlcv import timeframe_to_timedelta

    c = candles.set_index(pd.DatetimeIndex(candles["timestamp"]))
    ts = pd.DatetimeIndex(timestamps)
    close = c["close"].reindex(ts).to_numpy(np.float64)
    nxt = ts + timeframe_to_timedelta(timeframe)
    low = c["low"].reindex(nxt).to_numpy(np.float64) / close - 1.0
    high = c["high"].reindex(nxt).to_numpy(np.float64) / close - 1.0
    r = np.asarray(next_return, dtype=np.float64)
    low = np.minimum(np.where(np.isfinite(low), low, r), r)
    high = np.maximum(np.where(np.isfinite(high), high, r), r)
    return low, high


def candle_frame(candles: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """What :func:`huracan.evaluation.execution.market_bars` reads, per candle (index: open
    time): ``bar_close``, ``bar_high``, ``bar_low``, ``bar_volume``, and from the NEXT bar of the
    grid ``next_open`` and ``next_return`` (``close_{t+1} / close_t - 1``), NaN when the next bar
    is missing (the last candle, a data gap), as the feature frame defines them."""
    from huracan.data.ohlcv import timeframe_to_timedelta

    c = candles.set_index(pd.DatetimeIndex(candles["timestamp"])).sort_index()
    c = c[~c.index.duplicated(keep="last")]
    nxt = c.reindex(c.index + timeframe_to_timedelta(timeframe))
    close = c["close"].to_numpy(np.float64)
    out = pd.DataFrame({
        "bar_close": close, "bar_high": c["high"].to_numpy(np.float64),
        "bar_low": c["low"].to_numpy(np.float64),
        "bar_volume": c["volume"].to_numpy(np.float64) if "volume" in c else np.nan,
        "next_open": nxt["open"].to_numpy(np.float64),
        "next_return": nxt["close"].to_numpy(np.float64) / close - 1.0}, index=c.index)
    out.index.name = "timestamp"
    return out


def sizer_bars(timestamps: pd.DatetimeIndex, candles: pd.DataFrame, timeframe: str,
               cfg: BacktestConfig, *, funding: pd.DataFrame | None = None,
               perpetual: bool = False, unknown_flat: bool = False,
               fine: pd.DataFrame | None = None) -> MarketBars:
    """The execution model's bars of the sizer's rows: :func:`market_bars` over every candle
    with a known next bar (so the spread estimator's trailing window is the candles', as in the
    forecaster's backtest), with the forecaster run's ``backtest`` settings ``cfg`` (fill, fee,
    half-spread, slippage, impact, borrow), then the rows ``timestamps``.

    Args:
        timestamps: the sizer's rows (bar open times), ``(n,)``.
        candles: ``timestamp, open, high, low, close[, volume]`` covering the rows and the bar
            after each.
        timeframe: bar size.
        cfg: the forecaster run's :class:`~huracan.evaluation.backtest.BacktestConfig`.
        funding: funding settlements (``timestamp, funding_rate``), charged on the legs by
            :func:`huracan.evaluation.execution.settle_funding`; None: no funding.
        perpetual: the market is a perpetual (no borrow on shorts; funding instead).
        unknown_flat: a row whose next bar is not known yet (serving: the latest bar, the bar
            before a gap) earns 0 on both legs (next open = close, next return 0) instead of
            raising.
        fine: the finer series of ``fill=delay``.

    Returns:
        :class:`~huracan.evaluation.execution.MarketBars` of ``timestamps``, in order.

    Raises:
        ValueError: a row without a candle, or (without ``unknown_flat``) without its next bar.
    """
    from huracan.data.ohlcv import bars_per_year

    frame = candle_frame(candles, timeframe)
    ts = pd.DatetimeIndex(timestamps)
    missing = ~ts.isin(frame.index)
    if missing.any():
        raise ValueError(f"the sizer's bars: {int(missing.sum())} row(s) without a candle, first "
                         f"{ts[np.argmax(missing)]}")
    known = np.isfinite(frame["next_open"].to_numpy()) & np.isfinite(
        frame["next_return"].to_numpy())
    if unknown_flat:
        frame["next_open"] = frame["next_open"].where(known, frame["bar_close"])
        frame["next_return"] = frame["next_return"].where(known, 0.0)
    else:
        gone = ts[~ts.isin(frame.index[known])]
        if len(gone):
            raise ValueError(f"the sizer's bars: {len(gone)} row(s) without a next bar (a data "
                             f"gap or the data end), first {gone[0]}")
        frame = frame[known]
    if cfg.notional is None:
        frame = frame.drop(columns="bar_volume")
    bars = market_bars(frame, cfg, bars_per_year(timeframe), perpetual=perpetual,
                       funding=funding, fine=fine)
    return bars.take(frame.index.get_indexer(ts))


def sizing_frame(oos: pd.DataFrame, candles: pd.DataFrame | None, timeframe: str,
                 bars: MarketBars | None = None) -> pd.DataFrame:
    """The per-bar frame :meth:`SizingData.from_frame` reads, from a walk-forward OOS frame
    (``timestamp, prediction, asset_return, label[, regime]``); with ``bars``
    (:func:`sizer_bars` of the frame's rows, in time order) the rows' ``asset_return`` is the
    bars' close-to-close return. Rows with a non-finite prediction or return are left out.

    Raises:
        ValueError: ``bars`` of other rows than the kept ones.
    """
    f = oos.sort_values("timestamp").reset_index(drop=True)
    f = f[np.isfinite(f["prediction"].to_numpy(np.float64))
          & np.isfinite(f["asset_return"].to_numpy(np.float64))].reset_index(drop=True)
    ts = pd.DatetimeIndex(f["timestamp"])
    ret = f["asset_return"].to_numpy(np.float64)
    if bars is not None:
        if len(bars) != len(ts) or not (bars.timestamps == ts).all():
            raise ValueError("the bars must cover the OOS frame's rows, in order")
        ret = bars.next_return
    out = pd.DataFrame({"timestamp": ts, "prediction": f["prediction"].to_numpy(np.float64),
                        "asset_return": ret})
    if "label" in f:
        out["label"] = np.nan_to_num(f["label"].to_numpy(np.float64))
    out = pd.concat([out, regime_onehot(f["regime"] if "regime" in f else [UNKNOWN] * len(f))],
                    axis=1)
    if candles is not None:
        out["low_return"], out["high_return"] = intrabar_returns(
            ts, candles, timeframe, out["asset_return"].to_numpy())
    return out


def oos_rows(oos: pd.DataFrame) -> pd.DatetimeIndex:
    """The rows :func:`sizing_frame` keeps, in order (finite prediction and return)."""
    f = oos.sort_values("timestamp")
    ok = np.isfinite(f["prediction"].to_numpy(np.float64)) & np.isfinite(
        f["asset_return"].to_numpy(np.float64))
    return pd.DatetimeIndex(f["timestamp"][ok])


def load_funding(mode: str, symbol: str, start: pd.Timestamp, end: pd.Timestamp,
                 db_url: str | None) -> pd.DataFrame | None:
    """Funding settlements of ``symbol``'s perpetual (``timestamp, funding_rate``) from
    ``../shared/data`` (``files``) or the brain store (``store``); ``None`` when absent."""
    if mode == "none":
        return None
    if mode == "store":
        from huracan.db.queries import funding_frame
        from huracan.db.session import make_engine

        engine = make_engine(db_url)
        try:
            frame = funding_frame(engine, symbol, start, end)
        finally:
            engine.dispose()
    else:
        from huracan.config import shared_data_root
        from huracan.features.families import load_sources_from_files

        try:
            frame = load_sources_from_files(shared_data_root(), symbol, start, end).get("funding")
        except (FileNotFoundError, ValueError):
            return None
    if frame is None or len(frame) == 0:
        return None
    frame = frame.sort_values("timestamp").drop_duplicates("timestamp")
    return frame[["timestamp", "funding_rate"]].reset_index(drop=True)
