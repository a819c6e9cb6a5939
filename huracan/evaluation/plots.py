"""Figures logged with each run (matplotlib, Agg backend: no display needed).

Every figure is made to be read where MLflow shows it (the run's artifact view, about 800-1000
px wide): time axes use :class:`matplotlib.dates.ConciseDateFormatter` over an
:class:`~matplotlib.dates.AutoDateLocator` (a year or month is written once where it changes,
so labels do not collide at month boundaries), legends sit outside the data (a row above the
panel, :func:`legend_outside`), and titles name what the caller passes (run name = model,
symbol and timeframe; the window) plus the dates the data spans and the fill mode
(:func:`window_title`).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
from collections.abc import Sequence

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.legend import Legend

from huracan.evaluation.execution import COST_SENSITIVITY_BPS, breakeven_bps, cost_sensitivity
from huracan.evaluation.metrics import drawdown, equity_curve


def concise_dates(ax: Axes, max_ticks: int = 8) -> None:
    """Date ticks of ``ax``'s x axis: :class:`matplotlib.dates.AutoDateLocator` (3 to
    ``max_ticks`` ticks) labelled by :class:`matplotlib.dates.ConciseDateFormatter` (day
    numbers, the month or year written where it changes, the span's context at the right end).
    Call it on every axis of a ``sharex`` stack: each keeps its own formatter."""
    locator = mdates.AutoDateLocator(minticks=3, maxticks=max_ticks)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def legend_outside(ax: Axes, fontsize: float = 8, **kwargs: object) -> Legend | None:
    """A one-row legend above ``ax`` (outside the data: ``bbox_to_anchor`` at the axes' top
    edge, ``loc="lower left"``), frameless; ``None`` when ``ax`` has no labelled artist.
    ``kwargs`` go to :meth:`matplotlib.axes.Axes.legend` (e.g. ``markerscale``)."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return None
    return ax.legend(handles, labels, loc="lower left", bbox_to_anchor=(0.0, 1.0),
                     ncol=len(handles), frameon=False, fontsize=fontsize, borderaxespad=0.2,
                     handlelength=1.5, columnspacing=1.2, **kwargs)


def window_title(title: str, timestamps: object = None, fill: str | None = None) -> str:
    """``title`` with a second line naming the first and last date of ``timestamps`` (any
    array-like :func:`pandas.to_datetime` reads; ``2024-12-01 .. 2024-12-31``) and the fill mode
    (``fill next_open``: the ``backtest.fill`` the returns were computed with) when given;
    ``title`` alone when neither is."""
    parts = []
    ts = pd.DatetimeIndex(pd.to_datetime(timestamps)) if timestamps is not None else None
    if ts is not None and len(ts) > 0:
        parts.append(f"{ts.min():%Y-%m-%d} .. {ts.max():%Y-%m-%d}")
    if fill:
        parts.append(f"fill {fill}")
    return f"{title}\n{', '.join(parts)}" if parts else title


def equity_drawdown_figure(returns: pd.DataFrame, title: str,
                           boundaries: Sequence[pd.Timestamp] = (),
                           fill: str | None = None) -> Figure:
    """Two panels: compounded equity of the strategy vs buy-and-hold, and the drawdown.

    Args:
        returns: the backtest's per-bar frame (``timestamp``, ``strategy_return``,
            ``asset_return``).
        title: figure title (name the run, symbol and window: ``lightgbm-BTCUSDT-1h test``); a
            second line adds the dates and ``fill`` (:func:`window_title`).
        boundaries: times to mark with a dotted vertical line (walk-forward fold starts).
        fill: the backtest's fill mode (``backtest.fill``), named in the title.
    """
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, layout="constrained",
                                   gridspec_kw={"height_ratios": [3, 1]})
    ts = pd.to_datetime(returns["timestamp"])
    r = returns["strategy_return"].to_numpy()
    ax1.plot(ts, equity_curve(r), label="strategy (net of costs)")
    ax1.plot(ts, equity_curve(returns["asset_return"].to_numpy()), label="buy and hold",
             alpha=0.6)
    ax1.set_ylabel("equity (start = 1)")
    ax2.fill_between(ts, -100 * drawdown(r), 0.0, color="tab:red", alpha=0.5)
    ax2.set_ylabel("drawdown (%)")
    for i, t in enumerate(boundaries):
        for ax in (ax1, ax2):
            ax.axvline(pd.Timestamp(t), color="grey", linestyle=":", linewidth=0.8,
                       label="fold start" if (i == 0 and ax is ax1) else None)
    legend_outside(ax1)
    for ax in (ax1, ax2):
        concise_dates(ax)
    fig.suptitle(window_title(title, ts, fill), fontsize=11)
    return fig


