"""``python -m huracan.tune [overrides]``: an Optuna study over ``huracan.train``'s jobs.

Examples:
    python -m huracan.tune model=lightgbm tune.n_trials=30
    python -m huracan.tune model=lstm tune.n_trials=10
    python -m huracan.tune model=xgboost split=walk_forward tune.search_labels=true
    python -m huracan.tune model=lightgbm tune.n_workers=2 \\
        tune.storage=postgresql+psycopg2://postgres@127.0.0.1:5432/optuna

Each trial is one ``huracan.train`` job (same stages, validation or walk-forward OOS metric, never
test) logged as a child MLflow run of the study's parent run; the study lives in RDB storage, so a
rerun of the same command resumes it up to ``tune.n_trials``, and ``tune.n_workers`` processes (or
the same command on other machines) share it. At the end the parent run gets the best
parameters, the trial counts, the best trial's deflated Sharpe ratio against the number of trials,
and Optuna's plots; the best parameters become a preset (``experiment=tuned/<name>``) and a row
of the brain store's ``tuned_hyperparameters`` ONLY when the best trial beats cash on its
selection window (validation, or walk-forward OOS; never test): its net returns there must
compound to a gain with a PSR of at least ``registry.min_psr``
(:func:`huracan.evaluation.evidence.beats_cash`, :func:`best_trial_cash`). Otherwise no preset is
written (an older one is left as it was), the reason is printed and tagged on the study's parent
run (``cash_verdict``, ``preset=none``), and the command still exits 0: "nothing beats cash" is
an answer, not an error. See :mod:`huracan.tuning`.
"""

from __future__ import annotations

# isort: off
import huracan.runtime  # noqa: F401  (first: sets the process defaults before anything heavy loads)
# isort: on

import logging
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from huracan import progress
from huracan.commands import exit_with
from huracan.config import register_resolvers
from huracan.resources import conf_dir, tuned_presets_dir
from huracan.tracking.names import time_metric
from huracan.tuning import TuneError, TuneSettings

CONF_DIR = str(conf_dir())  # the checkout's conf/, or the installed copy (huracan.resources)
log = logging.getLogger("huracan.tune")

register_resolvers()


def model_name(resolved: dict[str, Any]) -> str:
    """``lightgbm``, ``lstm``... from the model's ``_target_``."""
    return str(resolved["model"]["_target_"]).rsplit(".", 1)[-1].removesuffix(
        "Forecaster").lower()


def _trial_config(resolved: dict[str, Any], values: dict[str, Any],
                  t: TuneSettings) -> dict[str, Any]:
    from huracan.tuning import apply

    cfg = apply(resolved, values)
    cfg["registry"]["enabled"] = False       # trials are candidates of the study, not production
    cfg["importance"]["enabled"] = False
    cfg["explain"]["max_rows"] = int(t.explain_rows)
    cfg["tracking"]["log_model"] = False     # the preset retrains the best one
    return cfg


