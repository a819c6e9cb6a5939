"""Labels after AFML ch. 2-4: hand-made price paths whose answers are computed by hand."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest

from huracan.labels import (
    average_uniqueness_weights,
    barrier_volatility,
    cusum_filter,
    forward_return_label,
    label_concurrency,
    return_attribution_weights,
    simulate_barrier_exits,
    triple_barrier_labels,
)

TS = pd.date_range("2024-01-01", periods=12, freq="1h", tz="UTC")


def series(values: Sequence[float]) -> pd.Series:
    return pd.Series(values, index=TS[: len(values)], dtype=np.float64)


# ------------------------------------------------------------------ forward return


def test_forward_return_label_and_end_times():
    out = forward_return_label(series([100, 110, 99, 99]), horizon=2)
    assert out["label"].iloc[:2].to_numpy() == pytest.approx([-0.01, -0.1])
    assert out["label"].iloc[2:].isna().all()
    assert out["end_time"].iloc[:2].tolist() == [TS[2], TS[3]]  # bar t+h, read at its close
    assert out["end_time"].iloc[2:].isna().all()
    with pytest.raises(ValueError, match="horizon"):
        forward_return_label(series([100, 101]), horizon=0)
    with pytest.raises(ValueError, match="NaN"):
        forward_return_label(series([100, np.nan, 101]), horizon=1)


# ------------------------------------------------------------------ triple barrier, close only

# vol 0.1, pt = sl = 1: barriers at close_t0 * 1.1 and * 0.9, vertical 3 bars later
PATH = [100, 104, 111, 95, 100, 100]


def test_triple_barrier_close_only_upper_lower_vertical_and_dropped():
    tb = triple_barrier_labels(series(PATH), volatility=0.1, pt_mult=1, sl_mult=1, max_holding=3)
    # t0 = 3, 4, 5: the vertical barrier (t0 + 3) lies beyond the 6 bars -> dropped
    assert tb.index.tolist() == [TS[0], TS[1], TS[2]]
    # t0=0 (110/90): 104, then 111 >= 110 at bar 2
    # t0=1 (114.4/93.6): 111, 95, 100 touch nothing -> vertical at bar 4
    # t0=2 (122.1/99.9): 95 <= 99.9 at bar 3
    assert tb["label"].tolist() == [1, 0, -1]
    assert tb["barrier"].tolist() == ["upper", "vertical", "lower"]
    assert tb["end_time"].tolist() == [TS[2], TS[4], TS[3]]
    assert tb["holding_bars"].tolist() == [2, 3, 1]
    # close-only: the fill is the touching close
    assert tb["ret"].to_numpy() == pytest.approx([0.11, 100 / 104 - 1, 95 / 111 - 1])
    assert not tb["tie"].any()


def test_triple_barrier_vertical_sign_when_not_zero():
    tb = triple_barrier_labels(
        series(PATH), volatility=0.1, pt_mult=1, sl_mult=1, max_holding=3, zero_on_vertical=False
    )
    assert tb["label"].tolist() == [1, -1, -1]  # vertical: sign(100/104 - 1) = -1


def test_triple_barrier_touch_on_the_vertical_bar_beats_the_vertical_barrier():
    tb = triple_barrier_labels(
        series([100, 105, 112, 90]), volatility=0.1, pt_mult=1, sl_mult=1, max_holding=2
    )
    assert tb.loc[TS[0], "barrier"] == "upper"
    assert tb.loc[TS[0], "holding_bars"] == 2


def test_triple_barrier_events_and_volatility_warm_up():
    vol = series([np.nan, 0.1, 0.1, 0.1, 0.1, 0.1])
    tb = triple_barrier_labels(
        series(PATH), events=pd.Index([TS[2], TS[0], TS[1]]), volatility=vol,
        pt_mult=1, sl_mult=1, max_holding=3,
    )
    assert tb.index.tolist() == [TS[1], TS[2]]  # TS[0]: volatility unknown -> dropped
    assert tb["barrier"].tolist() == ["vertical", "lower"]


# ------------------------------------------------------------------ triple barrier, high/low

# vol 0.05, pt 2, sl 1 on an entry at 100: long barriers upper 110 / lower 95
# (short: profit-take lower 90 / stop upper 105)
def hl(rows: list[tuple[float, float, float]]) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(close, high, low) per bar."""
    c, h, lo = zip(*rows, strict=True)
    return series(list(c)), series(list(h)), series(list(lo))


