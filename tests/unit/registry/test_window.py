"""The gate's evaluation window by hand: which bars a run logs as its scored out-of-sample
forecasts (:func:`huracan.stages.eval_window`), where each version's forecast of a bar comes from
(registered model after its ``seen_until``, else its run's stored forecast, else none), the
decision window both sides cover, and the compatibility branch for windows logged before
``prediction`` existed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from huracan.evaluation.backtest import BacktestConfig, positions_from_forecast
from huracan.evaluation.execution import close_bars, execute, market_bars
from huracan.features.build import FeatureSet
from huracan.registry.evaluate import (
    MODEL,
    NONE,
    STORED,
    EvalWindow,
    backtest_forecasts,
    combine_forecasts,
    decision_rows,
    forecast_sources,
    only_regime,
    restrict_window,
    scored_bars,
    stored_forecasts,
    with_scored,
)
from huracan.stages import EVAL_CONTEXT_ROWS, eval_window

T = pd.date_range("2024-01-01", periods=400, freq="1h", tz="UTC", name="timestamp")


def _fs(n: int = 400) -> FeatureSet:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": np.arange(n, dtype=float), "label": rng.normal(0, 0.01, n),
                          "next_return": rng.normal(0, 0.01, n)}, index=T[:n])
    return FeatureSet(frame, ["x"], horizon=1)


# -- the window a run logs -------------------------------------------------------------------


def _walk_forward():
    """Three OOS steps: fold 0 rows 300-309, fold 1 rows 310-319, fold 2 (partial) 320-323."""
    rows = np.arange(300, 324)
    folds = np.repeat([0, 1, 2], [10, 10, 4])
    preds = rows / 1000.0  # a forecast we can recognise: row / 1000
    return rows, preds, folds


def test_a_walk_forward_window_keeps_min_bars_of_stitched_oos_bars():
    rows, preds, folds = _walk_forward()
    w = eval_window(_fs(), rows, preds, folds, min_bars=12)
    scored = w[w.split == "test"]
    # the last 12 stitched bars: 8 of fold 1 (rows 312-319) and the partial step's 4
    assert scored.x.tolist() == list(range(312, 324))
    assert scored.fold.tolist() == [1] * 8 + [2] * 4
    assert scored.prediction.tolist() == pytest.approx([r / 1000 for r in range(312, 324)])
    # 256 context rows before them, without a forecast or a fold
    ctx = w[w.split == "context"]
    assert ctx.x.tolist() == list(range(312 - EVAL_CONTEXT_ROWS, 312))
    assert ctx.prediction.isna().all() and ctx.fold.isna().all()
    assert w.timestamp.tolist() == list(T[312 - EVAL_CONTEXT_ROWS : 324])
    assert {"label", "next_return", "x"} <= set(w.columns)


def test_the_last_step_when_it_is_longer_and_everything_when_min_bars_exceeds_it():
    rows, preds, folds = _walk_forward()
    w = eval_window(_fs(), rows, preds, folds, min_bars=0)  # max(0, 4 bars of the last step)
    assert w[w.split == "test"].x.tolist() == [320, 321, 322, 323]
    w = eval_window(_fs(), rows, preds, folds, min_bars=3)  # the last step (4) is longer
    assert scored_count(w) == 4
    w = eval_window(_fs(), rows, preds, folds, min_bars=1000)  # all 24 there are
    assert w[w.split == "test"].x.tolist() == list(range(300, 324))
    assert w.x.iloc[0] == 300 - EVAL_CONTEXT_ROWS


def scored_count(frame: pd.DataFrame) -> int:
    return int((frame.split == "test").sum())


def test_a_forward_window_is_its_test_bars_with_their_forecasts():
    test = np.arange(350, 400)
    preds = np.linspace(-0.01, 0.01, 50)
    w = eval_window(_fs(), test, preds, np.zeros(50, dtype=int), min_bars=168)
    assert w[w.split == "test"].x.tolist() == list(range(350, 400))  # all 50: the last "fold"
    assert w[w.split == "test"].prediction.to_numpy() == pytest.approx(preds)
    assert (w[w.split == "test"].fold == 0).all()
    assert scored_count(w) == 50 and len(w) == 50 + EVAL_CONTEXT_ROWS


def test_rows_between_scored_steps_are_context():
    rows = np.r_[np.arange(300, 305), np.arange(308, 312)]  # a skipped step (rows 305-307)
    w = eval_window(_fs(), rows, rows / 1000.0, np.repeat([0, 1], [5, 4]), min_bars=9)
    gap = w[w.x.isin([305, 306, 307])]
    assert (gap.split == "context").all() and gap.prediction.isna().all()
    assert scored_count(w) == 9


def test_window_input_errors():
    with pytest.raises(ValueError, match="one length"):
        eval_window(_fs(), np.arange(3), np.zeros(2), np.zeros(3), 1)
    with pytest.raises(ValueError, match="non-empty"):
        eval_window(_fs(), np.arange(0), np.zeros(0), np.zeros(0), 1)


# -- where a version's forecast of a bar comes from ------------------------------------------


def test_forecast_sources_by_hand():
    ts = T[:10]
    stored = pd.Series([0.1, 0.2, 0.3, 0.4, 0.5], index=T[2:7])
    src = forecast_sources(ts, T[4].isoformat(), stored)
    # t0-t1 neither; t2-t4 seen in fitting but forecast out of sample by its run; t5-t9 unseen
    assert src.tolist() == [NONE, NONE, STORED, STORED, STORED] + [MODEL] * 5
    # a manifest without train_end/val_end: every bar counts as unseen (as before)
    assert (forecast_sources(ts, None, stored) == MODEL).all()
    # the bar AT seen_until was seen: strictly after only
    assert forecast_sources(ts, T[9].isoformat(), None).tolist() == [NONE] * 10
    # tz-naive seen_until is UTC
    assert forecast_sources(ts, "2024-01-01 04:00:00", None).tolist() == [NONE] * 5 + [MODEL] * 5


def test_a_legacy_window_without_predictions_scores_the_registered_model_only():
    frame = pd.DataFrame({"timestamp": T[:6], "split": ["context"] * 2 + ["test"] * 4})
    legacy = EvalWindow(frame, BacktestConfig(), 8760.0, "r")
    assert stored_forecasts(legacy) is None
    src = forecast_sources(frame.timestamp, T[3].isoformat(), stored_forecasts(legacy))
    assert src.tolist() == [NONE] * 4 + [MODEL] * 2  # today's rule: bars after seen_until
    # with the column, only the scored bars' finite forecasts are stored
    frame["prediction"] = [np.nan, np.nan, 0.1, np.nan, 0.3, 0.4]
    got = stored_forecasts(EvalWindow(frame, BacktestConfig(), 8760.0, "r"))
    assert got.index.tolist() == [T[2], T[4], T[5]] and got.tolist() == [0.1, 0.3, 0.4]


def test_the_decision_window_champion_seen_mid_window_candidate_older_bars_stored():
    """Candidate: scored bars t10-t29 (20), seen until t24 (its last fold's validation end),
    its run's stored forecasts on all 20. Champion (yesterday's walk-forward): seen until t17,
    stored forecasts on t5-t19."""
    ts = T[:30]
    scored = np.r_[np.zeros(10, bool), np.ones(20, bool)]
    cand_stored = pd.Series(np.arange(20) / 100.0, index=T[10:30])
    champ_stored = pd.Series(np.arange(15) / 100.0, index=T[5:20])
    cand = forecast_sources(ts, T[24].isoformat(), cand_stored)
    champ = forecast_sources(ts, T[17].isoformat(), champ_stored)
    rows = decision_rows(scored, cand, champ)
    assert rows.sum() == 20 and not rows[:10].any()  # every scored bar, on both sides
    assert ((cand == STORED) & rows).sum() == 15 and ((cand == MODEL) & rows).sum() == 5
    assert ((champ == STORED) & rows).sum() == 8 and ((champ == MODEL) & rows).sum() == 12
    # a champion logged before windows carried forecasts: only its bars after t17
    legacy = forecast_sources(ts, T[17].isoformat(), None)
    assert decision_rows(scored, cand, legacy).sum() == 12
    # a champion that saw up to t27 and stored nothing there: two bars left
    late = forecast_sources(ts, T[27].isoformat(), pd.Series([0.0], index=T[:1]))
    assert np.flatnonzero(decision_rows(scored, cand, late)).tolist() == [28, 29]
    # no champion: the candidate's own forecasts decide the window
    assert decision_rows(scored, cand, None).sum() == 20
    # both legacy: today's window, the bars after the later seen_until
    old_cand = forecast_sources(ts, T[24].isoformat(), None)
    assert np.flatnonzero(decision_rows(scored, old_cand, legacy)).tolist() == list(
        range(25, 30))


def test_combined_forecasts_take_each_bar_from_its_source():
    ts = T[:5]
    src = np.array([NONE, STORED, STORED, MODEL, MODEL], dtype=object)
    model = np.array([9.0, 9.1, 9.2, 9.3, 9.4])
    stored = pd.Series([0.1, 0.2, 0.3], index=T[1:4])
    got = combine_forecasts(ts, src, model, stored)
    assert np.isnan(got[0]) and got[1:].tolist() == [0.1, 0.2, 9.3, 9.4]
    with pytest.raises(ValueError, match="registered model"):
        combine_forecasts(ts, src, None, stored)


def test_backtest_forecasts_executes_the_scored_bars_on_the_windows_market():
    rng = np.random.default_rng(3)
    n = 40
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n + 1)))
    frame = pd.DataFrame({"timestamp": T[:n], "label": rng.normal(0, 0.01, n),
                          "bar_close": close[:-1],
                          "next_open": close[1:] * (1 + rng.normal(0, 0.001, n)),
                          "next_return": close[1:] / close[:-1] - 1,
                          "split": ["context"] * 10 + ["test"] * 30,
                          "regime": ["low", "high"] * 20})
    cfg = BacktestConfig(fee=0.001, threshold=0.002)
    w = EvalWindow(frame, cfg, 8760.0, "r")
    f = rng.normal(0, 0.01, n)
    keep = np.r_[np.zeros(12, bool), np.ones(28, bool)]
    got = backtest_forecasts(with_scored(w, keep), f)
    bars = market_bars(frame, cfg, 8760.0).take(slice(12, n))
    want = execute(positions_from_forecast(f[12:], 0.002), bars, 8760.0, predictions=f[12:],
                   labels=frame.label.to_numpy()[12:])
    assert got.metrics == want.metrics
    assert got.execution["fill"] == "next_open" and got.execution["notes"] == []
    # a window logged before next_open existed: the close fill, the fee only, and a note
    old = with_scored(EvalWindow(frame.drop(columns=["next_open", "bar_close"]), cfg, 8760.0,
                                 "r"), keep)
    legacy = backtest_forecasts(old, f)
    close = execute(positions_from_forecast(f[12:], 0.002),
                    close_bars(T[12:n], frame.next_return.to_numpy()[12:], 0.001), 8760.0,
                    predictions=f[12:], labels=frame.label.to_numpy()[12:])
    assert legacy.metrics == close.metrics
    assert legacy.execution["fill"] == "close"
    assert "window logged before next_open existed" in legacy.execution["notes"][0]
    # restrictions compose: after t20 and only the high bars
    r = only_regime(restrict_window(w, T[20]), "high")
    assert scored_bars(r) == len([i for i in range(21, n) if i % 2 == 1])


def test_the_window_keeps_the_runs_execution_and_is_rescored_on_it():
    rng = np.random.default_rng(4)
    n = 400
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n + 1)))
    frame = pd.DataFrame({"x": np.arange(n, dtype=float), "label": rng.normal(0, 0.01, n),
                          "bar_close": close[:-1], "bar_high": close[:-1] * 1.002,
                          "bar_low": close[:-1] * 0.998,
                          "next_open": close[1:] * (1 + rng.normal(0, 0.001, n)),
                          "next_return": close[1:] / close[:-1] - 1}, index=T[:n])
    fs = FeatureSet(frame, ["x"], horizon=1)
    cfg = BacktestConfig(half_spread="abdi_ranaldo", spread_window=24)
    bars = market_bars(frame, cfg, 8760.0)
    rows = np.arange(300, 324)
    preds = rng.normal(0, 0.01, 24)
    w = eval_window(fs, rows, preds, np.zeros(24, dtype=int), 0, bars)
    start = 300 - EVAL_CONTEXT_ROWS
    assert w["exec_cost_lin"].to_numpy() == pytest.approx(bars.cost_lin[start:324])
    assert (w["exec_fill"] == "next_open").all() and "next_open" in w
    # re-scored on the logged execution, even with other settings at hand (the run's costs win)
    got = backtest_forecasts(EvalWindow(w, BacktestConfig(half_spread=50.0), 8760.0, "r"),
                             w["prediction"].to_numpy())
    want = execute(positions_from_forecast(preds), bars.take(rows), 8760.0, predictions=preds,
                   labels=frame.label.to_numpy()[rows])
    assert got.metrics == want.metrics


def test_the_window_is_scored_with_the_runs_fitted_rule_not_the_default_threshold():
    """A threshold rule fitted on validation (grid) to 0.006, far from backtest.threshold 0.0008:
    the window's positions follow the fitted threshold, and min_holding over the scored bars
    restarts after a bar that was dropped from the decision window (a gap)."""
    from huracan.evaluation.rules import RuleInput, ThresholdRule
    from huracan.registry.evaluate import WindowRule, rule_positions

    rng = np.random.default_rng(5)
    n = 60
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n + 1)))
    frame = pd.DataFrame({"timestamp": T[:n], "label": rng.normal(0, 0.01, n),
                          "bar_close": close[:-1], "next_open": close[1:],
                          "next_return": close[1:] / close[:-1] - 1,
                          "split": ["context"] * 10 + ["test"] * 50})
    cfg = BacktestConfig(fee=0.001)  # default threshold 0.0008
    w = EvalWindow(frame, cfg, 8760.0, "r", "1h")
    f = rng.normal(0, 0.01, n)
    val_ret = rng.normal(0, 0.01, 200)
    val = RuleInput(timestamps=T[:200], forecast=val_ret,  # foresight: 0.006 beats cash
                    next_return=val_ret, label=rng.normal(0, 0.01, 200),
                    bars=close_bars(T[:200], val_ret, 0.001))
    fitted = ThresholdRule(grid=(0.006,), min_trades=0).fit(val, cfg, 8760.0)
    assert fitted.chosen_ == 0.006 != cfg.threshold
    rule = WindowRule(fitted, (), "fitted")
    got = backtest_forecasts(w, f, rule)
    want_pos = np.where(f[10:] > 0.006, 1.0, np.where(f[10:] < -0.006, -1.0, 0.0))
    bars = market_bars(frame, cfg, 8760.0).take(slice(10, n))
    want = execute(want_pos, bars, 8760.0, predictions=f[10:],
                   labels=frame.label.to_numpy()[10:])
    assert got.metrics == want.metrics
    default = backtest_forecasts(w, f)  # no rule: backtest.threshold, as before
    assert default.metrics != got.metrics
    assert default.metrics == backtest_forecasts(w, f, WindowRule(None, (), "none")).metrics
    assert rule.describe() == {"source": "fitted", "kind": "threshold", "threshold": 0.006,
                               "chosen_on": "validation", "flat": False}
    # gaps: min_holding 3 restarts at the first scored bar after a dropped one
    held = WindowRule(ThresholdRule(threshold=0.0, min_holding=3).fit(val, cfg, 8760.0))
    keep = np.ones(n, bool)
    keep[30] = False
    pos, _ = rule_positions(with_scored(w, keep), np.where(np.arange(n) == 29, 0.01, -0.01),
                            held)
    # scored rows 10..59 without 30: row 29 long, then 31 (after the gap) follows its own
    # forecast at once instead of being held long
    assert pos[29 - 10] == 1.0 and pos[30 - 10] == -1.0