def _parent_run(client: Any, experiment_id: str, study_name: str, tags: dict[str, str]) -> str:
    """The study's MLflow parent run: the existing one (a resumed study) or a new one."""
    runs = client.search_runs([experiment_id],
                              filter_string=f"tags.`huracan.study` = '{study_name}' and "
                                            "tags.`huracan.role` = 'study'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    if runs:
        run_id = str(runs[0].info.run_id)
        client.update_run(run_id, status="RUNNING")
        return run_id
    run = client.create_run(experiment_id, run_name=f"study-{study_name}",
                            tags={"huracan.role": "study", "huracan.study": study_name, **tags})
    return str(run.info.run_id)


def _objective(resolved: dict[str, Any], t: TuneSettings, space: list[Any], metric: str,
               maximize: bool, parent_run_id: str) -> Any:
    import mlflow
    import optuna

    from huracan import pipeline
    from huracan.models import hooks
    from huracan.settings import JobSettings
    from huracan.tuning import IntermediateReporter, suggest

    def objective(trial: optuna.Trial) -> float:
        values = suggest(trial, space)
        cfg = _trial_config(resolved, values, t)
        settings = JobSettings.from_dict(cfg)
        reporter = IntermediateReporter(trial, maximize,
                                        per_fold=settings.split.scheme == "walk_forward")

        def listen(step: int, value: float) -> None:
            try:
                reporter(step, value)
            except optuna.TrialPruned:
                run = mlflow.active_run()
                if run is not None:  # the trial's child run: say why it stops here
                    mlflow.set_tags({"huracan.trial": str(trial.number),
                                     "huracan.trial_state": "pruned"})
                    for s, v in reporter.reported:
                        mlflow.log_metric("intermediate_value", v, step=s)
                raise

        with hooks.listening(listen):
            result = pipeline.run_job(settings, resolved=cfg, parent_run_id=parent_run_id)
        reporter.close()
        client = mlflow.MlflowClient()
        client.set_tag(result.run_id, "huracan.trial", str(trial.number))
        client.set_tag(result.run_id, "huracan.trial_state", "complete")
        for s, v in reporter.reported:
            client.log_metric(result.run_id, "intermediate_value", v, step=s)
        prefix = metric.split("_", 1)[0]
        trial.set_user_attr("run_id", result.run_id)
        trial.set_user_attr("pid", os.getpid())  # which worker ran it
        if prefix in result.evidence:
            trial.set_user_attr("evidence", result.evidence[prefix])
        value = float(result.metrics[metric])
        trades = result.metrics.get(f"{prefix}_n_trades", math.inf)
        min_trades = settings.selection.min_trades
        if trades < min_trades or not math.isfinite(value):
            # the sweep's eligibility rule: a handful of trades is no evidence (a trial that
            # never trades scores 0.2 x (1 - 0 drawdown) + accuracy on the composite)
            trial.set_user_attr("ineligible", f"{trades:.0f} {prefix} trades < {min_trades}")
            client.set_tag(result.run_id, "huracan.trial_state", "ineligible")
            raise optuna.TrialPruned(f"ineligible: {trades:.0f} {prefix} trades < {min_trades}")
        return value

    return objective


def best_trial_dsr(study: Any) -> dict[str, float] | None:
    """DSR of the best trial (Bailey & Lopez de Prado 2014) with ``N`` = every finished trial
    (complete or pruned) and the Sharpe variance of the complete ones; ``None`` without
    evidence."""
    import numpy as np
    import optuna

    from huracan.evaluation import statistics as st

    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE
            and "evidence" in t.user_attrs]
    n = len([t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE,
                                                    optuna.trial.TrialState.PRUNED)])
    if not done:
        return None
    best = study.best_trial
    ev = best.user_attrs.get("evidence")
    if ev is None:
        return None
    srs = np.array([float(t.user_attrs["evidence"]["sr"]) for t in done])
    var = float(np.var(srs, ddof=1)) if len(srs) > 1 else 0.0
    bench = st.expected_max_sharpe(n, var) if n > 1 and var > 0 else 0.0
    dsr = st.psr_from_moments(float(ev["sr"]), int(ev["bars"]), float(ev["skew"]),
                              float(ev["kurtosis"]), benchmark_sr=bench) \
        if int(ev["bars"]) >= 3 and not ev.get("flat") else 0.0
    return {"dsr": float(dsr), "psr": float(ev["psr"]), "n_trials": float(n),
            "benchmark_sr": float(bench)}


#: the backtest frame of each selection window a trial's run logs (never the test window)
SELECTION_RETURNS = {"val": "backtest/val_returns.parquet",
                     "oos": "backtest/oos_returns.parquet"}


