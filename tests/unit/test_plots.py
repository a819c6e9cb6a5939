"""Run figures read at the size MLflow shows them: concise date axes, legends outside the data,
titles naming the run, the window, its dates and the fill (huracan.evaluation.plots)."""

from __future__ import annotations

import itertools

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
import pytest

from huracan.evaluation import plots


def _returns(seed: int = 0, start: str = "2024-10-20", end: str = "2024-12-31 23:00"
             ) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.date_range(start, end, freq="1h", tz="UTC")
    a = rng.normal(0.0, 0.006, len(ts))
    pos = (rng.random(len(ts)) > 0.5).astype(float)
    turnover = np.abs(np.diff(pos, prepend=0.0))
    return pd.DataFrame({"timestamp": ts, "asset_return": a,
                         "strategy_return": a * pos - 2e-4 * turnover, "turnover": turnover,
                         "regime": rng.choice(["low", "normal", "high"], len(ts))})


def _figures(df: pd.DataFrame) -> dict[str, object]:
    return {
        "equity": plots.equity_drawdown_figure(
            df, "lightgbm-BTCUSDT-1h test (net of costs)",
            boundaries=[pd.Timestamp("2024-12-01", tz="UTC")], fill="next_open"),
        "regime": plots.regime_timeline_figure(
            df, "lightgbm-BTCUSDT-1h: vol regimes and equity (test)", fill="close"),
    }


def _labels_apart(fig: object) -> list[str]:
    """The bottom axis' tick labels, asserting each ends before the next begins (drawn)."""
    fig.canvas.draw()  # type: ignore[attr-defined]
    ax = fig.axes[-1]  # type: ignore[attr-defined]
    boxes = sorted((t.get_window_extent() for t in ax.get_xticklabels() if t.get_text()),
                   key=lambda b: b.x0)
    assert len(boxes) >= 3
    assert all(a.x1 <= b.x0 for a, b in itertools.pairwise(boxes))
    return [t.get_text() for t in ax.get_xticklabels()]


def test_time_axes_use_the_concise_date_formatter():
    for name, fig in _figures(_returns()).items():
        for ax in fig.axes:  # type: ignore[attr-defined]
            assert isinstance(ax.xaxis.get_major_formatter(), mdates.ConciseDateFormatter), name
            assert isinstance(ax.xaxis.get_major_locator(), mdates.AutoDateLocator), name


def test_tick_labels_do_not_overlap_at_month_boundaries():
    labels = _labels_apart(_figures(_returns())["equity"])
    assert "Dec" in labels  # the month is written once, where it changes


def test_legend_sits_outside_the_data():
    for name, fig in _figures(_returns()).items():
        fig.canvas.draw()  # type: ignore[attr-defined]
        ax = fig.axes[0]  # type: ignore[attr-defined]
        legend = ax.get_legend()
        assert legend is not None, name
        inner = ax.get_window_extent()
        box = legend.get_window_extent()
        assert box.y0 >= inner.y1 - 1, name  # above the panel, not on the curves
        assert box.y1 <= fig.bbox.y1, name  # and inside the image


def test_titles_name_run_window_dates_and_fill():
    figs = _figures(_returns())
    equity = figs["equity"]._suptitle.get_text()  # type: ignore[attr-defined]
    assert equity.startswith("lightgbm-BTCUSDT-1h test")
    assert "2024-10-20 .. 2024-12-31" in equity and "fill next_open" in equity
    assert "fill close" in figs["regime"]._suptitle.get_text()  # type: ignore[attr-defined]
    df = _returns(1)
    cost = plots.cost_sensitivity_figure(df["strategy_return"].to_numpy(),
                                         df["turnover"].to_numpy(), 8760, "m BTCUSDT val",
                                         timestamps=df["timestamp"], fill="delay")
    assert cost._suptitle.get_text() == (  # type: ignore[attr-defined]
        "m BTCUSDT val\n2024-10-20 .. 2024-12-31, fill delay")
    assert plots.window_title("t") == "t"


@pytest.mark.parametrize("span", [("2023-01-01", "2024-12-31"), ("2024-12-01", "2024-12-03")])
def test_long_and_short_spans_keep_labels_apart(span: tuple[str, str]):
    _labels_apart(plots.equity_drawdown_figure(_returns(2, *span), "t", fill="next_open"))


def test_shap_summary_draws_on_a_fresh_figure_not_one_left_open():
    """shap draws on pyplot's current figure: a constrained-layout figure left open by another
    plot made the summary's tight layout raise once shap's colorbar was on it."""
    import matplotlib.pyplot as plt
    import numpy as np

    from huracan.evaluation import plots

    left_open, _ = plt.subplots(2, 1, layout="constrained")
    rng = np.random.default_rng(0)
    fig = plots.shap_summary_figure(rng.normal(size=(50, 3)), rng.normal(size=(50, 3)),
                                    ["a", "b", "c"], "title")
    assert fig is not left_open
    plt.close("all")
