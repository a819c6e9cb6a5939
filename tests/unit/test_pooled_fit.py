"""Pooled folds and the pooled fold loop (:mod:`huracan.pooled`).

Three synthetic symbols on one hourly grid with different calendars (one starts late, one has a
long outage and ends early), so a fold cut per symbol would differ from the union's. The fit is
instrumented with a recording forecaster whose label IS the row's open time (hours): what it
records is exactly which rows each pooled fit was given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
from pooled_synthetic import HORIZON, START, SYMBOLS, calendars, hours, synthetic

from huracan.features.build import FeatureSet
from huracan.models.base import Forecaster
from huracan.models.lightgbm import LightGBMForecaster
from huracan.pooled import PooledOutcome, fit_predict_pooled, pooled_folds
from huracan.splits import WalkForwardSplitter
from huracan.stages import LabelTimes, fitted_fold, gap_starts

SPLIT = WalkForwardSplitter(train_bars=400, val_bars=80, step_bars=150, embargo=HORIZON)


FITS: list[dict[str, Any]] = []


class Recorder(Forecaster):
    """Records the labels (= row times), start flags and symbol codes it is fitted on."""

    model_type = "recorder"
    accepts_missing = True
    supports_categorical = True
    categorical: ClassVar[bool] = True

    def __init__(self, lookback: int = 1) -> None:
        self.lookback = lookback

    def _fit(self, X, y, X_val, y_val, X_val_context, *, starts=None, starts_val=None,
             sample_weight=None) -> None:
        FITS.append({"train": y.copy(), "val": None if y_val is None else y_val.copy(),
                     "starts": starts, "starts_val": starts_val, "code": X[:, -1].copy(),
                     "X": X.copy(), "weight": sample_weight, "context": X_val_context})

    def _predict(self, X, context) -> np.ndarray:
        return np.zeros(len(X))

    def _save_state(self, path: Path) -> None:
        pass

    def _load_state(self, path: Path) -> None:
        pass


@pytest.fixture(params=[True, False], ids=["purged", "unpurged"])
def recorded(request) -> tuple[dict[str, FeatureSet], list, PooledOutcome]:
    FITS.clear()
    sets = synthetic("time")
    folds = pooled_folds(SPLIT, sets, "1h", HORIZON)
    labels = {s: LabelTimes.of(fs) for s, fs in sets.items()} if request.param else None
    out = fit_predict_pooled(Recorder(), sets, folds, parts=("val", "test"), timeframe="1h",
                             labels=labels)
    return sets, folds, out


def test_folds_are_cut_once_on_the_union_of_bar_times():
    sets = synthetic("time")
    union = calendars()["BTC/USDT"]  # BTC covers every bar of the others
    want = SPLIT.folds(union, "1h", HORIZON)
    folds = pooled_folds(SPLIT, sets, "1h", HORIZON)
    assert len(folds) == len(want) >= 5
    for f, fmap in zip(want, folds, strict=True):
        for sym, fold in fmap.items():
            ts = pd.DatetimeIndex(sets[sym].frame.index)
            assert fold.index == f.index
            for part in ("train", "val", "test"):
                u, r = getattr(f, part), getattr(fold, part)
                mine = ts[r.start : r.stop]
                lo, hi = union[u.start], union[u.stop - 1]
                assert ((mine >= lo) & (mine <= hi)).all()
                assert ((ts >= lo) & (ts <= hi)).sum() == len(r)  # every row of the span
    # ETH (listed late) has no train row in the first fold; LTC has no OOS row at the end
    assert len(folds[0]["ETH/USDT"].train) < len(folds[0]["BTC/USDT"].train)
    assert len(folds[-1]["LTC/USDT"].test) == 0


def test_a_pooled_fold_never_trains_on_any_symbols_rows_after_its_train_end(recorded):
    """REQUIRED (issue 25): per fold, the latest row (any symbol) given to the fit as train is
    at most the fold's train end, validation rows come before every symbol's first OOS bar, and
    no train label reaches the first validation bar (purged across symbols)."""
    sets, folds, out = recorded
    assert len(FITS) == len(folds) == len(out.train_end)
    union = calendars()["BTC/USDT"]
    for k, (fit, fmap) in enumerate(zip(FITS, folds, strict=True)):
        u = SPLIT.folds(union, "1h", HORIZON)[k]
        first_val, first_oos = hours(union[[u.val.start]])[0], hours(union[[u.test.start]])[0]
        train_end = hours(pd.DatetimeIndex([out.train_end[k]]))[0]
        assert fit["train"].max() <= train_end < first_val
        assert fit["train"].max() + HORIZON < first_val  # train labels end before val starts
        assert fit["val"].max() + HORIZON < first_oos
        for sym, fold in fmap.items():
            if len(fold.test):
                first_sym_oos = hours(sets[sym].frame.index[[fold.test.start]])[0]
                assert fit["train"].max() < first_sym_oos and fit["val"].max() < first_sym_oos
        # every symbol with rows in the train span is in the fit
        codes = {int(c) for c in fit["code"]}
        assert codes == {i for i, s in enumerate(SYMBOLS) if len(fmap[s].train)}


def test_blocks_start_afresh_per_symbol(recorded):
    _, folds, _ = recorded
    fit, fmap = FITS[-1], folds[-1]
    sizes = [len(fmap[s].train) for s in SYMBOLS if len(fmap[s].train)]
    firsts = np.cumsum([0, *sizes[:-1]])
    assert fit["starts"][firsts].all()
    assert not np.diff(fit["code"])[fit["starts"][1:] == 0].any()  # a code changes at a start only


def test_outcomes_are_per_symbol_and_index_its_own_rows(recorded):
    sets, folds, out = recorded
    assert set(out.outcomes) == set(SYMBOLS)
    # LTC is not scored in the last fold: its outcomes stop earlier and keep no model
    assert len(out.outcomes["LTC/USDT"]) < len(folds)
    last = out.outcomes["BTC/USDT"][-1]
    assert last.fold.index == folds[-1]["BTC/USDT"].index
    assert last.model is not None and last.scaler is not None
    assert last.model.feature_names_ == ["x0", "x1", "x2"]
    for sym, outcomes in out.outcomes.items():
        n = len(sets[sym].frame)
        for o in outcomes:
            assert len(o.predictions["test"]) == len(o.fold.test) > 0
            assert o.fold.test.stop <= n
    ff = fitted_fold(sets["ETH/USDT"], out.outcomes["ETH/USDT"][-1], "1h")
    assert ff.X.shape == (len(sets["ETH/USDT"].frame), 3)


def test_per_symbol_scalers_see_train_rows_only():
    """Each symbol's scaler is fitted on that symbol's train rows of the fold: poisoning every
    other row (val, test, later) changes nothing."""
    sets = synthetic("planted")
    folds = pooled_folds(SPLIT, sets, "1h", HORIZON)
    out = fit_predict_pooled(Recorder(), sets, folds, timeframe="1h")
    last = folds[-1]
    poisoned = {}
    for sym, fs in sets.items():
        frame = fs.frame.copy()
        tr = last[sym].train
        keep = np.zeros(len(frame), dtype=bool)
        keep[tr.start : tr.stop] = True
        frame.loc[~keep, ["x0", "x1", "x2"]] = 1e6
        poisoned[sym] = FeatureSet(frame, fs.feature_names, fs.horizon, timeframe="1h")
        want = fs.X[tr.start : tr.stop].astype(np.float64).mean(axis=0)
        np.testing.assert_allclose(out.model.scaler_for(sym).mean_, want, rtol=1e-9)
        np.testing.assert_allclose(out.model.scaler_for(sym).scale_,
                                   fs.X[tr.start : tr.stop].astype(np.float64).std(axis=0),
                                   rtol=1e-6)
    again = fit_predict_pooled(Recorder(), poisoned, [last], timeframe="1h")
    np.testing.assert_allclose(again.model.means_, out.model.means_, rtol=1e-12)
    np.testing.assert_allclose(again.model.scales_, out.model.scales_, rtol=1e-12)
    assert len({tuple(np.round(m, 3)) for m in out.model.means_}) == 3  # one level per symbol


def test_planted_per_symbol_effect_is_learnt_oos():
    """ETH's label has the opposite sign: the pooled trees (symbol categorical) forecast every
    symbol's OOS rows with the right sign."""
    sets = synthetic("planted")
    folds = pooled_folds(SPLIT, sets, "1h", HORIZON)
    proto = LightGBMForecaster(n_estimators=30, learning_rate=0.2, num_leaves=7,
                               min_child_samples=20, n_jobs=1, log_period=0,
                               objective="regression", early_stopping_rounds=10)
    out = fit_predict_pooled(proto, sets, folds, timeframe="1h",
                             labels={s: LabelTimes.of(fs) for s, fs in sets.items()})
    for sym, outcomes in out.outcomes.items():
        pred = np.concatenate([o.predictions["test"] for o in outcomes])
        y = np.concatenate([sets[sym].y[o.fold.test.start : o.fold.test.stop]
                            for o in outcomes])
        assert np.corrcoef(pred, y)[0, 1] > 0.6, sym
    assert out.model.base_.categorical_features_ == ("symbol",)


def test_sequence_blocks_never_cross_symbols_or_gaps():
    """A sequence model's stacked train rows start afresh at each symbol's block AND after each
    symbol's own data gaps; the validation context is the first val block's own rows."""
    FITS.clear()
    sets = synthetic("time")
    folds = pooled_folds(SPLIT, sets, "1h", HORIZON)
    fit_predict_pooled(Recorder(lookback=6), sets, folds[3:4], parts=("val", "test"),
                       timeframe="1h")
    fit, fmap = FITS[-1], folds[3]
    t = fit["train"]
    # a start wherever the previous row is not the previous bar of the same symbol
    same_run = (np.diff(t) == 1) & (np.diff(fit["code"]) == 0)
    np.testing.assert_array_equal(fit["starts"][1:], ~same_run)
    assert fit["starts"][0]
    ltc = sets["LTC/USDT"]
    gaps = gap_starts(pd.DatetimeIndex(ltc.frame.index), "1h")
    assert gaps[fmap["LTC/USDT"].train.start:fmap["LTC/USDT"].train.stop][1:].any()  # gap inside
    assert fit["context"] is not None and len(fit["context"]) == 5


def test_labels_must_cover_every_symbol_and_features_must_match():
    sets = synthetic("time")
    folds = pooled_folds(SPLIT, sets, "1h", HORIZON)
    with pytest.raises(ValueError, match="labels missing"):
        fit_predict_pooled(Recorder(), sets, folds, labels={"BTC/USDT": LabelTimes.of(
            sets["BTC/USDT"])})
    other = dict(sets)
    fs = sets["ETH/USDT"]
    other["ETH/USDT"] = FeatureSet(fs.frame.rename(columns={"x2": "z"}), ["x0", "x1", "z"],
                                   fs.horizon, timeframe="1h")
    with pytest.raises(ValueError, match="feature names differ"):
        fit_predict_pooled(Recorder(), other, folds)


