"""Brain store: liquidations (monthly partitions on Postgres), funding rates, open interest,
sentiment, feature importance, data-quality logs and registry events.

Revision ID: 0001
Revises:
Create Date: 2025-11-22

"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the column types of huracan/db/tables.py as of this revision.
UTC_TS = sa.DateTime(timezone=True)
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _ts(name: str = "timestamp") -> sa.Column:
    return sa.Column(name, UTC_TS, nullable=False)


def _ingested_at() -> sa.Column:
    return sa.Column("ingested_at", UTC_TS, server_default=sa.func.now(), nullable=False)


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    _liquidations(postgres)
    _market_tables()
    _analysis_tables()
    _registry_events()


def _liquidations(postgres: bool) -> None:
    """``liquidations`` (and, on Postgres, its default partition)."""
    partitioned: dict[str, Any] = (
        {"postgresql_partition_by": 'RANGE ("timestamp")'} if postgres else {})

    # liquidations: range-partitioned by time on Postgres (every unique constraint of a
    # partitioned table must include the partition key; the natural key does).
    op.create_table(
        "liquidations",
        _ts(),
        sa.Column("exchange", sa.String(32), nullable=False),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("side", sa.String(5), nullable=False),
        sa.Column("price", sa.Double(), nullable=False),
        sa.Column("quantity", sa.Double(), nullable=False),
        sa.Column("size_usd", sa.Double(), nullable=False),
        sa.Column("liquidation_type", sa.String(8), server_default="single", nullable=False),
        _ingested_at(),
        sa.PrimaryKeyConstraint("symbol", "timestamp", "exchange", "side", "price", "quantity",
                                name=op.f("pk_liquidations")),
        sa.CheckConstraint("side IN ('long', 'short')", name=op.f("ck_liquidations_side")),
        sa.CheckConstraint("liquidation_type IN ('single', 'cascade')",
                           name=op.f("ck_liquidations_liquidation_type")),
        sa.CheckConstraint("price > 0", name=op.f("ck_liquidations_price_positive")),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_liquidations_quantity_positive")),
        sa.CheckConstraint("size_usd >= 0", name=op.f("ck_liquidations_size_usd_non_negative")),
        **partitioned,
    )
    op.create_index("ix_liquidations_timestamp", "liquidations", ["timestamp"],
                    postgresql_using="brin")
    if postgres:
        # Rows outside every monthly partition land here instead of failing; the loader creates
        # the month's partition first (and moves such rows out when it does).
        op.execute("CREATE TABLE liquidations_default PARTITION OF liquidations DEFAULT")


def _market_tables() -> None:
    """``funding_rates``, ``open_interest`` and ``sentiment_scores`` with their time indexes."""
    op.create_table(
        "funding_rates",
        _ts(),
        sa.Column("exchange", sa.String(32), nullable=False),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("funding_rate", sa.Double(), nullable=False),
        _ingested_at(),
        sa.PrimaryKeyConstraint("symbol", "timestamp", "exchange", name=op.f("pk_funding_rates")),
    )
    op.create_index("ix_funding_rates_timestamp", "funding_rates", ["timestamp"])

    op.create_table(
        "open_interest",
        _ts(),
        sa.Column("exchange", sa.String(32), nullable=False),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("open_interest", sa.Double(), nullable=True),
        sa.Column("open_interest_usd", sa.Double(), nullable=True),
        _ingested_at(),
        sa.PrimaryKeyConstraint("symbol", "timestamp", "exchange", name=op.f("pk_open_interest")),
        sa.CheckConstraint("open_interest IS NOT NULL OR open_interest_usd IS NOT NULL",
                           name=op.f("ck_open_interest_has_value")),
        sa.CheckConstraint("open_interest >= 0",
                           name=op.f("ck_open_interest_open_interest_non_negative")),
        sa.CheckConstraint("open_interest_usd >= 0",
                           name=op.f("ck_open_interest_open_interest_usd_non_negative")),
    )
    op.create_index("ix_open_interest_timestamp", "open_interest", ["timestamp"])

    op.create_table(
        "sentiment_scores",
        _ts(),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("score", sa.Double(), nullable=False),
        sa.Column("n_items", sa.Integer(), nullable=False),
        _ingested_at(),
        sa.PrimaryKeyConstraint("symbol", "timestamp", "source", name=op.f("pk_sentiment_scores")),
        sa.CheckConstraint("score >= -1 AND score <= 1",
                           name=op.f("ck_sentiment_scores_score_range")),
        sa.CheckConstraint("n_items >= 0", name=op.f("ck_sentiment_scores_n_items_non_negative")),
    )
    op.create_index("ix_sentiment_scores_timestamp", "sentiment_scores", ["timestamp"])


def _analysis_tables() -> None:
    """``feature_importance`` and ``data_quality_logs`` with their indexes."""
    op.create_table(
        "feature_importance",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        _ts("analyzed_at"),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("timeframe", sa.String(16), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("model_type", sa.String(64), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("feature", sa.String(256), nullable=False),
        sa.Column("importance", sa.Double(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feature_importance")),
        sa.UniqueConstraint("run_id", "method", "feature",
                            name=op.f("uq_feature_importance_run_id_method_feature")),
        sa.CheckConstraint("method IN ('shap', 'permutation', 'correlation', 'aggregate')",
                           name=op.f("ck_feature_importance_method")),
        sa.CheckConstraint('"rank" >= 1', name=op.f("ck_feature_importance_rank_positive")),
    )
    op.create_index("ix_feature_importance_symbol_analyzed_at", "feature_importance",
                    ["symbol", "analyzed_at"])

    op.create_table(
        "data_quality_logs",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        _ts(),
        sa.Column("symbol", sa.String(64), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("issue_type", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("details", JSON_DOC, nullable=False),
        sa.Column("resolved", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_quality_logs")),
        sa.CheckConstraint("severity IN ('critical', 'warning', 'info')",
                           name=op.f("ck_data_quality_logs_severity")),
    )
    op.create_index("ix_data_quality_logs_timestamp", "data_quality_logs", ["timestamp"])
    op.create_index("ix_data_quality_logs_symbol_timestamp", "data_quality_logs",
                    ["symbol", "timestamp"])


def _registry_events() -> None:
    """``registry_events`` with its (model, time) index."""
    op.create_table(
        "registry_events",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        _ts(),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("event_type", sa.String(16), nullable=False),
        sa.Column("alias", sa.String(64), nullable=True),
        sa.Column("from_version", sa.Integer(), nullable=True),
        sa.Column("to_version", sa.Integer(), nullable=True),
        sa.Column("metric", sa.String(64), nullable=True),
        sa.Column("champion_score", sa.Double(), nullable=True),
        sa.Column("challenger_score", sa.Double(), nullable=True),
        sa.Column("tolerance", sa.Double(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_events")),
        sa.CheckConstraint("event_type IN ('promotion', 'rejection', 'rollback')",
                           name=op.f("ck_registry_events_event_type")),
    )
    op.create_index("ix_registry_events_model_name_timestamp", "registry_events",
                    ["model_name", "timestamp"])


def downgrade() -> None:
    # Dropping the partitioned parent drops its partitions (monthly and default) with it.
    for table in ("registry_events", "data_quality_logs", "feature_importance",
                  "sentiment_scores", "open_interest", "funding_rates", "liquidations"):
        op.drop_table(table)
