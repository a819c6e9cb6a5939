"""Volatility regimes, pure and causal: detection (quantile thresholds, a Gaussian HMM filtered
forward in time, liquidation cascades) and per-regime model selection with a switching backtest;
:func:`select` answers "which model should trade SYMBOL right now"."""

from huracan.regime.live import LiveSelection, SelectionError, select

__all__ = ["LiveSelection", "SelectionError", "select"]
