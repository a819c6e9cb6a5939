"""window_diagnostics on hand-made backtest frames, and the cost-sensitivity figure."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from huracan.evaluation import execution as ex
from huracan.evaluation.diagnostics import FOLD_DIAGNOSTICS, WINDOW_DIAGNOSTICS, window_diagnostics
from huracan.evaluation.plots import cost_sensitivity_figure

PPY = 4  # four bars a "year"
NET = np.array([0.01, -0.02, 0.03, 0.0])
BENCH = np.array([0.0, -0.01, 0.01, 0.01])  # buy & hold on the same bars


def _result(**extra: object) -> SimpleNamespace:
    frame = pd.DataFrame({
        "timestamp": pd.date_range("2024-01-01", periods=4, freq="h"),
        "prediction": [0.001, 0.002, 0.003, 0.004],
        "position": [1.0, 1.0, -1.0, -1.0],
        "turnover": [1.0, 0.0, 2.0, 0.0],
        "strategy_return": NET,
        "label": [0.001, 0.003, 0.002, 0.004],
        **extra,
    })
    return SimpleNamespace(returns=frame)


def test_window_diagnostics_hand_computed():
    out = window_diagnostics(_result(), BENCH, split="val", periods_per_year=PPY)
    assert sorted(out) == sorted(f"val_{k}" for k in WINDOW_DIAGNOSTICS)
    # (1.01 - x) * 0.98 * (1.03 - 2x) * 1 = 1 -> 2x^2 - 3.05x + (1.0403 - 1/0.98) = 0
    c = 1.0403 - 1 / 0.98
    x = (3.05 - math.sqrt(3.05**2 - 8 * c)) / 4
    assert out["val_breakeven_bps"] == pytest.approx(1e4 * x, abs=1e-6)  # 65.6 bps
    # forecast [1, 2, 3, 4], label [1, 3, 2, 4] (x 1e-3): 4 / 5 (see test_signal)
    assert out["val_ic"] == pytest.approx(0.8) and out["val_rank_ic"] == pytest.approx(0.8)
    assert out["val_ic_pairs"] == 4.0
    # excess [0.01, -0.01, 0.02, -0.01]: mean 0.0025 * 4 = 0.01; IR 0.0025 / 0.015 * 2
    assert out["val_excess_return"] == pytest.approx(0.01)
    assert out["val_information_ratio"] == pytest.approx(1 / 3)
    # buy & hold: mean 0.0025; sample var (6.25e-6 + 1.5625e-4 + 2 * 5.625e-5) / 3 = 9.1667e-5
    assert out["val_buy_hold_sharpe"] == pytest.approx(0.0025 / math.sqrt(2.75e-4 / 3) * 2)
    assert out["val_buy_hold_total_return"] == pytest.approx(0.99 * 1.01 * 1.01 - 1)


def test_window_diagnostics_per_fold_ic_from_the_fold_column():
    f = [1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0]
    y = [1.0, 3.0, 2.0, 4.0, 3.0, 2.0, 1.0]
    frame = pd.DataFrame({"prediction": f, "label": y, "turnover": [1.0] + [0.0] * 6,
                          "strategy_return": [0.001] * 7, "fold": [2, 2, 2, 2, 5, 5, 5]})
    out = window_diagnostics(SimpleNamespace(returns=frame), np.zeros(7), split="oos",
                             periods_per_year=PPY)
    assert {f"oos_{k}" for k in FOLD_DIAGNOSTICS} <= set(out)
    # fold ICs 0.8 and -1.0: mean -0.1, sample sd 1.8 / sqrt(2) -> ICIR -0.1 / 1.27279
    assert out["oos_ic_mean"] == pytest.approx(-0.1)
    assert out["oos_icir"] == pytest.approx(-0.1 / (1.8 / math.sqrt(2)))
    assert out["oos_rank_ic_mean"] == pytest.approx(-0.1) and out["oos_ic_folds"] == 2.0
    # the pooled IC runs over all 7 bars, not the mean of the folds
    assert out["oos_ic"] == pytest.approx(np.corrcoef(f, y)[0, 1])
    # explicit folds win over the column; a forward window has none
    one = window_diagnostics(SimpleNamespace(returns=frame), np.zeros(7), np.zeros(7), split="oos",
                             periods_per_year=PPY)
    assert one["oos_ic_folds"] == 1.0 and math.isnan(one["oos_icir"])
    assert "val_icir" not in window_diagnostics(_result(), BENCH, split="val", periods_per_year=PPY)


def test_window_diagnostics_refuse_a_benchmark_on_other_bars_or_a_frame_without_labels():
    with pytest.raises(ValueError, match="test: benchmark_returns has 3 bars, the backtest 4"):
        window_diagnostics(_result(), BENCH[:3], split="test", periods_per_year=PPY)
    bare = SimpleNamespace(returns=_result().returns.drop(columns=["label"]))
    with pytest.raises(KeyError, match=r"test backtest returns lack column\(s\) label"):
        window_diagnostics(bare, BENCH, split="test", periods_per_year=PPY)


def test_cost_sensitivity_figure_draws_the_curve_cash_and_the_breakeven():
    rng = np.random.default_rng(3)
    pos = np.sign(rng.normal(size=400))
    turnover = np.abs(np.diff(np.concatenate([[0.0], pos])))
    net = pos * rng.normal(0.0, 0.01, 400) + 0.002 * turnover  # ~20 bps of edge per trade
    fig = cost_sensitivity_figure(net, turnover, 8760, "BTC/USDT val")
    ax = fig.axes[0]
    curve = ex.cost_sensitivity(net, turnover, 8760)
    line = ax.lines[0]
    assert list(line.get_xdata()) == list(range(51))
    assert np.allclose(line.get_ydata(), curve["sharpe"])
    be = ex.breakeven_bps(net, turnover)
    assert 0 < be < 50
    marks = [ln for ln in ax.lines if "breakeven" in str(ln.get_label())]
    assert len(marks) == 1 and marks[0].get_xdata()[0] == pytest.approx(be)
    assert any(ln.get_label() == "cash (Sharpe 0)" and ln.get_ydata()[0] == 0.0
               for ln in ax.lines)
    # a breakeven beyond the plotted range is not marked
    far = cost_sensitivity_figure(net + 0.05 * turnover, turnover, 8760, "t")
    assert not [ln for ln in far.axes[0].lines if "breakeven" in str(ln.get_label())]


# ---------------------------------------------------------------------------- through the stages
def _feature_set(seed: int = 3, n: int = 1500):
    from huracan.features.build import FeatureConfig, build_features

    rng = np.random.default_rng(seed)
    idx = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC")
    close = 100 * np.cumprod(1 + rng.normal(0, 0.01, n))
    open_ = np.concatenate([[100.0], close[:-1]])
    candles = pd.DataFrame({"timestamp": idx, "open": open_,
                            "high": np.maximum(open_, close) * 1.002,
                            "low": np.minimum(open_, close) * 0.998, "close": close,
                            "volume": rng.uniform(1, 2, n)})
    return build_features(candles, "1h", FeatureConfig()), rng


SCORED = ("breakeven_bps", "ic", "rank_ic", "excess_return", "information_ratio")


def test_every_scored_window_of_a_forward_and_a_walk_forward_evaluation_logs_its_diagnostics():
    """evaluate_forward and evaluate_walk_forward add window_diagnostics for val/test and OOS,
    with buy & hold executed on the same bars, and a cost-sensitivity plot per window."""
    from huracan.data.ohlcv import bars_per_year
    from huracan.evaluation.backtest import BacktestConfig
    from huracan.splits import Fold, forward_split
    from huracan.stages import FoldOutcome, evaluate_forward, evaluate_walk_forward

    fs, rng = _feature_set()
    bt = BacktestConfig(threshold=0.0)
    ppy = bars_per_year("1h")
    fold = forward_split(len(fs.frame), embargo=1, horizon=1)
    preds = {"val": rng.normal(0, 0.002, len(fold.val)),
             "test": rng.normal(0, 0.002, len(fold.test))}
    fwd = evaluate_forward(fs, FoldOutcome(fold, preds, 0.0, 0.0, 0.0), bt, "1h", "t")
    for split in ("val", "test"):
        assert {f"{split}_{k}" for k in SCORED} <= set(fwd.metrics)
        res = fwd.results[split]
        hold = ex.execute(np.ones(len(res.returns)), ex.bars_of_returns(res.returns), ppy)
        again = window_diagnostics(res, hold.returns["strategy_return"].to_numpy(), split=split,
                                   periods_per_year=ppy)
        for k, v in again.items():
            assert fwd.metrics[k] == pytest.approx(v, nan_ok=True), k
        # buy & hold on the same bars: every bar's return (these bars open at the previous
        # close: no gap), less one entry cost at the first fill
        a = res.returns["asset_return"].to_numpy()
        entry = res.returns["exec_cost_lin"].iloc[0]
        assert entry == pytest.approx(bt.fee + 2e-4)  # fee + 1 bps half-spread + 1 bps slippage
        assert fwd.metrics[f"{split}_buy_hold_total_return"] == pytest.approx(
            (1 + a[0] - entry) * np.prod(1 + a[1:]) - 1.0, rel=1e-9)
        assert f"plots/cost_sensitivity_{split}.png" in fwd.figures
        fig = fwd.figures[f"plots/cost_sensitivity_{split}.png"]()
        assert fig.axes[0].get_xlabel() == "extra cost per unit turnover (bps)"
        assert f"fill {bt.fill}" in fig._suptitle.get_text()  # the title names the fill
        eq = fwd.figures[f"plots/equity_drawdown_{split}.png"]()
        assert f"fill {bt.fill}" in eq._suptitle.get_text() and split in eq._suptitle.get_text()
    assert "val_icir" not in fwd.metrics  # one fold: no per-fold figures

    n = len(fs.frame)
    folds = [Fold(index=k, train=range(0, 400 + 200 * k), val=range(402 + 200 * k, 500 + 200 * k),
                  test=range(502 + 200 * k, 700 + 200 * k), embargo=2) for k in range(3)]
    assert folds[-1].test.stop <= n
    outs = [FoldOutcome(f, {"val": rng.normal(0, 0.002, len(f.val)),
                            "test": rng.normal(0, 0.002, len(f.test))}, 0.0, 0.0, 0.0)
            for f in folds]
    wf = evaluate_walk_forward(fs, outs, bt, "1h", "t")
    assert {f"oos_{k}" for k in (*SCORED, "ic_mean", "icir", "rank_ic_mean", "rank_icir")} \
        <= set(wf.metrics)
    assert wf.metrics["oos_ic_folds"] == 3.0 and math.isfinite(wf.metrics["oos_icir"])
    assert "plots/cost_sensitivity_oos.png" in wf.figures
    assert math.isfinite(wf.metrics["oos_breakeven_bps"])  # threshold 0: it trades