def label_first(rows, **kw) -> pd.Series:
    close, high, low = hl(rows)
    args = {"volatility": 0.05, "pt_mult": 2, "sl_mult": 1, "max_holding": 3} | kw
    tb = triple_barrier_labels(close, high, low, events=pd.Index([TS[0]]), **args)
    return tb.iloc[0]


FLAT = [(100, 100, 100)] * 3


def test_upper_touched_by_the_high_although_the_close_stays_below():
    row = label_first([(100, 100, 100), (101, 103, 99), (104, 111, 102), *FLAT])
    assert (row["label"], row["barrier"], row["end_time"], row["holding_bars"]) == (
        1, "upper", TS[2], 2,
    )
    assert row["ret"] == pytest.approx(0.10)  # filled at the barrier, 110
    assert not row["tie"]


def test_lower_touched_by_the_low_first():
    row = label_first([(100, 100, 100), (99, 101, 94), (120, 121, 119), *FLAT])
    assert (row["label"], row["barrier"], row["end_time"], row["holding_bars"]) == (
        -1, "lower", TS[1], 1,
    )
    assert row["ret"] == pytest.approx(-0.05)  # filled at 95


def test_entry_bar_itself_is_never_scanned():
    # bar 0's own high/low would touch both barriers; touches start at bar 1
    row = label_first([(100, 200, 50), (101, 102, 99), (102, 103, 101), (103, 104, 102)])
    assert row["barrier"] == "vertical"
    assert row["end_time"] == TS[3]
    assert row["ret"] == pytest.approx(0.03)


def test_bar_opening_beyond_the_barrier_fills_at_its_nearest_price():
    row = label_first([(100, 100, 100), (115, 116, 112), *FLAT])
    assert row["barrier"] == "upper"
    assert row["ret"] == pytest.approx(0.12)  # the whole bar is above 110: low 112


def test_tie_in_one_bar_resolves_as_the_stop_loss():
    rows = [(100, 100, 100), (101, 102, 99), (100, 112, 89), *FLAT]
    long_ = label_first(rows)
    assert (long_["label"], long_["barrier"], long_["end_time"]) == (-1, "lower", TS[2])
    assert long_["tie"]
    assert long_["ret"] == pytest.approx(-0.05)
    # short meta-label: profit-take 90 and stop 105 both touched -> stop (upper), the bet lost
    short = label_first(rows, side=-1)
    assert (short["label"], short["barrier"], short["end_time"]) == (0, "upper", TS[2])
    assert short["tie"]
    assert short["ret"] == pytest.approx(-0.05)


# ------------------------------------------------------------------ meta-labels


