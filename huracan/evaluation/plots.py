"""Figures logged with each run (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from huracan.evaluation.execution import COST_SENSITIVITY_BPS, breakeven_bps, cost_sensitivity
from huracan.evaluation.metrics import drawdown, equity_curve


def equity_drawdown_figure(returns: pd.DataFrame, title: str,
                           boundaries: Sequence[pd.Timestamp] = ()) -> Figure:
    """Two panels: compounded equity of the strategy vs buy-and-hold, and the drawdown.

    Args:
        returns: the backtest's per-bar frame (``timestamp``, ``strategy_return``,
            ``asset_return``).
        title: figure title.
        boundaries: times to mark with a dotted vertical line (walk-forward fold starts).
    """
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6), sharex=True,
                                   gridspec_kw={"height_ratios": [3, 1]})
    ts = pd.to_datetime(returns["timestamp"])
    r = returns["strategy_return"].to_numpy()
    ax1.plot(ts, equity_curve(r), label="strategy (net of costs)")
    ax1.plot(ts, equity_curve(returns["asset_return"].to_numpy()), label="buy and hold",
             alpha=0.6)
    ax1.set_ylabel("equity (start = 1)")
    ax1.legend(loc="upper left")
    ax1.set_title(title)
    ax2.fill_between(ts, -100 * drawdown(r), 0.0, color="tab:red", alpha=0.5)
    ax2.set_ylabel("drawdown (%)")
    for t in boundaries:
        for ax in (ax1, ax2):
            ax.axvline(pd.Timestamp(t), color="grey", linestyle=":", linewidth=0.8)
    fig.tight_layout()
    return fig


def shap_summary_figure(values: np.ndarray, X: np.ndarray, feature_names: list[str],
                        title: str, seed: int = 0) -> Figure:
    """SHAP beeswarm summary (``shap.summary_plot``) of attributions ``values`` (n, f)."""
    import shap

    shap.summary_plot(values, X, feature_names=feature_names, show=False, max_display=20,
                      rng=np.random.default_rng(seed))
    fig = plt.gcf()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


#: regime colours of the timeline plot
REGIME_COLOURS = {"low": "tab:green", "normal": "tab:blue", "high": "tab:orange",
                  "extreme": "tab:red", "unknown": "lightgrey"}


def regime_timeline_figure(returns: pd.DataFrame, title: str) -> Figure:
    """Two panels: the asset's compounded price path coloured by the regime detected at each
    bar, and the strategy's equity (net of costs) below it.

    Args:
        returns: a backtest returns frame with ``timestamp``, ``asset_return``,
            ``strategy_return`` and ``regime``.
        title: figure title.
    """
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6), sharex=True,
                                   gridspec_kw={"height_ratios": [2, 1]})
    ts = pd.to_datetime(returns["timestamp"])
    price = equity_curve(returns["asset_return"].to_numpy())
    regimes = returns["regime"].astype(str).to_numpy()
    ax1.plot(ts, price, color="lightgrey", linewidth=0.6, zorder=1)
    for name, colour in REGIME_COLOURS.items():
        m = regimes == name
        if m.any():
            share = 100 * m.mean()
            ax1.scatter(ts[m], price[m], s=2, color=colour, label=f"{name} ({share:.0f} %)",
                        zorder=2)
    ax1.set_ylabel("asset (start = 1)")
    ax1.legend(loc="upper left", markerscale=4, fontsize=8)
    ax1.set_title(title)
    ax2.plot(ts, equity_curve(returns["strategy_return"].to_numpy()), color="black")
    ax2.set_ylabel("strategy equity")
    fig.tight_layout()
    return fig


def cost_sensitivity_figure(net: np.ndarray, turnover: np.ndarray, periods_per_year: float,
                            title: str,
                            extra_bps: Sequence[float] | np.ndarray = COST_SENSITIVITY_BPS,
                            ) -> Figure:
    """Net Sharpe against an extra cost per unit turnover (0 to 50 bps by default), with cash's
    Sharpe (0) as the floor and the window's breakeven cost marked when it falls in the range.

    Args:
        net: the strategy's per-bar net returns (fractions; the backtest's ``strategy_return``),
            shape ``(n,)``.
        turnover: per-bar ``|p_t - p_{t-1}|`` (the backtest's ``turnover``), shape ``(n,)``.
        periods_per_year: bars per year, for the annualised Sharpe.
        title: figure title.
        extra_bps: the extra costs to plot, bps per unit turnover.

    The curve is :func:`huracan.evaluation.execution.cost_sensitivity`; the breakeven (dashed
    line) is :func:`huracan.evaluation.execution.breakeven_bps`, where the compounded net return
    (not the Sharpe) reaches 0.
    """
    curve = cost_sensitivity(net, turnover, periods_per_year, tuple(extra_bps))
    be = breakeven_bps(net, turnover)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(curve["extra_bps"], curve["sharpe"], marker=".", label="strategy (net Sharpe)")
    ax.axhline(0.0, color="grey", linewidth=1.0, label="cash (Sharpe 0)")
    lo, hi = float(np.min(curve["extra_bps"])), float(np.max(curve["extra_bps"]))
    if np.isfinite(be) and lo <= be <= hi:
        ax.axvline(be, color="tab:red", linestyle="--", linewidth=1.0,
                   label=f"breakeven {be:.1f} bps (net return 0)")
    ax.set_xlabel("extra cost per unit turnover (bps)")
    ax.set_ylabel("annualised net Sharpe")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig
