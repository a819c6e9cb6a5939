"""Ingest derivatives and sentiment files into the brain store: validate, then upsert.

Pipeline for one file (:func:`ingest_file`):

1. **Read** Parquet or CSV following ../shared/data/README.md (``timestamp`` UTC; file names
   ``<exchange>-<market>_<SYMBOL>_<kind>_<first>-<last>.parquet``). A problem with the file as a
   whole (missing, unreadable, a required column absent, naive timestamps, no symbol/exchange
   known) raises :class:`~huracan.data.ohlcv.DataValidationError` (one line: file, column, rule),
   is logged to ``data_quality_logs`` as ``critical``, and nothing is written.
2. **Validate rows** (:func:`prepare_file`). A row that breaks the schema (negative quantity,
   unknown side, NaN rate, ...) is rejected with its reason and logged to ``data_quality_logs``
   (``issue_type`` = the rule, ``details`` = file, row, column, value); the good rows still load.
   Rows repeating a natural key within the file are logged as ``duplicate_key`` warnings and the
   LAST occurrence is kept.
3. **Upsert** (:func:`huracan.db.upsert.upsert_frame`) in ONE transaction together with the
   quality log entries: a failure anywhere leaves the tables as they were. Re-ingesting the
   same file inserts nothing; a changed value for an existing key is updated; unchanged rows are
   not rewritten.

   - Postgres (on a psycopg 3 connection, :func:`huracan.db.upsert.loader_engine`): under a
     lock of the target, psycopg 3's binary ``COPY`` straight into the table when none of its
     rows falls in the batch's time range, else into a temporary staging table followed by one
     ``UPDATE ... FROM`` staging for changed values and one ``INSERT ... SELECT`` of the new
     keys (:func:`huracan.db.upsert.copy_upsert`). For
     ``liquidations`` the missing monthly partitions are created first, in their own short
     transaction (creating a partition locks the parent table; a failed load leaves at most an
     empty partition behind).
   - SQLite (and any other dialect): ``executemany`` of the same upsert in one transaction.

Normalisations (documented decisions):

- Symbols: exchange-style ``SOLUSDT`` becomes ``SOL/USDT`` (quote suffixes
  :data:`QUOTE_ASSETS`); ``BTC/USDT`` is kept as given. Exchanges are lower-cased.
- Funding timestamps are rounded to the nearest whole minute: settlements happen on the hour,
  and some sources carry 1-20 ms of exchange jitter (00:00:00.017), which would otherwise make the
  same settlement two keys. They are NOT snapped to an 8 h grid: Binance settles some contracts
  every 4 h or 1 h.
- Liquidation ``side`` is the liquidated position. Binance forceOrder files give the ORDER side:
  ``SELL`` (a long force-sold) becomes ``long``, ``BUY`` becomes ``short``; ``long``/``short`` are
  accepted as they are. ``size_usd`` comes from ``size_usd`` or ``usd_value``, else price ×
  quantity.
- Timestamps are floored to the microsecond, the resolution of both stores, before duplicate
  keys are looked for (two events 300 ns apart are one key in the database).
- ``liquidation_type`` (unless the file has the column): the cascade rule of
  :mod:`huracan.data.cascades` (``cascade`` when the event's exchange and symbol saw at least 20
  liquidations or $250,000 of them in the 5 minutes ending at it; configurable), applied to the
  events of the batch (plus, for the collector, the stream's previous 5 minutes). A file
  ingested alone does not see the events stored before it, so its first minutes may undercount;
  re-ingesting a file that starts earlier can turn ``single`` into ``cascade`` (an update).
  Binance pushes at most one liquidation per symbol per second, so counts are lower bounds.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from huracan.data.cascades import CascadeRule, label_cascades
from huracan.data.ohlcv import DataValidationError
from huracan.data.quality import QualityIssue
from huracan.data.quality_db import insert_quality_issues, json_safe
from huracan.db.partitions import ensure_liquidation_partitions
from huracan.db.tables import LIQUIDATION_TYPES, NATURAL_KEYS
from huracan.db.upsert import categorical_text, loader_engine, upsert_frame

log = logging.getLogger(__name__)

#: File kinds accepted by :func:`ingest_file` and the table each one loads.
KIND_TABLES: dict[str, str] = {
    "funding": "funding_rates",
    "open-interest": "open_interest",
    "liquidations": "liquidations",
    "sentiment": "sentiment_scores",
    "headlines": "sentiment_scores",
}
#: ``sentiment_scores.source`` of the Crypto Fear & Greed Index (alternative.me), stored as
#: ``score = (value - 50) / 50`` in [-1, 1], one item a day, stamped at the day's start
FEAR_GREED_SOURCE = "alternative.me:fear-greed"
#: ``source`` of headline scores (VADER compound with the crypto lexicon)
VADER_SOURCE = "vader"
#: Quote assets recognised at the end of exchange-style symbols (longest first).
QUOTE_ASSETS: tuple[str, ...] = ("FDUSD", "USDT", "USDC", "BUSD", "TUSD")
#: A funding rate beyond ±10 % per interval is refused (exchange caps are a few percent); it
#: catches percent-vs-fraction mix-ups (1.5 meaning 1.5 %).
MAX_ABS_FUNDING_RATE = 0.1
_ORDER_SIDE_TO_POSITION = {"sell": "long", "buy": "short", "long": "long", "short": "short"}
_FILE_NAME = re.compile(r"^(?P<exchange>[A-Za-z0-9]+)-[^_]+_(?P<symbol>[^_]+)_")


@dataclass(frozen=True)
class Rejection:
    """One row refused (or, for ``duplicate_key``, superseded) with the rule it broke.

    ``row`` is the 0-based data row of the file (header excluded).
    """

    row: int
    column: str
    value: Any
    rule: str
    message: str
    symbol: str | None = None

    def __str__(self) -> str:
        return (f"row {self.row}: column {self.column!r} value {json_safe(self.value)!r}: "
                f"{self.message} "
                f"[rule: {self.rule}]")

    def issue(self, source: str, severity: str = "critical") -> QualityIssue:
        """This rejection as a data-quality issue for ``data_quality_logs``."""
        return QualityIssue(
            source=source, issue_type=self.rule, severity=severity, symbol=self.symbol,
            details={"file": source, "row": self.row, "column": self.column,
                     "value": json_safe(self.value), "message": self.message})


@dataclass
class PreparedBatch:
    """Validated rows of one file, ready to load.

    Attributes:
        kind: ``funding``, ``open-interest``, ``liquidations`` or ``sentiment``.
        table: the target table name.
        source: the file path (for logs).
        frame: one row per natural key, with exactly the columns loaded.
        rows_read: data rows in the file.
        rejections: refused rows (logged as ``critical``).
        duplicates: rows superseded by a later row with the same key (logged as ``warning``).
    """

    kind: str
    table: str
    source: str
    frame: pd.DataFrame
    rows_read: int
    rejections: list[Rejection] = field(default_factory=list)
    duplicates: list[Rejection] = field(default_factory=list)

    def issues(self) -> list[QualityIssue]:
        return ([r.issue(self.source) for r in self.rejections]
                + [d.issue(self.source, "warning") for d in self.duplicates])


@dataclass(frozen=True)
class IngestReport:
    """What one load did. ``unchanged`` rows existed already with the same values."""

    kind: str
    table: str
    source: str
    rows_read: int
    inserted: int
    updated: int
    unchanged: int
    rejected: int
    duplicates: int
    partitions_created: tuple[str, ...] = ()
    rejections: tuple[Rejection, ...] = field(default=(), repr=False)

    def summary(self) -> str:
        return (f"{self.source}: read {self.rows_read}, inserted {self.inserted}, updated "
                f"{self.updated}, unchanged {self.unchanged}, rejected {self.rejected}"
                + (f", duplicates {self.duplicates}" if self.duplicates else "")
                + f" -> {self.table}")


# --------------------------------------------------------------------------------------------
# Reading and row validation
# --------------------------------------------------------------------------------------------

def normalize_symbol(raw: object) -> str | None:
    """``SOLUSDT`` -> ``SOL/USDT``; ``BTC/USDT`` unchanged; ``None`` when no base/quote split is
    possible (``ALL``, ``USDT``, empty)."""
    if raw is None or (isinstance(raw, float) and np.isnan(raw)):
        return None
    s = str(raw).strip()
    if "/" in s:
        base, _, quote = s.partition("/")
        return s if base and quote else None
    upper = s.upper()
    for quote in QUOTE_ASSETS:
        if upper.endswith(quote) and len(s) > len(quote):
            return f"{s[: -len(quote)]}/{quote}"
    return None


def infer_from_filename(path: Path) -> tuple[str | None, str | None]:
    """``(exchange, symbol)`` from a ../shared/data file name, e.g.
    ``binance-usdm_BTCUSDT_funding_...`` -> ``("binance", "BTC/USDT")``; ``None`` where the name
    does not say (``unknown-agg``, ``ALL``)."""
    m = _FILE_NAME.match(path.name)
    if not m:
        return None, None
    exchange = m["exchange"].lower()
    return (None if exchange == "unknown" else exchange), normalize_symbol(m["symbol"])


def read_file(path: str | Path) -> pd.DataFrame:
    """Read a Parquet or CSV file.

    Raises:
        DataValidationError: file missing, of another type, or unreadable.
    """
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise DataValidationError(source, "file_exists", "file not found")
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise DataValidationError(source, "file_format",
                                  f"unsupported file type {suffix!r} (expected .parquet or .csv)")
    try:
        return pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path)
    except Exception as exc:  # the reader's own error type varies by format
        raise DataValidationError(source, "readable", f"cannot read file: {exc}") from exc


class _Rows:
    """Row-level validation state: which rows are still good, and why the others are not."""

    def __init__(self, raw: pd.DataFrame, source: str) -> None:
        self.raw = raw
        self.source = source
        self.ok = np.ones(len(raw), dtype=bool)
        self.rejections: list[Rejection] = []
        self.symbols: np.ndarray | None = None

    def reject(self, mask: np.ndarray | pd.Series, rule: str, column: str, message: str,
               values: pd.Series | None = None) -> None:
        """Refuse the still-good rows of ``mask`` (one reason per row: the first rule broken)."""
        m = np.asarray(mask, dtype=bool) & self.ok
        if not m.any():
            return
        vals = values if values is not None else self.raw[column]
        for i in np.flatnonzero(m):
            sym = self.symbols[i] if self.symbols is not None else None
            self.rejections.append(Rejection(int(i), column, vals.iloc[i], rule, message,
                                             None if pd.isna(sym) else sym))
        self.ok &= ~m

    def require(self, *columns: str, alternatives: tuple[str, ...] = ()) -> None:
        missing = [c for c in columns if c not in self.raw.columns]
        if alternatives and not any(c in self.raw.columns for c in alternatives):
            missing.append(" or ".join(alternatives))
        if missing:
            raise DataValidationError(
                self.source, "missing_column",
                f"missing column(s) {missing}; found {list(self.raw.columns)}",
                {"missing": missing})

    def timestamps(self) -> pd.Series:
        """Parse ``timestamp`` to UTC: aware datetimes, ISO strings with an offset (``Z``), or
        numbers as epoch milliseconds; unparseable rows are rejected (``bad_timestamp``).

        Raises:
            DataValidationError: the column holds naive datetimes (the time zone is unknown).
        """
        col = self.raw["timestamp"]
        naive = DataValidationError(
            self.source, "timestamp_timezone",
            "column 'timestamp' holds naive datetimes; expected UTC-aware timestamps or an "
            "explicit offset")
        if pd.api.types.is_datetime64_any_dtype(col):
            if getattr(col.dt, "tz", None) is None:
                raise naive
            ts = col.dt.tz_convert("UTC")
        elif pd.api.types.is_numeric_dtype(col):
            ts = pd.to_datetime(col, unit="ms", utc=True, errors="coerce")
        else:
            try:
                parsed = pd.to_datetime(col, errors="coerce", format="ISO8601")
            except (ValueError, TypeError):  # mixed offsets: parse each to UTC
                parsed = pd.to_datetime(col, errors="coerce", format="ISO8601", utc=True)
            if pd.api.types.is_datetime64_any_dtype(parsed) and parsed.dt.tz is None \
                    and parsed.notna().any():
                raise naive
            ts = pd.to_datetime(parsed, utc=True)
        self.reject(ts.isna().to_numpy(), "bad_timestamp", "timestamp",
                    "missing or unparseable timestamp")
        return ts.dt.floor("us")

    def numbers(self, column: str, nan_rule: str) -> pd.Series:
        """``column`` as float64; missing/non-numeric values are rejected with ``nan_rule``."""
        values = pd.to_numeric(self.raw[column], errors="coerce").astype("float64")
        self.reject(values.isna().to_numpy(), nan_rule, column, "value is NaN/missing or not "
                    "a number")
        return values

    def constant_or_column(self, column: str, given: str | None, what: str) -> pd.Series:
        """The ``column`` of the file, else the value given on the command line / by name."""
        if column in self.raw.columns:
            return self.raw[column].astype("string")
        if given is None:
            raise DataValidationError(
                self.source, f"missing_{column}",
                f"no column {column!r} and no {what} given (pass --{column})")
        return pd.Series([given] * len(self.raw), index=self.raw.index, dtype="string")


def _symbols(rows: _Rows, symbol: str | None) -> pd.Series:
    """Normalised symbols per row; rows whose symbol cannot be read are rejected."""
    given = normalize_symbol(symbol) if symbol is not None else None
    if symbol is not None and given is None:
        raise DataValidationError(rows.source, "symbol_format",
                                  f"--symbol {symbol!r} is not BASE/QUOTE (e.g. BTC/USDT)")
    raw = rows.constant_or_column("symbol", given, "symbol")
    mapping = {u: normalize_symbol(u) for u in raw.dropna().unique()}
    norm = raw.map(mapping).astype("object")
    rows.symbols = norm.to_numpy()
    rows.reject(norm.isna().to_numpy(), "unknown_symbol", "symbol",
                f"symbol is not BASE/QUOTE and does not end in one of {list(QUOTE_ASSETS)}")
    if given is not None and "symbol" in rows.raw.columns:
        other = (norm != given) & norm.notna()
        if other.any():
            i = int(np.flatnonzero(other.to_numpy())[0])
            raise DataValidationError(
                rows.source, "symbol_mismatch",
                f"column 'symbol' row {i}: {norm.iloc[i]!r} differs from --symbol {given!r}")
    return norm


def _exchange(rows: _Rows, exchange: str | None) -> pd.Series:
    ex = rows.constant_or_column("exchange", exchange.lower() if exchange else None, "exchange")
    ex = ex.str.strip().str.lower()
    rows.reject((ex.isna() | (ex == "")).to_numpy(), "missing_exchange", "exchange",
                "exchange is empty", ex)
    return ex.astype("object")


def _prepare_funding(rows: _Rows, exchange: str | None, symbol: str | None) -> pd.DataFrame:
    rows.require("timestamp", "funding_rate")
    ex = _exchange(rows, exchange)
    sym = _symbols(rows, symbol)
    ts = rows.timestamps().dt.round("min")
    rate = rows.numbers("funding_rate", "nan_rate")
    rows.reject((rate.abs() > MAX_ABS_FUNDING_RATE).to_numpy(), "rate_out_of_range",
                "funding_rate", f"|funding rate| > {MAX_ABS_FUNDING_RATE} per interval "
                "(rates are fractions: 0.0001 = 0.01 %)")
    return pd.DataFrame({"timestamp": ts, "exchange": ex, "symbol": sym, "funding_rate": rate})


def _prepare_open_interest(rows: _Rows, exchange: str | None, symbol: str | None
                           ) -> pd.DataFrame:
    rows.require("timestamp", alternatives=("open_interest", "open_interest_usd"))
    ex = _exchange(rows, exchange)
    sym = _symbols(rows, symbol)
    ts = rows.timestamps()
    out = pd.DataFrame({"timestamp": ts, "exchange": ex, "symbol": sym})
    for col in ("open_interest", "open_interest_usd"):
        out[col] = (pd.to_numeric(rows.raw[col], errors="coerce").astype("float64")
                    if col in rows.raw.columns else np.nan)
    both = out["open_interest"].isna() & out["open_interest_usd"].isna()
    present = "open_interest_usd" if "open_interest_usd" in rows.raw.columns else "open_interest"
    rows.reject(both.to_numpy(), "nan_open_interest", present,
                "open interest is NaN/missing (in contracts and in USD)")
    for col in ("open_interest", "open_interest_usd"):
        rows.reject((out[col] < 0).to_numpy(), "negative_open_interest", col,
                    "open interest < 0", out[col])
    return out


def _prepare_liquidations(rows: _Rows, exchange: str | None, symbol: str | None
                          ) -> pd.DataFrame:
    rows.require("timestamp", "side", "price", "quantity")
    ex = _exchange(rows, exchange)
    sym = _symbols(rows, symbol)
    ts = rows.timestamps()
    side = rows.raw["side"].astype("string").str.strip().str.lower().map(_ORDER_SIDE_TO_POSITION)
    rows.reject(side.isna().to_numpy(), "unknown_side", "side",
                "side is not BUY/SELL (order side) or long/short (position)")
    price = rows.numbers("price", "nan_price")
    rows.reject((price <= 0).to_numpy(), "non_positive_price", "price", "price <= 0")
    qty = rows.numbers("quantity", "nan_quantity")
    rows.reject((qty < 0).to_numpy(), "negative_quantity", "quantity", "quantity < 0")
    rows.reject((qty == 0).to_numpy(), "zero_quantity", "quantity", "quantity == 0")
    size_col = next((c for c in ("size_usd", "usd_value") if c in rows.raw.columns), None)
    size = (pd.to_numeric(rows.raw[size_col], errors="coerce").astype("float64")
            if size_col else pd.Series(np.nan, index=rows.raw.index))
    size = size.fillna(price * qty)
    rows.reject((size < 0).to_numpy(), "negative_size_usd", size_col or "size_usd",
                "size in USD < 0", size)
    out = pd.DataFrame({"timestamp": ts, "exchange": ex, "symbol": sym, "side": side.astype(
        "object"), "price": price, "quantity": qty, "size_usd": size})
    if "liquidation_type" in rows.raw.columns:
        kind = rows.raw["liquidation_type"].astype("string").str.strip().str.lower()
        rows.reject((~kind.isin(LIQUIDATION_TYPES)).to_numpy(), "unknown_liquidation_type",
                    "liquidation_type", f"liquidation_type is not one of {LIQUIDATION_TYPES}")
        out["liquidation_type"] = kind.astype("object")
    return out


def _fear_greed(rows: _Rows, symbol: str | None) -> None:
    """Turn a daily Fear & Greed file (``timestamp, value (0-100), value_classification``) into
    sentiment rows in place: ``score = (value - 50) / 50``, ``n_items = 1``, source
    :data:`FEAR_GREED_SOURCE`; the index is market-wide, stored under ``symbol`` (default
    ``BTC/USDT``)."""
    value = rows.numbers("value", "nan_value")
    rows.reject(((value < 0) | (value > 100)).to_numpy(), "value_out_of_range", "value",
                "Fear & Greed value outside [0, 100]")
    rows.raw = rows.raw.assign(score=(value - 50.0) / 50.0, n_items=1,
                                   source=FEAR_GREED_SOURCE,
                                   symbol=rows.raw["symbol"] if "symbol" in rows.raw.columns
                                   else (symbol or "BTC/USDT"))


def _headlines(rows: _Rows, symbol: str | None) -> None:
    """Turn headlines (``timestamp, text`` [, ``symbol``]) into sentiment rows in place: the mean
    VADER compound score (crypto lexicon, :func:`huracan.features.sentiment.score_headlines`)
    of the headlines of one symbol and timestamp, and their count."""
    from huracan.features.sentiment import score_headlines

    rows.require("timestamp", "text")
    frame = rows.raw.copy()
    if "symbol" not in frame.columns:
        frame["symbol"] = symbol or "BTC/USDT"
    blank = frame["text"].isna() | (frame["text"].astype(str).str.strip() == "")
    rows.reject(blank.to_numpy(), "missing_text", "text", "headline text is empty")
    keep = frame[~blank]
    scored = score_headlines(keep)
    keep = keep.assign(score=scored["compound"].to_numpy())
    grouped = (keep.groupby(["symbol", "timestamp"], sort=True)
               .agg(score=("score", "mean"), n_items=("score", "size")).reset_index())
    grouped["source"] = VADER_SOURCE
    rows.raw = grouped
    rows.ok = np.ones(len(grouped), dtype=bool)


def _prepare_sentiment(rows: _Rows, exchange: str | None, symbol: str | None,
                       source: str | None = None) -> pd.DataFrame:
    if "score" not in rows.raw.columns and "value" in rows.raw.columns:
        _fear_greed(rows, symbol)
    rows.require("timestamp", "score", "n_items")
    sym = _symbols(rows, symbol)
    src = rows.constant_or_column("source", source, "source").str.strip()
    rows.reject((src.isna() | (src == "")).to_numpy(), "missing_source", "source",
                "source is empty", src)
    ts = rows.timestamps()
    score = rows.numbers("score", "nan_score")
    rows.reject(((score < -1) | (score > 1)).to_numpy(), "score_out_of_range", "score",
                "score outside [-1, 1]")
    n_items = rows.numbers("n_items", "nan_n_items")
    rows.reject((n_items < 0).to_numpy(), "negative_n_items", "n_items", "n_items < 0")
    rows.reject((n_items != n_items.round()).to_numpy(), "non_integer_n_items", "n_items",
                "n_items is not a whole number")
    return pd.DataFrame({"timestamp": ts, "symbol": sym, "source": src.astype("object"),
                         "score": score, "n_items": n_items.fillna(0).astype("int64")})


def classify_cascades(frame: pd.DataFrame, rule: CascadeRule | None = None, *,
                      context: pd.DataFrame | None = None) -> pd.Series:
    """``cascade``/``single`` per liquidation: :func:`huracan.data.cascades.label_cascades` with
    ``rule`` (default: :meth:`CascadeRule.from_env`, i.e. the built-in rule unless the
    ``HURACAN_CASCADE_*`` variables say otherwise).

    Args:
        frame: columns ``timestamp, exchange, symbol, size_usd``.
        context: earlier events counted in the windows but not labelled.

    Returns:
        A string Series aligned with ``frame.index``.
    """
    return label_cascades(frame, rule or CascadeRule.from_env(), context=context)


def prepare_frame(kind: str, raw: pd.DataFrame, source: str, *, exchange: str | None = None,
                  symbol: str | None = None, sentiment_source: str | None = None,
                  cascade_rule: CascadeRule | None = None,
                  cascade_context: pd.DataFrame | None = None) -> PreparedBatch:
    """Validate the rows of ``raw`` (a file's contents) for ``kind``.

    Args:
        kind: a key of :data:`KIND_TABLES`.
        raw: the file as read.
        source: file path or origin, for messages and logs.
        exchange, symbol: values for files without ``exchange``/``symbol`` columns.
        sentiment_source: the ``source`` of sentiment rows, for files without that column.
        cascade_rule: liquidations: the cascade rule (default :meth:`CascadeRule.from_env`).
        cascade_context: liquidations: earlier events (``timestamp, exchange, symbol,
            size_usd``) that count in the cascade windows but are not loaded.

    Raises:
        DataValidationError: a file-level problem (see the module docstring).
        ValueError: an unknown ``kind``.
    """
    if kind not in KIND_TABLES:
        raise ValueError(f"unknown kind {kind!r}; expected one of {list(KIND_TABLES)}")
    rows = _Rows(raw.reset_index(drop=True), source)
    if kind == "funding":
        frame = _prepare_funding(rows, exchange, symbol)
    elif kind == "open-interest":
        frame = _prepare_open_interest(rows, exchange, symbol)
    elif kind == "liquidations":
        frame = _prepare_liquidations(rows, exchange, symbol)
    elif kind == "headlines":
        _headlines(rows, symbol)
        frame = _prepare_sentiment(rows, exchange, None, None)
    else:
        frame = _prepare_sentiment(rows, exchange, symbol, sentiment_source)
    table = KIND_TABLES[kind]
    good = categorical_text(frame.loc[rows.ok])
    key = list(NATURAL_KEYS[table])
    dup = good.duplicated(key, keep="last")
    duplicates = [
        Rejection(int(i), "timestamp", good.at[i, "timestamp"], "duplicate_key",
                  f"same {'/'.join(key)} as a later row, which is kept", good.at[i, "symbol"])
        for i in good.index[dup.to_numpy()]]
    good = good.loc[~dup.to_numpy()]
    if kind == "liquidations" and "liquidation_type" not in good.columns:
        good = good.assign(liquidation_type=classify_cascades(
            good, cascade_rule, context=cascade_context).astype("category"))
    rejections = sorted(rows.rejections, key=lambda r: r.row)
    return PreparedBatch(kind, table, source, good.reset_index(drop=True), len(raw),
                         rejections, duplicates)


def prepare_file(kind: str, path: str | Path, *, exchange: str | None = None,
                 symbol: str | None = None, sentiment_source: str | None = None,
                 cascade_rule: CascadeRule | None = None) -> PreparedBatch:
    """Read and validate one file; ``exchange``/``symbol`` default to what its name says."""
    path = Path(path)
    raw = read_file(path)
    name_exchange, name_symbol = infer_from_filename(path)
    if symbol is None and "symbol" not in raw.columns:
        symbol = name_symbol
    return prepare_frame(kind, raw, str(path), exchange=exchange or name_exchange,
                         symbol=symbol, sentiment_source=sentiment_source,
                         cascade_rule=cascade_rule)


def _months(timestamps: pd.Series) -> pd.Series:
    """The first instant (UTC) of each distinct month of ``timestamps``: what the partition
    check needs, without handing it a million timestamps to convert."""
    utc = pd.to_datetime(timestamps, utc=True).dt.tz_localize(None)
    months = pd.unique(utc.to_numpy("datetime64[ns]").astype("datetime64[M]"))
    months = months[~np.isnat(months)]
    return pd.Series(pd.to_datetime(np.sort(months)).tz_localize("UTC"))


def load_batch(engine: Engine, batch: PreparedBatch) -> IngestReport:
    """Load a validated batch and its quality-log entries in one transaction.

    On Postgres the load runs on a psycopg 3 connection to the engine's database
    (:func:`huracan.db.upsert.loader_engine`; the engine itself stays on psycopg2), which the
    binary COPY of the bulk path needs in the load's own transaction. For ``liquidations`` the
    needed monthly partitions are created first in their own short transaction (see
    :mod:`huracan.db.partitions`).

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database refused the load; nothing was written.
    """
    created: list[str] = []
    with loader_engine(engine).connect() as conn:
        if batch.table == "liquidations" and not batch.frame.empty:
            with conn.begin():
                created = ensure_liquidation_partitions(conn, _months(batch.frame["timestamp"]))
        with conn.begin():
            inserted, updated = upsert_frame(conn, batch.table, batch.frame)
            insert_quality_issues(conn, batch.issues())
    loaded = len(batch.frame)
    return IngestReport(batch.kind, batch.table, batch.source, batch.rows_read, inserted,
                        updated, loaded - inserted - updated, len(batch.rejections),
                        len(batch.duplicates), tuple(created), tuple(batch.rejections))


def ingest_file(engine: Engine, kind: str, path: str | Path, *, exchange: str | None = None,
                symbol: str | None = None, sentiment_source: str | None = None,
                cascade_rule: CascadeRule | None = None) -> IngestReport:
    """Validate and load one file (see the module docstring for the rules).

    Args:
        engine: the brain store (schema at head).
        kind: ``funding``, ``open-interest``, ``liquidations`` or ``sentiment``.
        path: Parquet or CSV file.
        exchange: for files without an ``exchange`` column (default: from the file name).
        symbol: for files holding one symbol without a ``symbol`` column (default: from the file
            name); if the file has the column, every row must match it.
        sentiment_source: for sentiment files without a ``source`` column.
        cascade_rule: liquidations: the cascade rule (default :meth:`CascadeRule.from_env`).

    Raises:
        DataValidationError: the file as a whole is unusable (also logged as ``critical`` in
            ``data_quality_logs``); nothing was loaded.
        sqlalchemy.exc.SQLAlchemyError: the database refused the load; nothing was written.
    """
    try:
        batch = prepare_file(kind, path, exchange=exchange, symbol=symbol,
                             sentiment_source=sentiment_source, cascade_rule=cascade_rule)
    except DataValidationError as err:
        issue = QualityIssue(str(path), err.rule, "critical",
                             {"file": str(path), "error": str(err), **json_safe(err.details)},
                             symbol)
        try:
            with engine.begin() as conn:
                insert_quality_issues(conn, [issue])
        except SQLAlchemyError as db_err:  # keep the file's error the one that surfaces
            log.warning("could not log %s to data_quality_logs: %s", err.rule,
                        type(db_err).__name__)
        raise
    return load_batch(engine, batch)
