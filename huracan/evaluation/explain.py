"""SHAP explanations of a fitted forecaster on a bounded sample of the test split (the models
seed their own explainers from their ``seed`` hyperparameter)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from huracan.models.base import Forecaster


@dataclass
class ShapResult:
    """Attributions ``values`` (n, f) for the explained rows ``X`` (n, f, scaled inputs), and
    ``importance``: mean |SHAP| per feature, sorted descending (model output units: fraction)."""

    values: np.ndarray
    X: np.ndarray
    importance: pd.DataFrame


def explain(
    model: Forecaster,
    X: np.ndarray,
    context: np.ndarray | None,
    background: np.ndarray,
    max_rows: int,
) -> ShapResult:
    """Explain up to ``max_rows`` rows of ``X`` (the last rows, so sequence windows have context).

    Args:
        model: a fitted forecaster implementing ``shap_values``.
        X: rows to explain (scaled), shape ``(n, f)``; ``context`` precedes them.
        background: reference rows for explainers that need one: the train rows, contiguous and in
            time order (sequence models cut windows from them and bound the count themselves),
            shape ``(m, f)``.
        max_rows: bound on explained rows (SHAP cost grows with it).
    """
    n = min(max_rows, len(X))
    head, tail = X[: len(X) - n], X[len(X) - n :]
    ctx = np.concatenate([context, head]) if context is not None else head
    values = model.shap_values(tail, context=ctx, background=background)
    imp = pd.DataFrame({
        "feature": model.feature_names_,
        "mean_abs_shap": np.abs(values).mean(axis=0),
    }).sort_values("mean_abs_shap", ascending=False, ignore_index=True)
    return ShapResult(values=values, X=tail, importance=imp)
