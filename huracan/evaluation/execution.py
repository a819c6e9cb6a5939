"""The one execution model: how a position decided at a bar's close is filled, what it earns and
what it pays. Every return in Huracan (forward and walk-forward backtests, trading-rule fits,
registry re-scoring, regime switching, the bootstrap, the diagnostics) comes from
:func:`bar_return` / :func:`execute` here; no other module holds fee or turnover arithmetic.

Timing. Row ``t`` is the bar opening at ``timestamps[t]``; ``C_t`` its close, ``O_{t+1}`` the next
bar's open. A decision ``p_t`` (signed fraction of equity) is made at ``C_t`` and FILLED at
``F_t``::

    bar t                     bar t+1
    |--------------------C_t|O_{t+1}----------------C_{t+1}|
                         ^    ^                            ^
                decided here  filled here (next_open)      marked here
         gap leg  C_t -> F_t : held by the OLD position p_{t-1}
         hold leg F_t -> C_{t+1} : held by the NEW position p_t

- ``fill=next_open`` (default): ``F_t = O_{t+1}``;
- ``fill=close`` (a diagnostic, "cheat-on-close"): ``F_t = C_t``, so the gap leg is 0;
- ``fill=delay``: ``F_t`` = the close of the first bar of a FINER series of the same symbol whose
  close time is at least ``backtest.latency`` after ``C_t``.

``(1 + gap_t)(1 + hold_t) = 1 + next_return_t`` (close to close). The per-bar net return is

    net_t = (1 + p_{t-1} gap_t)(1 + p_t hold_t) - 1
            - cost_lin_t |p_t - p_{t-1}| - impact_t |p_t - p_{t-1}|^1.5
            - p_{t-1} funding_gap_t - p_t funding_hold_t - max(-p_t, 0) borrow_t

with ``cost_lin = fee + half_spread + slippage`` (fractions per unit of turnover), the
square-root impact law ``impact_t = impact_coef * sigma_t * sqrt(notional / (close_t *
volume_t))`` (Almgren, Thum, Hauptmann & Li 2005, "Direct estimation of equity market impact",
Risk 18(7); the cost of trading ``d`` units of equity is ``impact_t d^1.5``), funding settled in
``[C_t, F_t]`` paid by the old position and in ``(F_t, C_{t+1})`` by the new one (positive rate:
longs pay), and a borrow rate per bar on shorts of spot markets. The series starts flat
(``p_{-1} = 0``). With ``open == previous close`` and no cost but the fee, ``next_open`` gives
exactly the close fill: ``net_t = p_t next_return_t - fee |p_t - p_{t-1}|``.

Half-spread estimators (opt-in; ``backtest.half_spread`` otherwise a constant in bps), each over
a trailing window of ``spread_window`` bars ending at bar ``t`` (causal: pairs of consecutive
bars ``(s-1, s)`` with ``s <= t``; a pair across a data gap is skipped):

- ``abdi_ranaldo`` (default estimator): Abdi & Ranaldo (2017), "A simple estimation of bid-ask
  spreads from daily close, high, and low prices", Review of Financial Studies 30(12), 4437-4480.
  With ``c`` the log close and ``eta = (log high + log low) / 2`` the log mid-range, the spread
  is ``S = sqrt(max(4 mean[(c_{s-1} - eta_{s-1})(c_{s-1} - eta_s)], 0))`` (the paper's
  average-of-products estimate, negative means set to 0).
- ``corwin_schultz``: Corwin & Schultz (2012), "A simple way to estimate bid-ask spreads from
  daily high and low prices", Journal of Finance 67(2), 719-760: per pair ``beta = sum of the
  two bars' (log H/L)^2``, ``gamma = (log of the pair's high over its low)^2`` (the second bar's
  range shifted by the close-to-open move, the paper's overnight adjustment), ``alpha =
  (sqrt(2 beta) - sqrt(beta)) / (3 - 2 sqrt 2) - sqrt(gamma / (3 - 2 sqrt 2))``, ``S = 2 (e^alpha
  - 1) / (1 + e^alpha)``, negative two-bar estimates set to 0, then averaged.

Both were defined on daily bars; here they run on the backtest's own bars. The half-spread is
half the estimated spread (a fraction of price).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import pandas as pd

from huracan.evaluation.backtest import (
    FILLS,
    SPREAD_ESTIMATORS,
    BacktestConfig,
    BacktestResult,
)

__all__ = ["FILLS", "SPREAD_ESTIMATORS"]  # re-exported: the modes live with the settings
from huracan.evaluation.metrics import compute_metrics, sharpe_ratio, total_return

#: one basis point as a fraction
BPS = 1e-4
#: seconds in the 365-day year used for annualisation (crypto trades 24/7)
SECONDS_PER_YEAR = 365 * 24 * 3600
#: prefix of the per-row execution columns a logged evaluation window carries
#: (:func:`bars_frame` / :func:`bars_from_frame`)
EXEC_PREFIX = "exec_"
#: per-bar arrays of :class:`MarketBars`, in the order :func:`bar_return` takes them
BAR_ARRAYS = ("gap", "hold", "cost_lin", "impact", "funding_gap", "funding_hold", "borrow")


class ExecutionInputError(ValueError):
    """The market data the execution model needs is missing, not finite, or does not cover the
    bars (a column, the finer series of ``fill=delay``, volume for the impact term); the
    message is one line naming it. Commands report it as unusable input, without a
    traceback."""


# ---------------------------------------------------------------------------- the formula
def bar_components(prev: Any, pos: Any, gap: Any, hold: Any, cost_lin: Any, impact: Any,
                   funding_gap: Any, funding_hold: Any, borrow: Any
                   ) -> tuple[Any, Any, Any, Any]:
    """The four parts of one bar's net return (scalars or same-shape arrays, fractions of
    equity): ``(gross, cost, funding, borrow_cost)``.

    - ``gross = (1 + prev gap)(1 + pos hold) - 1``: the gap leg held by the old position, then
      the hold leg by the new one, compounded;
    - ``cost = cost_lin d + impact d^1.5`` with turnover ``d = |pos - prev|``;
    - ``funding = prev funding_gap + pos funding_hold`` (positive: paid);
    - ``borrow_cost = max(-pos, 0) borrow``.

    Built from arithmetic operators and ``abs`` only, so it costs about a microsecond on Python
    floats (a step-by-step environment) and vectorises on numpy arrays (a backtest).
    """
    d = abs(pos - prev)
    a, b = prev * gap, pos * hold
    gross = a + b + a * b  # (1 + a)(1 + b) - 1, exact when either leg is 0
    cost = cost_lin * d + impact * d ** 1.5
    funding = prev * funding_gap + pos * funding_hold
    borrow_cost = 0.5 * (abs(pos) - pos) * borrow
    return gross, cost, funding, borrow_cost


def bar_return(prev: Any, pos: Any, gap: Any, hold: Any, cost_lin: Any, impact: Any,
               funding_gap: Any, funding_hold: Any, borrow: Any) -> Any:
    """THE net return of a bar (module docstring), for scalars or same-shape numpy arrays.

    Args:
        prev: position held before the fill ``p_{t-1}`` (fraction of equity, signed).
        pos: position after the fill ``p_t``.
        gap, hold: the two legs' simple returns (:class:`MarketBars`), fractions.
        cost_lin: fee + half-spread + slippage per unit of turnover, fraction.
        impact: coefficient of ``|pos - prev|^1.5`` (0 without ``backtest.notional``).
        funding_gap, funding_hold: funding rates settled in the gap / hold leg, fractions.
        borrow: borrow rate of a short over the bar, fraction.

    Returns:
        ``net_t``, fraction of equity (same shape as the inputs).
    """
    gross, cost, funding, borrow_cost = bar_components(prev, pos, gap, hold, cost_lin, impact,
                                                       funding_gap, funding_hold, borrow)
    return gross - cost - funding - borrow_cost


def trade_cost(turnover: Any, cost_lin: Any, impact: Any) -> Any:
    """Cost of trading ``turnover`` units of equity at one fill, fraction of equity (the cost
    term of :func:`bar_components`): ``cost_lin d + impact d^1.5``."""
    return bar_components(0.0, turnover, 0.0, 0.0, cost_lin, impact, 0.0, 0.0, 0.0)[1]


# ---------------------------------------------------------------------------- market bars
@dataclass(frozen=True)
class MarketBars:
    """What the market charges and pays per row, precomputed once (arrays of shape ``(n,)``).

    Attributes:
        timestamps: bar open times (UTC).
        gap: ``F_t / C_t - 1``, the gap leg's return (0 under ``fill=close``).
        hold: ``C_{t+1} / F_t - 1``, the hold leg's return.
        cost_lin: fee + half-spread + slippage per unit of turnover at the fill, fraction.
        impact: square-root impact coefficient (cost ``impact d^1.5``), 0 without a notional.
        funding_gap, funding_hold: funding rates settled in the gap / hold leg (positive: longs
            pay), fractions.
        borrow: borrow cost of a unit short over the bar, fraction.
        fill: the fill mode the bars were built for.
        notes: what the builder had to assume (e.g. a window logged before ``next_open``).
    """

    timestamps: pd.DatetimeIndex
    gap: np.ndarray
    hold: np.ndarray
    cost_lin: np.ndarray
    impact: np.ndarray
    funding_gap: np.ndarray
    funding_hold: np.ndarray
    borrow: np.ndarray
    fill: str = "next_open"
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        n = len(self.timestamps)
        for name in BAR_ARRAYS:
            arr = np.asarray(getattr(self, name), dtype=np.float64).reshape(-1)
            if arr.shape != (n,):
                raise ValueError(f"MarketBars.{name} has {arr.shape[0]} rows, expected {n}")
            if not np.isfinite(arr).all():
                row = int(np.flatnonzero(~np.isfinite(arr))[0])
                raise ValueError(f"MarketBars.{name} is not finite at row {row} (bar "
                                 f"{self.timestamps[row]})")
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "timestamps", pd.DatetimeIndex(self.timestamps))

    def __len__(self) -> int:
        return len(self.timestamps)

    @property
    def next_return(self) -> np.ndarray:
        """Close-to-close return ``(1 + gap)(1 + hold) - 1``, shape ``(n,)`` (expanded, so it is
        ``hold`` exactly when the gap is 0)."""
        return self.gap + self.hold + self.gap * self.hold

    def take(self, rows: range | slice | np.ndarray | Sequence[int]) -> MarketBars:
        """The bars of ``rows`` (a range, slice, integer positions or a boolean mask)."""
        if isinstance(rows, range):
            rows = slice(rows.start, rows.stop)
        if not isinstance(rows, slice):
            rows = np.asarray(rows)
        return replace(self, timestamps=self.timestamps[rows],
                       **{k: getattr(self, k)[rows] for k in BAR_ARRAYS})

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The per-bar arrays in :func:`bar_return`'s order (after ``prev, pos``): a
        step-by-step environment indexes these at each step."""
        return tuple(getattr(self, k) for k in BAR_ARRAYS)

    def step_lists(self) -> tuple[list[float], ...]:
        """:meth:`arrays` as Python lists, for a step-by-step environment: indexing a list
        gives a Python float, so a step ``bar_return(prev, pos, *(col[t] for col in lists))``
        costs about 1.3 us against 2.3 us with numpy scalars."""
        return tuple(getattr(self, k).tolist() for k in BAR_ARRAYS)

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary: fill, median and mean cost per unit turnover in bps, whether
        impact, funding and borrow are charged, and the notes."""
        n = len(self)
        return {
            "fill": self.fill, "bars": n,
            "cost_bps_median": float(np.median(self.cost_lin) / BPS) if n else 0.0,
            "cost_bps_mean": float(np.mean(self.cost_lin) / BPS) if n else 0.0,
            "impact": bool(np.any(self.impact)),
            "funding": bool(np.any(self.funding_gap) or np.any(self.funding_hold)),
            "borrow": bool(np.any(self.borrow)), "notes": list(self.notes),
        }


def close_bars(timestamps: pd.DatetimeIndex | Sequence[Any], next_return: np.ndarray,
               fee: float = BacktestConfig.fee, notes: Sequence[str] = ()) -> MarketBars:
    """Bars of the close fill with the fee as the only cost (the ``_close`` diagnostics, and
    windows logged before ``next_open`` existed): ``gap = 0``, ``hold = next_return``.

    Raises:
        ValueError: ``next_return`` not finite or of another length than ``timestamps``.
    """
    r = np.asarray(next_return, dtype=np.float64).reshape(-1)
    zeros = np.zeros(len(r))
    return MarketBars(pd.DatetimeIndex(timestamps), zeros, r, np.full(len(r), float(fee)),
                      zeros, zeros, zeros, zeros, fill="close", notes=tuple(notes))


# ---------------------------------------------------------------------------- spread
def _log(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(x)


def _pairs(timestamps: pd.DatetimeIndex, bar: pd.Timedelta) -> np.ndarray:
    """True at row ``s`` when rows ``s-1`` and ``s`` are consecutive bars (a valid pair)."""
    ok = np.zeros(len(timestamps), dtype=bool)
    if len(timestamps) > 1:  # in ns whatever the index's unit (Parquet candles are in ms)
        ok[1:] = np.diff(pd.DatetimeIndex(timestamps).as_unit("ns").asi8) == bar.value
    return ok


def _trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the finite values among the last ``window`` rows (NaN when none)."""
    return pd.Series(values).rolling(window, min_periods=1).mean().to_numpy(np.float64)


