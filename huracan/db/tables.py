"""The brain store's domain tables (SQLAlchemy 2.0 typed declarative models).

MLflow keeps runs, metrics, artifacts and model versions; these tables keep everything else the
system collects: derivatives data (funding, open interest, liquidations), sentiment, feature
importance, data-quality findings and the registry's promotion history.

Conventions (shared by every table):

- ``timestamp`` columns are UTC. They are ``timestamptz`` on Postgres; SQLite has no time zones, so
  :class:`UTCDateTime` stores naive UTC text there and hands back UTC-aware datetimes on both.
- Time-series tables have their natural key as primary key, ordered ``(symbol, timestamp, ...)`` so
  the key index also serves "symbol X between t0 and t1" (the query the features need), plus an
  index on ``timestamp`` alone for time-range scans.
- ``ingested_at`` records when a row was first stored (it is not touched by later updates). The
  Postgres bulk loader uses it to tell inserted from updated rows (``ingested_at = now()``).
- Units: prices in quote currency, sizes in USD, funding rates as a fraction per funding interval
  (Binance USDT-M: 8 h; 0.0001 = 0.01 %), sentiment scores in ``[-1, 1]``.

The schema is created by the Alembic migrations in ``huracan/db/migrations`` (never by
``create_all`` in production); ``tests/store`` checks that the two agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Double,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

#: Constraint/index names are fixed by convention so that migrations can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "pk": "pk_%(table_name)s",
}

SIDES = ("long", "short")
LIQUIDATION_TYPES = ("single", "cascade")
#: per-model methods, plus ``aggregate``: the mean rank across the methods (lower is better)
IMPORTANCE_METHODS = ("shap", "permutation", "correlation", "aggregate")
SEVERITIES = ("critical", "warning", "info")
REGISTRY_EVENT_TYPES = ("promotion", "rejection", "rollback", "skipped", "drift")

#: Surrogate ids: BIGINT on Postgres; INTEGER on SQLite, where only ``INTEGER PRIMARY KEY``
#: auto-increments.
Id = BigInteger().with_variant(Integer(), "sqlite")
#: JSON documents: JSONB on Postgres (indexable, compact), JSON text elsewhere.
JsonDoc = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """A UTC instant: ``timestamptz`` on Postgres, naive UTC text on SQLite.

    Binding converts any aware datetime (or ``pandas.Timestamp``) to UTC; results are always
    UTC-aware.

    Raises:
        ValueError: when a naive datetime is bound (its time zone would be a guess).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if hasattr(value, "to_pydatetime"):  # pandas.Timestamp
            value = value.to_pydatetime()
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a UTC-aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Liquidation(Base):
    """One forced order (a liquidation event).

    Natural key: ``(exchange, symbol, timestamp, side, price, quantity)``: Binance's forceOrder
    stream carries no event id, and two events of one symbol and side at the same millisecond with
    the same price and quantity are taken to be the same event. ``side`` is the liquidated
    POSITION (``long``: a long was force-sold); ``size_usd`` = price × quantity in USD.

    On Postgres the table is range-partitioned by ``timestamp`` into monthly partitions
    (``liquidations_pYYYYMM``, created on demand by
    :func:`huracan.db.partitions.ensure_liquidation_partitions`) plus ``liquidations_default``.
    """

    __tablename__ = "liquidations"
    __table_args__ = (
        PrimaryKeyConstraint("symbol", "timestamp", "exchange", "side", "price", "quantity"),
        CheckConstraint(_in("side", SIDES), name="side"),
        CheckConstraint(_in("liquidation_type", LIQUIDATION_TYPES), name="liquidation_type"),
        CheckConstraint("price > 0", name="price_positive"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("size_usd >= 0", name="size_usd_non_negative"),
        # BRIN on Postgres: events arrive in time order, so a block-range index is tiny and
        # nearly free to maintain during bulk loads; a plain index elsewhere.
        Index("ix_liquidations_timestamp", "timestamp", postgresql_using="brin"),
        {"postgresql_partition_by": 'RANGE ("timestamp")'},
    )

    timestamp: Mapped[datetime] = mapped_column(UTCDateTime)
    exchange: Mapped[str] = mapped_column(String(32))
    symbol: Mapped[str] = mapped_column(String(64))
    side: Mapped[str] = mapped_column(String(5))
    price: Mapped[float] = mapped_column(Double)
    quantity: Mapped[float] = mapped_column(Double)
    size_usd: Mapped[float] = mapped_column(Double)
    liquidation_type: Mapped[str] = mapped_column(String(8), server_default="single")
    ingested_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())


