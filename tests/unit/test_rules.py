"""Trading rules on hand-made bars: the barrier rule's trades, thresholds chosen on validation
only, min holding, meta-labels trained on validation signals only, exit reasons in the trades, and
purging by label end times."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from huracan.evaluation.backtest import BacktestConfig
from huracan.evaluation.execution import execute, market_bars, round_trip_cost
from huracan.evaluation.rules import (
    BarrierRule,
    MetaRule,
    RuleInput,
    ThresholdRule,
    make_rule,
)
from huracan.splits import Fold, purge

BT = BacktestConfig(threshold=0.0, fee=0.001, half_spread=0.0, slippage_bps=0.0,
                    borrow_rate=0.0)


def _window(close, forecast, high=None, low=None, features=None):
    """Hand-made bars; each bar opens at the previous close, so the next-open fill is the
    close's price and the fee is the only cost (numbers by hand)."""
    close = np.asarray(close, dtype=np.float64)
    nxt = np.append(close[1:] / close[:-1] - 1.0, 0.0)
    ts = pd.date_range("2024-01-01", periods=len(close), freq="1h", tz="UTC")
    bars = market_bars(pd.DataFrame({"bar_close": close, "next_open": close, "next_return": nxt},
                                    index=ts), BT, 8760)
    return RuleInput(timestamps=ts,
                     forecast=np.asarray(forecast, dtype=np.float64), next_return=nxt,
                     label=nxt, close=close,
                     high=None if high is None else np.asarray(high, dtype=np.float64),
                     low=None if low is None else np.asarray(low, dtype=np.float64),
                     features=features, bars=bars)


def test_barrier_rule_trades_a_hand_computed_sequence():
    # alternating +-1 % moves set the volatility (3-bar std of log returns x sqrt(3) ~ 2 %), then
    # the path after each entry hits the upper barrier, the lower one, and the time barrier
    close = [100, 101, 100, 101, 100, 103, 102, 103, 102, 101, 99, 100, 101, 100, 100.5, 100.2,
             100.1, 100.0]
    forecast = [0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, -1, 0, 0, 0, 0]
    w = _window(close, forecast)
    vol = pd.Series(np.log(close)).diff().rolling(3).std() * np.sqrt(3)
    assert 100 * (1 + vol[4]) <= 103                 # long at 4: bar 5 closes above the top
    assert 101 > 102 * (1 - vol[8]) >= 99            # long at 8: bar 10 (not 9) breaks the floor
    assert 100 * (1 - vol[13]) > 98 and 100 * (1 + vol[13]) > 100.5  # short at 13: no touch
    rp = BarrierRule(threshold=0.5, pt_mult=1.0, sl_mult=1.0, max_holding=3,
                     vol_window=3).positions(w)
    expected = np.zeros(len(close))
    expected[4] = 1.0          # held over bar 4 -> 5, closed at bar 5's close
    expected[8:10] = 1.0       # held over bars 8 -> 10
    expected[13:16] = -1.0     # held 3 bars, closed at bar 16's close
    np.testing.assert_array_equal(rp.positions, expected)
    assert (rp.exit_reasons[4], rp.exit_reasons[9], rp.exit_reasons[15]) == \
        ("upper", "lower", "time")
    assert w.bars is not None
    res = execute(rp.positions, w.bars, 8760, predictions=w.forecast, labels=w.label,
                  exit_reasons=rp.exit_reasons)
    assert res.trades["exit_reason"].tolist() == ["upper", "lower", "time"]
    assert res.trades["bars"].tolist() == [1, 2, 3]
    # each trade's return: the held bar's return less the entry fee, then the exit fee
    r = np.asarray(close[1:]) / np.asarray(close[:-1]) - 1
    first = (1 + r[4] - BT.fee) * (1 - BT.fee) - 1
    assert res.trades["return"].iloc[0] == pytest.approx(first)


def test_threshold_chosen_on_validation_and_held_at_least_min_holding():
    rng = np.random.default_rng(0)
    n = 400
    close = 100 * np.cumprod(1 + rng.normal(0, 0.01, n))
    signal = np.sign(np.append(close[1:] / close[:-1] - 1, 0.0)) * rng.uniform(0.5, 3.0, n)
    val = _window(close, signal)  # a forecast that knows the next bar: large thresholds win
    rule = ThresholdRule(grid=(0.1, 1.0, 2.5), min_trades=5).fit(val, BT, 8760)
    assert rule.chosen_ in (0.1, 1.0, 2.5) and rule.fit_report_["chosen_on"] == "validation"
    assert [g[0] for g in rule.fit_report_["grid"]] == [0.1, 1.0, 2.5]
    best = max(rule.fit_report_["grid"], key=lambda g: g[1] if g[2] >= 5 else -np.inf)
    assert rule.chosen_ == best[0]
    held = ThresholdRule(threshold=0.0, min_holding=3).positions(
        _window(close[:8], [1, -1, -1, 1, 1, -1, 0, 0]))
    # a new position is held 3 bars before it may change; then it follows the signal
    assert held.positions.tolist() == [1, 1, 1, 1, 1, -1, -1, -1]