def test_meta_labels_orient_barriers_by_side():
    close = series([100, 103, 106, 101, 92, 92, 92])
    side = series([1, -1, -1, 0, 1, 1, 1])
    tb = triple_barrier_labels(
        close, volatility=0.05, pt_mult=2, sl_mult=1, max_holding=3, side=side
    )
    # t0=3 has no bet; t0=4.. reach beyond the data
    assert tb.index.tolist() == [TS[0], TS[1], TS[2]]
    # t0=0 long 100 (110/95): 103, 106, 101 -> vertical, +1 % -> the bet paid
    # t0=1 short 103 (stop 108.15, take 92.7): 106, 101, 92 <= 92.7 -> take profit at bar 4
    # t0=2 short 106 (stop 111.3, take 95.4): 101, 92 -> take profit at bar 4
    assert tb["barrier"].tolist() == ["vertical", "lower", "lower"]
    assert tb["label"].tolist() == [1, 1, 1]
    assert tb["end_time"].tolist() == [TS[3], TS[4], TS[4]]
    assert tb["ret"].to_numpy() == pytest.approx([0.01, 1 - 92 / 103, 1 - 92 / 106])
    # a long bet on t0=1 is stopped at 92 (lower = 103 * 0.95 = 97.85): label 0, negative ret
    tb_long = triple_barrier_labels(
        close, volatility=0.05, pt_mult=2, sl_mult=1, max_holding=3, side=1
    )
    assert tb_long.loc[TS[1], "label"] == 0
    assert tb_long.loc[TS[1], "barrier"] == "lower"
    assert tb_long.loc[TS[1], "ret"] == pytest.approx(92 / 103 - 1)
    # a short bet on t0=0 (stop 105, take 90): 103, 106 >= 105 -> stopped at bar 2, label 0
    tb_short = triple_barrier_labels(
        close, volatility=0.05, pt_mult=2, sl_mult=1, max_holding=3, side=-1
    )
    assert tb_short.loc[TS[0], "label"] == 0
    assert tb_short.loc[TS[0], "barrier"] == "upper"
    assert tb_short.loc[TS[0], "ret"] == pytest.approx(-0.06)


def test_triple_barrier_errors():
    close = series(PATH)
    kw: dict[str, Any] = {"volatility": 0.1, "pt_mult": 1.0, "sl_mult": 1.0, "max_holding": 3}
    bads: list[dict[str, Any]] = [{"pt_mult": 0.0}, {"sl_mult": -1.0}, {"max_holding": 0}]
    for bad in bads:
        with pytest.raises(ValueError):
            triple_barrier_labels(close, **(kw | bad))
    with pytest.raises(ValueError, match="NaN"):
        triple_barrier_labels(series([100, np.nan, 101, 102, 103]), **kw)
    with pytest.raises(ValueError, match="misaligned"):
        triple_barrier_labels(close, close.iloc[1:], close.iloc[1:], **kw)
    with pytest.raises(ValueError, match="both"):
        triple_barrier_labels(close, high=close, **kw)
    with pytest.raises(ValueError, match="misaligned"):
        triple_barrier_labels(close, events=pd.Index([TS[11]]), **kw)
    with pytest.raises(ValueError, match="increasing"):
        triple_barrier_labels(close.iloc[::-1], **kw)
    with pytest.raises(ValueError, match="side"):
        triple_barrier_labels(close, side=2, **kw)


def reference_labels(c, h, lo, vol, side, pt, sl, hold):
    """Plain loop over events (the definition, unvectorised)."""
    out = {}
    for i in range(len(c) - hold):
        s = side[i]
        up = c[i] * (1 + (pt if s > 0 else sl) * vol[i])
        dn = c[i] * (1 - (sl if s > 0 else pt) * vol[i])
        res = None
        for j in range(i + 1, i + hold + 1):
            hit_up, hit_dn = h[j] >= up, lo[j] <= dn
            if hit_up and hit_dn:
                res = ("lower" if s > 0 else "upper", j, dn if s > 0 else up, True)
            elif hit_up or hit_dn:
                res = ("upper" if hit_up else "lower", j, up if hit_up else dn, False)
            if res:
                res = (res[0], j, min(max(res[2], lo[j]), h[j]), res[3])
                break
        if res is None:
            res = ("vertical", i + hold, c[i + hold], False)
        out[i] = (res[0], res[1] - i, s * (res[2] / c[i] - 1), res[3])
    return out


