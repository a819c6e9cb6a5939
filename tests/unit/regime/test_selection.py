"""Per-regime metrics, per-regime selection with its fallback, the switching backtest by hand."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from huracan.evaluation.backtest import BacktestConfig, extract_trades, run_backtest
from huracan.evaluation.metrics import METRIC_NAMES, compute_metrics
from huracan.regime.detection import REGIMES, UNKNOWN, VolatilityRegime, realized_volatility_24h
from huracan.regime.selection import (
    ALL,
    RegimeChoice,
    extract_sized_trades,
    per_regime_metrics,
    select_per_regime,
    switching_backtest,
)

TS8 = pd.date_range("2024-01-01", periods=8, freq="1h", tz="UTC")


# -- sized trades ----------------------------------------------------------------------------


def test_sized_trades_equal_extract_trades_without_resizes():
    rng = np.random.default_rng(0)
    ts = pd.date_range("2024", periods=300, freq="1h", tz="UTC")
    for size in (1.0, 0.25):
        pos = size * rng.choice([-1.0, 0.0, 1.0], size=300)
        gross = pos * rng.normal(0, 0.01, 300)
        pd.testing.assert_frame_equal(extract_sized_trades(ts, pos, gross, 0.001),
                                      extract_trades(ts, pos, gross, 0.001))


def test_sized_trades_keep_a_resize_inside_the_trade_and_pay_its_turnover():
    ts = TS8[:4]
    pos = np.array([1.0, 0.25, 0.25, 0.0])
    r = np.array([0.01, 0.02, -0.01, 0.05])
    t = extract_sized_trades(ts, pos, pos * r, 0.001)
    assert t["bars"].tolist() == [3] and t["side"].tolist() == ["long"]
    # entry 1.0, resize 0.75, exit 0.25 = the bars' turnover 2.0 in fees
    expected = 0.999 * 1.01 * 1.005 * 0.9975 * (1 - 0.00075) * (1 - 0.00025) - 1
    assert t["return"].iloc[0] == pytest.approx(expected, rel=1e-12)
    # extract_trades would cut it in two and charge 1.0 + 0.25 at the resize
    assert len(extract_trades(ts, pos, pos * r, 0.001)) == 2


# -- per-regime metrics ----------------------------------------------------------------------


def _backtest(n: int = 600, seed: int = 0, fee: float = 0.001):
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC")
    nxt = rng.normal(0, 0.01, n)
    pred = np.where(rng.random(n) < 0.6, nxt, -nxt) + rng.normal(0, 0.002, n)
    return run_backtest(ts, pred, nxt, nxt, BacktestConfig(fee=fee), 8760)


def test_per_regime_metrics_by_hand_with_entry_attribution():
    pos = np.array([1.0, 1.0, 1.0, 0.0, -1.0, -1.0, 0.0, 1.0])
    r = np.array([0.01, -0.02, 0.03, 0.01, -0.01, 0.02, -0.03, 0.01])
    fee = 0.001
    turnover = np.abs(np.diff(np.r_[0.0, pos]))
    net = pos * r - fee * turnover
    frame = pd.DataFrame({"timestamp": TS8, "prediction": pos * 0.01, "position": pos,
                          "asset_return": r, "turnover": turnover, "strategy_return": net,
                          "label": r})
    #         long trade 0-2 enters in low and straddles into high; short 4-5 enters in high
    regimes = ["low", "low", "high", "high", "high", "low", None, "low"]
    out = per_regime_metrics(frame, regimes, 8760, min_bars=2)
    assert list(out.index) == [*REGIMES, UNKNOWN, ALL]
    assert out["bars"].to_dict() == {"low": 4, "normal": 0, "high": 3, "extreme": 0,
                                     "unknown": 1, "all": 8}
    assert out["n_trades"].to_dict() == {"low": 2, "normal": 0, "high": 1, "extreme": 0,
                                         "unknown": 0, "all": 3}
    trades = extract_trades(TS8, pos, pos * r, fee)["return"].to_numpy()
    low = np.array([0, 1, 5, 7])
    expected = compute_metrics(net[low], trades[[0, 2]], (pos * 0.01)[low], r[low], 8760)
    assert out.loc["low", list(METRIC_NAMES)].to_numpy() == pytest.approx(
        np.array(list(expected.as_dict().values())), nan_ok=True)
    assert out.loc["high", "profit_factor"] == pytest.approx(
        compute_metrics(net[[2, 3, 4]], trades[[1]], pos[[2, 3, 4]], r[[2, 3, 4]],
                        8760).profit_factor)
    assert np.isnan(out.loc["normal", "sharpe"])  # below min_bars


def test_per_regime_all_row_equals_the_backtest_and_fee_is_inferred():
    res = _backtest()
    regimes = np.array(REGIMES, dtype=object)[np.arange(600) // 150]
    out = per_regime_metrics(res.returns, regimes, 8760)
    for k, v in res.metrics.as_dict().items():
        assert out.loc[ALL, k] == pytest.approx(v, nan_ok=True), k
    assert out.loc[list(REGIMES), "bars"].tolist() == [150] * 4
    assert out.loc[list(REGIMES), "n_trades"].sum() == res.metrics.n_trades
    # a frame whose returns do not follow one fee is refused unless the fee is given
    broken = res.returns.copy()
    broken.loc[broken.index[5:], "strategy_return"] -= 1e-4 * broken["turnover"].iloc[5:]
    with pytest.raises(ValueError, match="infer one fee"):
        per_regime_metrics(broken, regimes, 8760)
    per_regime_metrics(broken, regimes, 8760, fee=0.001)
    with pytest.raises(ValueError, match="differ in length"):
        per_regime_metrics(res.returns, regimes[:-1], 8760)
    with pytest.raises(ValueError, match="lacks columns"):
        per_regime_metrics(res.returns.drop(columns="label"), regimes, 8760)


# -- selection -------------------------------------------------------------------------------


def _frame(trades: dict[str, int], score: dict[str, float], overall: float, mdd: float):
    rows = {}
    for r in (*REGIMES, UNKNOWN, ALL):
        row = dict.fromkeys(METRIC_NAMES, 0.0)
        row["n_trades"] = trades.get(r, sum(trades.values()) if r == ALL else 0)
        row["composite_score"] = overall if r == ALL else score.get(r, 0.0)
        row["max_drawdown"] = mdd if r == ALL else 0.1
        rows[r] = {"bars": 1000, **row}
    return pd.DataFrame.from_dict(rows, orient="index")


CANDIDATES = {
    # low: both have evidence (lstm better); normal: only lightgbm reaches 30 trades exactly;
    # high and extreme: nobody reaches 30 trades
    "xgboost": _frame({"low": 40, "normal": 29, "high": 10, "extreme": 2},
                      {"low": 1.0, "normal": 9.0, "high": 5.0}, overall=0.8, mdd=0.30),
    "lstm": _frame({"low": 35, "normal": 5, "high": 29, "extreme": 1},
                   {"low": 1.2, "high": 0.1}, overall=0.7, mdd=0.40),
    "lightgbm": _frame({"low": 31, "normal": 30, "high": 3, "extreme": 0},
                       {"low": 0.5, "normal": 0.3}, overall=0.9, mdd=0.20),
}


def test_selection_uses_evidence_exactly_when_it_exists():
    sel = select_per_regime(CANDIDATES, min_trades=30)
    assert {r: (c.model, c.source, c.exposure) for r, c in sel.items()} == {
        "low": ("lstm", "evidence", 1.0),
        "normal": ("lightgbm", "evidence", 1.0),       # 30 trades: just enough
        "high": ("lstm", "fallback", 1.0),             # default high -> LSTM
        "extreme": ("lightgbm", "fallback", 0.25),     # lowest overall max drawdown (0.20)
    }
    assert "1.2000" in sel["low"].reason and "runner-up xgboost 1.0000" in sel["low"].reason
    assert "lightgbm 3, lstm 29, xgboost 10" in sel["high"].reason
    assert "exposure 0.25" in sel["extreme"].reason
    # one trade fewer for lightgbm in normal: no evidence left, fallback = best overall
    fewer = dict(CANDIDATES)
    fewer["lightgbm"] = _frame({"low": 31, "normal": 29}, {"normal": 0.3}, overall=0.9, mdd=0.2)
    sel2 = select_per_regime(fewer, min_trades=30)
    assert (sel2["normal"].model, sel2["normal"].source) == ("lightgbm", "fallback")
    assert "best overall" in sel2["normal"].reason
    # no evidence anywhere: every regime falls back, low -> XGBoost
    sel3 = select_per_regime(CANDIDATES, min_trades=1000)
    assert {c.source for c in sel3.values()} == {"fallback"}
    assert sel3["low"].model == "xgboost"


def test_a_regime_no_candidate_saw_falls_back_and_says_so():
    # ten days of 5m candles: no high and no extreme bar among the candidates' scored rows
    seen = {m: CANDIDATES[m].drop(index=["high", "extreme"]) for m in ("xgboost", "lightgbm")}
    sel = select_per_regime(seen, min_trades=30)
    full = select_per_regime({m: CANDIDATES[m] for m in seen}, min_trades=30)
    assert sel["low"] == full["low"] and sel["normal"] == full["normal"]  # evidence unchanged
    high, extreme = sel["high"], sel["extreme"]
    # high -> LSTM is not among them: best overall (lightgbm 0.9); extreme -> lowest drawdown
    assert (high.model, high.source, high.exposure, high.n_trades) == (
        "lightgbm", "fallback", 1.0, 0)
    assert (extreme.model, extreme.source, extreme.exposure, extreme.n_trades) == (
        "lightgbm", "fallback", 0.25, 0)
    assert high.reason.startswith("fallback: no scored bars in regime high")
    assert extreme.reason.startswith("fallback: no scored bars in regime extreme")
    assert high.value == pytest.approx(0.9)  # a fallback reports the overall metric


def test_a_regime_one_candidate_never_saw_counts_as_zero_trades_there():
    lstm_only_high = {"xgboost": CANDIDATES["xgboost"].drop(index="high"),
                      "lstm": CANDIDATES["lstm"]}
    sel = select_per_regime(lstm_only_high, min_trades=30)
    assert (sel["high"].model, sel["high"].source) == ("lstm", "fallback")
    assert "(trades: lstm 29, xgboost 0)" in sel["high"].reason
    assert "no scored bars in regime high for xgboost" in sel["high"].reason
    # with enough trades, the candidate that saw the regime is chosen on evidence there
    sel = select_per_regime(lstm_only_high, min_trades=29)
    assert (sel["high"].model, sel["high"].source, sel["high"].value) == (
        "lstm", "evidence", pytest.approx(0.1))


def test_fallback_model_missing_or_spelled_differently():
    renamed = {"XGBoostForecaster": CANDIDATES["xgboost"],
               "lightgbm": CANDIDATES["lightgbm"]}  # no LSTM at all
    sel = select_per_regime(renamed, min_trades=1000)
    assert sel["low"].model == "XGBoostForecaster"
    assert sel["high"].model == "lightgbm"  # best overall (0.9)
    assert "'lstm' is not among the candidates" in sel["high"].reason


def test_selection_by_a_lower_is_better_metric_and_round_trip():
    sel = select_per_regime(CANDIDATES, metric="max_drawdown", min_trades=30)
    assert sel["low"].source == "evidence"
    choice = RegimeChoice.from_dict(json.loads(json.dumps(sel["extreme"].to_dict())))
    assert choice == sel["extreme"]


def test_selection_errors():
    with pytest.raises(ValueError, match="no candidate"):
        select_per_regime({})
    with pytest.raises(ValueError, match="unknown metric"):
        select_per_regime(CANDIDATES, metric="alpha")
    with pytest.raises(ValueError, match=r"lacks rows \['all'\]"):
        select_per_regime({"x": CANDIDATES["lstm"].drop(index=ALL)})
    with pytest.raises(ValueError, match=r"columns \['max_drawdown'\]"):
        select_per_regime({"x": CANDIDATES["lstm"].drop(columns="max_drawdown")})
    with pytest.raises(ValueError, match="extreme_exposure"):
        select_per_regime(CANDIDATES, extreme_exposure=0.0)
    with pytest.raises(ValueError, match="fallback has no entry"):
        select_per_regime(CANDIDATES, fallback={"low": "xgboost"})


# -- switching backtest ----------------------------------------------------------------------


def _choice(regime: str, model: str, exposure: float) -> RegimeChoice:
    return RegimeChoice(regime, model, exposure, "evidence", "test", "composite_score", 0.0, 0)


def test_switching_backtest_by_hand():
    pred = {"A": np.array([1, 1, -1, -1, 1, -1, 1, 1]) * 0.01,
            "B": np.array([-1, -1, 1, 1, -1, 1, 1, -1]) * 0.01}
    regimes = ["low", "low", "high", "high", "high", "low", "low", "high"]
    selection = {"low": _choice("low", "A", 1.0), "high": _choice("high", "B", 0.5)}
    r = np.array([0.01, -0.02, 0.03, 0.01, -0.01, 0.02, -0.03, 0.01])
    res = switching_backtest(pred, regimes, selection, r, r, TS8, threshold=0.001, fee=0.001,
                             long_only=False, periods_per_year=8760)
    out = res.returns
    # low -> A at full size, high -> B at half size, each bar by its own regime
    assert out["position"].tolist() == [1.0, 1.0, 0.5, 0.5, -0.5, -1.0, 1.0, -0.5]
    assert out["model"].tolist() == ["A", "A", "B", "B", "B", "A", "A", "B"]
    assert out["turnover"].tolist() == [1.0, 0.0, 0.5, 0.0, 1.0, 0.5, 2.0, 1.5]
    assert out["strategy_return"].to_numpy() == pytest.approx(
        [0.009, -0.02, 0.0145, 0.005, 0.004, -0.0205, -0.032, -0.0065], abs=1e-15)
    t = res.trades
    assert t["side"].tolist() == ["long", "short", "long", "short"]
    assert t["bars"].tolist() == [4, 2, 1, 1]
    assert t["return"].to_numpy() == pytest.approx([
        0.999 * 1.01 * 0.98 * 1.015 * 1.005 * 0.9995 * 0.9995 - 1,  # resize 1 -> 0.5, exit 0.5
        0.9995 * 1.005 * 0.98 * 0.9995 * 0.999 - 1,                 # -0.5 -> -1, exit 1
        0.999 * 0.97 * 0.999 - 1,                                   # flip in, flip out
        0.9995 * 0.995 - 1,                                         # open at the end
    ], rel=1e-12)
    net = out["strategy_return"].to_numpy()
    assert res.metrics.total_return == pytest.approx(np.prod(1 + net) - 1)
    assert res.metrics.n_trades == 4
    assert res.metrics.accuracy == pytest.approx(4 / 8)  # chosen forecasts' signs vs r


def test_switching_with_one_model_everywhere_is_run_backtest():
    res = _backtest(fee=0.0004)
    pred = res.returns["prediction"].to_numpy()
    nxt = res.returns["asset_return"].to_numpy()
    regimes = np.array(REGIMES, dtype=object)[np.arange(600) % 4]
    selection = {r: _choice(r, "m", 1.0) for r in REGIMES}
    sw = switching_backtest({"m": pred}, regimes, selection, nxt, nxt, res.returns["timestamp"],
                            fee=0.0004)
    cols = list(res.returns.columns)
    pd.testing.assert_frame_equal(sw.returns[cols], res.returns)
    pd.testing.assert_frame_equal(sw.trades, res.trades)
    assert sw.metrics == res.metrics


def test_switching_is_flat_on_unknown_and_checks_inputs():
    pred = {"A": np.full(8, 0.01)}
    regimes = [None, "low", UNKNOWN, "low", "low", "low", "low", "low"]
    sel = {"low": _choice("low", "A", 1.0)}
    r = np.full(8, 0.01)
    res = switching_backtest(pred, regimes, sel, r, r, TS8)
    assert res.returns["position"].tolist() == [0, 1, 0, 1, 1, 1, 1, 1]
    with pytest.raises(ValueError, match="no selection"):
        switching_backtest(pred, ["high"] * 8, sel, r, r, TS8)
    with pytest.raises(ValueError, match="no predictions"):
        switching_backtest(pred, regimes, {"low": _choice("low", "Z", 1.0)}, r, r, TS8)
    with pytest.raises(ValueError, match="differ in length"):
        switching_backtest(pred, regimes, sel, r[:5], r, TS8)


def test_end_to_end_select_then_switch():
    """Quantile regimes fitted on train bars -> per-regime metrics -> selection -> switching."""
    rng = np.random.default_rng(1)
    n = 3000
    vol = np.where((np.arange(n) // 300) % 3 == 2, 0.02, 0.005)
    nxt = rng.normal(0, vol)
    close = 100 * np.exp(np.cumsum(np.r_[0.0, nxt[:-1]]))
    ts = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC")
    rv = realized_volatility_24h(close, "1h").to_numpy()
    regimes = VolatilityRegime().fit(rv[:2000]).classify(rv)
    preds = {"xgboost": nxt + rng.normal(0, 0.01, n), "lstm": nxt + rng.normal(0, 0.02, n)}
    metrics = {m: per_regime_metrics(run_backtest(ts, p, nxt, nxt, BacktestConfig(), 8760)
                                     .returns, regimes, 8760) for m, p in preds.items()}
    sel = select_per_regime(metrics)
    assert set(sel) == set(REGIMES)
    res = switching_backtest(preds, regimes, sel, nxt, nxt, ts)
    assert np.isfinite(res.metrics.sharpe)
    assert (res.returns.loc[res.returns["regime"] == UNKNOWN, "position"] == 0).all()
    ext = res.returns["regime"] == "extreme"
    assert (res.returns.loc[ext, "position"].abs() <= sel["extreme"].exposure).all()