def abdi_ranaldo_spread(high: np.ndarray, low: np.ndarray, close: np.ndarray,
                        timestamps: pd.DatetimeIndex, bar: pd.Timedelta,
                        window: int) -> np.ndarray:
    """Abdi & Ranaldo (2017) spread estimate per row (fraction of price; NaN without a pair).

    Row ``t`` averages the products ``4 (c_{s-1} - eta_{s-1})(c_{s-1} - eta_s)`` of the pairs
    ``(s-1, s)`` of consecutive bars with ``t - window + 2 <= s <= t`` (``window - 1`` pairs:
    the bars of the trailing window), then ``sqrt(max(mean, 0))``; ``c`` log close, ``eta`` log
    mid-range. Causal: row ``t`` reads bars up to ``t``.

    Args:
        high, low, close: bar prices, shape ``(n,)``.
        timestamps: bar open times; bar: the bar size (pairs must be ``bar`` apart).
        window: bars of the trailing window, >= 2.
    """
    c, eta = _log(close), 0.5 * (_log(high) + _log(low))
    prod = np.full(len(c), np.nan)
    prod[1:] = 4.0 * (c[:-1] - eta[:-1]) * (c[:-1] - eta[1:])
    prod[~_pairs(timestamps, bar)] = np.nan
    mean = _trailing_mean(prod, window - 1)
    return np.sqrt(np.maximum(mean, 0.0))