def best_trial_cash(client: Any, run_id: str | None, metric: str, min_psr: float,
                    trades: int | None = None) -> Any:
    """Does the best trial beat cash? :func:`huracan.evaluation.evidence.beats_cash` on the
    per-bar net returns (``strategy_return``, fractions) of the trial run's selection window:
    ``val`` (``backtest/val_returns.parquet``) or walk-forward ``oos``
    (``backtest/oos_returns.parquet``), as named by ``metric``'s prefix; never test rows.

    Args:
        client: an ``MlflowClient`` of the study's tracking store.
        run_id: the best trial's run (None: no evidence).
        metric: the study's objective (``val_composite_score``, ``oos_sharpe``...).
        min_psr: the PSR the net returns must reach (``registry.min_psr``), in [0, 1].
        trades: trades on the window (default: the run's ``<prefix>_n_trades`` metric).

    Returns:
        a :class:`~huracan.evaluation.evidence.CashVerdict`; a run without the window's returns
        (or a metric of another window) does not beat cash, and its reason says so.
    """
    import numpy as np
    import pandas as pd

    from huracan.evaluation.evidence import CashVerdict, beats_cash

    prefix = metric.split("_", 1)[0]
    artifact = SELECTION_RETURNS.get(prefix)

    def none(why: str) -> CashVerdict:
        return CashVerdict(False, 0.0, 0.0, 0.0, 0, int(trades or 0), float(min_psr),
                           f"the best trial has no evidence against cash: {why}")

    if artifact is None:
        return none(f"{metric} is not a val_ or oos_ metric")
    if not run_id:
        return none("no run")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            frame = pd.read_parquet(client.download_artifacts(run_id, artifact, tmp))
    except Exception as exc:  # MlflowException, OSError: an artifact that is not there
        return none(f"run {run_id} has no {artifact} ({type(exc).__name__})")
    if trades is None:
        trades = int(client.get_run(run_id).data.metrics.get(f"{prefix}_n_trades", 0))
    net = frame["strategy_return"].to_numpy(np.float64)
    return beats_cash(net, int(trades), float(min_psr),
                      what=f"the best trial's {prefix} window")


def _log_plots(client: Any, run_id: str, study: Any) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    written = []
    plots: dict[str, Any] = {"optimization_history": ovm.plot_optimization_history,
             "param_importances": ovm.plot_param_importances,
             "parallel_coordinate": ovm.plot_parallel_coordinate}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna's matplotlib backend is "experimental"
        for name, fn in plots.items():
            try:
                ax = fn(study)
            except Exception as exc:  # e.g. importances need >= 2 complete trials
                log.info("plot %s skipped: %s", name, exc)
                continue
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).get_figure()
            path = Path(tmp) / f"{name}.png"
            fig.savefig(path, dpi=100, bbox_inches="tight")
            plt.close(fig)
            client.log_artifact(run_id, str(path), "study")
            written.append(name)
    return written


def _store_best(db_url: str | None, row: dict[str, Any]) -> None:
    from huracan.db import migrate
    from huracan.db.records import record_tuned_hyperparameters
    from huracan.db.session import make_engine

    engine = make_engine(db_url)
    try:
        migrate.upgrade(engine)
        record_tuned_hyperparameters(engine, **row)
    finally:
        engine.dispose()


@dataclass(frozen=True)
class StudyPlan:
    """What one tuning job searches, resolved from the job's config and ``tune`` settings.

    Attributes:
        settings: the job's :class:`huracan.settings.JobSettings` (trials start from it).
        model: ``lightgbm``, ``lstm``... (:func:`model_name`).
        metric: the objective (a validation or walk-forward OOS metric, never test).
        space: the search space's parameters (the model's, plus the labels' when asked).
        direction: ``maximize`` or ``minimize``.
        sym: the symbol without separators (``BTCUSDT``).
        study_name: ``tune-<SYM>-<timeframe>-<model>[-wf]`` unless named.
        store_dir: the tracking store directory (created).
        storage: Optuna RDB storage URL (default: ``optuna.db`` in ``store_dir``).
        n_trials: finished trials the study should hold in the end.
        seed: the job's seed (worker ``k`` gets ``seed + k``).
    """

    settings: Any
    model: str
    metric: str
    space: list[Any]
    direction: str
    sym: str
    study_name: str
    store_dir: Path
    storage: str
    n_trials: int
    seed: int


