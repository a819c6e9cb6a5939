"""The candle lake: OHLCV bars as Parquet, partitioned by exchange, symbol and timeframe.

Layout (Hive-style ``key=value`` directories, so ``pandas.read_parquet(root / "ohlcv")`` or any
Arrow/Spark/DuckDB reader sees ``exchange``, ``symbol`` and ``timeframe`` as columns)::

    <root>/ohlcv/exchange=binance/symbol=BTC-USDT/timeframe=1h/part-20240101T0000-20240131T2300.parquet
    <root>/ohlcv/exchange=binance/symbol=BTC-USDT_USDT/timeframe=1h/part-...parquet   (perpetual)

Conventions (as ../shared/data/README.md): columns exactly ``timestamp, open, high, low, close,
volume``; ``timestamp`` is ``timestamp[ms, UTC]``, the candle OPEN time; prices in quote currency;
volume in base units. Symbols are ccxt unified symbols (``BTC/USDT`` spot, ``BTC/USDT:USDT`` USDT
perpetual), made path-safe by :func:`symbol_key` (``/`` -> ``-``, ``:`` -> ``_``).

Appending (:meth:`CandleLake.append`) writes only bars whose timestamps are not stored yet, as one
new part file. :meth:`CandleLake.missing_ranges` tells a downloader what to fetch: the ranges
before the first and after the last stored bar. Holes INSIDE the stored range are not
re-requested: they are exchange outages (the exchange has no bars there), reported by validation
as gaps, not download work. :meth:`CandleLake.compact` merges the parts of one partition into a
single file.

Crash safety (a process killed at any instant, even by SIGKILL or a power cut, loses no stored
bar and leaves no half-written part). Every write goes:

1. to a hidden temporary file in the partition directory (``.tmp-<uuid>.parquet``, compaction
   ``.compact-<uuid>.parquet``), flushed and ``os.fsync``-ed;
2. ``os.replace`` to its ``part-*.parquet`` name (atomic on POSIX within one directory), then an
   ``fsync`` of the directory so the rename itself is durable;
3. only then (compaction) are the superseded parts deleted.

So at every intermediate point the lake holds each bar at least once; between steps 2 and 3 a
compacted file and the parts it replaces overlap in time. Readers tolerate that: :meth:`read`
keeps one row per timestamp, :meth:`bounds` takes the min/max over all parts, appending skips
any timestamp stored in any part, and the next :meth:`compact` removes the overlap. Readers list
only ``part-*.parquet``; leftover hidden temporaries of a killed writer are ignored by them (and
by Arrow's dataset reader, which skips ``.``/``_`` names) and deleted by the next write to that
partition. Writers of one partition are serialised by an exclusive lock on its ``.lock`` file
(the ``filelock`` library's ``flock``, released by the kernel when the holder dies), so a
leftover temporary seen by a writer holding the lock is always a dead process's. Writes go
through :func:`huracan.io.atomic_write`, the usual recipe for atomic file replacement on POSIX
(see e.g. SQLite's and LevelDB's rename-then-fsync-the-directory; POSIX ``rename(2)``,
``fsync(2)``). Requires a POSIX system.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock

from huracan.data.ohlcv import OHLCV_COLUMNS, timeframe_to_timedelta
from huracan.io import atomic_write, fsync_dir
from huracan.timeutil import to_utc

#: Arrow schema of every part file.
OHLCV_SCHEMA = pa.schema([
    pa.field("timestamp", pa.timestamp("ms", tz="UTC"), nullable=False),
    *(pa.field(c, pa.float64()) for c in OHLCV_COLUMNS[1:]),
])
#: Name patterns of a killed writer's leftovers (hidden: never read as parts).
TEMP_PATTERNS: tuple[str, ...] = (".tmp-*", ".compact-*")
LOCK_NAME = ".lock"
_T = TypeVar("_T")


def _checkpoint(name: str) -> None:
    """Called at each step of a write (``append:temp-written``, ``append:replaced``,
    ``compact:temp-written``, ``compact:replaced``, ``compact:deleted-one``); does nothing.
    The crash tests replace it (in a child process) to stop there and be SIGKILLed."""


def symbol_key(symbol: str) -> str:
    """``BTC/USDT`` -> ``BTC-USDT``; ``BTC/USDT:USDT`` -> ``BTC-USDT_USDT`` (path-safe, reversible
    by :func:`symbol_from_key` for symbols without ``-``/``_`` in their asset codes)."""
    return symbol.replace("/", "-").replace(":", "_")


def symbol_from_key(key: str) -> str:
    """Inverse of :func:`symbol_key`."""
    return key.replace("_", ":").replace("-", "/")


@dataclass(frozen=True)
class AppendResult:
    """What :meth:`CandleLake.append` did: ``written`` new bars into ``path`` (``None`` when every
    bar was stored already), ``skipped`` bars that were."""

    written: int
    skipped: int
    path: Path | None


class CandleLake:
    """A Parquet lake of OHLCV candles under ``root`` (created on first write).

    Args:
        root: the lake's directory (e.g. ``data/lake``); candles live under ``root/ohlcv``.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def partition(self, exchange: str, symbol: str, timeframe: str) -> Path:
        """The directory of one ``(exchange, symbol, timeframe)`` series."""
        return (self.root / "ohlcv" / f"exchange={exchange.lower()}"
                / f"symbol={symbol_key(symbol)}" / f"timeframe={timeframe}")

    def parts(self, exchange: str, symbol: str, timeframe: str) -> list[Path]:
        """Part files of one series, sorted by name (names start with the first bar's time).
        Hidden temporaries (``.tmp-*``, ``.compact-*``) are never listed. Right after a
        compaction was interrupted, a compacted part and the parts it replaces overlap."""
        directory = self.partition(exchange, symbol, timeframe)
        return sorted(directory.glob("part-*.parquet")) if directory.is_dir() else []

    def _retrying(self, exchange: str, symbol: str, timeframe: str,
                  fn: Callable[[list[Path]], _T]) -> _T:
        """``fn(parts)``, listed again when a part vanished meanwhile (a concurrent compaction
        deleted it after writing its superset: the new listing holds every bar)."""
        for _ in range(4):
            try:
                return fn(self.parts(exchange, symbol, timeframe))
            except FileNotFoundError:
                continue
        return fn(self.parts(exchange, symbol, timeframe))

    def read(self, exchange: str, symbol: str, timeframe: str, *,
             start: pd.Timestamp | None = None, end: pd.Timestamp | None = None) -> pd.DataFrame:
        """The stored bars of one series with ``start <= timestamp < end`` (either bound optional),
        sorted, one row per timestamp; an empty frame with the OHLCV columns when none."""
        filters = []
        if start is not None:
            filters.append(("timestamp", ">=", to_utc(start, naive="raise")))
        if end is not None:
            filters.append(("timestamp", "<", to_utc(end, naive="raise")))

        def load(parts: list[Path]) -> pd.DataFrame:
            if not parts:
                return _empty()
            table = pq.read_table(parts, schema=OHLCV_SCHEMA, filters=filters or None)
            return table.to_pandas()

        df = self._retrying(exchange, symbol, timeframe, load)
        return (df.sort_values("timestamp", kind="stable")
                .drop_duplicates("timestamp", keep="last").reset_index(drop=True))

    def bounds(self, exchange: str, symbol: str, timeframe: str
               ) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        """``(first, last)`` stored bar open times, or ``None`` for an empty series: the min and
        max over every part's Parquet ``timestamp`` statistics (footers only; a part without
        statistics has its timestamp column read)."""

        def span(parts: list[Path]) -> tuple[pd.Timestamp, pd.Timestamp] | None:
            spans = [s for s in (_part_span(p) for p in parts) if s is not None]
            if not spans:
                return None
            return min(s[0] for s in spans), max(s[1] for s in spans)

        return self._retrying(exchange, symbol, timeframe, span)

    def missing_ranges(self, exchange: str, symbol: str, timeframe: str, since: pd.Timestamp,
                       until: pd.Timestamp) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
        """Half-open ``[start, end)`` ranges of ``[since, until)`` that lie outside the stored
        span: all of it for an empty series, else the part before the first stored bar and the
        part after the last one. What a rerun has to download; empty when up to date."""
        since, until = to_utc(since, naive="raise"), to_utc(until, naive="raise")
        if since >= until:
            return []
        stored = self.bounds(exchange, symbol, timeframe)
        if stored is None:
            return [(since, until)]
        first, last = stored
        step = timeframe_to_timedelta(timeframe)
        out = []
        if since < first:
            out.append((since, min(first, until)))
        after = last + step
        if after < until:
            out.append((max(after, since), until))
        return out

    def append(self, frame: pd.DataFrame, exchange: str, symbol: str, timeframe: str
               ) -> AppendResult:
        """Store the bars of ``frame`` (OHLCV columns, UTC timestamps) that are not stored yet,
        as one new part (crash-safe, see the module docstring).

        Raises:
            ValueError: ``frame`` misses an OHLCV column, holds naive timestamps or repeats a
                timestamp (validate before storing).
        """
        missing = [c for c in OHLCV_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"cannot store candles without column(s) {missing}")
        ts = frame["timestamp"]
        if not isinstance(ts.dtype, pd.DatetimeTZDtype):
            raise ValueError("cannot store candles with naive timestamps; expected UTC-aware")
        if ts.duplicated().any():
            raise ValueError("cannot store candles with duplicated timestamps")
        new = frame.loc[:, list(OHLCV_COLUMNS)].sort_values("timestamp", kind="stable")
        new["timestamp"] = new["timestamp"].dt.tz_convert("UTC")
        directory = self.partition(exchange, symbol, timeframe)
        if new.empty:
            return AppendResult(0, len(frame), None)
        directory.mkdir(parents=True, exist_ok=True)
        with _locked(directory):
            _remove_leftovers(directory)
            stored = self._timestamps(exchange, symbol, timeframe, new["timestamp"].iloc[0],
                                      new["timestamp"].iloc[-1])
            if stored is not None and len(stored):
                new = new[~new["timestamp"].isin(stored)]
            skipped = len(frame) - len(new)
            if new.empty:
                return AppendResult(0, skipped, None)
            first, last = new["timestamp"].iloc[0], new["timestamp"].iloc[-1]
            path = directory / f"part-{first:%Y%m%dT%H%M}-{last:%Y%m%dT%H%M}.parquet"
            if path.exists():  # two batches with the same first/last minute: keep both
                path = path.with_name(f"{path.stem}-{uuid.uuid4().hex[:8]}.parquet")
            _write_atomic(new, path, "append")
        return AppendResult(len(new), skipped, path)

    def _timestamps(self, exchange: str, symbol: str, timeframe: str, first: pd.Timestamp,
                    last: pd.Timestamp) -> pd.Series | None:
        """Stored bar times in ``[first, last]`` (only that column and those row groups), each
        once; ``None`` for an empty series."""

        def load(parts: list[Path]) -> pd.Series | None:
            if not parts:
                return None
            table = pq.read_table(parts, columns=["timestamp"], schema=OHLCV_SCHEMA,
                                  filters=[("timestamp", ">=", first),
                                           ("timestamp", "<=", last)])
            return table.column(0).to_pandas().drop_duplicates()

        return self._retrying(exchange, symbol, timeframe, load)

    def compact(self, exchange: str, symbol: str, timeframe: str) -> Path | None:
        """Merge the parts of one series into one file (fewer files to open on read).

        Crash-safe: the merged file is written and renamed into place (it may take the name of
        an existing part, which it then atomically replaces with a superset) before any
        superseded part is deleted. Returns the merged part (``None`` for an empty series).
        """
        directory = self.partition(exchange, symbol, timeframe)
        if not directory.is_dir():
            return None
        with _locked(directory):
            _remove_leftovers(directory)
            parts = self.parts(exchange, symbol, timeframe)
            if len(parts) <= 1:
                return parts[0] if parts else None
            df = self.read(exchange, symbol, timeframe)
            first, last = df["timestamp"].iloc[0], df["timestamp"].iloc[-1]
            target = directory / f"part-{first:%Y%m%dT%H%M}-{last:%Y%m%dT%H%M}.parquet"
            _write_atomic(df, target, "compact")
            for p in parts:
                if p != target:
                    p.unlink(missing_ok=True)
                    _checkpoint("compact:deleted-one")
            fsync_dir(directory)
        return target

    def series(self) -> list[tuple[str, str, str]]:
        """Every stored ``(exchange, symbol, timeframe)``."""
        out = []
        for directory in sorted((self.root / "ohlcv").glob("exchange=*/symbol=*/timeframe=*")):
            ex = directory.parent.parent.name.split("=", 1)[1]
            sym = symbol_from_key(directory.parent.name.split("=", 1)[1])
            out.append((ex, sym, directory.name.split("=", 1)[1]))
        return out


