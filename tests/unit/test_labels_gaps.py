"""Labels and their weights on hand-made candles with a data gap: a label whose vertical barrier
falls in the gap or past the data end is dropped and counted (never truncated, never bridged), and
the uniqueness weights count every bar of the time grid (issue 21: ``average_uniqueness_weights``
raised on real gapped data)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from huracan.evaluation.rules import BarrierRule, MetaRule, RuleInput
from huracan.features.build import (
    LABEL,
    LABEL_END,
    FeatureConfig,
    LabelConfig,
    build_features,
)
from huracan.stages import LabelTimes, gap_starts

H = pd.Timedelta(hours=1)
T0 = pd.Timestamp("2024-01-01", tz="UTC")
#: small windows, so that each segment's feature warm-up is a few bars
SMALL = FeatureConfig(return_horizons=[1], volatility_windows=[2], atr_period=2, rsi_period=2,
                      macd_fast=2, macd_slow=3, macd_signal=2, volume_windows=[2],
                      calendar=False)
#: vertical barrier 3 bars after t0; barrier widths = 1 x the 2-bar volatility x sqrt(3)
TB = LabelConfig(kind="triple_barrier", pt_mult=1.0, sl_mult=1.0, max_holding=3, vol_window=2)
SEG_A = range(0, 20)   # bars 0..19, then bars 20..22 missing (a 3-bar gap)
SEG_B = range(23, 40)  # bars 23..39, the end of the data
HIGH_SPIKE = (10, 38)  # bars whose high reaches far above every upper barrier
LOW_SPIKE = (19,)      # a bar whose low reaches far below every lower barrier (just before the gap)


def gapped_candles() -> pd.DataFrame:
    """Closes alternate 100 / 101 (so the barrier width is the same ~2.44 % everywhere), highs
    and lows 0.1 % beyond the bar's body, except the spikes; 3 bars missing after bar 19."""
    bars = [*SEG_A, *SEG_B]
    close = np.array([100.0 if b % 2 == 0 else 101.0 for b in bars])
    open_ = np.array([101.0 if b % 2 == 0 else 100.0 for b in bars])
    high = np.maximum(open_, close) * 1.001
    low = np.minimum(open_, close) * 0.999
    for b in HIGH_SPIKE:
        high[bars.index(b)] = 150.0
    for b in LOW_SPIKE:
        low[bars.index(b)] = 60.0
    volume = np.array([10.0 + (b % 3) for b in bars])
    return pd.DataFrame({"timestamp": [T0 + b * H for b in bars], "open": open_, "high": high,
                         "low": low, "close": close, "volume": volume})


def test_triple_barrier_labels_end_before_the_gap_or_are_dropped_and_counted():
    fs = build_features(gapped_candles(), "1h", SMALL, TB)
    frame = fs.frame
    bar = ((pd.DatetimeIndex(frame.index) - T0) / H).astype(int)
    end = ((pd.DatetimeIndex(frame[LABEL_END]) - T0) / H).astype(int)
    got = {int(b): (int(lab), int(e)) for b, lab, e in zip(bar, frame[LABEL], end, strict=True)}
    first_a, first_b = int(bar[0]), int(bar[bar > 19][0])  # after each segment's warm-up
    assert 0 < first_a <= 6 and 23 < first_b <= 34
    expected: dict[int, tuple[int, int]] = {}
    for t in range(first_a, 17):
        expected[t] = (0, t + 3)          # vertical barrier, inside segment A
    for t in (7, 8, 9):
        expected[t] = (1, 10)             # the high spike of bar 10
    expected[16] = (-1, 19)               # the low spike of bar 19, the last bar before the gap
    for t in range(first_b, 37):
        expected[t] = (0, t + 3)
    for t in (35, 36):
        expected[t] = (1, 38)             # the high spike of bar 38
    assert got == expected
    # bars 17, 18 touched the low spike of bar 19 and bar 37 the high spike of bar 38, but their
    # vertical barriers (20, 21, 40) are not bars of their segment: dropped like 19 and 38, 39
    assert fs.unlabelled == {"gap": 3, "end_of_data": 3, "no_volatility": 0}
    # no label reads across the gap: every end lies in its event's segment
    assert not ((bar <= 19) & (end > 19)).any()


def test_forward_return_label_stops_at_the_gap_too():
    fs = build_features(gapped_candles(), "1h", SMALL)  # forward return over 1 bar
    frame = fs.frame
    bar = ((pd.DatetimeIndex(frame.index) - T0) / H).astype(int)
    assert 19 not in set(bar) and 39 not in set(bar) and 18 in set(bar)
    assert frame.loc[T0 + 18 * H, LABEL] == pytest.approx(101.0 / 100.0 - 1)  # bar 18 -> 19
    assert fs.unlabelled == {"gap": 1, "end_of_data": 1, "no_volatility": 0}
    wide = build_features(gapped_candles(), "1h", FeatureConfig(**{**SMALL.__dict__,
                                                                   "horizon": 4}))
    assert wide.unlabelled == {"gap": 4, "end_of_data": 4, "no_volatility": 0}