def shap_summary_figure(values: np.ndarray, X: np.ndarray, feature_names: list[str],
                        title: str, seed: int = 0) -> Figure:
    """SHAP beeswarm summary (``shap.summary_plot``) of attributions ``values`` (n, f)."""
    import shap

    # shap draws on pyplot's current figure: start a fresh one, never a figure left open by
    # another plot (a constrained-layout figure refuses the tight layout below once shap's
    # colorbar is on it)
    plt.figure()
    shap.summary_plot(values, X, feature_names=feature_names, show=False, max_display=20,
                      rng=np.random.default_rng(seed))
    fig = plt.gcf()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


#: regime colours of the timeline plot
REGIME_COLOURS = {"low": "tab:green", "normal": "tab:blue", "high": "tab:orange",
                  "extreme": "tab:red", "unknown": "lightgrey"}


def regime_timeline_figure(returns: pd.DataFrame, title: str,
                           fill: str | None = None) -> Figure:
    """Two panels: the asset's compounded price path coloured by the regime detected at each
    bar, and the strategy's equity (net of costs) below it.

    Args:
        returns: a backtest returns frame with ``timestamp``, ``asset_return``,
            ``strategy_return`` and ``regime``.
        title: figure title (run, symbol, window); a second line adds the dates and ``fill``.
        fill: the backtest's fill mode (``backtest.fill``), named in the title.
    """
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, layout="constrained",
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
    legend_outside(ax1, markerscale=4)
    ax2.plot(ts, equity_curve(returns["strategy_return"].to_numpy()), color="black")
    ax2.set_ylabel("strategy equity")
    for ax in (ax1, ax2):
        concise_dates(ax)
    fig.suptitle(window_title(title, ts, fill), fontsize=11)
    return fig


def cost_sensitivity_figure(net: np.ndarray, turnover: np.ndarray, periods_per_year: float,
                            title: str,
                            extra_bps: Sequence[float] | np.ndarray = COST_SENSITIVITY_BPS,
                            timestamps: object = None, fill: str | None = None) -> Figure:
    """Net Sharpe against an extra cost per unit turnover (0 to 50 bps by default), with cash's
    Sharpe (0) as the floor and the window's breakeven cost marked when it falls in the range.

    Args:
        net: the strategy's per-bar net returns (fractions; the backtest's ``strategy_return``),
            shape ``(n,)``.
        turnover: per-bar ``|p_t - p_{t-1}|`` (the backtest's ``turnover``), shape ``(n,)``.
        periods_per_year: bars per year, for the annualised Sharpe.
        title: figure title (run, symbol, window); a second line adds the dates of
            ``timestamps`` and ``fill`` (:func:`window_title`).
        extra_bps: the extra costs to plot, bps per unit turnover.
        timestamps: the bars' times (``(n,)``), for the dates in the title.
        fill: the backtest's fill mode (``backtest.fill``), named in the title.

    The curve is :func:`huracan.evaluation.execution.cost_sensitivity`; the breakeven (dashed
    line) is :func:`huracan.evaluation.execution.breakeven_bps`, where the compounded net return
    (not the Sharpe) reaches 0.
    """
    curve = cost_sensitivity(net, turnover, periods_per_year, tuple(extra_bps))
    be = breakeven_bps(net, turnover)
    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    ax.plot(curve["extra_bps"], curve["sharpe"], marker=".", label="strategy (net Sharpe)")
    ax.axhline(0.0, color="grey", linewidth=1.0, label="cash (Sharpe 0)")
    lo, hi = float(np.min(curve["extra_bps"])), float(np.max(curve["extra_bps"]))
    if np.isfinite(be) and lo <= be <= hi:
        ax.axvline(be, color="tab:red", linestyle="--", linewidth=1.0,
                   label=f"breakeven {be:.1f} bps (net return 0)")
    ax.set_xlabel("extra cost per unit turnover (bps)")
    ax.set_ylabel("annualised net Sharpe")
    legend_outside(ax)
    fig.suptitle(window_title(title, timestamps, fill), fontsize=11)
    return fig
