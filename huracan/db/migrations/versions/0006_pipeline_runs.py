"""Pipeline runs: one row per (night, symbol, step) of ``python -m huracan.nightly``: its status,
start and end, attempt count, the process that ran it, the MLflow run ids it produced and a
one-line detail. A rerun of the same night reads it to skip finished steps.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the column types of huracan/db/tables.py as of this revision.
UTC_TS = sa.DateTime(timezone=True)
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "pipeline_runs",
        sa.Column("run_id", sa.String(128), nullable=False),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("step", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", UTC_TS, nullable=False),
        sa.Column("ended_at", UTC_TS, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(256), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("mlflow_run_ids", JSON_DOC, nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.CheckConstraint("status IN ('running', 'done', 'skipped', 'failed')",
                           name=op.f("ck_pipeline_runs_status")),
        sa.PrimaryKeyConstraint("run_id", "symbol", "step", name=op.f("pk_pipeline_runs")),
    )
    op.create_index("ix_pipeline_runs_symbol_step_started_at", "pipeline_runs",
                    ["symbol", "step", "started_at"])


def downgrade() -> None:
    op.drop_table("pipeline_runs")
