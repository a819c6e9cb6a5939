"""Tuned hyperparameters: the best parameters of each Optuna study per symbol, timeframe and
model (``python -m huracan.tune``), with the study, its metric, value and trial count.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the column types of huracan/db/tables.py as of this revision.
UTC_TS = sa.DateTime(timezone=True)
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "tuned_hyperparameters",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("created_at", UTC_TS, nullable=False),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("timeframe", sa.String(16), nullable=False),
        sa.Column("model_type", sa.String(64), nullable=False),
        sa.Column("study_name", sa.String(256), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("n_trials", sa.Integer(), nullable=False),
        sa.Column("params", JSON_DOC, nullable=False),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tuned_hyperparameters")),
    )
    op.create_index("ix_tuned_hyperparameters_symbol_timeframe_model_type",
                    "tuned_hyperparameters", ["symbol", "timeframe", "model_type", "created_at"])


def downgrade() -> None:
    op.drop_table("tuned_hyperparameters")
