"""Sentiment features: a daily index (the Crypto Fear & Greed Index) and VADER headline scores.

Daily index (alternative.me Fear & Greed, value 0-100; 0 = extreme fear): the value stamped at
a day's start (UTC) is published during that day, so it is known at day start + 1 day and is used
only by bars that OPEN on the next day or later (:func:`huracan.features.asof.daily_index_known_at`,
joined with ``at="open"``). This is one bar stricter than the general close-inclusive rule would
allow for the bar closing exactly at midnight, leaving a margin for the unknown publication time.
All daily statistics are computed on the calendar-day series (a missing day is a NaN day, never
filled) and are fresh for the day after their known-at only.

Headlines: :func:`score_headlines` runs VADER (Hutto & Gilbert 2014, "VADER: A Parsimonious
Rule-based Model for Sentiment Analysis of Social Media Text", ICWSM) with its lexicon extended by
crypto-market terms (:data:`CRYPTO_LEXICON`); :func:`headline_features` aggregates the scores per
bar. A headline is known at its ``timestamp`` (publication time).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pandas as pd
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from huracan.features.asof import (
    KNOWN_AT,
    asof_join,
    bar_times,
    daily_index_known_at,
    to_timedelta,
    utc_times,
)
from huracan.features.derivatives import duration_name

_DAY = pd.Timedelta(days=1)

#: Crypto-market terms added to VADER's lexicon, valences on VADER's -4..+4 scale. Anchors from
#: VADER's own lexicon: good +1.9, great +3.1, win +2.8, gain +2.4, approval +2.1; bad -2.5,
#: crash -1.7, collapse -2.2, panic -2.3, fraud -2.8, scam -2.7, hacked -1.7, dump -1.6.
#: Price-move verbs are scored by the size of the move they report: strong moves (surge, soar,
#: plunge, plummet) about as strong as "gain"/"collapse"; milder ones (rise, rebound, slide, dip)
#: near "good"/"drop". Market-stance words (bullish/bearish) carry a clear opinion, +-2.2 like
#: "approval"/"fear". Crash words are raised from VADER's generic "crash" (-1.7: also a car or
#: software crash) to -2.5 ("bad"): in market headlines a crash is always a large loss. Being
#: liquidated (a forced loss of the whole margin) is -2.1; "rekt" (slang for a ruinous loss) -2.8
#: like "fraud". Hype slang is discounted: "pump" +1.2 (it often means manipulation), "moon"
#: +1.5, "mooning" +2.4 (a rally in progress); "hodl" +0.8 (holding through a fall: mild
#: confidence); "fud" -1.9 (fear, uncertainty and doubt: a negative story). "ath" (all-time
#: high) +2.4 like "gain". Hacks, exploits and rug pulls are among the worst crypto news: -2.5 to
#: -3.0 (VADER's "exploit" is -0.4 because it also means "to make use of").
CRYPTO_LEXICON: dict[str, float] = {
    # up moves and stance
    "surge": 2.2, "surges": 2.2, "surged": 2.2, "surging": 2.2,
    "soar": 2.3, "soars": 2.3, "soared": 2.3, "soaring": 2.3,
    "skyrocket": 2.5, "skyrockets": 2.5, "skyrocketed": 2.5, "skyrocketing": 2.5,
    "rally": 1.9, "rallies": 1.9, "rallied": 1.9, "rallying": 1.9,
    "rebound": 1.5, "rebounds": 1.5, "rebounded": 1.5, "rebounding": 1.5,
    "rise": 1.2, "rises": 1.2, "rising": 1.2, "jump": 1.6, "jumps": 1.6, "jumped": 1.6,
    "breakout": 1.6, "bullish": 2.2, "bull": 1.5, "bulls": 1.2,
    "ath": 2.4, "moon": 1.5, "mooning": 2.4, "pump": 1.2, "pumps": 1.2, "pumping": 1.2,
    "hodl": 0.8, "hodling": 0.8, "inflows": 1.0, "adoption": 1.3,
    # down moves and stance
    "bearish": -2.2, "bear": -1.5, "bears": -1.2,
    "crash": -2.5, "crashes": -2.5, "crashed": -2.5, "crashing": -2.5,
    "plunge": -2.3, "plunges": -2.3, "plunged": -2.3, "plunging": -2.3,
    "plummet": -2.5, "plummets": -2.5, "plummeted": -2.5, "plummeting": -2.5,
    "tumble": -1.9, "tumbles": -1.9, "tumbled": -1.9, "tumbling": -1.9,
    "slump": -1.9, "slumps": -1.9, "slumped": -1.9, "selloff": -2.0, "sell-off": -2.0,
    "slide": -1.2, "slides": -1.2, "slid": -1.2, "dip": -0.8, "dips": -0.8,
    "dump": -1.9, "dumps": -1.9, "dumped": -1.9, "dumping": -1.9,
    "liquidated": -2.1, "liquidation": -1.7, "liquidations": -1.7,
    "rekt": -2.8, "capitulation": -2.4, "fud": -1.9, "outflows": -1.0,
    "hack": -2.5, "hacks": -2.5, "exploit": -2.2, "exploited": -2.5, "drained": -2.2,
    "rug": -2.5, "rugpull": -3.0, "delist": -2.0, "delisted": -2.0, "delisting": -2.0,
    "bankruptcy": -2.6, "insolvent": -2.6, "depeg": -2.3, "depegs": -2.3,
}


@functools.cache
def crypto_analyzer() -> SentimentIntensityAnalyzer:
    """A VADER analyzer whose lexicon is VADER's own updated with :data:`CRYPTO_LEXICON`
    (one instance, built once; the module-level VADER lexicon is not touched)."""
    analyzer = SentimentIntensityAnalyzer()
    analyzer.lexicon = {**analyzer.lexicon, **CRYPTO_LEXICON}
    return analyzer


def score_headlines(headlines: pd.DataFrame, *, text_column: str = "text",
                    timestamp_column: str = "timestamp") -> pd.DataFrame:
    """VADER scores of each headline with the crypto-extended lexicon.

    Args:
        headlines: ``(n, k)`` frame with ``timestamp`` (publication time, UTC) and ``text``.

    Returns:
        ``(n, 6)`` frame (same index and order): ``timestamp``, ``text``, ``neg``, ``neu``,
        ``pos`` (shares of the text, summing to 1) and ``compound`` (normalised sum of
        valences, in [-1, 1]; VADER's thresholds: >= 0.05 positive, <= -0.05 negative).

    Raises:
        ValueError: a missing column, naive/missing timestamps, or a missing text (rule:
            not_null).
    """
    for col in (timestamp_column, text_column):
        if col not in headlines.columns:
            raise ValueError(f"headlines: missing column {col!r}; found "
                             f"{list(headlines.columns)} (rule: required_columns)")
    ts = utc_times(headlines[timestamp_column], timestamp_column)
    texts = headlines[text_column]
    if texts.isna().any():
        i = int(np.flatnonzero(texts.isna().to_numpy())[0])
        raise ValueError(f"headlines: column {text_column!r} row {i} is missing "
                         "(rule: not_null)")
    analyzer = crypto_analyzer()
    scores = [analyzer.polarity_scores(str(t)) for t in texts]
    out = pd.DataFrame(scores, index=headlines.index, columns=["neg", "neu", "pos", "compound"])
    out.insert(0, "text", texts.astype(str).to_numpy())
    out.insert(0, "timestamp", ts)
    return out


def headline_columns(window: str | pd.Timedelta = "24h") -> list[str]:
    """Feature names of :func:`headline_features` (without the flag)."""
    w = duration_name(to_timedelta(window, "window"))
    return [f"headline_sentiment_{w}", f"headline_count_{w}"]


def headline_features(scores: pd.DataFrame | None, bar_open_times: Any,
                      timeframe: str | pd.Timedelta, *, window: str | pd.Timedelta = "24h",
                      coverage_start: Any = None) -> pd.DataFrame:
    """Headline sentiment at each bar close ``c``.

    - ``headline_sentiment_<w>``: mean VADER ``compound`` of the headlines published in
      ``(c - w, c]`` (in [-1, 1]); NaN when there were none (no opinion is not neutral).
    - ``headline_count_<w>``: number of those headlines.
    - ``headlines_available``: 1 when ``c - w >= coverage_start`` (default: the first headline).

    Args:
        scores: output of :func:`score_headlines` (``timestamp``, ``compound``); ``None``/empty:
            NaN features, flag 0.

    Returns:
        ``(n_bars, 3)`` frame indexed by bar open time.

    Raises:
        ValueError: missing columns or naive times.
    """
    bars = bar_times(bar_open_times)
    names = headline_columns(window)
    if scores is None or len(scores) == 0:
        out = pd.DataFrame(np.nan, index=bars, columns=names)
        out["headlines_available"] = 0
        return out
    if "compound" not in scores.columns:
        raise ValueError("headline scores: missing column 'compound' (rule: required_columns)")
    ts = utc_times(scores["timestamp"], "timestamp")
    order = np.argsort(ts.asi8, kind="stable")
    t = ts.asi8[order]
    comp = scores["compound"].to_numpy(dtype="float64")[order]
    w = to_timedelta(window, "window").value
    closes = (bars + to_timedelta(timeframe, "timeframe")).asi8
    hi = np.searchsorted(t, closes, side="right")
    lo = np.searchsorted(t, closes - w, side="right")
    cum = np.concatenate([[0.0], np.cumsum(comp)])
    n = (hi - lo).astype("float64")
    mean = np.divide(cum[hi] - cum[lo], n, out=np.full_like(n, np.nan), where=n > 0)
    start = (utc_times([coverage_start], "coverage_start")[0].value
             if coverage_start is not None else t[0])
    ok = closes - w >= start
    out = pd.DataFrame({names[0]: np.where(ok, mean, np.nan), names[1]: np.where(ok, n, np.nan)},
                       index=bars)
    out["headlines_available"] = ok.astype("int8")
    return out


# --------------------------------------------------------------------------------------------
# Daily index
# --------------------------------------------------------------------------------------------

def daily_index_columns(name: str = "fear_greed", changes: tuple[int, ...] = (3, 7),
                        with_divergence: bool = True) -> list[str]:
    """Feature names of :func:`daily_index_features` (without the flag)."""
    cols = [name, *(f"{name}_chg_{d}d" for d in changes)]
    return [*cols, f"{name}_divergence"] if with_divergence else cols


def daily_index_table(
    index: pd.DataFrame,
    bars_close: pd.Series | None = None,
    timeframe: str | pd.Timedelta | None = None,
    *,
    name: str = "fear_greed",
    value_column: str = "value",
    changes: tuple[int, ...] = (3, 7),
    z_days: int = 30,
    z_min_days: int = 24,
    return_days: int = 7,
    value_range: tuple[float, float] | None = (0.0, 100.0),
) -> pd.DataFrame:
    """Daily-index statistics, one row per calendar day from the first to the last day.

    Row for day d (known at d + 1 day):

    - ``<name>``: the value of day d (index points, 0-100 for Fear & Greed).
    - ``<name>_chg_<k>d``: value(d) - value(d - k days) (index points).
    - ``<name>_divergence`` (with ``bars_close``): ``z(value) - z(r)``, both z-scores over the
      last ``z_days`` days including d (sample std; at least ``z_min_days`` present), where
      ``r = ln(P(d+1) / P(d+1 - return_days))`` and ``P(x)`` is the close of the bar closing
      exactly at midnight ``x`` (known then). Positive: sentiment is more bullish, relative to
      its last month, than the recent price trend is relative to its own (a crowd running ahead
      of price); negative: fear despite the price. A constant window gives z = 0.

    Args:
        index: ``timestamp`` (UTC day starts) and ``value_column``.
        bars_close: spot closes indexed by bar open time (for the divergence), or ``None``.
        timeframe: bar duration of ``bars_close``.
        value_range: allowed range of values (``None``: unchecked).

    Returns:
        Frame with ``known_at`` and the columns above.

    Raises:
        ValueError: a missing column, a timestamp that is not a day start, a duplicate day
            (rule: unique_day), a value outside ``value_range`` (rule: value_range).
    """
    if value_column not in index.columns:
        raise ValueError(f"daily index: missing column {value_column!r}; found "
                         f"{list(index.columns)} (rule: required_columns)")
    table = daily_index_known_at(index)
    day = pd.DatetimeIndex(table[KNOWN_AT]) - _DAY
    vals = pd.to_numeric(table[value_column], errors="coerce").astype("float64")
    if value_range is not None:
        lo, hi = value_range
        bad = vals.notna() & ((vals < lo) | (vals > hi))
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(f"daily index: column {value_column!r} row {i}: {vals.iloc[i]} "
                             f"outside [{lo}, {hi}] (rule: value_range)")
    if day.duplicated().any():
        raise ValueError(f"daily index: day {day[day.duplicated()][0]} appears twice "
                         "(rule: unique_day)")
    s = pd.Series(vals.to_numpy(), index=day).sort_index()
    days = pd.date_range(s.index.min(), s.index.max(), freq="D")
    s = s.reindex(days)
    out = pd.DataFrame({name: s.to_numpy()}, index=days)
    for k in changes:
        out[f"{name}_chg_{k}d"] = (s - s.shift(k)).to_numpy()
    if bars_close is not None:
        if timeframe is None:
            raise ValueError("daily index: pass timeframe with bars_close")
        step = to_timedelta(timeframe, "timeframe")
        closes = pd.Series(bars_close.to_numpy(dtype="float64"),
                           index=bar_times(bars_close.index, "bars_close.index") + step)
        p = closes.reindex(days + _DAY)
        p_then = closes.reindex(days + _DAY - pd.Timedelta(days=return_days))
        r = pd.Series(np.log(p.to_numpy() / p_then.to_numpy()), index=days)
        out[f"{name}_divergence"] = (_day_z(s, z_days, z_min_days)
                                     - _day_z(r, z_days, z_min_days)).to_numpy()
    out.insert(0, KNOWN_AT, days + _DAY)
    return out.reset_index(drop=True)


def _day_z(s: pd.Series, days: int, min_days: int) -> pd.Series:
    roll = s.rolling(days, min_periods=min_days)
    mean, std = roll.mean(), roll.std()
    z = ((s - mean) / std).where(~(std < 1e-12), 0.0)
    return z.where(s.notna() & std.notna())


def daily_index_features(
    index: pd.DataFrame | None,
    bar_open_times: Any,
    timeframe: str | pd.Timedelta,
    *,
    bars_close: pd.Series | None = None,
    name: str = "fear_greed",
    value_column: str = "value",
    changes: tuple[int, ...] = (3, 7),
    z_days: int = 30,
    z_min_days: int = 24,
    return_days: int = 7,
    value_range: tuple[float, float] | None = (0.0, 100.0),
) -> pd.DataFrame:
    """Daily-index features (:func:`daily_index_table`) at each bar, next-day rule: a bar sees
    day d's row when it OPENS at or after d + 1 day, and only for one day (a missing day is NaN,
    never the day before carried forward).

    Columns: ``<name>``, ``<name>_chg_<k>d``, ``<name>_divergence`` (with ``bars_close``) and
    ``sentiment_available`` (1 when ``<name>`` is known for the bar).

    Args:
        index: ``timestamp`` (UTC day start), ``value``; ``None``/empty: NaN features, flag 0.
        bar_open_times: ``(n_bars,)`` strictly increasing UTC open times.
        timeframe: bar duration.
        bars_close: spot closes indexed by bar open time (enables the divergence).
        Others: see :func:`daily_index_table`.

    Returns:
        ``(n_bars, k)`` frame indexed by bar open time.

    Raises:
        ValueError: as :func:`daily_index_table`.
    """
    bars = bar_times(bar_open_times)
    names = daily_index_columns(name, changes, bars_close is not None)
    if index is None or len(index) == 0:
        out = pd.DataFrame(np.nan, index=bars, columns=names)
        out["sentiment_available"] = 0
        return out
    table = daily_index_table(index, bars_close, timeframe, name=name,
                              value_column=value_column, changes=changes, z_days=z_days,
                              z_min_days=z_min_days, return_days=return_days,
                              value_range=value_range)
    # fresh while age < 1 day: the next day's row (or its absence) takes over at d + 2 days
    joined = asof_join(bars, timeframe, table, names, _DAY - pd.Timedelta(1, "ns"), at="open")
    joined["sentiment_available"] = joined[name].notna().astype("int8")
    return joined