def test_threshold_choice_never_reads_test_rows():
    from huracan.features.build import FeatureConfig, build_features
    from huracan.splits import forward_split
    from huracan.stages import FoldOutcome, evaluate_forward

    rng = np.random.default_rng(1)
    idx = pd.date_range("2024-01-01", periods=1200, freq="1h", tz="UTC")
    close = 100 * np.cumprod(1 + rng.normal(0, 0.01, len(idx)))
    candles = pd.DataFrame({"timestamp": idx, "open": close, "high": close * 1.002,
                            "low": close * 0.998, "close": close,
                            "volume": rng.uniform(1, 2, len(idx))})
    fs = build_features(candles, "1h", FeatureConfig())
    fold = forward_split(len(fs.frame), embargo=1, horizon=1)
    # validation forecasts with an edge: they see the return the next-open fill earns (these
    # bars open at their own close, so bar t+1's close-to-close return), and beat cash there
    held = fs.frame["next_return"].to_numpy()[fold.val.start + 1 : fold.val.stop + 1]
    preds = {"val": held + rng.normal(0, 0.002, len(fold.val)),
             "test": rng.normal(0, 0.002, len(fold.test))}
    rule = ThresholdRule(grid=(0.0005, 0.001, 0.002), min_trades=1)
    out = FoldOutcome(fold, preds, 0.0, 0.0, 0.0)
    a = evaluate_forward(fs, out, BT, "1h", "t", rule)
    scrambled = dict(preds, test=-10 * preds["test"][::-1])
    b = evaluate_forward(fs, FoldOutcome(fold, scrambled, 0.0, 0.0, 0.0), BT, "1h", "t", rule)
    assert a.reports["rule/fit.json"] == b.reports["rule/fit.json"]
    assert a.reports["rule/fit.json"]["chosen"] != "flat"
    assert a.metrics["val_sharpe"] == b.metrics["val_sharpe"]
    assert a.metrics["test_sharpe"] != b.metrics["test_sharpe"]


def test_meta_rule_trains_only_on_validation_signals():
    rng = np.random.default_rng(2)
    n = 600
    close = 100 * np.cumprod(1 + rng.normal(0, 0.01, n))
    feats = rng.normal(size=(n, 3))
    fc = rng.normal(0, 1, n)
    val = _window(close[:300], fc[:300], close[:300] * 1.003, close[:300] * 0.997, feats[:300])
    test = _window(close[300:], fc[300:], close[300:] * 1.003, close[300:] * 0.997, feats[300:])
    meta = MetaRule(primary_params={"threshold": 1.0}, max_holding=6, vol_window=12,
                    n_estimators=20)
    fitted = meta.fit(val, BT, 8760)
    assert val.bars is not None
    cost = round_trip_cost(val.bars)
    assert cost == pytest.approx(np.full(300, 2 * BT.fee))  # a unit in and out at the fee
    labels = meta.meta_labels(val, np.sign(fitted.primary_.positions(val).positions).astype(int),
                              cost)
    assert len(labels) == fitted.fit_report_["meta_rows"] and labels.index.max() < 300
    assert fitted.classifier_ is not None  # trained, on validation rows only
    rp = fitted.positions(test)
    base = fitted.primary_.positions(test).positions
    # the meta rule only removes (or keeps) the primary's trades, never adds one
    assert set(np.flatnonzero(rp.positions)) <= set(np.flatnonzero(base))
    sized = MetaRule(primary_params={"threshold": 1.0}, max_holding=6, vol_window=12,
                     n_estimators=20, size=True).fit(val, BT, 8760).positions(test)
    assert (np.abs(sized.positions) <= 1.0).all()