def test_uniqueness_weights_by_hand_when_labels_end_on_bars_that_are_not_rows():
    # segment A = bars 0..4, bars 5, 6 missing, segment B = bars 7..10. Rows 3, 4 and 9, 10 have
    # no label of their own (dropped), yet rows 1 and 2 end on bars 4 and 3.
    rows = np.array([0, 1, 2, 7, 8])
    ends = np.array([2, 4, 3, 9, 10])
    ts = pd.DatetimeIndex([T0 + b * H for b in rows]).asi8
    end = pd.DatetimeIndex([T0 + b * H for b in ends]).asi8
    # spans (t0, t1]: r0 {1, 2}, r1 {2, 3, 4}, r2 {3}, r7 {8, 9}, r8 {9, 10}
    # concurrency: bar1 1, bar2 2, bar3 2, bar4 1, bar8 1, bar9 2, bar10 1 (bars 5, 6: none)
    # uniqueness: r0 (1 + 1/2)/2, r1 (1/2 + 1/2 + 1)/3, r2 1/2, r7 (1 + 1/2)/2, r8 (1/2 + 1)/2
    lt = LabelTimes(ts, end, uniqueness=True, bar_ns=H.value)
    np.testing.assert_allclose(lt.weights(range(0, 5)), [0.75, 2 / 3, 0.5, 0.75, 0.75])
    # a fold's train rows alone: concurrency among themselves only (r7 and r8 not counted)
    np.testing.assert_allclose(lt.weights(range(0, 3)), [0.75, 2 / 3, 0.5])
    # without the grid, bars 3 and 4 are unknown: a clear error instead of a wrong weight
    with pytest.raises(ValueError, match="bar of bar_index"):
        LabelTimes(ts, end, uniqueness=True).weights(range(0, 5))


def test_feature_set_weights_equal_a_brute_force_count_over_the_grid():
    fs = build_features(gapped_candles(), "1h", SMALL, TB)
    lt = LabelTimes.of(fs, uniqueness=True)
    assert lt.bar_ns == H.value
    w = lt.weights(range(0, len(fs.frame)))
    start = ((pd.DatetimeIndex(fs.frame.index) - T0) / H).astype(int).to_numpy()
    stop = ((pd.DatetimeIndex(fs.frame[LABEL_END]) - T0) / H).astype(int).to_numpy()
    alive = np.zeros(41)
    for a, b in zip(start, stop, strict=True):
        alive[a + 1 : b + 1] += 1
    brute = [np.mean(1.0 / alive[a + 1 : b + 1]) for a, b in zip(start, stop, strict=True)]
    np.testing.assert_allclose(w, brute)
    assert alive[20:23].sum() == 0  # no label is alive inside the gap


def _window(candles: pd.DataFrame, forecast: np.ndarray) -> RuleInput:
    ts = pd.DatetimeIndex(candles["timestamp"])
    close = candles["close"].to_numpy(np.float64)
    nxt = np.append(close[1:] / close[:-1] - 1.0, 0.0)
    return RuleInput(timestamps=ts, forecast=forecast, next_return=nxt, label=nxt, close=close,
                     high=candles["high"].to_numpy(np.float64),
                     low=candles["low"].to_numpy(np.float64), starts=gap_starts(ts, "1h"),
                     features=np.zeros((len(ts), 1)))


def test_barrier_rule_and_meta_labels_never_hold_or_label_across_the_gap():
    candles = gapped_candles()
    bars = [*SEG_A, *SEG_B]
    signal = np.ones(len(bars))  # a long signal on every bar
    w = _window(candles, signal)
    rp = BarrierRule(threshold=0.5, pt_mult=1.0, sl_mult=1.0, max_holding=3,
                     vol_window=2).positions(w)
    # entries once the 2-bar volatility is known (bar 2, bar 25), each held to its time barrier
    # 3 bars later and flat over the exit bar; a signal at 18 or 37 would need bar 21 (in the gap)
    # or 40 (past the end): not taken, so nothing is held across the gap or past the end
    held = {*range(2, 5), *range(6, 9), *range(10, 13), *range(14, 17), *range(25, 28),
            *range(29, 32), *range(33, 36)}
    assert rp.positions.tolist() == [1.0 if b in held else 0.0 for b in bars]
    assert [b for b, r in zip(bars, rp.exit_reasons, strict=True) if r] == [4, 8, 12, 16, 27, 31,
                                                                          35]
    meta = MetaRule(max_holding=3, vol_window=2).meta_labels(w, signal.astype(int), cost=0.0)
    got = [(bars[i], bars[int(e)], b) for i, e, b in
           zip(meta.index, meta["end_time"], meta["barrier"], strict=True)]
    def vertical(first: int, stop: int) -> list[tuple[int, int, str]]:
        return [(t, t + 3, "vertical") for t in range(first, stop)]

    expected = [*vertical(2, 7), (7, 10, "upper"), (8, 10, "upper"), (9, 10, "upper"),
                *vertical(10, 16), (16, 19, "lower"), *vertical(25, 35), (35, 38, "upper"),
                (36, 38, "upper")]
    assert got == expected  # events 17-19 and 37-39 dropped: their time barrier is not a bar