def _plan_study(resolved: dict[str, Any], t: TuneSettings) -> StudyPlan:
    """The :class:`StudyPlan` of ``resolved`` and ``t``; creates ``tracking.store_dir``.

    Raises:
        TuneError: a bad search space (a key the config lacks) or a test metric.
        huracan.settings.UnknownKeyError: an unknown key in the job's config.
    """
    from huracan import pipeline
    from huracan.settings import JobSettings
    from huracan.tuning import SPACE_DIR, apply, check_metric, load_space

    settings = JobSettings.from_dict(resolved)
    model = model_name(resolved)
    metric = check_metric(str(t.metric or pipeline.objective_of(settings)))
    space = load_space(t.search_space or SPACE_DIR / f"{model}.yaml")
    if t.search_labels:
        space += load_space(SPACE_DIR / "labels.yaml")
    apply(resolved, {p.key: None for p in space})  # every key exists (TuneError otherwise)
    data = settings.data
    sym = data.symbol.replace("/", "").replace(":", "")
    wf = settings.split.scheme == "walk_forward"
    study_name = str(t.study_name or f"tune-{sym}-{data.timeframe}-{model}"
                     f"{'-wf' if wf else ''}")
    store_dir = Path(settings.tracking.store_dir)
    store_dir.mkdir(parents=True, exist_ok=True)
    storage = str(t.storage or f"sqlite:///{store_dir.resolve() / 'optuna.db'}")
    return StudyPlan(settings=settings, model=model, metric=metric, space=space,
                     direction=t.direction, sym=sym, study_name=study_name,
                     store_dir=store_dir, storage=storage, n_trials=int(t.n_trials),
                     seed=int(resolved.get("seed", 42)))


def _create_study(plan: StudyPlan, t: TuneSettings) -> Any:
    """The Optuna study in ``plan.storage`` (loaded when it exists), with the sampler and pruner
    of ``t``; created once here, before any worker starts (concurrent creation races on
    Postgres).

    Raises:
        TuneError: an unknown sampler or pruner.
    """
    import optuna

    from huracan.tuning import make_pruner, make_sampler

    wf = plan.settings.split.scheme == "walk_forward"
    warmup = 1 if wf else int(t.n_warmup_steps)
    sampler = make_sampler(str(t.sampler), plan.seed, int(t.n_startup_trials))
    pruner = make_pruner(str(t.pruner), int(t.n_startup_trials), warmup)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(storage=plan.storage, study_name=plan.study_name,
                               direction="maximize" if plan.direction == "maximize"
                               else "minimize",
                               sampler=sampler, pruner=pruner, load_if_exists=True)


def _run_trials(study: Any, plan: StudyPlan, resolved: dict[str, Any], t: TuneSettings,
                parent: str, task_overrides: list[str] | None) -> float:
    """Run the trials the study still lacks (``plan.n_trials`` minus its finished ones): in
    ``tune.n_workers`` worker processes (:func:`_run_workers`), or here (:func:`_optimize`;
    a worker runs its ``tune.worker_trials`` quota); returns the wall seconds.

    Raises:
        TuneError: a worker process failed.
    """
    import optuna

    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    t0 = time.perf_counter()
    n_workers = int(t.n_workers)
    is_worker = bool(t.parent_run_id)
    left = plan.n_trials - len(study.get_trials(states=finished))
    if n_workers > 1 and not is_worker and left > 0:
        _run_workers(plan, parent, task_overrides, left, n_workers)
    elif n_workers <= 1 or is_worker:
        quota = int(t.worker_trials) if is_worker and t.worker_trials else left
        if quota > 0:
            _optimize(study, _objective(resolved, t, plan.space, plan.metric,
                                        plan.direction == "maximize", parent), quota)
    return time.perf_counter() - t0


