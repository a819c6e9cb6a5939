"""A past run reopened: its typed settings, its features rebuilt, its logged model.

- :func:`run_settings`: the settings of a past run, from its logged ``config/resolved.yaml``.
- :func:`rebuild_features`: a past run's features rebuilt through the same stages (``registry
  monitor``, drift, the sizer, regime choice, serving: on the run's own data or newer data).
- :func:`load_run_model`: the fitted estimator and scaler of a run's logged pyfunc model.

Used by the trainers' neighbours (serving, sizing, regimes, analysis, the registry commands);
it imports the stages and settings only, never a job.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from huracan import stages
from huracan.features.build import FeatureSet
from huracan.models.base import Forecaster
from huracan.settings import JobSettings

__all__ = ["load_run_model", "rebuild_features", "run_settings"]


def run_settings(client: Any, run_id: str) -> JobSettings:
    """The typed settings of a past run, from its ``config/resolved.yaml`` artifact, read
    through the compatibility path :meth:`JobSettings.from_logged` (retired keys dropped).

    Raises:
        mlflow.exceptions.MlflowException: unknown run or no such artifact.
        ValueError: the artifact is not a mapping.
        huracan.settings.UnknownKeyError: a key that is neither known nor retired.
    """
    import yaml

    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(run_id, "config/resolved.yaml", tmp)
        resolved = yaml.safe_load(Path(path).read_text())
    if not isinstance(resolved, dict):
        raise ValueError(f"run {run_id}: config/resolved.yaml is not a mapping")
    return JobSettings.from_logged(resolved, source=f"run {run_id}")


def rebuild_features(settings: JobSettings, data_path: str | Path | None = None,
                     columns: list[str] | None = None, keep_unlabelled: bool = False
                     ) -> tuple[FeatureSet, pd.DataFrame]:
    """A run's features rebuilt through the same stages (no data-quality log), on its own data
    file or ``data_path``; returns the feature set and the candles. ``keep_unlabelled`` keeps
    the latest bars whose label is not known yet (to serve them). Context symbols
    (``features.context``) are read beside the (possibly overridden) data file
    (:func:`huracan.stages.context_candles`)."""
    from dataclasses import replace

    data = settings.data if data_path is None else replace(settings.data, path=str(data_path))
    candles = stages.load_validated(data, log_quality=False)
    sources = stages.family_sources(settings.features, data, candles, settings.db_url)
    context = stages.context_candles(settings.features, data, log_quality=False)
    return stages.build_features(candles, data.timeframe, settings.features, columns,
                                 label=settings.label, sources=sources,
                                 keep_unlabelled=keep_unlabelled, context=context), candles


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
