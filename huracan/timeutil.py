"""Times as UTC: the one conversion every module uses (:func:`to_utc`).

Bottom layer of the package (``benchmarks/import_layers.py``): imports nothing from ``huracan``.
"""

from __future__ import annotations

from typing import Any, Literal

import pandas as pd

#: what a naive time means: ``"utc"`` reads it as UTC, ``"raise"`` refuses it
Naive = Literal["utc", "raise"]


def to_utc(value: Any, name: str | None = None, *, naive: Naive = "utc") -> pd.Timestamp:
    """``value`` (a ``str``, ``datetime``, ``numpy.datetime64``, ``pd.Timestamp``, or an integer
    of nanoseconds since the epoch, as ``pd.Timestamp`` reads it) as a UTC-aware
    ``pd.Timestamp``; an aware time is converted to UTC (same instant).

    Args:
        name: the argument's name, quoted in error messages (``start=...``).
        naive: a time without zone is read as UTC (``"utc"``, command-line and file-name
            times), or refused (``"raise"``, where a naive time is most likely a bug).

    Raises:
        ValueError: ``value`` cannot be read as a time or is missing (``None``, ``NaT``); or it
            is naive with ``naive="raise"`` (the message names ``name`` and shows an example).
    """
    label = f"{name}={value!r}" if name else repr(value)
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot read {label} as a time ({exc})") from exc
    if ts is pd.NaT:
        raise ValueError(f"cannot read {label} as a time (missing)")
    if ts.tzinfo is None:
        if naive == "raise":
            raise ValueError(f"{label} is naive: pass a UTC-aware time "
                             "(e.g. '2024-01-01T00:00Z')")
        return ts.tz_localize("UTC")
    return ts.tz_convert("UTC")
