"""The record and alert steps of `drift_for_model`, on a hand-made report (no Evidently, no
model): which rows reach the brain store (a `drift_reports` row always; a `data_quality_logs`
row and one pending `retrain_requests` row only over threshold), how the monitoring run ends
(FINISHED, or FAILED when the store refuses), and when an alert goes out."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from huracan.analysis import drift as dr
from huracan.db.session import make_engine
from huracan.db.tables import DataQualityLog, DriftReport, RetrainRequest

NAME = "huracan-BTCUSDT-1h"


class FakeClient:
    """The MlflowClient calls the record step makes, kept in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.status: str | None = None

    def get_experiment_by_name(self, name: str) -> Any:
        return SimpleNamespace(experiment_id="7",  # already marked: no set_experiment_tag call
                               tags={"mlflow.experimentKind": "custom_model_development"})

    def create_run(self, experiment_id: str, run_name: str, tags: dict[str, str]) -> Any:
        self.calls.append(("create_run", (experiment_id, run_name, tags)))
        return SimpleNamespace(info=SimpleNamespace(run_id="run-1"))

    def set_terminated(self, run_id: str, status: str) -> None:
        self.status = status

    def __getattr__(self, name: str) -> Any:  # log_batch, log_param, log_artifact, set_tag...
        return lambda *args, **kw: self.calls.append((name, args))


def _reported(tmp_path: Path, drifted: bool) -> dr.ReportedDrift:
    cols = [dr.ColumnDrift("rv_24", "feature", "Wasserstein distance (normed)", 0.4, 0.1,
                           "distance", True),
            dr.ColumnDrift("atr_14", "feature", "Wasserstein distance (normed)",
                           0.2 if drifted else 0.05, 0.1, "distance", drifted)]
    n = sum(c.drifted for c in cols)
    report = dr.DriftResult(
        features=cols, prediction=dr.ColumnDrift("prediction", "prediction", "Wasserstein "
                                                  "distance (normed)", 0.02, 0.1, "distance",
                                                  False),
        target=None, n_features=2, n_drifted=n, drift_share=n / 2, threshold=0.75,
        evidently_share=n / 2, scaling=[], summary=[], reference_rows=4, current_rows=3,
        reference_start="2024-01-01T00:00:00+00:00", reference_end="2024-01-01T03:00:00+00:00",
        current_start="2024-03-01T00:00:00+00:00", current_end="2024-03-01T02:00:00+00:00")
    ref = pd.DataFrame({"rv_24": [1.0, 2, 3, 4]},
                       index=pd.date_range("2024-01-01", periods=4, freq="h", tz="UTC"))
    cur = pd.DataFrame({"rv_24": [5.0, 6, 7]},
                       index=pd.date_range("2024-03-01", periods=3, freq="h", tz="UTC"))
    result = dr.ModelDriftResult(report=report, model_name=NAME, version="3",
                                 model_run_id="train-run", symbol="BTC/USDT", timeframe="1h",
                                 workspace=tmp_path / "ws", snapshot_id="snap",
                                 timings={"report": 1.0})
    return dr.ReportedDrift(result=result, windows=dr.DriftWindows(ref, cur, ref, cur),
                            workspace=tmp_path / "ws",
                            created=datetime(2024, 3, 2, tzinfo=UTC))


