"""Read the brain store: the queries the rest of the system needs.

Every function takes a ``bind`` (an Engine, a Connection or an ORM Session) and plain values, and
returns a DataFrame (columns documented per function, timestamps UTC-aware, sorted) or typed
records. Time ranges are half-open, ``[start, end)``, and must be UTC-aware (naive datetimes are
refused rather than guessed).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

import pandas as pd
from sqlalchemy import Connection, Engine, Executable, Select, case, func, or_, select
from sqlalchemy.orm import Session

from huracan.db.tables import (
    DataQualityLog,
    FeatureImportance,
    FundingRate,
    Liquidation,
    OpenInterest,
    RegistryEvent,
    SentimentScore,
    TunedHyperparameters,
)
from huracan.timeutil import to_utc

Bind: TypeAlias = Engine | Connection | Session
TimeLike: TypeAlias = datetime | pd.Timestamp | str


def _execute(bind: Bind, stmt: Executable) -> list[Any]:
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            return list(conn.execute(stmt).all())
    return list(bind.execute(stmt).all())


def _frame(rows: list[Any], columns: list[str], time_columns: tuple[str, ...] = ("timestamp",)
           ) -> pd.DataFrame:
    df = pd.DataFrame.from_records(rows, columns=columns)
    for col in time_columns:
        df[col] = pd.to_datetime(df[col], utc=True)
    return df


def _series_query(model: Any, columns: list[str], symbol: str, start: TimeLike, end: TimeLike,
                  exchange: str | None) -> Select[Any]:
    stmt = select(*(getattr(model, c) for c in columns)).where(
        model.symbol == symbol,
        model.timestamp >= to_utc(start, "start", naive="raise").to_pydatetime(),
        model.timestamp < to_utc(end, "end", naive="raise").to_pydatetime())
    if exchange is not None:
        stmt = stmt.where(model.exchange == exchange)
    return stmt.order_by(model.timestamp, *(getattr(model, c) for c in columns[1:2]))


def funding_frame(bind: Bind, symbol: str, start: TimeLike, end: TimeLike, *,
                  exchange: str | None = None) -> pd.DataFrame:
    """Funding rates of ``symbol`` settled in ``[start, end)``.

    Returns:
        Columns ``timestamp, exchange, funding_rate`` (fraction per funding interval), one row
        per settlement and exchange, sorted by time.
    """
    cols = ["timestamp", "exchange", "funding_rate"]
    return _frame(_execute(bind, _series_query(FundingRate, cols, symbol, start, end, exchange)),
                  cols)


def open_interest_frame(bind: Bind, symbol: str, start: TimeLike, end: TimeLike, *,
                        exchange: str | None = None) -> pd.DataFrame:
    """Open interest of ``symbol`` in ``[start, end)``.

    Returns:
        Columns ``timestamp, exchange, open_interest`` (contracts/base units, may be NaN),
        ``open_interest_usd`` (USD, may be NaN), sorted by time.
    """
    cols = ["timestamp", "exchange", "open_interest", "open_interest_usd"]
    df = _frame(_execute(bind, _series_query(OpenInterest, cols, symbol, start, end, exchange)),
                cols)
    return df.astype({"open_interest": "float64", "open_interest_usd": "float64"})


def liquidation_frame(bind: Bind, symbol: str, start: TimeLike, end: TimeLike, *,
                      exchange: str | None = None) -> pd.DataFrame:
    """Liquidation events of ``symbol`` in ``[start, end)`` (Postgres prunes to the months'
    partitions).

    Returns:
        Columns ``timestamp, exchange, side`` (liquidated position: long/short), ``price``
        (quote currency), ``quantity`` (base units), ``size_usd``, ``liquidation_type``
        (single/cascade), sorted by time.
    """
    cols = ["timestamp", "exchange", "side", "price", "quantity", "size_usd", "liquidation_type"]
    return _frame(_execute(bind, _series_query(Liquidation, cols, symbol, start, end, exchange)),
                  cols)


def sentiment_frame(bind: Bind, symbol: str, start: TimeLike, end: TimeLike, *,
                    source: str | None = None) -> pd.DataFrame:
    """Sentiment scores of ``symbol`` in ``[start, end)``.

    Returns:
        Columns ``timestamp, source, score`` (in [-1, 1]), ``n_items``, sorted by time.
    """
    m = SentimentScore
    stmt = select(m.timestamp, m.source, m.score, m.n_items).where(
        m.symbol == symbol,
        m.timestamp >= to_utc(start, "start", naive="raise").to_pydatetime(),
        m.timestamp < to_utc(end, "end", naive="raise").to_pydatetime())
    if source is not None:
        stmt = stmt.where(m.source == source)
    return _frame(_execute(bind, stmt.order_by(m.timestamp, m.source)),
                  ["timestamp", "source", "score", "n_items"])


def top_features(bind: Bind, symbol: str, n: int = 10, *, timeframe: str | None = None,
                 method: str | None = None, model_type: str | None = None) -> pd.DataFrame:
    """The ``n`` most important features of the latest analysis for ``symbol``.

    The latest analysis is the ``(run_id, method)`` with the newest ``analyzed_at`` among the
    rows matching the filters; its features are returned by rank.

    Returns:
        Columns ``rank, feature, importance, method, run_id, model_type, timeframe,
        analyzed_at``; empty when nothing matches.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    fi = FeatureImportance
    filters = [fi.symbol == symbol]
    if timeframe is not None:
        filters.append(fi.timeframe == timeframe)
    if method is not None:
        filters.append(fi.method == method)
    if model_type is not None:
        filters.append(fi.model_type == model_type)
    latest = _execute(bind, select(fi.run_id, fi.method).where(*filters)
                      .order_by(fi.analyzed_at.desc(), fi.id.desc()).limit(1))
    cols = ["rank", "feature", "importance", "method", "run_id", "model_type", "timeframe",
            "analyzed_at"]
    if not latest:
        return _frame([], cols, ("analyzed_at",))
    run_id, meth = latest[0]
    stmt = (select(*(getattr(fi, c) for c in cols))
            .where(*filters, fi.run_id == run_id, fi.method == meth)
            .order_by(fi.rank).limit(n))
    return _frame(_execute(bind, stmt), cols, ("analyzed_at",))


