"""Causality of the features, gap handling, label definition (on real candles)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from huracan.features import technical as ta
from huracan.features.build import LABEL, NEXT_RETURN, FeatureConfig, build_features


def test_features_on_a_prefix_equal_the_prefix_of_features(sample_1h):
    """Row t's features use data <= t: computing on the first k candles changes nothing."""
    cfg = FeatureConfig()
    full = build_features(sample_1h, "1h", cfg).frame
    for k in (400, 1500, 3000):
        part = build_features(sample_1h.iloc[:k], "1h", cfg).frame
        feats = [c for c in part.columns if c not in (LABEL, NEXT_RETURN)]
        common = part.index.intersection(full.index)
        assert len(common) == len(part) > 0
        pd.testing.assert_frame_equal(part.loc[common, feats], full.loc[common, feats])


def test_label_is_the_forward_return_over_horizon(sample_1h):
    fs = build_features(sample_1h, "1h", FeatureConfig(horizon=3))
    close = sample_1h.set_index("timestamp")["close"]
    t = fs.frame.index[100]
    t3 = t + pd.Timedelta(hours=3)
    assert fs.frame.loc[t, LABEL] == pytest.approx(close[t3] / close[t] - 1)
    assert fs.frame.loc[t, NEXT_RETURN] == pytest.approx(
        close[t + pd.Timedelta(hours=1)] / close[t] - 1)


def test_nothing_is_computed_across_a_gap(candles_1h):
    """The real 34-hour hole (33 missing bars) of 2018-02-08/09: no label spans it and the
    indicators restart after it."""
    df = candles_1h[(candles_1h.timestamp >= "2018-01-20") & (candles_1h.timestamp < "2018-03-20")]
    cfg = FeatureConfig()
    fs = build_features(df.reset_index(drop=True), "1h", cfg)
    ts = pd.Series(df.timestamp.to_numpy())
    gap_at = ts.diff().idxmax()
    gap_start, gap_end = ts[gap_at - 1], ts[gap_at]  # last bar before, first bar after
    assert gap_end - gap_start == pd.Timedelta(hours=34)  # 33 bars missing
    idx = fs.frame.index
    # the last usable row before the gap has its label inside the data (t + 1h <= gap_start)
    before = idx[idx <= gap_start]
    assert before.max() == gap_start - pd.Timedelta(hours=1)
    # after the gap, the longest window (168 bars of volume z-score) must refill first
    after = idx[idx >= gap_end]
    assert after.min() == gap_end + pd.Timedelta(hours=max(cfg.volume_windows) - 1)


def test_rsi_and_atr_known_values():
    close = pd.Series([1.0, 2.0, 3.0, 2.0, 3.0])
    # Wilder smoothing alpha = 1/2 (period 2): gains 1,1,0,1; losses 0,0,1,0
    # at t=2: avg gain 1, avg loss 0 -> 100; t=3: gain 0.5, loss 0.5 -> 50
    r = ta.rsi(close, period=2)
    assert np.isnan(r.iloc[1])  # warm-up: min_periods = period on the diff
    assert r.iloc[2] == pytest.approx(100.0)
    assert r.iloc[3] == pytest.approx(50.0)
    # t=4: gain 0.75, loss 0.25 -> RS 3 -> 75
    assert r.iloc[4] == pytest.approx(75.0)


def test_calendar_features_are_on_the_unit_circle():
    idx = pd.date_range("2024-01-01", periods=48, freq="1h", tz="UTC")
    cal = ta.calendar(idx)
    np.testing.assert_allclose(cal.hour_sin**2 + cal.hour_cos**2, 1.0)
    assert cal.loc[idx[6], "hour_sin"] == pytest.approx(1.0)  # 06:00 is a quarter turn


def test_horizon_must_be_positive():
    with pytest.raises(ValueError, match="horizon"):
        FeatureConfig(horizon=0)


def test_the_frame_carries_next_open_and_volume_never_as_model_inputs(candles_1h):
    """next_open (the open of bar t+1, where next_open fills) and bar_volume ride beside the
    features for the execution model; before the 34-hour hole the last row has no next bar, so it
    has no next_open either and is dropped with its unknown next_return."""
    from huracan.features.build import BAR_VOLUME, NEXT_OPEN, NON_FEATURES

    df = candles_1h[(candles_1h.timestamp >= "2018-01-20") & (candles_1h.timestamp < "2018-03-20")]
    fs = build_features(df.reset_index(drop=True), "1h", FeatureConfig())
    assert {NEXT_OPEN, BAR_VOLUME} <= set(NON_FEATURES)
    assert NEXT_OPEN not in fs.feature_names and BAR_VOLUME not in fs.feature_names
    bars = df.set_index("timestamp")
    t = fs.frame.index[50]
    assert fs.frame.loc[t, NEXT_OPEN] == bars.loc[t + pd.Timedelta(hours=1), "open"]
    assert fs.frame.loc[t, BAR_VOLUME] == bars.loc[t, "volume"]
    ts = pd.Series(df.timestamp.to_numpy())
    last_bar = ts[ts.diff().idxmax() - 1]  # the last bar before the hole
    before_gap = last_bar - pd.Timedelta(hours=1)
    assert fs.frame.loc[before_gap, NEXT_OPEN] == bars.loc[before_gap + pd.Timedelta(hours=1),
                                                           "open"]
    assert before_gap + pd.Timedelta(hours=1) not in fs.frame.index
    served = build_features(df.reset_index(drop=True), "1h", FeatureConfig(),
                            keep_unlabelled=True)
    assert NEXT_OPEN not in served.feature_names and np.isnan(served.frame[NEXT_OPEN].iloc[-1])


def test_label_price_open_is_open_to_open_from_the_next_bar_and_reaches_one_bar_more(sample_1h):
    from huracan.features.build import LABEL_END, LabelConfig
    from huracan.settings import ForwardSplitter

    fs = build_features(sample_1h, "1h", FeatureConfig(horizon=3), LabelConfig(price="open"))
    opens = sample_1h.set_index("timestamp")["open"]
    t = fs.frame.index[100]
    h = pd.Timedelta(hours=1)
    assert fs.frame.loc[t, LABEL] == pytest.approx(opens[t + 4 * h] / opens[t + h] - 1)
    assert fs.frame.loc[t, LABEL_END] == t + 4 * h
    assert fs.horizon == 4  # the label reads the open 4 bars ahead: the embargo follows it
    fold = ForwardSplitter().folds(pd.DatetimeIndex(fs.frame.index), "1h", fs.horizon)[0]
    assert fold.embargo == 4
    # the last usable row's label reads the last bar's open
    last_bar = sample_1h["timestamp"].iloc[-1]
    assert fs.frame.index[-1] == last_bar - 4 * h
    close = build_features(sample_1h, "1h", FeatureConfig(horizon=3))
    assert close.horizon == 3 and close.frame.index[-1] == last_bar - 3 * h
    with pytest.raises(ValueError, match=r"label\.price must be close or open"):
        LabelConfig(price="mid")
    with pytest.raises(ValueError, match=r"label\.price=open applies to label\.kind="):
        LabelConfig(kind="triple_barrier", price="open")
