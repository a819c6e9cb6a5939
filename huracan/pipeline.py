"""Jobs composed of the stages (:mod:`huracan.stages`): training, and the rebuilds of a past run.

- :func:`run_job`: one training job, forward (``split=forward``: fit once, score val and test) or
  walk-forward (``split=walk_forward``: refit per fold, stitch the OOS predictions), then SHAP and
  feature importance on the last fold, one MLflow run (nested under the sweep's parent run in a
  multirun) and a registered model version (the last fold's model: the most recent window).
- :func:`analyze_run`: ``huracan features analyze``: rebuild a past run's rows, rank its features.
- :func:`huracan.rebuild.rebuild_features` (re-exported here, as are
  :func:`~huracan.rebuild.run_settings` and :func:`~huracan.rebuild.load_run_model`): a past
  run reopened.

Every function takes typed settings (:class:`huracan.settings.JobSettings`), never a Hydra config.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from huracan import stages
from huracan.analysis.analyzer import AnalysisOutcome, analyze_job
from huracan.features.build import FeatureSet
from huracan.rebuild import load_run_model, rebuild_features, run_settings
from huracan.registry.evaluate import WINDOW_ARTIFACT
from huracan.registry.promotion import build_manifest, register_version, registered_model_name
from huracan.secrets import mask_url
from huracan.settings import JobSettings
from huracan.stages import Evaluation, FittedFold, FoldOutcome, Timer
from huracan.tracking import run as tracking

log = logging.getLogger(__name__)

#: the evaluator per split scheme
_SCHEMES = {
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
        timings: wall seconds per stage (``data``, ``features``, ``folds``, ``fit``, ``predict``,
            ``shap``, ``importance``, ``logging``, ``registry``).
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
    :func:`run_importance`) and a note, or ``(None, "")``."""
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


