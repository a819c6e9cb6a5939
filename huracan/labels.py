"""Labels and sample weights after Lopez de Prado (2018), *Advances in Financial Machine Learning*
(AFML), ch. 2-4: forward returns, the CUSUM event filter, triple-barrier labels and meta-labels,
label uniqueness and return-attribution weights, and a one-position-at-a-time backtest that exits
at the same barriers the labels were built with.

Conventions (shared by every function):

* Bars: a Series indexed by bar open time (UTC), strictly increasing, one bar per row. Callers pass
  ONE GAP-FREE SEGMENT at a time (as :func:`huracan.features.build.build_features` does), so that
  "k bars later" is row ``t + k``; only strict monotonicity is validated (a regular time spacing is
  not required, so volume or dollar bars work too, but a missing bar inside a segment would
  silently stretch every horizon across it).
* Units: prices in quote currency; returns, volatilities and barrier widths are FRACTIONS
  (0.01 = 1 %), never percent; horizons and holding periods are in BARS.
* ``end_time`` of a label = the index label (open time) of the bar whose close, high or low
  decides the label. The label is known at the CLOSE of that bar, and it reads the returns of bars
  ``(event_time, end_time]`` (entry at the close of the event bar).
* Causality: labels look forward by design (they are targets, never features). The volatility
  (:func:`barrier_volatility`), the barrier widths and the CUSUM events at bar t use data up to and
  including bar t's close only. Purge/embargo at least ``max_holding`` bars between splits
  (:mod:`huracan.splits`).

Data gaps and the end of the data (real exchange data has outages: BTC/USDT 1h 2018-2024 has 27,
the longest 34 h). A label whose vertical barrier (``t0 + max_holding`` bars; ``t0 + h`` for the
forward return) is not a bar of its gap-free segment, because a gap or the end of the data comes
first, is DROPPED: its outcome is not known. It is never truncated at the last bar before the gap
(that would be a shorter-horizon label of another kind, and a real position would have stayed
open across the outage) and never bridged to the first bar after it (that would read returns over
the missing bars; AFML's calendar-time vertical barrier, found with ``searchsorted``, would land
there). This follows AFML ch. 3: snippet 3.4 gives an event whose vertical barrier lies
beyond the data no barrier (``NaT``), snippet 3.2 scans its path only to the last close, and
snippet 3.5 (``getBins``) drops the events left without an end time. One deliberate difference:
AFML keeps such an event when a horizontal barrier was touched before the data stopped; here it
is dropped too, so the dropped rows depend only on where the gap is, never on the outcome (keeping
the touched ones would over-represent +1/-1 labels just before every gap). The feature builder
counts the rows dropped for a gap and for the data end (:attr:`huracan.features.build.FeatureSet.
unlabelled`; the job logs them and records the MLflow metrics ``labels/dropped_gap`` and
``labels/dropped_end_of_data``). Sample weights (AFML ch. 4) are computed on the bars of the
time grid: a dropped row's bars still count in the spans of the labels that read them.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

# Barrier codes of the shared first-touch kernel and their names in the outputs.
_UPPER, _LOWER, _VERTICAL, _END = 1, 2, 3, 4
_BARRIER_NAMES = {_UPPER: "upper", _LOWER: "lower", _VERTICAL: "vertical", _END: "end_of_data"}

LABEL_COLUMNS = ["label", "ret", "end_time", "barrier", "holding_bars", "tie"]
TRADE_COLUMNS = [
    "entry_time", "exit_time", "side", "entry_price", "exit_price", "barrier", "holding_bars",
    "gross_return", "tie",
]


# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------


def _check_index(index: pd.Index, name: str) -> None:
    if not (index.is_monotonic_increasing and index.is_unique):
        raise ValueError(f"{name} index must be strictly increasing (one gap-free segment)")


def _check_close(close: pd.Series) -> np.ndarray:
    if not isinstance(close, pd.Series):
        raise ValueError("close must be a pandas Series indexed by bar time")
    _check_index(close.index, "close")
    c = close.to_numpy(np.float64)
    if np.isnan(c).any():
        raise ValueError(
            f"close contains {int(np.isnan(c).sum())} NaN value(s); pass one gap-free segment"
        )
    if not np.isfinite(c).all() or (c <= 0).any():
        raise ValueError("close must be finite and > 0")
    return c


def _aligned(series: pd.Series, close: pd.Series, name: str) -> np.ndarray:
    if not isinstance(series, pd.Series) or not series.index.equals(close.index):
        raise ValueError(f"{name} must be a Series with exactly the index of close (misaligned)")
    return series.to_numpy(np.float64)


def _check_high_low(
    close: pd.Series, c: np.ndarray, high: pd.Series | None, low: pd.Series | None
) -> tuple[np.ndarray, np.ndarray]:
    if high is None and low is None:
        return c, c
    if high is None or low is None:
        raise ValueError("pass both high and low, or neither (close-only touches)")
    h = _aligned(high, close, "high")
    lo = _aligned(low, close, "low")
    if np.isnan(h).any() or np.isnan(lo).any():
        raise ValueError("high/low contain NaN; pass one gap-free segment")
    if (lo > c).any() or (h < c).any():
        raise ValueError("inconsistent bars: need low <= close <= high on every bar")
    return h, lo


def _check_barrier_params(pt_mult: float, sl_mult: float, max_holding: int) -> None:
    if not (np.isfinite(pt_mult) and pt_mult > 0) or not (np.isfinite(sl_mult) and sl_mult > 0):
        raise ValueError(f"pt_mult and sl_mult must be > 0, got {pt_mult} and {sl_mult}")
    if int(max_holding) != max_holding or max_holding < 1:
        raise ValueError(f"max_holding must be an integer >= 1 bar, got {max_holding}")


def _volatility_array(volatility: pd.Series | float, close: pd.Series) -> np.ndarray:
    if isinstance(volatility, pd.Series):
        v = _aligned(volatility, close, "volatility")
    else:
        v = np.full(len(close), float(volatility))
    if (v < 0).any() or np.isinf(v).any():
        raise ValueError("volatility must be finite and >= 0 (NaN = unknown, event dropped)")
    return v


def _side_array(side: pd.Series | int | None, close: pd.Series) -> np.ndarray:
    """Side per bar: +1 long, -1 short, 0 = no bet (NaN counts as no bet)."""
    if side is None:
        return np.ones(len(close))
    if isinstance(side, pd.Series):
        if not side.index.is_unique:
            raise ValueError("side index must be unique")
        s = side.reindex(close.index).to_numpy(np.float64)
        s = np.where(np.isnan(s), 0.0, s)
    else:
        s = np.full(len(close), float(side))
    if not np.isin(s, (-1.0, 0.0, 1.0)).all():
        raise ValueError("side must hold +1 (long), -1 (short) or 0/NaN (no bet)")
    return s


def _event_positions(events: pd.Index | None, index: pd.Index) -> np.ndarray:
    if events is None:
        return np.arange(len(index))
    ev = pd.Index(events)
    if not ev.is_unique:
        raise ValueError("events contain duplicate timestamps")
    pos = index.get_indexer(ev)
    if (pos < 0).any():
        raise ValueError(f"event {ev[pos < 0][0]!r} is not a bar of close (misaligned events)")
    return np.sort(pos)


# --------------------------------------------------------------------------------------------
# forward return
# --------------------------------------------------------------------------------------------


def forward_return_label(close: pd.Series, horizon: int) -> pd.DataFrame:
    """Today's label: the simple forward return over ``horizon`` bars and where it ends.

    ``label_t = close_{t+h} / close_t - 1`` (fraction), ``end_time_t`` = index of bar ``t + h``
    (the bar whose close the label reads; known at that bar's close). Same label as
    :func:`huracan.features.build.build_features`.

    Args:
        close: closes of one gap-free segment, shape ``(n,)``, strictly increasing index.
        horizon: ``h`` in bars, >= 1.

    Returns:
        DataFrame indexed like ``close`` with columns ``label`` (float) and ``end_time``; the last
        ``h`` rows have no future close yet: ``label`` NaN, ``end_time`` NaT.

    Raises:
        ValueError: ``horizon < 1``; NaN, non-positive close or a non-increasing index.

    Causality: looks ``h`` bars forward by design (a target, never a feature).
    """
    if int(horizon) != horizon or horizon < 1:
        raise ValueError(f"horizon must be an integer >= 1 bar, got {horizon}")
    _check_close(close)
    h = int(horizon)
    return pd.DataFrame(
        {
            "label": close.shift(-h) / close - 1.0,
            "end_time": close.index.to_series(index=close.index).shift(-h),
        },
        index=close.index,
    )


def open_to_open_label(open_: pd.Series, horizon: int) -> pd.DataFrame:
    """The forward return aligned to the next-open fill: ``open_{t+1+h} / open_{t+1} - 1``.

    A decision at bar ``t``'s close is filled at ``open_{t+1}``
    (:mod:`huracan.evaluation.execution`); held ``h`` bars and left at an open, it earns this.
    ``end_time_t`` = index of bar ``t + 1 + h`` (whose open the label reads), so the label
    reaches ``h + 1`` bars and the embargo follows it.

    Args:
        open_: opens of one gap-free segment, shape ``(n,)``, strictly increasing index.
        horizon: ``h`` in bars, >= 1.

    Returns:
        DataFrame indexed like ``open_`` with columns ``label`` and ``end_time``; the last
        ``h + 1`` rows: NaN / NaT.

    Raises:
        ValueError: ``horizon < 1``; NaN, non-positive opens or a non-increasing index.

    Causality: looks ``h + 1`` bars forward by design (a target, never a feature).
    """
    if int(horizon) != horizon or horizon < 1:
        raise ValueError(f"horizon must be an integer >= 1 bar, got {horizon}")
    _check_close(open_)
    h = int(horizon)
    entry = open_.shift(-1)
    return pd.DataFrame(
        {
            "label": open_.shift(-(h + 1)) / entry - 1.0,
            "end_time": open_.index.to_series(index=open_.index).shift(-(h + 1)),
        },
        index=open_.index,
    )


# --------------------------------------------------------------------------------------------
# CUSUM filter
# --------------------------------------------------------------------------------------------


def cusum_filter(
    values: pd.Series,
    threshold: float | pd.Series,
    *,
    kind: Literal["close", "log_return"] = "close",
) -> pd.Index:
    """Symmetric CUSUM filter: sample an event when the run of log returns drifts by ``threshold``.

    AFML snippet 2.4 (Lam & Yam 1997). With ``r_t = ln(close_t / close_{t-1})``::

        S+_t = max(0, S+_{t-1} + r_t),   S-_t = min(0, S-_{t-1} + r_t)
        if S-_t < -h_t: event at t, S-_t = 0;  elif S+_t > h_t: event at t, S+_t = 0

    (strict inequalities; only the side that fired is reset, as in AFML.)

    Args:
        values: one gap-free segment, shape ``(n,)``: closes (``kind="close"``) or 1-bar log
            returns in fractions (``kind="log_return"``; leading NaN, e.g. from ``.diff()``, are
            allowed and skipped).
        threshold: ``h`` as a log-return fraction (0.01 = 1 %): a float > 0, or a Series with the
            index of ``values`` (e.g. ``2 * barrier_volatility(close, 24)``); where it is NaN
            (warm-up) no event fires and both sums are held at 0.
        kind: what ``values`` holds.

    Returns:
        the event timestamps (a subset of ``values.index``, in time order).

    Raises:
        ValueError: NaN or non-positive closes (NaN returns after the first valid one), a
            non-positive threshold, a misaligned threshold Series, a non-increasing index or an
            unknown ``kind``.

    Causality: the event at t uses returns and thresholds up to t only, so the events of a prefix
    of the series are the prefix of the events of the whole series.
    """
    if not isinstance(values, pd.Series):
        raise ValueError("values must be a pandas Series indexed by bar time")
    _check_index(values.index, "values")
    if kind == "close":
        c = _check_close(values)
        r = np.concatenate([[np.nan], np.diff(np.log(c))])
    elif kind == "log_return":
        r = values.to_numpy(np.float64)
        valid = ~np.isnan(r)
        first = int(np.argmax(valid)) if valid.any() else len(r)
        if not valid[first:].all() or not np.isfinite(r[first:]).all():
            raise ValueError("log returns contain NaN/inf after the first valid value")
    else:
        raise ValueError(f"kind must be 'close' or 'log_return', got {kind!r}")
    if isinstance(threshold, pd.Series):
        if not threshold.index.equals(values.index):
            raise ValueError("threshold Series must have exactly the index of values (misaligned)")
        h = threshold.to_numpy(np.float64)
    else:
        h = np.full(len(r), float(threshold))
    if (h <= 0).any() or np.isinf(h).any():
        raise ValueError("threshold must be finite and > 0 (NaN = unknown)")

    events: list[int] = []
    s_pos = s_neg = 0.0
    for i, (ri, hi) in enumerate(zip(r.tolist(), h.tolist(), strict=True)):
        if ri != ri or hi != hi:  # NaN return or threshold: nothing known yet
            s_pos = s_neg = 0.0
            continue
        s_pos = max(0.0, s_pos + ri)
        s_neg = min(0.0, s_neg + ri)
        if s_neg < -hi:
            s_neg = 0.0
            events.append(i)
        elif s_pos > hi:
            s_pos = 0.0
            events.append(i)
    return values.index[np.asarray(events, dtype=np.int64)]


# --------------------------------------------------------------------------------------------
# triple barrier
# --------------------------------------------------------------------------------------------


def barrier_volatility(close: pd.Series, window: int, horizon: int = 1) -> pd.Series:
    """Barrier width unit at t: rolling std of 1-bar log returns, scaled to ``horizon`` bars.

    ``vol_t = std(r_{t-window+1}, ..., r_t; ddof=1) * sqrt(horizon)`` with
    ``r_t = ln(close_t / close_{t-1})`` (the ``rv_n`` feature of
    :func:`huracan.features.technical.realized_volatility`, times the square-root-of-time
    scaling to the holding horizon). A log-return std used as a simple-return fraction; the two
    agree to first order for the small widths of hourly bars. AFML snippet 3.1 uses an EWM std of
    daily returns instead; any causal per-bar volatility may be passed to the labellers.

    Args:
        close: one gap-free segment, shape ``(n,)``.
        window: bars in the rolling window, >= 2.
        horizon: bars to scale to (use ``max_holding``), >= 1.

    Returns:
        Series indexed like ``close`` (fraction), NaN for the first ``window`` rows.

    Raises:
        ValueError: ``window < 2``, ``horizon < 1``, NaN or non-positive closes.

    Causality: uses closes up to and including bar t.
    """
    if window < 2 or horizon < 1:
        raise ValueError(f"need window >= 2 and horizon >= 1 bars, got {window} and {horizon}")
    _check_close(close)
    r1 = np.log(close).diff()
    return (r1.rolling(window, min_periods=window).std() * np.sqrt(horizon)).rename("volatility")


def _first_touch(
    c: np.ndarray,
    h: np.ndarray,
    lo: np.ndarray,
    pos: np.ndarray,
    side: np.ndarray,
    vol: np.ndarray,
    pt_mult: float,
    sl_mult: float,
    max_holding: int,
) -> dict[str, np.ndarray]:
    """Shared kernel: the first barrier each entry touches, vectorised over entries.

    Entry at ``c[pos]``; bars ``pos+1 .. pos+max_holding`` are scanned with a loop over the
    offsets. The profit-take lies ``pt_mult*vol`` away in the direction of ``side``, the stop
    ``sl_mult*vol`` against it. A bar touches the upper barrier when ``high >= upper`` and the
    lower one when ``low <= lower``; when it touches both, the STOP wins (conservative). The fill
    is the barrier price clipped into the bar's ``[low, high]`` (the nearest traded price when a
    bar opens beyond it); at the vertical barrier or the end of data, the close. Entries whose
    window runs past the data and touch nothing get ``_END`` at the last bar.
    """
    n = len(c)
    c0 = c[pos]
    long_ = side > 0
    w_up = np.where(long_, pt_mult, sl_mult) * vol
    w_dn = np.where(long_, sl_mult, pt_mult) * vol
    upper = c0 * (1.0 + w_up)
    lower = c0 * (1.0 - w_dn)
    m = len(pos)
    code = np.zeros(m, dtype=np.int8)
    exit_pos = np.minimum(pos + max_holding, n - 1)
    tie = np.zeros(m, dtype=bool)
    for k in range(1, max_holding + 1):
        j = pos + k
        live = (code == 0) & (j < n)
        if not live.any():
            break
        jj = np.minimum(j, n - 1)
        up = h[jj] >= upper
        dn = lo[jj] <= lower
        both = up & dn
        hit = live & (up | dn)
        # both touched: the stop wins, i.e. lower for longs, upper for shorts
        choose_upper = up & ~(dn & long_)
        code[hit] = np.where(choose_upper[hit], _UPPER, _LOWER)
        exit_pos[hit] = j[hit]
        tie[hit] = both[hit]
    unresolved = code == 0
    code[unresolved] = np.where(pos[unresolved] + max_holding < n, _VERTICAL, _END)
    barrier_px = np.where(code == _UPPER, upper, lower)
    touched = (code == _UPPER) | (code == _LOWER)
    exit_px = np.where(touched, np.clip(barrier_px, lo[exit_pos], h[exit_pos]), c[exit_pos])
    return {"code": code, "exit_pos": exit_pos, "exit_price": exit_px, "tie": tie}


def triple_barrier_labels(
    close: pd.Series,
    high: pd.Series | None = None,
    low: pd.Series | None = None,
    events: pd.Index | None = None,
    *,
    volatility: pd.Series | float,
    pt_mult: float,
    sl_mult: float,
    max_holding: int,
    zero_on_vertical: bool = True,
    side: pd.Series | int | None = None,
) -> pd.DataFrame:
    """Triple-barrier labels (AFML snippets 3.2-3.5) and meta-labels (AFML 3.6).

    For each event bar t0 the position is entered at ``close_t0``. Barriers, fixed at t0::

        upper = close_t0 * (1 + pt_mult * vol_t0)     lower = close_t0 * (1 - sl_mult * vol_t0)
        vertical = bar t0 + max_holding

    (with ``side = -1`` the profit-take is the lower barrier and the stop the upper one:
    ``upper = close_t0 * (1 + sl_mult * vol_t0)``, ``lower = close_t0 * (1 - pt_mult * vol_t0)``).
    Bars ``t0+1 .. t0+max_holding`` are scanned in order (never bar t0 itself); a bar touches the
    upper barrier when its ``high >= upper``, the lower one when its ``low <= lower`` (closes
    stand in for high/low when these are not given). The first bar that touches decides; a
    horizontal touch on the vertical bar beats the vertical barrier.

    Tie: when one bar touches both barriers, the path inside the bar is unknown; it is resolved
    conservatively as the STOP-LOSS (lower for a long / no side, upper for a short) and flagged in
    ``tie``.

    Exit price: the touched barrier's price clipped into that bar's ``[low, high]`` (a bar that
    opens beyond the barrier fills at its nearest price; with close-only touches this is the close),
    or the close of the vertical bar.

    Args:
        close: closes of ONE gap-free segment, shape ``(n,)``, strictly increasing index (bar open
            times). Gaps must be handled by the caller (one call per segment).
        high, low: optional bar highs/lows with the index of ``close``, to catch touches inside a
            bar; both or neither.
        events: event timestamps t0 (a subset of ``close.index``, e.g. from
            :func:`cusum_filter`); default every bar.
        volatility: per-bar return volatility known at t0, fraction, already scaled to the holding
            horizon (e.g. :func:`barrier_volatility` with ``horizon=max_holding``), a Series with
            the index of ``close`` or one float for all bars. Events where it is NaN or 0 are
            dropped (warm-up).
        pt_mult, sl_mult: profit-take / stop-loss widths in units of ``volatility``, > 0.
        max_holding: vertical barrier, bars after t0, >= 1.
        zero_on_vertical: label of a vertical exit: 0, or (False) the sign of its return.
        side: meta-labelling: the primary model's bet per bar (+1 long, -1 short; 0 or NaN = no
            bet, event dropped), a Series indexed by bar time or one int for all events.

    Returns:
        DataFrame indexed by event time t0 (in time order), one row per kept event:

        * ``label``: ``+1`` upper / ``-1`` lower touched first; vertical: 0 (or the sign of
          ``ret``). With ``side``: 1 if the bet paid (``ret > 0``), else 0, for every barrier
          (``zero_on_vertical`` is then ignored).
        * ``ret``: ``side * (exit_price / close_t0 - 1)``, fraction (side = +1 without ``side``).
        * ``end_time``: index of the bar where the first barrier was touched, or of the vertical
          bar; the label is known at that bar's close.
        * ``barrier``: ``"upper"``, ``"lower"`` or ``"vertical"`` (price barriers, not
          profit/stop).
        * ``holding_bars``: ``end_time`` position minus t0 position, in ``1 .. max_holding``.
        * ``tie``: both horizontal barriers touched in the exit bar (resolved as the stop).

        DROPPED events: those whose vertical barrier lies beyond the data (``t0 + max_holding >=
        n``, i.e. past the segment's last bar before a gap or the end of the data): their label
        is not known yet, and keeping only those that already touched a horizontal barrier would
        bias the labels (AFML snippets 3.4-3.5; see the module docstring); also those with
        unknown volatility or no bet.

    Raises:
        ValueError: ``pt_mult``/``sl_mult`` <= 0, ``max_holding`` < 1, NaN or non-positive close,
            a non-increasing index, inputs not aligned with ``close``, events not in
            ``close.index``, side values other than -1/0/1, high/low inconsistent with close.

    Causality: looks up to ``max_holding`` bars forward by design; the barriers use only
    ``close_t0`` and ``vol_t0`` (known at t0's close).
    """
    _check_barrier_params(pt_mult, sl_mult, max_holding)
    c = _check_close(close)
    h, lo = _check_high_low(close, c, high, low)
    vol = _volatility_array(volatility, close)
    sides = _side_array(side, close)
    pos = _event_positions(events, close.index)
    n = len(c)
    keep = (pos + max_holding < n) & (vol[pos] > 0) & (sides[pos] != 0)  # NaN vol -> False
    pos = pos[keep]
    s = sides[pos]
    out = _first_touch(c, h, lo, pos, s, vol[pos], pt_mult, sl_mult, int(max_holding))
    ret = s * (out["exit_price"] / c[pos] - 1.0)
    code = out["code"]
    if side is None:
        label = np.where(code == _UPPER, 1, np.where(code == _LOWER, -1, 0))
        if not zero_on_vertical:
            label = np.where(code == _VERTICAL, np.sign(ret), label)
    else:
        label = (ret > 0).astype(np.int64)
    return pd.DataFrame(
        {
            "label": label.astype(np.int64),
            "ret": ret,
            "end_time": close.index[out["exit_pos"]],
            "barrier": np.array([_BARRIER_NAMES[int(k)] for k in code], dtype=object),
            "holding_bars": (out["exit_pos"] - pos).astype(np.int64),
            "tie": out["tie"],
        },
        index=close.index[pos],
        columns=LABEL_COLUMNS,
    )


# --------------------------------------------------------------------------------------------
# sample weights
# --------------------------------------------------------------------------------------------


def _spans(
    event_times: pd.Index,
    end_times: pd.Series | pd.Index | np.ndarray,
    bar_index: pd.Index,
    include_event_bar: bool,
) -> tuple[pd.Index, np.ndarray, np.ndarray]:
    """First and last bar position (inclusive) of each label's span."""
    bars = pd.Index(bar_index)
    _check_index(bars, "bar_index")
    ev = pd.Index(event_times)
    if isinstance(end_times, pd.Series) and not end_times.index.equals(ev):
        raise ValueError("end_times Series must be indexed by event_times (misaligned)")
    end = pd.Index(end_times)
    if len(end) != len(ev):
        raise ValueError(f"{len(ev)} event_times but {len(end)} end_times (misaligned)")
    s = bars.get_indexer(ev)
    e = bars.get_indexer(end)
    if (s < 0).any() or (e < 0).any():
        raise ValueError("every event and end time must be a bar of bar_index (NaT not allowed)")
    first = s if include_event_bar else s + 1
    if (e < first).any():
        raise ValueError("every end time must lie after its event time")
    return ev, first, e


def _concurrency(first: np.ndarray, last: np.ndarray, n: int) -> np.ndarray:
    diff = np.zeros(n + 1, dtype=np.int64)
    np.add.at(diff, first, 1)
    np.add.at(diff, last + 1, -1)
    return np.cumsum(diff[:n])


def label_concurrency(
    event_times: pd.Index,
    end_times: pd.Series | pd.Index | np.ndarray,
    bar_index: pd.Index,
    *,
    include_event_bar: bool = False,
) -> pd.Series:
    """Number of labels alive at each bar (AFML snippet 4.1), by a difference array (O(n + m)).

    A label with event ``t0`` and end ``t1`` is alive on the bars ``(t0, t1]`` whose returns it
    reads (``[t0, t1]`` with ``include_event_bar=True``, as AFML's code does).

    Args:
        event_times: label start times, shape ``(m,)``, bars of ``bar_index``.
        end_times: label end times (``end_time`` of :func:`triple_barrier_labels`), shape
            ``(m,)``; a Series must be indexed by ``event_times``.
        bar_index: the bars of the segment, shape ``(n,)``, strictly increasing.
        include_event_bar: count the event bar itself as part of the label.

    Returns:
        int Series indexed by ``bar_index``, shape ``(n,)``.

    Raises:
        ValueError: misaligned lengths, times not in ``bar_index`` (or NaT), an end not after its
            event, a non-increasing ``bar_index``.
    """
    bars = pd.Index(bar_index)
    _, first, last = _spans(event_times, end_times, bars, include_event_bar)
    return pd.Series(_concurrency(first, last, len(bars)), index=bars, name="concurrency")


def average_uniqueness_weights(
    event_times: pd.Index,
    end_times: pd.Series | pd.Index | np.ndarray,
    bar_index: pd.Index,
    *,
    include_event_bar: bool = False,
) -> pd.Series:
    """Average uniqueness of each label (AFML snippets 4.1-4.2).

    ``c_t`` = number of labels alive at bar t (:func:`label_concurrency`); label i's average
    uniqueness is ``mean(1 / c_t for t in span_i)``, with span ``(t0, t1]`` (the bars whose returns
    it reads; ``[t0, t1]`` with ``include_event_bar=True``, AFML's code). Concurrency counts only
    the labels passed in. Computed with cumulative sums, O(n + m).

    Args:
        event_times: label start times, shape ``(m,)``, bars of ``bar_index``.
        end_times: label end times, shape ``(m,)``; a Series must be indexed by ``event_times``.
        bar_index: the bars of the segment, shape ``(n,)``, strictly increasing.
        include_event_bar: count the event bar itself as part of the label.

    Returns:
        Series indexed by ``event_times`` named ``uniqueness``, values in ``(0, 1]``.

    Raises:
        ValueError: as :func:`label_concurrency`.
    """
    bars = pd.Index(bar_index)
    ev, first, last = _spans(event_times, end_times, bars, include_event_bar)
    conc = _concurrency(first, last, len(bars))
    inv = np.where(conc > 0, 1.0 / np.maximum(conc, 1), 0.0)
    cum = np.concatenate([[0.0], np.cumsum(inv)])
    u = (cum[last + 1] - cum[first]) / (last - first + 1)
    return pd.Series(u, index=ev, name="uniqueness")


def return_attribution_weights(
    close: pd.Series,
    event_times: pd.Index,
    end_times: pd.Series | pd.Index | np.ndarray,
    *,
    include_event_bar: bool = False,
) -> pd.Series:
    """Sample weights by attributed absolute log return (AFML snippet 4.10).

    ``w_i = | sum_{t in span_i} r_t / c_t |`` with ``r_t = ln(close_t / close_{t-1})`` and ``c_t``
    the label concurrency, then rescaled so the weights sum to the number of events ``m``. With the
    default span ``(t0, t1]`` the sum covers exactly the returns the label reads (AFML's code
    includes bar t0's own return: ``include_event_bar=True``; the first bar's return counts as 0).

    Args:
        close: closes of one gap-free segment, shape ``(n,)``; its index is the bar index.
        event_times, end_times: as :func:`average_uniqueness_weights`, shape ``(m,)``.
        include_event_bar: count the event bar itself as part of the label.

    Returns:
        Series indexed by ``event_times`` named ``weight``, >= 0, summing to ``m``.

    Raises:
        ValueError: as :func:`label_concurrency`; NaN/non-positive closes; every attributed
            return is zero (nothing to normalise).
    """
    c = _check_close(close)
    ev, first, last = _spans(event_times, end_times, close.index, include_event_bar)
    conc = _concurrency(first, last, len(c))
    r = np.concatenate([[0.0], np.diff(np.log(c))])
    share = np.where(conc > 0, r / np.maximum(conc, 1), 0.0)
    cum = np.concatenate([[0.0], np.cumsum(share)])
    w = np.abs(cum[last + 1] - cum[first])
    total = w.sum()
    if len(w) and not total > 0:
        raise ValueError("every attributed return is zero; cannot normalise the weights")
    w = w * len(w) / total if len(w) else w
    return pd.Series(w, index=ev, name="weight")


# --------------------------------------------------------------------------------------------
# backtest at the label barriers
# --------------------------------------------------------------------------------------------


def simulate_barrier_exits(
    close: pd.Series,
    high: pd.Series | None,
    low: pd.Series | None,
    entries: pd.Series | pd.Index,
    side: pd.Series | int,
    volatility: pd.Series | float,
    pt_mult: float,
    sl_mult: float,
    max_holding: int,
) -> pd.DataFrame:
    """Trade a signal with the profit-take / stop-loss / time barriers of the labels.

    One position at a time, walking forward: a signal at bar t enters at ``close_t`` with the
    barriers of :func:`triple_barrier_labels` (same widths, orientation by side, touches from bar
    t+1 on, tie resolved as the stop, fill at the barrier clipped into the bar's range). A signal
    while a trade is open is ignored; a signal on the exit bar itself is taken (the old trade is
    closed by that bar's close, the new one opens at it). A trade still open at the last bar
    without a touch exits there at the close (``end_of_data``, marked to market). Signals on the
    last bar (nothing left to hold) and signals with unknown (NaN/0) volatility or side 0 are
    skipped. Outcomes are computed for every signal at once (vectorised), then a Python loop over
    trades picks the non-overlapping ones.

    Args:
        close: closes of ONE gap-free segment, shape ``(n,)``, strictly increasing index.
        high, low: bar highs/lows with the index of ``close`` (or both None: close-only touches).
        entries: the signal: a boolean Series with the index of ``close`` (True = enter at this
            bar's close), or the signal timestamps (an Index, bars of ``close``).
        side: +1 long / -1 short for every signal, or a Series by bar time (0/NaN = no trade).
        volatility: barrier width unit known at the entry bar, fraction (see
            :func:`triple_barrier_labels`), a Series with the index of ``close`` or a float.
        pt_mult, sl_mult: profit-take / stop-loss widths in units of ``volatility``, > 0.
        max_holding: time barrier, bars after the entry, >= 1.

    Returns:
        one row per trade, in time order: ``entry_time``, ``exit_time`` (index of the exit bar),
        ``side`` (+1/-1), ``entry_price``, ``exit_price``, ``barrier`` (``"upper"``, ``"lower"``,
        ``"vertical"``, ``"end_of_data"``), ``holding_bars`` (>= 1), ``gross_return``
        (``side * (exit_price / entry_price - 1)``, fraction, before fees) and ``tie``.

    Raises:
        ValueError: as :func:`triple_barrier_labels`; a boolean ``entries`` Series not aligned
            with ``close``.

    Causality: entries and barriers use data up to the entry bar; the exits walk forward.
    """
    _check_barrier_params(pt_mult, sl_mult, max_holding)
    c = _check_close(close)
    h, lo = _check_high_low(close, c, high, low)
    vol = _volatility_array(volatility, close)
    sides = _side_array(side, close)
    if isinstance(entries, pd.Series):
        if not entries.index.equals(close.index) or entries.dtype != bool:
            raise ValueError("entries Series must be boolean with exactly the index of close")
        pos = np.flatnonzero(entries.to_numpy())
    else:
        pos = _event_positions(entries, close.index)
    n = len(c)
    pos = pos[(pos < n - 1) & (vol[pos] > 0) & (sides[pos] != 0)]
    out = _first_touch(c, h, lo, pos, sides[pos], vol[pos], pt_mult, sl_mult, int(max_holding))
    rows = []
    free_from = 0  # first bar position at which a new entry may be taken
    for k, p in enumerate(pos.tolist()):
        if p < free_from:
            continue
        e = int(out["exit_pos"][k])
        s = int(sides[p])
        px = float(out["exit_price"][k])
        rows.append({
            "entry_time": close.index[p],
            "exit_time": close.index[e],
            "side": s,
            "entry_price": c[p],
            "exit_price": px,
            "barrier": _BARRIER_NAMES[int(out["code"][k])],
            "holding_bars": e - p,
            "gross_return": s * (px / c[p] - 1.0),
            "tie": bool(out["tie"][k]),
        })
        free_from = e
    return pd.DataFrame(rows, columns=TRADE_COLUMNS)

