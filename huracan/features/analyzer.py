"""The feature-importance loop's analysis step: rank a trained model's features, store the
rankings, log them to the run, and check whether the ranking shifted.

Two entry points share the same steps (:func:`huracan.evaluation.importance.analyze` ->
:func:`~huracan.features.importance_store.store_rankings` -> MLflow artifacts ->
:func:`~huracan.features.shift.detect_shift`):

- :func:`analyze_job`: inside a training job, on the arrays it already prepared (and the SHAP
  values it already computed);
- :func:`analyze_run`: for any past run with a logged model: the job's features, split and scaler
  are rebuilt from the run's ``config/resolved.yaml`` (deterministic from ``data.path``; checked
  against the run's ``dataset_sha256`` tag and logged scaler) and the fitted estimator is loaded
  from the run's pyfunc model.

Artifacts logged into the run: ``importance/<method>.csv`` (``feature, importance, rank``) per
method including ``aggregate``, ``importance/rankings.csv`` (all methods, long format) and
``importance/summary.json`` (settings, timings, baseline loss, shift report); metrics
``importance_time_<method>_s``, ``importance_baseline_loss`` and ``importance_shift_rho``.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine

from huracan.alerts import Notifier
from huracan.evaluation.importance import ImportanceResult, analyze
from huracan.features.importance_store import store_rankings
from huracan.features.shift import ShiftReport, detect_shift
from huracan.models.base import Forecaster

log = logging.getLogger(__name__)

ARTIFACT_DIR = "importance"


@dataclass
class AnalysisOutcome:
    """What one analysis did.

    Attributes:
        run_id, symbol, timeframe, model_type: the analysed run.
        result: the importances, rankings and per-method timings (seconds).
        shift: the comparison with the previous analysis (``None`` when there was none).
        rows_stored: rows written to ``feature_importance``.
        analyzed_at: the analysis time stored with the rows (UTC).
        seconds: wall time of the whole step (analysis, storage, artifacts, shift detection).
    """

    run_id: str
    symbol: str
    timeframe: str
    model_type: str
    result: ImportanceResult
    shift: ShiftReport | None
    rows_stored: int
    analyzed_at: datetime
    seconds: float = 0.0


def _client(client: Any | None) -> Any:
    if client is not None:
        return client
    from mlflow import MlflowClient

    return MlflowClient()


def log_rankings(client: Any, run_id: str, result: ImportanceResult,
                 summary: dict[str, Any]) -> None:
    """Log the rankings (``importance/<method>.csv``, ``importance/rankings.csv``), the summary
    (``importance/summary.json``) and the timing metrics into ``run_id`` (active or finished)."""
    for method in result.methods:
        client.log_text(run_id, result.ranking(method).to_csv(index=False),
                        f"{ARTIFACT_DIR}/{method}.csv")
    client.log_text(run_id, result.table.to_csv(index=False), f"{ARTIFACT_DIR}/rankings.csv")
    client.log_text(run_id, json.dumps(summary, indent=2, default=str),
                    f"{ARTIFACT_DIR}/summary.json")
    from mlflow.entities import Metric

    now = int(datetime.now(UTC).timestamp() * 1000)
    metrics = {f"importance_time_{m}_s": t for m, t in result.timings.items()}
    metrics["importance_baseline_loss"] = result.baseline_loss
    if summary.get("shift"):
        metrics["importance_shift_rho"] = summary["shift"]["rho"]
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])


def _record(
    client: Any,
    engine: Engine,
    *,
    run_id: str,
    symbol: str,
    timeframe: str,
    model_type: str,
    result: ImportanceResult,
    settings: dict[str, Any],
    shift_threshold: float,
    top_n: int,
    notifier: Notifier | None,
    analyzed_at: datetime | None,
    started: float,
) -> AnalysisOutcome:
    when = analyzed_at or datetime.now(UTC)
    rows = store_rankings(engine, result.table, symbol, timeframe, run_id, model_type, when)
    shift = detect_shift(engine, symbol, timeframe, run_id, shift_threshold, top_n, notifier)
    summary = {
        **settings, "analyzed_at": when.isoformat(), "symbol": symbol, "timeframe": timeframe,
        "model_type": model_type, "n_features": len(result.feature_names),
        "timings_s": result.timings, "baseline_loss": result.baseline_loss,
        "n_shap_rows": result.n_shap_rows, "shap_reused": result.shap_reused,
        "top_aggregate": result.top(top_n),
        "shift": None if shift is None else shift.as_dict(),
    }
    log_rankings(client, run_id, result, summary)
    seconds = time.perf_counter() - started
    log.info("feature importance of %s (%s %s %s): %d rows stored in %.2fs %s; top %s", run_id,
             model_type, symbol, timeframe, rows, seconds,
             {k: round(v, 3) for k, v in result.timings.items()}, result.top(5))
    return AnalysisOutcome(run_id=run_id, symbol=symbol, timeframe=timeframe,
                           model_type=model_type, result=result, shift=shift, rows_stored=rows,
                           analyzed_at=when, seconds=seconds)


def analyze_job(
    engine: Engine,
    *,
    model: Forecaster,
    X_test: np.ndarray,
    y_test: np.ndarray,
    context: np.ndarray | None,
    X_train: np.ndarray,
    y_train: np.ndarray,
    symbol: str,
    timeframe: str,
    run_id: str,
    shap_values: np.ndarray | None = None,
    n_repeats: int = 5,
    seed: int = 42,
    shift_threshold: float = 0.5,
    top_n_compare: int = 10,
    notifier: Notifier | None = None,
    client: Any | None = None,
    analyzed_at: datetime | None = None,
) -> AnalysisOutcome:
    """Analyse the model a training job just fitted (call it inside the job's MLflow run).

    Args:
        engine: the brain store (schema at head).
        model: the fitted forecaster; its ``feature_names_`` name the columns of the matrices.
        X_test, y_test: test rows (scaled, ``(n, f)``) and labels (fraction, ``(n,)``).
        context: rows preceding ``X_test`` (``Prepared.context("test", model.lookback)``).
        X_train, y_train: train rows and labels.
        symbol, timeframe, run_id: the job's market and MLflow run.
        shap_values: the SHAP values the job computed (``ShapResult.values``, ``(m, f)``), reused;
            ``None`` computes them on the last 200 test rows.
        n_repeats, seed: permutation importance repeats and seed.
        shift_threshold, top_n_compare: alert when Spearman's rho between this and the previous
            aggregate ranking (same model type) over their top ``top_n_compare`` features is below
            ``shift_threshold``.
        notifier: shift alerts (default: a log line).
        client: an ``MlflowClient`` (default one on the current tracking URI).
        analyzed_at: analysis time stored with the rows (UTC-aware; default now).

    Returns:
        :class:`AnalysisOutcome`.

    Raises:
        ValueError: on shape mismatches.
        sqlalchemy.exc.SQLAlchemyError: when the brain store cannot be written.
    """
    started = time.perf_counter()
    result = analyze(model, X_test, y_test, context, X_train, y_train, shap_values,
                     n_repeats=n_repeats, seed=seed)
    settings = {"source": "training job", "n_repeats": n_repeats, "seed": seed,
                "shift_threshold": shift_threshold, "top_n_compare": top_n_compare,
                "n_test_rows": len(X_test), "n_train_rows": len(X_train)}
    return _record(_client(client), engine, run_id=run_id, symbol=symbol, timeframe=timeframe,
                   model_type=model.model_type, result=result, settings=settings,
                   shift_threshold=shift_threshold, top_n=top_n_compare, notifier=notifier,
                   analyzed_at=analyzed_at, started=started)


# ----------------------------------------------------------------------------- past runs
def load_run_model(client: Any, run_id: str, dst: Path) -> tuple[Forecaster, Any]:
    """The fitted estimator and scaler of ``run_id``'s logged pyfunc model (downloaded under
    ``dst``).

    Raises:
        LookupError: the run logged no model (``tracking.log_model=false``).
    """
    import mlflow

    run = client.get_run(run_id)
    found = client.search_logged_models([run.info.experiment_id],
                                        filter_string=f"source_run_id='{run_id}'")
    if not found:
        raise LookupError(f"run {run_id} has no logged model (trained with "
                          "tracking.log_model=false?): nothing to analyse")
    local = mlflow.artifacts.download_artifacts(artifact_uri=found[0].artifact_location,
                                                dst_path=str(dst),
                                                tracking_uri=client.tracking_uri)
    wrapper = mlflow.pyfunc.load_model(local).unwrap_python_model()
    return wrapper.estimator, wrapper.scaler


def _column_index(available: list[str], wanted: list[str]) -> list[int]:
    missing = [c for c in wanted if c not in available]
    if missing:
        raise ValueError(f"the model's feature(s) {missing} are not built from the run's "
                         "configuration")
    return [available.index(c) for c in wanted]


def analyze_run(
    client: Any,
    engine: Engine,
    run_id: str,
    *,
    n_repeats: int = 5,
    seed: int = 42,
    shift_threshold: float = 0.5,
    top_n: int = 10,
    notifier: Notifier | None = None,
    shap_max_rows: int | None = None,
    analyzed_at: datetime | None = None,
) -> AnalysisOutcome:
    """Analyse any past run that logged a model: rebuild its data, load its model, rank.

    The job's features, split and scaler are rebuilt by :func:`huracan.pipeline.prepare` from the
    run's ``config/resolved.yaml`` with every feature (``features.top_n`` cleared, no data-quality
    log); a model trained on a subset is fed its own columns, selected by name from its
    ``feature_names_`` (the scaler is per column, so this equals scaling the subset). SHAP is
    computed on the last ``explain.max_rows`` test rows as in the job.

    Args:
        client: an ``MlflowClient`` on the run's tracking store.
        engine: the brain store (schema at head).
        run_id: the MLflow run (finished or not).
        n_repeats, seed: permutation importance repeats and seed.
        shift_threshold, top_n: shift alert threshold and compared top size (see
            :func:`analyze_job`).
        notifier: shift alerts (default: a log line).
        shap_max_rows: rows explained by SHAP (default the run's ``explain.max_rows``, else 200).
        analyzed_at: analysis time stored with the rows (UTC-aware; default now).

    Returns:
        :class:`AnalysisOutcome`.

    Raises:
        LookupError: the run has no logged model.
        ValueError: the rebuilt data differ from the run's (``dataset_sha256`` tag or the logged
            scaler disagree), or the model's features are not built by the configuration.
        mlflow.exceptions.MlflowException: unknown run or missing ``config/resolved.yaml``.
    """
    from omegaconf import DictConfig, OmegaConf, open_dict

    from huracan import pipeline

    started = time.perf_counter()
    run = client.get_run(run_id)
    with tempfile.TemporaryDirectory() as tmp:
        cfg_path = client.download_artifacts(run_id, "config/resolved.yaml", tmp)
        cfg = OmegaConf.load(cfg_path)
        if not isinstance(cfg, DictConfig):
            raise ValueError(f"run {run_id}: config/resolved.yaml is not a mapping")
        model, scaler = load_run_model(client, run_id, Path(tmp) / "model")
    with open_dict(cfg):
        cfg.data.quality_log = None
        if "top_n" in cfg.features:
            cfg.features.top_n = None
    prep, candles = pipeline.prepare(cfg, pipeline.Timer())
    expected = run.data.tags.get("dataset_sha256")
    if expected and pipeline.frame_fingerprint(candles) != expected:
        raise ValueError(f"the data at {cfg.data.path} changed since run {run_id} trained on it "
                         "(dataset_sha256 differs): its importance cannot be reproduced")
    idx = _column_index(list(prep.features.feature_names), list(model.feature_names_))
    logged = np.asarray(getattr(scaler, "mean_", prep.scaler.mean_[idx]), dtype=np.float64)
    rebuilt = prep.scaler.mean_ if logged.shape == prep.scaler.mean_.shape else \
        prep.scaler.mean_[idx]  # the job scaled every feature, or only the model's subset
    if logged.shape != rebuilt.shape or not np.allclose(logged, rebuilt, rtol=1e-6, atol=1e-12):
        raise ValueError(f"the rebuilt train rows differ from run {run_id}'s (scaler means "
                         "disagree): its importance cannot be reproduced")
    X = prep.X[:, idx]
    y = prep.features.y
    tr, te = prep.rows("train"), prep.rows("test")
    ctx_rows = prep.split.context("test", model.lookback)
    context = X[ctx_rows.start : ctx_rows.stop]
    max_rows = int(shap_max_rows or cfg.get("explain", {}).get("max_rows", 200))
    result = analyze(model, X[te], y[te], context, X[tr], y[tr], None, n_repeats=n_repeats,
                     seed=seed, shap_max_rows=max_rows)
    tags = run.data.tags
    settings = {"source": "huracan features analyze", "n_repeats": n_repeats, "seed": seed,
                "shift_threshold": shift_threshold, "top_n_compare": top_n,
                "n_test_rows": int(te.stop - te.start), "n_train_rows": int(tr.stop - tr.start)}
    return _record(client, engine, run_id=run_id,
                   symbol=str(tags.get("symbol", cfg.data.symbol)),
                   timeframe=str(tags.get("timeframe", cfg.data.timeframe)),
                   model_type=model.model_type, result=result, settings=settings,
                   shift_threshold=shift_threshold, top_n=top_n, notifier=notifier,
                   analyzed_at=analyzed_at, started=started)
