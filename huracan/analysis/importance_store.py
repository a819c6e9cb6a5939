"""Feature-importance rankings in the brain store (``feature_importance``): write one analysis,
read the latest top features, the ranking of one run and the history of rankings, and choose the
columns of a ``features.top_n`` training (:func:`select_top_features`).

One analysis = one MLflow run: a ranking per method (``shap``, ``permutation``, ``correlation``)
plus their ``aggregate`` (mean rank across the methods, stored with ``importance`` = mean rank and
``rank`` ascending by it). All rows of one analysis share ``analyzed_at``; re-analysing a run
replaces its rows. "Latest" means the newest ``analyzed_at`` (then the newest row id).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Engine, Executable, select

from huracan.db.queries import Bind, top_features
from huracan.db.records import store_feature_importance
from huracan.db.tables import FeatureImportance
from huracan.evaluation.importance import AGGREGATE

log = logging.getLogger(__name__)

HISTORY_COLUMNS = ["analyzed_at", "run_id", "model_type", "feature", "importance", "rank"]


def _execute(bind: Bind, stmt: Executable) -> list[Any]:
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            return list(conn.execute(stmt).all())
    return list(bind.execute(stmt).all())


def store_rankings(
    engine: Engine,
    table: pd.DataFrame,
    symbol: str,
    timeframe: str,
    run_id: str,
    model_type: str,
    analyzed_at: datetime | None = None,
) -> int:
    """Store every method of a :func:`huracan.evaluation.importance.rank_table` in one
    transaction (replacing an earlier analysis of ``run_id``).

    Args:
        engine: the brain store (schema at head).
        table: columns ``method, feature, importance, rank`` (long format, one block per method).
        symbol, timeframe, run_id, model_type: what was analysed.
        analyzed_at: analysis time, UTC-aware; default now (shared by every method's rows).

    Returns:
        The number of rows written.

    Raises:
        ValueError: an unknown method, NaN importances or a naive ``analyzed_at``.
    """
    when = analyzed_at or pd.Timestamp.now(tz="UTC").to_pydatetime()
    written = 0
    with engine.begin() as conn:
        for method, block in table.groupby("method", sort=False):
            block = block.sort_values("rank", kind="stable")
            series = pd.Series(block["importance"].to_numpy(), index=block["feature"].to_numpy())
            # in rank order, so that ties keep the table's ranks (both rankings are stable sorts)
            written += store_feature_importance(
                conn, series, symbol=symbol, timeframe=timeframe, run_id=run_id,
                model_type=model_type, method=str(method), analyzed_at=when)
    return written


def run_ranking(bind: Bind, run_id: str, method: str = AGGREGATE) -> pd.DataFrame:
    """The stored ranking of one run and method.

    Returns:
        Columns ``feature, importance, rank, model_type, symbol, timeframe, analyzed_at`` sorted by
        rank; empty when the run has no such ranking.
    """
    fi = FeatureImportance
    cols = ["feature", "importance", "rank", "model_type", "symbol", "timeframe", "analyzed_at"]
    rows = _execute(bind, select(*(getattr(fi, c) for c in cols))
                    .where(fi.run_id == run_id, fi.method == method).order_by(fi.rank))
    frame = pd.DataFrame.from_records(rows, columns=cols)
    frame["analyzed_at"] = pd.to_datetime(frame["analyzed_at"], utc=True)
    return frame


def latest_top_features(bind: Bind, symbol: str, timeframe: str, n: int, *,
                        model_type: str | None = None, method: str = AGGREGATE
                        ) -> list[str] | None:
    """The ``n`` best-ranked features of the latest ``method`` ranking (default ``aggregate``)
    for ``symbol``/``timeframe`` (of any model unless ``model_type`` is given), best first;
    fewer when that ranking has fewer features, ``None`` when nothing is stored.

    Raises:
        ValueError: ``n < 1``.
    """
    top = top_features(bind, symbol, n, timeframe=timeframe, method=method,
                       model_type=model_type)
    return None if top.empty else top["feature"].tolist()


def latest_ranking_info(bind: Bind, symbol: str, timeframe: str, *,
                        model_type: str | None = None, method: str = AGGREGATE
                        ) -> dict[str, Any] | None:
    """``run_id``, ``model_type`` and ``analyzed_at`` of the latest ``method`` ranking for
    ``symbol``/``timeframe``, or ``None``."""
    top = top_features(bind, symbol, 1, timeframe=timeframe, method=method,
                       model_type=model_type)
    if top.empty:
        return None
    row = top.iloc[0]
    return {"run_id": str(row["run_id"]), "model_type": str(row["model_type"]),
            "analyzed_at": row["analyzed_at"]}


def ranking_history(bind: Bind, symbol: str, timeframe: str, method: str = AGGREGATE, *,
                    model_type: str | None = None, limit: int | None = None) -> pd.DataFrame:
    """Every stored ``method`` ranking of ``symbol``/``timeframe``, oldest analysis first.

    Args:
        model_type: only this model's analyses.
        limit: only the newest ``limit`` analyses (runs).

    Returns:
        Columns ``analyzed_at`` (UTC), ``run_id, model_type, feature, importance, rank``, sorted by
        ``analyzed_at``, ``run_id`` and ``rank``; empty when nothing is stored.
    """
    fi = FeatureImportance
    filters = [fi.symbol == symbol, fi.timeframe == timeframe, fi.method == method]
    if model_type is not None:
        filters.append(fi.model_type == model_type)
    runs_stmt = (select(fi.run_id, fi.analyzed_at).where(*filters)
                 .group_by(fi.run_id, fi.analyzed_at)
                 .order_by(fi.analyzed_at.desc(), fi.run_id.desc()))
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        runs_stmt = runs_stmt.limit(limit)
    runs = [r[0] for r in _execute(bind, runs_stmt)]
    if not runs:
        frame = pd.DataFrame(columns=HISTORY_COLUMNS)
    else:
        stmt = (select(*(getattr(fi, c) for c in HISTORY_COLUMNS))
                .where(*filters, fi.run_id.in_(runs)))
        frame = pd.DataFrame.from_records(_execute(bind, stmt), columns=HISTORY_COLUMNS)
    frame["analyzed_at"] = pd.to_datetime(frame["analyzed_at"], utc=True)
    return frame.sort_values(["analyzed_at", "run_id", "rank"], ignore_index=True)


def previous_run(bind: Bind, symbol: str, timeframe: str, run_id: str, *,
                 model_type: str | None = None, method: str = AGGREGATE) -> str | None:
    """The run of the latest ``method`` ranking for ``symbol``/``timeframe`` other than
    ``run_id`` and analysed no later than it (of ``model_type`` when given), or ``None``."""
    fi = FeatureImportance
    current = _execute(bind, select(fi.analyzed_at).where(fi.run_id == run_id,
                                                          fi.method == method).limit(1))
    filters = [fi.symbol == symbol, fi.timeframe == timeframe, fi.method == method,
               fi.run_id != run_id]
    if current:
        filters.append(fi.analyzed_at <= current[0][0])
    if model_type is not None:
        filters.append(fi.model_type == model_type)
    rows = _execute(bind, select(fi.run_id).where(*filters)
                    .order_by(fi.analyzed_at.desc(), fi.id.desc()).limit(1))
    return str(rows[0][0]) if rows else None


def select_top_features(bind: Bind, symbol: str, timeframe: str, n: int, available: list[str],
                        *, model_type: str | None = None) -> tuple[list[str], str]:
    """The columns a ``features.top_n=n`` training should use, and a one-line note saying why.

    The top ``n`` features of the latest ``aggregate`` ranking for ``symbol``/``timeframe``
    (:func:`latest_top_features`; of ``model_type`` when given), returned in the order of
    ``available`` (the feature matrix's column order, so that the same set always gives the same
    matrix and feature-list fingerprint). Falls back to every feature of ``available`` (the note
    then starts with ``WARNING`` and a warning is logged) when nothing is stored or a stored
    feature is not in ``available`` (e.g. the feature configuration changed since).

    Args:
        bind: the brain store.
        symbol, timeframe: the market trained on.
        n: number of features wanted (>= 1); a ranking with fewer features (of a model trained
            on a top-N subset) gives them all, with a warning note.
        available: the feature names the job built, in column order.

    Returns:
        ``(columns, note)``.

    Raises:
        ValueError: ``n < 1``.
    """
    if n < 1:
        raise ValueError(f"features.top_n must be >= 1, got {n}")
    top = latest_top_features(bind, symbol, timeframe, n, model_type=model_type)
    which = f"{symbol} {timeframe}" + (f" ({model_type})" if model_type else "")
    if top is None:
        note = (f"WARNING features.top_n={n}: no stored feature ranking for {which}; training on "
                f"all {len(available)} features")
        log.warning("%s", note)
        return list(available), note
    missing = [f for f in top if f not in available]
    if missing:
        note = (f"WARNING features.top_n={n}: ranked feature(s) {missing} of {which} are not "
                f"built by this job; training on all {len(available)} features")
        log.warning("%s", note)
        return list(available), note
    info = latest_ranking_info(bind, symbol, timeframe, model_type=model_type) or {}
    chosen = set(top)
    columns = [f for f in available if f in chosen]
    when = info.get("analyzed_at")
    stamp = when.isoformat() if when is not None else "?"
    note = (f"features.top_n={n}: {len(columns)} of {len(available)} features from the aggregate "
            f"ranking of run {info.get('run_id')} ({info.get('model_type')}, analysed {stamp})")
    if len(columns) < n:  # the latest ranking is of a model trained on fewer features
        note = f"WARNING {note}; that ranking holds only {len(columns)} features"
        log.warning("%s", note)
    else:
        log.info("%s", note)
    return columns, note
