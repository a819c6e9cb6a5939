"""Derivatives features: funding, perpetual basis and open interest, joined as of the bar close.

Every feature is causal: the value at bar t (indexed by its open time, computed at its close
``c = open + timeframe``) uses only source rows known at or before ``c`` (see
:mod:`huracan.features.asof` for the known-at of each source). Settlement-level statistics
(changes, z-scores, intervals) are computed on the settlement series itself, each settlement
using only itself and earlier settlements, and then joined as of the bar close.

Units: funding rates are fractions per funding interval (0.0001 = 0.01 % per 8 h); carry is a
fraction per year (365-day year: crypto trades 24/7); basis is a fraction (mark / spot - 1);
open-interest changes are natural-log changes; z-scores are unitless (sample std, ddof=1).
Windows named in bars are bars; windows named ``1d``/``7d``/``30d`` are durations.

Each function returns a frame indexed by the bar open times (index name ``timestamp``) with its
feature columns and one availability flag (``funding_available``, ``basis_available``,
``open_interest_available``: 1 when the family's base value is fresh at the bar, else 0; the
features are NaN there, never zero). See :mod:`huracan.features.families` for the policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from huracan.data.ohlcv import infer_timeframe
from huracan.features.asof import (
    KNOWN_AT,
    asof_join,
    bar_times,
    candle_known_at,
    complete_bar_grid,
    funding_known_at,
    open_interest_known_at,
    to_timedelta,
    utc_times,
)

YEAR = pd.Timedelta(days=365)
#: A funding rate beyond ±10 % per interval is refused (as in huracan.data.ingest): it catches
#: percent-vs-fraction mix-ups.
MAX_ABS_FUNDING_RATE = 0.1
#: A z-score denominator below this is treated as zero (constant window): z = 0.
_ZERO_STD = 1e-12


def duration_name(td: pd.Timedelta) -> str:
    """Compact name of a duration for column names: 1 day -> ``1d``, 4 hours -> ``4h``,
    5 minutes -> ``5m``, 90 seconds -> ``90s``."""
    secs = int(td.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs and secs % size == 0:
            return f"{secs // size}{unit}"
    return f"{secs}s"


def infer_interval(times: Any, lookback: int = 9) -> pd.Series:
    """Causal spacing of an irregular series (e.g. funding settlements): at row i, the median of
    the last ``lookback`` spacings ending at i, rounded to the minute (removes the exchange's
    millisecond jitter). Exchanges change intervals (Binance moved some contracts from 8 h to
    4 h), so no global constant is assumed.

    Args:
        times: ``(n,)`` sorted UTC-aware times.
        lookback: number of spacings in the median (>= 1).

    Returns:
        ``(n,)`` Timedelta Series (positional index); NaT at row 0 (no spacing yet).

    Raises:
        ValueError: ``lookback < 1``, unsorted or naive times.
    """
    if lookback < 1:
        raise ValueError(f"lookback must be >= 1 spacing, got {lookback}")
    ts = utc_times(times, "times")
    if len(ts) > 1 and (np.diff(ts.asi8) < 0).any():
        raise ValueError("times: not sorted in time (rule: increasing_timestamp)")
    gaps = pd.Series(ts.asi8, dtype="float64").diff()
    med = gaps.rolling(lookback, min_periods=1).median()
    minute = 60e9
    rounded = (med / minute).round() * minute
    return pd.to_timedelta(rounded, unit="ns")


def time_zscore(values: pd.Series, times: Any, window: pd.Timedelta, interval: pd.Series,
                min_share: float = 0.8) -> pd.Series:
    """Z-score of each value against the values in the trailing time window ``(t - window, t]``
    (itself included; mean and sample std, ddof=1).

    A window is valid when it holds at least ``min_share`` of the observations expected from the
    row's inferred ``interval`` (``window / interval``); a constant window (std < 1e-12) gives
    z = 0 (the value equals its mean) rather than a division by zero.

    Returns:
        ``(n,)`` float Series aligned with ``values`` (NaN when not valid).
    """
    ts = utc_times(times, "times")
    s = pd.Series(values.to_numpy(dtype="float64"), index=ts)
    roll = s.rolling(window)
    mean, std, count = roll.mean(), roll.std(), roll.count()
    expected = window / pd.to_timedelta(interval.to_numpy())
    valid = (count.to_numpy() >= min_share * np.asarray(expected, dtype="float64"))
    z = (s - mean) / std
    z = z.where(~(std.to_numpy() < _ZERO_STD), 0.0)
    z = z.where(valid & std.notna().to_numpy())
    return pd.Series(z.to_numpy(), index=values.index)


def _nan_frame(bars: pd.DatetimeIndex, columns: Sequence[str], flag: str) -> pd.DataFrame:
    out = pd.DataFrame(np.nan, index=bars, columns=list(columns))
    out[flag] = 0
    return out


def _numeric(frame: pd.DataFrame, column: str, what: str) -> pd.Series:
    if column not in frame.columns:
        raise ValueError(f"{what}: missing column {column!r}; found {list(frame.columns)} "
                         "(rule: required_columns)")
    vals = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    bad = vals.isna() | ~np.isfinite(vals)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(f"{what}: column {column!r} row {i}: value {frame[column].iloc[i]!r} "
                         "is missing or not a finite number (rule: not_null)")
    return vals


# --------------------------------------------------------------------------------------------
# Funding
# --------------------------------------------------------------------------------------------

def funding_columns(change_settlements: int = 3, z_window: str | pd.Timedelta = "30D",
                    spread: bool = False) -> list[str]:
    """Feature names of :func:`funding_features` (without the flag)."""
    zname = duration_name(to_timedelta(z_window, "z_window"))
    cols = ["funding_rate", f"funding_rate_chg_{change_settlements}",
            f"funding_rate_z_{zname}", "funding_carry_annual"]
    return [*cols, "funding_spread_annual"] if spread else cols


def settlement_table(funding: pd.DataFrame, *, change_settlements: int = 3,
                     z_window: str | pd.Timedelta = "30D", z_min_share: float = 0.8,
                     max_age_settlements: float = 2.0, delay: pd.Timedelta | str = "0s",
                     interval_lookback: int = 9) -> pd.DataFrame:
    """Per-settlement funding statistics (each row uses itself and earlier settlements of the
    same exchange only).

    Args:
        funding: ``timestamp`` (settlement time, UTC), ``funding_rate`` (fraction per
            interval), optional ``exchange`` and ``known_at`` columns.
        change_settlements: ``chg`` = rate - rate ``change_settlements`` settlements earlier.
        z_window: trailing duration of the z-score.
        z_min_share: see :func:`time_zscore`.
        max_age_settlements: a rate is stale after this many inferred intervals.
        delay: added to ``timestamp`` for the known-at time (when no ``known_at`` column).
        interval_lookback: spacings in the interval median (:func:`infer_interval`).

    Returns:
        One row per settlement: ``exchange, known_at, funding_rate, interval, chg, z, carry,
        max_age``; ``carry`` = rate × (365 days / interval) (simple, not compounded). An
        exchange's first settlement has no spacing yet (``interval``/``max_age`` NaT): it gets
        no staleness limit and is therefore never joined (treated as stale).

    Raises:
        ValueError: a missing column, naive/missing times, a non-finite rate, ``|rate| > 0.1``
            (rule: rate_out_of_range: rates are fractions), or two settlements of one exchange at
            the same time (rule: unique_settlement).
    """
    if change_settlements < 1:
        raise ValueError(f"change_settlements must be >= 1, got {change_settlements}")
    window = to_timedelta(z_window, "z_window")
    table = funding_known_at(funding, delay)
    rate = _numeric(table, "funding_rate", "funding")
    big = rate.abs() > MAX_ABS_FUNDING_RATE
    if big.any():
        i = int(np.flatnonzero(big.to_numpy())[0])
        raise ValueError(f"funding: column 'funding_rate' row {i}: |{rate.iloc[i]}| > "
                         f"{MAX_ABS_FUNDING_RATE} per interval; rates are fractions "
                         "(0.0001 = 0.01 %) (rule: rate_out_of_range)")
    ex = (table["exchange"].astype(str).str.lower() if "exchange" in table.columns
          else pd.Series("default", index=table.index))
    base = pd.DataFrame({"exchange": ex.to_numpy(), KNOWN_AT: table[KNOWN_AT].to_numpy(),
                         "funding_rate": rate.to_numpy()})
    base = base.sort_values(["exchange", KNOWN_AT], kind="stable").reset_index(drop=True)
    dup = base.duplicated(["exchange", KNOWN_AT])
    if dup.any():
        r = base.loc[dup.to_numpy()].iloc[0]
        raise ValueError(f"funding: two settlements of exchange {r['exchange']!r} at "
                         f"{r[KNOWN_AT]} (rule: unique_settlement)")
    parts = []
    for _, g in base.groupby("exchange", sort=True):
        g = g.reset_index(drop=True)
        interval = infer_interval(g[KNOWN_AT], interval_lookback)
        s = g["funding_rate"]
        g["interval"] = interval.to_numpy()
        g["chg"] = s - s.shift(change_settlements)
        g["z"] = time_zscore(s, g[KNOWN_AT], window, interval, z_min_share).to_numpy()
        g["carry"] = s * (YEAR / pd.to_timedelta(g["interval"]))
        g["max_age"] = pd.to_timedelta(g["interval"]) * max_age_settlements
        parts.append(g)
    cols = ["exchange", KNOWN_AT, "funding_rate", "interval", "chg", "z", "carry", "max_age"]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in cols})
    return pd.concat(parts, ignore_index=True)[cols]


def funding_features(
    funding: pd.DataFrame | None,
    bar_open_times: Any,
    timeframe: str | pd.Timedelta,
    *,
    change_settlements: int = 3,
    z_window: str | pd.Timedelta = "30D",
    z_min_share: float = 0.8,
    max_age_settlements: float = 2.0,
    primary_exchange: str | None = None,
    spread: bool | None = None,
    delay: pd.Timedelta | str = "0s",
) -> pd.DataFrame:
    """Funding-rate features at each bar close.

    Columns (``n`` = ``change_settlements``, ``W`` = ``z_window``; all from the primary
    exchange's latest settlement known at the close, NaN when older than
    ``max_age_settlements`` inferred intervals):

    - ``funding_rate``: the settled rate, fraction per funding interval.
    - ``funding_rate_chg_<n>``: rate minus the rate ``n`` settlements earlier (fraction).
    - ``funding_rate_z_<W>``: z-score of the rate against the settlements of the trailing
      ``W`` (30 days by default), see :func:`time_zscore`.
    - ``funding_carry_annual``: rate × settlements per year (365 days / the interval inferred
      causally from the settlement spacing, :func:`infer_interval`); fraction per year, simple
      (not compounded) - the annualised cost of holding a long perpetual.
    - ``funding_spread_annual`` (when two or more exchanges are given, or ``spread=True``):
      max - min of the exchanges' fresh annualised carries (fraction per year; annualised so
      that exchanges with different intervals compare); NaN with fewer than two fresh rates.
    - ``funding_available``: 1 when ``funding_rate`` is fresh, else 0.

    Args:
        funding: settlements (``timestamp, funding_rate``, optional ``exchange``/``known_at``);
            ``None`` or empty gives NaN features and flag 0.
        bar_open_times: ``(n_bars,)`` strictly increasing UTC open times.
        timeframe: bar duration.
        primary_exchange: exchange of the single-exchange columns; default ``binance`` when
            present, else the first exchange in alphabetical order.
        spread: force the spread column on/off (default: on with >= 2 exchanges).
        delay: extra known-at delay added to each settlement time.
        Others: see :func:`settlement_table`.

    Returns:
        ``(n_bars, k)`` frame indexed by bar open time.

    Raises:
        ValueError: as :func:`settlement_table`; an unknown ``primary_exchange``.
    """
    bars = bar_times(bar_open_times)
    empty = funding is None or len(funding) == 0
    table = None if empty else settlement_table(
        funding, change_settlements=change_settlements, z_window=z_window,
        z_min_share=z_min_share, max_age_settlements=max_age_settlements, delay=delay)
    exchanges = [] if table is None else sorted(table["exchange"].unique())
    with_spread = len(exchanges) >= 2 if spread is None else spread
    names = funding_columns(change_settlements, z_window, with_spread)
    if table is None:
        return _nan_frame(bars, names, "funding_available")
    if primary_exchange is None:
        primary = "binance" if "binance" in exchanges else exchanges[0]
    elif primary_exchange.lower() in exchanges:
        primary = primary_exchange.lower()
    else:
        raise ValueError(f"primary_exchange {primary_exchange!r} not in the funding data's "
                         f"exchanges {exchanges} (rule: known_exchange)")
    stats = ["funding_rate", "chg", "z", "carry"]
    joined = {ex: asof_join(bars, timeframe, g, stats, "max_age")
              for ex, g in table.groupby("exchange", sort=True)}
    main = joined[primary]
    out = pd.DataFrame(index=bars)
    for name, col in zip(names[:4], stats, strict=True):
        out[name] = main[col].to_numpy(dtype="float64")
    if with_spread:
        carries = pd.DataFrame({ex: j["carry"].to_numpy(dtype="float64")
                                for ex, j in joined.items()}, index=bars)
        n_fresh = carries.notna().sum(axis=1)
        out["funding_spread_annual"] = (carries.max(axis=1) - carries.min(axis=1)).where(
            n_fresh >= 2)
    out["funding_available"] = out["funding_rate"].notna().astype("int8")
    return out


# --------------------------------------------------------------------------------------------
# Basis
# --------------------------------------------------------------------------------------------

def _closes(bars_close: pd.Series, what: str = "bars_close") -> pd.Series:
    if not isinstance(bars_close, pd.Series):
        raise ValueError(f"{what}: expected a Series of closes indexed by bar open time")
    idx = bar_times(bars_close.index, f"{what}.index")
    vals = pd.to_numeric(bars_close, errors="coerce").astype("float64").to_numpy()
    bad = ~(vals > 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{what}: row {i} ({idx[i]}): close {bars_close.iloc[i]!r} is not a "
                         "positive number (rule: positive_price)")
    return pd.Series(vals, index=idx)


def _value_at(series: pd.Series, timeframe: str | pd.Timedelta, instants: pd.DatetimeIndex,
              max_age: pd.Timedelta | str | None = "0s") -> np.ndarray:
    """Value of a bar series (indexed by open time, known at the close) at given instants: the
    bar closing at or before each instant (no older than ``max_age``)."""
    step = to_timedelta(timeframe, "timeframe")
    frame = pd.DataFrame({KNOWN_AT: series.index + step, "v": series.to_numpy()})
    # asof_join joins at open + step; shift the instants back by one step to join at them
    got = asof_join(instants - step, step, frame, ["v"], max_age)
    return got["v"].to_numpy(dtype="float64")


def basis_features(
    mark: pd.DataFrame | None,
    bars_close: pd.Series,
    timeframe: str | pd.Timedelta,
    *,
    mark_timeframe: str | pd.Timedelta | None = None,
    change_bars: int = 24,
    max_age: pd.Timedelta | str = "0s",
) -> pd.DataFrame:
    """Perpetual basis: mark-price close vs spot close at each bar close.

    - ``basis``: ``mark_close / spot_close - 1`` (fraction; positive = perpetual at a premium).
      The mark candle must close at the spot bar's close (``max_age`` 0 by default: no
      comparison of prices taken at different times).
    - ``basis_chg_<change_bars>``: basis minus the basis ``change_bars`` BARS earlier on the
      complete bar grid (NaN when that bar is missing: nothing across a hole).
    - ``basis_available``: 1 when ``basis`` is defined.

    Args:
        mark: mark-price candles ``timestamp`` (open time, UTC), ``close``; known at their
            close (open + ``mark_timeframe``). ``None``/empty: NaN features, flag 0.
        bars_close: ``(n_bars,)`` spot closes indexed by strictly increasing bar open times.
        timeframe: spot bar duration.
        mark_timeframe: mark candle duration (default: inferred from the mark timestamps, the
            most common spacing; a wrong duration would misstate the known-at).
        change_bars: lag of the change, in bars.
        max_age: tolerated age of the mark close at the spot close.

    Returns:
        ``(n_bars, 3)`` frame indexed by bar open time.

    Raises:
        ValueError: missing ``close``/``timestamp``, non-positive prices, naive times,
            ``change_bars < 1``.
    """
    if change_bars < 1:
        raise ValueError(f"change_bars must be >= 1 bar, got {change_bars}")
    spot = _closes(bars_close)
    bars = pd.DatetimeIndex(spot.index)
    names = ["basis", f"basis_chg_{change_bars}"]
    if mark is None or len(mark) == 0:
        return _nan_frame(bars, names, "basis_available")
    mark_close = _numeric(mark, "close", "mark")
    if (mark_close <= 0).any():
        i = int(np.flatnonzero((mark_close <= 0).to_numpy())[0])
        raise ValueError(f"mark: column 'close' row {i}: {mark_close.iloc[i]} <= 0 "
                         "(rule: positive_price)")
    if mark_timeframe is None:
        if len(mark) < 2:
            raise ValueError("mark: cannot infer the candle timeframe from fewer than two "
                             "candles; pass mark_timeframe")
        mark_timeframe = infer_timeframe(pd.Series(utc_times(mark["timestamp"],
                                                             "mark.timestamp")))
    table = candle_known_at(mark.assign(close=mark_close), mark_timeframe)
    joined = asof_join(bars, timeframe, table, ["close"], max_age)
    basis = pd.Series(joined["close"].to_numpy() / spot.to_numpy() - 1.0, index=bars)
    grid = complete_bar_grid(bars, timeframe)
    on_grid = basis.reindex(grid)
    chg = (on_grid - on_grid.shift(change_bars)).reindex(bars)
    out = pd.DataFrame({names[0]: basis.to_numpy(), names[1]: chg.to_numpy()}, index=bars)
    out["basis_available"] = out["basis"].notna().astype("int8")
    return out


# --------------------------------------------------------------------------------------------
# Open interest
# --------------------------------------------------------------------------------------------

def open_interest_columns(changes: Sequence[str | pd.Timedelta] = ("1D", "7D"),
                          z_window: str | pd.Timedelta = "30D") -> list[str]:
    """Feature names of :func:`open_interest_features` (without the flag)."""
    tds = [to_timedelta(h, "changes") for h in changes]
    z = duration_name(to_timedelta(z_window, "z_window"))
    return ([f"oi_logchg_{duration_name(td)}" for td in tds]
            + [f"oi_z_{z}", f"oi_price_agreement_{duration_name(tds[0])}"])


def open_interest_features(
    open_interest: pd.DataFrame | None,
    bars_close: pd.Series,
    timeframe: str | pd.Timedelta,
    *,
    value_column: str | None = None,
    exchange: str | None = None,
    changes: Sequence[str | pd.Timedelta] = ("1D", "7D"),
    z_window: str | pd.Timedelta = "30D",
    z_min_share: float = 0.8,
    max_age_intervals: float = 2.0,
    delay: pd.Timedelta | str = "0s",
) -> pd.DataFrame:
    """Open-interest features at each bar close.

    ``OI(x)`` = the latest snapshot known at instant ``x`` (stale after ``max_age_intervals``
    inferred snapshot spacings, :func:`infer_interval`; the first snapshot, with no spacing yet,
    is never used). With ``c`` the bar close:

    - ``oi_logchg_<h>`` for each ``h`` in ``changes`` (durations, default 1 and 7 days):
      ``ln(OI(c) / OI(c - h))``.
    - ``oi_z_<W>``: z-score of ln OI against the snapshots of the trailing ``W`` (30 days),
      computed on the snapshot series (:func:`time_zscore`), joined as of ``c``.
    - ``oi_price_agreement_<h1>`` (``h1`` = first of ``changes``): ``sign(oi_logchg_h1) ×
      sign(ln(P(c) / P(c - h1)))`` with ``P`` the spot close of the bar closing exactly then:
      +1 when open interest and price move the same way (new positions behind the move: longs
      opening into a rise, shorts into a fall), -1 when they diverge (positions closing: short
      covering in a rise, long liquidation/capitulation in a fall), 0 when either is unchanged.
      The sign product is used instead of a ratio, which explodes when the price barely moves.
    - ``open_interest_available``: 1 when ``OI(c)`` is fresh.

    Args:
        open_interest: snapshots ``timestamp`` (UTC) and ``open_interest_usd`` and/or
            ``open_interest`` (contracts), optional ``exchange``/``known_at``. ``None``/empty:
            NaN features, flag 0.
        bars_close: ``(n_bars,)`` spot closes indexed by strictly increasing bar open times.
        timeframe: bar duration.
        value_column: the OI column; default ``open_interest_usd`` when it has any value, else
            ``open_interest`` (USD OI also moves with price; contracts do not).
        exchange: keep this exchange's rows (required when the frame holds several).
        delay: known-at delay added to ``timestamp`` (when no ``known_at`` column).

    Returns:
        ``(n_bars, len(changes) + 3)`` frame indexed by bar open time.

    Raises:
        ValueError: missing/invalid columns, a non-positive OI, several exchanges without
            ``exchange``, duplicate snapshot times (rule: unique_snapshot).
    """
    spot = _closes(bars_close)
    bars = pd.DatetimeIndex(spot.index)
    names = open_interest_columns(changes, z_window)
    tds = [to_timedelta(h, "changes") for h in changes]
    if open_interest is None or len(open_interest) == 0:
        return _nan_frame(bars, names, "open_interest_available")
    oi = open_interest
    if "exchange" in oi.columns:
        exs = sorted(oi["exchange"].astype(str).str.lower().unique())
        if exchange is not None:
            oi = oi.loc[oi["exchange"].astype(str).str.lower() == exchange.lower()]
        elif len(exs) > 1:
            raise ValueError(f"open_interest: rows of several exchanges {exs}; pass exchange= "
                             "(rule: one_exchange)")
    if value_column is None:
        has_usd = "open_interest_usd" in oi.columns and oi["open_interest_usd"].notna().any()
        value_column = "open_interest_usd" if has_usd else "open_interest"
    table = open_interest_known_at(oi, delay)
    table = table.assign(_v=_numeric(table, value_column, "open_interest"))
    if (table["_v"] <= 0).any():
        i = int(np.flatnonzero((table["_v"] <= 0).to_numpy())[0])
        raise ValueError(f"open_interest: column {value_column!r} row {i}: "
                         f"{table['_v'].iloc[i]} <= 0 (rule: positive_open_interest)")
    table = table.sort_values(KNOWN_AT, kind="stable").reset_index(drop=True)
    if table[KNOWN_AT].duplicated().any():
        t = table.loc[table[KNOWN_AT].duplicated(), KNOWN_AT].iloc[0]
        raise ValueError(f"open_interest: two snapshots known at {t} (rule: unique_snapshot)")
    interval = infer_interval(table[KNOWN_AT])
    table["_log"] = np.log(table["_v"])
    table["_z"] = time_zscore(table["_log"], table[KNOWN_AT], to_timedelta(z_window, "z_window"),
                              interval, z_min_share).to_numpy()
    table["_max_age"] = pd.to_timedelta(interval.to_numpy()) * max_age_intervals
    now = asof_join(bars, timeframe, table, ["_log", "_z"], "_max_age")
    out = pd.DataFrame(index=bars)
    for name, td in zip(names[: len(tds)], tds, strict=True):
        then = asof_join(bars - td, timeframe, table, ["_log"], "_max_age")
        out[name] = now["_log"].to_numpy() - then["_log"].to_numpy()
    out[names[len(tds)]] = now["_z"].to_numpy()
    step = to_timedelta(timeframe, "timeframe")
    p_now = spot.to_numpy()
    p_then = _value_at(spot, step, bars + step - tds[0])
    price_chg = np.log(p_now / p_then)
    oi_chg = out[names[0]].to_numpy()
    agree = np.sign(oi_chg) * np.sign(price_chg)
    out[names[-1]] = agree  # NaN when either side is NaN
    out["open_interest_available"] = pd.Series(now["_log"].notna().to_numpy(),
                                               index=bars).astype("int8")
    return out


def annualisation_factor(interval: pd.Timedelta) -> float:
    """Settlements per 365-day year for a funding ``interval`` (1,095 for 8 h)."""
    if interval <= pd.Timedelta(0):
        raise ValueError(f"interval must be positive, got {interval}")
    return YEAR / interval

