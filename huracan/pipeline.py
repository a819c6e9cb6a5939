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
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from huracan import stages
from huracan.analysis.analyzer import AnalysisOutcome, analyze_job
from huracan.features.build import FeatureSet
from huracan.job import (  # TrainResult, objective_of, select_columns: re-exported
    JobContext,
    Prepared,
    TrainResult,
    evaluate,
    fold_parts,
    job_run,
    log_evaluation_artifacts,
    log_summary,
    market_bars,
    market_features,
    objective_of,  # noqa: F401
    register,
    select_columns,  # noqa: F401
    start,
)
from huracan.rebuild import load_run_model, rebuild_features, run_settings
from huracan.registry.promotion import registered_model_name
from huracan.secrets import mask_url
from huracan.settings import JobSettings
from huracan.stages import Evaluation, FittedFold, FoldOutcome, Timer
from huracan.tracking import run as tracking
from huracan.tracking.names import labels_metric

log = logging.getLogger(__name__)

def run_job(settings: JobSettings, *, resolved: Mapping[str, Any] | None = None,
            parent_run_id: str | None = None) -> TrainResult:
    """Run one training job; returns its :class:`TrainResult`.

    The steps, each timed into :attr:`TrainResult.timings`: :func:`_prepare` (load, validate,
    features, folds, market bars), :func:`_tag_run`, :func:`_fit_evaluate` (fold loop,
    backtest, regimes), :func:`_explain_and_log` (SHAP, importance, artifacts, the model, the
    evaluation metrics in one batch) and :func:`_register`.

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
    if settings.data.pooled:  # one model on the rows of several markets
        from huracan.pooled.job import run_pooled_job

        return run_pooled_job(settings, resolved=resolved, parent_run_id=parent_run_id)
    symbol, timeframe = settings.data.symbol, settings.data.timeframe
    job, experiment_id, tags = start(settings, f"{symbol.replace('/', '')}-{timeframe}")
    with job_run(job, experiment_id, tags, parent_run_id, resolved) as run_id:
        prepared = _prepare(job)
        _tag_run(job, prepared)
        outcomes, evaluation, regime_metrics = _fit_evaluate(job, prepared)
        model_uri = _explain_and_log(job, prepared, outcomes, evaluation, run_id)
        registered, version = register(job, model_uri, run_id,
                                       registered_model_name(symbol, timeframe))
    metrics = evaluation.metrics
    log_summary(job.run_name, evaluation)
    return TrainResult(run_id=run_id, model_type=job.prototype.model_type, symbol=symbol,
                       timeframe=timeframe, scheme=settings.split.scheme, metrics=metrics,
                       objective=job.objective, objective_value=float(metrics[job.objective]),
                       timings=dict(job.timer.seconds), evidence=evaluation.evidence,
                       regime_metrics=regime_metrics,
                       n_folds=len(prepared.folds), model_uri=model_uri,
                       registered_model=registered,
                       version=None if version is None else str(version),
                       parent_run_id=parent_run_id)


def _prepare(job: JobContext) -> Prepared:
    """The data step: load and validate the candles (``data``), build the features, select the
    top-N columns, cut the folds (``features``), build the market bars of every row once
    (``execution``: fills, costs, funding)."""
    settings, timer = job.settings, job.timer
    data, split, timeframe = settings.data, settings.split, settings.data.timeframe
    candles, fs, note = market_features(job, data)
    with timer("features"):
        folds = split.folds(pd.DatetimeIndex(fs.frame.index), timeframe, fs.horizon)
    bars = market_bars(job, data, candles, fs)
    last = folds[-1]
    log.info("data: %d candles -> %d feature rows x %d features; %s: %d fold(s), last fold "
             "train/val/%s = %d/%d/%d rows (embargo %d bars)", len(candles), len(fs.frame),
             len(fs.feature_names), split.scheme, len(folds), "test" if len(folds) == 1
             else "OOS", len(last.train), len(last.val), len(last.test), last.embargo)
    log.info("labels (%s): %d row(s) dropped as their label reaches past a data gap, %d past "
             "the data end, %d without a barrier width", settings.label.kind,
             fs.unlabelled["gap"], fs.unlabelled["end_of_data"],
             fs.unlabelled["no_volatility"])
    return Prepared(candles, fs, folds, bars, note)


def _tag_run(job: JobContext, p: Prepared) -> None:
    """The run's tags (folds, fingerprints, code version, objective, families) and the
    ``labels/dropped_<reason>`` metrics: rows whose label is unknown (:mod:`huracan.labels`:
    dropped, never truncated or bridged)."""
    import mlflow

    settings, fs = job.settings, p.fs
    last = p.folds[-1]
    train_frame = fs.frame.iloc[last.train.start : last.train.stop]
    with job.timer("log_tags"):
        mlflow.set_tags({
            **stages.describe_folds(fs, p.folds),
            "dataset_sha256": stages.frame_fingerprint(p.candles),
            "train_frame_sha256": stages.frame_fingerprint(train_frame),
            "feature_list_sha256": stages.feature_list_fingerprint(fs.feature_names),
            "n_features": str(len(fs.feature_names)),
            "code_version": stages.code_version(),
            "objective": job.objective,
            "feature_families": ",".join(settings.features.families) or "price",
            **({"family_coverage": json.dumps({k: round(v, 4)
                                               for k, v in fs.coverage.items()})}
               if fs.coverage else {}),
            **({"feature_selection": p.note[:5000]} if p.note else {}),
        })
    with job.timer("log_metrics"):
        mlflow.log_metrics({labels_metric(k): float(v) for k, v in fs.unlabelled.items()})


def _fit_evaluate(job: JobContext, p: Prepared
                  ) -> tuple[list[FoldOutcome], Evaluation, dict[str, Any]]:
    """The fold loop (``folds``, of which ``fit`` and ``predict``), the backtest of the scored
    window through the rule (``backtest``) and, unless ``regime=none``, the regime evidence
    (``regime``); returns the fold outcomes, the evaluation and the per-regime metrics."""
    import mlflow

    settings, timer, fs, timeframe = job.settings, job.timer, p.fs, job.settings.data.timeframe
    split = settings.split
    # validation predictions: always on a forward split; per fold when the rule is fitted there
    parts = fold_parts(job)
    log.info("fitting %r on %d fold(s)", job.prototype, len(p.folds))
    with timer("folds"):
        labels = stages.LabelTimes.of(fs, settings.label.weights == "uniqueness",
                                      settings.train.row_weights(fs.frame))
        outcomes = stages.fit_predict_folds(job.prototype, fs, p.folds, parts,
                                            n_jobs=int(split.n_jobs), timeframe=timeframe,
                                            labels=labels)
    timer.add("fit", sum(o.fit_seconds for o in outcomes))
    timer.add("predict", sum(o.predict_seconds for o in outcomes))
    evaluation = evaluate(job, p, outcomes, job.run_name)
    regime_metrics: dict[str, Any] = {}
    if settings.regime.kind != "none":
        with timer("regime"):
            regime_metrics = add_regime_evidence(settings, fs, p.folds, evaluation, timeframe,
                                                 job.run_name)
    if evaluation.tags:
        with timer("log_tags"):
            mlflow.set_tags(evaluation.tags)
        if evaluation.tags.get("rule_chosen") == "flat":
            log.info("%s: rule fitted flat: %s", job.run_name,
                     evaluation.tags.get("rule_flat_reason", ""))
    return outcomes, evaluation, regime_metrics


def _explain_and_log(job: JobContext, p: Prepared, outcomes: list[FoldOutcome], ev: Evaluation,
                     run_id: str) -> str | None:
    """SHAP (``shap``) and the feature-importance loop (``importance``) on the last fold's
    selection rows, the artifacts and the model (``logging``, :func:`log_evaluation`), then the
    evaluation metrics in one batch (``log_metrics``); returns the model URI (or ``None``).

    The metrics are logged after the model: MLflow's ``log_model`` links every metric the run
    already has to the new model by re-reading each one's history (one query per metric) and
    logging it again, while a batch logged after it is linked to the model as it is written
    (``mlflow.log_metrics`` tags new metrics with the run's logged model at that step). The run,
    its model and the registered version see the same metrics; each is written once. They are
    logged even when a step here raises (the run then ends FAILED)."""
    import mlflow

    settings, timer = job.settings, job.timer
    model_uri: str | None = None
    try:
        fitted = stages.fitted_fold(p.fs, outcomes[-1], settings.data.timeframe)
        part = settings.split.selection_part
        with timer("shap"):
            shap_result = stages.explain(fitted, int(settings.explain.max_rows), part)
        if settings.importance.enabled:
            with timer("importance"):
                run_importance(settings, fitted, shap_result.values, run_id, part)
        with timer("logging"):
            model_uri = log_evaluation(settings, p.fs, p.folds, outcomes, ev, fitted,
                                       shap_result, job.run_name, timer)
    finally:
        with timer("log_metrics"):
            mlflow.log_metrics(ev.metrics)
    return model_uri


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
        scored, f"{run_name}: {rs.kind} regimes and equity ({ev.scored})",
        fill=settings.backtest.fill)
    mlflow.set_tags({"regime_kind": rs.kind,
                     "regime_shares": json.dumps({k: round(v, 4)
                                                  for k, v in result.shares.items()})})
    return nested


def log_evaluation(settings: JobSettings, fs: FeatureSet, folds: list[Any],
                   outcomes: list[FoldOutcome], ev: Evaluation, fitted: FittedFold,
                   shap_result: Any, run_name: str, timer: Timer | None = None) -> str | None:
    """The log stage: datasets, backtest frames, plots, SHAP, the evaluation window and the
    pyfunc model (last fold) into the active run; returns the model URI (or ``None``).

    With ``timer``, its parts are timed as ``log_datasets`` (the three ``mlflow.log_input``
    datasets), ``log_artifacts`` (feature list, frames, reports, evaluation window, SHAP table),
    ``log_plots`` (every figure, built and saved) and ``log_model`` (the serving bundle and
    the pyfunc model)."""
    import mlflow

    from huracan.evaluation import plots

    timer = timer or Timer()
    last = folds[-1]
    source = mask_url(str(settings.data.path))
    name = f"{settings.data.symbol} {settings.data.timeframe}"
    with timer("log_datasets"):
        scored = stages.rows_frame(fs, last.test) if ev.scored == "test" else stages.rows_frame(
            fs, np.concatenate([np.arange(f.test.start, f.test.stop) for f in folds]))
        tracking.log_datasets(source, [
            (stages.rows_frame(fs, last.train), f"{name} train", "training"),
            (stages.rows_frame(fs, last.val), f"{name} validation", "validation"),
            (scored, f"{name} {'test' if ev.scored == 'test' else 'walk-forward OOS'}",
             "evaluation"),
        ])
    log_evaluation_artifacts(ev, "", timer)
    with timer("log_artifacts"):
        mlflow.log_text("\n".join(fs.feature_names) + "\n", "features/feature_list.txt")
        mlflow.log_text(shap_result.importance.to_csv(index=False), "shap/mean_abs_shap.csv")
    with timer("log_plots"):
        where = "validation" if settings.split.selection_part == "val" else "last OOS step"
        tracking.log_figure(
            plots.shap_summary_figure(shap_result.values, shap_result.X,
                                      list(fs.feature_names), f"SHAP {run_name} ({where})",
                                      settings.seed),
            "shap/summary.png")
    if not settings.tracking.log_model:
        return None
    with timer("log_model"):
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