def test_vectorised_labels_match_a_plain_loop_on_a_random_walk():
    rng = np.random.default_rng(7)
    n, hold = 400, 6
    idx = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC")
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    h = c * np.exp(np.abs(rng.normal(0, 0.01, n)))
    lo = c * np.exp(-np.abs(rng.normal(0, 0.01, n)))
    vol = np.full(n, 0.02)
    side = rng.choice([-1, 1], n)
    tb = triple_barrier_labels(
        pd.Series(c, idx), pd.Series(h, idx), pd.Series(lo, idx), volatility=0.02,
        pt_mult=1.0, sl_mult=0.7, max_holding=hold, side=pd.Series(side, idx),
    )
    ref = reference_labels(c, h, lo, vol, side, 1.0, 0.7, hold)
    assert len(tb) == len(ref) == n - hold
    for k, (t0, row) in enumerate(tb.iterrows()):
        barrier, bars, ret, tie = ref[k]
        assert t0 == idx[k]
        assert (row["barrier"], row["holding_bars"], row["tie"]) == (barrier, bars, tie)
        assert row["ret"] == pytest.approx(ret)
        assert row["label"] == int(ret > 0)
    assert tb["tie"].any() and (tb["barrier"] == "vertical").any()


def test_barrier_volatility_is_rolling_log_return_std_scaled_to_the_horizon():
    close = series([100, 101, 99, 102, 103])
    v = barrier_volatility(close, window=3, horizon=4)
    r = np.diff(np.log(close.to_numpy()))
    assert v.iloc[:3].isna().all()
    assert v.iloc[3] == pytest.approx(np.std(r[0:3], ddof=1) * 2)
    assert v.iloc[4] == pytest.approx(np.std(r[1:4], ddof=1) * 2)


# ------------------------------------------------------------------ CUSUM

R = [np.nan, 0.02, 0.02, 0.02, -0.01, -0.03, -0.03, 0.01, 0.06]


def test_cusum_events_by_hand():
    r = series(R)
    # S+: .02 .04 .06 > .05 -> event at 3; S-: -.01 -.04 -.07 < -.05 -> 6; S+: .01 .07 -> 8
    assert cusum_filter(r, 0.05, kind="log_return").tolist() == [TS[3], TS[6], TS[8]]
    close = 100 * np.exp(r.fillna(0.0).cumsum())
    assert cusum_filter(close, 0.05).tolist() == [TS[3], TS[6], TS[8]]
    # per-bar threshold: unknown at bars 0-1 (sums held at 0), 0.03 at bar 3 (.04 > .03)
    thr = series([np.nan, np.nan, 0.05, 0.03, 0.05, 0.05, 0.05, 0.05, 0.05])
    assert cusum_filter(r, thr, kind="log_return").tolist() == [TS[3], TS[6], TS[8]]
    # threshold 0.045 from bar 3 on: S+ at bar 3 = .04 (bar 1 ignored) -> no event;
    # bar 4: S+ .03, S- -.01; bar 5 -.04; bar 6 -.07 -> event; bar 8 S+ .07 -> event
    thr2 = series([np.nan, np.nan, 0.045, 0.045, 0.045, 0.045, 0.045, 0.045, 0.045])
    assert cusum_filter(r, thr2, kind="log_return").tolist() == [TS[6], TS[8]]


def test_cusum_is_causal():
    rng = np.random.default_rng(3)
    idx = pd.date_range("2024-01-01", periods=600, freq="1h", tz="UTC")
    close = pd.Series(100 * np.exp(np.cumsum(rng.normal(0, 0.01, 600))), idx)

    def events(c: pd.Series) -> pd.Index:
        return cusum_filter(c, 2 * barrier_volatility(c, 24))

    full = events(close)
    assert len(full) > 20
    for k in (50, 137, 300, 599):
        assert events(close.iloc[:k]).tolist() == [t for t in full if t < idx[k]]


