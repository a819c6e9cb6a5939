"""Drift reports and retrain requests: one row per Evidently drift report of a model (windows,
drift share, flagged features, the MLflow run holding the report) and the retrain requests that
drift over threshold leaves for the nightly pipeline.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the column types of huracan/db/tables.py as of this revision.
UTC_TS = sa.DateTime(timezone=True)
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "drift_reports",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("created_at", UTC_TS, nullable=False),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("timeframe", sa.String(16), nullable=False),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=True),
        sa.Column("reference_start", UTC_TS, nullable=False),
        sa.Column("reference_end", UTC_TS, nullable=False),
        sa.Column("current_start", UTC_TS, nullable=False),
        sa.Column("current_end", UTC_TS, nullable=False),
        sa.Column("reference_rows", sa.Integer(), nullable=False),
        sa.Column("current_rows", sa.Integer(), nullable=False),
        sa.Column("n_features", sa.Integer(), nullable=False),
        sa.Column("n_drifted", sa.Integer(), nullable=False),
        sa.Column("drift_share", sa.Double(), nullable=False),
        sa.Column("threshold", sa.Double(), nullable=False),
        sa.Column("drifted", sa.Boolean(), nullable=False),
        sa.Column("prediction_drift_score", sa.Double(), nullable=True),
        sa.Column("prediction_drifted", sa.Boolean(), nullable=True),
        sa.Column("target_drift_score", sa.Double(), nullable=True),
        sa.Column("target_drifted", sa.Boolean(), nullable=True),
        sa.Column("drifted_features", JSON_DOC, nullable=False),
        sa.Column("details", JSON_DOC, nullable=True),
        sa.Column("report_run_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drift_reports")),
        sa.CheckConstraint("drift_share >= 0 AND drift_share <= 1",
                           name=op.f("ck_drift_reports_drift_share_range")),
        sa.CheckConstraint("n_drifted >= 0 AND n_drifted <= n_features",
                           name=op.f("ck_drift_reports_n_drifted_range")),
    )
    op.create_index("ix_drift_reports_model_name_created_at", "drift_reports",
                    ["model_name", "created_at"])
    op.create_index("ix_drift_reports_symbol_created_at", "drift_reports",
                    ["symbol", "created_at"])

    op.create_table(
        "retrain_requests",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("created_at", UTC_TS, nullable=False),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("timeframe", sa.String(16), nullable=False),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("source", sa.String(32), server_default="drift", nullable=False),
        sa.Column("drift_report_id", ID, nullable=True),
        sa.Column("report_run_id", sa.String(64), nullable=True),
        sa.Column("consumed_at", UTC_TS, nullable=True),
        sa.Column("consumed_by", sa.String(256), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retrain_requests")),
    )
    op.create_index("ix_retrain_requests_symbol_timeframe_created_at", "retrain_requests",
                    ["symbol", "timeframe", "created_at"])
    op.create_index("ix_retrain_requests_consumed_at", "retrain_requests", ["consumed_at"])


def downgrade() -> None:
    for table in ("retrain_requests", "drift_reports"):
        op.drop_table(table)
