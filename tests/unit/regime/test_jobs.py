"""Regimes inside a job and across a sweep: per-fold detection from train rows only (and causal),
the registry's per-regime choice with its fallback, the walk-forward switching backtest by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from huracan.evaluation.execution import close_bars, execute
from huracan.evaluation.metrics import compute_metrics
from huracan.regime.detection import REGIMES, UNKNOWN, HMMRegime, VolatilityRegime
from huracan.regime.jobs import detect_regimes, walk_forward_switching
from huracan.regime.registry import candidate_name, choose
from huracan.settings import RegimeSettings
from huracan.splits import walk_forward_folds


def _frame(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    vol = np.where((np.arange(n) // 400) % 3 == 2, 0.03, 0.005)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, vol)))
    idx = pd.date_range("2022-01-01", periods=n, freq="1h", tz="UTC")
    return pd.DataFrame({"bar_close": close, "x": rng.normal(size=n)}, index=idx)


def _folds(frame: pd.DataFrame):
    return walk_forward_folds(pd.DatetimeIndex(frame.index), "1h", train=1200, val=200,
                              step=300, embargo=1, horizon=1)


def test_thresholds_come_from_each_folds_train_rows_only():
    frame = _frame()
    folds = _folds(frame)
    assert len(folds) >= 3
    settings = RegimeSettings(kind="volatility")
    base = detect_regimes(frame, folds, settings, "1h")
    last = folds[-1]
    # the last fold's detector: quantiles of the volatility on its train rows, nothing else
    from huracan.regime.detection import realized_volatility_24h

    vol = realized_volatility_24h(frame["bar_close"], "1h").to_numpy()
    expected = VolatilityRegime().fit(vol[last.train.start : last.train.stop])
    assert base.detector["thresholds"] == pytest.approx(list(expected.thresholds_))
    # a violent move in the last fold's validation and test bars moves no threshold
    moved = frame.copy()
    tail = np.arange(len(frame)) >= last.val.start
    swing = np.where(tail, 0.05 * (-1.0) ** np.arange(len(frame)), 0.0)  # +-5 % every bar
    moved.loc[tail, "bar_close"] *= np.exp(np.cumsum(swing))[tail]
    other = detect_regimes(moved, folds, settings, "1h")
    assert other.detector["thresholds"] == base.detector["thresholds"]
    before = np.arange(len(frame)) < last.val.start
    np.testing.assert_array_equal(other.regimes[before], base.regimes[before])
    # ...while those bars themselves are now classified as violent
    assert (other.regimes[last.test.start : last.test.stop] == "extreme").mean() > 0.9
    # unscored rows (train only, never OOS) stay unknown; the shares sum to 1
    assert (base.regimes[: folds[0].val.start] == UNKNOWN).all()
    assert sum(base.shares.values()) == pytest.approx(1.0)


def test_each_fold_is_classified_with_its_own_detector_and_causally():
    frame = _frame()
    folds = _folds(frame)
    settings = RegimeSettings(kind="volatility")
    full = detect_regimes(frame, folds, settings, "1h")
    from huracan.regime.detection import realized_volatility_24h

    vol = realized_volatility_24h(frame["bar_close"], "1h").to_numpy()
    first = folds[0]
    det = VolatilityRegime().fit(vol[first.train.start : first.train.stop])
    t = slice(first.test.start, first.test.stop)
    np.testing.assert_array_equal(full.regimes[t], det.classify(vol)[t])
    # prefix: dropping every bar after fold k's test leaves folds <= k unchanged
    k = 1
    cut = folds[k].test.stop
    part = detect_regimes(frame.iloc[:cut], folds[: k + 1], settings, "1h")
    np.testing.assert_array_equal(part.regimes, full.regimes[:cut])


def test_hmm_regimes_are_filtered_per_fold_and_prefix_stable():
    frame = _frame(2400)
    folds = walk_forward_folds(pd.DatetimeIndex(frame.index), "1h", train=1200, val=200,
                               step=400, embargo=1, horizon=1)
    settings = RegimeSettings(kind="hmm", n_components=2)
    full = detect_regimes(frame, folds, settings, "1h", seed=3)
    assert full.probability is not None
    scored = full.regimes != UNKNOWN
    assert np.isfinite(full.probability[scored]).mean() > 0.95
    assert ((full.probability[scored] >= 0.5) | np.isnan(full.probability[scored])).all()
    cut = folds[0].test.stop
    part = detect_regimes(frame.iloc[:cut], folds[:1], settings, "1h", seed=3)
    np.testing.assert_array_equal(part.regimes, full.regimes[:cut])
    np.testing.assert_allclose(part.probability, full.probability[:cut], equal_nan=True)
    assert HMMRegime.from_dict(full.detector).n_components == 2


def test_a_cascade_forces_extreme_on_scored_rows_only():
    frame = _frame()
    folds = _folds(frame)
    frame["cascade_indicator"] = 0.0
    rows = [10, folds[-1].test.start + 5]
    frame.iloc[rows, frame.columns.get_loc("cascade_indicator")] = 1.0
    out = detect_regimes(frame, folds, RegimeSettings(kind="volatility"), "1h")
    assert out.regimes[rows[1]] == "extreme"
    assert out.regimes[rows[0]] == UNKNOWN  # a train-only row is not scored


# -- the registry's per-regime choice -------------------------------------------------------


def _result(model: str, version: int, trades: dict[str, int], score: dict[str, float]) -> dict:
    per = {r: {"bars": 200.0, "n_trades": float(trades.get(r, 0)),
               "composite_score": score.get(r, 0.1), "max_drawdown": 0.1 * version,
               "sharpe": score.get(r, 0.1)}
           for r in ("low", "normal", "high", "extreme")}
    return {"status": "ok", "model_type": model, "run_id": f"{model}{version}" + "0" * 24,
            "version": str(version), "objective": "val_composite_score",
            "metrics": {"val_composite_score": 0.5 + version, "val_max_drawdown": 0.1 * version,
                        "val_n_trades": 100.0, "val_bars": 800.0},
            "regime_metrics": {"val": per}}


def _returns(results: list[dict], mean: float = 0.002, regimes=REGIMES) -> dict:
    """Per-bar net returns of each result on its selection window, ``mean`` a bar in every
    regime of ``regimes`` (sd 10 bps, 100 bars each), keyed as :func:`choose` keys them."""
    rng = np.random.default_rng(11)
    regime = np.repeat(np.array(regimes, dtype=object), 100)
    return {candidate_name(r): pd.DataFrame({
        "strategy_return": mean + rng.normal(0, 0.001, len(regime)), "regime": regime})
        for r in results}


def test_registry_choice_uses_the_fallback_exactly_where_evidence_is_missing():
    results = [
        _result("lightgbm", 1, {"low": 40, "normal": 40}, {"low": 2.0, "normal": 0.3}),
        _result("xgboost", 2, {"low": 40, "normal": 5}, {"low": 1.0, "normal": 9.0}),
        _result("lstm", 3, {}, {}),
    ]
    chosen = choose(results, "composite_score", min_trades=30, extreme_exposure=0.25,
                    returns=_returns(results))
    got = {r: (c.source, res["model_type"], c.exposure) for r, (c, res) in chosen.items()}
    assert got == {
        "low": ("evidence", "lightgbm", 1.0),       # both eligible: the higher score
        "normal": ("evidence", "lightgbm", 1.0),    # xgboost's 9.0 rests on 5 trades
        "high": ("fallback", "lstm", 1.0),          # no evidence: high -> LSTM
        "extreme": ("fallback", "lightgbm", 0.25),  # most conservative (lowest drawdown)
    }
    # with every trade count above the bar, no regime falls back
    rich = [_result(m, v, dict.fromkeys(("low", "normal", "high", "extreme"), 99),
                    {"high": float(v)}) for m, v in (("lightgbm", 1), ("xgboost", 2))]
    assert {c.source for c, _ in choose(rich, "composite_score", 30, 0.25,
                                        returns=_returns(rich)).values()} == {"evidence"}
    # runs without per-regime evidence (regime=none) or not registered give no choice
    ret = _returns(results)
    assert choose([{**results[0], "regime_metrics": {}}], "composite_score", 30, 0.25,
                  returns=ret) == {}
    assert choose([{**results[0], "version": None}], "composite_score", 30, 0.25,
                  returns=ret) == {}


def test_registry_choice_is_cash_where_the_candidate_loses_on_the_regimes_bars():
    results = [
        _result("lightgbm", 1, {"low": 40, "normal": 40}, {"low": 2.0, "normal": 0.3}),
        _result("xgboost", 2, {"low": 40, "normal": 5}, {"low": 1.0, "normal": 9.0}),
    ]
    returns = _returns(results)
    lose = returns["lightgbm:lightgbm"].copy()  # lightgbm loses 20 bps a bar in normal
    normal = (lose["regime"] == "normal").to_numpy()
    lose.loc[normal, "strategy_return"] -= 0.004
    returns["lightgbm:lightgbm"] = lose
    chosen = choose(results, "composite_score", min_trades=30, extreme_exposure=0.25,
                    returns=returns, min_psr=0.9)
    choice, result = chosen["normal"]
    # the evidence choice (lightgbm) did not beat cash there: the regime is cash, and the
    # result returned is the candidate that was considered (its run holds the detector)
    assert (choice.model, choice.source, choice.exposure, choice.candidate) == (
        "cash", "cash", 0.0, "lightgbm:lightgbm")
    assert result["model_type"] == "lightgbm" and "does not beat cash" in choice.reason
    assert chosen["low"][0].model == "lightgbm:lightgbm"  # it still wins low, where it earns


def test_registry_choice_when_the_scored_rows_lack_regimes():
    """A job logs per-regime evidence only for regimes its scored bars were in (a short 5m
    window has no high or extreme bar): those regimes fall back, the gate is not failed."""
    results = [_result("lightgbm", 1, {"low": 40, "normal": 40}, {"low": 2.0, "normal": 0.3}),
               _result("xgboost", 2, {"low": 10}, {"low": 1.0})]
    for r in results:
        for regime in ("high", "extreme"):
            del r["regime_metrics"]["val"][regime]
    chosen = choose(results, "composite_score", min_trades=30, extreme_exposure=0.25,
                    returns=_returns(results, regimes=("low", "normal")))
    got = {r: (c.source, res["model_type"], c.exposure) for r, (c, res) in chosen.items()}
    assert got == {
        "low": ("evidence", "lightgbm", 1.0),
        "normal": ("evidence", "lightgbm", 1.0),
        "high": ("cash", "xgboost", 0.0),      # fallback: no LSTM: the best overall (val 2.5)
        "extreme": ("cash", "lightgbm", 0.0),  # fallback: the lowest drawdown (0.1)
    }
    for regime in ("high", "extreme"):  # no bar there: the fallback cannot beat cash
        assert f"no scored bars in regime {regime}" in chosen[regime][0].reason
        assert "never trades (0 bars)" in chosen[regime][0].reason
        assert chosen[regime][0].n_trades == 0


# -- the walk-forward switching backtest ----------------------------------------------------


def test_walk_forward_switching_equals_a_hand_computed_one():
    ts = pd.date_range("2024-01-01", periods=10, freq="1h", tz="UTC")
    fold = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2, 2])
    regime = np.array(["low", "low", "low", "high", "high", "high", "low", "high", "high",
                       "low"], dtype=object)
    r = np.array([0.01, -0.02, 0.015, 0.03, -0.01, 0.02, 0.02, -0.03, 0.01, 0.02])

    def frame(pos):  # a candidate's executed returns: filled at the close, the fee only
        pos = np.asarray(pos, dtype=float)
        res = execute(pos, close_bars(ts, r, 0.001), 8760, predictions=pos * 0.01, labels=r)
        return res.returns.assign(fold=fold, regime=regime)

    # "A" is right in low, wrong in high; "B" the reverse (fold 0 is the evidence for fold 1)
    a = frame([1, -1, 1, -1, 1, -1, 1, 1, 1, 1])
    b = frame([-1, 1, -1, 1, -1, 1, -1, -1, 1, -1])
    # the floor at its weakest (min_psr 0: a positive net return on the regime's bars)
    out = walk_forward_switching({"lightgbm:A": a, "xgboost:B": b}, fee=0.001,
                                 periods_per_year=8760, min_trades=1, min_bars=2, min_psr=0.0)
    assert out["bars"] == 4
    first = out["choices"][0]
    assert first["fold"] == 1
    assert first["regimes"]["low"]["model"] == "lightgbm:A"
    assert first["regimes"]["high"]["model"] == "xgboost:B"
    # fold 1 by hand: low bar 6 -> A (+1), high bar 7 -> B (-1); fold 2: evidence from folds 0-1
    second = out["choices"][1]
    pick = {"lightgbm:A": a.position, "xgboost:B": b.position, "cash": pd.Series(np.zeros(10))}
    pos = np.array([1.0, -1.0,
                    pick[second["regimes"]["high"]["model"]].iloc[8],
                    pick[second["regimes"]["low"]["model"]].iloc[9]])
    rr = r[6:]
    turnover = np.abs(np.diff(np.concatenate([[0.0], pos])))
    net = pos * rr - 0.001 * turnover
    np.testing.assert_allclose(out["switching"].returns["strategy_return"].to_numpy(), net)
    assert out["switching"].metrics.total_return == pytest.approx(np.prod(1 + net) - 1)
    # buy & hold on the same bars: long from a flat start, one fee
    bh = rr - 0.001 * np.array([1.0, 0, 0, 0])
    np.testing.assert_allclose(out["buy_hold"].returns["strategy_return"].to_numpy(), bh)
    # the single best is chosen on earlier folds' overall score, fold by fold
    best = [c["single_best"] for c in out["choices"]]
    single = np.concatenate([pick[best[0]].to_numpy()[6:8], pick[best[1]].to_numpy()[8:10]])
    np.testing.assert_allclose(out["single_best"].returns["position"].to_numpy(), single)
    m = compute_metrics(net, out["switching"].trades["return"].to_numpy(), np.zeros(4), rr, 8760)
    assert out["switching"].metrics.sharpe == pytest.approx(m.sharpe)


def test_switching_applies_the_extreme_exposure_of_the_fallback():
    ts = pd.date_range("2024-01-01", periods=10, freq="1h", tz="UTC")
    r = np.array([0.01, -0.02, 0.03, 0.01, 0.02, -0.015, -0.01, -0.01, 0.02, -0.03])
    regime = np.array(["low", "low", "low", "extreme", "extreme", "extreme", "low",
                       "extreme", "extreme", "low"], dtype=object)
    pos = np.ones(10)
    frame = execute(pos, close_bars(ts, r, 0.001), 8760, labels=r).returns.assign(
        fold=[0] * 7 + [1] * 3, regime=regime)
    # one long trade entered in low: extreme has no trade entered there, so the fallback
    # (most conservative, at 0.25), which earned on fold 0's extreme bars (min_psr 0)
    out = walk_forward_switching({"lightgbm:A": frame}, fee=0.001, periods_per_year=8760,
                                 min_trades=1, min_bars=2, extreme_exposure=0.25, min_psr=0.0)
    assert out["choices"][0]["regimes"]["extreme"]["source"] == "fallback"
    np.testing.assert_allclose(out["switching"].returns["position"].to_numpy(),
                               [0.25, 0.25, 1.0])
    # with the default floor (PSR 0.9) three bars are not evidence enough: both regimes are
    # cash and the switching strategy stays flat
    flat = walk_forward_switching({"lightgbm:A": frame}, fee=0.001, periods_per_year=8760,
                                  min_trades=1, min_bars=2, extreme_exposure=0.25)
    assert {c["source"] for c in flat["choices"][0]["regimes"].values()} == {"cash"}
    assert (flat["switching"].returns["position"] == 0).all()
    assert flat["switching"].metrics.n_trades == 0
    assert flat["single_best"].metrics.n_trades == 1  # the comparison still trades


def test_a_cash_regime_takes_its_alias_off_and_the_map_says_cash(tmp_path):
    """A regime that was held by a version and now maps to cash: no gate, the alias is removed
    under the registry lock, the map records cash with the reason and the removed holder."""
    import json

    from mlflow.tracking import MlflowClient

    from huracan.alerts import Alert
    from huracan.db.session import make_engine
    from huracan.evaluation.evidence import CASH, beats_cash
    from huracan.regime.registry import REGIME_MAP_TAG, assign_aliases, current_map
    from huracan.regime.selection import RegimeChoice

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    name = "huracan-TESTUSDT-1h"
    client.create_registered_model(name)
    mv = client.create_model_version(name, source=str(tmp_path))
    client.set_registered_model_alias(name, "regime-high", mv.version)
    verdict = beats_cash(np.array([0.01, -0.02, 0.005]), 2, 0.9, what="lightgbm:abc")
    choice = RegimeChoice("high", CASH, 0.0, CASH, f"cash: {verdict.reason}", "composite_score",
                          0.4, 2, candidate="lightgbm:abc", cash=verdict.as_dict())
    alerts: list[Alert] = []

    class Recorder:
        def notify(self, alert: Alert) -> None:
            alerts.append(alert)

    engine = make_engine(f"sqlite:///{tmp_path / 'brain.db'}")
    run = client.create_run(client.create_experiment("sweep"))  # the sweep's job that chose
    mapping = assign_aliases(client, engine, name,
                             {"high": (choice, {"version": mv.version, "model_type": "lightgbm",
                                                "run_id": run.info.run_id})},
                             metric="composite_score", tolerance=0.05, min_eval_bars=48,
                             notifier=Recorder())
    entry = mapping["high"]
    assert (entry["model"], entry["source"], entry["decision"], entry["version"],
            entry["exposure"], entry["removed_version"], entry["candidate_version"]) == (
        "cash", "cash", "cash", None, 0.0, str(mv.version), str(mv.version))
    assert "does not beat cash" in entry["reason"]
    with pytest.raises(Exception, match="alias"):
        client.get_model_version_by_alias(name, "regime-high")
    # the map is an artifact of that run, linked from a short tag (registry hygiene)
    tag = client.get_registered_model(name).tags[REGIME_MAP_TAG]
    assert tag == f"runs:/{run.info.run_id}/registry/regime_map.json"
    assert json.loads(json.dumps(current_map(client, name))) == json.loads(json.dumps(mapping))
    assert [a.severity for a in alerts] == ["info"]
    assert alerts[0].title == f"{name}: regime-high is cash (position 0)"