def _count(engine: Any, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_record_over_threshold_writes_report_issue_and_one_pending_request(engine, tmp_path):
    client = FakeClient()
    reported = _reported(tmp_path, drifted=True)
    dr._record_report(client, engine, reported, experiment_name="mon", started=0.0)
    out = reported.result
    assert client.status == "FINISHED" and out.report_run_id == "run-1"
    assert out.drift_report_id is not None and out.retrain_request_created
    assert [_count(engine, t) for t in (DriftReport, DataQualityLog, RetrainRequest)] == [1, 1, 1]
    with engine.connect() as conn:
        row = conn.execute(select(DriftReport)).one()
        req = conn.execute(select(RetrainRequest)).one()
    assert row.drifted and row.n_drifted == 2 and row.model_version == 3
    assert row.report_run_id == "run-1" and row.drifted_features == ["rv_24", "atr_14"]
    assert pd.Timestamp(row.current_end) == pd.Timestamp("2024-03-01T02:00", tz="UTC")
    assert req.drift_report_id == out.drift_report_id and req.model_name == NAME
    tags = dict(client.calls[0][1][2])
    assert tags["huracan.role"] == "drift" and tags["huracan.monitored_run"] == "train-run"
    assert client.calls[0][1][1] == "drift-BTCUSDT-1h-v3 2024-03-01..2024-03-01"  # run name
    assert ("set_tag", ("run-1", "huracan.drift_report_id", str(out.drift_report_id))) \
        in client.calls
    assert set(out.timings) == {"report", "mlflow", "store", "total"}

    again = _reported(tmp_path, drifted=True)  # the request is still pending: no second one
    dr._record_report(FakeClient(), engine, again, experiment_name="mon", started=0.0)
    assert [_count(engine, t) for t in (DriftReport, DataQualityLog, RetrainRequest)] == [2, 2, 1]
    assert again.result.retrain_request_id == out.retrain_request_id
    assert not again.result.retrain_request_created


def test_monitoring_runs_are_named_by_model_version_and_window(tmp_path):
    names = []
    for start, end in (("2024-12-01T00:00:00+00:00", "2024-12-31T23:00:00+00:00"),
                       ("2025-01-01T00:00:00+00:00", "2025-01-31T23:00:00+00:00")):
        reported = _reported(tmp_path, drifted=False)
        reported.result.report.current_start, reported.result.report.current_end = start, end
        client = FakeClient()
        dr._start_drift_run(client, reported, "mon")
        names.append(client.calls[0][1][1])
    assert names == ["drift-BTCUSDT-1h-v3 2024-12-01..2024-12-31",
                     "drift-BTCUSDT-1h-v3 2025-01-01..2025-01-31"]
    assert dr.monitoring_run_name("rescale", NAME, 4, "2024-11-02", "2024-12-01T05:00") == \
        "rescale-BTCUSDT-1h-v4 2024-11-02..2024-12-01"
    assert dr.monitoring_run_name("drift", NAME, 4) == "drift-BTCUSDT-1h-v4"


def test_record_under_threshold_writes_the_report_row_only(engine, tmp_path):
    reported = _reported(tmp_path, drifted=False)
    dr._record_report(FakeClient(), engine, reported, experiment_name="mon", started=0.0)
    assert [_count(engine, t) for t in (DriftReport, DataQualityLog, RetrainRequest)] == [1, 0, 0]
    assert reported.result.retrain_request_id is None
    notes: list[Any] = []
    dr._alert_drift(reported.result, SimpleNamespace(notify=notes.append))
    assert notes == []


def test_record_ends_the_run_failed_when_the_store_refuses(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'unmigrated.db'}")  # no tables
    client = FakeClient()
    try:
        with pytest.raises(SQLAlchemyError):
            dr._record_report(client, engine, _reported(tmp_path, drifted=True),
                              experiment_name="mon", started=0.0)
    finally:
        engine.dispose()
    assert client.status == "FAILED"


def test_alert_over_threshold_names_the_run_and_the_request(tmp_path):
    reported = _reported(tmp_path, drifted=True)
    reported.result.report_run_id, reported.result.retrain_request_id = "run-1", 5
    notes: list[Any] = []
    dr._alert_drift(reported.result, SimpleNamespace(notify=notes.append))
    assert len(notes) == 1 and notes[0].severity == "warning"
    assert notes[0].details["report_run"] == "run-1"
    assert notes[0].details["retrain_request"] == 5
    assert notes[0].details["drifted"] == "rv_24,atr_14"
