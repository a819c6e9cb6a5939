"""The prediction log and the paper ledger: ``predictions`` (one row per answer of a production
model) and ``paper_accounts``, ``paper_orders``, ``paper_fills``, ``paper_marks`` (a paper
account's decisions, fills and per-bar returns; one row per account and bar at most).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the column types of huracan/db/tables.py as of this revision.
UTC_TS = sa.DateTime(timezone=True)
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("served_at", UTC_TS, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("model_version", sa.String(32), nullable=True),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("timeframe", sa.String(16), nullable=False),
        sa.Column("bar_time", UTC_TS, nullable=False),
        sa.Column("forecast", sa.Double(), nullable=True),
        sa.Column("regime", sa.String(32), nullable=True),
        sa.Column("position", sa.Double(), nullable=True),
        sa.Column("size", sa.Double(), nullable=True),
        sa.Column("leverage", sa.Double(), nullable=True),
        sa.Column("sizer", sa.String(256), nullable=True),
        sa.Column("execution", JSON_DOC, nullable=True),
        sa.Column("inputs_digest", sa.String(64), nullable=False),
        sa.Column("inputs_rows", sa.Integer(), nullable=False),
        sa.Column("inputs_path", sa.Text(), nullable=True),
        sa.Column("account", sa.String(128), nullable=True),
        sa.Column("latency_ms", sa.Double(), nullable=True),
        sa.CheckConstraint("source IN ('serve', 'paper', 'replay', 'size', 'select', "
                           "'in_process')", name=op.f("ck_predictions_source")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_predictions")),
    )
    op.create_index("ix_predictions_symbol_timeframe_bar_time", "predictions",
                    ["symbol", "timeframe", "bar_time"])
    op.create_index("ix_predictions_model_name_served_at", "predictions",
                    ["model_name", "served_at"])
    op.create_index("ix_predictions_account_bar_time", "predictions", ["account", "bar_time"])
    op.create_table(
        "paper_accounts",
        sa.Column("account", sa.String(128), nullable=False),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("timeframe", sa.String(16), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("production", sa.Text(), nullable=False),
        sa.Column("anchor", UTC_TS, nullable=False),
        sa.Column("execution", JSON_DOC, nullable=False),
        sa.Column("created_at", UTC_TS, nullable=False),
        sa.Column("heartbeat_at", UTC_TS, nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.CheckConstraint("mode IN ('live', 'replay')", name=op.f("ck_paper_accounts_mode")),
        sa.PrimaryKeyConstraint("account", name=op.f("pk_paper_accounts")),
    )
    op.create_table(
        "paper_orders",
        sa.Column("account", sa.String(128), nullable=False),
        sa.Column("bar_time", UTC_TS, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("decided_at", UTC_TS, nullable=False),
        sa.Column("bar_available_at", UTC_TS, nullable=True),
        sa.Column("model_name", sa.String(256), nullable=True),
        sa.Column("model_version", sa.String(32), nullable=True),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("forecast", sa.Double(), nullable=True),
        sa.Column("prev_position", sa.Double(), nullable=False),
        sa.Column("target_position", sa.Double(), nullable=False),
        sa.Column("bar_close", sa.Double(), nullable=True),
        sa.Column("data_digest", sa.String(64), nullable=True),
        sa.Column("prediction_id", ID, nullable=True),
        sa.CheckConstraint("status IN ('decided', 'skipped')",
                           name=op.f("ck_paper_orders_status")),
        sa.PrimaryKeyConstraint("account", "bar_time", name=op.f("pk_paper_orders")),
    )
    op.create_table(
        "paper_fills",
        sa.Column("account", sa.String(128), nullable=False),
        sa.Column("bar_time", UTC_TS, nullable=False),
        sa.Column("fill_time", UTC_TS, nullable=False),
        sa.Column("fill_price", sa.Double(), nullable=False),
        sa.Column("prev_position", sa.Double(), nullable=False),
        sa.Column("position", sa.Double(), nullable=False),
        sa.Column("turnover", sa.Double(), nullable=False),
        sa.Column("cost", sa.Double(), nullable=False),
        sa.Column("filled_at", UTC_TS, nullable=False),
        sa.PrimaryKeyConstraint("account", "bar_time", name=op.f("pk_paper_fills")),
    )
    op.create_table(
        "paper_marks",
        sa.Column("account", sa.String(128), nullable=False),
        sa.Column("bar_time", UTC_TS, nullable=False),
        sa.Column("prev_position", sa.Double(), nullable=False),
        sa.Column("position", sa.Double(), nullable=False),
        sa.Column("asset_return", sa.Double(), nullable=False),
        sa.Column("gross_return", sa.Double(), nullable=False),
        sa.Column("cost", sa.Double(), nullable=False),
        sa.Column("funding_cost", sa.Double(), nullable=False),
        sa.Column("borrow_cost", sa.Double(), nullable=False),
        sa.Column("net_return", sa.Double(), nullable=False),
        sa.Column("equity", sa.Double(), nullable=False),
        sa.Column("marked_at", UTC_TS, nullable=False),
        sa.PrimaryKeyConstraint("account", "bar_time", name=op.f("pk_paper_marks")),
    )


def downgrade() -> None:
    for table in ("paper_marks", "paper_fills", "paper_orders", "paper_accounts"):
        op.drop_table(table)
    op.drop_table("predictions")