def _optimize(study: Any, objective: Any, n_trials: int) -> None:
    """Run ``n_trials`` trials of ``study`` in this process (``study.optimize``); a trial that
    raises ``ValueError``, ``RuntimeError`` or ``ArithmeticError`` is recorded as failed and the
    study goes on."""
    with progress.bar("Optuna trials", total=n_trials) as shown:
        study.optimize(objective, n_trials=n_trials,
                       catch=(ValueError, RuntimeError, ArithmeticError),
                       callbacks=[progress.optuna_callback(shown)])


def _run_workers(plan: StudyPlan, parent: str, task_overrides: list[str] | None, left: int,
                 n_workers: int) -> None:
    """Split the ``left`` trials between ``n_workers`` ``python -m huracan.tune`` processes
    (exactly ``left`` in total; each worker's sampler seeded apart) and wait for them.

    Raises:
        TuneError: a worker exited with a non-zero code.
    """
    quotas = [left // n_workers + (k < left % n_workers) for k in range(n_workers)]
    procs = [subprocess.Popen([sys.executable, "-m", "huracan.tune", *(task_overrides or []),
                               "tune.n_workers=1", f"tune.parent_run_id={parent}",
                               f"+tune.worker_trials={quotas[k]}",
                               f"tune.storage={plan.storage}",
                               f"tune.study_name={plan.study_name}",
                               f"seed={plan.seed + k}",  # each worker's sampler seeded apart
                               f"hydra.run.dir={plan.store_dir.resolve()}/tune-workers/{k}"],
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
                                   "HURACAN_PROGRESS": "0"})  # no bars drawn over each other
             for k in range(n_workers) if quotas[k] > 0]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise TuneError(f"tune workers exited with {codes}")


def run_study(resolved: dict[str, Any], t: TuneSettings,
              task_overrides: list[str] | None = None) -> dict[str, Any]:
    """The whole tuning job (see the module docstring); returns a summary dict.

    Steps: :func:`_plan_study`, :func:`_create_study`, the parent MLflow run, the trials
    (:func:`_run_trials`); then, not in a worker, the summary (:func:`_study_summary`), its
    logging on the parent run (:func:`_log_study`) and the cash verdict with the preset
    (:func:`_preset_if_beats_cash`).

    Raises:
        TuneError: a bad search space, a test metric, an unknown sampler or pruner.
        huracan.settings.UnknownKeyError: an unknown key in the job's config.
        huracan.settings.SelectionOnTestError: ``objective`` is a test metric.
    """
    import optuna
    from mlflow.tracking import MlflowClient

    from huracan.secrets import mask_url
    from huracan.tracking.run import configure

    plan = _plan_study(resolved, t)
    study = _create_study(plan, t)
    settings, data = plan.settings, plan.settings.data
    experiment_id = configure(settings.tracking.tracking_uri, plan.store_dir,
                              settings.tracking.experiment_name,
                              settings.tracking.artifact_location)
    client = MlflowClient()
    parent = str(t.parent_run_id or "") or _parent_run(
        client, experiment_id, plan.study_name,
        {"symbol": data.symbol, "timeframe": data.timeframe, "model_type": plan.model,
         "metric": plan.metric, "direction": plan.direction,
         "storage": mask_url(plan.storage), "split_scheme": settings.split.scheme})
    seconds = _run_trials(study, plan, resolved, t, parent, task_overrides)
    if t.parent_run_id:  # a worker: the study's parent process sums up
        return {"study": plan.study_name, "worker": True, "seconds": seconds}
    study = optuna.load_study(study_name=plan.study_name, storage=plan.storage)
    summary, best = _study_summary(client, parent, plan, study, seconds)
    _log_study(client, parent, plan.metric, study, best, summary)
    _preset_if_beats_cash(client, parent, plan, t, best, summary)
    client.set_terminated(parent, "FINISHED")
    summary["parent_run_id"] = parent
    return summary