def corwin_schultz_spread(high: np.ndarray, low: np.ndarray, close: np.ndarray,
                          timestamps: pd.DatetimeIndex, bar: pd.Timedelta,
                          window: int) -> np.ndarray:
    """Corwin & Schultz (2012) spread estimate per row (fraction of price; NaN without a pair).

    Per pair ``(s-1, s)`` of consecutive bars, bar ``s``'s high and low are first shifted by the
    move from ``close_{s-1}`` outside bar ``s``'s range (the paper's overnight adjustment:
    ``+ max(0, C_{s-1} - H_s) + min(0, C_{s-1} - L_s)``), then ``beta = (ln H_{s-1}/L_{s-1})^2
    + (ln H_s/L_s)^2``, ``gamma = (ln max(H_{s-1}, H_s) / min(L_{s-1}, L_s))^2``, ``alpha``
    and ``S`` as in the module docstring; negative two-bar estimates are set to 0 and row ``t``
    averages the pairs with ``t - window + 2 <= s <= t``.
    """
    h1, l1, c1 = np.roll(high, 1), np.roll(low, 1), np.roll(close, 1)
    shift = np.maximum(0.0, c1 - high) + np.minimum(0.0, c1 - low)
    h2, l2 = high + shift, low + shift
    beta = _log(h1 / l1) ** 2 + _log(h2 / l2) ** 2
    gamma = _log(np.maximum(h1, h2) / np.minimum(l1, l2)) ** 2
    k = 3.0 - 2.0 * math.sqrt(2.0)
    alpha = (np.sqrt(2.0 * beta) - np.sqrt(beta)) / k - np.sqrt(gamma / k)
    s = np.maximum(2.0 * (np.exp(alpha) - 1.0) / (1.0 + np.exp(alpha)), 0.0)
    s[~_pairs(timestamps, bar)] = np.nan
    return _trailing_mean(s, window - 1)


ESTIMATORS = {"abdi_ranaldo": abdi_ranaldo_spread, "corwin_schultz": corwin_schultz_spread}


