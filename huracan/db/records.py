"""Write the brain store's analysis and decision records: feature importance and registry events.

Each writer takes an Engine (it commits its own transaction) or a Connection/Session (the write
joins the caller's transaction, which the caller commits).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeAlias, TypeVar

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, delete, insert
from sqlalchemy.orm import Session

from huracan.db.tables import (
    IMPORTANCE_METHODS,
    REGISTRY_EVENT_TYPES,
    FeatureImportance,
    RegistryEvent,
    TunedHyperparameters,
)

Bind: TypeAlias = Engine | Connection | Session
T = TypeVar("T")


def _write(bind: Bind, fn: Callable[[Connection | Session], T]) -> T:
    if isinstance(bind, Engine):
        with bind.begin() as conn:
            return fn(conn)
    return fn(bind)


def _now_or(ts: datetime | None) -> datetime:
    if ts is None:
        return datetime.now(UTC)
    if ts.tzinfo is None:
        raise ValueError(f"naive datetime {ts!r}: pass a UTC-aware datetime")
    return ts


def record_registry_event(
    bind: Bind,
    *,
    model_name: str,
    event_type: str,
    reason: str,
    from_version: int | str | None = None,
    to_version: int | str | None = None,
    alias: str | None = None,
    metric: str | None = None,
    champion_score: float | None = None,
    challenger_score: float | None = None,
    tolerance: float | None = None,
    run_id: str | None = None,
    timestamp: datetime | None = None,
    eval_bars: int | None = None,
    evidence: dict[str, Any] | None = None,
) -> None:
    """Append one promotion/rejection/rollback/skipped decision to ``registry_events``.

    Args:
        model_name: registered model name in MLflow.
        event_type: ``promotion``, ``rejection`` or ``rollback``.
        reason: why (gate result, drift alert, operator note).
        from_version: the version serving before (``None`` for a first promotion).
        to_version: the version serving after (promotion/rollback) or the refused challenger.
        alias: the MLflow alias moved (``production``).
        metric, champion_score, challenger_score, tolerance: what the gate compared.
        run_id: the challenger's MLflow run.
        timestamp: event time (UTC-aware); default now.
        eval_bars: bars of the window both models were scored on.
        evidence: JSON-ready document of what the decision rested on.

    Raises:
        ValueError: unknown ``event_type`` or a naive ``timestamp``.
    """
    if event_type not in REGISTRY_EVENT_TYPES:
        raise ValueError(f"event_type {event_type!r} is not one of {REGISTRY_EVENT_TYPES}")
    row = {
        "timestamp": _now_or(timestamp), "model_name": model_name, "event_type": event_type,
        "alias": alias,
        "from_version": None if from_version is None else int(from_version),
        "to_version": None if to_version is None else int(to_version),
        "metric": metric,
        "champion_score": None if champion_score is None else float(champion_score),
        "challenger_score": None if challenger_score is None else float(challenger_score),
        "tolerance": None if tolerance is None else float(tolerance),
        "reason": reason, "run_id": run_id,
        "eval_bars": None if eval_bars is None else int(eval_bars), "evidence": evidence,
    }
    _write(bind, lambda c: c.execute(insert(RegistryEvent), [row]))


def store_feature_importance(
    bind: Bind,
    importance: pd.Series | dict[str, float],
    *,
    symbol: str,
    timeframe: str,
    run_id: str,
    model_type: str,
    method: str,
    analyzed_at: datetime | None = None,
    ascending: bool | None = None,
) -> int:
    """Store one analysis: the importance of every feature of a model (replacing an earlier
    analysis of the same run and method).

    Args:
        importance: feature name -> importance (e.g. mean |SHAP value|, permutation loss
            increase, correlation with the target). Ranked by signed value, 1 = most important (a
            negative permutation importance, a feature whose shuffling lowered the loss, ranks
            last; see :func:`huracan.evaluation.importance.rank_by`).
        symbol, timeframe, run_id, model_type: what was analysed (``run_id``: the MLflow run).
        method: ``shap``, ``permutation``, ``correlation`` or ``aggregate`` (the mean rank across
            the other methods).
        analyzed_at: analysis time (UTC-aware); default now.
        ascending: rank by importance ascending (1 = smallest value: a mean rank, lower is
            better) instead of by importance descending; default: ascending for ``aggregate``
            only. Ties keep the order of ``importance`` either way.

    Returns:
        The number of features stored.

    Raises:
        ValueError: unknown ``method``, NaN importances, or a naive ``analyzed_at``.
    """
    if method not in IMPORTANCE_METHODS:
        raise ValueError(f"method {method!r} is not one of {IMPORTANCE_METHODS}")
    s = pd.Series(importance, dtype="float64")
    if s.isna().any():
        raise ValueError(f"NaN importance for feature(s) {list(s.index[s.isna()])}")
    if ascending is None:
        ascending = method == "aggregate"
    key = s.to_numpy() if ascending else -s.to_numpy()
    order = np.argsort(key, kind="stable")
    when = _now_or(analyzed_at)
    rows: list[dict[str, Any]] = [
        {"analyzed_at": when, "symbol": symbol, "timeframe": timeframe, "run_id": run_id,
         "model_type": model_type, "method": method, "feature": str(s.index[i]),
         "importance": float(s.iloc[i]), "rank": rank}
        for rank, i in enumerate(order, start=1)]

    def write(conn: Connection | Session) -> int:
        conn.execute(delete(FeatureImportance).where(FeatureImportance.run_id == run_id,
                                                     FeatureImportance.method == method))
        if rows:
            conn.execute(insert(FeatureImportance), rows)
        return len(rows)

    return _write(bind, write)


def record_tuned_hyperparameters(bind: Bind, *, symbol: str, timeframe: str, model_type: str,
                                 study_name: str, metric: str, value: float,
                                 params: dict[str, Any], n_trials: int,
                                 run_id: str | None = None,
                                 created_at: datetime | None = None) -> None:
    """Append a study's best parameters to ``tuned_hyperparameters``.

    Raises:
        ValueError: a metric on test rows, a non-finite value or a naive ``created_at``.
    """
    if metric.startswith("test_"):
        raise ValueError(f"metric {metric!r}: tuned parameters are chosen on val/OOS, not test")
    if not np.isfinite(value):
        raise ValueError(f"value {value!r} is not finite")
    row = {"created_at": _now_or(created_at), "symbol": symbol, "timeframe": timeframe,
           "model_type": model_type, "study_name": study_name, "metric": metric,
           "value": float(value), "n_trials": int(n_trials),
           "params": {k: (v.item() if hasattr(v, "item") else v) for k, v in params.items()},
           "run_id": run_id}
    _write(bind, lambda c: c.execute(insert(TunedHyperparameters), [row]))
