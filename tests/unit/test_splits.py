"""Forward split with embargo; scaler fit on train only."""

from __future__ import annotations

import numpy as np
import pytest

from huracan.splits import fit_scaler, forward_split


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


def test_scaler_sees_train_rows_only():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(100, 3))
    s = forward_split(100, embargo=1, horizon=1)
    scaler = fit_scaler(X[s.train.start : s.train.stop])
    X2 = X.copy()
    X2[s.val.start :] *= 1000.0  # anything after train must not move the scaler
    scaler2 = fit_scaler(X2[s.train.start : s.train.stop])
    np.testing.assert_array_equal(scaler.mean_, scaler2.mean_)
    np.testing.assert_allclose(scaler.mean_, X[: s.train.stop].mean(axis=0))