def estimate_half_spread(candles: pd.DataFrame, estimator: str, window: int,
                         timeframe: str | None = None) -> pd.Series:
    """Half the estimated spread per bar of OHLC candles (``timestamp`` column or index,
    ``high``, ``low``, ``close``), fraction of price, clipped at 0; NaN before the first pair.

    Raises:
        ValueError: an unknown estimator, a window < 2 or a missing column.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown spread estimator {estimator!r}; expected one of "
                         f"{', '.join(SPREAD_ESTIMATORS)}")
    if window < 2:
        raise ValueError(f"spread window must be >= 2 bars, got {window}")
    frame = candles.set_index("timestamp") if "timestamp" in candles.columns else candles
    missing = [c for c in ("high", "low", "close") if c not in frame.columns]
    if missing:
        raise ValueError(f"candles lack column(s) {missing} for the {estimator} estimator")
    ts = pd.DatetimeIndex(frame.index)
    from huracan.data.ohlcv import infer_timeframe, timeframe_to_timedelta

    bar = timeframe_to_timedelta(timeframe or infer_timeframe(pd.Series(ts)))
    high, low, close = (frame[c].to_numpy(np.float64) for c in ("high", "low", "close"))
    s = ESTIMATORS[estimator](high, low, close, ts, bar, int(window))
    return pd.Series(0.5 * np.maximum(s, 0.0), index=ts, name="half_spread")


# ---------------------------------------------------------------------------- builders
def _timestamps(frame: pd.DataFrame) -> pd.DatetimeIndex:
    if "timestamp" in frame.columns:
        return pd.DatetimeIndex(pd.to_datetime(frame["timestamp"], utc=True))
    return pd.DatetimeIndex(frame.index)


def bar_size(periods_per_year: float) -> pd.Timedelta:
    """The bar of ``periods_per_year`` bars in a 365-day year, to the second (8,760 -> 1h)."""
    return pd.Timedelta(seconds=round(SECONDS_PER_YEAR / float(periods_per_year)))


def _column(frame: pd.DataFrame, name: str, why: str) -> np.ndarray:
    if name not in frame.columns:
        raise ExecutionInputError(f"{why} needs the column {name!r}, which the frame lacks")
    values = frame[name].to_numpy(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ExecutionInputError(f"{why}: column {name!r} is not finite at row {row} "
                                  f"({int(bad.sum())} row(s))")
    return values


def settle_funding(timestamps: pd.DatetimeIndex, fill_times: pd.DatetimeIndex,
                   bar: pd.Timedelta, settlements: pd.DataFrame
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Funding of each row's two legs, ``(funding_gap, funding_hold)``, fractions.

    ``funding_gap_t`` sums the rates settled in ``[C_t, F_t]`` (``C_t`` = ``timestamps[t] +
    bar``, ``F_t`` = ``fill_times[t]``): the position held before the fill pays them, a
    settlement at the fill instant included; ``funding_hold_t`` sums those in ``(F_t,
    C_{t+1})``. A settlement at ``C_{t+1}`` is the next row's gap leg (held by the same
    position ``p_t``), so consecutive rows count each settlement once. Settlement times are
    floored to the second (exchange records carry 1-20 ms of jitter after the instant).

    Args:
        settlements: columns ``timestamp`` and ``funding_rate`` (fraction per settlement,
            positive: longs pay shorts).

    Raises:
        ValueError: a missing column or a rate that is not finite.
    """
    for c in ("timestamp", "funding_rate"):
        if c not in settlements.columns:
            raise ValueError(f"funding settlements have no {c!r} column")
    s = settlements.sort_values("timestamp")
    rates = s["funding_rate"].to_numpy(np.float64)
    if not np.isfinite(rates).all():
        raise ValueError("funding_rate contains NaN or infinite values")
    when = pd.DatetimeIndex(pd.to_datetime(s["timestamp"], utc=True)).floor("s")
    cum = np.concatenate([[0.0], np.cumsum(rates)])
    close_t = timestamps + bar
    a = when.searchsorted(close_t, "left")
    b = when.searchsorted(fill_times, "right")
    c = when.searchsorted(close_t + bar, "left")
    return cum[b] - cum[a], cum[c] - cum[b]


def delay_fills(timestamps: pd.DatetimeIndex, bar: pd.Timedelta, fine: pd.DataFrame,
                latency: pd.Timedelta, fine_timeframe: str | None = None
                ) -> tuple[np.ndarray, pd.DatetimeIndex]:
    """Fill price and time of each row under ``fill=delay``: the close of the first bar of the
    finer series ``fine`` (``timestamp`` = open time, ``close``) whose close time is at least
    ``latency`` after ``C_t`` (the row's close time), and no later than ``C_{t+1}``.

    Returns:
        ``(price, fill_time)``, shape ``(n,)``.

    Raises:
        ExecutionInputError: the finer series is not finer than the bars, or leaves bars
            uncovered (one line naming the first bar and how many).
    """
    from huracan.data.ohlcv import infer_timeframe, timeframe_to_timedelta

    f = fine.sort_values("timestamp")
    opens = pd.DatetimeIndex(pd.to_datetime(f["timestamp"], utc=True))
    step = timeframe_to_timedelta(fine_timeframe or infer_timeframe(pd.Series(opens)))
    if step >= bar:
        raise ExecutionInputError(f"backtest.fill=delay needs a series finer than the {bar} "
                                  f"bars; the finer series has {step} bars")
    closes = opens + step
    target = timestamps + bar + latency
    k = closes.searchsorted(target, "left")
    inside = k < len(closes)
    when = closes[np.minimum(k, len(closes) - 1)] if len(closes) else target
    ok = inside & (np.asarray(when) <= np.asarray(timestamps + 2 * bar)) if len(closes) else \
        np.zeros(len(timestamps), dtype=bool)
    if not ok.all():
        first = int(np.flatnonzero(~ok)[0])
        raise ExecutionInputError(
            f"backtest.fill=delay: no bar of the finer series ({step}) closes between "
            f"{target[first]} and the next bar's close for {int((~ok).sum())} of "
            f"{len(timestamps)} bar(s), first the bar opening {timestamps[first]}: give a finer "
            "series covering them (data.fine_path or the lake) or use fill=next_open")
    price = f["close"].to_numpy(np.float64)[k]
    return price, pd.DatetimeIndex(when)


