"""Per-regime metrics, per-regime selection with its fallback and the cash floor, the switching
backtest by hand (through the execution model; the hand-made bars fill at the close with the fee
only; the cash-floor series fill at the next open with fee, spread and slippage)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from huracan.evaluation.backtest import BacktestConfig, positions_from_forecast
from huracan.evaluation.evidence import beats_cash
from huracan.evaluation.execution import MarketBars, close_bars, execute
from huracan.evaluation.metrics import METRIC_NAMES, compute_metrics
from huracan.regime.detection import REGIMES, UNKNOWN, VolatilityRegime, realized_volatility_24h
from huracan.regime.selection import (
    ALL,
    RegimeChoice,
    per_regime_metrics,
    select_per_regime,
    switching_backtest,
)

TS8 = pd.date_range("2024-01-01", periods=8, freq="1h", tz="UTC")


# -- sized trades ----------------------------------------------------------------------------


def test_a_resize_stays_inside_its_trade_and_pays_its_turnover():
    pos = np.array([1.0, 0.25, 0.25, 0.0])
    r = np.array([0.01, 0.02, -0.01, 0.05])
    t = execute(pos, close_bars(TS8[:4], r, 0.001), 8760).trades
    assert t["bars"].tolist() == [3] and t["side"].tolist() == ["long"]
    # entry 1.0, resize 0.75, exit 0.25 = the bars' turnover 2.0 in fees
    expected = (1.01 - 0.001) * (1.005 - 0.00075) * 0.9975 * (1 - 0.00025) - 1
    assert t["return"].iloc[0] == pytest.approx(expected, rel=1e-12)


# -- per-regime metrics ----------------------------------------------------------------------


def _run(ts, pred, nxt, fee: float = BacktestConfig.fee):
    return execute(positions_from_forecast(pred), close_bars(ts, nxt, fee), 8760,
                   predictions=pred, labels=nxt)


def _backtest(n: int = 600, seed: int = 0, fee: float = 0.001):
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC")
    nxt = rng.normal(0, 0.01, n)
    pred = np.where(rng.random(n) < 0.6, nxt, -nxt) + rng.normal(0, 0.002, n)
    return _run(ts, pred, nxt, fee)


def test_per_regime_metrics_by_hand_with_entry_attribution():
    pos = np.array([1.0, 1.0, 1.0, 0.0, -1.0, -1.0, 0.0, 1.0])
    r = np.array([0.01, -0.02, 0.03, 0.01, -0.01, 0.02, -0.03, 0.01])
    fee = 0.001
    res = execute(pos, close_bars(TS8, r, fee), 8760, predictions=pos * 0.01, labels=r)
    frame = res.returns
    net = frame["strategy_return"].to_numpy()
    assert net == pytest.approx(pos * r - fee * np.abs(np.diff(np.r_[0.0, pos])), abs=1e-15)
    #         long trade 0-2 enters in low and straddles into high; short 4-5 enters in high
    regimes = ["low", "low", "high", "high", "high", "low", None, "low"]
    out = per_regime_metrics(frame, regimes, 8760, min_bars=2)
    assert list(out.index) == [*REGIMES, UNKNOWN, ALL]
    assert out["bars"].to_dict() == {"low": 4, "normal": 0, "high": 3, "extreme": 0,
                                     "unknown": 1, "all": 8}
    assert out["n_trades"].to_dict() == {"low": 2, "normal": 0, "high": 1, "extreme": 0,
                                         "unknown": 0, "all": 3}
    trades = res.trades["return"].to_numpy()
    low = np.array([0, 1, 5, 7])
    expected = compute_metrics(net[low], trades[[0, 2]], (pos * 0.01)[low], r[low], 8760)
    assert out.loc["low", list(METRIC_NAMES)].to_numpy() == pytest.approx(
        np.array(list(expected.as_dict().values())), nan_ok=True)
    assert out.loc["high", "profit_factor"] == pytest.approx(
        compute_metrics(net[[2, 3, 4]], trades[[1]], pos[[2, 3, 4]], r[[2, 3, 4]],
                        8760).profit_factor)
    assert np.isnan(out.loc["normal", "sharpe"])  # below min_bars


def test_per_regime_all_row_equals_the_backtest_with_its_executed_costs():
    res = _backtest()
    regimes = np.array(REGIMES, dtype=object)[np.arange(600) // 150]
    out = per_regime_metrics(res.returns, regimes, 8760)
    for k, v in res.metrics.as_dict().items():
        assert out.loc[ALL, k] == pytest.approx(v, nan_ok=True), k
    assert out.loc[list(REGIMES), "bars"].tolist() == [150] * 4
    assert out.loc[list(REGIMES), "n_trades"].sum() == res.metrics.n_trades
    # the costs are the frame's as executed: charging more per bar lowers every regime's figure
    dearer = res.returns.assign(strategy_return=res.returns["strategy_return"] - 1e-4)
    assert (per_regime_metrics(dearer, regimes, 8760).loc[list(REGIMES), "total_return"]
            < out.loc[list(REGIMES), "total_return"]).all()
    with pytest.raises(ValueError, match="lacks columns"):
        per_regime_metrics(res.returns.drop(columns="exit_leg"), regimes, 8760)
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


def _winning(*names: str) -> dict[str, pd.DataFrame]:
    """Per-bar net returns that beat cash in every regime (mean 20 bps a bar, sd 10 bps: PSR
    about 1), for the selection tests whose subject is the ranking, not the floor."""
    rng = np.random.default_rng(7)
    regime = np.repeat(np.array(REGIMES, dtype=object), 100)
    return {m: pd.DataFrame({"strategy_return": 0.002 + rng.normal(0, 0.001, len(regime)),
                             "regime": regime}) for m in names}


WIN = _winning("xgboost", "lstm", "lightgbm", "XGBoostForecaster")

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
    sel = select_per_regime(CANDIDATES, min_trades=30, returns=WIN)
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
    sel2 = select_per_regime(fewer, min_trades=30, returns=WIN)
    assert (sel2["normal"].model, sel2["normal"].source) == ("lightgbm", "fallback")
    assert "best overall" in sel2["normal"].reason
    # no evidence anywhere: every regime falls back, low -> XGBoost
    sel3 = select_per_regime(CANDIDATES, min_trades=1000, returns=WIN)
    assert {c.source for c in sel3.values()} == {"fallback"}
    assert sel3["low"].model == "xgboost"


def test_a_regime_no_candidate_saw_is_cash_and_says_so():
    # ten days of 5m candles: no high and no extreme bar among the candidates' scored rows
    seen = {m: CANDIDATES[m].drop(index=["high", "extreme"]) for m in ("xgboost", "lightgbm")}
    returns = {m: WIN[m][WIN[m]["regime"].isin(["low", "normal"])] for m in seen}
    sel = select_per_regime(seen, min_trades=30, returns=returns)
    full = select_per_regime({m: CANDIDATES[m] for m in seen}, min_trades=30, returns=WIN)
    assert sel["low"] == full["low"] and sel["normal"] == full["normal"]  # evidence unchanged
    high, extreme = sel["high"], sel["extreme"]
    # the fallback would be: high -> LSTM is not among them: best overall (lightgbm 0.9);
    # extreme -> lowest drawdown (lightgbm); with no bar there, neither can beat cash
    assert (high.model, high.source, high.exposure, high.n_trades, high.candidate) == (
        "cash", "cash", 0.0, 0, "lightgbm")
    assert (extreme.model, extreme.source, extreme.exposure, extreme.candidate) == (
        "cash", "cash", 0.0, "lightgbm")
    assert high.reason.startswith("cash: lightgbm in regime high never trades (0 bars)")
    assert "fallback: no scored bars in regime high" in high.reason
    assert "fallback: no scored bars in regime extreme" in extreme.reason
    assert high.cash is not None and high.cash["beats"] is False and high.cash["bars"] == 0
    assert high.value == pytest.approx(0.9)  # the fallback's overall metric, as considered


def test_a_regime_one_candidate_never_saw_counts_as_zero_trades_there():
    lstm_only_high = {"xgboost": CANDIDATES["xgboost"].drop(index="high"),
                      "lstm": CANDIDATES["lstm"]}
    sel = select_per_regime(lstm_only_high, min_trades=30, returns=WIN)
    assert (sel["high"].model, sel["high"].source) == ("lstm", "fallback")
    assert "(trades: lstm 29, xgboost 0)" in sel["high"].reason
    assert "no scored bars in regime high for xgboost" in sel["high"].reason
    # with enough trades, the candidate that saw the regime is chosen on evidence there
    sel = select_per_regime(lstm_only_high, min_trades=29, returns=WIN)
    assert (sel["high"].model, sel["high"].source, sel["high"].value) == (
        "lstm", "evidence", pytest.approx(0.1))


def test_fallback_model_missing_or_spelled_differently():
    renamed = {"XGBoostForecaster": CANDIDATES["xgboost"],
               "lightgbm": CANDIDATES["lightgbm"]}  # no LSTM at all
    sel = select_per_regime(renamed, min_trades=1000, returns=WIN)
    assert sel["low"].model == "XGBoostForecaster"
    assert sel["high"].model == "lightgbm"  # best overall (0.9)
    assert "'lstm' is not among the candidates" in sel["high"].reason


def test_selection_by_a_lower_is_better_metric_and_round_trip():
    sel = select_per_regime(CANDIDATES, metric="max_drawdown", min_trades=30, returns=WIN)
    assert sel["low"].source == "evidence"
    choice = RegimeChoice.from_dict(json.loads(json.dumps(sel["extreme"].to_dict())))
    assert choice == sel["extreme"]


def test_selection_errors():
    with pytest.raises(ValueError, match="no candidate"):
        select_per_regime({}, returns=WIN)
    with pytest.raises(ValueError, match="unknown metric"):
        select_per_regime(CANDIDATES, metric="alpha", returns=WIN)
    with pytest.raises(ValueError, match=r"lacks rows \['all'\]"):
        select_per_regime({"x": CANDIDATES["lstm"].drop(index=ALL)}, returns=WIN)
    with pytest.raises(ValueError, match=r"columns \['max_drawdown'\]"):
        select_per_regime({"x": CANDIDATES["lstm"].drop(columns="max_drawdown")}, returns=WIN)
    with pytest.raises(ValueError, match="extreme_exposure"):
        select_per_regime(CANDIDATES, extreme_exposure=0.0, returns=WIN)
    with pytest.raises(ValueError, match="fallback has no entry"):
        select_per_regime(CANDIDATES, fallback={"low": "xgboost"}, returns=WIN)
    with pytest.raises(ValueError, match="min_psr"):
        select_per_regime(CANDIDATES, returns=WIN, min_psr=1.5)
    with pytest.raises(ValueError, match=r"returns of candidate 'lstm' lack columns \['regime'\]"):
        select_per_regime(CANDIDATES, returns={"lstm": WIN["lstm"].drop(columns="regime")})


# -- the cash floor --------------------------------------------------------------------------


def _edge_in_low_only(n: int = 2400, seed: int = 3):
    """Half the bars in ``low``, half in ``high`` (alternating blocks of 200). ``edge``
    forecasts the next return's sign with 60 % accuracy in low and is a coin flip in high;
    ``coin`` is a coin flip everywhere. Filled at the next open with fee, half-spread and
    slippage (6 bps a unit of turnover, the default costs)."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC")
    regimes = np.where((np.arange(n) // 200) % 2 == 0, "low", "high").astype(object)
    nxt = rng.normal(0, 0.01, n)
    gap = rng.normal(0, 0.0005, n)
    hold = (1 + nxt) / (1 + gap) - 1
    bars = MarketBars(ts, gap, hold, np.full(n, 6e-4), *np.zeros((4, n)))
    right = rng.random(n) < np.where(regimes == "low", 0.6, 0.5)
    sign = np.where(right, np.sign(nxt), -np.sign(nxt))
    preds = {"edge": sign * 0.01, "coin": np.where(rng.random(n) < 0.5, 0.01, -0.01)}
    runs = {m: execute(positions_from_forecast(p), bars, 8760, predictions=p,
                       labels=nxt).returns.assign(regime=regimes) for m, p in preds.items()}
    return runs, regimes, preds, bars, nxt


def test_a_regime_with_real_edge_keeps_its_model_and_one_without_is_cash():
    runs, regimes, _, _, _ = _edge_in_low_only()
    metrics = {m: per_regime_metrics(f, regimes, 8760) for m, f in runs.items()}
    sel = select_per_regime(metrics, min_trades=30, returns=runs, min_psr=0.9)
    low, high = sel["low"], sel["high"]
    # low: the 60 % forecast is the best there and beats cash, net of 6 bps a unit turnover
    assert (low.model, low.source, low.exposure) == ("edge", "evidence", 1.0)
    assert low.cash is not None and low.cash["beats"] and low.cash["psr"] >= 0.9
    assert low.cash["total_return"] > 0 and "edge in regime low beats cash" in low.reason
    # the verdict is beats_cash on exactly the regime's bars of the chosen model's returns
    net_low = runs["edge"].loc[regimes == "low", "strategy_return"].to_numpy()
    assert low.cash == beats_cash(net_low, low.n_trades, 0.9,
                                  what="edge in regime low").as_dict()
    # high: no forecast has an edge; the best of two coin flips pays its costs and is cash
    assert (high.model, high.source, high.exposure) == ("cash", "cash", 0.0)
    assert high.candidate in runs and high.cash is not None and not high.cash["beats"]
    assert high.cash["psr"] < 0.9 or high.cash["total_return"] <= 0
    assert high.reason.startswith(f"cash: {high.candidate} in regime high does not beat cash")
    assert f"the evidence choice was {high.candidate}" in high.reason
    # regimes without a bar (normal, extreme) cannot beat cash either
    assert sel["normal"].is_cash and sel["extreme"].is_cash
    # min_psr = 0: only a positive net return is needed; high still loses its costs
    lax = select_per_regime(metrics, min_trades=30, returns=runs, min_psr=0.0)
    assert lax["low"].model == "edge"
    assert lax["high"].is_cash == (high.cash["total_return"] <= 0)
    # a chosen candidate without per-bar returns cannot be checked: cash
    blind = select_per_regime(metrics, min_trades=30, returns={"coin": runs["coin"]})
    assert blind["low"].is_cash and "no per-bar net returns of edge" in blind["low"].reason


def test_switching_is_flat_in_a_cash_regime():
    runs, regimes, preds, bars, nxt = _edge_in_low_only()
    metrics = {m: per_regime_metrics(f, regimes, 8760) for m, f in runs.items()}
    sel = select_per_regime(metrics, min_trades=30, returns=runs)
    assert not sel["low"].is_cash and sel["high"].is_cash
    res = switching_backtest(preds, regimes, sel, bars, nxt)
    out = res.returns
    high = (out["regime"] == "high").to_numpy()
    assert (out.loc[high, "position"] == 0).all() and (out.loc[high, "model"] == "cash").all()
    assert (out.loc[high, "exposure"] == 0).all()
    # in low it trades exactly the edge model's positions
    np.testing.assert_array_equal(out.loc[~high, "position"].to_numpy(),
                                  runs["edge"].loc[~high, "position"].to_numpy())
    # flat in high: a bar there earns only the gap leg of the position entering it and pays
    # the fill that closes it (the execution model's accounting), nothing else
    inside = high & np.r_[False, high[:-1]]  # high bars after a high bar: flat before and after
    assert (out.loc[inside, "strategy_return"] == 0).all()


# -- switching backtest ----------------------------------------------------------------------


def _choice(regime: str, model: str, exposure: float) -> RegimeChoice:
    return RegimeChoice(regime, model, exposure, "evidence", "test", "composite_score", 0.0, 0)


def test_switching_backtest_by_hand():
    pred = {"A": np.array([1, 1, -1, -1, 1, -1, 1, 1]) * 0.01,
            "B": np.array([-1, -1, 1, 1, -1, 1, 1, -1]) * 0.01}
    regimes = ["low", "low", "high", "high", "high", "low", "low", "high"]
    selection = {"low": _choice("low", "A", 1.0), "high": _choice("high", "B", 0.5)}
    r = np.array([0.01, -0.02, 0.03, 0.01, -0.01, 0.02, -0.03, 0.01])
    res = switching_backtest(pred, regimes, selection, close_bars(TS8, r, 0.001), r,
                             threshold=0.001, long_only=False, periods_per_year=8760)
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
    # each trade: its bars' net returns, without the previous trade's share of the fill that
    # opened it (a flip's cost split by turnover), and its own share of the fill closing it
    assert t["return"].to_numpy() == pytest.approx([
        1.009 * 0.98 * 1.0145 * 1.005 * (1 - 0.0005) - 1,   # resize 1 -> 0.5, exit 0.5
        1.004 / 0.9995 * 0.9795 * (1 - 0.001) - 1,          # -0.5 -> -1, exit 1
        0.968 / 0.999 * (1 - 0.001) - 1,                    # flip in, flip out
        0.9935 / 0.999 - 1,                                 # open at the end
    ], rel=1e-12)
    net = out["strategy_return"].to_numpy()
    assert res.metrics.total_return == pytest.approx(np.prod(1 + net) - 1)
    assert res.metrics.n_trades == 4
    assert res.metrics.accuracy == pytest.approx(4 / 8)  # chosen forecasts' signs vs r


def test_switching_with_one_model_everywhere_is_the_models_backtest():
    res = _backtest(fee=0.0004)
    pred = res.returns["prediction"].to_numpy()
    nxt = res.returns["asset_return"].to_numpy()
    regimes = np.array(REGIMES, dtype=object)[np.arange(600) % 4]
    selection = {r: _choice(r, "m", 1.0) for r in REGIMES}
    sw = switching_backtest({"m": pred}, regimes, selection,
                            close_bars(res.returns["timestamp"], nxt, 0.0004), nxt)
    cols = list(res.returns.columns)
    pd.testing.assert_frame_equal(sw.returns[cols], res.returns, check_exact=True)
    pd.testing.assert_frame_equal(sw.trades, res.trades, check_exact=True)
    assert sw.metrics == res.metrics


def test_switching_is_flat_on_unknown_and_checks_inputs():
    pred = {"A": np.full(8, 0.01)}
    regimes = [None, "low", UNKNOWN, "low", "low", "low", "low", "low"]
    sel = {"low": _choice("low", "A", 1.0)}
    r = np.full(8, 0.01)
    bars = close_bars(TS8, r)
    res = switching_backtest(pred, regimes, sel, bars, r)
    assert res.returns["position"].tolist() == [0, 1, 0, 1, 1, 1, 1, 1]
    with pytest.raises(ValueError, match="no selection"):
        switching_backtest(pred, ["high"] * 8, sel, bars, r)
    with pytest.raises(ValueError, match="no predictions"):
        switching_backtest(pred, regimes, {"low": _choice("low", "Z", 1.0)}, bars, r)
    with pytest.raises(ValueError, match="differ in length"):
        switching_backtest(pred, regimes, sel, bars, r[:5])


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
    runs = {m: _run(ts, p, nxt).returns.assign(regime=regimes) for m, p in preds.items()}
    metrics = {m: per_regime_metrics(f, regimes, 8760) for m, f in runs.items()}
    sel = select_per_regime(metrics, returns=runs)
    assert set(sel) == set(REGIMES)
    res = switching_backtest(preds, regimes, sel, close_bars(ts, nxt), nxt)
    assert np.isfinite(res.metrics.sharpe)
    assert (res.returns.loc[res.returns["regime"] == UNKNOWN, "position"] == 0).all()
    ext = res.returns["regime"] == "extreme"
    assert (res.returns.loc[ext, "position"].abs() <= sel["extreme"].exposure).all()
