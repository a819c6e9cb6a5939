"""Gymnasium environment of the position sizer: how much of the forecast to take, at what leverage.

The environment walks a stitched walk-forward out-of-sample (OOS) prediction series bar by bar, so
the agent only ever sees forecasts made by models that never trained on that bar.

Execution: the ONE execution model of :mod:`huracan.evaluation.execution` (the forecaster's
backtest's: :func:`~huracan.evaluation.execution.market_bars` with the forecaster run's
``backtest`` settings, see :func:`huracan.sizing.data.sizer_bars`). Row ``t`` is the bar opening
at ``timestamps[t]``; its forecast is made at the close ``C_t`` of bar ``t``; the position chosen
then is FILLED at ``F_t`` (``backtest.fill``: the next bar's open by default), the close-to-fill
gap leg is held by the previous position and the fill-to-``C_{t+1}`` hold leg by the new one.
The observation of row ``t`` holds data known at ``C_t`` only: ``forecast[: t + 1]``,
``next_return[: t]`` (the returns of bars ``1 .. t``) and the agent's own PnL up to that close.
Without :attr:`SizingData.bars` (unit tests, old frames) the bars are
:func:`~huracan.evaluation.execution.close_bars` (fill at ``C_t``, the fee ``EnvConfig.fee`` as the
only cost).

Step ``t`` (one bar), all amounts fractions of the equity ``E_t`` at the start of the step:

- action ``a = (size, leverage)``, clipped to ``[0, 1] x [1, max_leverage]``;
  position ``p_t = sign(forecast_t) x size x leverage`` (units of equity; ``sign`` is 0 for a zero
  forecast, and negative signs map to 0 with ``long_only``); the episode starts flat (``p = 0``).
- net return ``g_t = bar_return(p_{t-1}, p_t, *bars[t])``
  (:func:`huracan.evaluation.execution.bar_return`, the formula and its sources in that module's
  docstring): the two legs' gross return, minus ``cost_lin x |p_t - p_{t-1}|`` (fee + half-spread
  + slippage per unit of turnover; a flip pays twice) and the square-root impact, minus the
  funding legs (settled funding: positive rates, longs pay, shorts receive) and the borrow of a
  spot short; ``E_{t+1} = E_t (1 + g_t)``. :func:`huracan.evaluation.execution.execute` of the
  same positions on the same bars gives the same ``g_t`` (tested to 1e-12).

Liquidation (checked on every bar with ``p_t != 0``; ``m = maintenance_margin``):

- margin: the equity left at the bar's close, or at its worst intrabar price when
  ``low_return``/``high_return`` are given (the low for a long, the high for a short), is at or
  below the maintenance margin of the position's notional at that price:
  ``1 + bar_return(p_{t-1}, p_t, gap_t, h, ...) <= m |p_t| (1 + h)`` for the hold leg
  ``h = hold_t`` (the close) and ``h = (1 + w) / (1 + gap_t) - 1`` with ``w = low_return_t`` /
  ``high_return_t`` (extremes relative to ``C_t``). Equivalently the leverage exceeds what the
  bar's adverse move allows. The exchange closes the position and the remaining margin is
  forfeited (cross margin, insurance fund): ``g_t = -1``, the equity goes to 0.
- drawdown stop (only with ``drawdown_limit``): the drawdown after the bar reaches the limit; the
  position is closed at the bar's close paying the exit through the execution model's cost
  function: ``g_t -= trade_cost(|p_t|, cost_lin_t, impact_t)``
  (:func:`huracan.evaluation.execution.trade_cost`).

Either ends the episode (``terminated=True``, ``info["liquidated"] = "margin"`` or
``"drawdown"``). The check uses the close unless the intrabar extremes are given, so
without them it misses liquidations by wicks.

Reward of step ``t`` (the product's "daily PnL - drawdown_penalty x max drawdown +
consistency_bonus x streak of positive days" spread over the bars of each day)::

    reward_t = reward_scale x (g_t - drawdown_penalty x (MDD_{t+1} - MDD_t)
                               + consistency_bonus x B_t)

- ``g_t``: the bar's simple net return (fraction); summed over a day it is the day's PnL to first
  order.
- ``MDD``: the episode's running maximum drawdown of equity (the starting equity is the first peak,
  as in :func:`huracan.evaluation.metrics.drawdown`); the increments sum to the episode's MDD, so
  the episode pays ``drawdown_penalty x MDD`` once.
- ``B_t``: when bar ``t`` closes a UTC day (the next row falls on another date, or ``t`` is the last
  row of the data), the day's compounded return over the episode's bars of that day is computed; if
  positive the streak of consecutive positive days grows by one and ``B_t`` = the new streak length,
  otherwise the streak resets to 0 and ``B_t = 0``; ``B_t = 0`` on other bars. A day cut by the
  episode's end is not closed.

Observation (``float32``, clipped to ``[-obs_clip, obs_clip]``; names in
:attr:`SizingEnv.observation_names`), in this order:

==========================  ========================================================================
``forecast_z``              ``forecast_t / spread_t`` with ``spread_t`` the sample std of the last
                            ``forecast_window`` forecasts (rows ``t - W + 1 .. t``), clipped to
                            ``±z_clip``; 0 before 2 forecasts exist or when the spread is 0.
``confidence``              the given confidence (zoo agreement, a calibrated probability...), else
                            ``|forecast_z|``: |forecast| over its rolling spread.
``volatility``              annualised volatility: the given per-bar ``volatility`` or the sample
                            std of the last ``vol_window`` realised bar returns
                            (``next_return[t - W .. t - 1]``), times ``sqrt(periods_per_year)``.
``regime_0..k-1``           the regime one-hot, when given.
``liquidation_density``     when given, as given.
``importance_trend_0..m-1`` the top features' importance trend, when given, as given.
``pnl_<h>``                 the agent's equity return over the last ``h`` bars of the episode (from
                            its start when shorter), percent, one per ``pnl_horizons``.
``drawdown``                current drawdown of equity from its episode peak, percent.
``position``                the position held over the last bar, ``p_{t-1}`` (units of equity).
``leverage``                the leverage chosen at the last step (1 at the episode's start).
==========================  ========================================================================

Episodes: with ``random_start`` the first row is drawn uniformly (the env's seeded
``np_random``) so that ``episode_bars`` rows fit; otherwise (evaluation) it starts at row 0.
An episode is truncated after ``episode_bars`` steps or at the last row. Deterministic given the
seed. Gymnasium API: Towers et al. 2024, *Gymnasium: A Standard Interface for Reinforcement
Learning Environments* (gymnasium 1.x).
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
from gymnasium import spaces

from huracan.evaluation.backtest import BacktestConfig
from huracan.evaluation.execution import (
    MarketBars,
    bar_components,
    bar_return,
    close_bars,
    trade_cost,
)

#: names of the optional per-bar arrays of :class:`SizingData`, with their allowed ranks
_OPTIONAL_1D = ("confidence", "volatility", "liquidation_density", "low_return",
                "high_return", "label")


def _vector(values: Any, name: str, n: int | None) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {a.shape}")
    if n is not None and len(a) != n:
        raise ValueError(f"{name} has {len(a)} rows, expected {n} (one per bar)")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


@dataclass(frozen=True)
class SizingData:
    """One symbol's bars and their out-of-sample forecasts, all aligned on ``n`` rows.

    Attributes:
        timestamps: bar open times, strictly increasing, shape ``(n,)``.
        forecast: forecast forward return made at the close of each bar, fraction, ``(n,)``.
        next_return: simple return of the following bar ``close_{t+1} / close_t - 1``, fraction,
            ``> -1``, ``(n,)`` (the OOS frame's ``asset_return``).
        confidence: optional confidence per bar, ``>= 0``, ``(n,)``; default ``|forecast_z|``.
        regime: optional regime one-hot, ``(n, k)``, each row one 1 and zeros elsewhere.
        volatility: optional per-bar volatility forecast (std of one bar's return, fraction,
            known at the close of the bar), ``>= 0``, ``(n,)``; default a trailing realised vol.
        liquidation_density: optional market liquidation density per bar (scale-free, e.g.
            liquidated notional over its trailing mean), ``(n,)``; observed as given.
        importance_trend: optional trend of the top features' importance, ``(n,)`` or ``(n, m)``;
            observed as given. The caller keeps it causal (rankings stored before the bar).
        low_return, high_return: optional worst intrabar moves of the next bar relative to
            ``close_t`` (``low_{t+1} / close_t - 1`` and ``high_{t+1} / close_t - 1``), both or
            neither, ``low <= next_return <= high``, ``low > -1``; used by the liquidation check.
        label: optional realised label for the directional accuracy metric; default
            ``next_return``.
        bars: optional :class:`~huracan.evaluation.execution.MarketBars` of the same rows (the
            execution model: fill, costs, funding legs, borrow); ``None``: the close fill with
            the environment's fee only (:func:`sizing_bars`).

    Raises:
        ValueError: no rows, misaligned lengths, non-increasing timestamps, NaN/inf values,
            ``next_return <= -1``, negative confidence/volatility, a regime row that is not
            one-hot, only one of ``low_return``/``high_return``, or extremes not bracketing the
            close, bars of other rows than ``timestamps``.
    """

    timestamps: pd.DatetimeIndex
    forecast: np.ndarray
    next_return: np.ndarray
    confidence: np.ndarray | None = None
    regime: np.ndarray | None = None
    volatility: np.ndarray | None = None
    liquidation_density: np.ndarray | None = None
    importance_trend: np.ndarray | None = None
    low_return: np.ndarray | None = None
    high_return: np.ndarray | None = None
    label: np.ndarray | None = None
    bars: MarketBars | None = None

    def __post_init__(self) -> None:
        ts = pd.DatetimeIndex(self.timestamps)
        n = len(ts)
        if n == 0:
            raise ValueError("SizingData needs at least one bar")
        if not ts.is_monotonic_increasing or ts.has_duplicates:
            raise ValueError("timestamps must be strictly increasing")
        object.__setattr__(self, "timestamps", ts)
        object.__setattr__(self, "forecast", _vector(self.forecast, "forecast", n))
        r = _vector(self.next_return, "next_return", n)
        if (r <= -1.0).any():
            raise ValueError("next_return must be > -1 (a price cannot fall to 0)")
        object.__setattr__(self, "next_return", r)
        for name in _OPTIONAL_1D:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _vector(value, name, n))
        for name in ("confidence", "volatility"):
            value = getattr(self, name)
            if value is not None and (value < 0).any():
                raise ValueError(f"{name} must be >= 0")
        if self.regime is not None:
            g = np.asarray(self.regime, dtype=np.float64)
            if g.ndim != 2 or g.shape[0] != n or g.shape[1] < 1:
                raise ValueError(f"regime must have shape (n={n}, k>=1), got {g.shape}")
            if not (np.isin(g, (0.0, 1.0)).all() and (g.sum(axis=1) == 1.0).all()):
                raise ValueError("regime must be one-hot: each row one 1, zeros elsewhere")
            object.__setattr__(self, "regime", g)
        if self.importance_trend is not None:
            m = np.asarray(self.importance_trend, dtype=np.float64)
            m = m.reshape(-1, 1) if m.ndim == 1 else m
            if m.ndim != 2 or m.shape[0] != n or m.shape[1] < 1:
                raise ValueError(f"importance_trend must have shape (n={n},) or (n, m), "
                                 f"got {np.shape(self.importance_trend)}")
            if not np.isfinite(m).all():
                raise ValueError("importance_trend contains NaN or infinite values")
            object.__setattr__(self, "importance_trend", m)
        if (self.low_return is None) != (self.high_return is None):
            raise ValueError("give both low_return and high_return, or neither")
        if self.low_return is not None and self.high_return is not None:
            if (self.low_return <= -1.0).any():
                raise ValueError("low_return must be > -1")
            if ((self.low_return > r + 1e-12).any()
                    or (self.high_return < r - 1e-12).any()):
                raise ValueError("low_return <= next_return <= high_return must hold on every bar")
        if self.bars is not None and (len(self.bars) != n
                                      or not (self.bars.timestamps == ts).all()):
            raise ValueError(f"bars must cover the same {n} rows as timestamps, got "
                             f"{len(self.bars)} bars")

    def __len__(self) -> int:
        return len(self.timestamps)

    def slice(self, start: int, stop: int | None = None) -> SizingData:
        """Rows ``[start, stop)`` (positions), every array cut alike.

        Raises:
            ValueError: an empty or out-of-range slice.
        """
        n = len(self)
        stop = n if stop is None else stop
        if not 0 <= start < stop <= n:
            raise ValueError(f"slice [{start}, {stop}) is empty or outside the {n} rows")
        return self.take(slice(start, stop))

    def take(self, rows: builtins.slice | np.ndarray) -> SizingData:
        """The rows ``rows`` (a slice, integer positions or a boolean mask), every array and
        the bars cut alike."""
        cut: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                cut[f.name] = None
            elif isinstance(value, MarketBars):
                cut[f.name] = value.take(rows)
            else:
                cut[f.name] = value[rows]
        return SizingData(**cut)

    def row_of(self, boundary: int | str | pd.Timestamp) -> int:
        """Row position of a boundary: an int is a row (``0 .. n``), a time the first row at or
        after it (UTC if naive and the timestamps are tz-aware).

        Raises:
            ValueError: an int row outside ``0 .. n``.
        """
        if isinstance(boundary, (int, np.integer)) and not isinstance(boundary, bool):
            if not 0 <= int(boundary) <= len(self):
                raise ValueError(f"row {boundary} outside 0 .. {len(self)}")
            return int(boundary)
        t = pd.Timestamp(boundary)
        if t.tzinfo is None and self.timestamps.tz is not None:
            t = t.tz_localize("UTC")
        return int(self.timestamps.searchsorted(t, "left"))

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, *, forecast: str = "prediction",
                   next_return: str | None = None,
                   bars: MarketBars | None = None) -> SizingData:
        """Build from a per-bar frame such as ``backtest/oos_returns.parquet``.

        Columns read: ``timestamp`` (or a DatetimeIndex), ``forecast`` (default ``prediction``),
        ``next_return`` (default ``next_return`` if present else ``asset_return``), and when
        present ``confidence``, ``volatility``, ``liquidation_density``,
        ``low_return``, ``high_return``, ``label``, the one-hot columns ``regime_*`` and the
        columns ``importance_trend*``; ``bars`` as given (funding is part of them).

        Raises:
            ValueError: a required column missing, or any :class:`SizingData` check failing.
        """
        if "timestamp" in frame.columns:
            ts = pd.DatetimeIndex(frame["timestamp"])
        elif isinstance(frame.index, pd.DatetimeIndex):
            ts = frame.index
        else:
            raise ValueError("frame needs a 'timestamp' column or a DatetimeIndex")
        ret_col = next_return or ("next_return" if "next_return" in frame.columns
                                  else "asset_return")
        for name in (forecast, ret_col):
            if name not in frame.columns:
                raise ValueError(f"frame has no {name!r} column")

        def col(name: str) -> np.ndarray | None:
            return frame[name].to_numpy(np.float64) if name in frame.columns else None

        regime_cols = sorted(c for c in frame.columns if str(c).startswith("regime_"))
        imp_cols = sorted(c for c in frame.columns if str(c).startswith("importance_trend"))
        return cls(
            timestamps=ts, forecast=frame[forecast].to_numpy(np.float64),
            next_return=frame[ret_col].to_numpy(np.float64), confidence=col("confidence"),
            regime=frame[regime_cols].to_numpy(np.float64) if regime_cols else None,
            volatility=col("volatility"), liquidation_density=col("liquidation_density"),
            importance_trend=frame[imp_cols].to_numpy(np.float64) if imp_cols else None,
            low_return=col("low_return"), high_return=col("high_return"), label=col("label"),
            bars=bars)


@dataclass(frozen=True)
class EnvConfig:
    """Settings of :class:`SizingEnv` (see the module docstring for the rules).

    Attributes:
        max_leverage: upper bound of the leverage action (``sizer.max_leverage``), >= 1.
        fee: cost per unit of turnover, fraction, of the close-fill bars used when the data
            carry no :class:`~huracan.evaluation.execution.MarketBars` (:func:`sizing_bars`);
            with bars, their costs apply.
        maintenance_margin: margin rate of the liquidation rule, fraction of notional (exchanges'
            lowest tiers: 0.4-0.5 %).
        drawdown_limit: optional stop-out drawdown (fraction in ``(0, 1)``); ``None``: off.
        drawdown_penalty: weight of the max-drawdown increase in the reward (``>= 0``).
        consistency_bonus: reward per day of the positive-day streak (``>= 0``, fraction of
            equity per day, e.g. 1e-4 = 1 bp).
        reward_scale: multiplies the whole reward (e.g. 100: percent points).
        episode_bars: steps per episode (``None``: until the last row).
        random_start: draw the first row at random (training); else start at row 0.
        forecast_window: bars of the rolling forecast spread (confidence), >= 2.
        vol_window: bars of the trailing realised volatility, >= 2.
        pnl_horizons: bars of the recent-PnL observations, each >= 1.
        periods_per_year: bars per year (8,760 for 1h), for the annualised volatility.
        long_only: short forecasts give flat positions.
        z_clip: bound of ``forecast_z`` and the default confidence.
        obs_clip: bound of every observation (the observation space is ``[-obs_clip, obs_clip]``).

    Raises:
        ValueError: any value out of its range.
    """

    max_leverage: float = 5.0
    fee: float = BacktestConfig.fee
    maintenance_margin: float = 0.005
    drawdown_limit: float | None = None
    drawdown_penalty: float = 1.0
    consistency_bonus: float = 1e-4
    reward_scale: float = 1.0
    episode_bars: int | None = 720
    random_start: bool = True
    forecast_window: int = 168
    vol_window: int = 48
    pnl_horizons: tuple[int, ...] = (1, 24, 168)
    periods_per_year: float = 8760.0
    long_only: bool = False
    z_clip: float = 10.0
    obs_clip: float = 100.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "pnl_horizons", tuple(int(h) for h in self.pnl_horizons))
        checks = {
            "max_leverage must be >= 1": self.max_leverage >= 1.0,
            "fee must be >= 0": self.fee >= 0.0,
            "maintenance_margin must be in [0, 1)": 0.0 <= self.maintenance_margin < 1.0,
            "drawdown_limit must be in (0, 1) or None": (
                self.drawdown_limit is None or 0.0 < self.drawdown_limit < 1.0),
            "drawdown_penalty must be >= 0": self.drawdown_penalty >= 0.0,
            "consistency_bonus must be >= 0": self.consistency_bonus >= 0.0,
            "reward_scale must be > 0": self.reward_scale > 0.0,
            "episode_bars must be >= 1 or None": (
                self.episode_bars is None or int(self.episode_bars) >= 1),
            "forecast_window and vol_window must be >= 2": min(self.forecast_window,
                                                               self.vol_window) >= 2,
            "pnl_horizons must be >= 1": all(h >= 1 for h in self.pnl_horizons),
            "periods_per_year must be > 0": self.periods_per_year > 0.0,
            "z_clip and obs_clip must be > 0, z_clip <= obs_clip": (
                0.0 < self.z_clip <= self.obs_clip),
        }
        for message, ok in checks.items():
            if not ok:
                raise ValueError(f"EnvConfig: {message}")

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (``pnl_horizons`` as a list)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["pnl_horizons"] = list(self.pnl_horizons)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EnvConfig:
        """Inverse of :meth:`as_dict` (unknown keys raise ``TypeError``)."""
        v = dict(values)
        if "pnl_horizons" in v:
            v["pnl_horizons"] = tuple(v["pnl_horizons"])
        return cls(**v)


def realised_volatility(next_return: np.ndarray, window: int) -> np.ndarray:
    """Trailing per-bar volatility known at the close of each bar (vectorised).

    ``vol[t] = std(next_return[t - window .. t - 1], ddof=1)``: the last ``window`` realised bar
    returns (fewer at the start, at least 2), 0 while fewer than 2 exist (rows 0 and 1). Shape
    ``(n,)``, fraction per bar (multiply by ``sqrt(periods_per_year)`` to annualise).

    Raises:
        ValueError: ``window < 2``.
    """
    if window < 2:
        raise ValueError("window must be >= 2")
    r = pd.Series(np.asarray(next_return, dtype=np.float64)).shift(1)
    vol = r.rolling(window, min_periods=2).std(ddof=1).to_numpy()
    return np.nan_to_num(vol, nan=0.0)


def forecast_zscore(forecast: np.ndarray, window: int, clip: float) -> np.ndarray:
    """``forecast[t] / std(forecast[t - window + 1 .. t], ddof=1)``, clipped to ``±clip``.

    0 while fewer than 2 forecasts exist or when the spread is 0. Shape ``(n,)``, unitless.
    """
    f = np.asarray(forecast, dtype=np.float64)
    spread = pd.Series(f).rolling(window, min_periods=2).std(ddof=1).to_numpy()
    ok = np.isfinite(spread) & (spread > 0)
    z = np.zeros_like(f)
    np.divide(f, spread, out=z, where=ok)
    return np.clip(z, -clip, clip)


def forecast_volatility(data: SizingData, cfg: EnvConfig) -> np.ndarray:
    """Per-bar volatility forecast: ``data.volatility`` when given, else
    :func:`realised_volatility` over ``cfg.vol_window`` bars. Shape ``(n,)``, fraction per bar."""
    if data.volatility is not None:
        return data.volatility
    return realised_volatility(data.next_return, cfg.vol_window)


def observation_features(data: SizingData, cfg: EnvConfig) -> tuple[np.ndarray, list[str]]:
    """The bar part of the observation, every row at once (vectorised, causal).

    Returns:
        ``(features, names)``: shape ``(n, k)`` float64, row ``t`` built from data known at the
        close of bar ``t``; the layout is the first block of the module docstring's table.
    """
    z = forecast_zscore(data.forecast, cfg.forecast_window, cfg.z_clip)
    conf = (np.abs(z) if data.confidence is None
            else np.clip(data.confidence, 0.0, cfg.z_clip))
    vol = forecast_volatility(data, cfg) * math.sqrt(cfg.periods_per_year)
    cols = [z, conf, vol]
    names = ["forecast_z", "confidence", "volatility"]
    if data.regime is not None:
        cols += list(data.regime.T)
        names += [f"regime_{i}" for i in range(data.regime.shape[1])]
    if data.liquidation_density is not None:
        cols.append(data.liquidation_density)
        names.append("liquidation_density")
    if data.importance_trend is not None:
        cols += list(data.importance_trend.T)
        names += [f"importance_trend_{i}" for i in range(data.importance_trend.shape[1])]
    feats = np.clip(np.column_stack(cols), -cfg.obs_clip, cfg.obs_clip)
    return feats, names


def position_sign(forecast: np.ndarray, long_only: bool = False) -> np.ndarray:
    """``sign(forecast)`` (0 for a zero forecast; negative -> 0 with ``long_only``), ``(n,)``."""
    s = np.sign(np.asarray(forecast, dtype=np.float64))
    return np.maximum(s, 0.0) if long_only else s


def day_ends(timestamps: pd.DatetimeIndex) -> np.ndarray:
    """``True`` where the row is the last of its UTC date in the data (the last row included)."""
    ts = pd.DatetimeIndex(timestamps)
    if ts.tz is not None:
        ts = ts.tz_convert("UTC")
    days = ts.floor("D").asi8
    return np.concatenate([days[1:] != days[:-1], [True]])


def sizing_bars(data: SizingData, fee: float = BacktestConfig.fee) -> MarketBars:
    """The execution model's bars of ``data``: ``data.bars``, else the close fill with ``fee``
    per unit of turnover as the only cost (:func:`huracan.evaluation.execution.close_bars`)."""
    if data.bars is not None:
        return data.bars
    return close_bars(data.timestamps, data.next_return, fee,
                      notes=("no market bars given: close fill, the fee only",))


def adverse_hold(gap: Any, extreme: Any) -> Any:
    """The hold leg's return at an intrabar extreme ``extreme`` (relative to ``C_t``, e.g.
    ``low_{t+1} / C_t - 1``) when the fill was ``gap`` away from ``C_t``:
    ``(1 + extreme) / (1 + gap) - 1`` (scalars or arrays)."""
    return (1.0 + extreme) / (1.0 + gap) - 1.0


def margin_call(position: np.ndarray, bars: MarketBars, maintenance_margin: float,
                low_return: np.ndarray | None = None, high_return: np.ndarray | None = None,
                previous: np.ndarray | None = None) -> np.ndarray:
    """Where the margin liquidation rule fires (vectorised; see the module docstring).

    ``1 + bar_return(p_{t-1}, p_t, gap, h, ...) <= m |p_t| (1 + h)`` at the hold leg ``h =
    hold_t`` and, when given, at the adverse extreme (``low_return`` for a long,
    ``high_return`` for a short; :func:`adverse_hold`); never for ``p_t = 0``.

    Args:
        position: ``p_t``, ``(n,)``, units of equity.
        bars: the rows' :class:`~huracan.evaluation.execution.MarketBars`.
        maintenance_margin: ``m``, fraction of notional.
        low_return, high_return: optional ``(n,)`` intrabar extremes relative to ``C_t``.
        previous: ``p_{t-1}`` per row (default: ``position`` shifted, starting flat).

    Returns:
        boolean ``(n,)``.
    """
    p = np.asarray(position, dtype=np.float64)
    prev = np.concatenate([[0.0], p[:-1]]) if previous is None else previous
    ap = np.abs(p)
    _gap, _hold, *rest = bars.arrays()

    def fires(h: np.ndarray) -> np.ndarray:
        g = bar_return(prev, p, bars.gap, h, *rest)
        return (1.0 + g <= maintenance_margin * ap * (1.0 + h)) & (p != 0)

    hit = fires(bars.hold)
    if low_return is not None and high_return is not None:
        hit |= fires(adverse_hold(bars.gap, np.where(p > 0, low_return, high_return)))
    return hit


_DYNAMIC = ("drawdown", "position", "leverage")


class SizingEnv(gym.Env[np.ndarray, np.ndarray]):
    """Gymnasium environment of the position sizer (rules in the module docstring).

    Args:
        data: the bars and their OOS forecasts (:class:`SizingData`).
        config: :class:`EnvConfig` (default values when ``None``).

    Spaces:
        action: ``Box([0, 1], [1, max_leverage])`` float32: (size, leverage); out-of-bound actions
            are clipped.
        observation: ``Box(-obs_clip, obs_clip, (k,))`` float32, names in
            :attr:`observation_names`.

    ``reset(seed=..., options={"start": row})`` starts at a given row. ``step`` returns the
    gymnasium 5-tuple; ``info`` holds ``row``, ``size``, ``leverage``, ``position``,
    ``turnover``, ``cost`` (fee + half-spread + slippage + impact of the fill), ``funding_cost``,
    ``borrow_cost`` (the parts of :func:`huracan.evaluation.execution.bar_components`),
    ``return`` (``g_t``), ``equity``, ``drawdown``, ``max_drawdown``, ``streak``, ``day_bonus``
    (``B_t``), ``liquidated`` (``None``, ``"margin"``, ``"drawdown"``).

    Raises:
        ValueError: (at ``step``) an action that is not 2 finite numbers, stepping a finished
            episode; (at ``reset``) a start row outside the data.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (gymnasium's class attribute)

    def __init__(self, data: SizingData, config: EnvConfig | None = None) -> None:
        super().__init__()
        self.data = data
        self.config = cfg = config or EnvConfig()
        self.n = len(data)
        static, names = observation_features(data, cfg)
        self._static32 = static.astype(np.float32)
        self._k = static.shape[1]
        self.observation_names: tuple[str, ...] = tuple(
            names + [f"pnl_{h}" for h in cfg.pnl_horizons] + list(_DYNAMIC))
        dim = len(self.observation_names)
        self.observation_space = spaces.Box(-cfg.obs_clip, cfg.obs_clip, shape=(dim,),
                                            dtype=np.float32)
        self.action_space = spaces.Box(np.array([0.0, 1.0], dtype=np.float32),
                                       np.array([1.0, cfg.max_leverage], dtype=np.float32),
                                       dtype=np.float32)
        # plain Python floats for the per-step arithmetic (numpy scalars are ~10x slower)
        self._sign = position_sign(data.forecast, cfg.long_only).tolist()
        self.bars = sizing_bars(data, cfg.fee)
        # per-bar Python lists (a list index gives a float: the scalar formula costs ~1 us)
        (self._gap, self._hold, self._cost_lin, self._impact, self._f_gap, self._f_hold,
         self._borrow) = self.bars.step_lists()
        zeros = [0.0] * self.n
        self._has_extremes = data.low_return is not None and data.high_return is not None
        self._low = data.low_return.tolist() if data.low_return is not None else zeros
        self._high = data.high_return.tolist() if data.high_return is not None else zeros
        self._init_episodes(data.timestamps, dim)

    def _init_episodes(self, timestamps: pd.DatetimeIndex, dim: int) -> None:
        """Day ends, the observation buffer and a finished (not yet reset) episode."""
        self._day_end = day_ends(timestamps).tolist()
        self._obs = np.zeros(dim, dtype=np.float32)
        self._start = self._stop = self._t = 0
        self._done = True
        self._reset_state()

    def _reset_state(self) -> None:
        self._equity = 1.0
        self._peak = 1.0
        self._mdd = 0.0
        self._pos = 0.0
        self._lev = 1.0
        self._streak = 0
        self._day_start_equity = 1.0
        self._eq_hist = [1.0]

    def _episode_bounds(self, options: dict[str, Any] | None) -> tuple[int, int]:
        cfg = self.config
        length = self.n if cfg.episode_bars is None else min(int(cfg.episode_bars), self.n)
        if options and options.get("start") is not None:
            start = int(options["start"])
            if not 0 <= start < self.n:
                raise ValueError(f"start row {start} outside 0 .. {self.n - 1}")
        elif cfg.random_start:
            start = int(self.np_random.integers(0, self.n - length + 1))
        else:
            start = 0
        return start, min(start + length, self.n)

    def _fill_account(self, obs: np.ndarray) -> int:
        """Write the bar block, ``pnl_<h>`` and ``drawdown`` into ``obs``; the next index."""
        clip = self.config.obs_clip
        obs[: self._k] = self._static32[min(self._t, self.n - 1)]
        i = len(self._eq_hist) - 1
        eq = self._equity
        j = self._k
        for h in self.config.pnl_horizons:
            past = self._eq_hist[max(i - h, 0)]
            v = 100.0 * (eq / past - 1.0) if past > 0 else -100.0
            obs[j] = min(max(v, -clip), clip)
            j += 1
        obs[j] = min(100.0 * (1.0 - eq / self._peak), clip)
        return j + 1

    def _observation(self) -> np.ndarray:
        obs = self._obs
        j = self._fill_account(obs)
        obs[j] = self._pos
        obs[j + 1] = self._lev
        return obs.copy()

    def _settle(self, t: int, g: float, exposed: bool, exit_cost: float,
                liquidated: str | None
                ) -> tuple[float, float, float, float, int, float, str | None]:
        """Book bar ``t``'s net return ``g`` (module docstring): equity, drawdown, the drawdown
        stop (when ``exposed``; it pays ``exit_cost``, the execution model's cost of closing the
        positions), the day streak and the reward. Advances the row and marks the episode done
        when it ends.

        Returns:
            ``(g, equity, drawdown, max_drawdown, day_bonus, reward, liquidated)``.
        """
        cfg = self.config
        equity = self._equity * (1.0 + g)
        peak = max(self._peak, equity)
        dd = 1.0 - equity / peak
        if (liquidated is None and cfg.drawdown_limit is not None and exposed
                and dd >= cfg.drawdown_limit):
            liquidated = "drawdown"
            g -= exit_cost
            equity = self._equity * (1.0 + g)
            dd = 1.0 - equity / peak
        mdd = max(self._mdd, dd)
        bonus = 0
        if self._day_end[t] or liquidated is not None:
            if liquidated is None and equity > self._day_start_equity:
                self._streak += 1
                bonus = self._streak
            else:
                self._streak = 0
            self._day_start_equity = equity
        reward = cfg.reward_scale * (g - cfg.drawdown_penalty * (mdd - self._mdd)
                                     + cfg.consistency_bonus * bonus)
        self._equity, self._peak, self._mdd = equity, peak, mdd
        self._eq_hist.append(equity)
        self._t = t + 1
        self._done = liquidated is not None or self._t >= self._stop
        return g, equity, dd, mdd, bonus, float(reward), liquidated

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode (see the class docstring); returns ``(observation, info)`` with
        ``info = {"row": start, "start": start, "stop": stop}``."""
        super().reset(seed=seed)
        self._start, self._stop = self._episode_bounds(options)
        self._t = self._start
        self._done = False
        self._reset_state()
        return self._observation(), {"row": self._t, "start": self._start, "stop": self._stop}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """One bar: take the position, pay costs, check liquidation, score (module docstring)."""
        if self._done:
            raise ValueError("episode finished: call reset() first")
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (2,) or not np.isfinite(a).all():
            raise ValueError(f"action must be 2 finite numbers (size, leverage), got {action!r}")
        cfg = self.config
        size = min(max(float(a[0]), 0.0), 1.0)
        lev = min(max(float(a[1]), 1.0), cfg.max_leverage)
        t = self._t
        p = self._sign[t] * size * lev
        prev = self._pos
        gap, hold, cost_lin, impact = self._gap[t], self._hold[t], self._cost_lin[t], \
            self._impact[t]
        f_gap, f_hold, borrow = self._f_gap[t], self._f_hold[t], self._borrow[t]
        gross, cost, funding_cost, borrow_cost = bar_components(
            prev, p, gap, hold, cost_lin, impact, f_gap, f_hold, borrow)
        g = gross - cost - funding_cost - borrow_cost
        liquidated: str | None = None
        exit_cost = 0.0
        if p != 0.0:
            m_ap = cfg.maintenance_margin * abs(p)
            hit = 1.0 + g <= m_ap * (1.0 + hold)
            if self._has_extremes and not hit:
                h = adverse_hold(gap, self._low[t] if p > 0 else self._high[t])
                g_w = bar_return(prev, p, gap, h, cost_lin, impact, f_gap, f_hold, borrow)
                hit = 1.0 + g_w <= m_ap * (1.0 + h)
            if hit:
                liquidated, g = "margin", -1.0
            elif cfg.drawdown_limit is not None:
                exit_cost = trade_cost(abs(p), cost_lin, impact)
        g, equity, dd, mdd, bonus, reward, liquidated = self._settle(t, g, p != 0.0, exit_cost,
                                                                     liquidated)
        self._pos = 0.0 if liquidated is not None else p
        self._lev = lev
        terminated = liquidated is not None
        truncated = not terminated and self._t >= self._stop
        info = {"row": t, "size": size, "leverage": lev, "position": p,
                "turnover": abs(p - prev), "cost": cost, "funding_cost": funding_cost,
                "borrow_cost": borrow_cost, "return": g, "equity": equity, "drawdown": dd,
                "max_drawdown": mdd, "streak": self._streak, "day_bonus": bonus,
                "liquidated": liquidated}
        return self._observation(), float(reward), terminated, truncated, info


#: columns of :func:`run_episode`'s frame, in order
EPISODE_COLUMNS: tuple[str, ...] = (
    "timestamp", "forecast", "size", "leverage", "position", "asset_return", "turnover",
    "cost", "funding_cost", "borrow_cost", "strategy_return", "equity", "drawdown",
    "liquidated", "reward")


def run_episode(env: gym.Env[Any, Any], act: Callable[[np.ndarray], np.ndarray], *,
                start: int = 0, pad: bool = True, seed: int | None = None) -> pd.DataFrame:
    """Play one episode from ``start`` with the policy ``act(observation) -> action``.

    ``env`` is a :class:`SizingEnv`, possibly wrapped (e.g. ``RescaleAction``; the action goes
    through the wrappers). With ``pad`` a liquidated episode is padded to the episode's last row
    with flat bars (size 0, return 0, equity as left) so the series covers the same bars as a
    baseline.

    Returns:
        one row per bar: :data:`EPISODE_COLUMNS` (``strategy_return`` = ``g_t``, fractions;
        ``liquidated`` the rule's name or ``""``).

    Raises:
        ValueError: ``env`` does not wrap a :class:`SizingEnv`; a bad action from ``act``.
    """
    base = env.unwrapped
    if not isinstance(base, SizingEnv):
        raise ValueError("run_episode needs a SizingEnv (possibly wrapped)")
    obs, info = env.reset(seed=seed, options={"start": start})
    stop = int(info["stop"])
    rows: list[tuple[Any, ...]] = []
    done = False
    while not done:
        obs, reward, terminated, truncated, step = env.step(act(obs))
        done = terminated or truncated
        t = step["row"]
        rows.append((t, step["size"], step["leverage"], step["position"], step["turnover"],
                     step["cost"], step["funding_cost"], step["borrow_cost"], step["return"],
                     step["equity"], step["drawdown"], step["liquidated"] or "", reward))
    last = rows[-1]
    if pad:
        for t in range(last[0] + 1, stop):
            rows.append((t, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, last[9], last[10], "", 0.0))
    idx = np.array([r[0] for r in rows], dtype=np.int64)
    frame = pd.DataFrame(rows, columns=["row", "size", "leverage", "position", "turnover",
                                        "cost", "funding_cost", "borrow_cost",
                                        "strategy_return", "equity", "drawdown", "liquidated",
                                        "reward"])
    frame.insert(0, "timestamp", base.data.timestamps[idx])
    frame.insert(1, "forecast", base.data.forecast[idx])
    frame.insert(5, "asset_return", base.bars.next_return[idx])
    return frame[list(EPISODE_COLUMNS)].reset_index(drop=True)


__all__ = [
    "EPISODE_COLUMNS", "EnvConfig", "SizingData", "SizingEnv", "adverse_hold", "day_ends",
    "forecast_volatility", "forecast_zscore", "margin_call", "observation_features",
    "position_sign", "realised_volatility", "run_episode", "sizing_bars",
]