def market_bars(frame: pd.DataFrame, cfg: BacktestConfig, periods_per_year: float, *,
                perpetual: bool = False, funding: pd.DataFrame | None = None,
                fine: pd.DataFrame | None = None, fine_timeframe: str | None = None
                ) -> MarketBars:
    """Build the :class:`MarketBars` of a feature frame (or an evaluation window) once.

    Args:
        frame: rows in time order, timestamps as the index or a ``timestamp`` column; columns
            ``bar_close`` and ``next_return`` always; ``next_open`` (the open of bar t+1) for
            ``fill=next_open``; ``bar_high``/``bar_low`` for a spread estimator; ``bar_volume``
            (base units) with ``backtest.notional``.
        cfg: the backtest settings (fill, latency, fee, half_spread, spread_window,
            slippage_bps, borrow_rate, notional, impact_coef).
        periods_per_year: bars per year (the bar size is derived from it: 8,760 -> 1h).
        perpetual: the market is a perpetual (no borrow; funding instead).
        funding: funding settlements (``timestamp``, ``funding_rate``) or None (no funding).
        fine: the finer series of ``fill=delay`` (``timestamp``, ``close``).
        fine_timeframe: its bar size (inferred when None).

    Returns:
        the bars, shape ``(len(frame),)``.

    Raises:
        ExecutionInputError: a column the settings need is missing or not finite (one line
            naming it and the row), ``fill=delay`` without a finer series covering the bars,
            zero trailing volume with a notional.
    """
    ts = _timestamps(frame)
    n = len(ts)
    bar = bar_size(periods_per_year)
    close = _column(frame, "bar_close", "the execution model")
    nxt = _column(frame, "next_return", "the execution model")
    notes: list[str] = []
    fill_times = ts + bar
    if cfg.fill == "close":
        gap = np.zeros(n)
    elif cfg.fill == "next_open":
        gap = _column(frame, "next_open", "backtest.fill=next_open") / close - 1.0
    else:
        if fine is None:
            raise ExecutionInputError(
                "backtest.fill=delay needs a finer series of the symbol (data.fine_path, a "
                "finer data.path, or the lake); none was given")
        price, fill_times = delay_fills(ts, bar, fine, pd.Timedelta(cfg.latency),
                                        fine_timeframe)
        gap = price / close - 1.0
    hold = (nxt - gap) / (1.0 + gap)  # (1 + next_return) / (1 + gap) - 1, exact at gap 0
    if isinstance(cfg.half_spread, str):
        high = _column(frame, "bar_high", f"backtest.half_spread={cfg.half_spread}")
        low = _column(frame, "bar_low", f"backtest.half_spread={cfg.half_spread}")
        s = ESTIMATORS[cfg.half_spread](high, low, close, ts, bar, int(cfg.spread_window))
        missing = ~np.isfinite(s)
        if missing.any():
            notes.append(f"{int(missing.sum())} row(s) without a pair of consecutive bars in "
                         f"their trailing window: half-spread 0 there")
        half = 0.5 * np.maximum(np.nan_to_num(s, nan=0.0), 0.0)
    else:
        half = np.full(n, float(cfg.half_spread) * BPS)
    cost_lin = cfg.fee + half + float(cfg.slippage_bps) * BPS
    impact = np.zeros(n)
    if cfg.notional is not None:
        volume = _column(frame, "bar_volume", "backtest.notional")
        pair = _pairs(ts, bar)
        logret = np.full(n, np.nan)
        logret[1:] = np.log(close[1:] / close[:-1])
        logret[~pair] = np.nan
        sigma = pd.Series(logret).rolling(int(cfg.spread_window), min_periods=2).std()
        sigma = sigma.to_numpy(np.float64)
        vol = _trailing_mean(volume, int(cfg.spread_window))
        if (vol <= 0).any():
            row = int(np.flatnonzero(vol <= 0)[0])
            raise ExecutionInputError(
                f"backtest.notional: no traded volume in the trailing {cfg.spread_window} bars "
                f"of row {row} (bar {ts[row]}): the square-root impact is undefined there")
        if not np.isfinite(sigma).all():
            notes.append(f"{int((~np.isfinite(sigma)).sum())} row(s) without two returns in "
                         "their trailing window: impact 0 there")
        impact = float(cfg.impact_coef) * np.nan_to_num(sigma, nan=0.0) * np.sqrt(
            float(cfg.notional) / (close * vol))
    funding_gap = funding_hold = np.zeros(n)
    if funding is not None and len(funding):
        funding_gap, funding_hold = settle_funding(ts, fill_times, bar, funding)
    borrow = np.zeros(n) if perpetual else np.full(n, float(cfg.borrow_rate) / periods_per_year)
    return MarketBars(ts, gap, hold, cost_lin, impact, funding_gap, funding_hold, borrow,
                      fill=cfg.fill, notes=tuple(notes))


def bars_frame(bars: MarketBars) -> pd.DataFrame:
    """The bars' arrays as columns ``exec_<name>`` (and ``exec_fill``), one row per bar: what an
    evaluation window logs so the registry re-scores on exactly the run's execution."""
    out = pd.DataFrame({f"{EXEC_PREFIX}{k}": getattr(bars, k) for k in BAR_ARRAYS})
    out[f"{EXEC_PREFIX}fill"] = bars.fill
    return out


def _logged_bars(frame: pd.DataFrame, fill: str) -> MarketBars | None:
    """The bars of a frame carrying :func:`bars_frame`'s columns, else None."""
    if not all(f"{EXEC_PREFIX}{k}" in frame.columns for k in BAR_ARRAYS):
        return None
    column = f"{EXEC_PREFIX}fill"
    if column in frame.columns and len(frame):
        fill = str(frame[column].iloc[0])
    arrays = {k: frame[f"{EXEC_PREFIX}{k}"].to_numpy(np.float64) for k in BAR_ARRAYS}
    return MarketBars(_timestamps(frame), fill=fill, **arrays)


def bars_from_frame(frame: pd.DataFrame, cfg: BacktestConfig, periods_per_year: float
                    ) -> MarketBars:
    """The :class:`MarketBars` of a logged evaluation window (or any frame), by what it carries:

    1. the run's own execution columns (``exec_*``, :func:`bars_frame`): used as logged;
    2. else ``next_open`` (and the other inputs): :func:`market_bars` with ``cfg`` (a spot
       market without funding: a fresh feature frame, e.g. ``registry monitor``);
    3. else (a window logged before ``next_open`` existed): the close fill with the fee as the
       only cost, and a note saying so (the compatibility path).
    """
    ts = _timestamps(frame)
    logged = _logged_bars(frame, cfg.fill)
    if logged is not None:
        return logged
    if cfg.fill == "delay" and "next_open" in frame.columns:
        return replace(market_bars(frame, replace(cfg, fill="next_open"), periods_per_year),
                       notes=("no finer series with this window: backtest.fill=delay scored "
                              "as next_open",))
    if "next_open" in frame.columns or (cfg.fill == "close" and "bar_close" in frame.columns):
        return market_bars(frame, cfg, periods_per_year)
    return close_bars(ts, _column(frame, "next_return", "the execution model"), cfg.fee, notes=(
        "window logged before next_open existed: scored with fill=close and the fee only "
        f"({cfg.fee:g} per unit of turnover), not with backtest.fill={cfg.fill}",))


def bars_of_returns(returns: pd.DataFrame, fee: float = BacktestConfig.fee) -> MarketBars:
    """The :class:`MarketBars` an :func:`execute` returns frame was executed on (its
    ``exec_*`` columns), to execute other positions on the same bars (regime switching); a
    frame of a run logged before them: the close fill of its ``asset_return`` with ``fee`` only,
    and a note saying so.

    Raises:
        ValueError: neither the ``exec_*`` columns nor ``asset_return``.
    """
    logged = _logged_bars(returns, "next_open")
    if logged is not None:
        return logged
    r = _column(returns, "asset_return", "the execution model")
    return close_bars(_timestamps(returns), r, fee, notes=(
        "returns logged before the execution model: executed with fill=close and the fee only",))


