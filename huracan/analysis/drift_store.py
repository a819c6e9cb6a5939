"""Drift records in the brain store: ``drift_reports`` rows, the ``retrain_requests`` queue the
nightly pipeline consumes, and the ``data_quality_logs`` finding of a drift over threshold.

Every writer takes an Engine (it commits its own transaction) or a Connection/Session (the write
joins the caller's transaction). Times are UTC-aware; naive datetimes are refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.orm import Session

from huracan.data.quality import QualityIssue
from huracan.data.quality_db import insert_quality_issues, json_safe
from huracan.db.records import Bind, _write
from huracan.db.tables import DriftReport, RetrainRequest
from huracan.timeutil import to_utc

#: ``data_quality_logs.issue_type`` of a drift report over its threshold
DRIFT_ISSUE = "feature_drift"


def _rows(bind: Bind, stmt: Any) -> list[Any]:
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            return list(conn.execute(stmt).all())
    return list(bind.execute(stmt).all())


@dataclass(frozen=True)
class DriftReportRow:
    """One ``drift_reports`` row as plain values (times ISO UTC)."""

    id: int
    created_at: str
    symbol: str
    timeframe: str
    model_name: str
    model_version: int | None
    reference_start: str
    reference_end: str
    current_start: str
    current_end: str
    reference_rows: int
    current_rows: int
    n_features: int
    n_drifted: int
    drift_share: float
    threshold: float
    drifted: bool
    prediction_drift_score: float | None
    prediction_drifted: bool | None
    target_drift_score: float | None
    target_drifted: bool | None
    drifted_features: list[str]
    report_run_id: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RetrainRequestRow:
    """One ``retrain_requests`` row as plain values (times ISO UTC)."""

    id: int
    created_at: str
    symbol: str
    timeframe: str
    model_name: str
    model_version: int | None
    reason: str
    source: str
    drift_report_id: int | None
    report_run_id: str | None
    consumed_at: str | None
    consumed_by: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def record_drift_report(bind: Bind, *, symbol: str, timeframe: str, model_name: str,
                        model_version: int | str | None, reference_start: Any,
                        reference_end: Any, current_start: Any, current_end: Any,
                        reference_rows: int, current_rows: int, n_features: int, n_drifted: int,
                        drift_share: float, threshold: float, drifted: bool,
                        drifted_features: Sequence[str],
                        prediction_drift_score: float | None = None,
                        prediction_drifted: bool | None = None,
                        target_drift_score: float | None = None,
                        target_drifted: bool | None = None,
                        details: dict[str, Any] | None = None,
                        report_run_id: str | None = None,
                        created_at: datetime | None = None) -> int:
    """Append one drift report; returns its id.

    Args:
        reference_start ... current_end: window bounds (bar open times, UTC-aware).
        drift_share: share of the ``n_features`` input features flagged, in ``[0, 1]``.
        threshold: the drift-share threshold the report was judged with.
        details: JSON document (made JSON-safe: NaN becomes ``"nan"``).

    Raises:
        ValueError: a naive time, or ``drift_share`` outside ``[0, 1]``.
        sqlalchemy.exc.IntegrityError: ``n_drifted`` outside ``[0, n_features]``.
    """
    if not 0.0 <= float(drift_share) <= 1.0:
        raise ValueError(f"drift_share {drift_share} is not in [0, 1]")
    times = {"created_at": created_at or datetime.now(UTC),
             "reference_start": reference_start, "reference_end": reference_end,
             "current_start": current_start, "current_end": current_end}
    row = {
        **{k: to_utc(v, k, naive="raise").to_pydatetime() for k, v in times.items()},
        "symbol": symbol, "timeframe": timeframe, "model_name": model_name,
        "model_version": None if model_version is None else int(model_version),
        "reference_rows": int(reference_rows), "current_rows": int(current_rows),
        "n_features": int(n_features), "n_drifted": int(n_drifted),
        "drift_share": float(drift_share), "threshold": float(threshold),
        "drifted": bool(drifted),
        "prediction_drift_score": _opt_float(prediction_drift_score),
        "prediction_drifted": None if prediction_drifted is None else bool(prediction_drifted),
        "target_drift_score": _opt_float(target_drift_score),
        "target_drifted": None if target_drifted is None else bool(target_drifted),
        "drifted_features": [str(f) for f in drifted_features],
        "details": None if details is None else json_safe(details),
        "report_run_id": report_run_id,
    }

    def write(conn: Connection | Session) -> int:
        result = conn.execute(insert(DriftReport).returning(DriftReport.id), [row])
        return int(result.scalar_one())

    return _write(bind, write)


def _opt_float(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if x == x else None  # NaN -> NULL


def record_retrain_request(bind: Bind, *, symbol: str, timeframe: str, model_name: str,
                           reason: str, model_version: int | str | None = None,
                           source: str = "drift", drift_report_id: int | None = None,
                           report_run_id: str | None = None,
                           created_at: datetime | None = None,
                           dedupe: bool = True) -> tuple[int, bool]:
    """Queue a retrain request for ``model_name``; returns ``(id, created)``.

    With ``dedupe`` (default) a request still pending (``consumed_at IS NULL``) for the same model
    is returned instead of adding a second one (``created`` False): drift checked every night
    while the pipeline has not retrained yet must not pile up requests.

    Raises:
        ValueError: a naive ``created_at``.
    """
    def write(conn: Connection | Session) -> tuple[int, bool]:
        if dedupe:
            pending = conn.execute(
                select(RetrainRequest.id).where(RetrainRequest.model_name == model_name,
                                                RetrainRequest.consumed_at.is_(None))
                .order_by(RetrainRequest.id).limit(1)).scalar()
            if pending is not None:
                return int(pending), False
        created = to_utc(created_at or datetime.now(UTC), "created_at", naive="raise")
        row = {"created_at": created.to_pydatetime(),
               "symbol": symbol, "timeframe": timeframe, "model_name": model_name,
               "model_version": None if model_version is None else int(model_version),
               "reason": reason, "source": source, "drift_report_id": drift_report_id,
               "report_run_id": report_run_id}
        result = conn.execute(insert(RetrainRequest).returning(RetrainRequest.id), [row])
        return int(result.scalar_one()), True

    return _write(bind, write)


def record_drift_issue(bind: Engine | Connection, *, symbol: str | None, source: str,
                       details: dict[str, Any], severity: str = "warning",
                       timestamp: datetime | None = None) -> None:
    """One ``data_quality_logs`` row (issue type :data:`DRIFT_ISSUE`) for a drift over
    threshold."""
    issue = QualityIssue(source=source, issue_type=DRIFT_ISSUE, severity=severity,
                         details=details, symbol=symbol,
                         timestamp=(timestamp or datetime.now(UTC)).isoformat())
    if isinstance(bind, Engine):
        with bind.begin() as conn:
            insert_quality_issues(conn, [issue])
    else:
        insert_quality_issues(bind, [issue])


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.isoformat()


def drift_history(bind: Bind, model_name: str | None = None, *, symbol: str | None = None,
                  limit: int | None = None) -> list[DriftReportRow]:
    """Drift reports, newest first, of one model (or one symbol, or all)."""
    stmt = select(DriftReport.__table__).order_by(DriftReport.created_at.desc(),
                                                  DriftReport.id.desc())
    if model_name is not None:
        stmt = stmt.where(DriftReport.model_name == model_name)
    if symbol is not None:
        stmt = stmt.where(DriftReport.symbol == symbol)
    if limit is not None:
        stmt = stmt.limit(int(limit))
    out = []
    for r in _rows(bind, stmt):
        out.append(DriftReportRow(
            id=int(r.id), created_at=r.created_at.isoformat(), symbol=r.symbol,
            timeframe=r.timeframe, model_name=r.model_name, model_version=r.model_version,
            reference_start=r.reference_start.isoformat(),
            reference_end=r.reference_end.isoformat(),
            current_start=r.current_start.isoformat(), current_end=r.current_end.isoformat(),
            reference_rows=r.reference_rows, current_rows=r.current_rows,
            n_features=r.n_features, n_drifted=r.n_drifted, drift_share=r.drift_share,
            threshold=r.threshold, drifted=bool(r.drifted),
            prediction_drift_score=r.prediction_drift_score,
            prediction_drifted=r.prediction_drifted, target_drift_score=r.target_drift_score,
            target_drifted=r.target_drifted, drifted_features=list(r.drifted_features or []),
            report_run_id=r.report_run_id))
    return out


def retrain_requests(bind: Bind, *, pending_only: bool = True, symbol: str | None = None,
                     timeframe: str | None = None,
                     model_name: str | None = None) -> list[RetrainRequestRow]:
    """Retrain requests, oldest first (pending only by default): what the nightly pipeline
    should retrain."""
    stmt = select(RetrainRequest.__table__).order_by(RetrainRequest.created_at, RetrainRequest.id)
    if pending_only:
        stmt = stmt.where(RetrainRequest.consumed_at.is_(None))
    if symbol is not None:
        stmt = stmt.where(RetrainRequest.symbol == symbol)
    if timeframe is not None:
        stmt = stmt.where(RetrainRequest.timeframe == timeframe)
    if model_name is not None:
        stmt = stmt.where(RetrainRequest.model_name == model_name)
    return [RetrainRequestRow(
        id=int(r.id), created_at=r.created_at.isoformat(), symbol=r.symbol,
        timeframe=r.timeframe, model_name=r.model_name, model_version=r.model_version,
        reason=r.reason, source=r.source, drift_report_id=r.drift_report_id,
        report_run_id=r.report_run_id, consumed_at=_iso(r.consumed_at),
        consumed_by=r.consumed_by) for r in _rows(bind, stmt)]


def consume_retrain_requests(bind: Bind, ids: Sequence[int], *, consumed_by: str | None = None,
                             consumed_at: datetime | None = None) -> int:
    """Mark pending requests consumed (the nightly pipeline, after queueing the retrain);
    returns how many were still pending. Already consumed requests are left as they are.

    Raises:
        ValueError: a naive ``consumed_at``.
    """
    if not ids:
        return 0
    when = to_utc(consumed_at or datetime.now(UTC), "consumed_at", naive="raise").to_pydatetime()
    stmt = (update(RetrainRequest)
            .where(RetrainRequest.id.in_([int(i) for i in ids]),
                   RetrainRequest.consumed_at.is_(None))
            .values(consumed_at=when, consumed_by=consumed_by))
    return _write(bind, lambda c: int(c.execute(stmt).rowcount or 0))  # type: ignore[attr-defined]
