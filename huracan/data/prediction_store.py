"""Where the prediction log's rows and inputs live (the ``predictions`` table of the brain store,
:class:`huracan.db.tables.Prediction`, and Parquet files of the requests' candles).

Digests (SHA-256, hex):

- :func:`inputs_digest`: one request's candles, canonicalised (``timestamp`` as epoch
  nanoseconds UTC, then ``open, high, low, close, volume`` as float64, row by row, plus any
  extra columns in name order), so the same candles give the same digest whatever the request's
  dtypes or column order.
- :func:`chain_digests`: per bar, a hash chain over the candles from the first row to that
  bar: ``d_t = sha256(d_{t-1} || canonical bytes of row t)``; a revision of any earlier candle
  changes every later digest, so the first bar whose digest differs is the revision point.

The prediction log (:mod:`huracan.serving.prediction_log` writes it, the paper loop too):
:func:`prediction_row` makes a ``predictions`` row from an answer row, :func:`write_inputs`
stores a request's candles as content-addressed Parquet under :func:`default_inputs_root`
(``root/symbol=<KEY>/timeframe=<tf>/<digest[:2]>/<digest>.parquet``), :func:`insert_predictions`
and :func:`read_predictions` write and read the table, and :func:`logged_candles` gives back the
candles production was sent for a span of bars (the drift report's current window).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from huracan.timeutil import to_utc

log = logging.getLogger(__name__)

#: the candle columns a digest reads, in this order
DIGEST_COLUMNS = ("open", "high", "low", "close", "volume")


def _canonical(frame: pd.DataFrame) -> np.ndarray:
    """``(n, 1 + 5 + extra)`` float64/int64 bytes view per row: epoch ns, OHLCV, extra columns
    (sorted by name, numeric, NaN kept)."""
    ts = pd.DatetimeIndex(pd.to_datetime(frame["timestamp"], utc=True)).asi8.astype(np.int64)
    extra = sorted(c for c in frame.columns if c not in ("timestamp", *DIGEST_COLUMNS))
    cols = [frame[c].to_numpy(np.float64) for c in (*DIGEST_COLUMNS, *extra)]
    values = np.column_stack([ts.view(np.float64), *cols]) if len(frame) else \
        np.zeros((0, 1 + len(cols)))
    return np.ascontiguousarray(values, dtype=np.float64)


def inputs_digest(frame: pd.DataFrame) -> str:
    """SHA-256 (hex) of a request's candles (see the module docstring).

    Raises:
        KeyError: ``frame`` lacks ``timestamp`` or an OHLCV column.
    """
    return hashlib.sha256(_canonical(frame).tobytes()).hexdigest()


def chain_digests(frame: pd.DataFrame) -> list[str]:
    """Per row, the hash-chain digest of the candles up to and including it (see the module
    docstring); shape ``(len(frame),)``. ``chain_digests(frame.iloc[:k])`` equals the first
    ``k`` of ``chain_digests(frame)``.

    Raises:
        KeyError: ``frame`` lacks ``timestamp`` or an OHLCV column.
    """
    rows = _canonical(frame)
    out: list[str] = []
    prev = b""
    for row in rows:
        prev = hashlib.sha256(prev + row.tobytes()).digest()
        out.append(prev.hex())
    return out


# --- the predictions table and the inputs Parquet files -----------------------------------------

#: environment variable of the inputs' Parquet root (:func:`default_inputs_root`)
INPUTS_ENV = "HURACAN_PREDICTION_INPUTS"
#: the candle lake's environment variable and default (as :func:`huracan.stages.lake_root`)
_LAKE_ENV, _LAKE_DEFAULT = "HURACAN_LAKE", "data/lake"

#: the float columns of a prediction row (NaN is stored as NULL)
_FLOATS = ("forecast", "position", "size", "leverage", "latency_ms")


def default_inputs_root() -> Path:
    """Where the requests' candles go: ``$HURACAN_PREDICTION_INPUTS``, else ``predictions``
    inside the candle lake's directory (``$HURACAN_LAKE/predictions``, by default
    ``data/lake/predictions``, relative to the working directory), beside its ``ohlcv`` tree."""
    if root := os.environ.get(INPUTS_ENV):
        return Path(root)
    return Path(os.environ.get(_LAKE_ENV) or _LAKE_DEFAULT) / "predictions"


def _opt_float(value: Any) -> float | None:
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _opt_str(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


def prediction_row(answer_row: Mapping[str, Any] | pd.Series, *, source: str, symbol: str,
                   timeframe: str, execution: dict[str, Any] | None, inputs_digest: str,
                   inputs_rows: int, inputs_path: str | Path | None, served_at: Any,
                   latency_ms: float | None, account: str | None = None) -> dict[str, Any]:
    """One ``predictions`` row (a dict keyed by the table's columns, without ``id``) from one
    answer row of :data:`huracan.serving.raw.OUTPUT_COLUMNS` (``timestamp`` = the bar's open
    time, ``forecast``, ``regime``, ``position``, ``size``, ``leverage``, ``sizer``,
    ``registered_model``, ``model_version``, ``run_id``).

    Non-finite floats become None (SQL NULL); ``bar_time`` and ``served_at`` are UTC-aware
    (naive values are taken as UTC, :func:`huracan.timeutil.to_utc`).

    Raises:
        ValueError: ``source`` is not one of :data:`huracan.db.tables.PREDICTION_SOURCES`, or the
            answer row has no ``registered_model`` (the model name is required).
        KeyError: the answer row lacks ``timestamp``.
    """
    from huracan.db.tables import PREDICTION_SOURCES

    if source not in PREDICTION_SOURCES:
        raise ValueError(f"prediction source {source!r} is not one of {PREDICTION_SOURCES}")
    get = answer_row.get
    model = _opt_str(get("registered_model"))
    if not model:
        raise ValueError("the answer row has no registered_model: the log needs the model name")
    return {
        "served_at": to_utc(served_at).to_pydatetime(),
        "source": source,
        "model_name": model,
        "model_version": _opt_str(get("model_version")),
        "run_id": _opt_str(get("run_id")),
        "symbol": symbol,
        "timeframe": timeframe,
        "bar_time": to_utc(answer_row["timestamp"]).to_pydatetime(),
        "forecast": _opt_float(get("forecast")),
        "regime": _opt_str(get("regime")),
        "position": _opt_float(get("position")),
        "size": _opt_float(get("size")),
        "leverage": _opt_float(get("leverage")),
        "sizer": _opt_str(get("sizer")),
        "execution": execution,
        "inputs_digest": inputs_digest,
        "inputs_rows": int(inputs_rows),
        "inputs_path": None if inputs_path is None else str(inputs_path),
        "account": account,
        "latency_ms": _opt_float(latency_ms),
    }


def normalise_candles(candles: pd.DataFrame) -> pd.DataFrame:
    """The request's candles as stored: ``timestamp`` UTC-aware datetime64[ns] (from ISO-8601
    strings, datetimes, or integer epoch milliseconds), OHLCV float64, other columns as given,
    index reset. The log's ``inputs_digest`` is the :func:`inputs_digest` of this frame."""
    out = candles.reset_index(drop=True).copy()
    ts = out["timestamp"]
    if isinstance(ts.dtype, pd.DatetimeTZDtype) and str(ts.dtype) == "datetime64[ns, UTC]":
        parsed = ts
    elif pd.api.types.is_integer_dtype(ts):  # epoch milliseconds (the request's third form)
        parsed = pd.to_datetime(ts, unit="ms", utc=True)
    elif ts.dtype == object:
        try:  # ISO-8601 strings (the JSON wire format): the fast path
            parsed = pd.to_datetime(ts, utc=True, format="ISO8601")
        except (ValueError, TypeError):
            parsed = pd.to_datetime(ts, utc=True)
    else:
        parsed = pd.to_datetime(ts, utc=True)
    if parsed is not ts:
        out["timestamp"] = parsed.astype("datetime64[ns, UTC]")
    for col in DIGEST_COLUMNS:
        if out[col].dtype != np.float64:
            out[col] = out[col].astype(np.float64)
    return out


