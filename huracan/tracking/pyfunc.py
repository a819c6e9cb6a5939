"""The logged model: an MLflow pyfunc bundling the train-only scaler and the fitted estimator.

``mlflow.pyfunc.load_model(uri).predict(features)`` takes a DataFrame with the feature columns
(one row per bar, time order, unscaled) and returns the forecast forward return per row (fraction).
The estimator is stored in its library's native format (LightGBM text, XGBoost UBJSON, Keras
``.keras``) under the ``estimator`` artifact; the scaler is a pickled scikit-learn StandardScaler.
Sequence models pad the first ``lookback - 1`` rows of a request by repeating the first row, so
pass at least ``lookback`` rows of history for faithful forecasts.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from huracan.models.base import Forecaster


class ForecasterPyfunc(PythonModel):
    """pyfunc wrapper: scale with the train-only scaler, then ``Forecaster.predict``."""

    def load_context(self, context: Any) -> None:
        self.estimator = Forecaster.load(context.artifacts["estimator"])
        with Path(context.artifacts["scaler"]).open("rb") as fh:
            self.scaler = pickle.load(fh)

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> np.ndarray:
        names = self.estimator.feature_names_
        missing = [c for c in names if c not in model_input.columns]
        if missing:
            raise ValueError(f"input is missing feature column(s) {missing}")
        X = self.scaler.transform(model_input[names].to_numpy(np.float64)).astype(np.float32)
        return self.estimator.predict(X)


def save_bundle(estimator: Forecaster, scaler: Any, directory: Path) -> dict[str, str]:
    """Write the estimator and scaler under ``directory``; returns pyfunc ``artifacts`` paths."""
    est_dir = estimator.save(directory / "estimator")
    scaler_path = directory / "scaler.pkl"
    with scaler_path.open("wb") as fh:
        pickle.dump(scaler, fh)
    return {"estimator": str(est_dir), "scaler": str(scaler_path)}
