"""Import a candle file (Parquet or CSV) into the lake: validate with the OHLCV suite, then append
the bars not stored yet.

:func:`import_candles` is what ``huracan lake import`` (:mod:`huracan.cli.lake`) runs and what
a nightly pipeline calls. The file needs the lake's columns (:mod:`huracan.data.lake`):
``timestamp`` (candle OPEN time, UTC; datetimes with a zone, ISO 8601 text with an offset, or epoch
milliseconds), ``open, high, low, close`` (quote currency), ``volume`` (base units); other
columns are ignored. Validation is :func:`huracan.data.validate.validate_frame` with the
``ohlcv`` suite (GX expectations + grid, gap and coverage checks at ``timeframe``); every finding
goes to ``sink`` (``data_quality_logs`` through ``DbQualitySink``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from huracan.data.lake import CandleLake
from huracan.data.ohlcv import OHLCV_COLUMNS, DataValidationError, timeframe_to_timedelta
from huracan.data.quality import QualityIssue, QualitySink, record
from huracan.data.validate import (
    SuiteRunner,
    ValidationConfig,
    ValidationReport,
    coerce_timestamps,
    read_table,
    validate_frame,
)

_EXCHANGE = re.compile(r"^[a-z0-9][a-z0-9_.]*$")
_SYMBOL = re.compile(r"^[A-Za-z0-9]+/[A-Za-z0-9]+(:[A-Za-z0-9]+)?$")


@dataclass(frozen=True)
class ImportResult:
    """What :func:`import_candles` did.

    Attributes:
        source: the file imported.
        partition: the lake directory of the series.
        rows: rows read from the file.
        written: new bars stored (0 when refused or all stored already).
        skipped: bars already in the lake (not written again).
        dropped: rows the lake cannot hold that were left out under ``allow_degraded`` (no
            timestamp, or a timestamp repeated in the file: the first row is kept).
        report: the validation report (``report.passed`` False: a critical rule failed).
        stored: False when refused (critical rules failed without ``allow_degraded``).
        part: the part file written, ``None`` when nothing was.
    """

    source: Path
    partition: Path
    rows: int
    written: int
    skipped: int
    dropped: int
    report: ValidationReport
    stored: bool
    part: Path | None

    @property
    def degraded(self) -> bool:
        """A critical rule failed (stored only with ``allow_degraded``)."""
        return not self.report.passed

    def summary(self) -> str:
        """One line: rows read, written, skipped, where, verdict."""
        line = (f"{self.source}: read {self.rows} row(s), wrote {self.written} new, skipped "
                f"{self.skipped} already stored")
        if self.dropped:
            line += f", dropped {self.dropped} unstorable"
        if not self.stored:
            line += " -> NOT stored (critical rules failed: " + ", ".join(
                self.report.failed_rules) + ")"
        else:
            line += f" -> {self.partition}"
            if self.degraded:
                line += " [DEGRADED: " + ", ".join(self.report.failed_rules) + "]"
        return line


def check_series(exchange: str, symbol: str, timeframe: str) -> None:
    """Refuse a series key that would make a wrong or unsafe lake partition.

    Raises:
        ValueError: ``exchange`` is not a lower-case ccxt-style id (``binance``), ``symbol`` is
            not a ccxt unified symbol (``BTC/USDT`` or ``BTC/USDT:USDT``), or ``timeframe`` is
            not a ccxt timeframe (``1m``, ``1h``, ``1d`` ...).
    """
    if not _EXCHANGE.match(exchange):
        raise ValueError(f"exchange {exchange!r} is not a lower-case exchange id such as "
                         "'binance'")
    if not _SYMBOL.match(symbol):
        raise ValueError(f"symbol {symbol!r} is not BASE/QUOTE or BASE/QUOTE:SETTLE (e.g. "
                         "BTC/USDT, BTC/USDT:USDT)")
    timeframe_to_timedelta(timeframe)


def import_candles(
    path: str | Path, lake: CandleLake, exchange: str, symbol: str, timeframe: str, *,
    sink: QualitySink | None = None, allow_degraded: bool = False,
    config: ValidationConfig | None = None, runner: SuiteRunner | None = None,
) -> ImportResult:
    """Validate the candles in ``path`` and append the bars the lake lacks to
    ``lake``'s ``(exchange, symbol, timeframe)`` series (crash-safe, :meth:`CandleLake.append`).

    Args:
        path: Parquet (``.parquet``) or CSV (``.csv``) file with the OHLCV columns.
        lake: the candle lake.
        exchange, symbol, timeframe: the series (``binance``, ``BTC/USDT``, ``1h``); the
            timeframe is also the grid the gap and coverage checks use.
        sink: where every finding is written (e.g. ``DbQualitySink``); ``None``: logged only.
        allow_degraded: store even when critical rules failed (rows without a timestamp and
            repeated timestamps are left out, counted in ``dropped``); a ``stored_degraded``
            warning is then logged to ``sink``.
        config: validation thresholds (coverage 95% by default).
        runner: a :class:`SuiteRunner` to reuse.

    Returns:
        The :class:`ImportResult`; ``stored`` is False when critical rules failed and
        ``allow_degraded`` is off (the lake is then untouched).

    Raises:
        DataValidationError: the file is missing, unreadable, of another type, lacks an OHLCV
            column, or (only with ``allow_degraded``) holds naive timestamps, which cannot be
            stored without guessing a time zone. The message is one line naming file and rule.
        ValueError: bad ``exchange``, ``symbol`` or ``timeframe`` (:func:`check_series`).
    """
    check_series(exchange, symbol, timeframe)
    path = Path(path)
    frame = read_table(path)
    missing = [c for c in OHLCV_COLUMNS if c not in frame.columns]
    if missing:
        raise DataValidationError(str(path), "missing_column", f"missing column(s) {missing}; "
                                  f"found {list(frame.columns)}", {"missing": missing})
    report = validate_frame(frame, "ohlcv", source=str(path), symbol=symbol, timeframe=timeframe,
                            config=config, sink=sink, runner=runner)
    partition = lake.partition(exchange, symbol, timeframe)
    if not report.passed and not allow_degraded:
        return ImportResult(path, partition, len(frame), 0, 0, 0, report, False, None)
    bars, dropped = _storable(frame, str(path))
    appended = lake.append(bars, exchange, symbol, timeframe)
    if not report.passed:
        record(QualityIssue(str(path), "stored_degraded", "warning", {
            "message": f"{path}: stored {appended.written} bar(s) in {partition} despite "
                       f"critical rule(s) {', '.join(report.failed_rules)} (allow_degraded); "
                       f"{dropped} unstorable row(s) dropped",
            "failed_rules": report.failed_rules, "written": appended.written,
            "dropped": dropped, "partition": str(partition)}, symbol), sink)
    return ImportResult(path, partition, len(frame), appended.written, appended.skipped,
                        dropped, report, True, appended.path)


def _storable(frame: pd.DataFrame, source: str) -> tuple[pd.DataFrame, int]:
    """The OHLCV columns as the lake stores them (UTC ``timestamp[ms]``, float64 prices), without
    rows lacking a timestamp or repeating one; ``(bars, rows dropped)``."""
    df = coerce_timestamps(frame.loc[:, list(OHLCV_COLUMNS)].reset_index(drop=True))
    ts = df["timestamp"]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        raise DataValidationError(source, "timestamp_timezone", f"column 'timestamp' has dtype "
                                  f"{ts.dtype}: naive or not datetimes cannot be stored (give "
                                  "UTC times, e.g. ISO 8601 with an offset)")
    keep = ts.notna() & ~ts.duplicated(keep="first")
    bars = df[keep].copy()
    bars["timestamp"] = bars["timestamp"].dt.tz_convert("UTC").astype("datetime64[ms, UTC]")
    for col in OHLCV_COLUMNS[1:]:
        bars[col] = pd.to_numeric(bars[col], errors="coerce").astype("float64")
    return bars.reset_index(drop=True), int((~keep).sum())
