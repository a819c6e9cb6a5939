"""Upsert validated frames into the brain store: the Postgres bulk path and the portable one.

- :func:`copy_upsert` (Postgres): binary ``COPY`` into a temporary staging table, then one
  ``INSERT ... SELECT ... ON CONFLICT (key) DO UPDATE ... WHERE values differ``.
- :func:`executemany_upsert` (SQLite, or any dialect): the same upsert per row, DBAPI
  ``executemany``.

Both run in the caller's transaction and return ``(inserted, updated)``; rows whose key exists
with equal values are not rewritten. Frames hold exactly the columns to load, one row per
natural key, timestamps UTC-aware (what :func:`huracan.db.ingest.prepare_frame` returns).
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from psycopg2 import extras as psycopg2_extras
from sqlalchemy import Connection, Table, func, or_, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

from huracan.db.tables import Base


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


def upsert_frame(conn: Connection, table_name: str, frame: pd.DataFrame) -> tuple[int, int]:
    """Upsert ``frame`` (unique natural keys; UTC-aware timestamps) into ``table_name`` within
    the caller's transaction: COPY + one ``INSERT ... ON CONFLICT`` on Postgres through psycopg2
    (the driver pinned by the project), executemany elsewhere.

    Returns:
        ``(inserted, updated)``; rows whose key existed with equal values count as neither.
    """
    if frame.empty:
        return 0, 0
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg2":
        return copy_upsert(conn, table_name, frame)
    return executemany_upsert(conn, table_name, frame)


class _ChunkReader(io.RawIOBase):
    """A read-only file over an iterator of byte chunks, so that COPY streams the payload while
    it is still being encoded (client encoding overlaps server parsing)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        while size is None or size < 0 or len(self._buf) < size:
            try:
                self._buf += next(self._chunks)
            except StopIteration:
                break
        if size is None or size < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:size], self._buf[size:]
        return out


_PGCOPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags 0, no extension
_PGCOPY_TRAILER = b"\xff\xff"  # field count -1
_PG_EPOCH_US = 946_684_800 * 1_000_000  # 2000-01-01 UTC in µs since 1970: Postgres' epoch


@dataclass(frozen=True)
class _BinaryStage:
    """A frame laid out for ``COPY ... (FORMAT binary)``: every staged column has a fixed
    width. Numbers and times are staged as they are; the text columns (categoricals, low
    cardinality) are replaced by one int4 ``code`` into a small dictionary of their distinct
    combinations, which the INSERT joins back."""

    numeric: list[str]
    text: list[str]
    codes: np.ndarray
    dictionary: list[tuple[Any, ...]]
    dtype: np.dtype

    @classmethod
    def build(cls, frame: pd.DataFrame) -> _BinaryStage:
        text = [c for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)]
        numeric = [c for c in frame.columns if c not in text]
        fields: list[tuple[str, str]] = [("n_fields", ">i2")]
        for c in numeric:
            wire = ">f8" if pd.api.types.is_float_dtype(frame[c]) else ">i8"
            fields += [(f"len_{c}", ">i4"), (c, wire)]
        codes = np.zeros(len(frame), dtype=np.int64)
        dictionary: list[tuple[Any, ...]] = []
        if text:
            cats = [frame[c].cat for c in text]
            combined = np.zeros(len(frame), dtype=np.int64)
            for cat in cats:  # mixed-radix code of the row's text values (-1 = missing)
                combined = combined * (len(cat.categories) + 1) + (cat.codes.to_numpy() + 1)
            codes, uniques = pd.factorize(combined)
            for u in uniques:
                values: list[Any] = []
                for cat in reversed(cats):
                    u, code = divmod(int(u), len(cat.categories) + 1)
                    values.append(None if code == 0 else str(cat.categories[code - 1]))
                dictionary.append(tuple(reversed(values)))
            fields += [("len_code", ">i4"), ("code", ">i4")]
        return cls(numeric, text, codes, dictionary, np.dtype(fields))

    def payload(self, frame: pd.DataFrame, chunk_rows: int = 200_000) -> Iterator[bytes]:
        """The COPY BINARY stream: header, fixed-width tuples, trailer."""
        yield _PGCOPY_HEADER
        for start in range(0, len(frame), chunk_rows):
            part = frame.iloc[start:start + chunk_rows]
            rows = np.empty(len(part), dtype=self.dtype)
            rows["n_fields"] = len(self.numeric) + (1 if self.text else 0)
            for c in self.numeric:
                s = part[c]
                rows[f"len_{c}"] = 8
                if isinstance(s.dtype, pd.DatetimeTZDtype):
                    us = s.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[us]")
                    rows[c] = us.view("int64") - _PG_EPOCH_US
                else:
                    rows[c] = s.to_numpy()
            if self.text:
                rows["len_code"] = 4
                rows["code"] = self.codes[start:start + chunk_rows]
            yield rows.tobytes()
        yield _PGCOPY_TRAILER


