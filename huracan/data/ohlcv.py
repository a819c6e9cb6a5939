"""Load, check and resample OHLCV candles from Parquet or CSV files.

File conventions (../shared/data/README.md): columns ``timestamp, open, high, low, close, volume``;
``timestamp`` is the candle OPEN time, UTC; prices in quote currency; volume in base units.

Gap policy (real exchange data has outages): candles are never forward-filled. Loading keeps the
gaps as they are; :func:`resample_ohlcv` emits a coarser bar only when every finer bar inside it is
present (an incomplete bar becomes part of the gap); the feature builder reindexes to the full
timeframe grid so that any window touching a missing bar yields NaN, and such rows are dropped
before training. No return is ever computed across a hole.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from huracan.data.quality import QualityIssue, QualitySink, record

OHLCV_COLUMNS: tuple[str, ...] = ("timestamp", "open", "high", "low", "close", "volume")
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
SECONDS_PER_YEAR = 365 * 24 * 3600  # crypto trades 24/7, 365 days


class DataValidationError(ValueError):
    """Input data broke a rule. ``str(err)`` is one line naming file, column/row and rule."""

    def __init__(self, source: str, rule: str, message: str, details: dict | None = None):
        self.source = source
        self.rule = rule
        self.details = details or {}
        super().__init__(f"{source}: {message} [rule: {rule}]")


def timeframe_to_timedelta(timeframe: str) -> pd.Timedelta:
    """Parse a ccxt-style timeframe (``1m``, ``5m``, ``1h``, ``4h``, ``1d``, ``1w``).

    Raises:
        ValueError: on an unknown unit or a non-positive count.
    """
    units = {"m": "min", "h": "h", "d": "D", "w": "W"}
    count, unit = timeframe[:-1], timeframe[-1:]
    if unit not in units or not count.isdigit() or int(count) <= 0:
        raise ValueError(f"unknown timeframe {timeframe!r} (expected e.g. 5m, 1h, 4h, 1d)")
    return pd.Timedelta(int(count), unit=units[unit])


def bars_per_year(timeframe: str) -> float:
    """Bars in a 365-day year of 24/7 trading: 8,760 for ``1h``, 105,120 for ``5m``."""
    return SECONDS_PER_YEAR / timeframe_to_timedelta(timeframe).total_seconds()


@dataclass(frozen=True)
class Gap:
    """A run of missing bars: ``start`` is the first missing bar's open time."""

    start: pd.Timestamp
    end: pd.Timestamp
    bars_missing: int


def find_gaps(timestamps: pd.Series | pd.DatetimeIndex, timeframe: str) -> list[Gap]:
    """Missing runs between consecutive timestamps on the ``timeframe`` grid (sorted input)."""
    step = timeframe_to_timedelta(timeframe)
    ts = pd.DatetimeIndex(timestamps)
    if len(ts) < 2:
        return []
    deltas = ts[1:] - ts[:-1]
    idx = np.flatnonzero(deltas > step)
    return [
        Gap(ts[i] + step, ts[i + 1] - step, int(deltas[i] / step) - 1) for i in idx
    ]


