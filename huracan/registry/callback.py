"""Hydra callback: the best candidate of a run or sweep meets the promotion gate, once, at the end.

Every job registers its model as a version (see :mod:`huracan.pipeline`) and writes its
``result.json``. When the single run or the whole multirun ends, the results are read back from
those files (so the gate works under the basic, joblib and ray launchers alike: no job result is
collected in memory), and the candidate with the best selection score of each registered model
(the job's objective: ``val_<metric>`` for a forward split, ``oos_<metric>`` for walk-forward;
selection never looks at test) goes through :func:`huracan.registry.promotion.gate_candidate`.
The decision is printed, written to ``<sweep dir>/gate.json`` and tagged on the sweep's parent
run (``huracan.gate.*``). A sweep in which a job failed raises in Hydra before this point, so it
promotes nothing. A failure of the gate itself is logged, alerted, and ends the process with exit
code 1 (Hydra would otherwise turn a callback error into a warning).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from huracan.alerts import Alert
from huracan.tracking.callbacks import _write_json, read_result, read_results, sweep_parent

log = logging.getLogger(__name__)
GATE_FILE = "gate.json"


def best_candidates(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per registered model, the successful result with the highest ``objective_value`` (NaN
    never wins)."""
    best: dict[str, dict[str, Any]] = {}
    for r in results:
        name = r.get("registered_model")
        score = float(r.get("objective_value", math.nan))
        if r.get("status", "ok") != "ok" or not name or r.get("version") is None \
                or not math.isfinite(score):
            continue
        if name not in best or score > float(best[name]["objective_value"]):
            best[name] = r
    return list(best.values())


class RegistryGate(Callback):
    """Gates the best registered candidate per model at the end of the run or sweep."""

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        result = read_result(config.hydra.runtime.output_dir)
        self._gate(config, [result] if result else [], None, None)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        parent = sweep_parent(sweep_dir) or {}
        results = read_results(sweep_dir, parent.get("sweep_id"))
        self._gate(config, results, parent.get("run_id"), sweep_dir)

    def _gate(self, config: DictConfig, results: list[dict[str, Any]], parent_run_id: str | None,
              sweep_dir: Path | None) -> None:
        if not config.registry.enabled or not results:
            return
        from mlflow.tracking import MlflowClient

        from huracan.db import migrate
        from huracan.db.session import make_engine
        from huracan.registry.promotion import gate_candidate
        from huracan.settings import RegistrySettings, TrackingSettings
        from huracan.tracking import run as tracking

        node = OmegaConf.to_container(
            OmegaConf.masked_copy(config, ["registry", "tracking", "db", "alerts"]), resolve=True)
        assert isinstance(node, dict)
        reg = RegistrySettings(**{k: v for k, v in node["registry"].items()
                                  if k in RegistrySettings.__dataclass_fields__})
        tr = TrackingSettings(**{k: v for k, v in node["tracking"].items()
                                 if k in TrackingSettings.__dataclass_fields__})
        from hydra.utils import instantiate

        notifier = instantiate(node.get("alerts") or {"_target_": "huracan.alerts.LogNotifier"})
        decisions = []
        for cand in best_candidates(results):
            name, version = cand["registered_model"], cand["version"]
            try:
                tracking.configure(tr.tracking_uri, Path(tr.store_dir), tr.experiment_name)
                engine = make_engine(str(node["db"]["url"]))
                try:
                    migrate.upgrade(engine)
                    out = gate_candidate(MlflowClient(), engine, name, version,
                                         metric=reg.metric, tolerance=reg.tolerance,
                                         notifier=notifier)
                finally:
                    engine.dispose()
            except Exception as exc:
                log.exception("registry gate of %s v%s failed", name, version)
                notifier.notify(Alert(f"{name}: registry gate of v{version} failed", "critical",
                                      {"error": f"{type(exc).__name__}: {exc}"}))
                raise SystemExit(1) from exc
            verdict = "PROMOTED to production" if out.decision.promote else "REJECTED"
            print(f"\nregistry: {name} v{version} ({cand['model_type']}, best "
                  f"{cand['objective']} {float(cand['objective_value']):.3f} of {len(results)} "
                  f"candidate(s)) {verdict}: {out.decision.reason}", flush=True)
            decisions.append({"model": name, "version": str(version),
                              "decision": "promoted" if out.decision.promote else "rejected",
                              "reason": out.decision.reason,
                              "candidate_run_id": cand["run_id"],
                              "selected_on": cand["objective"],
                              "selection_score": float(cand["objective_value"]),
                              "champion_version": out.champion_version,
                              "n_candidates": len(results)})
        if sweep_dir is not None:
            _write_json(sweep_dir / GATE_FILE, {"decisions": decisions})
        if parent_run_id is not None and decisions:
            client = MlflowClient()
            for d in decisions:
                prefix = "huracan.gate" if len(decisions) == 1 else f"huracan.gate.{d['model']}"
                for key in ("model", "version", "decision", "reason", "selected_on",
                            "candidate_run_id"):
                    client.set_tag(parent_run_id, f"{prefix}.{key}", str(d[key])[:5000])
