"""Registry events carry their evidence: a ``skipped`` decision type, the evaluation window's bar
count and a JSON ``evidence`` document (window, trades, PSR/DSR of each model, bootstrap interval).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
OLD_TYPES = "event_type IN ('promotion', 'rejection', 'rollback')"
NEW_TYPES = "event_type IN ('promotion', 'rejection', 'rollback', 'skipped')"


def upgrade() -> None:
    # batch mode: SQLite cannot alter a CHECK constraint in place (the table is copied)
    with op.batch_alter_table("registry_events") as batch:
        batch.drop_constraint(op.f("ck_registry_events_event_type"), type_="check")
        batch.create_check_constraint("event_type", NEW_TYPES)
        batch.add_column(sa.Column("eval_bars", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("evidence", JSON_DOC, nullable=True))


def downgrade() -> None:
    op.execute("DELETE FROM registry_events WHERE event_type = 'skipped'")
    with op.batch_alter_table("registry_events") as batch:
        batch.drop_column("evidence")
        batch.drop_column("eval_bars")
        batch.drop_constraint(op.f("ck_registry_events_event_type"), type_="check")
        batch.create_check_constraint("event_type", OLD_TYPES)
