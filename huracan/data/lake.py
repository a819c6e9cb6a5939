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
new part file (written to a temporary name, then renamed, so a crash never leaves half a file).
Parts are disjoint in time, so reading is concatenate + sort. :meth:`CandleLake.missing_ranges`
tells a downloader what to fetch: the ranges before the first and after the last stored bar.
Holes INSIDE the stored range are not re-requested: they are exchange outages (the exchange has no
bars there), reported by validation as gaps, not download work. :meth:`CandleLake.compact` merges
the parts of one partition into a single file.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from huracan.data.ohlcv import OHLCV_COLUMNS, timeframe_to_timedelta

#: Arrow schema of every part file.
OHLCV_SCHEMA = pa.schema([
    pa.field("timestamp", pa.timestamp("ms", tz="UTC"), nullable=False),
    *(pa.field(c, pa.float64()) for c in OHLCV_COLUMNS[1:]),
])


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
        """Part files of one series, in time order (names start with the first bar's time)."""
        directory = self.partition(exchange, symbol, timeframe)
        return sorted(directory.glob("part-*.parquet")) if directory.is_dir() else []

    def read(self, exchange: str, symbol: str, timeframe: str, *,
             start: pd.Timestamp | None = None, end: pd.Timestamp | None = None) -> pd.DataFrame:
        """The stored bars of one series with ``start <= timestamp < end`` (either bound optional),
        sorted, one row per timestamp; an empty frame with the OHLCV columns when none."""
        parts = self.parts(exchange, symbol, timeframe)
        if not parts:
            return _empty()
        filters = []
        if start is not None:
            filters.append(("timestamp", ">=", _utc(start)))
        if end is not None:
            filters.append(("timestamp", "<", _utc(end)))
        table = pq.read_table(parts, schema=OHLCV_SCHEMA, filters=filters or None)
        df = table.to_pandas()
        return (df.sort_values("timestamp", kind="stable")
                .drop_duplicates("timestamp", keep="last").reset_index(drop=True))

    def bounds(self, exchange: str, symbol: str, timeframe: str
               ) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        """``(first, last)`` stored bar open times, or ``None`` for an empty series. Reads only
        the timestamp column of the first and last part."""
        parts = self.parts(exchange, symbol, timeframe)
        if not parts:
            return None
        first = pq.read_table(parts[0], columns=["timestamp"]).column(0).to_pandas()
        last = pq.read_table(parts[-1], columns=["timestamp"]).column(0).to_pandas()
        lo = min(first.min(), last.min())
        hi = max(first.max(), last.max())
        return pd.Timestamp(lo), pd.Timestamp(hi)

    def missing_ranges(self, exchange: str, symbol: str, timeframe: str, since: pd.Timestamp,
                       until: pd.Timestamp) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
        """Half-open ``[start, end)`` ranges of ``[since, until)`` that lie outside the stored
        span: all of it for an empty series, else the part before the first stored bar and the
        part after the last one. What a rerun has to download; empty when up to date."""
        since, until = _utc(since), _utc(until)
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
        """Store the bars of ``frame`` (OHLCV columns, UTC timestamps) that are not stored yet.

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
        stored = self._timestamps(exchange, symbol, timeframe, new["timestamp"].iloc[0],
                                  new["timestamp"].iloc[-1]) if len(new) else None
        if stored is not None and len(stored):
            new = new[~new["timestamp"].isin(stored)]
        skipped = len(frame) - len(new)
        if new.empty:
            return AppendResult(0, skipped, None)
        directory = self.partition(exchange, symbol, timeframe)
        directory.mkdir(parents=True, exist_ok=True)
        first, last = new["timestamp"].iloc[0], new["timestamp"].iloc[-1]
        path = directory / f"part-{first:%Y%m%dT%H%M}-{last:%Y%m%dT%H%M}.parquet"
        if path.exists():  # two batches with the same first/last minute: keep both
            path = path.with_name(f"{path.stem}-{uuid.uuid4().hex[:8]}.parquet")
        _write_atomic(new, path)
        return AppendResult(len(new), skipped, path)

    def _timestamps(self, exchange: str, symbol: str, timeframe: str, first: pd.Timestamp,
                    last: pd.Timestamp) -> pd.Series | None:
        """Stored bar times in ``[first, last]`` (only that column and those row groups)."""
        parts = self.parts(exchange, symbol, timeframe)
        if not parts:
            return None
        table = pq.read_table(parts, columns=["timestamp"], schema=OHLCV_SCHEMA,
                              filters=[("timestamp", ">=", first), ("timestamp", "<=", last)])
        return table.column(0).to_pandas()

    def compact(self, exchange: str, symbol: str, timeframe: str) -> Path | None:
        """Merge the parts of one series into one file (fewer files to open on read)."""
        parts = self.parts(exchange, symbol, timeframe)
        if len(parts) <= 1:
            return parts[0] if parts else None
        df = self.read(exchange, symbol, timeframe)
        first, last = df["timestamp"].iloc[0], df["timestamp"].iloc[-1]
        target = parts[0].parent / f"part-{first:%Y%m%dT%H%M}-{last:%Y%m%dT%H%M}.parquet"
        tmp = target.with_name(f".compact-{uuid.uuid4().hex}.parquet")
        _write_atomic(df, tmp)
        for p in parts:
            p.unlink()
        os.replace(tmp, target)
        return target

    def series(self) -> list[tuple[str, str, str]]:
        """Every stored ``(exchange, symbol, timeframe)``."""
        out = []
        for directory in sorted((self.root / "ohlcv").glob("exchange=*/symbol=*/timeframe=*")):
            ex = directory.parent.parent.name.split("=", 1)[1]
            sym = symbol_from_key(directory.parent.name.split("=", 1)[1])
            out.append((ex, sym, directory.name.split("=", 1)[1]))
        return out


def _utc(value: pd.Timestamp | str) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        raise ValueError(f"naive time {value!r}: pass a UTC-aware time")
    return ts.tz_convert("UTC")


def _empty() -> pd.DataFrame:
    return OHLCV_SCHEMA.empty_table().to_pandas()


def _write_atomic(frame: pd.DataFrame, path: Path) -> None:
    table = pa.Table.from_pandas(frame.reset_index(drop=True), schema=OHLCV_SCHEMA,
                                 preserve_index=False)
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}.parquet")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)
