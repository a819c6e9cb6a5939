"""Sequence windows never join bars from both sides of a data gap (real BTC/USDT 1h 2018, whose
longest outage lasts 34 hours)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from huracan.features.build import FeatureConfig, build_features
from huracan.models.base import full_windows, sequence_windows
from huracan.stages import gap_starts


@pytest.fixture(scope="module")
def features_2018(candles_1h):
    candles = candles_1h[candles_1h.timestamp < pd.Timestamp("2018-04-01", tz="UTC")]
    return build_features(candles, "1h", FeatureConfig())


def test_gap_starts_mark_the_real_outages(features_2018):
    idx = pd.DatetimeIndex(features_2018.frame.index)
    starts = gap_starts(idx, "1h")
    assert starts[0] and starts.sum() >= 2
    deltas = pd.Series(idx).diff().dt.total_seconds().div(3600).to_numpy()
    np.testing.assert_array_equal(starts[1:], deltas[1:] != 1.0)
    # the 2018-02-08/09 outage (34 h) plus the feature warm-up dropped after it
    longest = np.nanmax(deltas)
    assert longest >= 34


def test_no_window_crosses_a_gap_on_real_rows(features_2018):
    fs = features_2018
    idx = pd.DatetimeIndex(fs.frame.index)
    starts = gap_starts(idx, "1h")
    # tag every row with its position so the windows can be traced back to rows
    X = np.arange(len(idx), dtype=np.float32)[:, None]
    windows = sequence_windows(X, 48, starts=starts)[:, :, 0].astype(int)
    run_first = np.maximum.accumulate(np.where(starts, np.arange(len(idx)), 0))
    for i in np.flatnonzero(starts)[1:]:  # every row right after a gap, and the next 47
        for j in range(i, min(i + 48, len(idx))):
            assert windows[j].min() >= run_first[j], (idx[j], "window reaches before the gap")
            assert windows[j][-1] == j
    # the windows a model trains on are the unpadded ones only
    mask = full_windows(starts, len(idx), 48)
    assert not mask[np.flatnonzero(starts)].any()
    assert (windows[mask] == windows[mask][:, :1] + np.arange(48)).all()


def test_a_sequence_model_after_a_gap_ignores_the_bars_before_it(features_2018):
    from huracan.models.keras.cnn import CNNForecaster

    fs = features_2018
    idx = pd.DatetimeIndex(fs.frame.index)
    starts = gap_starts(idx, "1h")
    gap = int(np.flatnonzero(starts)[1])  # first row after the first outage
    X = (fs.X - fs.X[:gap].mean(0)) / (fs.X[:gap].std(0) + 1e-9)
    model = CNNForecaster(filters=4, num_layers=1, lookback=16, epochs=1, verbose=0,
                          head_units=4, seed=3)
    model.fit(X[: gap - 200], fs.y[: gap - 200], starts=starts[: gap - 200])
    lo, hi = gap - 40, gap + 40
    base = model.predict(X[lo:hi], starts=starts[lo:hi])
    X2 = X.copy()
    X2[lo:gap] += 5.0  # change every bar before the gap
    moved = model.predict(X2[lo:hi], starts=starts[lo:hi])
    np.testing.assert_array_equal(base[gap - lo :], moved[gap - lo :])  # after: unchanged
    assert not np.allclose(base[: gap - lo], moved[: gap - lo])          # before: changed
    # without the gap flags the first windows after the gap would see the changed bars
    blind = model.predict(X2[lo:hi])
    assert not np.allclose(blind[gap - lo : gap - lo + 15], base[gap - lo : gap - lo + 15])
