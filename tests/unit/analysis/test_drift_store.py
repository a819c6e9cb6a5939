"""Drift records in the brain store (SQLite, and Postgres when HURACAN_TEST_PG_URL is set):
`drift_reports` rows, the `retrain_requests` queue (deduplicated while pending, consumed once),
the `data_quality_logs` finding; and the Evidently workspace receiving snapshots."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from huracan.analysis import drift_store as ds
from huracan.analysis.drift import add_to_workspace, default_workspace, drift_report
from huracan.db.tables import DataQualityLog, DriftReport

T0 = datetime(2024, 1, 1, tzinfo=UTC)
T1 = datetime(2024, 6, 30, tzinfo=UTC)
T2 = datetime(2024, 7, 1, tzinfo=UTC)
T3 = datetime(2024, 9, 6, tzinfo=UTC)


def _report(engine, **kw):
    args: dict[str, Any] = dict(symbol="BTC/USDT", timeframe="1h", model_name="huracan-BTCUSDT-1h",
                model_version=3, reference_start=T0, reference_end=T1, current_start=T2,
                current_end=T3, reference_rows=4000, current_rows=1600, n_features=21,
                n_drifted=13, drift_share=13 / 21, threshold=0.5, drifted=True,
                drifted_features=["rv_24", "atr_14"], prediction_drift_score=0.01,
                prediction_drifted=False, target_drift_score=float("nan"),
                details={"score": np.float64(0.3), "bad": float("inf")}, report_run_id="abc")
    args.update(kw)
    return ds.record_drift_report(engine, **args)


def test_drift_report_rows_round_trip(engine):
    rid = _report(engine)
    _report(engine, model_version=4, drift_share=0.1, n_drifted=2, drifted=False,
            drifted_features=["x", "y"], created_at=datetime(2030, 1, 1, tzinfo=UTC))
    rows = ds.drift_history(engine, "huracan-BTCUSDT-1h")
    assert [r.model_version for r in rows] == [4, 3]  # newest first
    old = rows[1]
    assert old.id == rid and old.drifted and old.n_drifted == 13
    assert old.drifted_features == ["rv_24", "atr_14"] and old.report_run_id == "abc"
    assert old.target_drift_score is None  # NaN stored as NULL
    assert pd.Timestamp(old.current_end) == pd.Timestamp(T3)
    with engine.connect() as conn:
        details = conn.execute(select(DriftReport.details).where(DriftReport.id == rid)).scalar()
    assert details == {"score": 0.3, "bad": "inf"}  # JSON-safe (Postgres JSONB refuses inf)
    assert ds.drift_history(engine, "other") == []
    assert len(ds.drift_history(engine, symbol="BTC/USDT", limit=1)) == 1


def test_drift_report_constraints(engine):
    with pytest.raises(ValueError, match="drift_share"):
        _report(engine, drift_share=1.5)
    with pytest.raises(ValueError, match="naive"):
        _report(engine, current_end=datetime(2024, 9, 6))
    with pytest.raises(IntegrityError):
        _report(engine, n_drifted=30)  # more than n_features


def test_retrain_requests_are_deduplicated_while_pending_and_consumed_once(engine):
    first, created = ds.record_retrain_request(
        engine, symbol="BTC/USDT", timeframe="1h", model_name="m", model_version=1,
        reason="drift", drift_report_id=7, report_run_id="r1")
    again, created_again = ds.record_retrain_request(
        engine, symbol="BTC/USDT", timeframe="1h", model_name="m", reason="drift again")
    assert created and not created_again and again == first
    other, _ = ds.record_retrain_request(engine, symbol="ETH/USDT", timeframe="1h",
                                         model_name="m-eth", reason="drift")
    pending = ds.retrain_requests(engine)
    assert [r.id for r in pending] == [first, other]
    assert pending[0].drift_report_id == 7 and pending[0].source == "drift"
    assert [r.model_name for r in ds.retrain_requests(engine, symbol="ETH/USDT")] == ["m-eth"]
    assert ds.consume_retrain_requests(engine, [first], consumed_by="nightly-run-1") == 1
    assert ds.consume_retrain_requests(engine, [first], consumed_by="again") == 0
    assert [r.id for r in ds.retrain_requests(engine)] == [other]
    done = next(r for r in ds.retrain_requests(engine, pending_only=False) if r.id == first)
    assert done.consumed_by == "nightly-run-1" and done.consumed_at is not None
    new, created = ds.record_retrain_request(engine, symbol="BTC/USDT", timeframe="1h",
                                             model_name="m", reason="drift after retrain")
    assert created and new not in (first, other)


def test_drift_issue_goes_to_data_quality_logs(engine):
    ds.record_drift_issue(engine, symbol="BTC/USDT", source="huracan drift m v1",
                          details={"drift_share": 0.7, "drifted_features": ["a"]})
    with engine.connect() as conn:
        row = conn.execute(select(DataQualityLog)).one()
    assert row.issue_type == ds.DRIFT_ISSUE == "feature_drift"
    assert row.severity == "warning" and row.details["drift_share"] == 0.7


def test_workspace_receives_snapshots_in_one_project_per_model(tmp_path):
    from evidently.ui.workspace import Workspace

    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"a": rng.normal(size=300), "prediction": rng.normal(size=300)})
    cur = ref + 0.5
    ws = tmp_path / "evidently"
    ids = []
    for i in range(2):
        rep = drift_report(ref, cur, ["a"], prediction_col="prediction",
                           timestamp=datetime(2024, 9, 1 + i), name=f"r{i}")
        ids.append(add_to_workspace(rep.snapshot, ws, "huracan-TEST-1h", "test"))
    add_to_workspace(rep.snapshot, ws, "huracan-OTHER-1h")
    assert ids[0][0] == ids[1][0] and ids[0][1] != ids[1][1]
    w = Workspace(str(ws))
    assert sorted(p.name for p in w.list_projects()) == ["huracan-OTHER-1h", "huracan-TEST-1h"]
    runs = w.list_runs(ids[0][0])
    assert {str(r) for r in runs} == {ids[0][1], ids[1][1]}
    assert w.get_run(ids[0][0], ids[0][1]) is not None
    assert default_workspace("sqlite:////x/mlruns/mlflow.db").as_posix() == "/x/mlruns/evidently"
    assert default_workspace("http://mlflow:5000").as_posix() == "mlruns/evidently"