# ---------------------------------------------------------------------------- trades
def exit_legs(prev: np.ndarray, pos: np.ndarray, gap: np.ndarray, funding_gap: np.ndarray,
              cost: np.ndarray) -> np.ndarray:
    """Per bar, the part of the net return that belongs to the position held BEFORE the fill
    when the fill changes side (exit, flip): its gap leg, its gap-leg funding and its share of
    the fill's cost (``|prev| / |pos - prev|`` of it, by turnover); 0 where the side is kept or
    nothing was held."""
    d = np.abs(pos - prev)
    change = (prev != 0) & (np.sign(pos) != np.sign(prev))
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(change, np.abs(prev) / np.where(d > 0, d, 1.0), 0.0)
    return np.where(change, prev * gap - prev * funding_gap - share * cost, 0.0)


TRADE_COLUMNS = ["entry_time", "exit_time", "side", "bars", "return", "exit_reason"]


def extract_trades(timestamps: pd.DatetimeIndex | Sequence[Any], position: np.ndarray,
                   net: np.ndarray, exit_leg: np.ndarray | None = None,
                   exit_reasons: np.ndarray | None = None) -> pd.DataFrame:
    """The trades of a position series: ONE extraction for every path.

    A trade is a maximal run of rows with one non-zero SIDE (sign); a resize inside it stays in
    it (its cost charged exactly). Its return compounds exactly what is attributable to it:
    the whole net return of its rows, except at its entry row where the previous trade's
    :func:`exit_legs` part is taken out, plus its own exit leg at the row after its last
    (the gap leg to the fill that closes it and its share of that fill's cost). So
    ``sum(log(1 + trade returns))`` plus the log of what is left on flat rows (0 up to rounding)
    equals ``sum(log(1 + net))``, the log of the final equity. A trade still open at the end is
    marked to market (no exit cost). Vectorised.

    Args:
        timestamps: bar open times, shape ``(n,)``.
        position: signed position per row, fractions of equity.
        net: per-row net returns (:func:`execute`'s ``strategy_return``).
        exit_leg: per-row :func:`exit_legs` (None: zeros, e.g. a frame of another version).
        exit_reasons: why a trade ending at a row ended (``""``: none); see ``exit_reason``.

    Returns:
        columns ``entry_time``, ``exit_time`` (open time of the last row held), ``side``,
        ``bars``, ``return`` (fraction; -1 when the equity was wiped out) and ``exit_reason``
        (``exit_reasons[last row]`` when given and non-empty, else ``signal``; ``end_of_data``
        for a trade still open at the end).

    Raises:
        ValueError: arrays of different lengths.
    """
    ts = pd.DatetimeIndex(timestamps)
    pos = np.asarray(position, dtype=np.float64).reshape(-1)
    r = np.asarray(net, dtype=np.float64).reshape(-1)
    leg = np.zeros_like(r) if exit_leg is None else np.asarray(exit_leg, np.float64).reshape(-1)
    n = len(pos)
    if not (len(ts) == len(r) == len(leg) == n):
        raise ValueError(f"timestamps ({len(ts)}), position ({n}), net ({len(r)}) and exit_leg "
                         f"({len(leg)}) differ in length")
    side = np.sign(pos)
    prev_side = np.concatenate([[0.0], side[:-1]])
    starts = np.flatnonzero((side != 0) & (side != prev_side))
    if len(starts) == 0:
        return pd.DataFrame(columns=TRADE_COLUMNS)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_net = np.log1p(np.maximum(r, -1.0))
        log_exit = np.log1p(np.maximum(leg, -1.0))
    own = np.where(leg != 0, log_net - log_exit, log_net)
    changes = np.flatnonzero(side != prev_side)
    nxt = np.searchsorted(changes, starts, side="right")
    ends = np.where(nxt < len(changes), changes[np.minimum(nxt, len(changes) - 1)], n) - 1
    cum = np.concatenate([[0.0], np.cumsum(own)])
    total = cum[ends + 1] - cum[starts]
    closed = ends + 1 < n
    total = total + np.where(closed, log_exit[np.minimum(ends + 1, n - 1)], 0.0)
    ret = np.expm1(total)
    if exit_reasons is None:
        reasons = np.full(len(starts), "signal", dtype=object)
    else:
        given = np.asarray([str(x) for x in np.asarray(exit_reasons, dtype=object)[ends]],
                           dtype=object)
        reasons = np.where(given != "", given, "signal").astype(object)
    reasons = np.where(closed, reasons, "end_of_data").astype(object)
    return pd.DataFrame({
        "entry_time": ts[starts], "exit_time": ts[ends],
        "side": np.where(side[starts] > 0, "long", "short").astype(object),
        "bars": (ends - starts + 1).astype(np.int64), "return": ret,
        "exit_reason": reasons,
    }, columns=TRADE_COLUMNS)


def trades_of(returns: pd.DataFrame, exit_reasons: np.ndarray | None = None) -> pd.DataFrame:
    """:func:`extract_trades` of an :func:`execute` returns frame (its ``timestamp``,
    ``position``, ``strategy_return`` and ``exit_leg`` columns; a frame without ``exit_leg``
    attributes each flip's whole bar to the new trade).

    Raises:
        ValueError: a missing column.
    """
    missing = [c for c in ("timestamp", "position", "strategy_return") if c not in returns]
    if missing:
        raise ValueError(f"the returns frame lacks column(s) {missing} (use execute)")
    leg = returns["exit_leg"].to_numpy(np.float64) if "exit_leg" in returns else None
    return extract_trades(pd.DatetimeIndex(returns["timestamp"]),
                          returns["position"].to_numpy(np.float64),
                          returns["strategy_return"].to_numpy(np.float64), leg, exit_reasons)


# ---------------------------------------------------------------------------- execute
RETURN_COLUMNS = ["timestamp", "prediction", "position", "asset_return", "turnover",
                  "gross_return", "cost", "funding_cost", "borrow_cost", "strategy_return",
                  "exit_leg", "label"]


