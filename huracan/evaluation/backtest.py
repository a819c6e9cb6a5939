"""Vectorised bar-by-bar backtest of a forecast: signal -> position -> net returns -> trades.

Timing: the forecast of row t is made at the close of bar t; the position is held over the next
bar and earns ``next_return[t] = close_{t+1} / close_t - 1``. Fees are charged per unit of turnover
``|position_t - position_{t-1}|`` at the bar where the position changes (a long-to-short flip pays
twice); the series starts flat.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from huracan.evaluation.metrics import TradingMetrics, compute_metrics


@dataclass(frozen=True)
class BacktestConfig:
    """Attributes:
    threshold: minimum |forecast| (a return, fraction) to take a position; below it, flat.
    fee: cost per unit of turnover, fraction (0.0004 = 0.04 % taker).
    long_only: map short signals to flat.
    """

    threshold: float = 0.0
    fee: float = 0.0004
    long_only: bool = False

    def __post_init__(self) -> None:
        if self.threshold < 0 or self.fee < 0:
            raise ValueError("backtest.threshold and backtest.fee must be >= 0")


@dataclass
class BacktestResult:
    """Per-bar ``returns`` (timestamp, prediction, position, asset_return, turnover,
    strategy_return, label) and one row per trade in ``trades`` (entry_time, exit_time, side, bars,
    return), plus the metrics computed from them."""

    returns: pd.DataFrame
    trades: pd.DataFrame
    metrics: TradingMetrics


def positions_from_forecast(
    predictions: np.ndarray, threshold: float = 0.0, long_only: bool = False
) -> np.ndarray:
    """+1 when forecast > threshold, -1 when < -threshold (0 if ``long_only``), else 0."""
    p = np.asarray(predictions, dtype=np.float64)
    pos = np.where(p > threshold, 1.0, np.where(p < -threshold, -1.0, 0.0))
    if long_only:
        pos = np.maximum(pos, 0.0)
    return pos


def extract_trades(
    timestamps: pd.DatetimeIndex, position: np.ndarray, gross: np.ndarray, fee: float,
    exit_reasons: np.ndarray | None = None,
) -> pd.DataFrame:
    """A trade is a maximal run of bars holding one non-zero position.

    Trade return = ``(1 - fee*|p|) * prod(1 + gross) * (1 - fee*|p|) - 1``: the entry fee, the
    bars' gross returns, and the exit fee when the trade closes inside the window (a trade still
    open at the end is marked to market without an exit fee). ``exit_time`` is the open time of the
    last bar held. ``exit_reason``: ``exit_reasons[e]`` of the trade's last bar ``e`` when given
    and non-empty (a trading rule's reason: ``upper``, ``lower``, ``time``...), else ``signal``
    (the position changed), or ``end_of_data`` for a trade still open at the end.
    """
    pos = np.asarray(position, dtype=np.float64)
    n = len(pos)
    change = np.flatnonzero(np.diff(np.concatenate([[0.0], pos])) != 0)
    starts = [i for i in change if pos[i] != 0]
    rows = []
    for s in starts:
        e = s
        while e + 1 < n and pos[e + 1] == pos[s]:
            e += 1
        size = abs(pos[s])
        ret = (1 - fee * size) * np.prod(1.0 + gross[s : e + 1])
        if e + 1 < n:
            ret *= 1 - fee * size
        if e + 1 >= n:
            reason = "end_of_data"
        elif exit_reasons is not None and str(exit_reasons[e]):
            reason = str(exit_reasons[e])
        else:
            reason = "signal"
        rows.append({
            "entry_time": timestamps[s],
            "exit_time": timestamps[e],
            "side": "long" if pos[s] > 0 else "short",
            "bars": e - s + 1,
            "return": ret - 1.0,
            "exit_reason": reason,
        })
    cols = ["entry_time", "exit_time", "side", "bars", "return", "exit_reason"]
    return pd.DataFrame(rows, columns=cols)


def run_backtest(
    timestamps: pd.DatetimeIndex,
    predictions: np.ndarray,
    next_return: np.ndarray,
    actual_label: np.ndarray,
    cfg: BacktestConfig,
    periods_per_year: float,
    positions: np.ndarray | None = None,
    exit_reasons: np.ndarray | None = None,
) -> BacktestResult:
    """Backtest ``predictions`` and compute :class:`TradingMetrics`.

    Args:
        timestamps: bar open times, shape ``(n,)``.
        predictions: forecast forward return per bar, fraction, shape ``(n,)``.
        next_return: simple return of the following bar, fraction, shape ``(n,)``.
        actual_label: realised label (for directional accuracy), shape ``(n,)``.
        cfg: threshold, fee, long_only.
        periods_per_year: bars per year for annualisation.
        positions: the position of each bar when a trading rule set it (see
            :mod:`huracan.evaluation.rules`); default: sign(forecast) beyond ``cfg.threshold``.
        exit_reasons: per bar, why a trade ending at that bar ended (empty string: none).
    """
    if positions is None:
        pos = positions_from_forecast(predictions, cfg.threshold, cfg.long_only)
    else:
        pos = np.asarray(positions, dtype=np.float64).reshape(-1)
        if pos.shape != (len(timestamps),):
            raise ValueError(f"positions has {pos.shape[0]} rows, expected {len(timestamps)}")
    r = np.asarray(next_return, dtype=np.float64)
    turnover = np.abs(np.diff(np.concatenate([[0.0], pos])))
    gross = pos * r
    net = gross - cfg.fee * turnover
    returns = pd.DataFrame({
        "timestamp": timestamps,
        "prediction": np.asarray(predictions, dtype=np.float64),
        "position": pos,
        "asset_return": r,
        "turnover": turnover,
        "strategy_return": net,
        "label": np.asarray(actual_label, dtype=np.float64),
    })
    trades = extract_trades(pd.DatetimeIndex(timestamps), pos, gross, cfg.fee, exit_reasons)
    metrics = compute_metrics(net, trades["return"].to_numpy(), predictions, actual_label,
                              periods_per_year)
    return BacktestResult(returns=returns, trades=trades, metrics=metrics)
