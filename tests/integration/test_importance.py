"""The feature-importance loop on real runs: analyse finished runs (GBDT and Keras) from MLflow,
store and log their rankings, detect shifts, the ``features analyze`` command, and (once the
pipeline runs the analyzer) top-N training on the stored ranking."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from omegaconf import open_dict
from typer.testing import CliRunner

from huracan.analysis.analyzer import analyze_job
from huracan.analysis.importance_store import latest_top_features, ranking_history, run_ranking
from huracan.cli.features import features_app
from huracan.db import migrate
from huracan.db.session import make_engine
from huracan.evaluation.importance import AGGREGATE
from huracan.models.lightgbm import LightGBMForecaster
from huracan.pipeline import analyze_run
from huracan.tracking.run import default_tracking_uri
from huracan.train import run_config

pytestmark = pytest.mark.slow

METHODS = ["shap", "permutation", "correlation", AGGREGATE]
TINY_CNN = ["model=cnn", "model.filters=4", "model.num_layers=1", "model.lookback=8",
            "model.epochs=1", "model.verbose=0", "model.head_units=4"]


class RecordingNotifier:
    def __init__(self) -> None:
        self.alerts: list = []

    def notify(self, alert) -> None:
        self.alerts.append(alert)


def _train(compose_cfg, *overrides: str):
    cfg = compose_cfg("registry.enabled=false", "explain.max_rows=20", *overrides)
    if "importance" in cfg:  # analysed explicitly here
        cfg.importance.enabled = False
    return cfg, run_config(cfg)


@pytest.fixture()
def store(compose_cfg, tmp_path):
    cfg = compose_cfg()
    engine = make_engine(str(cfg.db.url))
    migrate.upgrade(engine)
    client = MlflowClient(tracking_uri=default_tracking_uri(tmp_path / "mlruns"))
    yield engine, client, str(cfg.db.url)
    engine.dispose()


def test_analyze_past_runs_stores_logs_and_compares(compose_cfg, store):
    engine, client, _ = store
    _, first = _train(compose_cfg, "model=lightgbm")
    _, second = _train(compose_cfg, "model=lightgbm")
    notifier = RecordingNotifier()
    a = analyze_run(client, engine, first.run_id, n_repeats=2, notifier=notifier)
    assert a.model_type == "lightgbm" and a.symbol == "BTC/USDT" and a.timeframe == "1h"
    n = len(a.result.feature_names)
    assert n >= 15 and a.rows_stored == 4 * n and a.shift is None
    for method in METHODS:
        stored = run_ranking(engine, first.run_id, method)
        assert sorted(stored["rank"]) == list(range(1, n + 1))
        assert stored["feature"].tolist() == a.result.ranking(method)["feature"].tolist()
    files = {x.path for x in client.list_artifacts(first.run_id, "importance")}
    assert files == {f"importance/{m}.csv" for m in METHODS} | {
        "importance/rankings.csv", "importance/summary.json", "importance/families.json"}
    summary = json.loads(mlflow.artifacts.load_text(
        f"runs:/{first.run_id}/importance/summary.json"))
    assert summary["n_repeats"] == 2 and summary["shift"] is None
    metrics = client.get_run(first.run_id).data.metrics
    assert metrics["time/importance_permutation_s"] > 0
    # price features only: all their information is the own candles'
    assert metrics["importance/family_own_shap"] == pytest.approx(1.0)
    families = json.loads(mlflow.artifacts.load_text(
        f"runs:/{first.run_id}/importance/families.json"))
    assert families["summary"].startswith("uses mostly its own candles")
    # SHAP in the analysis agrees with the job's own SHAP artifact (same rows, same model)
    job_shap = pd.read_csv(client.download_artifacts(first.run_id, "shap/mean_abs_shap.csv"))
    np.testing.assert_allclose(
        a.result.ranking("shap").set_index("feature").loc[job_shap["feature"], "importance"],
        job_shap["mean_abs_shap"], rtol=1e-5)

    # the same job again: identical ranking, compared with the first, no alert
    b = analyze_run(client, engine, second.run_id, n_repeats=2, notifier=notifier)
    assert b.shift is not None and b.shift.previous_run_id == first.run_id
    assert b.shift.rho == pytest.approx(1.0) and not b.shift.alerted and notifier.alerts == []
    assert client.get_run(second.run_id).data.metrics["importance/shift_rho"] == pytest.approx(1)
    assert latest_top_features(engine, "BTC/USDT", "1h", 5) == b.result.top(5)
    assert ranking_history(engine, "BTC/USDT", "1h")["run_id"].nunique() == 2


def test_analyze_a_keras_run_and_the_cli(compose_cfg, store):
    engine, client, db_url = store
    _, run = _train(compose_cfg, *TINY_CNN)
    res = CliRunner().invoke(features_app, [
        "analyze", "--run-id", run.run_id, "--repeats", "1", "--top-n", "5",
        "--tracking-uri", client.tracking_uri, "--db-url", db_url])
    assert res.exit_code == 0, res.output
    assert f"run {run.run_id} (cnn BTC/USDT 1h)" in res.output
    assert "shift: no previous analysis" in res.output
    assert "families: uses mostly its own candles (own 100%; SHAP)" in res.output
    stored = run_ranking(engine, run.run_id, AGGREGATE)
    table_rows = [ln.split()[1] for ln in res.output.splitlines()[3:8]]
    assert table_rows == stored["feature"].head(5).tolist()
    assert set(run_ranking(engine, run.run_id, "shap")["importance"]) != {0.0}
    bad = CliRunner().invoke(features_app, [
        "analyze", "--run-id", "0" * 32, "--tracking-uri", client.tracking_uri,
        "--db-url", db_url])
    assert bad.exit_code == 2 and "error:" in bad.output


def test_run_without_logged_model_is_refused(compose_cfg, store):
    engine, client, _ = store
    _, run = _train(compose_cfg, "model=xgboost", "tracking.log_model=false")
    with pytest.raises(LookupError, match="no logged model"):
        analyze_run(client, engine, run.run_id)


def test_analyze_job_inside_an_active_run(store, tmp_path):
    engine, client, _ = store
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1200, 5)).astype(np.float32)
    y = 0.01 * X[:, 0] + 0.006 * X[:, 1] + rng.normal(0, 0.003, 1200)
    names = ["a", "b", "c", "d", "e"]
    model = LightGBMForecaster(n_estimators=80, early_stopping_rounds=10, log_period=0).fit(
        X[:800], y[:800], X[800:1000], y[800:1000], feature_names=names)
    mlflow.set_tracking_uri(client.tracking_uri)
    exp = mlflow.set_experiment("importance-job")
    with mlflow.start_run(experiment_id=exp.experiment_id) as run:
        out = analyze_job(engine, model=model, X_test=X[1000:], y_test=y[1000:], context=None,
                          X_train=X[:800], y_train=y[:800], symbol="SOL/USDT", timeframe="4h",
                          run_id=run.info.run_id, n_repeats=2)
    assert out.result.top(2) == ["a", "b"]
    assert latest_top_features(engine, "SOL/USDT", "4h", 2) == ["a", "b"]
    assert {x.path for x in client.list_artifacts(run.info.run_id, "importance")} >= {
        "importance/aggregate.csv", "importance/rankings.csv"}


def test_training_runs_the_analyzer_and_top_n_trains_on_the_stored_ranking(compose_cfg, store):
    """Needs the pipeline wiring (``importance.enabled``, ``features.top_n``)."""
    engine, client, _ = store
    cfg = compose_cfg("registry.enabled=false", "explain.max_rows=20", "model=lightgbm")
    cfg.importance.n_repeats = 2
    first = run_config(cfg)
    top = latest_top_features(engine, "BTC/USDT", "1h", 6)
    assert top is not None and run_ranking(engine, first.run_id, AGGREGATE)["rank"].min() == 1
    with open_dict(cfg):
        cfg.features.top_n = 6
    restricted = run_config(cfg)
    run = client.get_run(restricted.run_id)
    listed = mlflow.artifacts.load_text(
        f"runs:/{restricted.run_id}/features/feature_list.txt").split()
    assert sorted(listed) == sorted(top) and run.data.tags["n_features"] == "6"
    # the restricted run was itself analysed on its 6 columns; analyze_run reproduces it
    again = analyze_run(client, engine, restricted.run_id, n_repeats=2)
    assert sorted(again.result.feature_names) == sorted(top)
