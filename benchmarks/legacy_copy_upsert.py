"""The brain store's PREVIOUS Postgres bulk path, kept for comparison by ``bulk_ingest.py`` only.

Until the psycopg 3 COPY path (:func:`huracan.db.upsert.copy_upsert`) replaced it, the bulk
path was this: a hand-written binary COPY encoder (numpy structured arrays, text columns as one
dictionary code) streamed through psycopg2's ``copy_expert`` into a temporary staging table,
then one ``INSERT ... SELECT ... ON CONFLICT (key) DO UPDATE ... WHERE values differ``. Copied
verbatim from ``huracan/db/upsert.py`` (git history has the original); not used by the product.
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
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from huracan.db.upsert import _key_and_values, _table, categorical_text


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


def legacy_copy_upsert(conn: Connection, table_name: str, frame: pd.DataFrame) -> tuple[int, int]:
    """The previous Postgres bulk path: ``COPY`` the rows into a temporary staging table, then one
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
