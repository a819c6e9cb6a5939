"""The end-of-sweep gate callback in a sweep over several symbols: a model without an eligible
candidate is reported from its own candidates, not the sweep's (SQLite stores under tmp)."""

from __future__ import annotations

import json

from omegaconf import OmegaConf

from huracan.db.session import make_engine
from huracan.registry import events
from huracan.registry.callback import GATE_FILE, RegistryGate


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