def execute(positions: np.ndarray, bars: MarketBars, periods_per_year: float,
            predictions: np.ndarray | None = None, labels: np.ndarray | None = None,
            exit_reasons: np.ndarray | None = None) -> BacktestResult:
    """Trade ``positions`` on ``bars``: per-bar returns, trades and metrics.

    Args:
        positions: the position decided at each bar's close, signed fraction of equity,
            shape ``(n,)`` (a NaN position is flat).
        bars: the market of those bars (:func:`market_bars`), length ``n``.
        periods_per_year: bars per year for annualisation (8,760 for 1h).
        predictions: the forecasts behind the positions (directional accuracy and the
            ``prediction`` column; default: the positions).
        labels: the realised labels (accuracy; default ``bars.next_return``).
        exit_reasons: per bar, why a trade ending there ended (``""``: none).

    Returns:
        :class:`~huracan.evaluation.backtest.BacktestResult`: ``returns`` with
        :data:`RETURN_COLUMNS` (``asset_return`` = close-to-close ``next_return``; ``cost`` the
        fill's cost, ``funding_cost`` and ``borrow_cost`` the carry, ``gross_return`` the two
        legs; ``strategy_return = gross_return - cost - funding_cost - borrow_cost``;
        ``exit_leg`` :func:`exit_legs`) and the bars' own columns (:func:`bars_frame`: any
        returns frame can be executed again with other positions, :func:`bars_of_returns`),
        ``trades`` (:func:`extract_trades`), ``metrics`` and ``execution``
        (:meth:`MarketBars.describe`).

    Raises:
        ValueError: positions, predictions or labels of another length than ``bars``, or a
            position that is infinite.
    """
    n = len(bars)
    pos = np.nan_to_num(np.asarray(positions, dtype=np.float64).reshape(-1), nan=0.0,
                        posinf=np.inf, neginf=-np.inf)
    if pos.shape != (n,):
        raise ValueError(f"positions has {pos.shape[0]} rows, expected {n}")
    if not np.isfinite(pos).all():
        raise ValueError("positions must be finite")
    pred = pos if predictions is None else np.asarray(predictions, np.float64).reshape(-1)
    lab = bars.next_return if labels is None else np.asarray(labels, np.float64).reshape(-1)
    if pred.shape != (n,) or lab.shape != (n,):
        raise ValueError(f"predictions ({pred.shape[0]}) and labels ({lab.shape[0]}) must have "
                         f"{n} rows")
    prev = np.concatenate([[0.0], pos[:-1]])
    gross, cost, funding, borrow = bar_components(prev, pos, *bars.arrays())
    net = gross - cost - funding - borrow
    leg = exit_legs(prev, pos, bars.gap, bars.funding_gap, cost)
    returns = pd.DataFrame({
        "timestamp": bars.timestamps, "prediction": pred, "position": pos,
        "asset_return": bars.next_return, "turnover": np.abs(pos - prev),
        "gross_return": gross, "cost": cost, "funding_cost": funding, "borrow_cost": borrow,
        "strategy_return": net, "exit_leg": leg, "label": lab,
        **{f"{EXEC_PREFIX}{k}": getattr(bars, k) for k in BAR_ARRAYS},
        f"{EXEC_PREFIX}fill": bars.fill,
    })
    trades = extract_trades(bars.timestamps, pos, net, leg, exit_reasons)
    metrics = compute_metrics(net, trades["return"].to_numpy(np.float64), pred, lab,
                              periods_per_year)
    return BacktestResult(returns=returns, trades=trades, metrics=metrics,
                          execution=bars.describe())


def lagged(positions: np.ndarray, lag: int = 1) -> np.ndarray:
    """``positions`` decided ``lag`` rows later (flat for the first ``lag`` rows).

    Raises:
        ValueError: ``lag < 1``.
    """
    if lag < 1:
        raise ValueError(f"lag must be >= 1, got {lag}")
    p = np.asarray(positions, dtype=np.float64).reshape(-1)
    return np.concatenate([np.zeros(min(lag, len(p))), p[:-lag]]) if len(p) > lag else \
        np.zeros_like(p)


def diagnostics(result: BacktestResult, bars: MarketBars, periods_per_year: float,
                fee: float) -> dict[str, float]:
    """The diagnostics every scored window logs beside its figures, through :func:`execute`:

    - ``sharpe_close`` / ``total_return_close``: the same positions filled at the signal bar's
      close with the fee only (what the backtest reported before the execution model);
    - ``sharpe_lag1`` / ``total_return_lag1``: the same positions one bar later on the same
      bars (the configured fill and costs): an edge that lives in the first bar after a signal
      disappears there.
    """
    pos = result.returns["position"].to_numpy(np.float64)
    close = execute(pos, close_bars(bars.timestamps, bars.next_return, fee), periods_per_year)
    late = execute(lagged(pos), bars, periods_per_year)
    return {"sharpe_close": close.metrics.sharpe,
            "total_return_close": close.metrics.total_return,
            "sharpe_lag1": late.metrics.sharpe, "total_return_lag1": late.metrics.total_return}


def round_trip_cost(bars: MarketBars, size: float = 1.0) -> np.ndarray:
    """Cost of entering and later leaving a position of ``size`` at each bar's fill rates,
    fraction of equity, shape ``(n,)`` (two fills of ``size`` units of turnover)."""
    return np.asarray(2.0 * trade_cost(float(size), bars.cost_lin, bars.impact))


def backtest_config_from_params(params: Mapping[str, str]) -> BacktestConfig:
    """The :class:`~huracan.evaluation.backtest.BacktestConfig` of a logged run from its MLflow
    params (``backtest.<field>`` as text: ``"0.0004"``, ``"True"``, ``"None"``,
    ``"abdi_ranaldo"``); a field the run predates takes today's default (its window then goes
    through :func:`bars_from_frame`'s compatibility path when it lacks ``next_open``).

    Raises:
        ValueError: a logged value the settings refuse.
    """
    values: dict[str, Any] = {}
    for f in fields(BacktestConfig):
        raw = params.get(f"backtest.{f.name}")
        if raw is None:
            continue
        text = str(raw)
        if text in ("None", "null"):
            values[f.name] = None
        elif f.name == "long_only":
            values[f.name] = text == "True"
        elif f.name == "spread_window":
            values[f.name] = int(float(text))
        elif f.name in ("fill", "latency", "funding", "half_spread"):
            values[f.name] = text
        else:
            values[f.name] = float(text)
    return BacktestConfig(**values)


