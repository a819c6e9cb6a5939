"""As-of joins of irregular sources onto a bar grid, and each source's known-at time.

A bar is indexed by its OPEN time; its features are computed at its CLOSE (open + timeframe).
A source value may enter bar t only if it was KNOWN at or before t's close (inclusive)::

    value row r enters bar t  <=>  known_at(r) <= open(t) + timeframe
                                   (the latest such row; ``pandas.merge_asof``, backward)

Known-at conventions (the helpers below add a ``known_at`` column; a frame that already has one
keeps it, so a loader can state a more conservative time for a particular file):

========================  =====================================================================
source                    known_at
========================  =====================================================================
funding rate              its settlement ``timestamp`` (+ ``delay``, default 0). A rate stamped
                          08:00:00.005 (exchange jitter) is NOT visible to the 07:00 1h bar,
                          which closes at 08:00:00; one stamped 08:00:00 exactly is.
open-interest snapshot    its ``timestamp`` (+ ``delay``, default 0)
candle (mark price, ...)  its open ``timestamp`` + its timeframe (the close is known at the close)
liquidation event         its event ``timestamp``; aggregated into the FIRST bar whose close >=
                          the event time, i.e. bars own the half-open interval (open, close]
daily index (sentiment)   day start + 1 day: published at some time during its day, so it is
                          used only by bars that OPEN on the next day or later (join ``at="open"``)
========================  =====================================================================

``max_age`` turns stale values into NaN: a joined row whose age (join time - known_at) exceeds
``max_age`` is dropped (``age > max_age``; ``age == max_age`` is still fresh). It is either one
duration or, per row, the name of a Timedelta column of ``values`` (e.g. two settlement
intervals, inferred per settlement).

All times are UTC-aware; naive times raise ValueError (the time zone would be a guess).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from huracan.data.ohlcv import timeframe_to_timedelta

KNOWN_AT = "known_at"
#: Name of the bar index in every frame returned by this package's feature functions.
BAR_INDEX = "timestamp"
_DAY = pd.Timedelta(days=1)


def to_timedelta(value: str | pd.Timedelta | Any, name: str) -> pd.Timedelta:
    """A duration from a timeframe (``1h``, ``5m``), a pandas offset string (``5min``, ``30D``)
    or a Timedelta.

    Raises:
        ValueError: the value cannot be read as a duration, or is negative.
    """
    if isinstance(value, pd.Timedelta):
        td = value
    elif isinstance(value, str):
        try:
            td = timeframe_to_timedelta(value)
        except ValueError:
            try:
                td = pd.Timedelta(value)
            except ValueError as exc:
                raise ValueError(f"{name}={value!r} is not a duration (e.g. '1h', '5min', "
                                 "'30D')") from exc
    else:
        try:
            td = pd.Timedelta(value)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{name}={value!r} is not a duration") from exc
    if td < pd.Timedelta(0):
        raise ValueError(f"{name}={value!r} is negative; expected a duration >= 0")
    return td


def utc_times(times: Any, name: str) -> pd.DatetimeIndex:
    """``times`` as a UTC DatetimeIndex in nanoseconds (datetime64[ns, UTC]).

    Raises:
        ValueError: the times are naive, unparseable or contain NaT (message names ``name``).
    """
    try:
        idx = pd.DatetimeIndex(times)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"column {name!r}: cannot read as timestamps ({exc})") from exc
    if idx.tz is None:
        raise ValueError(f"column {name!r} holds naive datetimes; pass UTC-aware timestamps "
                         "(rule: utc_timestamps)")
    if idx.hasnans:
        raise ValueError(f"column {name!r} has missing timestamps (NaT) (rule: not_null)")
    return idx.tz_convert("UTC").as_unit("ns")


def bar_times(bar_open_times: Any, name: str = "bar_open_times") -> pd.DatetimeIndex:
    """Validated bar open times: UTC-aware, strictly increasing (no duplicates).

    Raises:
        ValueError: naive times, NaT, duplicates or disorder (naming ``name`` and the rule).
    """
    idx = utc_times(bar_open_times, name)
    if len(idx) > 1:
        steps = np.diff(idx.asi8)
        if (steps <= 0).any():
            i = int(np.flatnonzero(steps <= 0)[0]) + 1
            raise ValueError(f"{name}: row {i} ({idx[i]}) is not after the previous bar "
                             "(rule: strictly_increasing)")
    return idx.rename(BAR_INDEX)


def bar_close_times(bar_open_times: Any, timeframe: str | pd.Timedelta) -> pd.DatetimeIndex:
    """Close time of each bar: open + timeframe (shape ``(n_bars,)``, UTC)."""
    return bar_times(bar_open_times) + to_timedelta(timeframe, "timeframe")


def asof_join(
    bar_open_times: Any,
    timeframe: str | pd.Timedelta,
    values: pd.DataFrame,
    columns: Sequence[str],
    max_age: pd.Timedelta | str | None = None,
    *,
    known_at: str = KNOWN_AT,
    at: Literal["close", "open"] = "close",
    keep_known_at: bool = False,
) -> pd.DataFrame:
    """Join the latest row of ``values`` known at each bar's close (``pandas.merge_asof``,
    ``direction='backward'``, ``allow_exact_matches=True``: inclusive).

    Rows are joined whole: when the latest row has NaN in a column, the result is NaN (earlier
    rows are not searched; drop NaN rows first if that is wanted). Among rows with the same
    ``known_at`` the last one (in the order given) wins.

    Args:
        bar_open_times: ``(n_bars,)`` bar open times, UTC-aware, strictly increasing.
        timeframe: bar duration (``1h``) or a Timedelta.
        values: ``(n_rows, k)`` frame with a ``known_at`` column (UTC-aware, any order).
        columns: columns of ``values`` to join.
        max_age: staleness limit. A Timedelta/duration string, or the name of a Timedelta column
            of ``values`` holding each row's own limit (NaT there = always stale). A joined row
            with ``join time - known_at > max_age`` gives NaN. ``None``: no limit.
        known_at: name of the known-at column.
        at: ``close`` (default): join at the bar close, the rule for everything computed at the
            close. ``open``: join at the bar open (used for daily indices: a bar sees a day's
            value only when it opens on the next day or later).
        keep_known_at: also return the joined row's known-at (column ``known_at``; NaT where
            nothing was joined or the row was stale).

    Returns:
        ``(n_bars, len(columns))`` frame indexed by bar open time (index name ``timestamp``);
        NaN before the first known row and where stale.

    Raises:
        ValueError: a column is missing, a time column is naive or has NaT, bar times are not
            strictly increasing, ``at`` is unknown, or ``max_age`` is negative.
    """
    bars = bar_times(bar_open_times)
    step = to_timedelta(timeframe, "timeframe")
    if at not in ("close", "open"):
        raise ValueError(f"at={at!r}: expected 'close' or 'open'")
    missing = [c for c in (known_at, *columns) if c not in values.columns]
    if missing:
        raise ValueError(f"values: missing column(s) {missing}; found {list(values.columns)} "
                         "(rule: required_columns)")
    per_row = isinstance(max_age, str) and max_age in values.columns
    limit = None if max_age is None or per_row else to_timedelta(max_age, "max_age")
    right = pd.DataFrame({"_known": utc_times(values[known_at], known_at)})
    for i, col in enumerate(columns):
        right[f"_v{i}"] = values[col].to_numpy()
    if per_row:
        assert isinstance(max_age, str)
        right["_limit"] = pd.to_timedelta(values[max_age].to_numpy())
    right = right.sort_values("_known", kind="stable")
    right = right.drop_duplicates("_known", keep="last")  # of equal known_at, the last wins
    when = bars + step if at == "close" else bars
    left = pd.DataFrame({"_when": when})
    merged = pd.merge_asof(left, right, left_on="_when", right_on="_known",
                           direction="backward", allow_exact_matches=True)
    age = merged["_when"] - merged["_known"]
    if per_row:
        stale = ~(age <= merged["_limit"])  # NaT limit or NaT age -> stale
    elif limit is not None:
        stale = age > limit
    else:
        stale = pd.Series(False, index=merged.index)
    stale_arr = stale.to_numpy(dtype=bool)
    out = pd.DataFrame(index=bars)
    for i, col in enumerate(columns):
        vals = merged[f"_v{i}"]
        if stale_arr.any():
            vals = vals.where(~stale_arr)
        out[col] = vals.to_numpy()
    if keep_known_at:
        out[KNOWN_AT] = merged["_known"].where(~stale_arr).to_numpy()
    return out


def _with_known_at(frame: pd.DataFrame, offset: pd.Timedelta, what: str,
                   time_column: str = "timestamp") -> pd.DataFrame:
    """A copy of ``frame`` with ``known_at`` = ``time_column`` + ``offset`` (kept when present)."""
    if KNOWN_AT in frame.columns:
        out = frame.copy()
        out[KNOWN_AT] = utc_times(out[KNOWN_AT], f"{what}.{KNOWN_AT}")
        return out
    if time_column not in frame.columns:
        raise ValueError(f"{what}: missing column {time_column!r}; found {list(frame.columns)} "
                         "(rule: required_columns)")
    out = frame.copy()
    out[KNOWN_AT] = utc_times(out[time_column], f"{what}.{time_column}") + offset
    return out


def funding_known_at(funding: pd.DataFrame, delay: pd.Timedelta | str = "0s") -> pd.DataFrame:
    """Funding rates are known at their settlement ``timestamp`` (+ ``delay``).

    The exchange's millisecond jitter is kept: 08:00:00.005 is after the 07:00 bar's close.

    Returns:
        a copy of ``funding`` (n rows) with a ``known_at`` column (an existing one is kept).

    Raises:
        ValueError: no ``timestamp`` column, naive or missing timestamps.
    """
    return _with_known_at(funding, to_timedelta(delay, "delay"), "funding")


def open_interest_known_at(open_interest: pd.DataFrame, delay: pd.Timedelta | str = "0s"
                           ) -> pd.DataFrame:
    """An open-interest snapshot is known at its ``timestamp`` (+ ``delay``; use a delay of one
    period for a vendor that stamps a period's aggregate at the period start).

    Returns:
        a copy with ``known_at`` (an existing one is kept).

    Raises:
        ValueError: no ``timestamp`` column, naive or missing timestamps.
    """
    return _with_known_at(open_interest, to_timedelta(delay, "delay"), "open_interest")


def candle_known_at(candles: pd.DataFrame, timeframe: str | pd.Timedelta) -> pd.DataFrame:
    """A candle (indexed by its open ``timestamp``) is known at its close: open + timeframe.

    Returns:
        a copy with ``known_at`` (an existing one is kept).

    Raises:
        ValueError: no ``timestamp`` column, naive or missing timestamps, bad timeframe.
    """
    return _with_known_at(candles, to_timedelta(timeframe, "timeframe"), "candles")


def liquidation_known_at(events: pd.DataFrame) -> pd.DataFrame:
    """A liquidation is known at its event ``timestamp``.

    Returns:
        a copy with ``known_at`` (an existing one is kept).

    Raises:
        ValueError: no ``timestamp`` column, naive or missing timestamps.
    """
    return _with_known_at(events, pd.Timedelta(0), "liquidations")


def daily_index_known_at(index: pd.DataFrame) -> pd.DataFrame:
    """A daily index stamped at its day start (UTC midnight), published during that day, is
    known at day start + 1 day; join it with ``asof_join(..., at="open")`` so that only bars
    opening on the next day or later use it.

    Returns:
        a copy with ``known_at`` = ``timestamp`` + 1 day (an existing ``known_at`` is kept).

    Raises:
        ValueError: no ``timestamp`` column, naive/missing timestamps, or a timestamp that is
            not a UTC midnight (rule: daily_day_start).
    """
    if KNOWN_AT not in index.columns and "timestamp" in index.columns:
        ts = utc_times(index["timestamp"], "timestamp")
        off = ts != ts.floor("D")
        if off.any():
            i = int(np.flatnonzero(off)[0])
            raise ValueError(f"daily index: column 'timestamp' row {i} ({ts[i]}) is not a UTC "
                             "day start (rule: daily_day_start)")
    return _with_known_at(index, _DAY, "daily index")


def assign_to_bars(event_times: Any, bar_open_times: Any, timeframe: str | pd.Timedelta
                   ) -> pd.DatetimeIndex:
    """The bar each event is aggregated into: the FIRST bar whose close >= the event time (the
    bar at whose close the event is visible). On a complete grid that is the bar whose half-open
    interval ``(open, close]`` holds the event; an event exactly at a bar's open belongs to the
    previous bar (which closes then). On a grid with holes, events of a missing bar go to the
    next bar present.

    Args:
        event_times: ``(n_events,)`` UTC-aware times, any order.
        bar_open_times: ``(n_bars,)`` strictly increasing open times.
        timeframe: bar duration.

    Returns:
        ``(n_events,)`` bar open times aligned with ``event_times``; NaT for events after the
        last bar's close.

    Raises:
        ValueError: naive/missing times or bar times not strictly increasing.
    """
    events = utc_times(event_times, "event_times")
    closes = bar_close_times(bar_open_times, timeframe)
    pos = np.searchsorted(closes.asi8, events.asi8, side="left")
    opens = bar_times(bar_open_times)
    out = np.full(len(events), np.datetime64("NaT"), dtype="datetime64[ns]")
    ok = pos < len(opens)
    out[ok] = opens.asi8[pos[ok]].astype("datetime64[ns]")
    return pd.DatetimeIndex(out).tz_localize("UTC")


def complete_bar_grid(bar_open_times: Any, timeframe: str | pd.Timedelta) -> pd.DatetimeIndex:
    """Every bar open time from the first to the last of ``bar_open_times`` (holes filled).

    Raises:
        ValueError: bar times off the ``timeframe`` spacing of the first bar, or as
            :func:`bar_times`.
    """
    bars = bar_times(bar_open_times)
    step = to_timedelta(timeframe, "timeframe")
    if len(bars) == 0:
        return bars
    grid = pd.date_range(bars[0], bars[-1], freq=step, name=BAR_INDEX).as_unit("ns")
    if not bars.isin(grid).all():
        bad = bars[~bars.isin(grid)][0]
        raise ValueError(f"bar_open_times: {bad} is not on the {timeframe} grid starting at "
                         f"{bars[0]} (rule: on_timeframe_grid)")
    return grid