def test_purge_at_the_pooled_boundary_not_the_symbols_own():
    """A symbol whose own first validation row comes late (an outage) is purged at the pooled
    fold's first validation bar: its train labels never reach a bar another symbol validates on."""
    from huracan.splits import Fold, purge

    ts = pd.date_range(START, periods=20, freq="1h")
    end = ts + pd.Timedelta("3h")
    fold = Fold(train=range(0, 10), val=range(10, 15), test=range(15, 20), embargo=3)
    assert purge(fold, ts.asi8, end.asi8).train == range(0, 7)
    early = int(ts[8].value)  # another symbol's validation starts two bars earlier
    assert purge(fold, ts.asi8, end.asi8, val_time=early).train == range(0, 5)
    assert purge(fold, ts.asi8, end.asi8, test_time=int(ts[13].value)).val == range(10, 10)


@pytest.mark.slow  # loky workers start in about 10 s
def test_parallel_folds_equal_the_sequential_run():
    sets = synthetic("planted")
    folds = pooled_folds(SPLIT, sets, "1h", HORIZON)[-3:]
    proto = LightGBMForecaster(n_estimators=20, num_leaves=7, min_child_samples=20, n_jobs=1,
                               log_period=0)
    seq = fit_predict_pooled(proto, sets, folds, timeframe="1h")
    par = fit_predict_pooled(proto, sets, folds, timeframe="1h", n_jobs=2)
    assert par.train_end == seq.train_end and len(par.fit_seconds) == 3
    for sym in SYMBOLS:
        assert [o.fold for o in par.outcomes[sym]] == [o.fold for o in seq.outcomes[sym]]
        for a, b in zip(par.outcomes[sym], seq.outcomes[sym], strict=True):
            np.testing.assert_array_equal(a.predictions["test"], b.predictions["test"])
    assert par.outcomes["BTC/USDT"][-1].model is not None
    assert par.outcomes["BTC/USDT"][0].model is None


def test_uniqueness_weights_per_symbol_reach_the_fit():
    FITS.clear()
    sets = synthetic("time")
    folds = pooled_folds(SPLIT, sets, "1h", HORIZON)[-2:-1]
    labels = {s: LabelTimes.of(fs, uniqueness=True) for s, fs in sets.items()}
    fit_predict_pooled(Recorder(), sets, folds, labels=labels)
    fit, fmap = FITS[-1], folds[0]
    w = fit["weight"]
    assert w is not None and len(w) == len(fit["train"])
    n = 0
    for sym in SYMBOLS:  # each symbol's block carries its own uniqueness weights
        r = fmap[sym].train
        want = labels[sym].weights(range(r.start, r.start + len(r)))
        if len(r):
            np.testing.assert_allclose(w[n : n + len(r)], want)
        n += len(r)
    assert (w < 1).any()  # overlapping 2-bar labels: uniqueness below 1


