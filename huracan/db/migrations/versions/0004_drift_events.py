"""Registry history records drift: a ``drift`` event type for ``registry monitor``'s drift check
over threshold (the monitoring run holding the Evidently report, the retrain request in its
evidence), beside the performance check's ``rollback``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_TYPES = "event_type IN ('promotion', 'rejection', 'rollback', 'skipped')"
NEW_TYPES = "event_type IN ('promotion', 'rejection', 'rollback', 'skipped', 'drift')"


def upgrade() -> None:
    # batch mode: SQLite cannot alter a CHECK constraint in place (the table is copied)
    with op.batch_alter_table("registry_events") as batch:
        batch.drop_constraint(op.f("ck_registry_events_event_type"), type_="check")
        batch.create_check_constraint("event_type", NEW_TYPES)


def downgrade() -> None:
    op.execute("DELETE FROM registry_events WHERE event_type = 'drift'")
    with op.batch_alter_table("registry_events") as batch:
        batch.drop_constraint(op.f("ck_registry_events_event_type"), type_="check")
        batch.create_check_constraint("event_type", OLD_TYPES)
