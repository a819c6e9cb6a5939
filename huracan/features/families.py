"""Market-structure feature families beside price: derivatives, liquidations, sentiment.

Families (``derivatives`` is shorthand for the first three), their source keys and functions
(modules under :mod:`huracan.features`):

- ``funding``: ``funding`` -> ``derivatives.funding_features``
- ``basis``: ``mark`` (mark-price candles) -> ``derivatives.basis_features``
- ``open_interest``: ``open_interest`` -> ``derivatives.open_interest_features``
- ``liquidations``: ``liquidations`` (+ ``liquidations_coverage``, ``candles_1m``) ->
  ``liquidations.liquidation_features``
- ``sentiment``: ``sentiment`` (daily index) -> ``sentiment.daily_index_features``
- ``headlines``: ``headlines`` (texts or VADER scores) -> ``sentiment.headline_features``

Coverage policy
---------------
Real sources cover less than the candles (Binance USDT-M funding starts 2019-09, Fear & Greed in
2020, liquidation history only where a collector ran). A family whose source does not cover a bar
enters that bar as **NaN**, together with a per-row ``<family>_available`` flag (1 = the family's
base value is fresh at the bar, 0 = not covered, stale, or no source at all). It is never a silent
zero: a zero means "observed and zero" (e.g. no liquidation in a covered hour). A family asked for
but not given a source is all NaN with flag 0 (and coverage 0), so the column set depends only on
the ``families`` and parameters asked for, not on the data found. :func:`build_family_features`
also returns the share of bars covered per family (the mean of its flag); callers decide what to
do with low coverage (a tree model can use NaN directly; models that cannot must impute and keep
the flag, or restrict training to covered bars). "Fresh" is source-specific: a funding rate for
two settlement intervals, an open-interest snapshot for two snapshot spacings, a mark candle only
when it closes with the spot bar, a daily index for the day after its day. Separately from the
flag, a feature can be NaN during its own warm-up (a 30-day z-score before 30 days of history, a
change whose earlier value is missing), exactly like the candle indicators; give the sources (and,
for the sentiment divergence, the bars) some history before the first bar that matters
(:func:`load_sources` reads 45 days before ``start`` by default).

Every value at bar t is known at t's close (:mod:`huracan.features.asof`), so features computed
from data truncated at any bar equal the first rows of features computed from all data.

Loading: :func:`load_sources` reads the brain store (through :mod:`huracan.db.queries`);
:func:`load_sources_from_files` reads Parquet files laid out as ../shared/data.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine

from huracan.db.queries import (
    funding_frame,
    liquidation_frame,
    open_interest_frame,
    sentiment_frame,
)
from huracan.features.asof import BAR_INDEX, KNOWN_AT, to_timedelta, utc_times
from huracan.features.asof import bar_times as _bar_times
from huracan.features.derivatives import (
    basis_features,
    funding_features,
    open_interest_features,
)
from huracan.features.liquidations import liquidation_features, minute_aggregates_to_events
from huracan.features.sentiment import daily_index_features, headline_features, score_headlines
from huracan.timeutil import to_utc

FAMILIES: tuple[str, ...] = ("funding", "basis", "open_interest", "liquidations", "sentiment",
                             "headlines")
GROUPS: dict[str, tuple[str, ...]] = {"derivatives": ("funding", "basis", "open_interest")}
SOURCE_KEYS: tuple[str, ...] = ("funding", "mark", "open_interest", "liquidations",
                                "liquidations_coverage", "candles_1m", "sentiment", "headlines")
_FAMILY_SOURCE = {"funding": "funding", "basis": "mark", "open_interest": "open_interest",
                  "liquidations": "liquidations", "sentiment": "sentiment",
                  "headlines": "headlines"}
#: ``sentiment_scores.source`` of the Fear & Greed Index in the brain store (proposed
#: convention: ``score = (value - 50) / 50``, ``n_items = 1``, ``timestamp`` = day start).
FEAR_GREED_SOURCE = "alternative.me:fear-greed"


def flag_name(family: str) -> str:
    """``<family>_available``."""
    return f"{family}_available"


@dataclass(frozen=True)
class FamilyParams:
    """Parameters of every family (windows in bars are ints, durations are strings).

    See the family functions for their meaning; defaults follow them.
    """

    # funding
    funding_change_settlements: int = 3
    funding_z_window: str = "30D"
    funding_z_min_share: float = 0.8
    funding_max_age_settlements: float = 2.0
    funding_primary_exchange: str | None = None
    funding_delay: str = "0s"
    # basis
    mark_timeframe: str | None = None
    basis_change_bars: int = 24
    basis_max_age: str = "0s"
    # open interest
    oi_changes: tuple[str, ...] = ("1D", "7D")
    oi_z_window: str = "30D"
    oi_max_age_intervals: float = 2.0
    oi_value_column: str | None = None
    oi_exchange: str | None = None
    oi_delay: str = "0s"
    # liquidations
    liquidation_windows: tuple[str, ...] = ("1h", "4h", "24h")
    liquidation_imbalance_window: str | None = None
    liquidation_density_window: int = 168
    cascade_window: str = "5min"
    cascade_min_events: int | None = 20
    cascade_min_usd: float | None = 250_000.0
    liquidation_max_silence: str | None = None
    large_liquidation_usd: float = 100_000.0
    post_liquidation_window: str = "5min"
    post_liquidation_lookback: str | None = None
    # sentiment (daily index)
    sentiment_name: str = "fear_greed"
    sentiment_changes: tuple[int, ...] = (3, 7)
    sentiment_z_days: int = 30
    sentiment_z_min_days: int = 24
    sentiment_return_days: int = 7
    # headlines
    headline_window: str = "24h"

    @classmethod
    def from_mapping(cls, params: FamilyParams | Mapping[str, Any] | None) -> FamilyParams:
        """``params`` as :class:`FamilyParams` (a mapping of field names, or ``None``).

        Raises:
            ValueError: unknown parameter names.
        """
        if params is None:
            return cls()
        if isinstance(params, FamilyParams):
            return params
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"unknown family parameter(s) {unknown}; known: {sorted(known)}")
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                  for k, v in params.items()}
        return cls(**values)


@dataclass
class FamilyFeatures:
    """Output of :func:`build_family_features`.

    Attributes:
        frame: ``(n_bars, k)`` indexed by bar open time (``timestamp``): the feature columns and
            one ``<family>_available`` flag (int8, 0/1) per family.
        feature_names: the feature columns (flags excluded), in frame order.
        flags: family -> its flag column.
        coverage: family -> share of bars with the flag at 1 (0.0 - 1.0).
    """

    frame: pd.DataFrame
    feature_names: list[str]
    flags: dict[str, str] = field(default_factory=dict)
    coverage: dict[str, float] = field(default_factory=dict)


def expand_families(families: Sequence[str]) -> list[str]:
    """Family names with groups expanded (``derivatives`` -> funding, basis, open_interest),
    in the order given, without repeats.

    Raises:
        ValueError: ``price`` (built by :mod:`huracan.features.build`) or an unknown name.
    """
    out: list[str] = []
    for fam in families:
        if fam == "price":
            raise ValueError("family 'price' is not built here: price features come from "
                             "huracan.features.build")
        names = GROUPS.get(fam, (fam,))
        for name in names:
            if name not in FAMILIES:
                raise ValueError(f"unknown feature family {fam!r}; known: "
                                 f"{[*FAMILIES, *GROUPS]}")
            if name not in out:
                out.append(name)
    return out


def coverage(known_times: Any, bar_times: Any, *, timeframe: str | pd.Timedelta | None = None,
             max_age: str | pd.Timedelta | None = None) -> float:
    """Share of bars that have a fresh value: a value known at or before the bar's evaluation
    instant and no older than ``max_age`` there.

    Args:
        known_times: ``(n,)`` known-at times of a source's values (UTC-aware, any order).
        bar_times: ``(n_bars,)`` bar times: OPEN times when ``timeframe`` is given (the value
            must be known at the close, open + timeframe), else the evaluation instants.
        timeframe: bar duration, or ``None``.
        max_age: freshness limit (``None``: any earlier value counts).

    Returns:
        A fraction in [0, 1].

    Raises:
        ValueError: no bars, or naive/missing times.
    """
    instants = utc_times(bar_times, "bar_times")
    if len(instants) == 0:
        raise ValueError("coverage: no bars given (rule: non_empty)")
    if timeframe is not None:
        instants = instants + to_timedelta(timeframe, "timeframe")
    known = np.sort(utc_times(known_times, "known_times").asi8)
    if len(known) == 0:
        return 0.0
    pos = np.searchsorted(known, instants.asi8, side="right") - 1
    has = pos >= 0
    if max_age is not None:
        limit = to_timedelta(max_age, "max_age").value
        age = instants.asi8 - known[np.clip(pos, 0, None)]
        has &= age <= limit
    return float(has.mean())


def _bars(bars: pd.DataFrame) -> pd.Series:
    """Spot closes indexed by bar open time from a candle frame (``timestamp`` column or a
    DatetimeIndex)."""
    if "close" not in bars.columns:
        raise ValueError(f"bars: missing column 'close'; found {list(bars.columns)} "
                         "(rule: required_columns)")
    times = bars["timestamp"] if "timestamp" in bars.columns else bars.index
    idx = _bar_times(times, "bars.timestamp")
    return pd.Series(pd.to_numeric(bars["close"]).to_numpy(dtype="float64"), index=idx)


def build_family_features(
    bars: pd.DataFrame,
    timeframe: str,
    sources: Mapping[str, Any],
    families: Sequence[str],
    params: FamilyParams | Mapping[str, Any] | None = None,
) -> FamilyFeatures:
    """Join the requested families onto the bars (coverage policy in the module docstring).

    Args:
        bars: candles with ``timestamp`` (open time, UTC; or a DatetimeIndex) and ``close``;
            strictly increasing, gaps allowed.
        timeframe: bar duration (``1h``).
        sources: source frames by key (:data:`SOURCE_KEYS`): ``funding``, ``mark``,
            ``open_interest``, ``liquidations``, ``liquidations_coverage`` (``(start, end)``),
            ``candles_1m``, ``sentiment`` (daily index ``timestamp, value``), ``headlines``
            (``timestamp, text`` or scored ``timestamp, compound``). Missing keys are allowed.
        families: names from :data:`FAMILIES` or :data:`GROUPS` (not ``price``).
        params: :class:`FamilyParams` or a mapping of its fields.

    Returns:
        :class:`FamilyFeatures` aligned with ``bars``.

    Raises:
        ValueError: unknown families, source keys or parameters; invalid source data (the
            family functions name the column and the rule).
    """
    p = FamilyParams.from_mapping(params)
    names = expand_families(families)
    unknown = sorted(set(sources) - set(SOURCE_KEYS))
    if unknown:
        raise ValueError(f"unknown source key(s) {unknown}; known: {list(SOURCE_KEYS)}")
    close = _bars(bars)
    idx = pd.DatetimeIndex(close.index)
    parts: list[pd.DataFrame] = []
    for fam in names:
        src = sources.get(_FAMILY_SOURCE[fam])
        if fam == "funding":
            part = funding_features(
                src, idx, timeframe, change_settlements=p.funding_change_settlements,
                z_window=p.funding_z_window, z_min_share=p.funding_z_min_share,
                max_age_settlements=p.funding_max_age_settlements,
                primary_exchange=p.funding_primary_exchange, delay=p.funding_delay)
        elif fam == "basis":
            part = basis_features(src, close, timeframe, mark_timeframe=p.mark_timeframe,
                                  change_bars=p.basis_change_bars, max_age=p.basis_max_age)
        elif fam == "open_interest":
            part = open_interest_features(
                src, close, timeframe, value_column=p.oi_value_column, exchange=p.oi_exchange,
                changes=p.oi_changes, z_window=p.oi_z_window, z_min_share=p.funding_z_min_share,
                max_age_intervals=p.oi_max_age_intervals, delay=p.oi_delay)
        elif fam == "liquidations":
            part = liquidation_features(
                src, idx, timeframe, windows=p.liquidation_windows,
                imbalance_window=p.liquidation_imbalance_window,
                density_window=p.liquidation_density_window, cascade_window=p.cascade_window,
                cascade_min_events=p.cascade_min_events, cascade_min_usd=p.cascade_min_usd,
                coverage=sources.get("liquidations_coverage"),
                max_silence=p.liquidation_max_silence, candles_1m=sources.get("candles_1m"),
                large_usd=p.large_liquidation_usd, post_window=p.post_liquidation_window,
                post_lookback=p.post_liquidation_lookback)
        elif fam == "sentiment":
            part = daily_index_features(
                src, idx, timeframe, bars_close=close, name=p.sentiment_name,
                changes=p.sentiment_changes, z_days=p.sentiment_z_days,
                z_min_days=p.sentiment_z_min_days, return_days=p.sentiment_return_days)
        else:  # headlines
            scored = src
            if src is not None and len(src) and "compound" not in src.columns:
                scored = score_headlines(src)
            part = headline_features(scored, idx, timeframe, window=p.headline_window)
        parts.append(part)
    frame = pd.concat(parts, axis=1) if parts else pd.DataFrame(index=idx)
    frame.index = idx.rename(BAR_INDEX)
    flags = {fam: flag_name(fam) for fam in names}
    for col in flags.values():
        frame[col] = frame[col].astype("int8")
    cov = {fam: float(frame[col].mean()) if len(frame) else 0.0 for fam, col in flags.items()}
    feats = [c for c in frame.columns if c not in flags.values()]
    return FamilyFeatures(frame=frame, feature_names=feats, flags=flags, coverage=cov)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------

def _window(start: Any, end: Any, lookback: str | pd.Timedelta) -> tuple[pd.Timestamp,
                                                                         pd.Timestamp]:
    return (to_utc(start, "start", naive="raise") - to_timedelta(lookback, "lookback"),
            to_utc(end, "end", naive="raise"))


def load_sources(
    bind: Engine | Connection,
    symbol: str,
    start: Any,
    end: Any,
    *,
    exchange: str | None = None,
    lookback: str | pd.Timedelta = "45D",
    sentiment_source: str = FEAR_GREED_SOURCE,
    sentiment_symbol: str | None = None,
) -> dict[str, Any]:
    """Read the family sources of ``symbol`` from the brain store (half-open ``[start -
    lookback, end)``; the lookback feeds the 30-day z-scores and 7-day changes of the first
    bars).

    Mark-price candles are not in the store (they are candles: pass them as ``sources["mark"]``
    from the candle lake); headline texts are not either.

    The daily index comes from ``sentiment_scores`` rows of ``sentiment_source`` (default
    :data:`FEAR_GREED_SOURCE`), mapped back to 0-100 with ``value = 50 × (score + 1)``.

    Args:
        bind: an Engine or Connection on the store (schema at head).
        symbol: ``BTC/USDT`` (store convention).
        start, end: UTC-aware bounds of the bars to build.
        exchange: keep one exchange's funding/open interest/liquidations (default: all).
        lookback: extra history before ``start``.
        sentiment_source: the ``source`` of the daily index rows.
        sentiment_symbol: the ``symbol`` the index is stored under (default ``symbol``).

    Returns:
        ``{"funding", "open_interest", "liquidations", "sentiment"}`` frames (possibly empty),
        ready for :func:`build_family_features`.

    Raises:
        ValueError: naive ``start``/``end``.
    """
    lo, hi = _window(start, end, lookback)
    funding = funding_frame(bind, symbol, lo, hi, exchange=exchange)
    oi = open_interest_frame(bind, symbol, lo, hi, exchange=exchange)
    liq = liquidation_frame(bind, symbol, lo, hi, exchange=exchange)
    sent = sentiment_frame(bind, sentiment_symbol or symbol, lo, hi, source=sentiment_source)
    index = pd.DataFrame({"timestamp": sent["timestamp"],
                          "value": 50.0 * (sent["score"].astype("float64") + 1.0)})
    return {"funding": funding, "open_interest": oi, "liquidations": liq, "sentiment": index}


_KIND = re.compile(r"^(?P<exchange>[A-Za-z0-9]+)-(?P<market>[^_]+)_(?P<symbol>[^_]+)_"
                   r"(?P<kind>[^_]+)_(?P<first>\d{8})-(?P<last>\d{8})\.parquet$")


def _compact(symbol: str) -> tuple[str, str]:
    """``BTC/USDT`` or ``BTCUSDT`` or ``BTC/USDT:USDT`` -> (``BTCUSDT``, ``BTC``)."""
    pair = symbol.split(":", 1)[0]
    if "/" in pair:
        base, quote = pair.split("/", 1)
        return f"{base}{quote}".upper(), base.upper()
    upper = pair.upper()
    for quote in ("FDUSD", "USDT", "USDC", "BUSD", "TUSD"):
        if upper.endswith(quote) and len(upper) > len(quote):
            return upper, upper[: -len(quote)]
    return upper, upper


def _files(root: Path, folder: str, kind_prefix: str, symbols: Sequence[str]) -> list[Path]:
    found = []
    for path in sorted((root / folder).rglob("*.parquet")):
        m = _KIND.match(path.name)
        if m and m["kind"].startswith(kind_prefix) and m["symbol"].upper() in symbols:
            found.append(path)
    return found


def _clip(frame: pd.DataFrame, lo: pd.Timestamp | None, hi: pd.Timestamp | None,
          column: str = "timestamp") -> pd.DataFrame:
    if lo is None and hi is None:
        return frame.reset_index(drop=True)
    ts = utc_times(frame[column], column)
    keep = np.ones(len(frame), dtype=bool)
    if lo is not None:
        keep &= ts >= lo
    if hi is not None:
        keep &= ts < hi
    return frame.loc[keep].reset_index(drop=True)


def load_sources_from_files(
    data_dir: str | Path,
    symbol: str,
    start: Any = None,
    end: Any = None,
    *,
    lookback: str | pd.Timedelta = "45D",
    liquidations: str = "events",
    daily_oi_delay: str | pd.Timedelta = "1D",
) -> dict[str, Any]:
    """Read the family sources of ``symbol`` from Parquet files laid out as ../shared/data
    (``<exchange>-<market>_<SYMBOL>_<kind>_<first>-<last>.parquet`` under ``derivatives/``,
    ``liquidations/``, ``sentiment/``), for runs without a store.

    - ``funding``: ``*_<SYM>_funding_*`` (all exchanges found, with an ``exchange`` column).
    - ``mark``: ``*_<SYM>_mark-<tf>_*`` (first file found).
    - ``open_interest``: ``*_<SYM>_open-interest*`` or ``*_<BASE>_open-interest*``. A DAILY
      file (kind ``open-interest-1d``) gets ``known_at = timestamp + daily_oi_delay`` (default
      1 day): such vendor series stamp a day's value at the day start without saying whether it
      is the opening or closing snapshot, so it is used only once the day is over.
    - ``liquidations``: ``events`` (``*_liquidation-events_*``, rows of ``symbol``) or
      ``minute`` (``*_liquidations-1min-agg_*`` buckets, :func:`minute_aggregates_to_events`);
      ``liquidations_coverage`` = the file's first/last time over ALL symbols (the collector
      ran then even when ``symbol`` had no liquidation).
    - ``sentiment``: ``sentiment/*fear-greed-1d*`` (the daily index, market-wide).

    Args:
        data_dir: the data root (``../shared/data``).
        symbol: ``BTC/USDT`` or ``BTCUSDT``.
        start, end: UTC-aware bounds of the bars to build (``None``: everything); rows in
            ``[start - lookback, end)`` are kept.
        lookback: extra history before ``start``.
        liquidations: ``events`` or ``minute``.
        daily_oi_delay: known-at delay of daily open-interest files.

    Returns:
        Source frames by key (keys only for files found), for :func:`build_family_features`.

    Raises:
        ValueError: ``data_dir`` missing, naive bounds, unknown ``liquidations`` kind.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise ValueError(f"data_dir {root} is not a directory")
    if liquidations not in ("events", "minute"):
        raise ValueError(f"liquidations={liquidations!r}: expected 'events' or 'minute'")
    lo = None if start is None else (to_utc(start, "start", naive="raise")
                                     - to_timedelta(lookback, "lookback"))
    hi = None if end is None else to_utc(end, "end", naive="raise")
    sym, base = _compact(symbol)
    out: dict[str, Any] = {}

    funding = []
    for path in _files(root, "derivatives", "funding", [sym]):
        m = _KIND.match(path.name)
        assert m is not None
        funding.append(pd.read_parquet(path).assign(exchange=m["exchange"].lower()))
    if funding:
        f = pd.concat(funding, ignore_index=True)
        f = f.sort_values("timestamp", kind="stable").drop_duplicates(
            ["exchange", "timestamp"], keep="last")
        out["funding"] = _clip(f, lo, hi)
    marks = _files(root, "derivatives", "mark-", [sym])
    if marks:
        out["mark"] = _clip(pd.read_parquet(marks[0]), lo, hi)
    oi_files = _files(root, "derivatives", "open-interest", [sym, base])
    if oi_files:
        path = oi_files[0]
        m = _KIND.match(path.name)
        assert m is not None
        oi = pd.read_parquet(path)
        delay = to_timedelta(daily_oi_delay, "daily_oi_delay") if m["kind"].endswith(
            "-1d") else pd.Timedelta(0)
        oi[KNOWN_AT] = utc_times(oi["timestamp"], "timestamp") + delay
        out["open_interest"] = _clip(oi, lo, hi)
    kind = "liquidation-events" if liquidations == "events" else "liquidations-1min-agg"
    liq_files = [p for p in sorted((root / "liquidations").rglob("*.parquet"))
                 if (m2 := _KIND.match(p.name)) and m2["kind"] == kind]
    if liq_files:
        raw = pd.read_parquet(liq_files[0])
        ts = utc_times(raw["timestamp"], "timestamp")
        if liquidations == "events":
            events = raw.loc[raw["symbol"].astype(str).str.upper() == sym]
            cov = (ts.min(), ts.max())  # the collector's run: all symbols
        else:
            events = minute_aggregates_to_events(raw, sym)
            cov = (ts.min() - pd.Timedelta(minutes=1), ts.max())
        out["liquidations"] = _clip(events, lo, hi)
        out["liquidations_coverage"] = (cov[0] if lo is None else max(cov[0], lo),
                                        cov[1] if hi is None else min(cov[1], hi))
    fg = sorted((root / "sentiment").glob("*fear-greed-1d*.parquet"))
    if fg:
        out["sentiment"] = _clip(pd.read_parquet(fg[0]), lo, hi)
    return out
