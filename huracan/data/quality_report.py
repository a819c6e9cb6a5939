"""The daily data-quality summary, read from ``data_quality_logs``.

What the rows mean (who writes them):

- ``download_batch`` (info): a download served by an exchange (:mod:`huracan.data.sources`);
  ``details``: exchange, kind, timeframe, rows, retries, ``fallback_from``.
- ``retry_exhausted`` / ``exchange_error`` (warning): an exchange failed a batch after its
  retries / with a non-transient error; the next exchange was tried.
- ``degraded_batch`` (critical): every exchange failed.
- ``gap`` (warning by default): a missing range found by validation (``start``, ``end``,
  ``bars_missing``, ``timeframe``, ``hours``).
- anything else: a failed expectation (``not_null``, ``coverage``, ``high_ge_low``, ...).

:func:`build_report` turns one window of them into a :class:`QualityReport` whose lines read like
"BTC/USDT missing 2 hours of data (1h: 2 bars in 1 gap: ...)". A symbol is MISSING when it was
expected (given, or downloaded in the ``lookback`` before the window) and no download served it
in the window. The same gap logged by several runs is counted once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import select

from huracan.alerts import Alert, Notifier
from huracan.db.tables import DataQualityLog

_RELATIVE = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_UNITS = {"m": "min", "h": "h", "d": "D", "w": "W"}
#: Issue types that are bookkeeping of the download path, not failed expectations.
DOWNLOAD_TYPES = ("download_batch", "retry_exhausted", "exchange_error", "degraded_batch")
#: How far before the window expected symbols are looked up.
LOOKBACK = pd.Timedelta(days=7)


def parse_since(text: str, now: pd.Timestamp | None = None) -> pd.Timestamp:
    """``1d``, ``12h``, ``30m``, ``2w`` (before ``now``) or a date/time (``2024-01-01``,
    ``2024-01-01T06:00+00:00``; without an offset it is read as UTC).

    Raises:
        ValueError: neither form.
    """
    now = now if now is not None else pd.Timestamp.now(tz="UTC")
    m = _RELATIVE.match(text)
    if m:
        return now - pd.Timedelta(int(m[1]), unit=_UNITS[m[2]])
    try:
        ts = pd.Timestamp(text)
    except (ValueError, TypeError):
        raise ValueError(f"--since {text!r}: expected e.g. 1d, 12h, 30m or 2024-01-01") from None
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _duration(hours: float) -> str:
    if hours >= 1:
        return f"{hours:g} hour{'s' if hours != 1 else ''}"
    minutes = hours * 60
    return f"{minutes:g} minute{'s' if minutes != 1 else ''}"


@dataclass(frozen=True)
class SymbolGaps:
    """Missing data of one symbol at one timeframe: distinct gaps, bars and hours missing."""

    symbol: str
    timeframe: str
    gaps: int
    bars_missing: int
    hours: float
    ranges: tuple[tuple[str, str, int], ...]

    def line(self, max_ranges: int = 3) -> str:
        shown = "; ".join(f"{a} -> {b}" for a, b, _ in self.ranges[:max_ranges])
        more = f" (+{len(self.ranges) - max_ranges} more)" if len(self.ranges) > max_ranges \
            else ""
        return (f"{self.symbol} missing {_duration(self.hours)} of data ({self.timeframe}: "
                f"{self.bars_missing} bar(s) in {self.gaps} gap(s): {shown}{more})")


@dataclass
class QualityReport:
    """One window's summary. Lists hold the log rows' ``details`` plus ``timestamp``,
    ``symbol`` and ``source``."""

    start: pd.Timestamp
    end: pd.Timestamp
    batches: int = 0
    symbols: list[str] = field(default_factory=list)
    missing_symbols: list[str] = field(default_factory=list)
    gaps: list[SymbolGaps] = field(default_factory=list)
    retry_failures: list[dict[str, Any]] = field(default_factory=list)
    exchange_errors: list[dict[str, Any]] = field(default_factory=list)
    degraded: list[dict[str, Any]] = field(default_factory=list)
    failures: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def critical_failures(self) -> int:
        if self.failures.empty:
            return 0
        return int(self.failures.loc[self.failures["severity"] == "critical", "count"].sum())

    @property
    def severity(self) -> str:
        """``critical`` (missing symbols, degraded batches, critical rule failures),
        ``warning`` (gaps, retry failures, warnings) or ``info`` (all clean)."""
        if self.missing_symbols or self.degraded or self.critical_failures:
            return "critical"
        if self.gaps or self.retry_failures or self.exchange_errors or not self.failures.empty:
            return "warning"
        return "info"

    def headline(self) -> str:
        return (f"Data quality {self.start:%Y-%m-%d %H:%M} -> {self.end:%Y-%m-%d %H:%M} UTC: "
                f"{self.batches} batch(es) for {len(self.symbols)} symbol(s); "
                f"{len(self.missing_symbols)} missing symbol(s), "
                f"{sum(g.gaps for g in self.gaps)} gap(s), {len(self.retry_failures)} retry "
                f"failure(s), {len(self.degraded)} degraded batch(es)")

    def lines(self) -> list[str]:
        """The summary, one finding per line (headline first)."""
        out = [self.headline()]
        out += [f"MISSING {s}: no successful download in the window" for s in
                self.missing_symbols]
        out += [g.line() for g in self.gaps]
        for r in self.retry_failures:
            out.append(f"retry failure: {r['source']}: {r.get('error')} after "
                       f"{r.get('retries', '?')} retries (next exchange tried)")
        for r in self.exchange_errors:
            out.append(f"exchange error: {r['source']}: {r.get('error')} (not retried)")
        for r in self.degraded:
            out.append(f"DEGRADED: {r.get('message') or r['source']}")
        if not self.failures.empty:
            for row in self.failures.itertuples(index=False):
                out.append(f"rule {row.issue_type} ({row.severity}) failed {row.count}x for "
                           f"{row.symbol or 'unknown symbol'}: {row.example}")
        return out

    def alert(self) -> Alert:
        """The summary as an :class:`~huracan.alerts.Alert` for a notifier."""
        details: dict[str, Any] = {"batches": self.batches}
        if self.missing_symbols:
            details["missing_symbols"] = ",".join(self.missing_symbols)
        if self.gaps:
            details["gaps"] = ",".join(f"{g.symbol}:{_duration(g.hours).replace(' ', '')}"
                                       for g in self.gaps)
        if self.retry_failures:
            details["retry_failures"] = len(self.retry_failures)
        if self.degraded:
            details["degraded"] = len(self.degraded)
        if self.critical_failures:
            details["critical_rule_failures"] = self.critical_failures
        problems = (len(self.missing_symbols) + len(self.gaps) + len(self.retry_failures)
                    + len(self.degraded) + self.critical_failures)
        title = (f"Data quality {self.start:%Y-%m-%d %H:%M}..{self.end:%H:%M} UTC: "
                 + (f"{problems} problem(s)" if problems else "clean"))
        return Alert(title, self.severity, details)


def _rows(bind: Any, start: datetime, end: datetime) -> pd.DataFrame:
    q = DataQualityLog
    stmt = (select(q.timestamp, q.symbol, q.source, q.issue_type, q.severity, q.details)
            .where(q.timestamp >= start, q.timestamp < end).order_by(q.timestamp, q.id))
    if hasattr(bind, "connect"):
        with bind.connect() as conn:
            rows = conn.execute(stmt).all()
    else:
        rows = bind.execute(stmt).all()
    df = pd.DataFrame.from_records(rows, columns=["timestamp", "symbol", "source", "issue_type",
                                                  "severity", "details"])
    df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
    return df


def build_report(bind: Any, since: pd.Timestamp, until: pd.Timestamp | None = None, *,
                 expected_symbols: Sequence[str] | None = None,
                 lookback: pd.Timedelta = LOOKBACK) -> QualityReport:
    """Summarise ``data_quality_logs`` rows logged in ``[since, until)``.

    Args:
        bind: an Engine or Connection of the brain store.
        since, until: UTC-aware window (``until`` default: now).
        expected_symbols: symbols that should have been downloaded; default: the symbols with
            a ``download_batch`` in the ``lookback`` before ``since``.

    Raises:
        ValueError: a naive ``since``/``until``.
    """
    end = until if until is not None else pd.Timestamp.now(tz="UTC")
    for name, ts in (("since", since), ("until", end)):
        if pd.Timestamp(ts).tzinfo is None:
            raise ValueError(f"{name}={ts!r} is naive: pass a UTC-aware time")
    start = pd.Timestamp(since).tz_convert("UTC")
    end = pd.Timestamp(end).tz_convert("UTC")
    df = _rows(bind, (start - lookback).to_pydatetime(), end.to_pydatetime())
    before, now = df[df["timestamp"] < start], df[df["timestamp"] >= start]
    report = QualityReport(start, end)

    def with_meta(r: Any) -> dict[str, Any]:
        return {**(r.details or {}), "timestamp": str(r.timestamp), "symbol": r.symbol,
                "source": r.source}

    served = now[now["issue_type"] == "download_batch"]
    report.batches = len(served)
    report.symbols = sorted(s for s in served["symbol"].dropna().unique())
    expected = set(expected_symbols) if expected_symbols is not None else set(
        before.loc[before["issue_type"] == "download_batch", "symbol"].dropna())
    degraded = now[now["issue_type"] == "degraded_batch"]
    expected |= set(degraded["symbol"].dropna())
    report.missing_symbols = sorted(expected - set(report.symbols))
    report.degraded = [with_meta(r) for r in degraded.itertuples(index=False)]
    report.retry_failures = [with_meta(r) for r in now[now["issue_type"] == "retry_exhausted"]
                             .itertuples(index=False)]
    report.exchange_errors = [with_meta(r) for r in now[now["issue_type"] == "exchange_error"]
                              .itertuples(index=False)]

    gaps = now[now["issue_type"] == "gap"]
    if not gaps.empty:
        g = pd.DataFrame([{"symbol": r.symbol or r.source, **(r.details or {})}
                          for r in gaps.itertuples(index=False)])
        g = g.drop_duplicates(["symbol", "timeframe", "start", "end"])
        for (sym, tf), part in g.groupby(["symbol", "timeframe"], sort=True):
            part = part.sort_values("start")
            report.gaps.append(SymbolGaps(
                str(sym), str(tf), len(part), int(part["bars_missing"].sum()),
                float(part["hours"].sum()) if "hours" in part else 0.0,
                tuple((str(a), str(b), int(n)) for a, b, n in
                      zip(part["start"], part["end"], part["bars_missing"], strict=True))))

    rules = now[~now["issue_type"].isin([*DOWNLOAD_TYPES, "gap"])]
    if not rules.empty:
        rules = rules.assign(example=[str((d or {}).get("message", ""))[:200]
                                      for d in rules["details"]])
        report.failures = (rules.groupby(["symbol", "issue_type", "severity"], dropna=False,
                                         sort=True)
                           .agg(count=("source", "size"), example=("example", "first"))
                           .reset_index()
                           .sort_values(["severity", "count"], ascending=[True, False],
                                        ignore_index=True))
    return report


def send(report: QualityReport, notifier: Notifier) -> Alert:
    """Send ``report`` through ``notifier`` (log, webhook, Telegram); returns the alert."""
    alert = report.alert()
    notifier.notify(alert)
    return alert
