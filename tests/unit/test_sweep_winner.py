"""One winner per sweep (issue 26): the parent run's ``best_run_id`` is the registry gate's
candidate, the best ELIGIBLE job, never a higher score that is not eligible; and every
experiment Huracan creates or reuses opens on its runs in the MLflow UI."""

from __future__ import annotations

import math

from huracan.callbacks.sweep import (
    best_candidates,
    headline_metrics,
    sweep_winner,
    winner_tags,
)
from huracan.evaluation.evidence import eligibility


def _job(run: str, model: str, score: float, trades: int, *, registered: bool = True,
         status: str = "ok") -> dict:
    r = {"status": status, "run_id": run * 32, "model_type": model, "job": run,
         "objective": "val_composite_score", "objective_value": score, "scheme": "forward",
         "metrics": {"val_n_trades": float(trades), "val_sharpe": score * 2,
                     "val_psr": 0.95, "val_dsr": 0.8, "val_total_return": 0.1,
                     "val_breakeven_bps": 12.0, "test_sharpe": 0.7, "test_n_trades": 40.0,
                     "test_total_return": -0.02, "test_psr": math.nan}}
    if registered:
        r |= {"registered_model": "huracan-BTCUSDT-1h", "version": run}
    return r


def _gate_choice(results: list[dict], min_trades: int) -> dict:
    """What RegistryGate.decide picks (its own two calls), for the single registered model."""
    [cand] = best_candidates(results, set(eligibility(results, min_trades).eligible))
    return cand


def test_an_ineligible_top_score_is_not_the_winner():
    results = [_job("a", "lightgbm", 0.9, trades=16), _job("b", "cnn", 0.4, trades=45),
               _job("c", "xgboost", 0.3, trades=60), _job("d", "mlp", 2.0, 90, status="failed")]
    w = sweep_winner(results, min_trades=30)
    assert w.best is not None and w.best["model_type"] == "cnn"
    assert w.best is _gate_choice(results, 30)  # the parent names the gate's candidate
    assert w.top_ineligible is not None and w.top_ineligible["model_type"] == "lightgbm"
    assert w.ineligible_reason == "16 trade(s) on val < selection.min_trades 30"
    tags = winner_tags(w)
    assert tags["best_run_id"] == "b" * 32 and tags["best_model"] == "cnn"
    assert tags["top_ineligible_run_id"] == "a" * 32
    assert tags["top_ineligible_reason"].startswith("not eligible: 16 trade(s)")
    assert "2 eligible of 4 job(s)" in tags["best_note"]
    m = headline_metrics(w)
    assert m["best/val_sharpe"] == 0.8 and m["best/val_n_trades"] == 45.0
    assert m["best/test_sharpe"] == 0.7 and m["best/val_breakeven_bps"] == 12.0
    assert m["best/objective_value"] == 0.4 and m["best/ineligible_top_score"] == 0.9
    assert "best/test_psr" not in m  # NaN metrics are left out


def test_an_eligible_top_score_names_no_ineligible_job():
    results = [_job("a", "lightgbm", 0.9, trades=31), _job("b", "cnn", 1.5, trades=3)]
    w = sweep_winner(results, min_trades=30)
    # cnn scores higher but traded 3 times: lightgbm wins, cnn is named as not eligible
    assert w.best is not None and w.best["run_id"] == "a" * 32
    assert w.top_ineligible is not None and w.top_ineligible["run_id"] == "b" * 32
    w2 = sweep_winner(results[:1], min_trades=30)
    assert w2.top_ineligible is None and "top_ineligible_run_id" not in winner_tags(w2)


def test_no_eligible_job_means_no_winner_and_the_reason():
    results = [_job("a", "lightgbm", 0.9, trades=3), _job("b", "cnn", 0.2, trades=1)]
    w = sweep_winner(results, min_trades=30)
    assert w.best is None and w.top_ineligible is not None
    tags = winner_tags(w)
    assert "best_run_id" not in tags and tags["best_note"].startswith("no winner: no candidate")
    assert headline_metrics(w) == {"best/ineligible_top_score": 0.9}


def test_without_registry_the_best_eligible_job_wins():
    results = [_job("a", "lightgbm", 0.9, trades=5, registered=False),
               _job("b", "cnn", 0.5, trades=50, registered=False),
               _job("c", "xgboost", math.nan, trades=50, registered=False)]
    w = sweep_winner(results, min_trades=30)
    assert w.best is not None and w.best["model_type"] == "cnn"


def test_every_experiment_is_marked_model_training(tmp_path):
    """Created or reused (a store made before the tag), the experiment carries
    mlflow.experimentKind=custom_model_development; a kind a user chose is kept."""
    from mlflow import MlflowClient

    from huracan.tracking.run import (
        EXPERIMENT_KIND_TAG,
        MODEL_TRAINING,
        configure,
        default_tracking_uri,
        experiment_id,
    )

    store = tmp_path / "mlruns"
    exp = configure(None, store, "huracan")
    client = MlflowClient(tracking_uri=default_tracking_uri(store))
    assert client.get_experiment(exp).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING
    old = client.create_experiment("huracan-monitoring")  # as an older Huracan left it
    assert EXPERIMENT_KIND_TAG not in client.get_experiment(old).tags
    assert experiment_id(client, "huracan-monitoring") == old
    assert client.get_experiment(old).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING
    chosen = client.create_experiment("mine", tags={EXPERIMENT_KIND_TAG: "genai_development"})
    assert experiment_id(client, "mine") == chosen
    assert client.get_experiment(chosen).tags[EXPERIMENT_KIND_TAG] == "genai_development"
