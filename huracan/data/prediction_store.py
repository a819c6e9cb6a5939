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
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

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
