"""Feature importance summed per family: which kind of information a model uses.

The families are those of :func:`huracan.features.naming.feature_family` (``own`` candles,
``context`` markets, ``higher_timeframe`` bars, ``market_structure``, the pooled ``symbol``
code). A family's importance is the sum of its features' importances
(:func:`huracan.features.naming.family_totals`), reported as a SHARE of the total over all
features (a fraction in ``[0, 1]``; the shares of one method sum to 1):

- ``shap``: mean |SHAP value| per feature (model output units) summed per family. Summing mean
  |SHAP| is the usual grouping of TreeSHAP attributions (Lundberg et al. 2020, "From local
  explanations to global understanding with explainable AI for trees", Nature MI 2: group
  importance as the sum of the members' attributions).
- ``permutation``: mean loss increase per feature, clipped at 0 before summing (a negative
  increase means shuffling the feature helped: it carries no information the model uses, so it
  counts as 0, not as a negative share). This is the sum of single-feature permutations, not the
  permutation of the whole family at once (correlated members can mask each other; the shares
  are a reading aid, not an additive decomposition of the loss).

When a method's total is 0 (no feature moved the loss) its shares are all 0 and its ``total``
says so. Logged by :mod:`huracan.analysis.analyzer` as the run metrics
``importance/family_<family>_<method>`` and the artifact ``importance/families.json`` (the pooled
job logs each symbol's SHAP shares as ``importance/<PAIR>/family_<family>_shap`` and
``<PAIR>/importance/families.json``); the nightly importance step prints :func:`describe` of each
run's stored ranking.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from huracan.features.naming import FEATURE_FAMILIES, family_totals, feature_family
from huracan.tracking.names import importance_metric

#: the importance methods summed per family, in report order
FAMILY_METHODS: tuple[str, ...] = ("shap", "permutation")
ARTIFACT = "importance/families.json"

#: plain words per family for reports
FAMILY_WORDS: dict[str, str] = {
    "own": "its own candles",
    "context": "other markets (context)",
    "higher_timeframe": "higher timeframes",
    "market_structure": "market structure",
    "symbol": "the symbol code",
}


def family_sums(values: np.ndarray | Sequence[float], feature_names: Sequence[str]
                ) -> dict[str, float]:
    """Per-family sum of ``values`` (one per feature, negatives clipped to 0).

    Args:
        values: importance per feature, shape ``(f,)``.
        feature_names: the ``f`` column names.

    Returns:
        ``{family: sum}`` for every family with a feature, in :data:`FEATURE_FAMILIES` order.

    Raises:
        ValueError: on a length mismatch or NaN values.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if len(v) != len(feature_names):
        raise ValueError(f"{len(v)} importances for {len(feature_names)} features")
    if np.isnan(v).any():
        raise ValueError("NaN importance")
    return family_totals(zip([str(n) for n in feature_names], np.clip(v, 0.0, None).tolist(),
                             strict=True))


def shares_of(sums: Mapping[str, float]) -> dict[str, float]:
    """``sums`` divided by their total (all 0 when the total is 0); same keys and order."""
    total = float(sum(sums.values()))
    return {k: (float(v) / total if total > 0 else 0.0) for k, v in sums.items()}


def family_report(importances: Mapping[str, np.ndarray], feature_names: Sequence[str]
                  ) -> dict[str, Any]:
    """The per-family importance of one analysis (the content of ``importance/families.json``).

    Args:
        importances: method -> importance per feature (``ImportanceResult.importances``); only
            the methods of :data:`FAMILY_METHODS` present are summed.
        feature_names: the ``f`` columns.

    Returns:
        ``{"features": {family: n_features}, "methods": {method: {"shares": {family: fraction},
        "sums": {family: value}, "total": value}}, "summary": describe(...)}``; the summary
        uses SHAP when present, else permutation.
    """
    names = [str(n) for n in feature_names]
    counts: dict[str, int] = {}
    for n in names:
        fam = feature_family(n)
        counts[fam] = counts.get(fam, 0) + 1
    methods: dict[str, Any] = {}
    for method in FAMILY_METHODS:
        if method not in importances:
            continue
        sums = family_sums(importances[method], names)
        methods[method] = {"shares": shares_of(sums), "sums": sums,
                           "total": float(sum(sums.values()))}
    lead = next(iter(methods), None)
    return {"features": {f: counts[f] for f in FEATURE_FAMILIES if f in counts},
            "methods": methods,
            "summary": describe(methods[lead]["shares"], lead) if lead else "no importance"}


def shap_families(values: np.ndarray, feature_names: Sequence[str]) -> dict[str, Any]:
    """:func:`family_report` of SHAP values alone (``values`` of shape ``(n, f)``: mean |SHAP|
    per feature summed per family), for a job that explains without the importance loop (the
    pooled job, per symbol).

    Raises:
        ValueError: ``values`` is not ``(n, f)`` with ``f`` = ``len(feature_names)``.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != len(feature_names):
        raise ValueError(f"SHAP values of shape {v.shape} for {len(feature_names)} features")
    return family_report({"shap": np.abs(v).mean(axis=0)}, feature_names)


def family_metrics(report: Mapping[str, Any], pair: str | None = None) -> dict[str, float]:
    """``importance/family_<family>_<method>``: the shares of :func:`family_report`
    (``importance/<pair>/family_...`` for one symbol of a pooled job, ``pair`` e.g.
    ``BTCUSDT``; :func:`huracan.tracking.names.importance_metric`)."""
    return {importance_metric(f"family_{fam}_{method}", pair): float(share)
            for method, block in report["methods"].items()
            for fam, share in block["shares"].items()}


def describe(shares: Mapping[str, float], method: str = "shap") -> str:
    """One line saying which kind of information the model uses, e.g. ``uses mostly its own
    candles (own 71%, context 22%, higher_timeframe 7%; SHAP)``; families in share order."""
    if not shares or sum(shares.values()) <= 0:
        return f"no feature moved the model ({method})"
    ranked = sorted(shares.items(), key=lambda kv: -kv[1])
    top, share = ranked[0]
    lead = "mostly" if share >= 0.5 else "most of all"
    parts = ", ".join(f"{fam} {100 * s:.0f}%" for fam, s in ranked)
    label = "SHAP" if method == "shap" else method
    return f"uses {lead} {FAMILY_WORDS.get(top, top)} ({parts}; {label})"
