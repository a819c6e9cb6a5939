"""LightGBM gradient-boosted trees (Ke et al. 2017, NeurIPS) regressing the forward return."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from huracan.models import hooks
from huracan.models.base import Forecaster, tree_shap

MODEL_FILE = "model.txt"
#: LightGBM's names of the L1 (absolute error) objective
_L1_OBJECTIVES = ("regression_l1", "l1", "mae", "mean_absolute_error")


def _report_val(env: Any) -> None:
    """LightGBM callback: the ``val`` metric of this round to :mod:`huracan.models.hooks`."""
    for name, _metric, value, *_ in env.evaluation_result_list:
        if name == "val":
            hooks.report_progress(env.iteration, value)
            return


class LightGBMForecaster(Forecaster):
    """LightGBM regressor with early stopping on the validation split.

    Hyperparameters are LightGBM's own names; ``objective="huber"`` with ``alpha`` (the Huber
    threshold, in target units: fractions) resists fat-tailed returns.
    """

    accepts_missing = True  # NaN goes down the learned default branch of each split
    supports_categorical = True  # LightGBM's categorical_feature (Fisher 1958 grouping splits)
    requirements = (*Forecaster.requirements, "lightgbm")
    model_type = "lightgbm"

    def __init__(
        self,
        n_estimators: int = 500,
        learning_rate: float = 0.03,
        num_leaves: int = 15,
        max_depth: int = -1,
        min_child_samples: int = 50,
        subsample: float = 0.8,
        subsample_freq: int = 1,
        colsample_bytree: float = 0.8,
        reg_lambda: float = 1.0,
        objective: str = "huber",
        alpha: float = 0.01,
        early_stopping_rounds: int = 50,
        seed: int = 42,
        n_jobs: int = 2,
        log_period: int = 100,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.max_depth = max_depth
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.subsample_freq = subsample_freq
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.objective = objective
        self.alpha = alpha
        self.early_stopping_rounds = early_stopping_rounds
        self.seed = seed
        self.n_jobs = n_jobs
        self.log_period = log_period

    def _lgb_params(self) -> dict:
        return {
            "objective": self.objective,
            "alpha": self.alpha,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "max_depth": self.max_depth,
            "min_child_samples": self.min_child_samples,
            "bagging_fraction": self.subsample,
            "bagging_freq": self.subsample_freq,
            "feature_fraction": self.colsample_bytree,
            "lambda_l2": self.reg_lambda,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.n_jobs,
            "verbosity": -1,
        }

    def _fit(self, X, y, X_val, y_val, X_val_context, *, starts=None, starts_val=None,
             sample_weight=None) -> None:
        train = lgb.Dataset(X, y, weight=sample_weight, feature_name=self.feature_names_,
                            categorical_feature=list(self.categorical_features_) or "auto",
                            free_raw_data=False)
        valid_sets = [train]
        callbacks: list[Callable[..., Any]] = [lgb.log_evaluation(self.log_period)]
        names = ["train"]
        if X_val is not None:
            valid_sets.append(lgb.Dataset(X_val, y_val, reference=train))
            names.append("val")
            callbacks.append(lgb.early_stopping(self.early_stopping_rounds, verbose=False))
            if hooks.active():
                callbacks.append(_report_val)
        self.booster_ = lgb.train(
            self._lgb_params(), train, num_boost_round=self.n_estimators,
            valid_sets=valid_sets, valid_names=names, callbacks=callbacks,
        )
        self.best_iteration_ = int(self.booster_.best_iteration or self.n_estimators)

    def _predict(self, X, context) -> np.ndarray:
        return np.asarray(self.booster_.predict(X, num_iteration=self.best_iteration_))

    def training_loss(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
        """Mean of LightGBM's training loss: Huber with threshold ``alpha`` (fractions) when
        ``objective="huber"``, ``0.5 r²`` for ``|r| <= alpha`` else ``alpha (|r| - alpha / 2)``
        (LightGBM's ``huber`` metric); the mean absolute error for the L1 objectives; the mean
        squared error otherwise."""
        r = np.abs(np.asarray(y_true, dtype=np.float64) - np.asarray(y_pred, dtype=np.float64))
        if self.objective == "huber":
            a = float(self.alpha)
            return float(np.mean(np.where(r <= a, 0.5 * r * r, a * (r - 0.5 * a))))
        if self.objective in _L1_OBJECTIVES:
            return float(np.mean(r))
        return super().training_loss(y_true, y_pred)

    def shap_values(self, X, context=None, background=None) -> np.ndarray:
        """Exact TreeSHAP (Lundberg et al. 2020) via ``shap.TreeExplainer``; shape ``(n, f)``.
        With categorical features, LightGBM's own TreeSHAP (``pred_contrib``; shap does not
        parse categorical splits), the same values."""
        self._check_fitted()
        X = np.asarray(X, dtype=np.float32)
        if self.categorical_features_:
            contrib = self.booster_.predict(X, num_iteration=self.best_iteration_,
                                            pred_contrib=True)
            return np.asarray(contrib, dtype=np.float64)[:, :-1]  # last column: expected value
        return tree_shap(self.booster_, X, self.feature_names_)

    def _save_state(self, path: Path) -> None:
        self.booster_.save_model(str(path / MODEL_FILE), num_iteration=self.best_iteration_)

    def _load_state(self, path: Path) -> None:
        self.booster_ = lgb.Booster(model_file=str(path / MODEL_FILE))
        self.best_iteration_ = self.booster_.current_iteration()