def _study_summary(client: Any, parent: str, plan: StudyPlan, study: Any, seconds: float
                   ) -> tuple[dict[str, Any], Any]:
    """``(summary, best trial)`` of the finished trials (a worker killed mid-trial leaves one
    RUNNING forever, with no heartbeat: left out): counts, best value, parameters and run,
    mean trial seconds, the best trial's DSR (:func:`best_trial_dsr`).

    Raises:
        TuneError: no trial completed (the parent run ends FAILED).
    """
    import optuna

    from huracan.secrets import mask_url

    trials = [x for x in study.trials if x.state.is_finished()]
    complete = [x for x in trials if x.state == optuna.trial.TrialState.COMPLETE]
    pruned = [x for x in trials if x.state == optuna.trial.TrialState.PRUNED]
    ineligible = [x for x in pruned if "ineligible" in x.user_attrs]
    if not complete:
        client.set_terminated(parent, "FAILED")
        raise TuneError(f"study {plan.study_name}: no trial completed ({len(pruned)} pruned, "
                        f"{len(trials) - len(pruned)} failed)")
    best = study.best_trial
    best_value = float(best.value) if best.value is not None else math.nan
    durations = [x.duration.total_seconds() for x in trials if x.duration is not None]
    dsr = best_trial_dsr(study)
    summary = {
        "study": plan.study_name, "storage": mask_url(plan.storage), "metric": plan.metric,
        "n_trials": len(trials), "complete": len(complete), "pruned": len(pruned),
        "ineligible": len(ineligible),
        "best_value": best_value, "best_trial": best.number,
        "best_params": dict(best.params), "best_run_id": best.user_attrs.get("run_id"),
        "seconds": seconds,
        "mean_trial_seconds": sum(durations) / len(durations) if durations else math.nan,
        "dsr": dsr,
    }
    return summary, best


def _log_study(client: Any, parent: str, metric: str, study: Any, best: Any,
               summary: dict[str, Any]) -> None:
    """Log the summary on the parent run: the best parameters (``best.<key>`` params; a
    resumed study's new best as tags, params being immutable), the counts, best value and DSR
    as metrics, ``best_run_id``, and Optuna's plots (``summary["plots"]``)."""
    dsr = summary["dsr"]
    logged = client.get_run(parent).data.params
    for k, v in best.params.items():  # params are immutable: a resumed study's new best -> tag
        name = f"best.{k}"
        if name not in logged:
            client.log_param(parent, name, str(v))
        elif logged[name] != str(v):
            client.set_tag(parent, name, str(v))
    metrics = {"n_trials": summary["n_trials"], "n_complete": summary["complete"],
               "n_pruned": summary["pruned"], "n_ineligible": summary["ineligible"],
               f"best_{metric}": summary["best_value"], "best_trial": best.number,
               time_metric("mean_trial"): summary["mean_trial_seconds"]}
    if dsr is not None:
        metrics |= {f"best_{metric.split('_', 1)[0]}_dsr": dsr["dsr"],
                    f"best_{metric.split('_', 1)[0]}_psr": dsr["psr"]}
    for k, v in metrics.items():
        if isinstance(v, (int, float)) and math.isfinite(float(v)):
            client.log_metric(parent, k, float(v))
    client.set_tag(parent, "best_run_id", str(summary["best_run_id"]))
    summary["plots"] = _log_plots(client, parent, study)


