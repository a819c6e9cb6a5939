"""Upsert validated frames into the brain store: the Postgres bulk path and the portable one.

- :func:`copy_upsert` (Postgres, on a psycopg 3 connection): in the caller's transaction, lock
  the target against other writers, then psycopg 3's binary ``COPY`` (``copy.set_types`` /
  ``copy.write_row``: a maintained encoder) either straight into the target, when no stored row
  falls in the batch's time range, or into a temporary staging table followed by ``UPDATE ...
  FROM`` (changed values) and ``INSERT ... SELECT ... WHERE NOT EXISTS`` (new keys).
- :func:`executemany_upsert` (SQLite, or any other connection): ``INSERT ... ON CONFLICT DO
  UPDATE ... WHERE values differ`` per row, DBAPI ``executemany``.

The engine stays on psycopg2 (the product's driver); :func:`loader_engine` gives the psycopg 3
engine on the same URL that :func:`huracan.data.ingest.load_batch` runs the load transaction on.

Both paths run in the caller's transaction and return ``(inserted, updated)``; rows whose key
exists with equal values are not rewritten. Frames hold exactly the columns to load, one row per
natural key, timestamps UTC-aware (what :func:`huracan.data.ingest.prepare_frame` returns).
"""

from __future__ import annotations

import logging
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from sqlalchemy import (
    BigInteger,
    Boolean,
    Connection,
    DateTime,
    Engine,
    Float,
    Integer,
    SmallInteger,
    String,
    Table,
    create_engine,
    func,
    or_,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.pool import NullPool
from sqlalchemy.types import TypeDecorator, TypeEngine

from huracan.db.tables import Base

log = logging.getLogger(__name__)

#: Rows converted to Python values at a time for ``write_row`` (bounds the memory).
CHUNK_ROWS = 100_000
#: psycopg 3 engines of the psycopg2 engines they were made from.
_LOADERS: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()


def categorical_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns as pandas categoricals (sorted categories): low-cardinality symbols, sides
    and exchanges then dedupe, sort and encode several times faster."""
    text_cols = [c for c in frame.columns
                 if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c].dtype)]
    if not text_cols:
        return frame
    return frame.astype({c: "category" for c in text_cols})


def _table(name: str) -> Table:
    return Base.metadata.tables[name]


def _key_and_values(table: Table, columns: list[str]) -> tuple[list[str], list[str]]:
    key = [c.name for c in table.primary_key.columns]
    return key, [c for c in columns if c not in key]


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def loader_engine(engine: Engine) -> Engine:
    """The engine bulk loads run on.

    For a Postgres engine on another driver (psycopg2, the product's), a psycopg 3 engine on the
    same URL (``postgresql+psycopg://``, same host, port, user, password, database and query
    string such as ``options=-csearch_path=huracan``), without a pool (one connection per load;
    nothing left open when the caller disposes its engine), cached per engine. Any other engine
    is returned as it is. ``connect_args`` given to ``create_engine`` rather than in the URL are
    not carried over. The URL (and its password) is handed to the driver only, never logged.
    """
    if engine.dialect.name != "postgresql" or engine.dialect.driver == "psycopg":
        return engine
    loader = _LOADERS.get(engine)
    if loader is None:
        loader = create_engine(engine.url.set(drivername="postgresql+psycopg"),
                               poolclass=NullPool)
        _LOADERS[engine] = loader
    return loader


def upsert_frame(conn: Connection, table_name: str, frame: pd.DataFrame) -> tuple[int, int]:
    """Upsert ``frame`` (unique natural keys; UTC-aware timestamps) into ``table_name`` within
    the caller's transaction: :func:`copy_upsert` on a psycopg 3 Postgres connection in a
    transaction (see :func:`loader_engine`), :func:`executemany_upsert` otherwise (SQLite; a
    Postgres connection on another driver, with a warning: it is 20-40 times slower).

    Returns:
        ``(inserted, updated)``; rows whose key existed with equal values count as neither.
    """
    if frame.empty:
        return 0, 0
    if conn.dialect.name == "postgresql":
        dbapi = conn.connection.driver_connection
        if not isinstance(dbapi, psycopg.Connection):
            reason = (f"driver {conn.dialect.driver!r}; load through "
                      "huracan.db.upsert.loader_engine(engine) for the COPY path")
        elif dbapi.autocommit:
            reason = "connection in autocommit mode"
        else:
            return copy_upsert(conn, table_name, frame)
        log.warning("%s: bulk COPY path not used (%s); loading %d rows with executemany",
                    table_name, reason, len(frame))
    return executemany_upsert(conn, table_name, frame)


# --------------------------------------------------------------------------------------------
# Rows for COPY: the target's column types, values converted by column, in key order
# --------------------------------------------------------------------------------------------

def _wire_type(sa_type: TypeEngine[Any]) -> str:
    """The psycopg type name the binary COPY sends a column as.

    ``timestamptz`` columns are sent as ``timestamp`` from naive UTC datetimes: both binary
    formats are the int64 microseconds since 2000-01-01 (UTC for ``timestamptz``), so the value
    arrives unchanged, without building a time-zone-aware datetime per row.
    """
    t = sa_type.impl_instance if isinstance(sa_type, TypeDecorator) else sa_type
    for cls, wire in ((DateTime, "timestamp"), (String, "text"), (Float, "float8"),
                      (BigInteger, "int8"), (SmallInteger, "int2"), (Integer, "int4"),
                      (Boolean, "bool")):
        if isinstance(t, cls):
            return wire
    raise TypeError(f"no COPY wire type for column type {sa_type!r}")


def _values(s: pd.Series, wire: str) -> Callable[[np.ndarray], Any]:
    """A function of row positions returning the Python values of ``s`` to send as ``wire``.
    Missing values (NaN, NaT, missing categories) become ``None`` (SQL NULL), so a NaN in a NOT
    NULL column is refused like any missing value."""
    name = s.name
    if wire == "timestamp":
        if not isinstance(s.dtype, pd.DatetimeTZDtype):
            raise TypeError(f"column {name!r}: expected UTC-aware timestamps, got {s.dtype}")
        naive = s.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[us]")
        return lambda pos: naive[pos].astype(object)  # datetime objects in C; NaT -> None
    if wire == "text":
        if isinstance(s.dtype, pd.CategoricalDtype):  # one str object per category
            labels = np.array([*(str(v) for v in s.cat.categories), None], dtype=object)
            codes = s.cat.codes.to_numpy()  # -1 (missing) -> the trailing None
            return lambda pos: labels[codes[pos]]
        obj = s.astype(object).where(s.notna(), None).to_numpy()
        return lambda pos: obj[pos]
    if wire == "float8":
        floats = s.to_numpy("float64")
        if np.isnan(floats).any():
            obj = np.where(np.isnan(floats), None, floats.astype(object))
            return lambda pos: obj[pos]
        return lambda pos: floats[pos].tolist()
    if s.hasnans:
        obj = s.astype(object).where(s.notna(), None).to_numpy()
        return lambda pos: obj[pos]
    plain = s.to_numpy()
    return lambda pos: plain[pos].tolist()


def _sort_order(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """Row positions sorted by ``columns`` (the leading primary-key columns: symbol, time).
    Loading in key order keeps the key index's inserts on its rightmost leaf. One stable sort
    per column, last column first: timsort is linear on the (usual) time-ordered input, and
    numpy radix-sorts the 16-bit category codes."""
    order = np.arange(len(frame))
    for c in reversed(columns):
        s = frame[c]
        if isinstance(s.dtype, pd.CategoricalDtype):
            k = s.cat.codes.to_numpy()
        elif pd.api.types.is_datetime64_any_dtype(s.dtype):
            k = s.to_numpy("datetime64[ns]").view("int64")
        else:
            k = s.to_numpy()
        order = order[np.argsort(k[order], kind="stable")]
    return order


def _rows(frame: pd.DataFrame, wires: list[str], order: np.ndarray,
          chunk_rows: int = CHUNK_ROWS) -> Iterator[tuple[Any, ...]]:
    """Row tuples in ``order``, converted ``chunk_rows`` at a time (column by column)."""
    getters = [_values(frame[c], w) for c, w in zip(frame.columns, wires, strict=True)]
    for start in range(0, len(order), chunk_rows):
        part = order[start:start + chunk_rows]
        yield from zip(*(get(part) for get in getters), strict=True)


def _wrap(statement: str, exc: psycopg.Error) -> StatementError:
    """A psycopg error raised outside SQLAlchemy (the COPY) as the exception SQLAlchemy raises
    for the driver's errors (a :class:`~sqlalchemy.exc.DBAPIError`: IntegrityError, ...)."""
    return DBAPIError.instance(statement, None, exc, psycopg.Error)


def _copy(dbapi: psycopg.Connection[Any], into: str, frame: pd.DataFrame, wires: list[str],
          order: np.ndarray) -> int:
    """Binary ``COPY`` of ``frame``'s rows (in ``order``) into the table ``into``; rows sent."""
    statement = (f"COPY {into} ({', '.join(_ident(c) for c in frame.columns)}) "
                 "FROM STDIN (FORMAT BINARY)")
    try:
        with dbapi.cursor() as cur:
            with cur.copy(statement) as copy:
                copy.set_types(wires)
                for row in _rows(frame, wires, order):
                    copy.write_row(row)
            return cur.rowcount if cur.rowcount >= 0 else len(order)
    except psycopg.Error as exc:
        raise _wrap(statement, exc) from exc


# --------------------------------------------------------------------------------------------
# The Postgres bulk path
# --------------------------------------------------------------------------------------------

def copy_upsert(conn: Connection, table_name: str, frame: pd.DataFrame) -> tuple[int, int]:
    """Postgres bulk path, in the caller's transaction on a psycopg 3 connection.

    Inside a savepoint:

    1. ``LOCK TABLE ... IN SHARE ROW EXCLUSIVE MODE``: one writer at a time (readers are not
       blocked; the lock is held until the caller's transaction ends), so that no key can appear
       between the existence checks below and the inserts. This is what lets the load use plain
       inserts instead of ``INSERT ... ON CONFLICT``, whose speculative insertion (probe the key
       index, insert, confirm each row with a second WAL record) took about twice as long.
    2. If no stored row falls in the batch's time range (``timestamp`` between its first and
       last), the rows are COPYed straight into the target (``COPY`` inserts in batches: about
       20 % faster than ``INSERT ... SELECT`` from a staging table).
    3. Otherwise the rows are COPYed into a temporary staging table (``ON COMMIT DROP``,
       analyzed so that the joins are planned on its real size), then ``UPDATE target FROM
       staging`` where the key matches and ``ROW(values) IS DISTINCT FROM`` (unchanged rows are
       not rewritten) and ``INSERT ... SELECT`` of the staging rows whose key is absent
       (``WHERE NOT EXISTS``).

    Rows are sent in primary-key order (symbol, time) through psycopg 3's binary COPY
    (``set_types`` from the target's column types, ``write_row`` per row, values converted
    column by column in chunks). A failure anywhere rolls the savepoint back and raises; the
    caller's transaction must then be rolled back (nothing of the batch remains).

    Returns:
        ``(inserted, updated)``.

    Raises:
        sqlalchemy.exc.DBAPIError: (e.g. ``IntegrityError``) the database refused a row.
    """
    clock = [time.perf_counter()]

    def lap() -> float:
        clock.append(time.perf_counter())
        return clock[-1] - clock[-2]

    table = _table(table_name)
    cols = list(frame.columns)
    key, values = _key_and_values(table, cols)
    frame = categorical_text(frame)
    wires = [_wire_type(table.c[c].type) for c in cols]
    order = _sort_order(frame, [c for c in key[:2] if c in cols])
    dbapi = conn.connection.driver_connection
    if not isinstance(dbapi, psycopg.Connection):
        raise TypeError("copy_upsert needs a psycopg 3 connection (see loader_engine)")
    target = _ident(table_name)
    timings = {"prepare_s": lap()}
    with conn.begin_nested():
        conn.exec_driver_sql(f"LOCK TABLE {target} IN SHARE ROW EXCLUSIVE MODE")
        fresh = "timestamp" in key and not _rows_in_range(conn, target, frame["timestamp"])
        timings["lock_check_s"] = lap()
        if fresh:
            inserted = _copy(dbapi, target, frame, wires, order)
            updated = 0
            timings["copy_s"] = lap()
        else:
            stage = _ident(f"_huracan_stage_{uuid.uuid4().hex[:12]}")
            conn.exec_driver_sql(
                f"CREATE TEMPORARY TABLE {stage} (LIKE {target} INCLUDING DEFAULTS) ON COMMIT DROP")
            _copy(dbapi, stage, frame, wires, order)
            # statistics of the staging rows: hash joins against big ranges, index probes for
            # a few rows (without them the planner sorted both sides: twice as slow)
            conn.exec_driver_sql(f"ANALYZE {stage}")
            timings["copy_s"] = lap()
            inserted, updated = _merge(conn, target, stage, cols, key, values)
            conn.exec_driver_sql(f"DROP TABLE {stage}")
            timings["merge_s"] = lap()
    log.debug("%s: %d rows, %s (%s): %d inserted, %d updated", table_name, len(frame),
              ", ".join(f"{k[:-2]} {v:.3f} s" for k, v in timings.items()),
              "COPY into the table" if fresh else "COPY into staging, UPDATE + INSERT",
              inserted, updated, extra={"huracan_timings": timings})
    return inserted, updated


def _rows_in_range(conn: Connection, target: str, timestamps: pd.Series) -> bool:
    """Does the target hold a row with ``timestamp`` in ``[min, max]`` of ``timestamps``?"""
    lo, hi = timestamps.min(), timestamps.max()
    if pd.isna(lo) or pd.isna(hi):
        return True
    return bool(conn.exec_driver_sql(
        f'SELECT EXISTS (SELECT 1 FROM {target} WHERE "timestamp" BETWEEN %(lo)s AND %(hi)s)',
        {"lo": lo.to_pydatetime(), "hi": hi.to_pydatetime()}).scalar_one())


def _merge(conn: Connection, target: str, stage: str, cols: list[str], key: list[str],
           values: list[str]) -> tuple[int, int]:
    """Update changed values from the staging table, then insert its new keys."""
    match = " AND ".join(f"t.{_ident(c)} = s.{_ident(c)}" for c in key)
    updated = 0
    if values:
        changed = (f"ROW({', '.join(f't.{_ident(c)}' for c in values)}) IS DISTINCT FROM "
                   f"ROW({', '.join(f's.{_ident(c)}' for c in values)})")
        updated = conn.exec_driver_sql(
            f"UPDATE {target} AS t SET "
            + ", ".join(f"{_ident(c)} = s.{_ident(c)}" for c in values)
            + f" FROM {stage} AS s WHERE {match} AND {changed}").rowcount
    column_list = ", ".join(_ident(c) for c in cols)
    inserted = conn.exec_driver_sql(
        f"INSERT INTO {target} ({column_list}) "
        f"SELECT {', '.join(f's.{_ident(c)}' for c in cols)} FROM {stage} AS s "
        f"WHERE NOT EXISTS (SELECT 1 FROM {target} AS t WHERE {match})").rowcount
    return inserted, updated


# --------------------------------------------------------------------------------------------
# The portable path
# --------------------------------------------------------------------------------------------

def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts of Python values; NaN becomes ``None`` (SQL NULL)."""
    out = frame.astype(object).where(frame.notna(), None)
    return out.to_dict("records")


def executemany_upsert(conn: Connection, table_name: str, frame: pd.DataFrame
                       ) -> tuple[int, int]:
    """Portable path (SQLite's default): one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE values
    differ`` executed for every row (DBAPI ``executemany``) in the caller's transaction.

    Counts come from the table's row count before and after (inserted) and SQLite's
    ``total_changes()`` (inserted + updated). On other dialects ``updated`` is derived from the
    statement's rowcount. The counts assume no concurrent writer (SQLite: one writer at a time).

    Returns:
        ``(inserted, updated)``.
    """
    table = _table(table_name)
    cols = list(frame.columns)
    key, values = _key_and_values(table, cols)
    dialect = conn.dialect.name
    ins = (postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table))
    if values:
        stmt = ins.on_conflict_do_update(
            index_elements=key, set_={c: ins.excluded[c] for c in values},
            where=or_(*(table.c[c].is_distinct_from(ins.excluded[c]) for c in values)))
    else:
        stmt = ins.on_conflict_do_nothing(index_elements=key)
    count = select(func.count()).select_from(table)
    before = conn.execute(count).scalar_one()
    changes_before = (conn.execute(text("SELECT total_changes()")).scalar_one()
                      if dialect == "sqlite" else 0)
    result = conn.execute(stmt, _records(frame))
    inserted = conn.execute(count).scalar_one() - before
    if dialect == "sqlite":
        changed = conn.execute(text("SELECT total_changes()")).scalar_one() - changes_before
    else:
        changed = max(result.rowcount, inserted)
    return int(inserted), int(changed - inserted)