def _stage_sql_type(s: pd.Series) -> str:
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        return "timestamptz"
    return "float8" if pd.api.types.is_float_dtype(s) else "int8"


def copy_upsert(conn: Connection, table_name: str, frame: pd.DataFrame) -> tuple[int, int]:
    """Postgres bulk path: ``COPY`` the rows into a temporary staging table, then one
    ``INSERT ... SELECT ... ON CONFLICT (key) DO UPDATE SET ... WHERE ROW(values) IS DISTINCT
    FROM ROW(new values)``, all in the caller's transaction.

    Staging is binary COPY of fixed-width tuples (see :class:`_BinaryStage`): text columns are
    sent once, as a small dictionary of their distinct combinations, so neither side formats or
    parses text per row. Rows are sent sorted by the leading primary-key columns (symbol, time)
    so index inserts stay local. Float NaN arrives as NULL (``NULLIF``), so a NaN in a NOT NULL
    column is refused like a missing value. Inserted and updated rows are told apart by
    ``ingested_at = now()`` (set on insert only; ``now()`` is the transaction's start time).

    Returns:
        ``(inserted, updated)``.

    Raises:
        sqlalchemy.exc.DBAPIError: (e.g. ``IntegrityError``) the database refused a row; the
            caller's transaction must be rolled back.
    """
    table = _table(table_name)
    cols = list(frame.columns)
    key, values = _key_and_values(table, cols)
    frame = categorical_text(frame).sort_values(key[:2], kind="stable", ignore_index=True)
    layout = _BinaryStage.build(frame)
    stage = f"_huracan_stage_{uuid.uuid4().hex[:12]}"

    def q(name: str) -> str:
        return f'"{name}"'

    staged = [*layout.numeric, *(["code"] if layout.text else [])]
    ddl = ", ".join([*(f"{q(c)} {_stage_sql_type(frame[c])}" for c in layout.numeric),
                     *(["code int4"] if layout.text else [])])

    def source(c: str) -> str:
        if c in layout.text:
            return f"d.{q(c)}"
        return f"NULLIF(s.{q(c)}, 'NaN')" if pd.api.types.is_float_dtype(frame[c]) else f"s.{q(c)}"

    from_clause = f"{stage} s" + (f" JOIN {stage}_dict d ON d.code = s.code" if layout.text
                                  else "")
    if values:
        action = (
            "DO UPDATE SET " + ", ".join(f"{q(c)} = EXCLUDED.{q(c)}" for c in values)
            + f" WHERE ROW({', '.join(f'{table_name}.{q(c)}' for c in values)}) IS DISTINCT FROM"
            + f" ROW({', '.join(f'EXCLUDED.{q(c)}' for c in values)})")
    else:
        action = "DO NOTHING"
    upsert = (
        f"WITH ins AS (INSERT INTO {table_name} ({', '.join(q(c) for c in cols)}) "
        f"SELECT {', '.join(source(c) for c in cols)} FROM {from_clause} "
        f"ON CONFLICT ({', '.join(q(c) for c in key)}) {action} "
        "RETURNING (ingested_at = now()) AS inserted) "
        "SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM ins")
    dbapi = conn.connection.driver_connection
    if dbapi is None:  # pragma: no cover - only for a closed connection
        raise RuntimeError("connection has no DBAPI connection")
    dbapi_error = conn.dialect.loaded_dbapi.Error
    statement = ""
    try:
        with dbapi.cursor() as cur:
            if layout.text:
                statement = (f"CREATE TEMPORARY TABLE {stage}_dict (code int4 PRIMARY KEY, "
                             + ", ".join(f"{q(c)} text" for c in layout.text) + ") ON COMMIT DROP")
                cur.execute(statement)
                statement = f"INSERT INTO {stage}_dict VALUES %s"
                psycopg2_extras.execute_values(
                    cur, statement, [(i, *v) for i, v in enumerate(layout.dictionary)],
                    page_size=1000)
            statement = f"CREATE TEMPORARY TABLE {stage} ({ddl}) ON COMMIT DROP"
            cur.execute(statement)
            statement = (f"COPY {stage} ({', '.join(q(c) for c in staged)}) "
                         "FROM STDIN WITH (FORMAT binary)")
            cur.copy_expert(statement, _ChunkReader(layout.payload(frame)), size=1 << 20)
            statement = upsert
            cur.execute(statement)
            row = cur.fetchone()
            cur.execute(f"DROP TABLE {stage}" + (f", {stage}_dict" if layout.text else ""))
    except dbapi_error as exc:  # raise what SQLAlchemy would (IntegrityError, ...)
        raise DBAPIError.instance(statement, None, exc, dbapi_error) from exc
    assert row is not None
    return int(row[0]), int(row[1])


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
