"""The backtest's settings and result types, and the default signal -> position rule.

The execution model itself (fills, costs, funding, trades) lives in
:mod:`huracan.evaluation.execution`, the one module every return in Huracan comes from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from huracan.evaluation.metrics import TradingMetrics

#: fill modes of ``backtest.fill`` (:mod:`huracan.evaluation.execution`)
FILLS = ("next_open", "close", "delay")
#: half-spread estimators ``backtest.half_spread`` may name
SPREAD_ESTIMATORS = ("abdi_ranaldo", "corwin_schultz")
#: what ``backtest.funding`` may be
FUNDING_MODES = ("auto", "none")


@dataclass(frozen=True)
class BacktestConfig:
    """How positions are taken and filled, and what trading costs (the ``backtest`` group).

    Attributes:
        threshold: minimum |forecast| (a return, fraction) to take a position; below it, flat.
        fee: exchange fee per unit of turnover, fraction (0.0004 = 0.04 %, Binance taker).
        long_only: map short signals to flat.
        fill: ``next_open`` (filled at the next bar's open, the default), ``close`` (at the
            signal bar's close: a diagnostic) or ``delay`` (at the close of the first bar of a
            finer series ``latency`` after the signal bar's close).
        latency: the delay of ``fill=delay``, a duration (``5m``, ``30s``), >= 0.
        half_spread: half the bid-ask spread paid per unit of turnover: a constant in basis
            points, or an estimator name (``abdi_ranaldo``, ``corwin_schultz``) estimating it
            per bar from the candles over the trailing ``spread_window`` bars.
        spread_window: bars of the trailing windows of the spread estimators and of the
            volatility and volume of the impact term, >= 2.
        slippage_bps: extra cost per unit of turnover, basis points.
        funding: ``auto`` (a perpetual's funding settlements from the brain store, when it
            holds them) or ``none``.
        borrow_rate: annual borrow rate of a short on a spot market, fraction (0.05 = 5 %
            a year), charged per bar held; 0 on perpetuals (funding instead).
        notional: the account size in quote currency for the square-root impact term; None:
            no impact.
        impact_coef: the square-root law's coefficient (Almgren et al. 2005), >= 0.

    Raises:
        ValueError: a value out of range or an unknown mode (one line naming the key).
    """

    threshold: float = 0.0
    fee: float = 0.0004
    long_only: bool = False
    fill: str = "next_open"
    latency: str = "5m"
    half_spread: float | str = 1.0
    spread_window: int = 168
    slippage_bps: float = 1.0
    funding: str = "auto"
    borrow_rate: float = 0.05
    notional: float | None = None
    impact_coef: float = 1.0

    def __post_init__(self) -> None:
        if self.threshold < 0 or self.fee < 0:
            raise ValueError("backtest.threshold and backtest.fee must be >= 0")
        if self.fill not in FILLS:
            raise ValueError(f"backtest.fill must be one of {', '.join(FILLS)}, got "
                             f"{self.fill!r}")
        try:
            latency = pd.Timedelta(str(self.latency))
        except ValueError:
            raise ValueError(f"backtest.latency must be a duration such as 5m or 30s, got "
                             f"{self.latency!r}") from None
        if latency < pd.Timedelta(0):
            raise ValueError(f"backtest.latency must be >= 0, got {self.latency!r}")
        half = self.half_spread
        if isinstance(half, str):
            try:
                half = float(half)
            except ValueError:
                if half not in SPREAD_ESTIMATORS:
                    raise ValueError(f"backtest.half_spread must be a number of basis points "
                                     f"or one of {', '.join(SPREAD_ESTIMATORS)}, got "
                                     f"{half!r}") from None
        if not isinstance(half, str):
            if isinstance(half, bool) or not float(half) >= 0:
                raise ValueError(f"backtest.half_spread must be >= 0 bps, got {half!r}")
            half = float(half)
        object.__setattr__(self, "half_spread", half)
        if int(self.spread_window) < 2:
            raise ValueError(f"backtest.spread_window must be >= 2 bars, got "
                             f"{self.spread_window}")
        object.__setattr__(self, "spread_window", int(self.spread_window))
        for name in ("slippage_bps", "borrow_rate", "impact_coef"):
            if not float(getattr(self, name)) >= 0:
                raise ValueError(f"backtest.{name} must be >= 0, got {getattr(self, name)!r}")
        if self.funding not in FUNDING_MODES:
            raise ValueError(f"backtest.funding must be auto or none, got {self.funding!r}")
        if self.notional is not None and not float(self.notional) > 0:
            raise ValueError(f"backtest.notional must be > 0 (quote currency) or null, got "
                             f"{self.notional!r}")


@dataclass
class BacktestResult:
    """Per-bar ``returns`` (:data:`huracan.evaluation.execution.RETURN_COLUMNS`), one row per
    trade in ``trades`` (entry_time, exit_time, side, bars, return, exit_reason), the metrics
    computed from them and ``execution``: what the execution model charged (fill, cost in bps,
    notes; :meth:`huracan.evaluation.execution.MarketBars.describe`)."""

    returns: pd.DataFrame
    trades: pd.DataFrame
    metrics: TradingMetrics
    execution: dict[str, Any] = field(default_factory=dict)


def positions_from_forecast(
    predictions: np.ndarray, threshold: float = 0.0, long_only: bool = False
) -> np.ndarray:
    """+1 when forecast > threshold, -1 when < -threshold (0 if ``long_only``), else 0."""
    p = np.asarray(predictions, dtype=np.float64)
    pos = np.where(p > threshold, 1.0, np.where(p < -threshold, -1.0, 0.0))
    if long_only:
        pos = np.maximum(pos, 0.0)
    return pos

