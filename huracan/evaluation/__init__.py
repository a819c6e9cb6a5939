"""Backtest, trading metrics, explanations."""
