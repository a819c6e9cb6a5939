"""The feature-importance loop's analysis step: rank a trained model's features, store the
rankings, log them to the run, and check whether the ranking shifted.

Both callers share the same steps (:func:`huracan.evaluation.importance.analyze` ->
:func:`~huracan.analysis.importance_store.store_rankings` -> MLflow artifacts ->
:func:`~huracan.analysis.shift.detect_shift`):

- :func:`analyze_job`: inside a training job, on the arrays it already prepared (and the SHAP
  values it already computed);
- ``huracan features analyze``: for any past run, whose rows :func:`huracan.pipeline.analyze_run`
  rebuilds through the same stages before calling :func:`analyze_job` (``source`` says which).

Artifacts logged into the run: ``importance/<method>.csv`` (``feature, importance, rank``) per
method including ``aggregate``, ``importance/rankings.csv`` (all methods, long format) and
``importance/summary.json`` (settings, timings, baseline loss, shift report, the family line) and
``importance/families.json`` (SHAP and permutation importance summed per feature family, as
shares of the total: :mod:`huracan.analysis.families`); metrics ``time/importance_<method>_s``,
``importance/baseline_loss``, ``importance/shift_rho`` and ``importance/family_<family>_<method>``
(fractions).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import Engine

from huracan.alerts import Notifier
from huracan.analysis.families import ARTIFACT as FAMILIES_ARTIFACT
from huracan.analysis.families import family_metrics, family_report
from huracan.analysis.importance_store import store_rankings
from huracan.analysis.shift import ShiftReport, detect_shift
from huracan.evaluation.importance import ImportanceResult, analyze
from huracan.models.base import Forecaster
from huracan.tracking.names import importance_metric, time_metric

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
    (``importance/summary.json``), the family shares (``importance/families.json``) and the
    timing and family metrics into ``run_id`` (active or finished)."""
    families = family_report(result.importances, result.feature_names)
    client.log_text(run_id, json.dumps(families, indent=2), FAMILIES_ARTIFACT)
    for method in result.methods:
        client.log_text(run_id, result.ranking(method).to_csv(index=False),
                        f"{ARTIFACT_DIR}/{method}.csv")
    client.log_text(run_id, result.table.to_csv(index=False), f"{ARTIFACT_DIR}/rankings.csv")
    client.log_text(run_id, json.dumps(summary, indent=2, default=str),
                    f"{ARTIFACT_DIR}/summary.json")
    from mlflow.entities import Metric

    now = int(datetime.now(UTC).timestamp() * 1000)
    metrics = {time_metric(f"importance_{m}"): t for m, t in result.timings.items()}
    metrics[importance_metric("baseline_loss")] = result.baseline_loss
    if summary.get("shift"):
        metrics[importance_metric("shift_rho")] = summary["shift"]["rho"]
    metrics.update(family_metrics(families))
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
        "families": family_report(result.importances, result.feature_names)["summary"],
        "shift": None if shift is None else shift.as_dict(),
    }
    log_rankings(client, run_id, result, summary)
    seconds = time.perf_counter() - started
    log.info("feature importance of %s (%s %s %s): %d rows stored in %.2fs %s; top %s; %s",
             run_id, model_type, symbol, timeframe, rows, seconds,
             {k: round(v, 3) for k, v in result.timings.items()}, result.top(5),
             summary["families"])
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
    shap_max_rows: int = 200,
    source: str = "training job",
) -> AnalysisOutcome:
    """Analyse a fitted model on its scored rows and record the rankings.

    Args:
        engine: the brain store (schema at head).
        model: the fitted forecaster; its ``feature_names_`` name the columns of the matrices.
        X_test, y_test: test rows (scaled, ``(n, f)``) and labels (fraction, ``(n,)``).
        context: rows preceding ``X_test`` (``FittedFold.context("test")``).
        X_train, y_train: train rows and labels.
        symbol, timeframe, run_id: the job's market and MLflow run.
        shap_values: the SHAP values the job computed (``ShapResult.values``, ``(m, f)``), reused;
            ``None`` computes them on the last ``shap_max_rows`` test rows.
        n_repeats, seed: permutation importance repeats and seed.
        shift_threshold, top_n_compare: alert when Spearman's rho between this and the previous
            aggregate ranking (same model type) over their top ``top_n_compare`` features is below
            ``shift_threshold``.
        notifier: shift alerts (default: a log line).
        client: an ``MlflowClient`` (default one on the current tracking URI).
        analyzed_at: analysis time stored with the rows (UTC-aware; default now).
        shap_max_rows: rows explained when ``shap_values`` is ``None``.
        source: what asked for the analysis (stored in the summary).

    Returns:
        :class:`AnalysisOutcome`.

    Raises:
        ValueError: on shape mismatches.
        sqlalchemy.exc.SQLAlchemyError: when the brain store cannot be written.
    """
    started = time.perf_counter()
    result = analyze(model, X_test, y_test, context, X_train, y_train, shap_values,
                     n_repeats=n_repeats, seed=seed, shap_max_rows=shap_max_rows)
    settings = {"source": source, "n_repeats": n_repeats, "seed": seed,
                "shift_threshold": shift_threshold, "top_n_compare": top_n_compare,
                "n_test_rows": len(X_test), "n_train_rows": len(X_train)}
    return _record(_client(client), engine, run_id=run_id, symbol=symbol, timeframe=timeframe,
                   model_type=model.model_type, result=result, settings=settings,
                   shift_threshold=shift_threshold, top_n=top_n_compare, notifier=notifier,
                   analyzed_at=analyzed_at, started=started)