def test_make_rule_builds_each_kind_and_refuses_unknown():
    # each kind with the node's settings and the class defaults for the rest (dataclass equality
    # compares the class too); a grid arrives as a list from YAML and is kept as a tuple
    threshold = make_rule({"kind": "threshold", "grid": [1, 2]})
    assert threshold == ThresholdRule(grid=(1, 2)) and threshold.needs_validation
    barrier = make_rule({"kind": "barrier", "pt_mult": 3})
    assert barrier == BarrierRule(pt_mult=3) and barrier.sl_mult == 1.0
    assert not barrier.needs_validation  # no grid: the fixed threshold
    assert make_rule({"kind": "meta"}) == MetaRule()
    assert make_rule(None) == ThresholdRule()  # no node: today's fixed threshold
    with pytest.raises(ValueError, match=r"rule\.kind"):
        make_rule({"kind": "martingale"})


def test_a_label_reaching_into_the_next_split_is_purged():
    ts = pd.date_range("2024-01-01", periods=20, freq="1h", tz="UTC")
    reach = np.full(20, 2)  # every label reads 2 bars ahead ...
    reach[5] = 6            # ... but row 5's label reaches row 11, inside val (starts at 10)
    end = ts[np.minimum(np.arange(20) + reach, 19)]
    fold = Fold(train=range(0, 8), val=range(10, 14), test=range(16, 20), embargo=2)
    purged = purge(fold, ts.to_numpy(), end.to_numpy())
    assert purged.train == range(0, 5)  # cut at the first train row reaching val
    assert purged.val == fold.val and purged.test == fold.test
    untouched = purge(fold, ts.to_numpy(), ts[np.minimum(np.arange(20) + 2, 19)].to_numpy())
    assert untouched is fold


def test_train_rows_are_weighted_by_hand_computed_label_uniqueness():
    from huracan.stages import LabelTimes

    ts = pd.date_range("2024-01-01", periods=6, freq="1h", tz="UTC")
    # labels of rows 0, 1, 2 read bars (0, 2], (1, 3], (2, 3]: concurrency per bar
    # bar1: {0} -> 1, bar2: {0, 1} -> 2, bar3: {1, 2} -> 2
    # uniqueness: row0 mean(1, 1/2) = 0.75; row1 mean(1/2, 1/2) = 0.5; row2 mean(1/2) = 0.5
    end = ts[[2, 3, 3, 4, 5, 5]]
    lt = LabelTimes(ts.asi8, end.asi8, uniqueness=True)
    np.testing.assert_allclose(lt.weights(range(0, 3)), [0.75, 0.5, 0.5])
    assert LabelTimes(ts.asi8, end.asi8, uniqueness=False).weights(range(0, 3)) is None


# ---------------------------------------------------------------------------- flat: the cash floor
def _random_walk(seed: int, n: int = 600) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100 * np.cumprod(1 + rng.normal(0, 0.01, n))


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_random_forecasts_leave_the_threshold_grid_flat(seed):
    close = _random_walk(seed)
    forecast = np.random.default_rng(seed + 100).normal(0, 1, len(close))  # no edge
    val = _window(close, forecast)
    rule = ThresholdRule(grid=(0.5, 1.0, 1.5, 2.0), min_trades=5, min_psr=0.9).fit(val, BT, 8760)
    assert rule.flat_ and rule.chosen == "flat" and rule.chosen_ is None
    assert rule.flat_reason_.startswith("flat: ") and "cash" in rule.flat_reason_
    report = rule.fit_report_
    assert report["chosen"] == "flat" and report["flat_reason"] == rule.flat_reason_
    # every candidate was judged against cash and none cleared it
    assert [c["threshold"] for c in report["cash"]] == [0.5, 1.0, 1.5, 2.0]
    assert not any(c["beats"] for c in report["cash"])
    # a flat rule trades nothing anywhere: all positions 0, no trade
    rp = rule.positions(_window(_random_walk(seed + 1, 300), np.full(300, 5.0)))
    assert (rp.positions == 0).all()
    assert val.bars is not None
    assert execute(rule.positions(val).positions, val.bars, 8760).metrics.n_trades == 0


