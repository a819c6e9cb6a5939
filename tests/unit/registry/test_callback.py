"""The end-of-sweep gate callback in a sweep over several symbols: a model without an eligible
candidate is reported from its own candidates, not the sweep's (SQLite stores under tmp)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from omegaconf import OmegaConf

from huracan.callbacks.gate import GATE_FILE, RegistryGate
from huracan.db.session import make_engine
from huracan.registry import events


def _result(symbol: str, run: str, trades: int) -> dict:
    return {"status": "ok", "registered_model": f"huracan-{symbol}-5m", "run_id": run * 32,
            "model_type": "lightgbm", "version": "1", "objective": "oos_composite_score",
            "objective_value": 0.5, "metrics": {"oos_n_trades": float(trades)}}


def test_a_model_without_an_eligible_candidate_is_reported_from_its_own(tmp_path):
    config = OmegaConf.create({
        "registry": {"enabled": True, "metric": "composite_score", "tolerance": 0.05,
                     "min_eval_bars": 168, "min_dsr": None, "bootstrap_resamples": 10},
        "tracking": {"tracking_uri": None, "store_dir": str(tmp_path / "mlruns"),
                     "experiment_name": "huracan", "log_model": True},
        "db": {"url": f"sqlite:///{tmp_path / 'brain.db'}"},
        "alerts": {"_target_": "huracan.alerts.LogNotifier"},
        "selection": {"min_trades": 30}, "regime": {"kind": "none"}})
    results = [_result("ADABTC", "a", 5), _result("ETCBTC", "e", 22),
               _result("ETCBTC", "f", 12)]
    RegistryGate().decide(config, results, None, tmp_path)
    decisions = {d["model"]: d for d in json.loads((tmp_path / GATE_FILE).read_text())[
        "decisions"]}
    ada, etc = decisions["huracan-ADABTC-5m"], decisions["huracan-ETCBTC-5m"]
    assert (ada["decision"], ada["n_candidates"], etc["n_candidates"]) == ("skipped", 1, 2)
    assert ada["reason"] == ("no candidate is eligible (>= 30 trades on the selection window): "
                             "lightgbm (aaaaaaaa): 5 trade(s) on oos: nothing promoted")
    assert "eeeeeeee" in etc["reason"] and "aaaaaaaa" not in etc["reason"]
    [ev] = events.history(make_engine(f"sqlite:///{tmp_path / 'brain.db'}"),
                          "huracan-ETCBTC-5m")
    assert ev.event == "skipped" and set(ev.evidence["eligibility"]) == {
        "lightgbm (eeeeeeee)", "lightgbm (ffffffff)"}


def test_store_trials_counts_every_training_job_and_tuning_trial_of_the_symbol(tmp_path):
    """A real MLflow SQLite store: jobs (FINISHED, a model_type tag) and Optuna trials (pruned
    ones too) on BTC/USDT 1h count; a failed job, sweep parents, a study, a sizer run and runs
    of another symbol or timeframe do not."""
    import math

    from mlflow.tracking import MlflowClient

    from huracan.callbacks.gate import store_trials
    from huracan.tracking.run import default_tracking_uri

    client = MlflowClient(tracking_uri=default_tracking_uri(tmp_path / "mlruns"))
    exp = client.create_experiment("huracan")
    btc = {"symbol": "BTC/USDT", "timeframe": "1h"}

    def run(tags, status="FINISHED", sharpe=None):
        r = client.create_run(exp, tags=tags)
        if sharpe is not None:
            client.log_metric(r.info.run_id, "val_sharpe", sharpe)
        client.set_terminated(r.info.run_id, status=status)

    for s in (0.5, 1.5, -0.5):
        run(btc | {"model_type": "lightgbm"}, sharpe=s)               # sweep jobs / runs
    run(btc | {"model_type": "xgboost", "huracan.trial": "0",
               "huracan.trial_state": "complete"}, sharpe=1.0)      # an Optuna trial
    run(btc | {"model_type": "xgboost", "huracan.trial": "1",
               "huracan.trial_state": "pruned"}, status="FAILED")   # pruned: tried all the same
    run(btc | {"model_type": "lightgbm"}, status="FAILED")          # failed: scored nothing
    run(btc | {"huracan.role": "sweep"})
    run(btc | {"huracan.role": "study"})
    run(btc | {"huracan.role": "sizer", "model_type": "ppo"})
    run({"symbol": "ETH/USDT", "timeframe": "1h", "model_type": "lightgbm"}, sharpe=9.0)
    run({"symbol": "BTC/USDT", "timeframe": "5m", "model_type": "lightgbm"}, sharpe=9.0)
    got = store_trials(client, [exp], "BTC/USDT", "1h")
    assert got.n == 5
    assert sorted(got.sharpes["val"]) == [-0.5, 0.5, 1.0, 1.5]
    var = got.sr_variance(8760.0)["val"]
    assert var == pytest.approx(np.var(np.array([0.5, 1.5, -0.5, 1.0]) / math.sqrt(8760.0),
                                        ddof=1))


def test_the_dsr_of_one_candidate_is_deflated_by_the_stores_trials():
    """One candidate: N and the Sharpe variance come from the store; the benchmark is the
    expected maximum of N trials (Bailey & Lopez de Prado 2014), so the DSR falls below the PSR
    as N grows."""
    from huracan.evaluation import statistics as st
    from huracan.evaluation.evidence import deflate

    cand = {"r": {"sr": 0.08, "skew": 0.0, "kurtosis": 3.0, "bars": 600}}
    alone = deflate(cand)["r"]
    seven = deflate(cand, n_trials=7, sr_variance=0.0004)["r"]
    assert alone["n_trials"] == 1 and alone["benchmark_sr"] == 0.0
    assert seven["n_trials"] == 7
    assert seven["benchmark_sr"] == pytest.approx(st.expected_max_sharpe(7, 0.0004))
    assert seven["dsr"] < alone["dsr"]
    # several candidates: their own variance, N the larger count
    two = {"a": cand["r"], "b": {"sr": 0.02, "skew": 0.0, "kurtosis": 3.0, "bars": 600}}
    both = deflate(two, n_trials=7, sr_variance=99.0)["a"]
    assert both["n_trials"] == 7 and both["sr_variance"] == pytest.approx(
        np.var([0.08, 0.02], ddof=1))
    assert deflate(two, n_trials=1)["a"]["n_trials"] == 2