def _preset_if_beats_cash(client: Any, parent: str, plan: StudyPlan, t: TuneSettings,
                          best: Any, summary: dict[str, Any]) -> None:
    """The best trial's cash verdict (:func:`best_trial_cash`, logged on the parent run); when
    it beats cash, the preset ``<tune.preset_dir>/<sym>_<timeframe>_<model>.yaml``, its
    artifact and tag, and the ``tuned_hyperparameters`` row; otherwise no preset (an older one
    is left as it was), ``preset=none`` and the reason in ``summary["no_preset"]``."""
    from huracan.secrets import mask_url
    from huracan.tuning import preset_text

    metric, model, data, study_name = plan.metric, plan.model, plan.settings.data, plan.study_name
    best_value, n_trials = summary["best_value"], summary["n_trials"]
    values = {k: v for k, v in best.params.items()}
    evidence = best.user_attrs.get("evidence") or {}
    best_run = best.user_attrs.get("run_id")
    cash = best_trial_cash(client, None if best_run is None else str(best_run), metric,
                           plan.settings.registry.min_psr,
                           None if "trades" not in evidence else int(evidence["trades"]))
    summary["cash"] = cash.as_dict()
    prefix = metric.split("_", 1)[0]
    client.log_metric(parent, f"best_{prefix}_beats_cash", float(cash.beats))
    client.log_metric(parent, f"best_{prefix}_cash_psr", float(cash.psr))
    client.set_tag(parent, "cash_verdict", cash.reason[:5000])
    preset_dir = Path(t.preset_dir or tuned_presets_dir())  # never site-packages
    preset = preset_dir / f"{plan.sym.lower()}_{data.timeframe}_{model}.yaml"
    if cash.beats:
        preset_dir.mkdir(parents=True, exist_ok=True)
        preset.write_text(preset_text(model, values, study=study_name, n_trials=n_trials,
                                      metric=metric, value=best_value,
                                      storage=mask_url(plan.storage)))
        client.log_artifact(parent, str(preset), "study")
        client.set_tag(parent, "preset", str(preset))
        summary["preset"] = str(preset)
        _store_best(plan.settings.db_url, {
            "symbol": data.symbol, "timeframe": data.timeframe, "model_type": model,
            "study_name": study_name, "metric": metric, "value": best_value,
            "params": values, "n_trials": n_trials, "run_id": summary["best_run_id"]})
    else:
        kept = " (the existing one is left as it was)" if preset.exists() else ""
        summary["preset"] = None
        summary["no_preset"] = (f"no preset written{kept}: {cash.reason}; the study's best "
                                "trial does no better than cash (never trading), so no "
                                "parameters are recommended")
        client.set_tag(parent, "preset", "none")
        log.warning("%s", summary["no_preset"])


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="tune")
def main(cfg: DictConfig) -> float:
    """Hydra task: one study (or one worker of it); returns the best value."""
    from huracan.settings import SelectionOnTestError, UnknownKeyError

    resolved: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    resolved.pop("hydra", None)
    # what the workers inherit (the keys they are given explicitly left out)
    overrides = [o for o in HydraConfig.get().overrides.task if not o.lstrip("+~").startswith(
        ("tune.n_workers", "tune.storage", "tune.study_name", "tune.parent_run_id",
         "tune.worker_trials", "seed=", "hydra."))]
    try:
        t = TuneSettings.from_dict(resolved.pop("tune"))
        out = run_study(resolved, t, overrides)
    except (TuneError, UnknownKeyError, SelectionOnTestError) as exc:
        log.error("%s", exc)
        exit_with("huracan.tune", exc, 1)  # one stderr line, no traceback
    if out.get("worker"):
        return math.nan
    dsr = out.get("dsr") or {}
    print(f"\nstudy {out['study']} ({out['storage']}): {out['n_trials']} trials, "
          f"{out['complete']} complete, {out['pruned']} pruned ({out['ineligible']} of them for "
          f"too few trades), "
          f"{out['mean_trial_seconds']:.1f} s per trial; best {out['metric']} "
          f"{out['best_value']:.4f} (trial {out['best_trial']}, run {out['best_run_id']}); "
          f"DSR against {dsr.get('n_trials', float('nan')):.0f} trials "
          f"{dsr.get('dsr', float('nan')):.3f}\nbest parameters: {out['best_params']}\n"
          f"cash: {out['cash']['reason']}", flush=True)
    if out["preset"]:
        print(f"preset: {out['preset']}  (python -m huracan.train experiment=tuned/"
              f"{Path(out['preset']).stem})", flush=True)
    else:
        print(out["no_preset"], flush=True)
    return float(out["best_value"])


if __name__ == "__main__":
    main()