def test_a_forecast_with_a_real_edge_gets_a_threshold_that_beats_cash():
    close = _random_walk(6)
    nxt = np.append(close[1:] / close[:-1] - 1.0, 0.0)
    # noisy but informative: correlation with the next return about 0.45
    forecast = (nxt + np.random.default_rng(7).normal(0, 0.02, len(close))) / 0.02
    val = _window(close, forecast)
    rule = ThresholdRule(grid=(0.5, 1.0, 1.5, 2.0), min_trades=5, min_psr=0.9).fit(val, BT, 8760)
    assert not rule.flat_ and rule.chosen_ in (0.5, 1.0, 1.5, 2.0)
    assert rule.chosen == f"threshold={rule.chosen_:g}" and rule.flat_reason_ == ""
    chosen = next(c for c in rule.fit_report_["cash"] if c["threshold"] == rule.chosen_)
    assert chosen["beats"] and chosen["psr"] >= 0.9 and chosen["net_return"] > 0
    assert rule.fit_report_["val_psr"] == chosen["psr"]
    # the choice is the best metric among the candidates that beat cash
    beats = {c["threshold"] for c in rule.fit_report_["cash"] if c["beats"]}
    best = max((g for g in rule.fit_report_["grid"] if g[0] in beats and g[2] >= 5),
               key=lambda g: g[1])
    assert rule.chosen_ == best[0]
    assert np.abs(rule.positions(val).positions).sum() > 0


def test_min_psr_decides_between_flat_and_a_threshold():
    close = _random_walk(8)
    nxt = np.append(close[1:] / close[:-1] - 1.0, 0.0)
    forecast = (nxt + np.random.default_rng(9).normal(0, 0.05, len(close))) / 0.05  # weak edge
    val = _window(close, forecast)
    grid = (0.5, 1.0, 1.5)
    loose = ThresholdRule(grid=grid, min_trades=5, min_psr=0.0).fit(val, BT, 8760)
    psrs = [c["psr"] for c in loose.fit_report_["cash"]]
    strict = ThresholdRule(grid=grid, min_trades=5, min_psr=1.0).fit(val, BT, 8760)
    assert strict.flat_  # a PSR of exactly 1 is never reached on 600 noisy bars
    assert max(psrs) < 1.0
    positive = [c for c in loose.fit_report_["cash"] if c["net_return"] > 0]
    assert loose.flat_ == (not positive)


def test_no_grid_keeps_the_fixed_threshold_and_is_never_flat():
    close = _random_walk(10, 200)
    val = _window(close, np.random.default_rng(11).normal(0, 1, 200))
    rule = ThresholdRule(threshold=0.5).fit(val, BT, 8760)
    assert not rule.flat_ and rule.chosen == "threshold=0.5"
    assert rule.fit_report_["chosen_on"] == "fixed"


def test_barrier_and_meta_rules_go_flat_on_random_forecasts():
    close = _random_walk(12)
    rng = np.random.default_rng(13)
    forecast = rng.normal(0, 1, len(close))
    val = _window(close, forecast, close * 1.003, close * 0.997, rng.normal(size=(len(close), 3)))
    barrier = BarrierRule(grid=(0.5, 1.0, 2.0), max_holding=6, vol_window=12,
                          min_trades=5).fit(val, BT, 8760)
    assert barrier.flat_ and barrier.chosen == "flat"
    assert (barrier.positions(val).positions == 0).all()
    meta = MetaRule(primary_params={"grid": (0.5, 1.0, 2.0), "min_trades": 5}, max_holding=6,
                    vol_window=12, n_estimators=20).fit(val, BT, 8760)
    assert meta.flat_ and meta.chosen == "flat" and "cash" in meta.flat_reason_
    assert meta.fit_report_["chosen"] == "flat" and meta.classifier_ is None
    assert (meta.positions(val).positions == 0).all()


def test_min_psr_is_a_declared_rule_key_and_defaults_to_the_registrys():
    from huracan.settings import JobSettings, UnknownKeyError

    assert make_rule({"kind": "threshold", "grid": [1], "min_psr": 0.8}).min_psr == 0.8
    with pytest.raises(ValueError, match="min_psr"):
        make_rule({"kind": "threshold", "min_psr": 1.5})
    with pytest.raises(UnknownKeyError, match=r"rule\.min_pssr"):
        make_rule({"kind": "threshold", "min_pssr": 0.8})
    base = {"data": {"path": "x.parquet", "symbol": "BTC/USDT", "timeframe": "1h"},
            "model": {"_target_": "huracan.models.lightgbm.LightGBMForecaster"},
            "registry": {"min_psr": 0.75}}
    s = JobSettings.from_dict({**base, "rule": {"kind": "threshold", "grid": [1.0]}})
    assert s.make_rule().min_psr == 0.75  # no rule.min_psr: the registry's floor
    s = JobSettings.from_dict({**base, "rule": {"kind": "threshold", "grid": [1.0],
                                                "min_psr": 0.6}})
    assert s.make_rule().min_psr == 0.6
    s = JobSettings.from_dict({**base, "rule": {"kind": "meta", "primary_params": {}}})
    assert s.make_rule()._primary().min_psr == 0.75