def inputs_file(root: str | Path, digest: str, *, symbol: str, timeframe: str) -> Path:
    """``root/symbol=<KEY>/timeframe=<tf>/<digest[:2]>/<digest>.parquet`` (KEY =
    :func:`huracan.data.lake.symbol_key`)."""
    from huracan.data.lake import symbol_key

    return (Path(root) / f"symbol={symbol_key(symbol)}" / f"timeframe={timeframe}"
            / digest[:2] / f"{digest}.parquet")


def write_inputs(root: str | Path, digest: str, candles: pd.DataFrame, *, symbol: str,
                 timeframe: str, normalised: bool = False) -> Path:
    """Store a request's candles as Parquet at :func:`inputs_file` (content-addressed by
    ``digest``, the :func:`inputs_digest` of ``candles``): written to a hidden temporary file
    beside it and renamed onto it (atomic: a reader never sees half a file), and not rewritten
    when the file exists (a request repeated verbatim is stored once). Directories are
    created (``normalised``: ``candles`` already went through :func:`normalise_candles`). No
    fsync (it cost ~4 ms per request on the serving path's writer thread): after a
    power cut the newest files may be missing, never torn; the rows stay.

    Returns:
        the file's path.

    Raises:
        OSError: the directory cannot be created or the file written.
    """
    path = inputs_file(root, digest, symbol=symbol, timeframe=timeframe)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = candles if normalised else normalise_candles(candles)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def insert_predictions(bind: Any, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Insert ``rows`` (:func:`prediction_row` dicts) into ``predictions``; their ids, in the
    order of ``rows``.

    Args:
        bind: an Engine (one transaction of its own), a Connection or a Session (the caller's
            transaction; the caller commits).

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the store cannot be reached or refuses a row.
    """
    from sqlalchemy import Engine, insert
    from sqlalchemy.orm import Session

    from huracan.db.tables import Prediction

    if not rows:
        return []
    table = Prediction.__table__
    stmt = insert(Prediction).returning(table.c.id, sort_by_parameter_order=True)
    params = [dict(r) for r in rows]
    if isinstance(bind, Engine):
        with bind.begin() as conn:
            return [int(i) for i in conn.execute(stmt, params).scalars()]
    conn = bind.connection() if isinstance(bind, Session) else bind
    return [int(i) for i in conn.execute(stmt, params).scalars()]


def read_predictions(bind: Any, *, symbol: str | None = None, timeframe: str | None = None,
                     model_name: str | None = None, start: Any = None, end: Any = None,
                     source: str | Sequence[str] | None = None) -> pd.DataFrame:
    """The logged rows, ordered by ``bar_time`` then ``served_at`` then ``id``; ``start`` /
    ``end`` bound ``bar_time`` (``[start, end)``, UTC; None = open). Columns: the
    ``predictions`` table's (``id`` first); ``bar_time`` / ``served_at`` UTC-aware."""
    from sqlalchemy import select

    from huracan.db.tables import Prediction

    table = Prediction.__table__
    stmt = select(table)
    if symbol is not None:
        stmt = stmt.where(table.c.symbol == symbol)
    if timeframe is not None:
        stmt = stmt.where(table.c.timeframe == timeframe)
    if model_name is not None:
        stmt = stmt.where(table.c.model_name == model_name)
    if start is not None:
        stmt = stmt.where(table.c.bar_time >= to_utc(start).to_pydatetime())
    if end is not None:
        stmt = stmt.where(table.c.bar_time < to_utc(end).to_pydatetime())
    if source is not None:
        stmt = stmt.where(table.c.source.in_([source] if isinstance(source, str) else source))
    stmt = stmt.order_by(table.c.bar_time, table.c.served_at, table.c.id)
    columns = [c.name for c in table.columns]
    if hasattr(bind, "begin") and not hasattr(bind, "execute"):  # an Engine
        with bind.connect() as conn:
            rows = conn.execute(stmt).all()
    else:
        rows = bind.execute(stmt).all()
    frame = pd.DataFrame([tuple(r) for r in rows], columns=columns)
    for col in ("bar_time", "served_at"):
        frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame


def _read_lake_partition(directory: Path, rows: pd.DataFrame) -> list[tuple[Any, pd.DataFrame]]:
    """Per logged row whose ``inputs_path`` is a lake partition directory: the last
    ``inputs_rows`` bars of the partition at or before its ``bar_time`` (what the request sent,
    when the lake was not revised since), as ``(served_at, candles)`` pieces."""
    parts = sorted(directory.glob("part-*.parquet"))
    if not parts:
        log.warning("prediction inputs: lake partition %s holds no part file", directory)
        return []
    lake = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    lake["timestamp"] = pd.to_datetime(lake["timestamp"], utc=True)
    lake = lake.drop_duplicates("timestamp", keep="last").sort_values("timestamp")
    lake = lake[["timestamp", *DIGEST_COLUMNS]].reset_index(drop=True)
    ts = pd.DatetimeIndex(lake["timestamp"])
    out = []
    for row in rows.itertuples(index=False):
        stop = int(ts.searchsorted(row.bar_time, side="right"))
        out.append((row.served_at, lake.iloc[max(0, stop - int(row.inputs_rows)):stop]))
    return out


def logged_candles(bind: Any, symbol: str, timeframe: str, start: Any, end: Any
                   ) -> tuple[pd.DataFrame, pd.DatetimeIndex]:
    """The candles production was actually sent for the bars logged in ``[start, end)``.

    Reads the ``predictions`` rows of ``symbol`` / ``timeframe`` with ``bar_time`` in
    ``[start, end)`` (any source) and the candles of each: the Parquet file of its
    ``inputs_path``, or, when ``inputs_path`` is a lake partition directory (the paper loop's
    rows), the last ``inputs_rows`` bars of that partition up to its ``bar_time``. The union is
    deduplicated by ``timestamp``, the candle of the most recently served request winning (a
    bar revised between two requests counts as last seen), and sorted. Rows without
    ``inputs_path``, or whose file is gone, are skipped with a warning.

    Returns:
        ``(candles, bar_times)``: candles with ``timestamp`` (UTC) + OHLCV (+ any extra column
        the requests carried), including the history before ``start`` the requests sent (the
        features' warm-up); ``bar_times`` the sorted distinct logged bar times in
        ``[start, end)`` (the rows a drift report's current window holds).
    """
    rows = read_predictions(bind, symbol=symbol, timeframe=timeframe, start=start, end=end)
    bar_times = pd.DatetimeIndex(rows["bar_time"].drop_duplicates().sort_values(), name=None)
    pieces: list[tuple[Any, pd.DataFrame]] = []
    for path, group in rows.dropna(subset=["inputs_path"]).groupby("inputs_path", sort=False):
        p = Path(str(path))
        if p.is_dir():
            pieces.extend(_read_lake_partition(p, group))
        elif p.is_file():
            frame = pd.read_parquet(p)
            frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
            pieces.append((group["served_at"].max(), frame))
        else:
            log.warning("prediction inputs %s are gone: %d logged row(s) skipped", p, len(group))
    skipped = int(rows["inputs_path"].isna().sum())
    if skipped:
        log.warning("%d logged row(s) of %s %s have no inputs_path: skipped", skipped, symbol,
                    timeframe)
    if not pieces:
        return pd.DataFrame(columns=["timestamp", *DIGEST_COLUMNS]), bar_times
    pieces.sort(key=lambda item: to_utc(item[0]))
    candles = pd.concat([f for _, f in pieces], ignore_index=True)
    candles = candles.drop_duplicates("timestamp", keep="last").sort_values("timestamp")
    return candles.reset_index(drop=True), bar_times