def _empty() -> pd.DataFrame:
    return OHLCV_SCHEMA.empty_table().to_pandas()


def _part_span(path: Path) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """First and last bar time of one part, from its row-group statistics when present."""
    meta = pq.ParquetFile(path).metadata
    if meta.num_rows == 0:
        return None
    col = meta.schema.names.index("timestamp")
    lows, highs = [], []
    for i in range(meta.num_row_groups):
        stats = meta.row_group(i).column(col).statistics
        if meta.row_group(i).num_rows == 0:
            continue
        if stats is None or not stats.has_min_max:
            ts = pq.read_table(path, columns=["timestamp"]).column(0).to_pandas()
            return pd.Timestamp(ts.min()), pd.Timestamp(ts.max())
        lows.append(stats.min)
        highs.append(stats.max)
    return _as_utc(min(lows)), _as_utc(max(highs))


def _as_utc(value: object) -> pd.Timestamp:
    """A Parquet statistic of the ``timestamp[ms, UTC]`` column as a UTC Timestamp (pyarrow
    gives a ``datetime``; a raw integer is milliseconds since the epoch)."""
    ts = (pd.Timestamp(value, unit="ms") if isinstance(value, int)
          else pd.Timestamp(value))  # a datetime from pyarrow
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _locked(directory: Path) -> FileLock:
    """An exclusive lock on ``directory/.lock`` (the ``filelock`` library: an ``flock`` the
    kernel drops when the holder dies, so a killed writer never leaves the partition locked;
    no fallback to filelock's soft lock, which a dead holder would leave behind). Use as
    ``with _locked(directory):``; waits as long as it takes."""
    return FileLock(directory / LOCK_NAME, fallback_to_soft=False)


