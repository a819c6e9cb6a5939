"""Volatility regimes, pure and causal: detection (quantile thresholds, a Gaussian HMM filtered
forward in time, liquidation cascades) and per-regime model selection with a switching backtest."""