def quality_summary(bind: Bind, start: TimeLike, end: TimeLike, *, symbol: str | None = None
                    ) -> pd.DataFrame:
    """Data-quality findings logged in ``[start, end)``, grouped by rule.

    Returns:
        Columns ``issue_type, severity, count, unresolved, first_seen, last_seen``, most frequent
        first.
    """
    q = DataQualityLog
    count = func.count().label("count")
    stmt = (select(q.issue_type, q.severity, count,
                   func.sum(case((q.resolved.is_(False), 1), else_=0)).label("unresolved"),
                   func.min(q.timestamp).label("first_seen"),
                   func.max(q.timestamp).label("last_seen"))
            .where(q.timestamp >= to_utc(start, "start", naive="raise").to_pydatetime(),
                   q.timestamp < to_utc(end, "end", naive="raise").to_pydatetime())
            .group_by(q.issue_type, q.severity)
            .order_by(count.desc(), q.issue_type, q.severity))
    if symbol is not None:
        stmt = stmt.where(q.symbol == symbol)
    df = _frame(_execute(bind, stmt),
                ["issue_type", "severity", "count", "unresolved", "first_seen", "last_seen"],
                ("first_seen", "last_seen"))
    return df.astype({"count": "int64", "unresolved": "int64"})


@dataclass(frozen=True)
class RegistryEventRecord:
    """One row of ``registry_events`` (see :class:`huracan.db.tables.RegistryEvent`)."""

    id: int
    timestamp: datetime
    model_name: str
    event_type: str
    alias: str | None
    from_version: int | None
    to_version: int | None
    metric: str | None
    champion_score: float | None
    challenger_score: float | None
    tolerance: float | None
    reason: str
    run_id: str | None
    eval_bars: int | None = None
    evidence: dict[str, Any] | None = None


_EVENT_FIELDS = list(RegistryEventRecord.__dataclass_fields__)


def registry_history(bind: Bind, model_name: str, *, limit: int | None = None,
                     event_type: str | None = None) -> list[RegistryEventRecord]:
    """Promotions, rejections and rollbacks of ``model_name``, newest first."""
    r = RegistryEvent
    stmt = select(*(getattr(r, f) for f in _EVENT_FIELDS)).where(r.model_name == model_name)
    if event_type is not None:
        stmt = stmt.where(r.event_type == event_type)
    stmt = stmt.order_by(r.timestamp.desc(), r.id.desc())
    if limit is not None:
        stmt = stmt.limit(limit)
    return [RegistryEventRecord(*row) for row in _execute(bind, stmt)]


def previous_production(bind: Bind, model_name: str, version: int | str) -> int | None:
    """The version that served before ``version`` was promoted (the ``from_version`` of the
    latest promotion to ``version`` as ``production``, or with no alias as rows written before
    aliases were recorded; per-regime aliases have their own chains); ``None`` when there was
    none. The rollback target."""
    r = RegistryEvent
    stmt = (select(r.from_version)
            .where(r.model_name == model_name, r.event_type == "promotion",
                   or_(r.alias == "production", r.alias.is_(None)),
                   r.to_version == int(version))
            .order_by(r.timestamp.desc(), r.id.desc()).limit(1))
    rows = _execute(bind, stmt)
    return rows[0][0] if rows else None


def tuned_hyperparameters(bind: Bind, symbol: str, timeframe: str,
                          model_type: str) -> dict[str, Any] | None:
    """The newest stored best parameters of ``model_type`` on ``symbol``/``timeframe``
    (``python -m huracan.tune``): ``{"params", "study_name", "metric", "value", "n_trials",
    "run_id", "created_at"}``, or ``None``."""
    t = TunedHyperparameters
    stmt = (select(t.params, t.study_name, t.metric, t.value, t.n_trials, t.run_id,
                   t.created_at)
            .where(t.symbol == symbol, t.timeframe == timeframe, t.model_type == model_type)
            .order_by(t.created_at.desc(), t.id.desc()).limit(1))
    rows = _execute(bind, stmt)
    if not rows:
        return None
    r = rows[0]
    return {"params": dict(r[0]), "study_name": r[1], "metric": r[2], "value": float(r[3]),
            "n_trials": int(r[4]), "run_id": r[5], "created_at": r[6]}