class FundingRate(Base):
    """A settled perpetual-swap funding rate: fraction per funding interval (8 h on Binance
    USDT-M), positive = longs pay shorts. Natural key ``(exchange, symbol, timestamp)``."""

    __tablename__ = "funding_rates"
    __table_args__ = (
        PrimaryKeyConstraint("symbol", "timestamp", "exchange"),
        Index("ix_funding_rates_timestamp", "timestamp"),
    )

    timestamp: Mapped[datetime] = mapped_column(UTCDateTime)
    exchange: Mapped[str] = mapped_column(String(32))
    symbol: Mapped[str] = mapped_column(String(64))
    funding_rate: Mapped[float] = mapped_column(Double)
    ingested_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())


class OpenInterest(Base):
    """Open interest at ``timestamp``: in contracts/base units and/or in USD (at least one).
    Natural key ``(exchange, symbol, timestamp)``."""

    __tablename__ = "open_interest"
    __table_args__ = (
        PrimaryKeyConstraint("symbol", "timestamp", "exchange"),
        CheckConstraint("open_interest IS NOT NULL OR open_interest_usd IS NOT NULL",
                        name="has_value"),
        CheckConstraint("open_interest >= 0", name="open_interest_non_negative"),
        CheckConstraint("open_interest_usd >= 0", name="open_interest_usd_non_negative"),
        Index("ix_open_interest_timestamp", "timestamp"),
    )

    timestamp: Mapped[datetime] = mapped_column(UTCDateTime)
    exchange: Mapped[str] = mapped_column(String(32))
    symbol: Mapped[str] = mapped_column(String(64))
    open_interest: Mapped[float | None] = mapped_column(Double)
    open_interest_usd: Mapped[float | None] = mapped_column(Double)
    ingested_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())


class SentimentScore(Base):
    """Aggregated sentiment of ``n_items`` texts from ``source`` about ``symbol`` at ``timestamp``:
    ``score`` in ``[-1, 1]`` (-1 most negative). Natural key ``(symbol, source, timestamp)``."""

    __tablename__ = "sentiment_scores"
    __table_args__ = (
        PrimaryKeyConstraint("symbol", "timestamp", "source"),
        CheckConstraint("score >= -1 AND score <= 1", name="score_range"),
        CheckConstraint("n_items >= 0", name="n_items_non_negative"),
        Index("ix_sentiment_scores_timestamp", "timestamp"),
    )

    timestamp: Mapped[datetime] = mapped_column(UTCDateTime)
    symbol: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(64))
    score: Mapped[float] = mapped_column(Double)
    n_items: Mapped[int] = mapped_column(Integer)
    ingested_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())


