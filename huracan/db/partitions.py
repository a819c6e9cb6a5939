"""Monthly range partitions of ``liquidations`` on Postgres.

Layout: ``liquidations`` is ``PARTITION BY RANGE ("timestamp")``; each calendar month (UTC) is a
partition ``liquidations_pYYYYMM`` covering ``[first of month, first of next month)``, and
``liquidations_default`` catches anything else. The bulk loader calls
:func:`ensure_liquidation_partitions` for the months of a batch in its own short transaction
before loading, so loads land in monthly partitions and old months can be detached or dropped
whole. On SQLite ``liquidations`` is a plain table and these functions do nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import pandas as pd
from sqlalchemy import Connection, text

PARENT = "liquidations"
DEFAULT_PARTITION = "liquidations_default"
#: Key of the transaction-level advisory lock serialising partition creation between loaders.
_LOCK_KEY = 0x68757261  # "hura"


def partition_name(month: pd.Period) -> str:
    """``liquidations_p202510`` for October 2025."""
    return f"{PARENT}_p{month.year:04d}{month.month:02d}"


def months_of(timestamps: Iterable[datetime] | pd.Series) -> list[pd.Period]:
    """The distinct UTC calendar months of ``timestamps`` (aware datetimes), sorted."""
    ts = pd.to_datetime(pd.Series(list(timestamps) if not isinstance(timestamps, pd.Series)
                                  else timestamps), utc=True)
    if ts.empty:
        return []
    return sorted(ts.dt.tz_localize(None).dt.to_period("M").dropna().unique())


def existing_partitions(conn: Connection) -> list[str]:
    """Names of the partitions currently attached to ``liquidations`` (Postgres only)."""
    rows = conn.execute(text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = CAST(:parent AS regclass) ORDER BY c.relname"), {"parent": PARENT})
    return [r[0] for r in rows]


def ensure_liquidation_partitions(
    conn: Connection, timestamps: Iterable[datetime] | pd.Series
) -> list[str]:
    """Create the monthly partitions that ``timestamps`` need and that do not exist yet.

    Rows already sitting in the default partition for such a month (written before its
    partition existed) are moved into the new partition, because Postgres refuses to add a
    partition whose range the default partition already holds rows of. Concurrent loaders are
    serialised by a transaction-level advisory lock. Runs inside the caller's transaction.

    Args:
        conn: a Connection to the brain store; on any dialect but Postgres nothing happens.
        timestamps: UTC-aware event times of the batch about to be loaded.

    Returns:
        The names of the partitions created (empty when all existed).
    """
    if conn.dialect.name != "postgresql":
        return []
    months = months_of(timestamps)
    if not months:
        return []
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    existing = set(existing_partitions(conn))
    created = []
    for month in months:
        name = partition_name(month)
        if name in existing:
            continue
        lo = month.start_time.tz_localize("UTC")
        hi = (month + 1).start_time.tz_localize("UTC")
        bounds = (f"FROM ('{lo:%Y-%m-%d %H:%M:%S}+00') TO ('{hi:%Y-%m-%d %H:%M:%S}+00')")
        stray = conn.execute(text(
            f'SELECT count(*) FROM {DEFAULT_PARTITION} WHERE "timestamp" >= :lo '
            'AND "timestamp" < :hi'), {"lo": lo, "hi": hi}).scalar_one()
        if not stray:
            conn.exec_driver_sql(f"CREATE TABLE {name} PARTITION OF {PARENT} FOR VALUES {bounds}")
        else:
            conn.exec_driver_sql(
                f"CREATE TABLE {name} (LIKE {PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
            conn.execute(text(
                f'WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE "timestamp" >= :lo '
                f'AND "timestamp" < :hi RETURNING *) INSERT INTO {name} SELECT * FROM moved'),
                {"lo": lo, "hi": hi})
            conn.exec_driver_sql(
                f"ALTER TABLE {PARENT} ATTACH PARTITION {name} FOR VALUES {bounds}")
        created.append(name)
    return created