def run_job(settings: JobSettings, *, resolved: Mapping[str, Any] | None = None,
            parent_run_id: str | None = None) -> TrainResult:
    """Run one training job; returns its :class:`TrainResult`.

    Args:
        settings: the job's typed settings.
        resolved: the resolved config, logged (secrets masked) as params and
            ``config/resolved.yaml``.
        parent_run_id: the sweep's MLflow parent run (the job's run is nested under it).

    Raises:
        DataValidationError: the input file breaks a rule (the run ends FAILED).
        DegradedDataError: critical expectations fail and degraded data is not allowed.
        ValueError: inconsistent configuration (embargo shorter than the horizon, no fold fits).
    """
    timer = Timer()
    stages.seed_everything(settings.seed)
    prototype = settings.make_model()
    data, split = settings.data, settings.split
    symbol, timeframe = data.symbol, data.timeframe
    evaluate = _SCHEMES[split.scheme]
    rule = settings.make_rule()
    # validation predictions: always on a forward split; per fold when the rule is fitted there
    parts = ("val", "test") if split.scheme == "forward" or rule.needs_validation \
        else ("test",)
    objective = objective_of(settings)
    experiment_id = tracking.configure(settings.tracking.tracking_uri,
                                       Path(settings.tracking.store_dir),
                                       settings.tracking.experiment_name)
    run_name = f"{prototype.model_type}-{symbol.replace('/', '')}-{timeframe}"
    tags = {"symbol": symbol, "timeframe": timeframe, "model_type": prototype.model_type,
            "data_path": mask_url(str(data.path)), **split.describe(),
            "label_kind": settings.label.kind, "rule_kind": rule.kind,
            "train_rows": settings.train.rows, "train_sample_weight": settings.train.sample_weight}
    with tracking.job_run(experiment_id, run_name, tags, parent_run_id) as run_id:
        import mlflow

        if resolved is not None:
            tracking.log_config(resolved)
        with timer("data"):
            candles = stages.load_validated(data)
        with timer("features"):
            sources = stages.family_sources(settings.features, data, candles, settings.db_url)
            fs = stages.build_features(candles, timeframe, settings.features,
                                       label=settings.label, sources=sources)
            columns, note = select_columns(settings, fs, prototype.model_type)
            if columns is not None:
                fs = stages.build_features(candles, timeframe, settings.features, columns,
                                           label=settings.label, sources=sources)
            folds = split.folds(pd.DatetimeIndex(fs.frame.index), timeframe, fs.horizon)
        with timer("execution"):  # the market of every row, built once (fills, costs, funding)
            inputs = stages.execution_inputs(settings.backtest, data, candles, settings.db_url)
            bars = stages.run_bars(fs, settings.backtest, timeframe, inputs)
        last = folds[-1]
        log.info("data: %d candles -> %d feature rows x %d features; %s: %d fold(s), last fold "
                 "train/val/%s = %d/%d/%d rows (embargo %d bars)", len(candles), len(fs.frame),
                 len(fs.feature_names), split.scheme, len(folds), "test" if len(folds) == 1
                 else "OOS", len(last.train), len(last.val), len(last.test), last.embargo)
        # rows whose label is unknown (huracan.labels: dropped, never truncated or bridged)
        unlabelled = {f"labels_dropped_{k}": float(v) for k, v in fs.unlabelled.items()}
        log.info("labels (%s): %d row(s) dropped as their label reaches past a data gap, %d past "
                 "the data end, %d without a barrier width", settings.label.kind,
                 fs.unlabelled["gap"], fs.unlabelled["end_of_data"],
                 fs.unlabelled["no_volatility"])
        train_frame = fs.frame.iloc[last.train.start : last.train.stop]
        mlflow.set_tags({
            **stages.describe_folds(fs, folds),
            "dataset_sha256": stages.frame_fingerprint(candles),
            "train_frame_sha256": stages.frame_fingerprint(train_frame),
            "feature_list_sha256": stages.feature_list_fingerprint(fs.feature_names),
            "n_features": str(len(fs.feature_names)),
            "code_version": stages.code_version(),
            "objective": objective,
            "feature_families": ",".join(settings.features.families) or "price",
            **({"family_coverage": json.dumps({k: round(v, 4) for k, v in fs.coverage.items()})}
               if fs.coverage else {}),
            **({"feature_selection": note[:5000]} if note else {}),
        })
        mlflow.log_metrics(unlabelled)
        log.info("fitting %r on %d fold(s)", prototype, len(folds))
        with timer("folds"):
            labels = stages.LabelTimes.of(fs, settings.label.weights == "uniqueness",
                                          settings.train.row_weights(fs.frame))
            outcomes = stages.fit_predict_folds(prototype, fs, folds, parts,
                                                n_jobs=int(split.n_jobs), timeframe=timeframe,
                                                labels=labels)
        timer.add("fit", sum(o.fit_seconds for o in outcomes))
        timer.add("predict", sum(o.predict_seconds for o in outcomes))
        with timer("backtest"):
            evaluation: Evaluation = evaluate(fs, outcomes, settings.backtest, timeframe,
                                              run_name, rule,
                                              int(settings.registry.min_eval_bars), bars)
        regime_metrics: dict[str, Any] = {}
        if settings.regime.kind != "none":
            with timer("regime"):
                regime_metrics = add_regime_evidence(settings, fs, folds, evaluation, timeframe,
                                                     run_name)
        mlflow.log_metrics(evaluation.metrics)
        if evaluation.tags:
            mlflow.set_tags(evaluation.tags)
            if evaluation.tags.get("rule_chosen") == "flat":
                log.info("%s: rule fitted flat: %s", run_name,
                         evaluation.tags.get("rule_flat_reason", ""))
        fitted = stages.fitted_fold(fs, outcomes[-1], timeframe)
        part = split.selection_part
        with timer("shap"):
            shap_result = stages.explain(fitted, int(settings.explain.max_rows), part)
        if settings.importance.enabled:
            with timer("importance"):
                run_importance(settings, fitted, shap_result.values, run_id, part)
        with timer("logging"):
            model_uri = log_evaluation(settings, fs, folds, outcomes, evaluation, fitted,
                                       shap_result, run_name)
        registered, version = None, None
        if model_uri is not None and settings.registry.enabled:
            with timer("registry"):
                registered = registered_model_name(symbol, timeframe)
                client = mlflow.MlflowClient()
                manifest = build_manifest(client, run_id, settings.registry.metric)
                version = register_version(client, registered, model_uri, manifest).version
            log.info("registered %s v%s (gate at the end of the run/sweep)", registered, version)
        mlflow.log_metrics({f"time_{k}_s": v for k, v in timer.seconds.items()})
    metrics = evaluation.metrics
    _log_summary(run_name, evaluation)
    return TrainResult(run_id=run_id, model_type=prototype.model_type, symbol=symbol,
                       timeframe=timeframe, scheme=split.scheme, metrics=metrics,
                       objective=objective, objective_value=float(metrics[objective]),
                       timings=dict(timer.seconds), evidence=evaluation.evidence,
                       regime_metrics=regime_metrics,
                       n_folds=len(folds), model_uri=model_uri,
                       registered_model=registered,
                       version=None if version is None else str(version),
                       parent_run_id=parent_run_id)