# ---------------------------------------------------------------------------- cost headroom
def _net_and_turnover(net: Any, turnover: Any) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(net, dtype=np.float64).reshape(-1)
    d = np.asarray(turnover, dtype=np.float64).reshape(-1)
    if r.shape != d.shape:
        raise ValueError(f"returns have {r.shape[0]} bars and turnover {d.shape[0]}: they must "
                         "cover the same bars")
    if not (np.isfinite(r).all() and np.isfinite(d).all()):
        raise ValueError("returns or turnover contain NaN or infinite values")
    if (d < 0).any():
        raise ValueError("turnover must be >= 0 (it is |p_t - p_{t-1}|)")
    return r, d


def with_extra_cost(net: Any, turnover: Any, extra: float) -> np.ndarray:
    """Per-bar net returns charged an extra linear cost of ``extra`` (fraction per unit of
    turnover) on top of the costs they already paid: ``net_t - trade_cost(turnover_t, extra,
    0)``, i.e. the execution model's linear cost term (:func:`trade_cost`) at each fill, as if
    ``cost_lin`` were ``extra`` higher. Shape ``(n,)``.

    Raises:
        ValueError: shapes differ, values not finite, or a negative turnover.
    """
    r, d = _net_and_turnover(net, turnover)
    return np.asarray(r - trade_cost(d, float(extra), 0.0), dtype=np.float64)


def breakeven_bps(net: np.ndarray, turnover: np.ndarray) -> float:
    """The extra cost per unit of turnover, in basis points, at which the window's compounded
    net return is exactly zero.

    Solves ``prod(1 + net_t - x * turnover_t) = 1`` for ``x`` (a fraction per unit turnover,
    charged on top of the costs already in ``net``, at the bars where the position changes:
    :func:`with_extra_cost`, the execution model's linear cost term) and returns ``1e4 * x``.
    The log of the product falls strictly as ``x`` grows, so the root is unique; it is found
    by Brent's method (``scipy.optimize.brentq``) to 1e-8 bps. To first order (small returns),
    ``x ~= sum(net) / sum(turnover)``: e.g. a net return of +1 % over 20 units of turnover
    breaks even near 5 bps. A positive value is the cost headroom; a negative one says how much
    cheaper the trading would have to be for the window to break even.

    Args:
        net: per-bar net returns (fractions), shape ``(n,)``.
        turnover: per-bar traded fraction of equity ``|p_t - p_{t-1}|`` (a long-to-short flip is
            2), shape ``(n,)``.

    Returns:
        basis points per unit turnover; NaN when nothing was traded (no cost can change the
        return) or when a bar without turnover already lost everything (``net <= -1``).

    Raises:
        ValueError: shapes differ, values not finite, or a negative turnover.
    """
    r, d = _net_and_turnover(net, turnover)
    traded = d > 0
    if not traded.any() or (1.0 + r[~traded] <= 0.0).any():
        return float("nan")
    from scipy.optimize import brentq

    first = float(r.sum() / d.sum())
    still = float(np.sum(np.log1p(r[~traded])))  # bars without turnover pay no extra cost
    r, d = r[traded], d[traded]
    # every factor 1 + r - x d must stay > 0: x < x_max; log-equity g(x) falls from +inf
    # (x -> -inf) to -inf (x -> x_max)
    x_max = float(np.min((1.0 + r) / d))

    def g(x: float) -> float:
        return still + float(np.sum(np.log1p(with_extra_cost(r, d, x))))

    lo = min(first, x_max) - 1e-4
    step = 1e-3
    while g(lo) <= 0.0:
        lo -= step
        step *= 2.0
    hi = min(max(first, lo) + 1e-4, x_max)
    gap = x_max - lo
    k = 1
    while hi >= x_max or g(hi) >= 0.0:
        hi = x_max - gap * 0.5**k
        k += 1
        if k > 200:  # g(hi) cannot stay >= 0 up to x_max, where it tends to -inf
            return float("nan")
    return 1e4 * float(brentq(g, lo, hi, xtol=1e-12, rtol=1e-12))


#: extra costs of the cost-sensitivity curve, basis points per unit turnover
COST_SENSITIVITY_BPS: tuple[float, ...] = tuple(float(x) for x in range(0, 51))


def cost_sensitivity(net: np.ndarray, turnover: np.ndarray, periods_per_year: float,
                     extra_bps: tuple[float, ...] | np.ndarray = COST_SENSITIVITY_BPS,
                     ) -> dict[str, np.ndarray]:
    """Net Sharpe and total return as an extra cost per unit turnover is charged.

    For each ``c`` in ``extra_bps`` the returns are ``net_t - c * 1e-4 * turnover_t``
    (:func:`with_extra_cost`: the execution model's linear cost term at the bars where the
    position changes), scored with :func:`~huracan.evaluation.metrics.sharpe_ratio` and
    :func:`~huracan.evaluation.metrics.total_return`.

    Args:
        net: per-bar net returns (fractions), shape ``(n,)``.
        turnover: per-bar ``|p_t - p_{t-1}|``, shape ``(n,)``.
        periods_per_year: bars per year, for the Sharpe's annualisation.
        extra_bps: the extra costs, bps per unit turnover (default 0, 1, ..., 50).

    Returns:
        ``{"extra_bps", "sharpe", "total_return"}``, arrays of shape ``(len(extra_bps),)``.

    Raises:
        ValueError: shapes differ or values are not finite.
    """
    r, d = _net_and_turnover(net, turnover)
    bps = np.asarray(extra_bps, dtype=np.float64).reshape(-1)
    charged = [with_extra_cost(r, d, c * BPS) for c in bps]
    sharpe = np.array([sharpe_ratio(x, periods_per_year) for x in charged])
    total = np.array([total_return(x) for x in charged])
    return {"extra_bps": bps, "sharpe": sharpe, "total_return": total}