def test_pooled_walk_forward_on_real_btc_eth_ltc_evaluates_and_explains_per_symbol():
    """Real 1h candles with the exchange's gaps (BTC/ETH/LTC 2023-01 .. 2023-08): the pooled
    folds share their time boundaries across symbols, each symbol's outcomes go through the
    single-symbol evaluator and SHAP unchanged."""
    from huracan.data.ohlcv import load_ohlcv
    from huracan.evaluation.backtest import BacktestConfig
    from huracan.features.build import FeatureConfig, build_features
    from huracan.stages import evaluate_walk_forward, explain

    root = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ohlcv"
    sets = {}
    for pair in ("BTC", "ETH", "LTC"):
        path = root / f"binance-spot_{pair}USDT_1h_20180101-20241231.parquet"
        if not path.exists():
            pytest.skip(f"{path} not found (../shared/data beside the checkout)")
        candles, _ = load_ohlcv(path, "1h", symbol=f"{pair}/USDT")
        candles = candles[(candles["timestamp"] >= "2023-01-01")
                          & (candles["timestamp"] < "2023-09-01")].reset_index(drop=True)
        sets[f"{pair}/USDT"] = build_features(candles, "1h", FeatureConfig())
    split = WalkForwardSplitter(train_bars="90d", val_bars="15d", step_bars="45d")
    folds = pooled_folds(split, sets, "1h", 1)
    proto = LightGBMForecaster(n_estimators=30, n_jobs=1, log_period=0)
    out = fit_predict_pooled(proto, sets, folds, parts=("val", "test"), timeframe="1h",
                             labels={s: LabelTimes.of(fs) for s, fs in sets.items()})
    for k, fmap in enumerate(folds):
        oos = [sets[s].frame.index[f.test.start] for s, f in fmap.items() if len(f.test)]
        assert out.train_end[k] < min(oos)
        assert len({sets[s].frame.index[f.test.start] for s, f in fmap.items()}) == 1
    for sym, fs in sets.items():
        ev = evaluate_walk_forward(fs, out.outcomes[sym], BacktestConfig(), "1h", sym)
        assert ev.metrics["oos_n_folds"] == len(folds)
        assert np.isfinite(ev.metrics["oos_sharpe"]) and np.isfinite(ev.metrics["oos_ic"])
        shap = explain(fitted_fold(fs, out.outcomes[sym][-1], "1h"), 30, "test")
        assert list(shap.importance["feature"].sort_values()) == sorted(fs.feature_names)
        assert shap.values.shape == (30, len(fs.feature_names))


def test_forward_split_is_cut_on_the_union_too():
    from huracan.splits import ForwardSplitter

    sets = synthetic("time")
    (fmap,) = pooled_folds(ForwardSplitter(), sets, "1h", HORIZON)
    union = calendars()["BTC/USDT"]
    (u,) = ForwardSplitter().folds(union, "1h", HORIZON)
    assert fmap["BTC/USDT"] == u
    for sym, fold in fmap.items():
        idx = sets[sym].frame.index
        assert idx[fold.train.stop - 1] <= union[u.train.stop - 1] < idx[fold.val.start]
        assert idx[fold.val.stop - 1] <= union[u.val.stop - 1]
    assert 0 < len(fmap["LTC/USDT"].test) < len(fmap["BTC/USDT"].test)  # delisted early
    out = fit_predict_pooled(Recorder(), sets, [fmap], parts=("val", "test"))
    assert all(len(out.outcomes[s]) == 1 for s in SYMBOLS)
    assert out.outcomes["LTC/USDT"][0].model.feature_names_ == ["x0", "x1", "x2"]


def test_a_symbol_listed_after_a_folds_train_window_is_not_scored_in_it(caplog):
    """ETH listed inside fold 1's validation window (fold 0's OOS step): folds 0 and 1 have no
    ETH train row, so ETH's OOS rows there are not forecast (and the log says so); from fold 2
    on ETH is scored. LTC's outage covers fold 2's validation window: not scored there."""
    sets = synthetic("time")
    fs = sets["ETH/USDT"]
    late = fs.frame.iloc[270:]  # grid row 500: inside fold 1's validation bars
    sets["ETH/USDT"] = FeatureSet(late, fs.feature_names, fs.horizon, timeframe="1h")
    folds = pooled_folds(SPLIT, sets, "1h", HORIZON)
    assert len(folds[1]["ETH/USDT"].train) == 0 and len(folds[1]["ETH/USDT"].test) > 0
    with caplog.at_level("WARNING", logger="huracan.pooled.fit"):
        out = fit_predict_pooled(Recorder(), sets, folds, parts=("val", "test"))
    assert out.outcomes["ETH/USDT"][0].fold.index == 2
    assert "ETH/USDT: no train/val rows in pooled fold 0: its 52 OOS rows" in caplog.text
    assert "ETH/USDT: no train rows in pooled fold 1: its 150 OOS rows" in caplog.text
    assert "LTC/USDT: no val rows in pooled fold 2" in caplog.text
    assert 2 not in [o.fold.index for o in out.outcomes["LTC/USDT"]]
