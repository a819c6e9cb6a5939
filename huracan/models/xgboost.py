"""XGBoost gradient-boosted trees (Chen & Guestrin 2016, KDD) regressing the forward return."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from huracan.models import hooks
from huracan.models.base import Forecaster, tree_shap

MODEL_FILE = "model.ubj"


class _ReportVal(xgb.callback.TrainingCallback):
    """XGBoost callback: the ``val`` metric of this round to :mod:`huracan.models.hooks`."""

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        metrics = evals_log.get("val", {})
        if metrics:
            hooks.report_progress(epoch, float(next(iter(metrics.values()))[-1]))
        return False


class XGBoostForecaster(Forecaster):
    """XGBoost regressor (``hist`` trees) with early stopping on the validation split.

    ``objective="reg:pseudohubererror"`` with ``huber_slope`` (target units: fractions) resists
    fat-tailed returns; any XGBoost regression objective works.
    """

    accepts_missing = True  # NaN goes down the learned default branch of each split
    supports_categorical = True  # feature_types "c" (XGBoost's native categorical splits)
    requirements = (*Forecaster.requirements, "xgboost-cpu")
    model_type = "xgboost"

    def __init__(
        self,
        n_estimators: int = 500,
        learning_rate: float = 0.03,
        max_depth: int = 4,
        min_child_weight: float = 5.0,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        reg_lambda: float = 1.0,
        objective: str = "reg:pseudohubererror",
        huber_slope: float = 0.01,
        early_stopping_rounds: int = 50,
        seed: int = 42,
        n_jobs: int = 2,
        log_period: int = 100,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.min_child_weight = min_child_weight
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.objective = objective
        self.huber_slope = huber_slope
        self.early_stopping_rounds = early_stopping_rounds
        self.seed = seed
        self.n_jobs = n_jobs
        self.log_period = log_period

    def _xgb_params(self) -> dict:
        return {
            "objective": self.objective,
            "huber_slope": self.huber_slope,
            "eta": self.learning_rate,
            "max_depth": self.max_depth,
            "min_child_weight": self.min_child_weight,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "lambda": self.reg_lambda,
            "tree_method": "hist",
            "seed": self.seed,
            "nthread": self.n_jobs,
            "base_score": 0.0,
        }

    def _fit(self, X, y, X_val, y_val, X_val_context, *, starts=None, starts_val=None,
             sample_weight=None) -> None:
        dtrain = self._dmatrix(X, label=y, weight=sample_weight)
        evals = [(dtrain, "train")]
        if X_val is not None:
            evals.append((self._dmatrix(X_val, label=y_val), "val"))
        callbacks = [_ReportVal()] if X_val is not None and hooks.active() else None
        self.booster_ = xgb.train(
            self._xgb_params(), dtrain, num_boost_round=self.n_estimators, evals=evals,
            early_stopping_rounds=self.early_stopping_rounds if X_val is not None else None,
            verbose_eval=self.log_period, callbacks=callbacks,
        )
        best = getattr(self.booster_, "best_iteration", None)
        self.best_iteration_ = int(best) + 1 if best is not None else self.n_estimators

    def _dmatrix(self, X: np.ndarray, **kwargs: Any) -> xgb.DMatrix:
        """``X`` as a DMatrix named by ``feature_names_``; the categorical features typed ``c``
        (XGBoost's categorical splits)."""
        if not self.categorical_features_:
            return xgb.DMatrix(X, feature_names=self.feature_names_, **kwargs)
        cats = set(self.categorical_features_)
        types = ["c" if name in cats else "q" for name in self.feature_names_]
        return xgb.DMatrix(X, feature_names=self.feature_names_, feature_types=types,
                           enable_categorical=True, **kwargs)

    def _predict(self, X, context) -> np.ndarray:
        return self.booster_.predict(self._dmatrix(X), iteration_range=(0, self.best_iteration_))

    def training_loss(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
        """Mean of XGBoost's training loss: pseudo-Huber with slope ``δ = huber_slope`` (fractions)
        when ``objective="reg:pseudohubererror"``, ``δ² (sqrt(1 + (r/δ)²) - 1)`` (XGBoost's
        ``mphe`` metric); the mean absolute error for ``reg:absoluteerror``; the mean squared
        error otherwise."""
        r = np.asarray(y_true, dtype=np.float64) - np.asarray(y_pred, dtype=np.float64)
        if self.objective == "reg:pseudohubererror":
            d = float(self.huber_slope)
            return float(np.mean(d * d * (np.sqrt(1.0 + (r / d) ** 2) - 1.0)))
        if self.objective == "reg:absoluteerror":
            return float(np.mean(np.abs(r)))
        return super().training_loss(y_true, y_pred)

    def shap_values(self, X, context=None, background=None) -> np.ndarray:
        """Exact TreeSHAP (Lundberg et al. 2020) via ``shap.TreeExplainer``; shape ``(n, f)``.
        With categorical features, XGBoost's own TreeSHAP (``pred_contribs``; shap would rebuild
        the DMatrix without the categorical types), the same values."""
        self._check_fitted()
        X = np.asarray(X, dtype=np.float32)
        if self.categorical_features_:
            contrib = self.booster_.predict(self._dmatrix(X), pred_contribs=True,
                                            iteration_range=(0, self.best_iteration_))
            return np.asarray(contrib, dtype=np.float64)[:, :-1]  # last column: the bias
        return tree_shap(self.booster_, X, self.feature_names_)

    def _save_state(self, path: Path) -> None:
        self.booster_[: self.best_iteration_].save_model(str(path / MODEL_FILE))

    def _load_state(self, path: Path) -> None:
        self.booster_ = xgb.Booster(model_file=str(path / MODEL_FILE))
        self.best_iteration_ = self.booster_.num_boosted_rounds()
