"""Labels and trading rules through the real job: triple-barrier labels with uniqueness weights,
the embargo following the label's reach, per-fold rules fitted on validation, exit reasons."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from huracan.train import run_config

pytestmark = pytest.mark.slow


def test_triple_barrier_walk_forward_with_the_barrier_rule(compose_cfg, tmp_path):
    from mlflow.tracking import MlflowClient

    from huracan.tracking.run import default_tracking_uri

    cfg = compose_cfg("label=triple_barrier", "label.max_holding=12", "rule=barrier",
                      "rule.max_holding=12", "split=walk_forward", "split.train_bars=60d",
                      "split.val_bars=10d", "split.step_bars=30d", "model.n_estimators=60",
                      "model.objective=regression", "registry.enabled=false",
                      "importance.enabled=false", "explain.max_rows=20")
    res = run_config(cfg)
    client = MlflowClient(tracking_uri=default_tracking_uri(tmp_path / "mlruns"))
    run = client.get_run(res.run_id)
    assert run.data.tags["label_kind"] == "triple_barrier"
    assert run.data.tags["rule_kind"] == "barrier"
    folds = pd.read_parquet(client.download_artifacts(res.run_id, "walkforward/folds.parquet",
                                                      str(tmp_path)))
    # the embargo followed the label's reach (12 bars), not features.horizon (1)
    assert ((folds.oos_start - folds.val_end) > pd.Timedelta(hours=12)).all()
    with open(client.download_artifacts(res.run_id, "rule/fit.json", str(tmp_path))) as fh:
        fit = json.load(fh)
    assert fit["rule"] == "barrier" and len(fit["folds"]) == len(folds)
    assert all(f["chosen_on"] == "validation" for f in fit["folds"])
    # flat is a candidate of each fold's grid: the run tags say how many folds chose it and
    # what the served (last) fold chose, with the reason when it is flat
    flat = [f["chosen"] == "flat" for f in fit["folds"]]
    assert run.data.tags["rule_flat_folds"] == f"{sum(flat)}/{len(flat)}"
    assert run.data.tags["rule_chosen"] == fit["folds"][-1]["chosen"]
    assert ("rule_flat_reason" in run.data.tags) == flat[-1]
    min_trades = int(run.data.params["selection.min_trades"])
    for f in fit["folds"]:
        enough = {g[0] for g in f["grid"] if g[2] >= min_trades}
        assert (f["chosen"] == "flat") == (not any(c["beats"] for c in f["cash"]
                                                   if c["threshold"] in enough))
    trades = pd.read_parquet(client.download_artifacts(res.run_id, "backtest/oos_trades.parquet",
                                                       str(tmp_path)))
    assert set(trades.exit_reason) <= {"upper", "lower", "time", "signal", "end_of_data"}
    assert len(trades) == res.metrics["oos_n_trades"]
    assert (trades.bars <= 12).all()  # no trade outlives the time barrier
