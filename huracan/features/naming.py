"""Feature names and families: which kind of information a model input carries.

Columns are named by where their information comes from, so importance can be summed per family
(:func:`feature_family`) and a nightly report can say whether a model reads its own candles, other
markets, higher timeframes or market structure:

- ``own``: the price features of the target's own candles (:func:`huracan.features.build.
  compute_features`: ``ret_k``, ``rv_n``, ``atr_n``, ``range``, ``close_loc``, ``rsi_n``,
  ``macd*``, ``vol_z_n``, calendar);
- ``context``: ``ctx_<PAIR>_*``, another market's candles (:mod:`huracan.features.context`),
  e.g. ``ctx_ETHUSDT_ret_1``, ``ctx_ETHUSDT_beta_168``, ``ctx_ETHUSDT_available``;
- ``higher_timeframe``: ``htf_<tf>_*``, the own price features on closed higher-timeframe bars
  (:mod:`huracan.features.timeframes`), e.g. ``htf_4h_ret_1``, ``htf_1d_available``;
- ``symbol``: ``symbol`` / ``symbol_<PAIR>``, the pooled model's symbol code or one-hot
  (:mod:`huracan.models.pooled`);
- ``market_structure``: everything else (funding, basis, open interest, liquidations,
  sentiment; :mod:`huracan.features.families`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

#: the families of :func:`feature_family`, in report order
FEATURE_FAMILIES: tuple[str, ...] = ("own", "context", "higher_timeframe", "market_structure",
                                     "symbol")
CONTEXT_PREFIX = "ctx_"
HTF_PREFIX = "htf_"
SYMBOL_COLUMN = "symbol"

_OWN = re.compile(r"^(ret_\d+|rv_\d+|atr_\d+|range|close_loc|rsi_\d+|macd|macd_signal|"
                  r"macd_hist|vol_z_\d+|hour_sin|hour_cos|dow_sin|dow_cos)$")


def compact(symbol: str) -> str:
    """``BTC/USDT`` -> ``BTCUSDT`` (``BTC/USDT:USDT`` -> ``BTCUSDT``): the pair in column and
    file names."""
    return symbol.split(":", 1)[0].replace("/", "").replace("-", "").upper()


def context_prefix(symbol: str) -> str:
    """``ctx_<PAIR>_``: the prefix of a context symbol's columns."""
    return f"{CONTEXT_PREFIX}{compact(symbol)}_"


def htf_prefix(timeframe: str) -> str:
    """``htf_<tf>_``: the prefix of a higher timeframe's columns."""
    return f"{HTF_PREFIX}{timeframe}_"


def symbol_onehot(symbol: str) -> str:
    """``symbol_<PAIR>``: a pooled network's one-hot column of ``symbol``."""
    return f"{SYMBOL_COLUMN}_{compact(symbol)}"


def feature_family(name: str) -> str:
    """The family of feature column ``name`` (one of :data:`FEATURE_FAMILIES`)."""
    if name.startswith(CONTEXT_PREFIX):
        return "context"
    if name.startswith(HTF_PREFIX):
        return "higher_timeframe"
    if name == SYMBOL_COLUMN or name.startswith(SYMBOL_COLUMN + "_"):
        return "symbol"
    if _OWN.match(name):
        return "own"
    return "market_structure"


def family_totals(values: Mapping[str, float] | Iterable[tuple[str, float]]) -> dict[str, float]:
    """Sum per-feature values (e.g. mean |SHAP|) per family; every family of
    :data:`FEATURE_FAMILIES` that has a feature appears, in that order."""
    items = values.items() if isinstance(values, Mapping) else values
    sums: dict[str, float] = {}
    for name, value in items:
        fam = feature_family(str(name))
        sums[fam] = sums.get(fam, 0.0) + float(value)
    return {f: sums[f] for f in FEATURE_FAMILIES if f in sums}
