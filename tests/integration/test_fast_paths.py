"""The product's paths in-process on a tiny slice, for the fast tier (``make test``): a train job
(:func:`huracan.pipeline.run_job` through the Hydra config), the registry gate
(:func:`huracan.registry.promotion.gate_candidate` on a local MLflow SQLite store), serving (the
logged pyfunc predicting raw candles), the PPO sizer job (a few hundred timesteps) and a tune
study (2 trials). The slow tier runs the same paths at full size, as commands
(tests/integration/test_train.py, test_registry.py, test_pyfunc_raw.py, test_sizer.py,
test_tune.py); here each path runs in seconds on the first 40 days of the shipped 5m sample
resampled to 1h (960 bars), with LightGBM at 20 trees."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from huracan.config import register_resolvers
from huracan.db.session import make_engine
from huracan.pipeline import run_job
from huracan.registry import events
from huracan.registry.promotion import gate_candidate, registered_model_name
from huracan.settings import JobSettings
from huracan.tracking.names import modern_name
from huracan.tracking.run import default_tracking_uri

REPO = Path(__file__).resolve().parents[2]
NAME = registered_model_name("BTC/USDT", "1h")
DAYS = 40  # of 5m bars: 11,520 rows, 960 hourly bars
#: cheap training: 20 trees, SHAP on 10 rows, permutation importance once on 50 rows
CHEAP = ["model=lightgbm", "model.n_estimators=20", "model.early_stopping_rounds=5",
         "model.min_child_samples=10", "model.n_jobs=1", "explain.max_rows=10",
         "importance.n_repeats=1", "importance.max_rows=50", "selection.min_trades=0"]


def _compose(config: str, tmp: Path, *overrides: str) -> dict[str, Any]:
    """The resolved config ``config`` (train, tune, sizer) with its stores under ``tmp``."""
    register_resolvers()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config, overrides=[
            f"tracking.store_dir={tmp / 'mlruns'}", "tracking.tracking_uri=null",
            f"db.url=sqlite:///{tmp / 'brain.db'}", *overrides])
    resolved: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    resolved.pop("hydra", None)
    return resolved


def _train(tmp: Path, data: Path, *overrides: str) -> Any:
    resolved = _compose("train", tmp, f"data.path={data}",
                        f"data.quality_log={tmp / 'dq.jsonl'}", *CHEAP, *overrides)
    return run_job(JobSettings.from_dict(resolved), resolved=resolved)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, sample_path) -> Path:
    """The first :data:`DAYS` days of the shipped 5m BTC/USDT sample."""
    df = pd.read_parquet(sample_path)
    out = tmp_path_factory.mktemp("tiny") / "binance-spot_BTCUSDT_5m_tiny.parquet"
    df[df.timestamp < df.timestamp.iloc[0] + pd.Timedelta(days=DAYS)].to_parquet(out)
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny) -> tuple[Path, Any, MlflowClient]:
    """One forward-split LightGBM job, logged and registered (no gate yet)."""
    tmp = tmp_path_factory.mktemp("fast_train")
    res = _train(tmp, tiny)
    uri = default_tracking_uri(tmp / "mlruns")
    mlflow.set_tracking_uri(uri)
    return tmp, res, MlflowClient(tracking_uri=uri)


def test_train_job_logs_a_finished_run_and_registers_a_version(trained):
    _, res, client = trained
    run = client.get_run(res.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["symbol"] == "BTC/USDT" and run.data.tags["timeframe"] == "1h"
    assert run.data.tags["train_end"] < run.data.tags["val_start"] < run.data.tags["test_start"]
    for name in ("val_composite_score", "test_sharpe", "test_n_trades"):
        assert np.isfinite(run.data.metrics[name]), name
    # issue 26: bookkeeping grouped by `/` prefix, the scored windows' trading metrics top-level
    m = run.data.metrics
    assert [k for k in m if modern_name(k) != k] == []  # no time_*, labels_dropped_*, __regime_
    assert {"time/fit_s", "time/log_metrics_s", "labels/dropped_end_of_data"} <= set(m)
    assert any(k.startswith("time/importance_") for k in m)
    assert any(k.startswith("regime/") and k.endswith("/val_sharpe") for k in m)
    top = {k for k in m if "/" not in k}
    assert top and all(k.startswith(("val_", "test_")) for k in top), sorted(top)
    mv = client.get_model_version(NAME, str(res.version))
    assert mv.run_id == res.run_id and mv.status == "READY"


def test_gate_decides_and_records_the_decision(trained):
    tmp, res, client = trained
    engine = make_engine(f"sqlite:///{tmp / 'brain.db'}")
    try:
        out = gate_candidate(client, engine, NAME, str(res.version), min_eval_bars=20,
                             bootstrap_resamples=50)
        [ev] = events.history(engine, NAME)
    finally:
        engine.dispose()
    assert ev.candidate_version == str(res.version) and ev.champion_version is None
    assert ev.event == ("promoted" if out.decision.promote else "rejected")
    # no champion: beating cash is the whole test, and the evidence says whether it did
    assert out.decision.promote == bool(out.evidence["cash"]["beats"])


def test_logged_pyfunc_predicts_raw_candles_as_the_run_backtested(trained, tiny):
    from huracan.data.ohlcv import load_ohlcv

    tmp, res, client = trained
    model = mlflow.pyfunc.load_model(f"models:/{NAME}/{res.version}")
    candles, _ = load_ohlcv(tiny, "1h")
    out = model.predict(candles)
    warmup = model.unwrap_python_model().spec.warmup_bars
    assert len(out) == len(candles) - warmup and out["timestamp"].is_monotonic_increasing
    assert set(out["position"]) <= {-1.0, 0.0, 1.0}
    returns = pd.read_parquet(client.download_artifacts(res.run_id, "backtest/returns.parquet",
                                                        str(tmp)))
    got = out.set_index("timestamp").reindex(pd.DatetimeIndex(returns["timestamp"]))
    np.testing.assert_allclose(got["forecast"], returns["prediction"], rtol=1e-12, atol=0)
    np.testing.assert_array_equal(got["position"].to_numpy(), returns["position"].to_numpy())


def test_sizer_job_trains_ppo_on_a_walk_forward_forecaster(tmp_path, tiny):
    from huracan import sizer
    from huracan.sizing.job import POLICIES, registered_sizer_name

    fc = _train(tmp_path, tiny, "split=walk_forward", "split.train_bars=15d",
                "split.val_bars=3d", "split.step_bars=4d", "registry.enabled=false",
                "importance.enabled=false")
    register_resolvers()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("sizer", overrides=[
            f"tracking.store_dir={tmp_path / 'mlruns'}", "tracking.tracking_uri=null",
            f"db.url=sqlite:///{tmp_path / 'brain.db'}", f"data.path={tiny}",
            f"sizer.forecaster_run={fc.run_id}", "sizer.funding=none",
            "sizer.total_timesteps=128", "sizer.eval_every=64", "sizer.ppo.n_steps=64",
            "sizer.ppo.batch_size=32", "sizer.ppo.n_epochs=1", "sizer.episode_bars=48"])
    score = sizer.main(cfg)  # the Hydra task itself, given its config (no Hydra run)
    assert isinstance(score, float)
    client = MlflowClient(tracking_uri=default_tracking_uri(tmp_path / "mlruns"))
    exp = client.get_experiment_by_name("huracan")
    [run] = [r for r in client.search_runs([exp.experiment_id])
             if r.data.tags.get("huracan.role") == "sizer"]
    assert run.data.tags["forecaster_run_id"] == fc.run_id
    assert run.data.tags["serve_policy"] in (*POLICIES, "flat")
    assert {"time/train_s", "time/evaluate_s"} <= set(run.data.metrics)
    # registered through the sizer's gate: the decision is in the brain store
    engine = make_engine(f"sqlite:///{tmp_path / 'brain.db'}")
    try:
        assert events.history(engine, registered_sizer_name("BTC/USDT", "1h"))
    finally:
        engine.dispose()


def test_tune_study_of_two_trials(tmp_path, tiny):
    from huracan.tune import run_study
    from huracan.tuning import TuneSettings

    resolved = _compose("tune", tmp_path, f"data.path={tiny}",
                        f"data.quality_log={tmp_path / 'dq.jsonl'}", *CHEAP,
                        "tune.n_trials=2", "tune.n_startup_trials=2", "tune.pruner=none",
                        f"tune.preset_dir={tmp_path / 'tuned'}", "tune.explain_rows=5",
                        "registry.enabled=false", "importance.enabled=false")
    out = run_study(resolved, TuneSettings.from_dict(resolved.pop("tune")), [])
    assert out["n_trials"] == 2 and out["complete"] + out["pruned"] == 2
    client = MlflowClient(tracking_uri=default_tracking_uri(tmp_path / "mlruns"))
    parent = client.get_run(out["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.metrics["n_trials"] == 2
    assert "time/mean_trial_s" in parent.data.metrics
    # a preset is written exactly when the best trial beats cash on validation
    assert (out["preset"] is not None) == (parent.data.metrics["best_val_beats_cash"] == 1.0)