def _remove_leftovers(directory: Path) -> list[Path]:
    """Delete the temporaries a killed writer left in ``directory`` (call with the lock held)."""
    gone = [p for pattern in TEMP_PATTERNS for p in directory.glob(pattern)]
    for p in gone:
        p.unlink(missing_ok=True)
    return gone


def write_candles(frame: pd.DataFrame, path: Path) -> None:
    """Write OHLCV ``frame`` (the lake's columns and schema) to ``path`` crash-safely, as every
    lake write: temporary file, fsync, atomic rename, fsync of the directory (created if
    missing). For candle files outside the lake, e.g. the nightly's snapshot."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(frame, path)


def _write_atomic(frame: pd.DataFrame, path: Path, step: str = "write") -> None:
    """Write ``frame`` to ``path`` with :func:`huracan.io.atomic_write` (temporary file in the
    same directory, flush + fsync, atomic ``os.replace``, fsync of the directory). ``step``
    names the checkpoints (``append``, ``compact``); compaction temporaries are ``.compact-*``,
    others ``.tmp-*``."""
    table = pa.Table.from_pandas(frame.reset_index(drop=True), schema=OHLCV_SCHEMA,
                                 preserve_index=False)
    prefix = ".compact-" if step == "compact" else ".tmp-"
    atomic_write(path, lambda fh: pq.write_table(table, fh, compression="zstd"),
                 temp_name=f"{prefix}{uuid.uuid4().hex}.parquet",
                 before_replace=lambda: _checkpoint(f"{step}:temp-written"))
    _checkpoint(f"{step}:replaced")

