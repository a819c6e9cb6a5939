"""Data-quality findings into the ``data_quality_logs`` table.

:class:`DbQualitySink` implements :class:`huracan.data.quality.QualitySink`, so any loader that
takes a sink (``load_ohlcv(..., sink=...)``) can log to the brain store instead of a JSON-lines
file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, insert

from huracan.data.quality import QualityIssue
from huracan.db.tables import DataQualityLog


def json_safe(value: Any) -> Any:
    """``value`` as something every JSON column accepts: numpy scalars become Python numbers,
    NaN/inf become the strings ``"nan"``/``"inf"`` (Postgres JSONB refuses NaN), timestamps
    become ISO strings, containers are converted recursively."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (pd.Timestamp, datetime)):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if value is pd.NaT:
        return None
    return str(value)


def _row(issue: QualityIssue) -> dict[str, Any]:
    ts = pd.Timestamp(issue.timestamp)
    ts = ts.tz_localize(UTC) if ts.tzinfo is None else ts.tz_convert(UTC)
    return {
        "timestamp": ts.to_pydatetime(),
        "symbol": issue.symbol,
        "source": issue.source,
        "issue_type": issue.issue_type,
        "severity": issue.severity,
        "details": json_safe(issue.details),
    }


def insert_quality_issues(conn: Connection, issues: Sequence[QualityIssue]) -> int:
    """Insert ``issues`` into ``data_quality_logs`` within the caller's transaction.

    Returns:
        The number of rows written.
    """
    if issues:
        conn.execute(insert(DataQualityLog), [_row(i) for i in issues])
    return len(issues)


class DbQualitySink:
    """A :class:`~huracan.data.quality.QualitySink` writing to ``data_quality_logs``.

    Args:
        bind: an Engine (each issue is committed in its own transaction, so the log survives a
            failed load) or a Connection (the issue joins the caller's transaction).
    """

    def __init__(self, bind: Engine | Connection) -> None:
        self.bind = bind

    def write(self, issue: QualityIssue) -> None:
        if isinstance(self.bind, Engine):
            with self.bind.begin() as conn:
                insert_quality_issues(conn, [issue])
        else:
            insert_quality_issues(self.bind, [issue])
