"""Drift of a registered model, end to end: a LightGBM trained through the real entry point
(`huracan.train.run_config`) on the shipped sample's January-June candles and promoted; `huracan
drift report` as a command against that MLflow registry and a brain store built here. July to
September and the 2018 crash months against its training window; its training window against
itself; the retrain request, the data-quality row, the alert, the MLflow run and the Evidently
workspace; the monitor hook and the weekly rescale; the store rows on Postgres."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sqlalchemy import select
from typer.testing import CliRunner

from huracan.analysis import drift_store
from huracan.analysis.drift import (
    MONITORING_EXPERIMENT,
    check_drift_for_monitor,
    drift_for_model,
    rescale_due,
    weekly_rescale,
)
from huracan.cli import app
from huracan.db import migrate
from huracan.db.session import make_engine
from huracan.db.tables import DataQualityLog
from huracan.tracking.run import default_tracking_uri
from huracan.train import run_config

pytestmark = pytest.mark.slow
NAME = "huracan-BTCUSDT-1h"


class Collect:
    """A notifier that keeps the alerts."""

    def __init__(self) -> None:
        self.alerts: list = []

    def notify(self, alert) -> None:
        self.alerts.append(alert)


@pytest.fixture(scope="module")
def model(tmp_path_factory, sample_path):
    """LightGBM trained on the sample's candles before July 2024 (train/val/test 90/5/5: its
    training window runs from January to mid-June), registered and promoted to production."""
    from hydra import compose, initialize_config_dir

    from huracan.config import register_resolvers

    tmp = tmp_path_factory.mktemp("drift")
    df = pd.read_parquet(sample_path)
    early = tmp / "jan_jun.parquet"
    df[pd.to_datetime(df["timestamp"], utc=True) < "2024-07-01"].to_parquet(early)
    register_resolvers()
    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[2] / "conf"),
                               version_base="1.3"):
        cfg = compose("train", overrides=[
            "model.n_estimators=60", f"data.path={early}", "split.train=0.9", "split.val=0.05",
            "split.test=0.05", "explain.max_rows=20", "importance.enabled=false",
            f"tracking.store_dir={tmp / 'mlruns'}", "tracking.tracking_uri=null",
            f"data.quality_log={tmp / 'dq.jsonl'}", f"db.url=sqlite:///{tmp / 'train.db'}"])
    res = run_config(cfg)
    assert res.registered_model == NAME and res.version is not None
    uri = default_tracking_uri(tmp / "mlruns")
    client = MlflowClient(tracking_uri=uri)
    client.set_registered_model_alias(NAME, "production", res.version)
    mlflow.set_tracking_uri(uri)
    return tmp, uri, res


def _db(tmp: Path, name: str) -> str:
    url = f"sqlite:///{tmp / name}"
    eng = make_engine(url)
    migrate.upgrade(eng)
    eng.dispose()
    return url


def _crash_file(tmp: Path, candles_1h: pd.DataFrame) -> Path:
    ts = pd.to_datetime(candles_1h["timestamp"], utc=True)
    path = tmp / "btc_2018q1.parquet"
    candles_1h[(ts >= "2018-01-01") & (ts < "2018-04-01")].to_parquet(path)
    return path


def test_cli_july_september_against_the_training_window(model, sample_path, caplog):
    tmp, uri, res = model
    db = _db(tmp, "cli.db")
    ws = tmp / "ws_cli"
    caplog.set_level(logging.WARNING, logger="huracan.alerts")
    out = CliRunner().invoke(app, [
        "drift", "report", "BTC/USDT", "--timeframe", "1h", "--from", "2024-07-01",
        "--to", "2024-09-06T23:00", "--data", str(sample_path), "--workspace", str(ws),
        "--tracking-uri", uri, "--db-url", db, "--json"])
    # what the fixture implies: 10 of the 21 features drift, a share of 0.476, under the default
    # drift share 0.5: a report, no dataset drift, exit 0
    assert out.exit_code == 0, out.output
    rep = json.loads(out.output)
    print(f"\nJul-Sep vs training window {rep['reference_start']} .. {rep['reference_end']}: "
          f"share {rep['drift_share']:.3f} ({rep['n_drifted']}/{rep['n_features']}) "
          f"{rep['drifted_features']}; forecast drift {rep['prediction']['score']:.4f}, "
          f"label drift {rep['target']['score']:.4f}; exit {out.exit_code}")
    assert rep["model"] == NAME and rep["version"] == res.version
    assert rep["reference_start"].startswith("2024-01") and rep["reference_end"] < "2024-07"
    assert rep["current_start"].startswith("2024-07-01")
    assert (rep["n_drifted"], rep["n_features"]) == (10, 21)
    assert rep["drift_share"] == pytest.approx(10 / 21) and rep["dataset_drift"] is False
    assert rep["prediction"]["role"] == "prediction" and rep["target"]["role"] == "target"
    assert len(rep["scaling"]) == rep["n_features"]
    assert {"rv_24", "rv_72"} <= set(rep["drifted_features"])
    assert Path(rep["html_path"]).exists() and Path(rep["json_path"]).exists()
    # the monitoring run, linked to the version by tags, with the report and metrics
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(rep["report_run_id"])
    tags, metrics = run.data.tags, run.data.metrics
    assert tags["huracan.monitored_model"] == NAME
    assert tags["huracan.monitored_version"] == res.version
    assert tags["huracan.monitored_run"] == res.run_id and tags["huracan.role"] == "drift"
    assert metrics["drift_share"] == pytest.approx(rep["drift_share"])
    assert metrics["n_drifted"] == rep["n_drifted"] and "drift_score/rv_24" in metrics
    assert run.info.status == "FINISHED"
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "drift")}
    assert {"drift/drift_report.html", "drift/drift_report.json", "drift/columns.csv",
            "drift/scaling.csv", "drift/drift_summary.json"} <= arts
    assert client.get_experiment(run.info.experiment_id).name == MONITORING_EXPERIMENT
    mv = client.get_model_version(NAME, res.version)
    assert mv.tags["huracan.last_drift_run"] == run.info.run_id
    # the brain store: the drift_reports row, and the decision rows only when over threshold
    engine = make_engine(db)
    rows = drift_store.drift_history(engine, NAME)
    assert len(rows) == 1 and rows[0].report_run_id == run.info.run_id
    assert rows[0].drifted_features == rep["drifted_features"]
    requests = drift_store.retrain_requests(engine)
    with engine.connect() as conn:
        dq = conn.execute(select(DataQualityLog)).all()
    alerts = [r for r in caplog.records if "feature drift" in r.getMessage()]
    assert requests == [] and dq == [] and alerts == []  # under the threshold: no decision rows
    engine.dispose()
    # the Evidently workspace received the snapshot, in the model's project
    from evidently.ui.workspace import Workspace

    w = Workspace(str(ws))
    (project,) = w.search_project(NAME)
    assert [str(s) for s in w.list_runs(project.id)] == [rep["snapshot_id"]]


def test_cli_training_window_against_itself_finds_no_drift(model, caplog):
    tmp, uri, res = model
    db = _db(tmp, "same.db")
    tags = MlflowClient(tracking_uri=uri).get_run(res.run_id).data.tags
    caplog.set_level(logging.WARNING, logger="huracan.alerts")
    out = CliRunner().invoke(app, [
        "drift", "report", "BTC/USDT", "-t", "1h", "--from", tags["train_start"],
        "--to", tags["train_end"], "--workspace", str(tmp / "ws_same"), "--tracking-uri", uri,
        "--db-url", db])
    assert out.exit_code == 0, out.output
    assert "drift share 0.000 (0/" in out.output and "no drift" in out.output
    assert "drifted features: none" in out.output
    assert "[overlaps the model's training/validation data]" in out.output
    for key in ("html:", "json:", "mlflow run:", "workspace:"):
        assert key in out.output
    engine = make_engine(db)
    assert drift_store.retrain_requests(engine) == []
    (row,) = drift_store.drift_history(engine, NAME)
    assert row.drift_share == 0.0 and not row.drifted
    assert row.prediction_drifted is False and row.target_drifted is False
    engine.dispose()
    assert not [r for r in caplog.records if "feature drift" in r.getMessage()]


def test_the_2018_crash_is_flagged_and_requests_a_retrain(model, candles_1h):
    tmp, uri, _ = model
    client = MlflowClient(tracking_uri=uri)
    engine = make_engine(_db(tmp, "crash.db"))
    notifier = Collect()
    crash = _crash_file(tmp, candles_1h)
    out = drift_for_model(client, engine, NAME, data_path=crash,
                          current=("2018-01-15", "2018-03-31 23:00"),
                          workspace=tmp / "ws_crash", notifier=notifier)
    rep = out.report
    print(f"\n2018 Q1 crash vs training window: share {rep.drift_share:.3f} "
          f"({rep.n_drifted}/{rep.n_features}) {rep.drifted_features}")
    assert out.drifted and rep.drift_share > 0.6
    assert {"rv_24", "atr_14", "ret_1"} <= set(rep.drifted_features)
    assert rep.target is not None and rep.target.drifted
    assert "rv_24" in rep.scaling_flagged
    # the 2018 file does not hold the training window: the reference came from the run's file,
    # and it is exactly the rows the model's scaler was fitted on
    assert str(rep.reference_start).startswith("2024-01") and out.reference_check < 1e-3
    assert not out.current_overlaps_training
    assert out.retrain_request_id is not None and out.retrain_request_created
    (req,) = drift_store.retrain_requests(engine)
    assert req.id == out.retrain_request_id and req.model_name == NAME
    assert req.symbol == "BTC/USDT" and req.timeframe == "1h" and req.consumed_at is None
    assert req.report_run_id == out.report_run_id and req.drift_report_id == out.drift_report_id
    assert "features drifted" in req.reason
    with engine.connect() as conn:
        (dq,) = conn.execute(select(DataQualityLog)).all()
    assert dq.issue_type == "feature_drift" and dq.details["report_run_id"] == out.report_run_id
    (alert,) = notifier.alerts
    assert "feature drift" in alert.title and alert.details["report_run"] == out.report_run_id
    # a second report while the request is pending adds no second request, but alerts again
    again = drift_for_model(client, engine, NAME, data_path=crash, current="30d",
                            workspace=tmp / "ws_crash", notifier=notifier)
    assert again.drifted and again.retrain_request_id == out.retrain_request_id
    assert not again.retrain_request_created and len(drift_store.retrain_requests(engine)) == 1
    assert len(notifier.alerts) == 2 and len(drift_store.drift_history(engine, NAME)) == 2
    from evidently.ui.workspace import Workspace

    w = Workspace(str(tmp / "ws_crash"))
    (project,) = w.search_project(NAME)
    assert len(w.list_runs(project.id)) == 2
    engine.dispose()


def test_cli_exit_codes_for_drift_and_bad_input(model, candles_1h):
    tmp, uri, _ = model
    db = _db(tmp, "codes.db")
    runner = CliRunner()
    base = ["drift", "report", "BTC/USDT", "--tracking-uri", uri, "--db-url", db,
            "--workspace", str(tmp / "ws_codes")]
    crash = _crash_file(tmp, candles_1h)
    drifted = runner.invoke(app, [*base, "--data", str(crash)])
    assert drifted.exit_code == 4, drifted.output
    assert "DRIFT" in drifted.output and "retrain request" in drifted.output
    for args, needle in ((["--current", "abc"], "expected bars"),
                         (["--share", "1.5"], "--share"),
                         (["--from", "2024-08-01", "--to", "2024-07-01"], "after its end"),
                         (["--from", "2030-01-01"], "holds 0"),
                         (["--data", str(tmp / "missing.parquet")], "")):
        bad = runner.invoke(app, [*base, *args])
        assert bad.exit_code == 2, (args, bad.output)
        assert needle in bad.output
    unknown = runner.invoke(app, [*base, "--model", "huracan-NOPE-1h"])
    assert unknown.exit_code == 1 and "no version with alias" in unknown.output
    hist = runner.invoke(app, ["drift", "history", "BTC/USDT", "--db-url", db, "--json"])
    assert hist.exit_code == 0 and json.loads(hist.output)[0]["drifted"] is True
    reqs = runner.invoke(app, ["drift", "requests", "--db-url", db])
    assert reqs.exit_code == 0 and NAME in reqs.output and "pending" in reqs.output


def test_check_drift_for_monitor(model, sample_path):
    tmp, uri, _ = model
    client = MlflowClient(tracking_uri=uri)
    engine = make_engine(_db(tmp, "monitor.db"))
    notifier = Collect()
    res = check_drift_for_monitor(client, engine, NAME, data_path=sample_path, current="30d",
                                  workspace=tmp / "ws_monitor", notifier=notifier)
    assert res.error is None and res.report_run_id is not None and res.drift_report_id
    # the sample's last 30 days against the training window: 9 of 21 features, under 0.5
    assert res.share == pytest.approx(9 / 21) and not res.drifted
    assert res.line().startswith("drift share 0.43 (threshold 0.5): no drift; report run ")
    assert notifier.alerts == []
    failed = check_drift_for_monitor(client, engine, "huracan-NOPE-1h", notifier=notifier)
    assert failed.error is not None and "no version" in failed.error and not failed.drifted
    assert notifier.alerts[-1].title == "huracan-NOPE-1h: drift check failed"
    engine.dispose()


def test_weekly_rescale_logs_old_and_new_and_leaves_the_model_alone(model, sample_path):
    _, uri, res = model
    client = MlflowClient(tracking_uri=uri)
    before = client.get_model_version(NAME, res.version)
    assert rescale_due(client, NAME)
    out = weekly_rescale(client, NAME, data_path=sample_path)
    assert out.version == res.version and out.window_end.startswith("2024-09")
    assert set(out.params.columns) >= {"feature", "old_mean", "new_mean", "old_scale",
                                       "new_scale", "mean_shift", "scale_ratio"}
    assert out.max_abs_mean_shift > 0
    assert out.run_id is not None
    run = client.get_run(out.run_id)
    assert run.data.tags["huracan.role"] == "rescale"
    assert "unchanged" in run.data.tags["huracan.rescale_note"]
    assert {a.path for a in client.list_artifacts(out.run_id, "rescale")} == {
        "rescale/params.csv", "rescale/scaler.pkl"}
    assert not rescale_due(client, NAME, every="7d")
    after = client.get_model_version(NAME, res.version)
    assert after.source == before.source and after.run_id == before.run_id
    prod = client.get_model_version_by_alias(NAME, "production")
    assert str(prod.version) == res.version
    cli = CliRunner().invoke(app, ["drift", "rescale", "BTC/USDT", "--tracking-uri", uri])
    assert cli.exit_code == 0 and "unchanged" in cli.output, cli.output


@pytest.mark.postgres
def test_store_rows_on_postgres(model, pg_engine, candles_1h):
    tmp, uri, _ = model
    client = MlflowClient(tracking_uri=uri)
    out = drift_for_model(client, pg_engine, NAME, data_path=_crash_file(tmp, candles_1h),
                          current="60d", workspace=tmp / "ws_pg", notifier=Collect())
    assert out.drifted
    (row,) = drift_store.drift_history(pg_engine, NAME)
    assert row.id == out.drift_report_id and row.drifted
    assert row.drifted_features == out.report.drifted_features
    (req,) = drift_store.retrain_requests(pg_engine)
    assert req.drift_report_id == out.drift_report_id
    assert drift_store.consume_retrain_requests(pg_engine, [req.id], consumed_by="test") == 1
    with pg_engine.connect() as conn:
        (dq,) = conn.execute(select(DataQualityLog)).all()
    assert dq.details["drift_report_id"] == out.drift_report_id
