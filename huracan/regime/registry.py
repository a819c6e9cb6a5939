"""The per-regime choice at the end of a sweep, held as registry aliases.

For each regime, the best candidate on its selection window's evidence in that regime (enough
trades there: ``regime.min_trades``), else the product's fallback mapping
(:func:`huracan.regime.selection.select_per_regime`); each choice goes through the same gate and
history as ``production`` (:func:`huracan.registry.promotion.gate_candidate` with alias
``regime-<name>``, scored on the unseen window's bars of that regime), and the whole map is a tag
of the registered model (``huracan.regime_map``).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from huracan.regime.detection import REGIMES
from huracan.regime.selection import RegimeChoice, select_per_regime

log = logging.getLogger(__name__)
REGIME_MAP_TAG = "huracan.regime_map"
ALIAS_PREFIX = "regime-"


def candidate_name(result: Mapping[str, Any]) -> str:
    """``<model_type>:<run id prefix>``: names the fallback mapping can match by model type."""
    return f"{result['model_type']}:{str(result['run_id'])[:8]}"


def _evidence_frame(result: Mapping[str, Any], window: str) -> pd.DataFrame | None:
    per_regime = (result.get("regime_metrics") or {}).get(window)
    if not per_regime:
        return None
    frame = pd.DataFrame(per_regime).T
    overall = {k.removeprefix(f"{window}_"): v for k, v in result.get("metrics", {}).items()
               if k.startswith(f"{window}_") and "__regime_" not in k}
    overall["bars"] = overall.get("bars", math.nan)
    frame.loc["all"] = pd.Series(overall)
    return frame


def choose(results: Sequence[Mapping[str, Any]], metric: str, min_trades: int,
           extreme_exposure: float) -> dict[str, tuple[RegimeChoice, Mapping[str, Any]]]:
    """Per regime, the chosen candidate (on its selection window: ``val`` or ``oos``) and its
    result; empty when no result carries per-regime evidence."""
    cands: dict[str, pd.DataFrame] = {}
    by_name: dict[str, Mapping[str, Any]] = {}
    for r in results:
        if r.get("status", "ok") != "ok" or r.get("version") is None:
            continue
        window = str(r.get("objective", "val_x")).split("_", 1)[0]
        frame = _evidence_frame(r, window)
        if frame is not None:
            cands[candidate_name(r)] = frame
            by_name[candidate_name(r)] = r
    if not cands:
        return {}
    selection = select_per_regime(cands, metric=metric, min_trades=min_trades,
                                  extreme_exposure=extreme_exposure)
    return {regime: (choice, by_name[choice.model]) for regime, choice in selection.items()
            if regime in REGIMES}


def assign_aliases(client: Any, engine: Any, name: str,
                   chosen: Mapping[str, tuple[RegimeChoice, Mapping[str, Any]]], *,
                   metric: str, tolerance: float, min_eval_bars: int,
                   notifier: Any = None, min_psr: float = 0.9) -> dict[str, dict[str, Any]]:
    """Gate each regime's choice for its ``regime-<name>`` alias (the registry gate's rule on
    the regime's bars, cash floor at ``min_psr`` included) and tag the map on the registered
    model; returns the map (regime -> version, model, exposure, source, reason, decision)."""
    from huracan.registry.promotion import gate_candidate

    mapping: dict[str, dict[str, Any]] = {}
    for regime, (choice, result) in sorted(chosen.items()):
        out = gate_candidate(client, engine, name, str(result["version"]), metric=metric,
                             tolerance=tolerance, notifier=notifier,
                             min_eval_bars=min_eval_bars, min_psr=min_psr,
                             alias=f"{ALIAS_PREFIX}{regime}",
                             regime=regime, selection=choice.to_dict())
        holder = client.get_model_version_by_alias(name, f"{ALIAS_PREFIX}{regime}") \
            if out.event == "promoted" else None
        mapping[regime] = {"candidate_version": str(result["version"]),
                           "version": None if holder is None else str(holder.version),
                           "model": result["model_type"], "exposure": choice.exposure,
                           "source": choice.source, "reason": choice.reason,
                           "decision": out.event, "gate_reason": out.decision.reason}
        print(f"registry: {name} {ALIAS_PREFIX}{regime} <- v{result['version']} "
              f"({result['model_type']}, {choice.source}, exposure {choice.exposure:g}) "
              f"{out.event.upper()}: {out.decision.reason}", flush=True)
    previous = _current_map(client, name)
    for regime, entry in mapping.items():
        if entry["version"] is None and regime in previous:
            entry["version"] = previous[regime].get("version")  # the alias did not move
    client.set_registered_model_tag(name, REGIME_MAP_TAG, json.dumps(mapping)[:5000])
    return mapping


def _current_map(client: Any, name: str) -> dict[str, Any]:
    try:
        raw = client.get_registered_model(name).tags.get(REGIME_MAP_TAG)
    except Exception:  # no registered model yet
        return {}
    return json.loads(raw) if raw else {}