class FeatureImportance(Base):
    """Importance of one feature in one analysis of a trained model (an MLflow run).

    ``rank`` 1 is the most important (by absolute importance, so that negative correlations
    count; for ``method="aggregate"`` the importance is the mean rank across the other methods and
    ranks go by it ascending). One row per ``(run_id, method, feature)``.
    """

    __tablename__ = "feature_importance"
    __table_args__ = (
        UniqueConstraint("run_id", "method", "feature"),
        CheckConstraint(_in("method", IMPORTANCE_METHODS), name="method"),
        CheckConstraint('"rank" >= 1', name="rank_positive"),
        Index("ix_feature_importance_symbol_analyzed_at", "symbol", "analyzed_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    analyzed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    symbol: Mapped[str] = mapped_column(String(64))
    timeframe: Mapped[str] = mapped_column(String(16))
    run_id: Mapped[str] = mapped_column(String(64))
    model_type: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(16))
    feature: Mapped[str] = mapped_column(String(256))
    importance: Mapped[float] = mapped_column(Double)
    rank: Mapped[int] = mapped_column(Integer)


class DataQualityLog(Base):
    """One data-quality finding (see :class:`huracan.data.quality.QualityIssue`).

    ``details`` holds the failing values (file, row, column, value, rule); ``severity`` is
    ``critical`` (data refused), ``warning`` (used, but noted) or ``info``.
    """

    __tablename__ = "data_quality_logs"
    __table_args__ = (
        CheckConstraint(_in("severity", SEVERITIES), name="severity"),
        Index("ix_data_quality_logs_timestamp", "timestamp"),
        Index("ix_data_quality_logs_symbol_timestamp", "symbol", "timestamp"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime)
    symbol: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(Text)
    issue_type: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    details: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    resolved: Mapped[bool] = mapped_column(Boolean, server_default=false())


class RegistryEvent(Base):
    """One decision of the model registry: a promotion, a rejection, a rollback, or a decision
    skipped for lack of evidence (production unchanged).

    MLflow aliases keep no history, so every alias move is recorded here: which versions
    (``from_version`` was serving, ``to_version`` is serving or was refused), the scores compared
    (``metric``, champion and challenger, the gate's ``tolerance``), and why.
    """

    __tablename__ = "registry_events"
    __table_args__ = (
        CheckConstraint(_in("event_type", REGISTRY_EVENT_TYPES), name="event_type"),
        Index("ix_registry_events_model_name_timestamp", "model_name", "timestamp"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime)
    model_name: Mapped[str] = mapped_column(String(256))
    event_type: Mapped[str] = mapped_column(String(16))
    alias: Mapped[str | None] = mapped_column(String(64))
    from_version: Mapped[int | None] = mapped_column(Integer)
    to_version: Mapped[int | None] = mapped_column(Integer)
    metric: Mapped[str | None] = mapped_column(String(64))
    champion_score: Mapped[float | None] = mapped_column(Double)
    challenger_score: Mapped[float | None] = mapped_column(Double)
    tolerance: Mapped[float | None] = mapped_column(Double)
    reason: Mapped[str] = mapped_column(Text)
    run_id: Mapped[str | None] = mapped_column(String(64))
    #: bars of the window both models were scored on (unseen by both; revision 0002)
    eval_bars: Mapped[int | None] = mapped_column(Integer)
    #: the evidence of the decision: window, each model's trades, PSR and DSR, the bootstrap
    #: interval of the score difference, eligibility (revision 0002)
    evidence: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc)


#: The tables that ingest files, with the columns of their natural key.
NATURAL_KEYS: dict[str, tuple[str, ...]] = {
    "liquidations": ("exchange", "symbol", "timestamp", "side", "price", "quantity"),
    "funding_rates": ("exchange", "symbol", "timestamp"),
    "open_interest": ("exchange", "symbol", "timestamp"),
    "sentiment_scores": ("symbol", "source", "timestamp"),
}


class DriftReport(Base):
    """One Evidently drift report of a model: its reference window (the version's training rows,
    from its manifest) against a current window (revision 0003, :mod:`huracan.analysis.drift`).

    ``drift_share`` is the share of the model's input features whose Evidently per-column test
    flagged drift; ``drifted`` is ``drift_share >= threshold`` (Evidently 0.7 no longer returns a
    dataset-drift boolean). ``drifted_features`` lists the flagged features; ``details`` holds
    the per-column tests, the prediction and target drift, the scaling drift, the data summary
    and the timings. ``report_run_id`` is the MLflow monitoring run holding the HTML/JSON report.
    """

    __tablename__ = "drift_reports"
    __table_args__ = (
        CheckConstraint("drift_share >= 0 AND drift_share <= 1", name="drift_share_range"),
        CheckConstraint("n_drifted >= 0 AND n_drifted <= n_features", name="n_drifted_range"),
        Index("ix_drift_reports_model_name_created_at", "model_name", "created_at"),
        Index("ix_drift_reports_symbol_created_at", "symbol", "created_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    symbol: Mapped[str] = mapped_column(String(64))
    timeframe: Mapped[str] = mapped_column(String(16))
    model_name: Mapped[str] = mapped_column(String(256))
    model_version: Mapped[int | None] = mapped_column(Integer)
    reference_start: Mapped[datetime] = mapped_column(UTCDateTime)
    reference_end: Mapped[datetime] = mapped_column(UTCDateTime)
    current_start: Mapped[datetime] = mapped_column(UTCDateTime)
    current_end: Mapped[datetime] = mapped_column(UTCDateTime)
    reference_rows: Mapped[int] = mapped_column(Integer)
    current_rows: Mapped[int] = mapped_column(Integer)
    n_features: Mapped[int] = mapped_column(Integer)
    n_drifted: Mapped[int] = mapped_column(Integer)
    drift_share: Mapped[float] = mapped_column(Double)
    threshold: Mapped[float] = mapped_column(Double)
    drifted: Mapped[bool] = mapped_column(Boolean)
    prediction_drift_score: Mapped[float | None] = mapped_column(Double)
    prediction_drifted: Mapped[bool | None] = mapped_column(Boolean)
    target_drift_score: Mapped[float | None] = mapped_column(Double)
    target_drifted: Mapped[bool | None] = mapped_column(Boolean)
    drifted_features: Mapped[list[str]] = mapped_column(JsonDoc)
    details: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc)
    report_run_id: Mapped[str | None] = mapped_column(String(64))


class RetrainRequest(Base):
    """A request to retrain the model of a symbol and timeframe (revision 0003), written when a
    drift report exceeds its threshold; the nightly pipeline consumes it (sets ``consumed_at``
    and ``consumed_by``). ``drift_report_id`` / ``report_run_id`` point at the evidence."""

    __tablename__ = "retrain_requests"
    __table_args__ = (
        Index("ix_retrain_requests_symbol_timeframe_created_at", "symbol", "timeframe",
              "created_at"),
        Index("ix_retrain_requests_consumed_at", "consumed_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    symbol: Mapped[str] = mapped_column(String(64))
    timeframe: Mapped[str] = mapped_column(String(16))
    model_name: Mapped[str] = mapped_column(String(256))
    model_version: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(32), server_default="drift")
    drift_report_id: Mapped[int | None] = mapped_column(Id)
    report_run_id: Mapped[str | None] = mapped_column(String(64))
    consumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    consumed_by: Mapped[str | None] = mapped_column(String(256))


class TunedHyperparameters(Base):
    """The best parameters of one Optuna study (revision 0005, ``python -m huracan.tune``): per
    symbol, timeframe and model type, the study, its metric (validation or walk-forward OOS) and
    best value, the trials it took, and the best trial's MLflow run. The newest row per
    (symbol, timeframe, model_type) is what the product calls the stored best hyperparameters."""

    __tablename__ = "tuned_hyperparameters"
    __table_args__ = (
        Index("ix_tuned_hyperparameters_symbol_timeframe_model_type", "symbol", "timeframe",
              "model_type", "created_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    symbol: Mapped[str] = mapped_column(String(64))
    timeframe: Mapped[str] = mapped_column(String(16))
    model_type: Mapped[str] = mapped_column(String(64))
    study_name: Mapped[str] = mapped_column(String(256))
    metric: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Double)
    n_trials: Mapped[int] = mapped_column(Integer)
    params: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    run_id: Mapped[str | None] = mapped_column(String(64))


#: ``pipeline_runs.status`` values: a step is ``running`` while a process works on it, then
#: ``done``, ``skipped`` (not due, not needed, or blocked by degraded data) or ``failed``.
PIPELINE_STATUSES = ("running", "done", "skipped", "failed")


class PipelineRun(Base):
    """One step of one symbol of one night of ``python -m huracan.nightly`` (migration 0006).

    ``run_id`` names the night (``nightly.run_id``, default ``<date>-<timeframe>``); a rerun with
    the same id skips the steps stored ``done`` or ``skipped``. ``attempts`` counts the processes
    that started the step; ``host``/``pid`` the last one (a ``running`` row whose process is gone
    was interrupted). ``mlflow_run_ids`` lists the MLflow runs the step produced.
    """

    __tablename__ = "pipeline_runs"
    __table_args__ = (
        CheckConstraint(_in("status", PIPELINE_STATUSES), name="status"),
        Index("ix_pipeline_runs_symbol_step_started_at", "symbol", "step", "started_at"),
    )

    run_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(64), primary_key=True)
    step: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer)
    host: Mapped[str] = mapped_column(String(256))
    pid: Mapped[int] = mapped_column(Integer)
    mlflow_run_ids: Mapped[list[str]] = mapped_column(JsonDoc)
    detail: Mapped[str | None] = mapped_column(Text)


#: ``predictions.source``: who asked production. ``serve`` = ``mlflow models serve`` (or any
#: caller of the pyfunc with the prediction log on), ``paper`` = the live paper loop, ``replay``
#: = ``huracan paper replay``, ``size`` / ``select`` = those commands, ``in_process`` = a
#: Python caller of the pyfunc.
PREDICTION_SOURCES = ("serve", "paper", "replay", "size", "select", "in_process")


class Prediction(Base):
    """One answer of a production model: the prediction log (an inference table; migration 0007).

    One row per answered request: the newest bar of the request (the bar a trader acts on),
    with what the model answered for it. ``bar_time`` is that bar's OPEN time (its close is
    ``bar_time + timeframe``); ``served_at`` when the answer was made. ``forecast`` is the
    forward return over the label horizon (fraction); ``position`` the rule's (+1 / -1 / 0, or
    a fraction); ``size`` (fraction of equity, [0, 1]) and ``leverage`` the sizer's.
    ``execution`` holds the execution settings the model was judged with (the ``backtest``
    group: fill, fee, half_spread, slippage_bps, ...). The request itself is NOT stored here:
    ``inputs_digest`` is the SHA-256 of its candles (:func:`huracan.data.prediction_store.
    inputs_digest`) and ``inputs_path`` the Parquet file holding them (content-addressed, so a
    request repeated verbatim is stored once). ``account`` names the paper account when the
    paper loop asked (``source`` ``paper`` / ``replay``); ``latency_ms`` is the time the model
    took to answer (ms).
    """

    __tablename__ = "predictions"
    __table_args__ = (
        CheckConstraint(_in("source", PREDICTION_SOURCES), name="source"),
        Index("ix_predictions_symbol_timeframe_bar_time", "symbol", "timeframe", "bar_time"),
        Index("ix_predictions_model_name_served_at", "model_name", "served_at"),
        Index("ix_predictions_account_bar_time", "account", "bar_time"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    served_at: Mapped[datetime] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(16))
    model_name: Mapped[str] = mapped_column(String(256))
    model_version: Mapped[str | None] = mapped_column(String(32))
    run_id: Mapped[str | None] = mapped_column(String(64))
    symbol: Mapped[str] = mapped_column(String(64))
    timeframe: Mapped[str] = mapped_column(String(16))
    bar_time: Mapped[datetime] = mapped_column(UTCDateTime)
    forecast: Mapped[float | None] = mapped_column(Double)
    regime: Mapped[str | None] = mapped_column(String(32))
    position: Mapped[float | None] = mapped_column(Double)
    size: Mapped[float | None] = mapped_column(Double)
    leverage: Mapped[float | None] = mapped_column(Double)
    sizer: Mapped[str | None] = mapped_column(String(256))
    execution: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc)
    inputs_digest: Mapped[str] = mapped_column(String(64))
    inputs_rows: Mapped[int] = mapped_column(Integer)
    inputs_path: Mapped[str | None] = mapped_column(Text)
    account: Mapped[str | None] = mapped_column(String(128))
    latency_ms: Mapped[float | None] = mapped_column(Double)


#: ``paper_accounts.mode``: ``live`` (``huracan paper run``) or ``replay``.
PAPER_MODES = ("live", "replay")
#: ``paper_orders.status``: ``decided`` (production answered; the target stands for the next
#: bar's open) or ``skipped`` (no decision: stale or missing bar, warm-up, production
#: unreachable; ``reason`` says which; the previous position is kept).
PAPER_ORDER_STATUSES = ("decided", "skipped")


class PaperAccount(Base):
    """One paper-trading account (migration 0007): a symbol and timeframe traded bar by bar with
    production's answers under one execution model.

    ``anchor`` is the first bar the account asks production about: every request sends the
    candles from ``anchor`` minus the model's warm-up on, so a rule or sizer that carries state
    sees the same history live and in replay. ``execution`` holds the execution settings (the
    ``backtest`` group) and the market (``spot``/``perp``); ``production`` says whom the loop
    asks (``models:/<name>@production`` or an HTTP URL, credentials masked).
    ``heartbeat_at`` is the last time the loop was alive (the nightly's ``paper`` step reads it).
    """

    __tablename__ = "paper_accounts"
    __table_args__ = (CheckConstraint(_in("mode", PAPER_MODES), name="mode"),)

    account: Mapped[str] = mapped_column(String(128), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(64))
    timeframe: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(16))
    model_name: Mapped[str] = mapped_column(String(256))
    production: Mapped[str] = mapped_column(Text)
    anchor: Mapped[datetime] = mapped_column(UTCDateTime)
    execution: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    detail: Mapped[str | None] = mapped_column(Text)


class PaperOrder(Base):
    """The decision of one bar of a paper account (migration 0007): at most one per
    ``(account, bar_time)`` (the primary key: a bar is decided at most once, whatever restarts).

    ``bar_time`` is the decided bar's open time; the decision is made at its close and targets
    ``target_position`` (signed exposure, units of equity: the rule's position, or with a sizer
    ``sign(forecast) x size x leverage``), filled at the next bar's open (``paper_fills``).
    ``prev_position`` is the position held when deciding. ``bar_close`` and ``data_digest``
    record the data as the loop saw it (the decided bar's close, the SHA-256 of the request's
    candles) and ``bar_available_at`` when the bar was first seen; ``paper compare`` reads them
    to tell data revised after the fact and late bars from model and cost differences.
    ``prediction_id`` links the prediction log row.
    """

    __tablename__ = "paper_orders"
    __table_args__ = (
        CheckConstraint(_in("status", PAPER_ORDER_STATUSES), name="status"),
        PrimaryKeyConstraint("account", "bar_time"),
    )

    account: Mapped[str] = mapped_column(String(128))
    bar_time: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime)
    bar_available_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    model_name: Mapped[str | None] = mapped_column(String(256))
    model_version: Mapped[str | None] = mapped_column(String(32))
    run_id: Mapped[str | None] = mapped_column(String(64))
    forecast: Mapped[float | None] = mapped_column(Double)
    prev_position: Mapped[float] = mapped_column(Double)
    target_position: Mapped[float] = mapped_column(Double)
    bar_close: Mapped[float | None] = mapped_column(Double)
    data_digest: Mapped[str | None] = mapped_column(String(64))
    prediction_id: Mapped[int | None] = mapped_column(Id)


class PaperFill(Base):
    """The fill of one decided bar (migration 0007): at most one per ``(account, bar_time)``.

    ``bar_time`` is the decision's bar; ``fill_time`` and ``fill_price`` where the execution
    model filled it (``next_open``: the next bar's open); ``turnover`` = ``|position -
    prev_position|`` (units of equity) and ``cost`` what the fill paid (fee + half-spread +
    slippage + impact, fraction of equity; :func:`huracan.evaluation.execution.trade_cost`).
    """

    __tablename__ = "paper_fills"
    __table_args__ = (PrimaryKeyConstraint("account", "bar_time"),)

    account: Mapped[str] = mapped_column(String(128))
    bar_time: Mapped[datetime] = mapped_column(UTCDateTime)
    fill_time: Mapped[datetime] = mapped_column(UTCDateTime)
    fill_price: Mapped[float] = mapped_column(Double)
    prev_position: Mapped[float] = mapped_column(Double)
    position: Mapped[float] = mapped_column(Double)
    turnover: Mapped[float] = mapped_column(Double)
    cost: Mapped[float] = mapped_column(Double)
    filled_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PaperMark(Base):
    """The position and equity of one bar of a paper account (migration 0007): at most one per
    ``(account, bar_time)``.

    The row of bar ``t`` is its net return from ``C_t`` to ``C_{t+1}`` by the execution model
    (:func:`huracan.evaluation.execution.bar_components`): ``gross_return`` (the gap leg held by
    ``prev_position``, the hold leg by ``position``), ``cost`` of the fill, ``funding_cost``,
    ``borrow_cost`` and ``net_return = gross_return - cost - funding_cost - borrow_cost``
    (fractions of equity); ``equity`` compounds them from 1.0.
    """

    __tablename__ = "paper_marks"
    __table_args__ = (PrimaryKeyConstraint("account", "bar_time"),)

    account: Mapped[str] = mapped_column(String(128))
    bar_time: Mapped[datetime] = mapped_column(UTCDateTime)
    prev_position: Mapped[float] = mapped_column(Double)
    position: Mapped[float] = mapped_column(Double)
    asset_return: Mapped[float] = mapped_column(Double)
    gross_return: Mapped[float] = mapped_column(Double)
    cost: Mapped[float] = mapped_column(Double)
    funding_cost: Mapped[float] = mapped_column(Double)
    borrow_cost: Mapped[float] = mapped_column(Double)
    net_return: Mapped[float] = mapped_column(Double)
    equity: Mapped[float] = mapped_column(Double)
    marked_at: Mapped[datetime] = mapped_column(UTCDateTime)
