"""Forward split and walk-forward folds with embargo (hand-made indexes); scaler on train only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from huracan.splits import (
    ForwardSplitter,
    WalkForwardSplitter,
    fit_scaler,
    forward_split,
    to_bars,
    walk_forward_folds,
)


def test_forward_split_boundaries_and_embargo():
    s = forward_split(100, embargo=2, horizon=2)
    assert (s.train.start, s.train.stop) == (0, 68)
    assert (s.val.start, s.val.stop) == (70, 83)
    assert (s.test.start, s.test.stop) == (85, 100)
    # the last train label (row 67, looking 2 bars ahead) ends before the first val row
    assert s.train.stop - 1 + 2 < s.val.start
    assert s.val.stop - 1 + 2 < s.test.start


@pytest.mark.parametrize("horizon", [1, 3, 12])
def test_no_label_overlaps_a_later_split(horizon):
    s = forward_split(1000, embargo=horizon, horizon=horizon)
    assert max(s.train) + horizon < min(s.val)
    assert max(s.val) + horizon < min(s.test)
    assert set(s.train).isdisjoint(s.val) and set(s.val).isdisjoint(s.test)


def test_embargo_shorter_than_horizon_is_refused():
    with pytest.raises(ValueError, match="embargo"):
        forward_split(100, embargo=1, horizon=3)


def test_bad_fractions_and_tiny_data_are_refused():
    with pytest.raises(ValueError, match="sum to 1"):
        forward_split(100, 0.7, 0.2, 0.2, embargo=1, horizon=1)
    with pytest.raises(ValueError, match="empty"):
        forward_split(3, embargo=1, horizon=1)


def test_context_rows_precede_the_split():
    s = forward_split(100, embargo=2, horizon=2)
    ctx = s.context("test", lookback=10)
    assert (ctx.start, ctx.stop) == (76, 85)
    assert max(ctx) < s.test.start


def test_the_fit_stage_scales_with_train_rows_only():
    """The scaler the fit stage fits (and saves with the model) is moved by train rows and by
    nothing else: scaling every later row by 1,000 leaves it unchanged, and the model is fed
    exactly the train rows scaled by it."""
    from huracan.models.lightgbm import LightGBMForecaster
    from huracan.stages import fit_fold

    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 3)).astype(np.float32)
    y = 0.01 * X[:, 0] + rng.normal(0, 0.01, 400)
    fold = forward_split(400, embargo=1, horizon=1)
    model = LightGBMForecaster(n_estimators=5, log_period=0)
    a = fit_fold(model, X, y, fold, ["a", "b", "c"], keep=True)
    X2 = X.copy()
    X2[fold.train.stop :] *= 1000.0
    b = fit_fold(model, X2, y, fold, ["a", "b", "c"], keep=True)
    np.testing.assert_allclose(a.scaler.mean_, X[: fold.train.stop].astype(np.float64).mean(0))
    np.testing.assert_array_equal(a.scaler.mean_, b.scaler.mean_)
    np.testing.assert_array_equal(a.scaler.scale_, b.scaler.scale_)
    # a scaler that had seen val/test rows would not centre the train rows
    X_train = a.scaler.transform(X[: fold.train.stop])
    np.testing.assert_allclose(X_train.mean(axis=0), 0.0, atol=1e-6)
    assert fit_scaler(X).mean_.tolist() != a.scaler.mean_.tolist()


# ----------------------------------------------------------------------------- walk-forward
def _hours(n: int, start: str = "2024-01-01") -> pd.DatetimeIndex:
    return pd.date_range(start, periods=n, freq="1h", tz="UTC")


def _spans(folds):
    return [((f.train.start, f.train.stop), (f.val.start, f.val.stop),
             (f.test.start, f.test.stop)) for f in folds]


def test_rolling_folds_on_a_hand_made_index_with_a_partial_last_step():
    # train window 20 bars (its last 5 validate), embargo 2, step 10; first OOS bar = 20 + 2
    folds = walk_forward_folds(_hours(100), "1h", train=20, val=5, step=10, embargo=2, horizon=2)
    assert [f.index for f in folds] == list(range(8))
    assert _spans(folds)[:2] == [((0, 13), (15, 20), (22, 32)), ((10, 23), (25, 30), (32, 42))]
    assert _spans(folds)[-1] == ((70, 83), (85, 90), (92, 100))  # the last step is partial
    # OOS steps tile the data after the first window without overlap or hole
    oos = np.concatenate([np.arange(f.test.start, f.test.stop) for f in folds])
    np.testing.assert_array_equal(oos, np.arange(22, 100))
    for f in folds:
        assert len(f.train) == 13 and len(f.val) == 5 and f.embargo == 2


def test_expanding_folds_keep_all_history():
    folds = walk_forward_folds(_hours(100), "1h", train=20, val=5, step=10, embargo=2, horizon=2,
                               expanding=True)
    assert all(f.train.start == 0 for f in folds)
    assert [f.train.stop for f in folds] == [13 + 10 * k for k in range(8)]
    assert [(f.val.start, f.val.stop) for f in folds][:2] == [(15, 20), (25, 30)]


def test_durations_equal_bar_counts_and_round_up():
    idx = _hours(24 * 30)
    in_bars = walk_forward_folds(idx, "1h", train=24 * 8, val=24, step=24, embargo=3, horizon=3)
    in_time = walk_forward_folds(idx, "1h", train="8d", val="1d", step="24h", embargo="3h",
                                 horizon=3)
    assert _spans(in_bars) == _spans(in_time)
    assert to_bars("90min", "1h") == 2 and to_bars("720", "1h") == 720 and to_bars(5, "5m") == 5
    assert to_bars("1d", "5m") == 288
    for bad in ("0", "soon", -3, True):
        with pytest.raises(ValueError, match="size"):
            to_bars(bad, "1h")


def test_oos_start_and_end_bound_the_period():
    idx = pd.date_range("2018-01-10 04:55", "2018-01-30 04:50", freq="5min", tz="UTC")
    folds = walk_forward_folds(idx, "5m", train="8d", val="2d", step="1d", embargo=20,
                               horizon=20, oos_start="2018-01-20", oos_end="2018-01-30")
    assert len(folds) == 10
    assert idx[folds[0].test.start] == pd.Timestamp("2018-01-20", tz="UTC")
    assert idx[folds[-1].test.stop - 1] == pd.Timestamp("2018-01-29 23:55", tz="UTC")
    assert all(len(f.test) == 288 for f in folds)


@pytest.mark.parametrize("expanding", [False, True])
def test_no_oos_bar_is_reached_by_a_train_or_val_label_even_across_gaps(expanding):
    horizon = 3
    idx = _hours(600)
    # two outages: 30 h and 5 h (rows simply absent, as in the feature frame)
    idx = idx[(idx < idx[200]) | (idx >= idx[230])]
    idx = idx[(idx < pd.Timestamp("2024-01-18", tz="UTC")) |
              (idx >= pd.Timestamp("2024-01-18 05:00", tz="UTC"))]
    folds = walk_forward_folds(idx, "1h", train="5d", val="1d", step="2d", embargo=horizon,
                               horizon=horizon, expanding=expanding)
    reach = pd.Timedelta(hours=horizon)  # a label of bar t reads the close of bar t + horizon
    for f in folds:
        oos_start = idx[f.test.start]
        assert idx[f.train.stop - 1] + reach < idx[f.val.start]
        assert idx[f.val.stop - 1] + reach < oos_start
        assert max(f.train) < f.val.start <= max(f.val) < f.test.start
        ctx = f.context("test", lookback=48)
        assert ctx.stop == f.test.start  # sequence context precedes the OOS step


def test_walk_forward_refuses_inconsistent_settings():
    idx = _hours(100)
    with pytest.raises(ValueError, match="embargo"):
        walk_forward_folds(idx, "1h", train=20, val=5, step=10, embargo=1, horizon=3)
    with pytest.raises(ValueError, match="no fit rows"):
        walk_forward_folds(idx, "1h", train=6, val=5, step=10, embargo=1, horizon=1)
    with pytest.raises(ValueError, match="no walk-forward fold"):
        walk_forward_folds(idx, "1h", train=200, val=5, step=10, embargo=1, horizon=1)
    with pytest.raises(ValueError, match="increasing"):
        walk_forward_folds(idx[::-1], "1h", train=20, val=5, step=10, embargo=1, horizon=1)


def test_splitters_describe_themselves_and_build_their_folds():
    idx = _hours(500)
    fwd = ForwardSplitter(embargo=2)
    assert len(fwd.folds(idx, "1h", horizon=2)) == 1
    assert fwd.selection_prefix == "val" and fwd.describe()["split_scheme"] == "forward"
    wf = WalkForwardSplitter(train_bars="5d", val_bars="1d", step_bars="2d", embargo=2)
    assert len(wf.folds(idx, "1h", horizon=2)) == 8  # (500 - 122) bars / 48 per step, rounded up
    assert wf.selection_prefix == "oos" and wf.describe()["split_step_bars"] == "2d"