def add_regime_evidence(settings: JobSettings, fs: FeatureSet, folds: list[Any],
                        ev: Evaluation, timeframe: str, run_name: str) -> dict[str, Any]:
    """Detect regimes (per fold, thresholds from its train rows), add a ``regime`` column to the
    scored returns and the evaluation window, per-regime metrics to ``ev.metrics``, the detector
    report and the regime timeline plot; returns ``{window: {regime: {metric: value}}}``."""
    import mlflow

    from huracan.data.ohlcv import bars_per_year
    from huracan.evaluation import plots
    from huracan.regime.jobs import detect_regimes, regime_evidence

    rs = settings.regime
    result = detect_regimes(fs.frame, folds, rs, timeframe, settings.seed)
    index = pd.DatetimeIndex(fs.frame.index)
    nested: dict[str, Any] = {}
    for window, res in ev.results.items():
        rows = index.get_indexer(pd.DatetimeIndex(res.returns["timestamp"]))
        res.returns["regime"] = result.regimes[rows]
        flat, table = regime_evidence(window, res.returns, result.regimes[rows],
                                      bars_per_year(timeframe), rs.min_bars)
        ev.metrics.update(flat)
        nested[window] = table
    if ev.eval_window is not None:
        rows = index.get_indexer(pd.DatetimeIndex(ev.eval_window["timestamp"]))
        ev.eval_window["regime"] = result.regimes[rows]
    ev.reports["regime/detector.json"] = {**result.detector, "shares": result.shares}
    scored = ev.results[ev.scored].returns
    ev.figures["plots/regime_timeline.png"] = lambda: plots.regime_timeline_figure(
        scored, f"{run_name}: {rs.kind} regimes and equity ({ev.scored})")
    mlflow.set_tags({"regime_kind": rs.kind,
                     "regime_shares": json.dumps({k: round(v, 4)
                                                  for k, v in result.shares.items()})})
    return nested


def _log_summary(run_name: str, ev: Evaluation) -> None:
    m = ev.metrics
    if ev.scored == "oos":
        log.info("%s: walk-forward OOS over %d folds, %d bars: Sharpe %.2f composite %.3f "
                 "(%d trades)", run_name, int(m["oos_n_folds"]), int(m["oos_bars"]),
                 m["oos_sharpe"], m["oos_composite_score"], m["oos_n_trades"])
    else:
        log.info("%s: val Sharpe %.2f composite %.3f | test Sharpe %.2f composite %.3f "
                 "(%d trades)", run_name, m["val_sharpe"], m["val_composite_score"],
                 m["test_sharpe"], m["test_composite_score"], m["test_n_trades"])


