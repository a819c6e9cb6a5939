"""Liquidation cascades: ONE rule, shared by the collector, the ingest and the CLI.

**The rule** (the product's definition, made causal): a liquidation is a ``cascade`` event when
the liquidations of its exchange and symbol in the ``window`` ending at its time, ``(t - window,
t]`` (itself and every earlier one, both sides, events at the same instant included), number at
least ``min_events`` or add up to at least ``min_usd`` USD (``size_usd``); otherwise it is
``single``. That is the ``liquidation_type`` the collector and ``huracan ingest liquidations``
store.

Choices:

- **Causal labels.** Whether an event is ``cascade`` depends on earlier events only, so the label
  is known at the event's own time: a feature built from it leaks nothing from the future, the
  live collector can label each event as it comes, and a label never changes when later events
  arrive. The first events of a burst, before the threshold is reached, stay ``single``; the
  listing (:func:`find_cascades`) still dates a cascade from the first event of the window that
  triggered it.
- **One symbol, both sides, one exchange.** The product counts liquidations of one symbol; a
  whipsaw that liquidates longs and then shorts within minutes is forced flow all the same (the
  listing reports the dominant side). Exchanges are separate streams with different
  throttling (Binance pushes at most one liquidation per symbol per second), so they are not
  mixed.
- **Defaults** (:data:`DEFAULT_RULE`): 5-minute window (the product's), **20 events** or
  **$250,000**. On the 2024-12-10 Binance USDT-M per-minute aggregates
  (``../shared/data/liquidations/*1min-agg*``: 30 liquid perpetuals, 4.5 hours of a volatile
  day), a symbol's 5-minute window holds a median of 2 liquidations and $1.1k; 20 or more
  liquidations occur in 5.7 % of the windows (the 95th percentile is 21), $250k or more in
  0.8 % (the 99th percentile is $231k), either in 5.8 %. So the rule marks the tail of a
  volatile day and little of a calm one. 20 events means liquidations in at least 20 distinct
  seconds of 5 minutes under Binance's throttle; the USD leg catches the few-but-large
  cascades of the majors (a single forced order of $250k or more qualifies on its own). Both
  thresholds are absolute; per-symbol scaling would need volume data the store does not keep.
- A batch is labelled with the events it holds plus, for the collector, the events of the
  previous ``window`` of the stream (``context``). A file ingested on its own cannot see the
  events stored before it: its first ``window`` may undercount.

Configuration: :meth:`CascadeRule.from_mapping` reads a config section (the product's keys
``cascade_window``, ``cascade_min_events``, ``cascade_min_usd``; ``null`` switches a leg off),
:meth:`CascadeRule.from_env` the environment (``HURACAN_CASCADE_WINDOW``,
``HURACAN_CASCADE_MIN_EVENTS``, ``HURACAN_CASCADE_MIN_USD``), which the collector, the ingest and
the CLI use by default; the CLI commands also take ``--cascade-*`` options.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

WINDOW_ENV = "HURACAN_CASCADE_WINDOW"
MIN_EVENTS_ENV = "HURACAN_CASCADE_MIN_EVENTS"
MIN_USD_ENV = "HURACAN_CASCADE_MIN_USD"
#: Columns of :func:`find_cascades`' result.
CASCADE_COLUMNS = ("exchange", "symbol", "start", "end", "events", "usd", "long_usd",
                   "short_usd", "dominant_side", "dominant_share")
_GROUP = ["exchange", "symbol"]


@dataclass(frozen=True)
class CascadeRule:
    """The cascade rule (see the module docstring).

    Attributes:
        window: length of the trailing window.
        min_events: liquidations in the window that make a cascade (``None``: no count leg).
        min_usd: USD liquidated in the window that makes a cascade (``None``: no USD leg).

    Raises:
        ValueError: a non-positive window or threshold, or both legs off.
    """

    window: pd.Timedelta = field(default_factory=lambda: pd.Timedelta(minutes=5))
    min_events: int | None = 20
    min_usd: float | None = 250_000.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "window", pd.Timedelta(self.window))
        if not self.window > pd.Timedelta(0):
            raise ValueError(f"cascade window must be positive, got {self.window}")
        if self.min_events is None and self.min_usd is None:
            raise ValueError("a cascade rule needs min_events or min_usd (or both)")
        if self.min_events is not None and self.min_events < 1:
            raise ValueError(f"cascade min_events must be >= 1, got {self.min_events}")
        if self.min_usd is not None and not self.min_usd > 0:
            raise ValueError(f"cascade min_usd must be > 0, got {self.min_usd}")

    def describe(self) -> str:
        legs = []
        if self.min_events is not None:
            legs.append(f">= {self.min_events} liquidations")
        if self.min_usd is not None:
            legs.append(f">= ${self.min_usd:,.0f}")
        minutes = self.window / pd.Timedelta(minutes=1)
        return f"{' or '.join(legs)} of one symbol within {minutes:g} min"

    def replace(self, *, window: Any = None, min_events: int | None = None,
                min_usd: float | None = None) -> CascadeRule:
        """This rule with the given (non-``None``) fields changed."""
        return CascadeRule(
            pd.Timedelta(window) if window is not None else self.window,
            min_events if min_events is not None else self.min_events,
            min_usd if min_usd is not None else self.min_usd)

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any] | None, base: CascadeRule | None = None
                     ) -> CascadeRule:
        """A rule from a config section such as ``liquidations:`` (keys ``cascade_window``:
        ``"5min"``, ``"300s"`` or seconds; ``cascade_min_events``; ``cascade_min_usd``; the
        ``cascade_`` prefix may be left out). Missing keys keep ``base`` (the defaults); a key
        set to ``None`` switches that leg off."""
        rule = base or cls()
        cfg = dict(cfg or {})

        def pick(name: str) -> tuple[bool, Any]:
            for k in (f"cascade_{name}", name):
                if k in cfg:
                    return True, cfg[k]
            return False, None

        has_w, window = pick("window")
        has_n, min_events = pick("min_events")
        has_u, min_usd = pick("min_usd")
        return cls(
            _timedelta(window) if has_w and window is not None else rule.window,
            (int(min_events) if min_events is not None else None) if has_n else rule.min_events,
            (float(min_usd) if min_usd is not None else None) if has_u else rule.min_usd)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CascadeRule:
        """The defaults overridden by ``HURACAN_CASCADE_WINDOW`` / ``_MIN_EVENTS`` /
        ``_MIN_USD`` (``none`` switches a leg off)."""
        env = os.environ if environ is None else environ
        cfg: dict[str, Any] = {}
        for key, var in (("window", WINDOW_ENV), ("min_events", MIN_EVENTS_ENV),
                         ("min_usd", MIN_USD_ENV)):
            if env.get(var, "").strip():
                raw = env[var].strip()
                cfg[key] = None if raw.lower() in ("none", "null", "off") else raw
        return cls.from_mapping(cfg)


#: The built-in rule (5 minutes, 20 liquidations or $250,000).
DEFAULT_RULE = CascadeRule()


def _timedelta(value: Any) -> pd.Timedelta:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return pd.Timedelta(seconds=float(value))
    text = str(value).strip()
    try:
        return pd.Timedelta(seconds=float(text))
    except ValueError:
        return pd.Timedelta(text)


@dataclass(frozen=True)
class _Windows:
    """Per event (sorted by group, time): its trailing window ``[lo, hi)`` in row positions and
    whether that window makes a cascade."""

    lo: np.ndarray
    hi: np.ndarray
    flag: np.ndarray


def _windows(times_ns: np.ndarray, usd: np.ndarray, starts: np.ndarray, rule: CascadeRule
             ) -> _Windows:
    """``times_ns`` sorted within each group; groups begin at the positions ``starts``."""
    n = len(times_ns)
    lo = np.empty(n, dtype=np.int64)
    hi = np.empty(n, dtype=np.int64)
    window = rule.window.value
    bounds = [*starts.tolist(), n]
    for a, b in itertools.pairwise(bounds):
        t = times_ns[a:b]
        hi[a:b] = a + np.searchsorted(t, t, side="right")
        lo[a:b] = a + np.searchsorted(t, t - window, side="right")
    flag = np.zeros(n, dtype=bool)
    if rule.min_events is not None:
        flag |= (hi - lo) >= rule.min_events
    if rule.min_usd is not None:
        cum = np.concatenate([[0.0], np.cumsum(np.nan_to_num(usd, nan=0.0))])
        # sums relative to the window's start: cum[hi] - cum[lo]
        flag |= (cum[hi] - cum[lo]) >= rule.min_usd
    return _Windows(lo, hi, flag)


def _sorted_events(events: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """``events`` sorted by exchange, symbol, time (stable) and the start of each group."""
    missing = [c for c in ("timestamp", "exchange", "symbol", "size_usd") if c not in events]
    if missing:
        raise KeyError(f"cascade rule needs columns {missing}")
    ordered = events.sort_values([*_GROUP, "timestamp"], kind="stable")
    ex = ordered["exchange"].astype(str).to_numpy()
    sym = ordered["symbol"].astype(str).to_numpy()
    new = np.ones(len(ordered), dtype=bool)
    if len(ordered) > 1:
        new[1:] = (ex[1:] != ex[:-1]) | (sym[1:] != sym[:-1])
    return ordered, np.flatnonzero(new)


def _times_ns(ts: pd.Series) -> np.ndarray:
    return pd.to_datetime(ts, utc=True).to_numpy("datetime64[ns]").view("int64")


def label_cascades(events: pd.DataFrame, rule: CascadeRule | None = None, *,
                   context: pd.DataFrame | None = None) -> pd.Series:
    """``cascade``/``single`` per liquidation under ``rule`` (default :data:`DEFAULT_RULE`).

    Args:
        events: columns ``timestamp`` (UTC-aware), ``exchange``, ``symbol``, ``size_usd`` (NaN
            counts as 0 USD); other columns are ignored.
        rule: the rule.
        context: earlier events (same columns, not repeated in ``events``) that count in the
            windows but are not labelled: the stream's recent past for the collector.

    Returns:
        A string Series aligned with ``events.index``.
    """
    rule = rule or DEFAULT_RULE
    if events.empty:
        return pd.Series([], index=events.index, dtype="object")
    cols = ["timestamp", *_GROUP, "size_usd"]
    frame = events[cols].assign(_mine=True, _pos=np.arange(len(events)))
    if context is not None and not context.empty:
        frame = pd.concat([context[cols].assign(_mine=False, _pos=-1), frame],
                          ignore_index=True)
    ordered, starts = _sorted_events(frame)
    w = _windows(_times_ns(ordered["timestamp"]), ordered["size_usd"].to_numpy("float64"),
                 starts, rule)
    mine = ordered["_mine"].to_numpy(bool)
    labels = np.empty(len(events), dtype=object)
    labels[ordered["_pos"].to_numpy()[mine]] = np.where(w.flag[mine], "cascade", "single")
    return pd.Series(labels, index=events.index, dtype="object")


def find_cascades(events: pd.DataFrame, rule: CascadeRule | None = None) -> pd.DataFrame:
    """The cascades among ``events``: overlapping triggering windows of one exchange and symbol
    merged into one episode.

    A cascade starts at the first event of the window of its first ``cascade`` event (the start
    of the burst, not the moment the threshold was crossed) and ends at its last ``cascade``
    event; ``events``/``usd`` count every liquidation in between, ``long_usd``/``short_usd`` by
    liquidated side, ``dominant_side`` is the side with more USD and ``dominant_share`` its
    share of the USD.

    Args:
        events: columns ``timestamp, exchange, symbol, side, size_usd``.
        rule: the rule (default :data:`DEFAULT_RULE`).

    Returns:
        :data:`CASCADE_COLUMNS`, sorted by start.
    """
    rule = rule or DEFAULT_RULE
    empty = pd.DataFrame({c: pd.Series(dtype="object") for c in CASCADE_COLUMNS})
    if events.empty:
        return empty
    ordered, starts = _sorted_events(events)
    usd = np.nan_to_num(ordered["size_usd"].to_numpy("float64"), nan=0.0)
    w = _windows(_times_ns(ordered["timestamp"]), usd, starts, rule)
    flagged = np.flatnonzero(w.flag)
    if not len(flagged):
        return empty
    lo, hi = w.lo[flagged], w.hi[flagged]
    # a flagged event whose window starts after the previous episode's last event opens a new
    # episode; groups never overlap since a window never crosses a group start
    new = np.ones(len(flagged), dtype=bool)
    new[1:] = lo[1:] >= hi[:-1]
    first = np.flatnonzero(new)
    last = np.r_[first[1:] - 1, len(flagged) - 1]
    begin, end = lo[first], flagged[last]  # row positions, inclusive
    long_usd = np.where(ordered["side"].astype(str).to_numpy() == "long", usd, 0.0)
    cum = np.concatenate([[0.0], np.cumsum(usd)])
    cum_long = np.concatenate([[0.0], np.cumsum(long_usd)])
    total = cum[end + 1] - cum[begin]
    longs = cum_long[end + 1] - cum_long[begin]
    shorts = total - longs
    ts = pd.to_datetime(ordered["timestamp"], utc=True).reset_index(drop=True)
    out = pd.DataFrame({
        "exchange": ordered["exchange"].astype(str).to_numpy()[begin],
        "symbol": ordered["symbol"].astype(str).to_numpy()[begin],
        "start": ts.iloc[begin].to_numpy(),
        "end": ts.iloc[end].to_numpy(),
        "events": (end - begin + 1).astype("int64"),
        "usd": total,
        "long_usd": longs,
        "short_usd": shorts,
        "dominant_side": np.where(longs >= shorts, "long", "short"),
        "dominant_share": np.where(total > 0, np.maximum(longs, shorts) / np.where(
            total > 0, total, 1.0), np.nan),
    })
    out["start"] = pd.to_datetime(out["start"], utc=True)
    out["end"] = pd.to_datetime(out["end"], utc=True)
    return out.sort_values(["start", "exchange", "symbol"], kind="stable").reset_index(drop=True)
