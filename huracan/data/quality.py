"""Data-quality log: every rule a dataset breaks becomes one structured entry.

The sink is an interface so that the brain store's ``data_quality_logs`` table can take over from
the default JSON-lines file without touching the callers.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("huracan.data_quality")


@dataclass(frozen=True)
class QualityIssue:
    """One data-quality finding.

    Attributes:
        source: file path or download source the data came from.
        issue_type: the rule broken (``missing_column``, ``duplicate_timestamp``, ``gap``...).
        severity: ``critical`` (the data is refused) or ``warning`` (used, but noted).
        details: the failing values: column, row, timestamp, ranges.
        symbol: market symbol when known (``BTC/USDT``).
    """

    source: str
    issue_type: str
    severity: str
    details: dict[str, Any] = field(default_factory=dict)
    symbol: str | None = None
    timestamp: str = field(default_factory=lambda: datetime.now(UTC).isoformat())


class QualitySink(Protocol):
    def write(self, issue: QualityIssue) -> None: ...


class JsonlQualitySink:
    """Appends one JSON object per issue to a file (default ``data_quality.jsonl``)."""

    def __init__(self, path: str | Path = "data_quality.jsonl") -> None:
        self.path = Path(path)

    def write(self, issue: QualityIssue) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(asdict(issue), default=str) + "\n")


def record(issue: QualityIssue, sink: QualitySink | None) -> None:
    """Log ``issue`` (warning or error level) and write it to ``sink`` when given."""
    level = logging.ERROR if issue.severity == "critical" else logging.WARNING
    log.log(level, "%s %s: %s %s", issue.severity, issue.source, issue.issue_type, issue.details)
    if sink is not None:
        sink.write(issue)