def log_evaluation(settings: JobSettings, fs: FeatureSet, folds: list[Any],
                   outcomes: list[FoldOutcome], ev: Evaluation, fitted: FittedFold,
                   shap_result: Any, run_name: str) -> str | None:
    """The log stage: datasets, backtest frames, plots, SHAP, the evaluation window and the
    pyfunc model (last fold) into the active run; returns the model URI (or ``None``)."""
    import mlflow

    from huracan.evaluation import plots

    last = folds[-1]
    source = mask_url(str(settings.data.path))
    name = f"{settings.data.symbol} {settings.data.timeframe}"
    scored = stages.rows_frame(fs, last.test) if ev.scored == "test" else stages.rows_frame(
        fs, np.concatenate([np.arange(f.test.start, f.test.stop) for f in folds]))
    tracking.log_datasets(source, [
        (stages.rows_frame(fs, last.train), f"{name} train", "training"),
        (stages.rows_frame(fs, last.val), f"{name} validation", "validation"),
        (scored, f"{name} {'test' if ev.scored == 'test' else 'walk-forward OOS'}",
         "evaluation"),
    ])
    mlflow.log_text("\n".join(fs.feature_names) + "\n", "features/feature_list.txt")
    for path, frame in ev.frames.items():
        tracking.log_frame(frame, path)
    for path, report in ev.reports.items():
        mlflow.log_dict(report, path)
    if ev.eval_window is not None:
        tracking.log_frame(ev.eval_window, WINDOW_ARTIFACT)
    for path, build in ev.figures.items():
        tracking.log_figure(build(), path)
    mlflow.log_text(shap_result.importance.to_csv(index=False), "shap/mean_abs_shap.csv")
    where = "validation" if settings.split.selection_part == "val" else "last OOS step"
    tracking.log_figure(
        plots.shap_summary_figure(shap_result.values, shap_result.X, list(fs.feature_names),
                                  f"SHAP {run_name} ({where})", settings.seed),
        "shap/summary.png")
    if not settings.tracking.log_model:
        return None
    te = last.test
    example = fs.frame.iloc[te.start : te.stop][list(fs.feature_names)].head(5)
    from huracan.serving.bundle import serving_bundle
    from huracan.serving.pyfunc import log_model

    serving = serving_bundle(settings, fs, outcomes[-1], ev.reports, fitted.model,
                             mlflow.active_run().info.run_id,  # type: ignore[union-attr]
                             bars=ev.bars)
    return log_model(fitted.model, fitted.scaler, example, serving)


def run_importance(settings: JobSettings, fitted: FittedFold, shap_values: np.ndarray,
                   run_id: str, part: str = "val") -> AnalysisOutcome | None:
    """Feature-importance loop step on the last fold's selection rows (``part``: validation for a
    forward split, the last OOS step for walk-forward; never test rows): rank, store, log, check
    for a shift. Never fails the job: an error is logged and alerted."""
    from huracan.alerts import Alert
    from huracan.db import migrate
    from huracan.db.session import make_engine

    imp = settings.importance
    notifier = settings.make_notifier()
    engine = make_engine(settings.db_url)
    try:
        migrate.upgrade(engine)
        X_rows, y_rows, context = fitted.tail(part, int(imp.max_rows))
        return analyze_job(engine, model=fitted.model, X_test=X_rows, y_test=y_rows,
                           context=context, X_train=fitted.rows("train"),
                           y_train=fitted.labels("train"),
                           symbol=settings.data.symbol, timeframe=settings.data.timeframe,
                           run_id=run_id, shap_values=shap_values, n_repeats=int(imp.n_repeats),
                           seed=int(imp.seed), shift_threshold=float(imp.shift_threshold),
                           top_n_compare=int(imp.top_n_compare), notifier=notifier)
    except Exception as exc:  # the model is trained and logged: report, do not fail the job
        log.exception("feature importance of run %s failed", run_id)
        notifier.notify(Alert(f"feature importance of run {run_id} failed", "warning",
                              {"error": f"{type(exc).__name__}: {exc}"[:500]}))
        return None
    finally:
        engine.dispose()


