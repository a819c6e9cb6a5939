"""The per-regime choice at the end of a sweep, held as registry aliases.

For each regime, the best candidate on its selection window's evidence in that regime (enough
trades there: ``regime.min_trades``), else the product's fallback mapping, kept only when it
beats cash on that regime's bars of its selection window (``registry.min_psr``;
:func:`huracan.regime.selection.select_per_regime`); each model choice goes through the same gate
and history as ``production`` (:func:`huracan.registry.promotion.gate_candidate` with alias
``regime-<name>``, scored on the unseen window's bars of that regime). A cash regime takes no
gate: its ``regime-<name>`` alias is removed (or stays unset), and ``huracan select`` answers
position 0 there. The map (per regime the version (None for cash), the model (``cash``),
exposure, source, reason, decision (``cash`` for a cash regime) and the gate's reason) is the
JSON artifact ``registry/regime_map.json`` of a run of the sweep, named by the registered
model's ``huracan.regime_map`` tag (``runs:/...``, a short value), and a table in the model's
Markdown description (:func:`huracan.registry.manifest.refresh_model_description`).
:func:`current_map` reads it, and the whole-map JSON tag registered models carried before.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from huracan.alerts import Alert
from huracan.evaluation.evidence import CASH
from huracan.regime.detection import REGIMES
from huracan.regime.selection import RegimeChoice, select_per_regime

log = logging.getLogger(__name__)
#: the registered-model tag naming the map's artifact (before issue 26: the whole map as JSON)
REGIME_MAP_TAG = "huracan.regime_map"
#: the run artifact holding a regime map (named by the ``huracan.regime_map`` tag)
MAP_ARTIFACT = "registry/regime_map.json"
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


def selection_window(result: Mapping[str, Any]) -> str:
    """The window a result was selected on: ``val`` (forward) or ``oos`` (walk-forward)."""
    return str(result.get("objective", "val_x")).split("_", 1)[0]


#: the per-bar returns artifact of each selection window
RETURNS_ARTIFACT = {"val": "backtest/val_returns.parquet", "oos": "backtest/oos_returns.parquet"}


def selection_frames(client: Any, results: Sequence[Mapping[str, Any]]
                     ) -> dict[str, pd.DataFrame]:
    """Each registered result's executed per-bar returns on its selection window (its MLflow
    artifact ``backtest/val_returns.parquet`` or ``backtest/oos_returns.parquet``, with the
    ``regime`` column the job added), keyed by :func:`candidate_name`; a run without it is left
    out (its regimes then cannot beat cash)."""
    import tempfile

    frames: dict[str, pd.DataFrame] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in results:
            if r.get("status", "ok") != "ok" or not r.get("run_id") or r.get("version") is None:
                continue
            path = RETURNS_ARTIFACT.get(selection_window(r))
            try:
                frame = pd.read_parquet(client.download_artifacts(r["run_id"], path, tmp))
            except Exception:  # no artifact: no evidence against cash
                log.warning("run %s has no %s: its regimes cannot beat cash", r["run_id"], path)
                continue
            if "regime" in frame and "strategy_return" in frame:
                frames[candidate_name(r)] = frame
    return frames


def choose(results: Sequence[Mapping[str, Any]], metric: str, min_trades: int,
           extreme_exposure: float, *, returns: Mapping[str, pd.DataFrame],
           min_psr: float = 0.9) -> dict[str, tuple[RegimeChoice, Mapping[str, Any]]]:
    """Per regime, the chosen candidate (on its selection window: ``val`` or ``oos``) or cash,
    and the result of the candidate considered (for cash: the one that did not beat it); empty
    when no result carries per-regime evidence.

    Args:
        returns: :func:`candidate_name` -> that candidate's per-bar returns on its selection
            window (:func:`selection_frames`), for the cash floor.
        min_psr: ``registry.min_psr``.
    """
    cands: dict[str, pd.DataFrame] = {}
    by_name: dict[str, Mapping[str, Any]] = {}
    for r in results:
        if r.get("status", "ok") != "ok" or r.get("version") is None:
            continue
        frame = _evidence_frame(r, selection_window(r))
        if frame is not None:
            cands[candidate_name(r)] = frame
            by_name[candidate_name(r)] = r
    if not cands:
        return {}
    selection = select_per_regime(cands, metric=metric, min_trades=min_trades,
                                  extreme_exposure=extreme_exposure,
                                  returns={k: v for k, v in returns.items() if k in cands},
                                  min_psr=min_psr)
    return {regime: (choice, by_name[choice.candidate or choice.model])
            for regime, choice in selection.items() if regime in REGIMES}


def assign_aliases(client: Any, engine: Any, name: str,
                   chosen: Mapping[str, tuple[RegimeChoice, Mapping[str, Any]]], *,
                   metric: str, tolerance: float, min_eval_bars: int,
                   notifier: Any = None, min_psr: float = 0.9) -> dict[str, dict[str, Any]]:
    """Gate each regime's model choice for its ``regime-<name>`` alias (the registry gate's rule
    on the regime's bars, cash floor at ``min_psr`` included), take the alias off a cash regime,
    and tag the map on the registered model; returns the map (regime -> version, model,
    exposure, source, reason, decision; a cash regime: version None, model ``cash``, exposure 0,
    decision ``cash``, the reason with the cash verdict's figures, the alias's previous holder
    as ``removed_version``)."""
    from huracan.registry.lock import registry_lock
    from huracan.registry.promotion import alias_version, gate_candidate

    mapping: dict[str, dict[str, Any]] = {}
    for regime, (choice, result) in sorted(chosen.items()):
        if choice.is_cash:
            alias = f"{ALIAS_PREFIX}{regime}"
            with registry_lock(engine, name):  # as the gate moves aliases
                held = alias_version(client, name, alias)
                if held is not None:
                    client.delete_registered_model_alias(name, alias)
            mapping[regime] = {"candidate_version": str(result["version"]), "version": None,
                               "model": CASH, "candidate_model": result["model_type"],
                               "exposure": 0.0, "source": CASH, "reason": choice.reason,
                               "decision": CASH, "gate_reason": None,
                               "removed_version": None if held is None else str(held.version)}
            removed = "" if held is None else f" (alias taken off v{held.version})"
            print(f"registry: {name} {alias} <- CASH (position 0){removed}: {choice.reason}",
                  flush=True)
            if notifier is not None:
                notifier.notify(Alert(f"{name}: {alias} is cash (position 0)", "info",
                                      {"reason": choice.reason}))
            continue
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
    previous = current_map(client, name)
    for regime, entry in mapping.items():
        if entry["version"] is None and entry["decision"] != CASH and regime in previous:
            entry["version"] = previous[regime].get("version")  # the alias did not move
    write_map(client, name, mapping, str(sorted(chosen.items())[0][1][1]["run_id"]))
    return mapping


def write_map(client: Any, name: str, mapping: Mapping[str, Mapping[str, Any]],
              run_id: str) -> str:
    """Store the map: the JSON artifact :data:`MAP_ARTIFACT` of ``run_id`` (a run of the
    sweep that chose it), the registered model's ``huracan.regime_map`` tag naming it
    (``runs:/<run_id>/registry/regime_map.json``), and a table with the whole reasons in the
    model's description (with every alias). Returns the tag's value."""
    from huracan.registry.manifest import refresh_model_description

    client.log_dict(run_id, {k: dict(v) for k, v in mapping.items()}, MAP_ARTIFACT)
    uri = f"runs:/{run_id}/{MAP_ARTIFACT}"
    client.set_registered_model_tag(name, REGIME_MAP_TAG, uri)
    refresh_model_description(client, name, regime_rows=mapping)
    return uri


def current_map(client: Any, name: str) -> dict[str, Any]:
    """The per-regime map of registered model ``name`` (regime -> version, model, exposure,
    source, decision, reason, gate_reason...): the artifact its ``huracan.regime_map`` tag
    names, or the tag itself when it is the JSON map an older Huracan wrote; ``{}`` without a
    map or a registered model.

    Raises:
        mlflow.exceptions.MlflowException: the named artifact cannot be read.
    """
    try:
        tags = client.get_registered_model(name).tags or {}
    except Exception:  # no registered model yet
        return {}
    raw = str(tags.get(REGIME_MAP_TAG) or "")
    if not raw.startswith("runs:/"):  # none, or the whole map as JSON (before issue 26)
        return dict(json.loads(raw)) if raw else {}
    import tempfile
    from pathlib import Path

    run_id, _, path = raw.removeprefix("runs:/").partition("/")
    with tempfile.TemporaryDirectory() as tmp:
        return dict(json.loads(Path(client.download_artifacts(run_id, path, tmp)).read_text()))