def _read_frame(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix == ".csv":
        return pd.read_csv(path)
    raise DataValidationError(str(path), "file_format", f"unsupported file type {suffix!r} "
                              "(expected .parquet or .csv)")


def _to_utc(col: pd.Series, source: str) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(col):
        if getattr(col.dt, "tz", None) is None:
            raise DataValidationError(
                source, "timestamp_timezone",
                "column 'timestamp' holds naive datetimes; expected UTC-aware timestamps")
        return col.dt.tz_convert("UTC")
    if pd.api.types.is_numeric_dtype(col):
        return pd.to_datetime(col, unit="ms", utc=True)
    parsed = pd.to_datetime(col, utc=False, errors="coerce", format="ISO8601")
    bad = parsed.isna() & col.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataValidationError(source, "timestamp_parse",
                                  f"column 'timestamp' row {row}: cannot parse {col.iloc[row]!r}")
    if getattr(parsed.dt, "tz", None) is None:
        raise DataValidationError(
            source, "timestamp_timezone",
            "column 'timestamp' holds naive datetimes; expected an explicit UTC offset")
    return parsed.dt.tz_convert("UTC")


def validate_ohlcv(df: pd.DataFrame, source: str, timeframe: str | None = None) -> pd.DataFrame:
    """Check an OHLCV frame and return it with a UTC ``timestamp`` column and float prices.

    Rules (the first broken one raises): required columns present; timestamps parse and are
    UTC-aware; no NaN; timestamps strictly increasing (no duplicates, no disorder); prices > 0;
    volume >= 0; high >= low, high >= max(open, close), low <= min(open, close); when
    ``timeframe`` is given, timestamps lie on its grid.

    Raises:
        DataValidationError: naming ``source``, the column and row, and the rule.
    """
    missing = [c for c in OHLCV_COLUMNS if c not in df.columns]
    if missing:
        raise DataValidationError(source, "missing_column",
                                  f"missing column(s) {missing}; expected {list(OHLCV_COLUMNS)}",
                                  {"missing": missing})
    out = df.loc[:, list(OHLCV_COLUMNS)].copy()
    out["timestamp"] = _to_utc(out["timestamp"], source)
    for col in OHLCV_COLUMNS[1:]:
        if not pd.api.types.is_numeric_dtype(out[col]):
            raise DataValidationError(source, "numeric_type",
                                      f"column {col!r} is {out[col].dtype}, expected numeric")
        out[col] = out[col].astype("float64")

    def fail(rule: str, col: str, mask: np.ndarray, what: str) -> None:
        row = int(np.flatnonzero(mask)[0])
        ts = out["timestamp"].iloc[row]
        raise DataValidationError(
            source, rule, f"column {col!r} row {row} (timestamp {ts}): {what}; "
            f"{int(mask.sum())} row(s) break this rule",
            {"column": col, "row": row, "timestamp": str(ts), "count": int(mask.sum())})

    for col in OHLCV_COLUMNS:
        mask = out[col].isna().to_numpy()
        if mask.any():
            fail("not_null", col, mask, "value is NaN/missing")
    diffs = np.diff(out["timestamp"].astype("int64").to_numpy())
    dup = np.concatenate([[False], diffs == 0])
    if dup.any():
        fail("unique_timestamp", "timestamp", dup, "duplicate timestamp")
    back = np.concatenate([[False], diffs < 0])
    if back.any():
        fail("increasing_timestamp", "timestamp", back, "timestamp earlier than the previous row")
    for col in PRICE_COLUMNS:
        mask = (out[col] <= 0).to_numpy()
        if mask.any():
            fail("positive_price", col, mask, f"price {out[col].iloc[np.argmax(mask)]} <= 0")
    mask = (out["volume"] < 0).to_numpy()
    if mask.any():
        fail("non_negative_volume", "volume", mask, "volume < 0")
    mask = (out["high"] < out["low"]).to_numpy()
    if mask.any():
        fail("high_ge_low", "high", mask, "high < low")
    mask = (out["high"] < out[["open", "close"]].max(axis=1)).to_numpy()
    if mask.any():
        fail("high_ge_open_close", "high", mask, "high < max(open, close)")
    mask = (out["low"] > out[["open", "close"]].min(axis=1)).to_numpy()
    if mask.any():
        fail("low_le_open_close", "low", mask, "low > min(open, close)")
    if timeframe is not None:
        step = timeframe_to_timedelta(timeframe)
        offgrid = ((out["timestamp"] - pd.Timestamp(0, tz="UTC")) % step != pd.Timedelta(0))
        mask = offgrid.to_numpy()
        if mask.any():
            fail("on_timeframe_grid", "timestamp", mask, f"timestamp not on the {timeframe} grid")
    return out.reset_index(drop=True)


def infer_timeframe(timestamps: pd.Series) -> str:
    """The most common spacing of ``timestamps`` as a timeframe string (``5m``, ``1h``, ``8h``,
    ``1d``, ``1w``): missing times dropped, the rest sorted, rounded to the minute and
    de-duplicated first, so clock jitter, repeats and disorder do not change the answer.

    Raises:
        ValueError: fewer than two distinct timestamps, a spacing that is not a whole number of
            minutes, or one of 28 days or more (calendar-monthly series: their spacings vary).
    """
    ts = pd.Series(timestamps)
    clean = pd.Series(ts.dropna().sort_values().dt.round("min").unique())
    step = clean.diff().dropna()
    step = step[step > pd.Timedelta(0)].mode()
    if step.empty:
        raise ValueError("cannot infer a timeframe from fewer than two distinct timestamps")
    seconds = int(step.iloc[0].total_seconds())
    if seconds >= 28 * 86400:
        raise ValueError(f"timestamp spacing of {seconds}s is 28 days or more (calendar-monthly "
                         "spacings vary): no fixed timeframe")
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    raise ValueError(f"timestamp spacing of {seconds}s is not a whole number of minutes")


def resample_ohlcv(df: pd.DataFrame, source_timeframe: str, timeframe: str) -> pd.DataFrame:
    """Aggregate candles to a coarser ``timeframe`` (open first, high max, low min, close last,
    volume sum), labelled by the bar's open time.

    A coarse bar is emitted only when all of its source bars exist; incomplete bars (inside an
    outage, or the unfinished last bar) are dropped, never filled.

    Raises:
        ValueError: when ``timeframe`` is not a whole multiple of ``source_timeframe``.
    """
    src = timeframe_to_timedelta(source_timeframe)
    dst = timeframe_to_timedelta(timeframe)
    if dst == src:
        return df.reset_index(drop=True)
    if dst < src or dst % src != pd.Timedelta(0):
        raise ValueError(f"cannot resample {source_timeframe} bars to {timeframe}")
    per_bar = int(dst / src)
    grouped = df.set_index("timestamp").resample(dst, label="left", closed="left")
    out = grouped.agg({"open": "first", "high": "max", "low": "min", "close": "last",
                       "volume": "sum"})
    counts = grouped["close"].count()
    out = out[counts == per_bar]
    return out.reset_index()


def load_ohlcv(
    path: str | Path,
    timeframe: str | None = None,
    *,
    symbol: str | None = None,
    sink: QualitySink | None = None,
) -> tuple[pd.DataFrame, str]:
    """Read an OHLCV Parquet/CSV file, validate it and resample to ``timeframe``.

    Args:
        path: file following the OHLCV conventions above.
        timeframe: target bar size; ``None`` keeps the file's own (inferred) timeframe.
        symbol: for the data-quality log.
        sink: where data-quality issues (rule failures, gaps) are written.

    Returns:
        ``(frame, source_timeframe)``; the frame has columns ``OHLCV_COLUMNS``, one row per complete
        bar, gaps left as gaps.

    Raises:
        DataValidationError: the file is missing, unreadable or breaks a rule (also logged to
            ``sink`` as a critical issue).
    """
    path = Path(path)
    source = str(path)
    try:
        if not path.is_file():
            raise DataValidationError(source, "file_exists", "file not found")
        try:
            raw = _read_frame(path)
        except DataValidationError:
            raise
        except Exception as exc:  # the reader's own error type varies by format
            raise DataValidationError(source, "readable", f"cannot read file: {exc}") from exc
        df = validate_ohlcv(raw, source)
        src_tf = infer_timeframe(df["timestamp"])
        df = validate_ohlcv(df, source, src_tf)
    except DataValidationError as err:
        record(QualityIssue(source, err.rule, "critical", {"error": str(err), **err.details},
                            symbol), sink)
        raise
    for gap in find_gaps(df["timestamp"], src_tf):
        record(QualityIssue(source, "gap", "warning",
                            {"start": str(gap.start), "end": str(gap.end),
                             "bars_missing": gap.bars_missing, "timeframe": src_tf}, symbol), sink)
    if timeframe is not None:
        df = resample_ohlcv(df, src_tf, timeframe)
    return df, src_tf


def complete_grid(df: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """Reindex to every bar between the first and last timestamp; missing bars become NaN rows."""
    step = timeframe_to_timedelta(timeframe)
    grid = pd.date_range(df["timestamp"].iloc[0], df["timestamp"].iloc[-1], freq=step)
    return df.set_index("timestamp").reindex(grid).rename_axis("timestamp").reset_index()


def require_columns(df: pd.DataFrame, columns: Sequence[str], source: str) -> None:
    """Raise :class:`DataValidationError` when any of ``columns`` is missing."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataValidationError(source, "missing_column", f"missing column(s) {missing}")
