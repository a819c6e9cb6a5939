"""Hydra callback: the best candidate of a run or sweep meets the promotion gate, once, at the end.

Every job registers its model as a version (see :mod:`huracan.pipeline`) and writes its
``result.json``. When the single run or the whole multirun ends, the results are read back from
those files (so the gate works under the basic, joblib and ray launchers alike: no job result is
collected in memory), and the candidate with the best selection score of each registered model
(the job's objective: ``val_<metric>`` for a forward split, ``oos_<metric>`` for walk-forward;
selection never looks at test) goes through :func:`huracan.registry.promotion.gate_candidate`.
The gate's cash floor is ``registry.min_psr``; the candidate's deflated Sharpe ratio counts N
over every trial run on the same symbol and timeframe in the tracking store (:func:`store_trials`:
training jobs of earlier sweeps and runs, Optuna trials), not only this sweep's candidates.
The decision is printed, written to ``<sweep dir>/gate.json`` and tagged on the sweep's parent
run (``huracan.gate.*``). A sweep in which a job failed raises in Hydra before this point, so it
promotes nothing. A failure of the gate itself is logged, alerted, and ends the process with exit
code 1 (Hydra would otherwise turn a callback error into a warning).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from huracan.alerts import Alert
from huracan.callbacks.sweep import best_candidates, deflate_results
from huracan.data.ohlcv import bars_per_year
from huracan.db import migrate
from huracan.db.session import make_engine
from huracan.evaluation.evidence import eligibility
from huracan.regime.registry import assign_aliases, choose, selection_frames
from huracan.registry.promotion import gate_candidate, record_no_candidate
from huracan.settings import (
    RegimeSettings,
    RegistrySettings,
    SelectionSettings,
    TrackingSettings,
    build,
)
from huracan.tracking import run as tracking
from huracan.tracking.results import _write_json, read_result, read_results, sweep_parent

log = logging.getLogger(__name__)
GATE_FILE = "gate.json"


@dataclass(frozen=True)
class StoreTrials:
    """Trials in the tracking store on one symbol and timeframe: ``n`` runs and, per scored
    window prefix (``val``, ``oos``...), their annualised net Sharpe ratios (``<w>_sharpe``)."""

    n: int
    sharpes: dict[str, list[float]]
    timeframe: str = "1h"

    def sr_variance(self, periods_per_year: float) -> dict[str, float]:
        """Per window, the variance (ddof 1) of the trials' PER-BAR Sharpes (annualised /
        sqrt(bars per year)); windows with fewer than two trials are left out."""
        out = {}
        for w, values in self.sharpes.items():
            v = [x for x in values if math.isfinite(x)]
            if len(v) > 1:
                out[w] = float(np.var(np.asarray(v) / math.sqrt(periods_per_year), ddof=1))
        return out


def store_trials(client: Any, experiment_ids: list[str], symbol: str,
                 timeframe: str) -> StoreTrials:
    """Every trial run on ``symbol`` and ``timeframe`` in the MLflow tracking store: runs tagged
    ``symbol`` and ``timeframe`` that are training jobs (a ``model_type`` tag: every
    :func:`huracan.pipeline.run_job` run, sweep jobs included) or tuning trials (the same runs,
    tagged ``huracan.trial``), FINISHED or pruned by Optuna (``huracan.trial_state=pruned``).
    Sweep parents, studies, sizer and drift runs (``huracan.role``) are not trials; a job that
    failed before it scored anything is not either.

    Returns:
        the count and each trial's ``<window>_sharpe`` metrics (the N and the Sharpe variance
        of the deflated Sharpe ratio, Bailey & Lopez de Prado 2014).
    """
    from mlflow.entities import ViewType

    def q(v: str) -> str:
        return v.replace("'", "\\'")

    filt = f"tags.symbol = '{q(symbol)}' and tags.timeframe = '{q(timeframe)}'"
    n, token = 0, None
    sharpes: dict[str, list[float]] = {}
    while True:
        page = client.search_runs(experiment_ids, filt, run_view_type=ViewType.ACTIVE_ONLY,
                                  max_results=1000, page_token=token)
        for run in page:
            tags = run.data.tags
            if "model_type" not in tags or "huracan.role" in tags:
                continue
            if run.info.status != "FINISHED" and tags.get("huracan.trial_state") != "pruned":
                continue
            n += 1
            for key, value in run.data.metrics.items():
                window, _, rest = key.partition("_")
                if rest == "sharpe":
                    sharpes.setdefault(window, []).append(float(value))
        token = page.token
        if not token:
            break
    return StoreTrials(n, sharpes, timeframe)


def _trials_of(client: Any, cand: dict[str, Any]) -> StoreTrials:
    """:func:`store_trials` on the candidate's symbol and timeframe (its run's tags) in its run's
    experiment; no trial when the run cannot be read."""
    try:
        run = client.get_run(str(cand["run_id"]))
    except Exception:  # a result without a readable run: the sweep's own N only
        log.warning("run %s unreadable: DSR over the sweep's candidates only", cand["run_id"])
        return StoreTrials(0, {})
    tags = run.data.tags
    if "symbol" not in tags or "timeframe" not in tags:
        return StoreTrials(0, {})
    return store_trials(client, [run.info.experiment_id], tags["symbol"], tags["timeframe"])


class RegistryGate(Callback):
    """Gates the best registered candidate per model at the end of the run or sweep."""

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        result = read_result(config.hydra.runtime.output_dir)
        self.decide(config, [result] if result else [], None, None)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        parent = sweep_parent(sweep_dir) or {}
        results = read_results(sweep_dir, parent.get("sweep_id"))
        self.decide(config, results, parent.get("run_id"), sweep_dir)

    def decide(self, config: DictConfig, results: list[dict[str, Any]], parent_run_id: str | None,
               sweep_dir: Path | None) -> None:
        """Gate the best eligible candidate of ``results`` (job results as in ``result.json``)
        per registered model, set the regime aliases, write ``<sweep_dir>/gate.json`` and tag
        the sweep's parent run. ``config`` needs the train config's ``registry``, ``tracking``,
        ``db``, ``alerts``, ``selection`` and ``regime`` nodes (the nightly's gate step calls
        this with the sweep's composed config).

        Raises:
            SystemExit: code 1 when the gate itself fails (logged and alerted first).
        """
        if not config.registry.enabled or not results:
            return
        from mlflow.tracking import MlflowClient

        node = OmegaConf.to_container(
            OmegaConf.masked_copy(config, ["registry", "tracking", "db", "alerts", "selection",
                                           "regime"]),
            resolve=True)
        assert isinstance(node, dict)
        reg = build(RegistrySettings, node["registry"], "registry")
        min_trades = build(SelectionSettings, node.get("selection"), "selection").min_trades
        elig = eligibility(results, min_trades)
        tr = build(TrackingSettings, node["tracking"], "tracking")
        from hydra.utils import instantiate

        notifier = instantiate(node.get("alerts") or {"_target_": "huracan.alerts.LogNotifier"})
        decisions = []
        chosen = {c["registered_model"]: c for c in best_candidates(results, set(elig.eligible))}
        names = sorted({str(r["registered_model"]) for r in results
                        if r.get("status", "ok") == "ok" and r.get("registered_model")})
        for name in names:
            cand = chosen.get(name)
            version = "" if cand is None else cand["version"]
            try:
                tracking.configure(tr.tracking_uri, Path(tr.store_dir), tr.experiment_name)
                engine = make_engine(str(node["db"]["url"]))
                try:
                    migrate.upgrade(engine)
                    if cand is None:
                        # this model's candidates only (a sweep may train several symbols)
                        own = [r for r in results if r.get("registered_model") == name]
                        mine = eligibility(own, min_trades)
                        reason = mine.summary(min_trades) + ": nothing promoted"
                        record_no_candidate(engine, name, reason, reg.metric,
                                            {"eligibility": mine.reasons,
                                             "min_trades": min_trades,
                                             "n_candidates": len(own)}, notifier)
                        print(f"\nregistry: {name} SKIPPED: {reason}", flush=True)
                        decisions.append({"model": name, "version": "", "decision": "skipped",
                                          "reason": reason, "candidate_run_id": "",
                                          "selected_on": "", "selection_score": math.nan,
                                          "champion_version": None,
                                          "n_candidates": len(own)})
                        continue
                    window = str(cand["objective"]).split("_", 1)[0]
                    m = cand.get("metrics", {})
                    client = MlflowClient()
                    trials = _trials_of(client, cand)
                    ppy = bars_per_year(trials.timeframe)
                    dsr = deflate_results(
                        [dict(r, metrics=dict(r.get("metrics", {}))) for r in results],
                        n_trials=trials.n, sr_variance=trials.sr_variance(ppy))
                    d = dsr.get(str(cand["run_id"]), {})
                    selection = {
                        "selected_on": cand["objective"],
                        "selection_score": float(cand["objective_value"]),
                        "n_candidates": len(results), "n_eligible": len(elig.eligible),
                        "min_trades": min_trades,
                        "trades": int(m.get(f"{window}_n_trades", 0)),
                        "bars": int(m.get(f"{window}_bars", 0)),
                        "psr": m.get(f"{window}_psr"),
                        "dsr": d.get(f"{window}_dsr"),
                        "n_trials": int(d.get(f"{window}_dsr_trials", len(results))),
                        "n_trials_in_store": trials.n,
                    }
                    out = gate_candidate(client, engine, name, version,
                                         metric=reg.metric, tolerance=reg.tolerance,
                                         notifier=notifier, min_eval_bars=reg.min_eval_bars,
                                         min_dsr=reg.min_dsr, min_psr=reg.min_psr,
                                         selection=selection,
                                         bootstrap_resamples=reg.bootstrap_resamples)
                    self._regime_aliases(node, engine, name, results, reg, notifier)
                finally:
                    engine.dispose()
            except Exception as exc:
                log.exception("registry gate of %s v%s failed", name, version)
                notifier.notify(Alert(f"{name}: registry gate of v{version} failed", "critical",
                                      {"error": f"{type(exc).__name__}: {exc}"}))
                raise SystemExit(1) from exc
            verdict = {"promoted": "PROMOTED to production", "rejected": "REJECTED",
                       "skipped": "SKIPPED"}[out.event]
            print(f"\nregistry: {name} v{version} ({cand['model_type']}, best "
                  f"{cand['objective']} {float(cand['objective_value']):.3f} of {len(results)} "
                  f"candidate(s)) {verdict}: {out.decision.reason}", flush=True)
            decisions.append({"model": name, "version": str(version),
                              "decision": out.event,
                              "reason": out.decision.reason,
                              "candidate_run_id": cand["run_id"],
                              "selected_on": cand["objective"],
                              "selection_score": float(cand["objective_value"]),
                              "champion_version": out.champion_version,
                              "n_candidates": len(results)})
        if sweep_dir is not None:
            _write_json(sweep_dir / GATE_FILE, {"decisions": decisions})
        self._tag_parent(parent_run_id, decisions)

    @staticmethod
    def _regime_aliases(node: Any, engine: Any, name: str,
                        results: list[dict[str, Any]], reg: Any, notifier: Any) -> None:
        """The per-regime choice of this registered model's candidates, as gated aliases."""
        from mlflow.tracking import MlflowClient

        rnode = node.get("regime") or {}
        if not rnode or rnode.get("kind", "none") == "none":
            return
        rs = build(RegimeSettings, rnode, "regime")
        mine = [r for r in results if r.get("registered_model") == name]
        client = MlflowClient()
        chosen = choose(mine, reg.metric, rs.min_trades, rs.extreme_exposure,
                        returns=selection_frames(client, mine), min_psr=reg.min_psr)
        if chosen:
            assign_aliases(client, engine, name, chosen, metric=reg.metric,
                           tolerance=reg.tolerance, min_eval_bars=rs.min_eval_bars,
                           notifier=notifier, min_psr=reg.min_psr)

    @staticmethod
    def _tag_parent(parent_run_id: str | None, decisions: list[dict[str, Any]]) -> None:
        if parent_run_id is not None and decisions:
            from mlflow.tracking import MlflowClient

            client = MlflowClient()
            for d in decisions:
                prefix = "huracan.gate" if len(decisions) == 1 else f"huracan.gate.{d['model']}"
                for key in ("model", "version", "decision", "reason", "selected_on",
                            "candidate_run_id"):
                    client.set_tag(parent_run_id, f"{prefix}.{key}", str(d[key])[:5000])