def test_cusum_errors():
    with pytest.raises(ValueError, match="threshold"):
        cusum_filter(series([100, 101, 102]), 0.0)
    with pytest.raises(ValueError, match="NaN"):
        cusum_filter(series([100, np.nan, 102]), 0.01)
    with pytest.raises(ValueError, match="after the first"):
        cusum_filter(series([np.nan, 0.01, np.nan, 0.02]), 0.01, kind="log_return")
    with pytest.raises(ValueError, match="misaligned"):
        cusum_filter(series([100, 101, 102]), series([0.01, 0.01]))


# ------------------------------------------------------------------ uniqueness weights

# 6 bars; A: 0 -> 2, B: 1 -> 3, C: 2 -> 5. Spans (t0, t1]: A {1,2}, B {2,3}, C {3,4,5}
BARS = TS[:6]
EVENTS = pd.Index([TS[0], TS[1], TS[2]])
ENDS = pd.Series([TS[2], TS[3], TS[5]], index=EVENTS)


def test_uniqueness_by_hand():
    assert label_concurrency(EVENTS, ENDS, BARS).tolist() == [0, 1, 2, 2, 1, 1]
    u = average_uniqueness_weights(EVENTS, ENDS, BARS)
    assert u.index.equals(EVENTS)
    # A: (1 + 1/2)/2, B: (1/2 + 1/2)/2, C: (1/2 + 1 + 1)/3
    assert u.to_numpy() == pytest.approx([0.75, 0.5, 5 / 6])
    # AFML's code counts the event bar too: concurrency [1, 2, 3, 2, 1, 1]
    ui = average_uniqueness_weights(EVENTS, ENDS, BARS, include_event_bar=True)
    assert ui.to_numpy() == pytest.approx([11 / 18, 4 / 9, 17 / 24])


def test_uniqueness_matches_brute_force_on_triple_barrier_labels():
    rng = np.random.default_rng(11)
    idx = pd.date_range("2024-01-01", periods=300, freq="1h", tz="UTC")
    close = pd.Series(100 * np.exp(np.cumsum(rng.normal(0, 0.01, 300))), idx)
    tb = triple_barrier_labels(close, volatility=0.015, pt_mult=1, sl_mult=1, max_holding=10)
    u = average_uniqueness_weights(tb.index, tb["end_time"], idx)
    pos0, pos1 = idx.get_indexer(tb.index), idx.get_indexer(tb["end_time"])
    alive = np.zeros((len(tb), len(idx)))
    for k, (a, b) in enumerate(zip(pos0, pos1, strict=True)):
        alive[k, a + 1 : b + 1] = 1
    conc = alive.sum(axis=0)
    brute = [(1 / conc[a + 1 : b + 1]).mean() for a, b in zip(pos0, pos1, strict=True)]
    assert u.to_numpy() == pytest.approx(brute)
    assert ((u > 0) & (u <= 1)).all()


def test_return_attribution_by_hand():
    r = [0.0, 0.01, 0.02, -0.03, 0.01, 0.02]
    close = pd.Series(100 * np.exp(np.cumsum(r)), BARS)
    w = return_attribution_weights(close, EVENTS, ENDS)
    # A |.01/1 + .02/2| = .02, B |.02/2 - .03/2| = .005, C |-.03/2 + .01 + .02| = .015
    assert w.to_numpy() == pytest.approx(np.array([0.02, 0.005, 0.015]) * 3 / 0.04)
    assert w.sum() == pytest.approx(3.0)


def test_uniqueness_errors():
    with pytest.raises(ValueError, match="after its event"):
        average_uniqueness_weights(EVENTS, pd.Series([TS[0], TS[3], TS[5]], EVENTS), BARS)
    with pytest.raises(ValueError, match="bar_index"):
        average_uniqueness_weights(EVENTS, pd.Series([TS[2], TS[3], TS[9]], EVENTS), BARS)
    with pytest.raises(ValueError, match="misaligned"):
        average_uniqueness_weights(EVENTS, ENDS.iloc[:2], BARS)


