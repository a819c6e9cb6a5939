"""Artifacts and quality logs beside the tracking store they belong to
(huracan.tracking.run: store_directory, artifact_root, beside_store, configure; job.start)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from huracan.tracking import run as tracking


def test_artifact_root_beside_a_sqlite_store_unless_configured(tmp_path: Path):
    uri = f"sqlite:///{tmp_path / 'elsewhere' / 'm.db'}"
    beside = (tmp_path / "elsewhere" / "artifacts").as_uri()
    assert tracking.artifact_root(uri, Path("mlruns")) == beside
    assert tracking.artifact_root(None, tmp_path / "st") == (tmp_path / "st" / "artifacts").as_uri()
    # configured: a URI as given, a relative path against the store's directory
    assert tracking.artifact_root(uri, Path("mlruns"), "s3://b/h") == "s3://b/h"
    assert tracking.artifact_root(uri, Path("mlruns"), "art") == (
        tmp_path / "elsewhere" / "art").as_uri()
    assert tracking.artifact_root(uri, Path("mlruns"), str(tmp_path / "abs")) == (
        tmp_path / "abs").as_uri()
    # a server decides itself
    assert tracking.artifact_root("http://mlflow:5000", Path("mlruns")) is None
    assert tracking.store_directory("postgresql://u@h/db", Path("mlruns")) is None
    assert tracking.store_directory(f"file://{tmp_path}", Path("mlruns")) == tmp_path


def test_configure_creates_the_experiment_with_artifacts_beside_the_db(tmp_path: Path,
                                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)  # a wrong default would land in ./mlruns here
    db = tmp_path / "elsewhere" / "m.db"
    db.parent.mkdir()
    uri = f"sqlite:///{db}"
    try:
        exp_id = tracking.configure(uri, Path("mlruns"), "beside")
        exp = mlflow.MlflowClient(uri).get_experiment(exp_id)
        assert exp.artifact_location == (tmp_path / "elsewhere" / "artifacts").as_uri()
        other = tracking.configure(uri, Path("mlruns"), "configured", "runs-art")
        assert mlflow.MlflowClient(uri).get_experiment(other).artifact_location == (
            tmp_path / "elsewhere" / "runs-art").as_uri()
        with mlflow.start_run(experiment_id=exp_id):
            mlflow.log_text("x", "a.txt")
        assert (tmp_path / "elsewhere" / "artifacts").is_dir()
        assert not (tmp_path / "mlruns").exists()
    finally:
        mlflow.set_tracking_uri(None)


def test_quality_log_goes_beside_the_store(tmp_path: Path):
    uri = f"sqlite:///{tmp_path / 'elsewhere' / 'm.db'}"
    assert tracking.beside_store("data_quality.jsonl", uri, Path("mlruns")) == str(
        tmp_path / "elsewhere" / "data_quality.jsonl")
    assert tracking.beside_store("data_quality.jsonl", None, Path("st")) == str(
        Path("st") / "data_quality.jsonl")
    assert tracking.beside_store("/abs/q.jsonl", uri, Path("mlruns")) == "/abs/q.jsonl"
    assert tracking.beside_store(None, uri, Path("mlruns")) is None
    assert tracking.beside_store("q.jsonl", "http://mlflow:5000", Path("mlruns")) == "q.jsonl"


def test_job_start_resolves_the_quality_log_against_the_store(tmp_path: Path, monkeypatch):
    from huracan.job import start
    from huracan.settings import JobSettings

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'elsewhere' / 'm.db'}"
    (tmp_path / "elsewhere").mkdir()
    settings = JobSettings.from_dict({
        "data": {"path": "x.parquet", "symbol": "BTC/USDT", "timeframe": "1h",
                 "quality_log": "data_quality.jsonl"},
        "model": {"_target_": "huracan.models.lightgbm.LightGBMForecaster"},
        "tracking": {"tracking_uri": uri, "experiment_name": "q"}})
    try:
        job, exp_id, _ = start(settings, "BTCUSDT-1h")
    finally:
        mlflow.set_tracking_uri(None)
    assert job.settings.data.quality_log == str(tmp_path / "elsewhere" / "data_quality.jsonl")
    assert settings.data.quality_log == "data_quality.jsonl"  # the caller's settings unchanged
    assert exp_id


def test_tracking_settings_know_the_new_key():
    from huracan.config import UnknownKeyError, build
    from huracan.settings import TrackingSettings

    assert build(TrackingSettings, {"artifact_location": "s3://x"},
                 "tracking").artifact_location == "s3://x"
    assert TrackingSettings().artifact_location is None
    with pytest.raises(UnknownKeyError):
        build(TrackingSettings, {"artifact_locaton": "x"}, "tracking")
