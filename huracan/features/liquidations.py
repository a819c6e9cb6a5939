"""Liquidation features: flows of forced orders per bar, cascades, and the price move after large
liquidations.

Events are known at their ``timestamp``; an event at time e belongs to the FIRST bar whose close
>= e (bars own ``(open, close]``, see :func:`huracan.features.asof.assign_to_bars`). Features are
computed on the COMPLETE bar grid from the first to the last bar given (liquidations happen
whether or not a candle was recorded) and then read at the bars given.

``side`` is the liquidated POSITION, as in the brain store: ``long`` (a long was force-sold) or
``short``. Binance forceOrder files give the ORDER side: ``SELL`` -> ``long``, ``BUY`` ->
``short`` (see :mod:`huracan.data.liquidations`). USD size: ``size_usd`` or ``usd_value``, else
``price × quantity``.

Coverage (never a silent zero): a bar with no event is zero only while the collector was running.
The covered period is ``coverage = (start, end)``: by default from the first event on, open ended
(``end=None``: the stream is taken as live after its first event; give ``end`` when the
collector stopped). ``max_silence`` optionally marks a bar uncovered when no event at all was
seen in the ``max_silence`` before its close (a causal guard against a dead collector). A bar is
covered (``liquidations_available`` = 1) when ``open >= start`` and ``close <= end``; a windowed
feature is NaN unless its whole window is covered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from huracan.features.asof import (
    BAR_INDEX,
    bar_times,
    complete_bar_grid,
    to_timedelta,
    utc_times,
)
from huracan.features.derivatives import duration_name

_SIDES = {"long": "long", "short": "short", "sell": "long", "buy": "short"}
EVENT_COLUMNS = ("timestamp", "side", "usd", "count")
_MINUTE = pd.Timedelta(minutes=1)
#: Columns that separate liquidation streams (kept by :func:`normalize_liquidations`).
_KEYS = ("exchange", "symbol")


def _ns(times: Any) -> np.ndarray:
    """UTC times as int64 nanoseconds since the epoch."""
    return np.asarray(pd.DatetimeIndex(times).as_unit("ns").asi8)


def normalize_liquidations(events: pd.DataFrame) -> pd.DataFrame:
    """Events as ``timestamp`` (UTC), ``side`` (long/short: the liquidated position), ``usd``
    (float, USD), ``count`` (events the row stands for: 1, or a bucket's count), plus
    ``exchange``/``symbol`` when given, sorted by time (stable; the original index is kept).

    Args:
        events: ``timestamp``, ``side`` (long/short, or BUY/SELL order side), and ``size_usd``
            or ``usd_value`` or ``price`` and ``quantity``; optional ``count``.

    Raises:
        ValueError: a missing column, naive/missing timestamps, an unknown side (rule:
            known_side), a missing/negative USD size (rule: non_negative_usd).
    """
    if "timestamp" not in events.columns or "side" not in events.columns:
        raise ValueError(f"liquidations: need columns 'timestamp' and 'side'; found "
                         f"{list(events.columns)} (rule: required_columns)")
    ts = utc_times(events["timestamp"], "timestamp")
    raw_side = pd.Series(events["side"].to_numpy(), dtype="object")
    mapping = {u: _SIDES.get(str(u).strip().lower()) for u in pd.unique(raw_side)
               if not pd.isna(u)}
    side = raw_side.map(mapping)  # mapped once per distinct value: fast on millions of rows
    if side.isna().any():
        i = int(np.flatnonzero(side.isna().to_numpy())[0])
        raise ValueError(f"liquidations: column 'side' row {i}: {events['side'].iloc[i]!r} is "
                         "not long/short (position) or BUY/SELL (order side) (rule: known_side)")
    size_col = next((c for c in ("size_usd", "usd_value", "usd") if c in events.columns), None)
    if size_col is not None:
        usd = pd.to_numeric(events[size_col], errors="coerce").astype("float64")
        col = size_col
    elif "price" in events.columns and "quantity" in events.columns:
        usd = (pd.to_numeric(events["price"], errors="coerce")
               * pd.to_numeric(events["quantity"], errors="coerce")).astype("float64")
        col = "price × quantity"
    else:
        raise ValueError("liquidations: need 'size_usd', 'usd_value' or 'price' and 'quantity' "
                         f"columns; found {list(events.columns)} (rule: required_columns)")
    bad = ~(usd >= 0)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(f"liquidations: {col} row {i}: {usd.iloc[i]!r} is missing or negative "
                         "(rule: non_negative_usd)")
    count = (pd.to_numeric(events["count"], errors="coerce").fillna(1).astype("int64")
             if "count" in events.columns else pd.Series(1, index=events.index, dtype="int64"))
    out = pd.DataFrame({"timestamp": ts, "side": side.to_numpy(), "usd": usd.to_numpy(),
                        "count": count.to_numpy()}, index=events.index)
    for col in _KEYS:
        if col in events.columns:
            out[col] = events[col].astype(str).to_numpy()
    return out.sort_values("timestamp", kind="stable")


def minute_aggregates_to_events(aggregates: pd.DataFrame, symbol: str | None = None
                                ) -> pd.DataFrame:
    """Per-minute forced-order aggregates (``liq_buy_usd/liq_sell_usd/liq_buy_count/
    liq_sell_count``, ../shared/data ``liquidations-1min-agg``) as pseudo-events: one ``long``
    row (SELL orders) and one ``short`` row (BUY orders) per non-empty bucket, at the bucket's
    ``timestamp`` (taken as the time the bucket was written, i.e. its known-at), with ``count``.

    Args:
        aggregates: the bucket rows.
        symbol: keep only this ``symbol`` (``BTCUSDT``); all rows when ``None``.

    Returns:
        A frame accepted by :func:`normalize_liquidations` (``timestamp, side, usd, count``).

    Raises:
        ValueError: a missing column (rule: required_columns).
    """
    need = ["timestamp", "liq_buy_usd", "liq_sell_usd", "liq_buy_count", "liq_sell_count"]
    missing = [c for c in need if c not in aggregates.columns]
    if missing:
        raise ValueError(f"liquidation aggregates: missing column(s) {missing} "
                         "(rule: required_columns)")
    agg = aggregates
    if symbol is not None and "symbol" in agg.columns:
        agg = agg.loc[agg["symbol"].astype(str) == symbol]
    parts = []
    for side, usd, cnt in (("long", "liq_sell_usd", "liq_sell_count"),
                           ("short", "liq_buy_usd", "liq_buy_count")):
        rows = agg.loc[agg[cnt] > 0]
        parts.append(pd.DataFrame({"timestamp": rows["timestamp"].to_numpy(), "side": side,
                                   "usd": rows[usd].to_numpy(dtype="float64"),
                                   "count": rows[cnt].to_numpy(dtype="int64")}))
    out = pd.concat(parts, ignore_index=True)
    out["timestamp"] = pd.to_datetime(out["timestamp"], utc=True)
    return out.sort_values("timestamp", kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Cascades
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cascades:
    """Result of :func:`detect_cascades`.

    Attributes:
        events: the normalised events (time order, original index) plus ``trigger`` (bool: the
            trailing window ENDING at this event meets a threshold; known at the event's time,
            hence causal), ``liquidation_type`` (``cascade`` when the event lies in any window
            that meets a threshold, else ``single``; an offline label: the first events of a
            cascade are labelled only once later events arrive) and ``cascade_id`` (-1 for
            single events).
        intervals: one row per cascade: ``cascade_id``, the group keys, ``start`` and ``end``
            (first/last event time), ``detected_at`` (first trigger time), ``n_events``,
            ``usd``, ``long_usd``, ``short_usd``; sorted by start.
    """

    events: pd.DataFrame
    intervals: pd.DataFrame


def _cascade_window(window: str | pd.Timedelta, min_events: int | None,
                    min_usd: float | None) -> pd.Timedelta:
    """:func:`detect_cascades`' window as a Timedelta, its thresholds checked.

    Raises:
        ValueError: both thresholds ``None``, a non-positive threshold or window.
    """
    if min_events is None and min_usd is None:
        raise ValueError("detect_cascades: give min_events and/or min_usd (both are None)")
    if min_events is not None and min_events < 1:
        raise ValueError(f"min_events must be >= 1, got {min_events}")
    if min_usd is not None and not min_usd > 0:
        raise ValueError(f"min_usd must be > 0 USD, got {min_usd}")
    w = to_timedelta(window, "window")
    if w <= pd.Timedelta(0):
        raise ValueError(f"window must be positive, got {window!r}")
    return w


def detect_cascades(
    events: pd.DataFrame,
    window: str | pd.Timedelta = "5min",
    min_events: int | None = 20,
    min_usd: float | None = 250_000.0,
    *,
    by: tuple[str, ...] | None = None,
) -> Cascades:
    """Liquidation cascades: at least ``min_events`` events, or at least ``min_usd`` USD, within
    a time window of ``window``, per stream ``by`` (default: per ``exchange`` and ``symbol`` when
    those columns are given, both sides together: a whipsaw that liquidates longs and then
    shorts is forced flow all the same; ``by=("side",)`` separates the sides).

    For each event i the trailing window is ``(t_i - window, t_i]`` (all events at ``t_i``
    included). The event TRIGGERS when that window's event count (sum of ``count``) >=
    ``min_events`` or its USD sum >= ``min_usd``: the causal label, known at the event's time,
    and the same rule as the store's ``liquidation_type`` (``huracan.data.cascades``:
    trailing ``(t - window, t]``, both sides, per exchange and symbol, 20 events or $250k).
    Every event of a triggering window is a cascade event (``liquidation_type``, offline);
    overlapping triggering windows (sharing an event) merge into one cascade interval. A
    threshold of ``None`` is not used.

    The defaults (5 minutes, 20 events or $250,000) are those of the shared rule; Binance pushes
    at most one liquidation per symbol per second, so counts from its stream are lower bounds
    (see :mod:`huracan.data.liquidations`).

    Args:
        events: see :func:`normalize_liquidations`.
        window: window duration (``5min``).
        min_events: event-count threshold, or ``None``.
        min_usd: USD threshold, or ``None``.
        by: grouping columns of the normalised events (``None``: ``exchange``/``symbol`` when
            present; ``()``: all events together).

    Returns:
        :class:`Cascades`.

    Raises:
        ValueError: both thresholds ``None``, a non-positive threshold or window, or as
            :func:`normalize_liquidations`.
    """
    w = _cascade_window(window, min_events, min_usd)
    ev = normalize_liquidations(events)
    if by is None:
        by = tuple(c for c in _KEYS if c in ev.columns)
    unknown = [c for c in by if c not in ev.columns]
    if unknown:
        raise ValueError(f"detect_cascades: by={by}: unknown column(s) {unknown}")
    n = len(ev)
    trigger = np.zeros(n, dtype=bool)
    label = np.full(n, -1, dtype="int64")
    blocks: list[pd.DataFrame] = []
    times = pd.DatetimeIndex(ev["timestamp"])
    all_ns = _ns(times)
    positions = (ev.groupby(list(by), sort=True).indices if by
                 else {(): np.arange(n)})
    next_id = 0
    for key, pos in positions.items():
        pos = np.sort(pos)  # rows of the group in time order (ev is sorted)
        t = all_ns[pos]
        cnt = np.concatenate([[0], np.cumsum(ev["count"].to_numpy()[pos])])
        usd = np.concatenate([[0.0], np.cumsum(ev["usd"].to_numpy()[pos])])
        longs = np.concatenate([[0.0], np.cumsum(np.where(
            ev["side"].to_numpy()[pos] == "long", ev["usd"].to_numpy()[pos], 0.0))])
        first = np.searchsorted(t, t - w.value, side="right")  # first event in window
        last = np.searchsorted(t, t, side="right") - 1  # last event at the same instant
        n_win = cnt[last + 1] - cnt[first]
        usd_win = usd[last + 1] - usd[first]
        trig = np.zeros(len(pos), dtype=bool)
        if min_events is not None:
            trig |= n_win >= min_events
        if min_usd is not None:
            trig |= usd_win >= min_usd
        trigger[pos] = trig
        idx = np.flatnonzero(trig)
        if len(idx) == 0:
            continue
        starts, ends = first[idx], last[idx]
        reach = np.maximum.accumulate(ends)
        new = np.concatenate([[True], starts[1:] > reach[:-1]])
        heads = np.flatnonzero(new)  # first triggering window of each cascade
        g_start = starts[heads]  # starts are non-decreasing: the head's is the smallest
        g_end = np.maximum.reduceat(ends, heads)
        ids = next_id + np.arange(len(heads))
        inside = np.zeros(len(pos) + 1, dtype="int64")
        np.add.at(inside, g_start, 1)
        np.add.at(inside, g_end + 1, -1)
        marker = np.zeros(len(pos), dtype="int64")
        marker[g_start] = 1
        member = np.cumsum(inside[:-1]) > 0
        label[pos[member]] = next_id + (np.cumsum(marker) - 1)[member]
        keys = key if isinstance(key, tuple) else (key,)
        block = {"cascade_id": ids,
                 **{col: [k] * len(heads) for col, k in zip(by, keys, strict=True)},
                 "start": times[pos[g_start]], "end": times[pos[g_end]],
                 "detected_at": times[pos[idx[heads]]],
                 "n_events": cnt[g_end + 1] - cnt[g_start], "usd": usd[g_end + 1] - usd[g_start],
                 "long_usd": longs[g_end + 1] - longs[g_start],
                 "short_usd": (usd[g_end + 1] - usd[g_start]) - (longs[g_end + 1] - longs[g_start])}
        blocks.append(pd.DataFrame(block))
        next_id += len(heads)
    out = ev.copy()
    out["trigger"] = trigger
    out["liquidation_type"] = np.where(label >= 0, "cascade", "single")
    out["cascade_id"] = label
    cols = ["cascade_id", *by, "start", "end", "detected_at", "n_events", "usd", "long_usd",
            "short_usd"]
    intervals = (pd.concat(blocks, ignore_index=True) if blocks
                 else pd.DataFrame({c: [] for c in cols}))
    intervals = intervals.astype({"cascade_id": "int64", "n_events": "int64", "usd": "float64",
                                  "long_usd": "float64", "short_usd": "float64"})
    intervals = intervals.sort_values(["start", "cascade_id"], kind="stable").reset_index(drop=True)
    return Cascades(out, intervals)


# --------------------------------------------------------------------------------------------
# Bar features
# --------------------------------------------------------------------------------------------

def liquidation_columns(windows: tuple[str, ...] = ("1h", "4h", "24h"),
                        with_post: bool = False) -> list[str]:
    """Feature names of :func:`liquidation_features` (without the flag)."""
    names = [f"liquidation_momentum_{_hours_name(to_timedelta(w, 'windows'))}"
             for w in windows]
    names += ["liquidation_imbalance", "cumulative_liquidation_delta", "liquidation_density",
              "cascade_indicator"]
    return [*names, "post_liquidation_momentum"] if with_post else names


def _hours_name(td: pd.Timedelta) -> str:
    """Window names in hours when whole hours (``24h``, not ``1d``), else :func:`duration_name`."""
    secs = int(td.total_seconds())
    return f"{secs // 3600}h" if secs and secs % 3600 == 0 else duration_name(td)


def _window_sums(times: np.ndarray, cum: np.ndarray, ends: np.ndarray, width: int
                 ) -> np.ndarray:
    """Sum over events in ``(end - width, end]`` for each end (int64 ns; cum has a leading 0)."""
    hi = np.searchsorted(times, ends, side="right")
    lo = np.searchsorted(times, ends - width, side="right")
    return cum[hi] - cum[lo]


def post_liquidation_moves(
    events: pd.DataFrame,
    candles: pd.DataFrame,
    *,
    candle_timeframe: str | pd.Timedelta = "1m",
    after: str | pd.Timedelta = "5min",
    large_usd: float = 100_000.0,
) -> pd.DataFrame:
    """Price move after each large liquidation (``usd >= large_usd``).

    ``move = ln(close[candle holding e + after] / close[candle holding e])`` where the candle
    holding time x is the one with ``open <= x < open + candle_timeframe``. It is known at the
    close of the later candle: ``known_at = floor(e + after) + candle_timeframe``.

    Args:
        events: see :func:`normalize_liquidations`.
        candles: ``timestamp`` (open time, UTC), ``close`` at ``candle_timeframe``.

    Returns:
        Columns ``timestamp`` (event), ``side``, ``usd``, ``move`` (log return, fraction; NaN
        when a candle is missing), ``known_at``; time order.

    Raises:
        ValueError: missing candle columns, non-positive closes, or as
            :func:`normalize_liquidations`.
    """
    ev = normalize_liquidations(events)
    ev = ev.loc[ev["usd"] >= large_usd]
    step = to_timedelta(candle_timeframe, "candle_timeframe")
    lag = to_timedelta(after, "after")
    if "close" not in candles.columns or "timestamp" not in candles.columns:
        raise ValueError("candles: need columns 'timestamp' and 'close' (rule: required_columns)")
    opens = utc_times(candles["timestamp"], "candles.timestamp").asi8
    if len(opens) > 1 and (np.diff(opens) <= 0).any():
        raise ValueError("candles: column 'timestamp' is not strictly increasing "
                         "(rule: increasing_timestamp)")
    close = pd.to_numeric(candles["close"], errors="coerce").to_numpy(dtype="float64")
    if not (close > 0).all():
        raise ValueError("candles: column 'close' has missing or non-positive prices "
                         "(rule: positive_price)")

    def price_at(open_ns: np.ndarray) -> np.ndarray:
        """Close of the candle opening at each time; NaN where that candle is missing."""
        if len(opens) == 0:
            return np.full(len(open_ns), np.nan)
        j = np.minimum(np.searchsorted(opens, open_ns), len(opens) - 1)
        return np.where(opens[j] == open_ns, close[j], np.nan)

    e = _ns(ev["timestamp"])
    t0 = e - np.mod(e, step.value)  # floor to the candle grid (epoch-aligned, like pandas)
    t1 = (e + lag.value) - np.mod(e + lag.value, step.value)
    move = np.log(price_at(t1) / price_at(t0))
    return pd.DataFrame({"timestamp": ev["timestamp"].to_numpy(), "side": ev["side"].to_numpy(),
                         "usd": ev["usd"].to_numpy(), "move": move,
                         "known_at": pd.to_datetime(t1 + step.value, utc=True)})


def _coverage_bounds(coverage: tuple[Any, Any] | None, first_event: int
                     ) -> tuple[int, int | None]:
    """``(start, end)`` of the collector in int64 UTC nanoseconds: ``coverage``'s, else the first
    event (``first_event``, ns) and an open end (``None``).

    Raises:
        ValueError: a naive coverage bound.
    """
    start_ts = (pd.Timestamp(coverage[0]) if coverage is not None and coverage[0] is not None
                else pd.Timestamp(first_event, tz="UTC"))
    end_ts = (pd.Timestamp(coverage[1]) if coverage is not None and coverage[1] is not None
              else None)
    for name, ts in (("coverage start", start_ts), ("coverage end", end_ts)):
        if ts is not None and ts.tzinfo is None:
            raise ValueError(f"{name} {ts} is naive; pass a UTC-aware time")
    return start_ts.value, None if end_ts is None else end_ts.value


@dataclass(frozen=True)
class _Coverage:
    """Which bar windows the collector covered (module docstring).

    Attributes:
        start, end: the collector's coverage, int64 UTC ns (``end`` None: open).
        times: the covered events' times, int64 ns, sorted.
        closes: the bars' close times, int64 ns, ``(n_bars,)``.
        max_silence: see :func:`liquidation_features`.
    """

    start: int
    end: int | None
    times: np.ndarray
    closes: np.ndarray
    max_silence: str | pd.Timedelta | None

    def covered(self, width: int) -> np.ndarray:
        """Per bar, True when the window ``(close - width, close]`` (``width`` in ns) is inside
        the coverage (and, with ``max_silence``, an event was seen in the ``max_silence``
        before the close).

        Raises:
            ValueError: an invalid ``max_silence``.
        """
        closes = self.closes
        ok = closes - width >= self.start
        if self.end is not None:
            ok &= closes <= self.end
        if self.max_silence is not None:
            silence = to_timedelta(self.max_silence, "max_silence").value
            t = self.times
            n_recent = _window_sums(t, np.arange(len(t) + 1, dtype="float64"), closes, silence)
            ok &= n_recent > 0
        return ok


def _post_momentum(ev: pd.DataFrame, candles_1m: pd.DataFrame, closes: np.ndarray,
                   step: pd.Timedelta, post_window: str | pd.Timedelta,
                   post_lookback: str | pd.Timedelta | None, large_usd: float
                   ) -> tuple[np.ndarray, np.ndarray, int]:
    """``(post_liquidation_momentum, candles cover the window, look)`` per bar close
    (``closes``, int64 ns): the mean log move (:func:`post_liquidation_moves` of the events
    ``ev``) whose follow-up window completed in ``(close - look, close]`` (0 when none), and
    whether the 1-minute candles span that window; ``look`` = ``post_lookback`` in ns (default:
    the bar, ``step``).

    Raises:
        ValueError: as :func:`post_liquidation_moves`, or an invalid ``post_lookback``.
    """
    moves = post_liquidation_moves(ev[["timestamp", "side", "usd"]], candles_1m,
                                   after=post_window, large_usd=large_usd)
    moves = moves.loc[moves["move"].notna()].sort_values("known_at", kind="stable")
    k = _ns(moves["known_at"])
    cum_m = np.concatenate([[0.0], np.cumsum(moves["move"].to_numpy())])
    cum_n = np.arange(len(k) + 1, dtype="float64")
    look = step.value if post_lookback is None else to_timedelta(
        post_lookback, "post_lookback").value
    s_m = _window_sums(k, cum_m, closes, look)
    s_n = _window_sums(k, cum_n, closes, look)
    post = np.divide(s_m, s_n, out=np.zeros_like(s_m), where=s_n > 0)
    c_open = utc_times(candles_1m["timestamp"], "candles_1m.timestamp")
    c_ok = ((closes - look >= c_open.min().value)
            & (closes <= (c_open.max() + _MINUTE).value))
    return post, c_ok, look


def liquidation_features(
    events: pd.DataFrame | None,
    bar_open_times: Any,
    timeframe: str | pd.Timedelta,
    *,
    windows: tuple[str, ...] = ("1h", "4h", "24h"),
    imbalance_window: str | pd.Timedelta | None = None,
    density_window: int = 168,
    cascade_window: str | pd.Timedelta = "5min",
    cascade_min_events: int | None = 20,
    cascade_min_usd: float | None = 250_000.0,
    coverage: tuple[Any, Any] | None = None,
    max_silence: str | pd.Timedelta | None = None,
    candles_1m: pd.DataFrame | None = None,
    large_usd: float = 100_000.0,
    post_window: str | pd.Timedelta = "5min",
    post_lookback: str | pd.Timedelta | None = None,
) -> pd.DataFrame:
    """Liquidation features at each bar close ``c`` (USD amounts in USD, not normalised).

    - ``liquidation_momentum_<w>`` for ``w`` in ``windows`` (durations): USD liquidated (both
      sides) in ``(c - w, c]``; NaN unless that window is covered.
    - ``liquidation_imbalance``: ``(L - S) / (L + S)`` of long and short USD in
      ``(c - imbalance_window, c]`` (default: the bar itself), in [-1, 1]; 0 when nothing was
      liquidated (balanced, not missing).
    - ``cumulative_liquidation_delta``: cumulative ``L - S`` USD of all covered events up to
      ``c`` (from the coverage start; depends on where the data starts, like any running sum).
    - ``liquidation_density``: the bar's USD divided by the mean bar USD over the last
      ``density_window`` BARS including this one (range [0, density_window]; 1 = an ordinary
      bar, 0 when the whole window was quiet); NaN until ``density_window`` covered bars.
    - ``cascade_indicator``: 1 when an event of the bar TRIGGERS a cascade
      (:func:`detect_cascades` with ``cascade_window``/``cascade_min_events``/
      ``cascade_min_usd``: the trailing window ending at the event meets a threshold), else 0.
      Causal: a cascade counts in the bar where its threshold is reached (and in every later bar
      where it keeps triggering).
    - ``post_liquidation_momentum`` (only with ``candles_1m``): mean of the log moves
      (:func:`post_liquidation_moves`, ``after=post_window``, events >= ``large_usd``) whose
      follow-up window COMPLETED in ``(c - post_lookback, c]`` (default: the bar); 0 when none
      completed; NaN where the candles or liquidations do not cover the window.
    - ``liquidations_available``: 1 when the bar is covered (module docstring).

    Args:
        events: see :func:`normalize_liquidations`; ``None``/empty: NaN features, flag 0.
        bar_open_times: ``(n_bars,)`` strictly increasing UTC open times on the timeframe grid.
        timeframe: bar duration.
        coverage: ``(start, end)`` of the collector (either may be ``None``: start = first
            event, end = open).
        max_silence: see the module docstring.
        candles_1m: 1-minute candles ``timestamp, close`` (optional).

    Returns:
        ``(n_bars, k)`` frame indexed by bar open time.

    Raises:
        ValueError: invalid events, windows, thresholds or bar times (naming the rule).
    """
    bars = bar_times(bar_open_times)
    names = liquidation_columns(windows, candles_1m is not None)
    if events is None or len(events) == 0:
        out = pd.DataFrame(np.nan, index=bars, columns=names)
        out["liquidations_available"] = 0
        return out
    if density_window < 1:
        raise ValueError(f"density_window must be >= 1 bar, got {density_window}")
    step = to_timedelta(timeframe, "timeframe")
    grid = complete_bar_grid(bars, step)
    opens = grid.asi8
    closes = opens + step.value
    cas = detect_cascades(events, cascade_window, cascade_min_events, cascade_min_usd)
    ev = cas.events
    t = _ns(ev["timestamp"])
    start, end = _coverage_bounds(coverage, t[0])
    inside = t >= start
    if end is not None:
        inside &= t <= end
    t, ev = t[inside], ev.loc[inside]
    usd = ev["usd"].to_numpy(dtype="float64")
    is_long = (ev["side"] == "long").to_numpy()
    long_usd, short_usd = np.where(is_long, usd, 0.0), np.where(is_long, 0.0, usd)
    cum_all = np.concatenate([[0.0], np.cumsum(usd)])
    cum_long = np.concatenate([[0.0], np.cumsum(long_usd)])
    cum_short = np.concatenate([[0.0], np.cumsum(short_usd)])
    cum_trig = np.concatenate([[0], np.cumsum(ev["trigger"].to_numpy(dtype="int64"))])

    covered = _Coverage(start, end, t, closes, max_silence).covered
    bar_ok = covered(step.value)
    out = pd.DataFrame(index=grid)
    for name, w in zip(names, windows, strict=False):
        width = to_timedelta(w, "windows").value
        vals = _window_sums(t, cum_all, closes, width)
        out[name] = np.where(covered(width) & bar_ok, vals, np.nan)
    imb_w = step.value if imbalance_window is None else to_timedelta(
        imbalance_window, "imbalance_window").value
    lo = _window_sums(t, cum_long, closes, imb_w)
    sh = _window_sums(t, cum_short, closes, imb_w)
    tot = lo + sh
    imbalance = np.divide(lo - sh, tot, out=np.zeros_like(tot), where=tot > 0)
    out["liquidation_imbalance"] = np.where(covered(imb_w) & bar_ok, imbalance, np.nan)
    hi = np.searchsorted(t, closes, side="right")
    out["cumulative_liquidation_delta"] = np.where(bar_ok, cum_long[hi] - cum_short[hi], np.nan)
    per_bar = pd.Series(np.where(bar_ok, _window_sums(t, cum_all, closes, step.value), np.nan))
    mean = per_bar.rolling(density_window, min_periods=density_window).mean().to_numpy()
    dens = np.divide(per_bar.to_numpy(), mean, out=np.zeros_like(mean), where=mean > 0)
    out["liquidation_density"] = np.where(np.isnan(mean), np.nan, dens)
    trig = _window_sums(t, cum_trig.astype("float64"), closes, step.value)
    out["cascade_indicator"] = np.where(bar_ok, (trig > 0).astype("float64"), np.nan)
    if candles_1m is not None:
        post, c_ok, look = _post_momentum(ev, candles_1m, closes, step, post_window,
                                          post_lookback, large_usd)
        out["post_liquidation_momentum"] = np.where(covered(look) & bar_ok & c_ok, post, np.nan)
    out["liquidations_available"] = bar_ok.astype("int8")
    out = out.reindex(bars)
    out.index.name = BAR_INDEX
    return out