# ------------------------------------------------------------------ simulate_barrier_exits


def test_simulated_trades_by_hand():
    close = series([100, 105, 111, 108, 100, 96, 95, 97, 98, 99, 100, 101])
    signal = pd.Series(False, index=TS)
    signal.iloc[[0, 1, 2, 5, 6, 9, 10, 11]] = True
    tr = simulate_barrier_exits(close, None, None, signal, 1, 0.1, 1.0, 1.0, 3)
    # 1: in at 100 (110/90): 105, 111 -> upper at bar 2; the signal at bar 1 is ignored
    # 2: the signal on the exit bar 2 is taken: 111 (122.1/99.9): 108, 100, 96 -> lower at bar 5
    # 3: in at bar 5, 96 (105.6/86.4): 95, 97, 98 -> vertical at bar 8; signal 6 ignored
    # 4: in at bar 9, 99: 100, 101 and the data ends -> end_of_data at bar 11; 10, 11 ignored
    assert tr["entry_time"].tolist() == [TS[0], TS[2], TS[5], TS[9]]
    assert tr["exit_time"].tolist() == [TS[2], TS[5], TS[8], TS[11]]
    assert tr["barrier"].tolist() == ["upper", "lower", "vertical", "end_of_data"]
    assert tr["holding_bars"].tolist() == [2, 3, 3, 2]
    assert tr["side"].tolist() == [1, 1, 1, 1]
    assert tr["entry_price"].tolist() == [100, 111, 96, 99]
    assert tr["exit_price"].tolist() == [111, 96, 98, 101]
    assert tr["gross_return"].to_numpy() == pytest.approx(
        [0.11, 96 / 111 - 1, 98 / 96 - 1, 101 / 99 - 1]
    )
    # the same signal given as timestamps
    by_index = simulate_barrier_exits(close, None, None, TS[[0, 1, 2, 5, 6, 9, 10, 11]], 1,
                                      0.1, 1.0, 1.0, 3)
    pd.testing.assert_frame_equal(tr, by_index)


def test_simulated_trades_match_the_labels_with_high_low_and_short_side():
    close, high, low = hl([
        (100, 100, 100), (101, 102, 99), (100, 112, 89),  # tie on bar 2
        (100, 101, 99), (96, 100, 95.5), (97, 98, 96), (97, 98, 96),
    ])
    side = series([-1, -1, 0, -1, 1, 1, 1])
    tr = simulate_barrier_exits(close, high, low, TS[[0, 1, 2, 3]], side, 0.05, 2.0, 1.0, 3)
    # short at 100 (stop 105, take 90): bar 2 touches both -> the stop, filled at 105
    # signal 2 has side 0 (no trade); short at bar 3, 100: low 95.5 > 90 ... -> vertical at bar 6
    assert tr["entry_time"].tolist() == [TS[0], TS[3]]
    assert tr["barrier"].tolist() == ["upper", "vertical"]
    assert tr["tie"].tolist() == [True, False]
    assert tr["exit_price"].tolist() == [105, 97]
    assert tr["gross_return"].to_numpy() == pytest.approx([-0.05, 0.03])
    tb = triple_barrier_labels(close, high, low, events=TS[[0, 3]], volatility=0.05,
                               pt_mult=2.0, sl_mult=1.0, max_holding=3, side=side)
    assert tb["end_time"].tolist() == tr["exit_time"].tolist()
    assert tb["ret"].to_numpy() == pytest.approx(tr["gross_return"].to_numpy())


def test_simulate_errors():
    close = series(PATH)
    with pytest.raises(ValueError, match="boolean"):
        simulate_barrier_exits(close, None, None, close.iloc[:3] > 0, 1, 0.1, 1.0, 1.0, 3)
    with pytest.raises(ValueError, match="max_holding"):
        simulate_barrier_exits(close, None, None, TS[[0]], 1, 0.1, 1.0, 1.0, 0)
