"""What every training job shares, single-market (:func:`huracan.pipeline.run_job`) or pooled
(:func:`huracan.pooled.job.run_pooled_job`): its result, its running context, and the steps both
compose (a market's candles and features, its market bars, the evaluation of its folds, the
artifacts of an evaluation, the registration of the logged model).

Both job kinds import these steps from here, so neither imports the other's module (the pipeline
dispatches to the pooled job; see ``benchmarks/import_layers.py``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from huracan import stages
from huracan.evaluation.execution import MarketBars
from huracan.features.build import FeatureSet
from huracan.models.base import Forecaster
from huracan.registry.evaluate import WINDOW_ARTIFACT
from huracan.registry.promotion import build_manifest, register_version
from huracan.secrets import mask_url
from huracan.settings import DataSettings, JobSettings
from huracan.stages import Evaluation, FoldOutcome, Timer
from huracan.tracking import run as tracking
from huracan.tracking.names import time_metric

log = logging.getLogger(__name__)

#: the evaluator per split scheme
SCHEMES = {
    "forward": lambda fs, outs, bt, tf, title, rule, min_eval_bars, bars:
        stages.evaluate_forward(fs, outs[-1], bt, tf, title, rule, min_eval_bars, bars),
    "walk_forward": stages.evaluate_walk_forward,
}


@dataclass
class TrainResult:
    """What one job returns (and writes to ``result.json`` in its Hydra output dir).

    Attributes:
        objective / objective_value: the selection metric (``val_composite_score`` forward,
            ``oos_composite_score`` walk-forward) and its value: what sweeps and the gate select on.
        timings: wall seconds per stage (``data``, ``features``, ``execution``, ``folds``, ``fit``,
            ``predict``, ``backtest``, ``regime``, ``shap``, ``importance``, ``logging``,
            ``registry``) and of the MLflow bookkeeping by kind: ``tracking_setup`` (store,
            experiment, run), ``log_params``, ``log_tags``, ``log_metrics`` and, parts of
            ``logging``, ``log_datasets``, ``log_artifacts``, ``log_plots``, ``log_model``.
        evidence: per scored window, bars, trades, per-bar Sharpe, moments and PSR (the sweep
            deflates them against its other candidates).
    """

    run_id: str
    model_type: str
    symbol: str
    timeframe: str
    scheme: str
    metrics: dict[str, float]
    objective: str
    objective_value: float
    timings: dict[str, float] = field(default_factory=dict)
    evidence: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: per scored window, per regime: bars and metrics (for the per-regime selection)
    regime_metrics: dict[str, Any] = field(default_factory=dict)
    n_folds: int = 1
    model_uri: str | None = None
    registered_model: str | None = None
    version: str | None = None
    parent_run_id: str | None = None
    status: str = "ok"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def objective_of(settings: JobSettings) -> str:
    """The selection metric: ``settings.objective`` or ``<val|oos>_composite_score``."""
    if settings.objective and settings.objective not in ("null", "None"):
        return settings.objective
    return f"{settings.split.selection_prefix}_composite_score"


def select_columns(settings: JobSettings, fs: FeatureSet,
                   model_type: str) -> tuple[list[str] | None, str]:
    """``features.top_n``: the top-N feature columns of the latest stored ranking of this model
    type (ranked on validation or walk-forward OOS rows, never test; see
    :func:`huracan.pipeline.run_importance`) and a note, or ``(None, "")``."""
    if not settings.top_n:
        return None, ""
    from huracan.analysis.importance_store import select_top_features
    from huracan.db import migrate
    from huracan.db.session import make_engine

    engine = make_engine(settings.db_url)
    try:
        migrate.upgrade(engine)
        return select_top_features(engine, settings.data.symbol, settings.data.timeframe,
                                   int(settings.top_n), list(fs.feature_names),
                                   model_type=model_type)
    finally:
        engine.dispose()


@dataclass
class JobContext:
    """What every step of one running job shares: its settings, the stage timer and the names
    fixed before it starts."""

    settings: JobSettings
    timer: Timer
    prototype: Forecaster
    rule: Any
    objective: str
    run_name: str


def start(settings: JobSettings, name: str) -> tuple[JobContext, str, dict[str, Any]]:
    """A job's start: seed every generator, build the model and the rule, open the tracking
    store (``tracking_setup``); returns the context (run name ``<model_type>-<name>``; its
    settings' relative ``data.quality_log`` resolved against the store's directory:
    :func:`huracan.tracking.run.beside_store`), the MLflow experiment id and the run's base
    tags (market, model, split, label, rule, rows)."""
    timer = Timer()
    stages.seed_everything(settings.seed)
    prototype = settings.make_model()
    data, split = settings.data, settings.split
    rule = settings.make_rule()
    tr = settings.tracking
    with timer("tracking_setup"):
        experiment_id = tracking.configure(tr.tracking_uri, Path(tr.store_dir),
                                           tr.experiment_name, tr.artifact_location)
    settings = replace(settings, data=replace(settings.data, quality_log=tracking.beside_store(
        settings.data.quality_log, tr.tracking_uri, Path(tr.store_dir))))  # beside the store
    job = JobContext(settings, timer, prototype, rule, objective_of(settings),
                     f"{prototype.model_type}-{name}")
    tags = {"symbol": data.symbol, "timeframe": data.timeframe,
            "model_type": prototype.model_type, "data_path": mask_url(str(data.path)),
            **split.describe(), "label_kind": settings.label.kind, "rule_kind": rule.kind,
            "train_rows": settings.train.rows, "train_sample_weight": settings.train.sample_weight}
    return job, experiment_id, tags


@contextmanager
def job_run(job: JobContext, experiment_id: str, tags: Mapping[str, Any],
            parent_run_id: str | None, resolved: Mapping[str, Any] | None) -> Iterator[str]:
    """The job's MLflow run (nested under ``parent_run_id``; ends FAILED when the body raises):
    the resolved config logged (``log_params``) first, the stage timings as
    ``time/<stage>_s`` metrics last (on success); yields the run id."""
    import mlflow

    started = time.perf_counter()
    with tracking.job_run(experiment_id, job.run_name, dict(tags), parent_run_id) as run_id:
        job.timer.add("tracking_setup", time.perf_counter() - started)
        if resolved is not None:
            with job.timer("log_params"):
                tracking.log_config(resolved)
        yield run_id
        mlflow.log_metrics({time_metric(k): v for k, v in job.timer.seconds.items()})


@dataclass
class Prepared:
    """One market's data step output: candles, features, folds, the market bars of every
    feature row and the feature-selection note (``""`` without ``features.top_n``)."""

    candles: pd.DataFrame
    fs: FeatureSet
    folds: list[Any]
    bars: Any
    note: str


def market_features(job: JobContext, data: DataSettings
                    ) -> tuple[pd.DataFrame, FeatureSet, str]:
    """Load and validate ``data``'s candles and its context symbols' (``data``,
    :func:`huracan.stages.context_candles`), build their features and select the top-N columns
    (``features``); returns ``(candles, features, selection note)``.

    Raises:
        DataValidationError, DegradedDataError: as :func:`huracan.stages.load_validated`.
        ValueError: no usable feature rows.
    """
    settings, timer = job.settings, job.timer
    timeframe = data.timeframe
    with timer("data"):
        candles = stages.load_validated(data)
        context = stages.context_candles(settings.features, data)
    with timer("features"):
        sources = stages.family_sources(settings.features, data, candles, settings.db_url)
        fs = stages.build_features(candles, timeframe, settings.features,
                                   label=settings.label, sources=sources, context=context)
        columns, note = select_columns(settings, fs, job.prototype.model_type)
        if columns is not None:
            fs = stages.build_features(candles, timeframe, settings.features, columns,
                                       label=settings.label, sources=sources, context=context)
    return candles, fs, note


def market_bars(job: JobContext, data: DataSettings, candles: pd.DataFrame,
                fs: FeatureSet) -> MarketBars:
    """The market bars of every feature row of ``fs`` (``execution``: fills, costs, funding)."""
    settings = job.settings
    with job.timer("execution"):
        inputs = stages.execution_inputs(settings.backtest, data, candles, settings.db_url)
        return stages.run_bars(fs, settings.backtest, data.timeframe, inputs)


def fold_parts(job: JobContext) -> tuple[str, ...]:
    """The parts each fold predicts: validation too on a forward split or when the rule is
    fitted on it, else the test (OOS) part only."""
    forward = job.settings.split.scheme == "forward"
    return ("val", "test") if forward or job.rule.needs_validation else ("test",)


def evaluate(job: JobContext, p: Prepared, outcomes: list[FoldOutcome],
             title: str) -> Evaluation:
    """Backtest the scored window of ``outcomes`` through the job's rule (``backtest``) with
    the evaluator of the split scheme (:data:`SCHEMES`)."""
    settings = job.settings
    with job.timer("backtest"):
        evaluation: Evaluation = SCHEMES[settings.split.scheme](
            p.fs, outcomes, settings.backtest, settings.data.timeframe, title, job.rule,
            int(settings.registry.min_eval_bars), p.bars)
    return evaluation


def log_evaluation_artifacts(ev: Evaluation, prefix: str = "",
                             timer: Timer | None = None) -> None:
    """An evaluation's frames, reports, evaluation window (``log_artifacts``) and figures
    (``log_plots``) into the active run, each path under ``prefix`` (``""`` or ``BTCUSDT/``)."""
    import mlflow

    timer = timer or Timer()
    with timer("log_artifacts"):
        for path, frame in ev.frames.items():
            tracking.log_frame(frame, prefix + path)
        for path, report in ev.reports.items():
            mlflow.log_dict(report, prefix + path)
        if ev.eval_window is not None:
            tracking.log_frame(ev.eval_window, prefix + WINDOW_ARTIFACT)
    with timer("log_plots"):
        for path, build in ev.figures.items():
            tracking.log_figure(build(), prefix + path)


def register(job: JobContext, model_uri: str | None, run_id: str,
             name: str) -> tuple[str | None, Any]:
    """Register the logged model as a new version of registered model ``name`` with the run's
    manifest (``registry``; the gate decides at the end of the run/sweep); ``(name, version)``
    or ``(None, None)`` without a model or with ``registry.enabled=false``."""
    import mlflow

    settings = job.settings
    if model_uri is None or not settings.registry.enabled:
        return None, None
    with job.timer("registry"):
        client = mlflow.MlflowClient()
        manifest = build_manifest(client, run_id, settings.registry.metric)
        version = register_version(client, name, model_uri, manifest).version
    log.info("registered %s v%s (gate at the end of the run/sweep)", name, version)
    return name, version


def log_summary(run_name: str, ev: Evaluation) -> None:
    """One log line of the run's scored window."""
    m = ev.metrics
    if ev.scored == "oos":
        log.info("%s: walk-forward OOS over %d folds, %d bars: Sharpe %.2f composite %.3f "
                 "(%d trades)", run_name, int(m["oos_n_folds"]), int(m["oos_bars"]),
                 m["oos_sharpe"], m["oos_composite_score"], m["oos_n_trades"])
    else:
        log.info("%s: val Sharpe %.2f composite %.3f | test Sharpe %.2f composite %.3f "
                 "(%d trades)", run_name, m["val_sharpe"], m["val_composite_score"],
                 m["test_sharpe"], m["test_composite_score"], m["test_n_trades"])