# ----------------------------------------------------------------------------- past runs
def analyze_run(
    client: Any,
    engine: Engine,
    run_id: str,
    *,
    n_repeats: int = 5,
    seed: int = 42,
    shift_threshold: float = 0.5,
    top_n: int = 10,
    notifier: Any | None = None,
    shap_max_rows: int | None = None,
    analyzed_at: datetime | None = None,
) -> AnalysisOutcome:
    """Analyse any past run that logged a model: rebuild its rows, load its model, rank.

    The run's features and folds are rebuilt through the stages from its
    ``config/resolved.yaml`` (deterministic from ``data.path``; checked against the run's
    ``dataset_sha256`` tag and its logged scaler); the model's own columns are selected by name
    (a model trained on a top-N subset). The rows analysed are its last fold's scored rows, as in
    the job.

    Raises:
        LookupError: the run has no logged model.
        ValueError: the rebuilt data differ from the run's (``dataset_sha256`` or the scaler
            disagree), or the model's features are not built by the configuration.
        mlflow.exceptions.MlflowException: unknown run or missing ``config/resolved.yaml``.
    """
    started = time.perf_counter()
    run = client.get_run(run_id)
    settings = run_settings(client, run_id)
    with tempfile.TemporaryDirectory() as tmp:
        model, scaler = load_run_model(client, run_id, Path(tmp) / "model")
    wanted = list(model.feature_names_)
    fs_all, candles = rebuild_features(settings)
    missing = [c for c in wanted if c not in fs_all.feature_names]
    if missing:
        raise ValueError(f"the model's feature(s) {missing} are not built from the run's "
                         "configuration")
    expected = run.data.tags.get("dataset_sha256")
    if expected and stages.frame_fingerprint(candles) != expected:
        raise ValueError(f"the data at {settings.data.path} changed since run {run_id} trained "
                         "on it (dataset_sha256 differs): its importance cannot be reproduced")
    fs = FeatureSet(fs_all.frame, wanted, fs_all.horizon, fs_all.coverage)
    fold = settings.split.folds(pd.DatetimeIndex(fs.frame.index), settings.data.timeframe,
                                fs.horizon)[-1]
    X_train = fs.X[fold.train.start : fold.train.stop].astype(np.float64)
    if not np.allclose(np.asarray(scaler.mean_), X_train.mean(axis=0), rtol=1e-5, atol=1e-9):
        raise ValueError(f"the rebuilt train rows differ from run {run_id}'s (scaler means "
                         "disagree): its importance cannot be reproduced")
    X = np.asarray(scaler.transform(fs.X), dtype=np.float32)
    fitted = FittedFold(model, scaler, fold, X, fs.y,
                        stages.gap_starts(pd.DatetimeIndex(fs.frame.index),
                                          settings.data.timeframe))
    max_rows = int(shap_max_rows or settings.explain.max_rows)
    tags = run.data.tags
    part = settings.split.selection_part
    X_rows, y_rows, context = fitted.tail(part, int(settings.importance.max_rows))
    outcome = analyze_job(
        engine, model=model, X_test=X_rows, y_test=y_rows, context=context,
        X_train=fitted.rows("train"),
        y_train=fitted.labels("train"), symbol=str(tags.get("symbol", settings.data.symbol)),
        timeframe=str(tags.get("timeframe", settings.data.timeframe)), run_id=run_id,
        shap_values=None, n_repeats=n_repeats, seed=seed, shift_threshold=shift_threshold,
        top_n_compare=top_n, notifier=notifier, client=client, analyzed_at=analyzed_at,
        shap_max_rows=max_rows, source="huracan features analyze")
    outcome.seconds = time.perf_counter() - started
    return outcome
