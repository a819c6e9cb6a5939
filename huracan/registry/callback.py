"""Hydra callback: the best candidate of a run or sweep meets the promotion gate, once, at the end.

Every job registers its model as a version (see :mod:`huracan.pipeline`). When the single run or
the whole multirun ends, the candidate with the best validation score (``val_<registry.metric>``;
selection never looks at test) of each registered model goes through
:func:`huracan.registry.promotion.gate_candidate`. A sweep in which a job failed raises in Hydra
before this point, so it promotes nothing. A failure of the gate itself is logged, alerted, and
ends the process with exit code 1 (Hydra would otherwise turn a callback error into a warning).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from huracan.alerts import Alert, LogNotifier, Notifier
from huracan.tracking.callbacks import read_result

log = logging.getLogger(__name__)


def best_candidates(results: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Per registered model, the result with the highest ``val_<metric>`` (NaN never wins)."""
    best: dict[str, dict[str, Any]] = {}
    for r in results:
        name, score = r.get("registered_model"), r["metrics"].get(f"val_{metric}", math.nan)
        if not name or r.get("version") is None or not math.isfinite(score):
            continue
        if name not in best or score > best[name]["metrics"][f"val_{metric}"]:
            best[name] = r
    return list(best.values())


class RegistryGate(Callback):
    """Collects each job's registered version; gates the best one per model at the end."""

    def __init__(self) -> None:
        self.results: list[dict[str, Any]] = []
        self.job_cfg: DictConfig | None = None

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        result = read_result(config, job_return)
        if result is not None and result.get("version") is not None:
            self.results.append(result)
            self.job_cfg = OmegaConf.masked_copy(config, ["tracking", "registry", "db", "alerts"])

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._gate()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._gate()

    def _gate(self) -> None:
        cfg = self.job_cfg
        if cfg is None or not cfg.registry.enabled:
            return
        from pathlib import Path

        from mlflow.tracking import MlflowClient

        from huracan.db import migrate
        from huracan.db.session import make_engine
        from huracan.registry.promotion import gate_candidate
        from huracan.tracking import run as tracking

        notifier: Notifier = instantiate(cfg.alerts) if "alerts" in cfg else LogNotifier()
        metric, tolerance = str(cfg.registry.metric), float(cfg.registry.tolerance)
        for cand in best_candidates(self.results, metric):
            name, version = cand["registered_model"], cand["version"]
            try:
                tracking.configure(cfg.tracking.tracking_uri, Path(cfg.tracking.store_dir),
                                   cfg.tracking.experiment_name)
                engine = make_engine(cfg.db.url)
                try:
                    migrate.upgrade(engine)
                    out = gate_candidate(MlflowClient(), engine, name, version, metric=metric,
                                         tolerance=tolerance, notifier=notifier)
                finally:
                    engine.dispose()
            except Exception as exc:
                log.exception("registry gate of %s v%s failed", name, version)
                notifier.notify(Alert(f"{name}: registry gate of v{version} failed", "critical",
                                      {"error": f"{type(exc).__name__}: {exc}"}))
                raise SystemExit(1) from exc
            verdict = "PROMOTED to production" if out.decision.promote else "REJECTED"
            print(f"\nregistry: {name} v{version} ({cand['model_type']}, best val_{metric} "
                  f"{cand['metrics'][f'val_{metric}']:.3f} of {len(self.results)} candidate(s)) "
                  f"{verdict}: {out.decision.reason}", flush=True)
