"""The estimator contract every zoo model follows: scikit-learn's.

:class:`Forecaster` subclasses :class:`sklearn.base.BaseEstimator` (with
:class:`sklearn.base.RegressorMixin`), so the zoo behaves as scikit-learn users expect:

- ``__init__`` only stores hyperparameters (keyword arguments, stored under the same names; no
  validation, no derived attributes: ``fit`` validates); ``get_params(deep=...)`` returns exactly
  those and ``set_params`` sets them, so the Hydra ``_target_`` kwargs, ``get_params()`` and the
  params logged to MLflow are one and the same, and ``sklearn.base.clone(model)`` is an unfitted
  copy with equal params.
- ``fit(X, y, X_val, y_val)`` returns ``self``; learned state ends in ``_``
  (``n_features_in_``, ``feature_names_``, the library's model); ``__sklearn_is_fitted__`` says
  whether it is there, so ``sklearn.utils.validation.check_is_fitted`` works.
- ``predict(X, context=None)`` refuses an unfitted model (:class:`NotFittedError`, a subclass of
  ``sklearn.exceptions.NotFittedError``).
- ``save(path)`` / ``Forecaster.load(path)`` persist the fitted model in the library's own format.

Inputs are already scaled float32 matrices of shape ``(n_rows, n_features)``, one row per bar in
time order; targets are forward returns as fractions (0.01 = +1 %), shape ``(n_rows,)``. Sequence
models build windows of ``lookback`` bars themselves; ``context`` carries the rows that precede
``X`` in time (never later rows) so the first rows of a split still get full windows. Rows are
consecutive bars unless ``starts`` says otherwise: ``starts[i]`` is True where row ``i`` follows a
data gap (a missing bar), and no window ever joins bars from both sides of a gap.
"""

from __future__ import annotations

import importlib
import inspect
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import NotFittedError as SklearnNotFittedError

PARAMS_FILE = "params.json"


class NotFittedError(SklearnNotFittedError, RuntimeError):
    """Raised when ``predict``, ``save`` or an explainer is called before ``fit``.

    A ``sklearn.exceptions.NotFittedError`` (itself a ``ValueError`` and ``AttributeError``), so
    scikit-learn code catches it, and still a ``RuntimeError``, as it was before the zoo followed
    scikit-learn's contract.
    """


class Forecaster(RegressorMixin, BaseEstimator, ABC):
    """Base class of every zoo model: a scikit-learn regressor of the forward return.

    Subclasses implement ``_fit``, ``_predict``, ``_save_state`` and ``_load_state``; the base owns
    the order of steps, input checks and parameter handling. ``score(X, y)`` is scikit-learn's
    R² of :meth:`predict` (from ``RegressorMixin``).
    """

    #: short name used in tags, registry manifests and file names (``lightgbm``, ``lstm``...)
    model_type: ClassVar[str] = "base"
    #: number of preceding rows a prediction needs (1 for tabular models)
    lookback: int = 1
    #: distributions the saved model needs at load time (pinned to installed versions on logging)
    requirements: ClassVar[tuple[str, ...]] = ("numpy", "pandas", "scikit-learn", "mlflow")
    #: whether the model takes missing values (NaN) natively (the gradient-boosted trees); the
    #: others get them filled with 0, the train mean after standard scaling (a neutral value),
    #: and read the ``<family>_available`` flags as the mask
    accepts_missing: ClassVar[bool] = False
    #: whether ``fit`` takes ``categorical_features`` (integer-coded columns split as categories:
    #: the gradient-boosted trees); the networks take a one-hot encoding instead
    supports_categorical: ClassVar[bool] = False
    #: fitted: names of the columns treated as categorical (set by ``fit`` and ``load``; not a
    #: hyperparameter, so ``get_params`` and the Hydra ``_target_`` kwargs are unchanged)
    categorical_features_: tuple[str, ...] = ()

    # ----------------------------------------------------------------- parameters
    @classmethod
    def _get_param_names(cls) -> list[str]:
        """The constructor's parameter names, in signature order (scikit-learn's hook, which
        sorts them; the signature's order keeps ``repr`` and ``params.json`` as they were)."""
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Return the constructor's hyperparameters, as passed (a fresh dict).

        Args:
            deep: scikit-learn's flag: also return the parameters of nested estimators as
                ``<name>__<param>``. The zoo's hyperparameters are plain values, so ``deep=True``
                and ``deep=False`` return the same dict.
        """
        return super().get_params(deep=deep)

    def set_params(self, **params: Any) -> Forecaster:
        """Set hyperparameters by name (scikit-learn's ``set_params``); returns ``self``.

        Raises:
            ValueError: on an unknown hyperparameter name.
        """
        valid = set(self._get_param_names())
        for key in params:
            if key.partition("__")[0] not in valid:
                raise ValueError(f"{type(self).__name__} has no hyperparameter {key!r}")
        super().set_params(**params)
        return self

    # ----------------------------------------------------------------- fit/predict
    @property
    def is_fitted(self) -> bool:
        """Whether ``fit`` (or :meth:`load`) has run: ``n_features_in_`` is set."""
        return getattr(self, "n_features_in_", None) is not None

    def __sklearn_is_fitted__(self) -> bool:
        """scikit-learn's fitted check (``check_is_fitted``): :attr:`is_fitted`."""
        return self.is_fitted

    def _check_fitted(self, what: str = "call fit() first") -> None:
        """Raise :class:`NotFittedError` unless the model is fitted."""
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} is not fitted; {what}")

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
        *,
        X_val_context: np.ndarray | None = None,
        feature_names: list[str] | None = None,
        starts: np.ndarray | None = None,
        starts_val: np.ndarray | None = None,
        sample_weight: np.ndarray | None = None,
        categorical_features: Sequence[str] | None = None,
    ) -> Forecaster:
        """Fit on train, early-stopping on validation when given.

        Args:
            X: train features, shape ``(n, f)``.
            y: train targets (forward return, fraction), shape ``(n,)``.
            X_val, y_val: validation rows used for early stopping only.
            X_val_context: rows immediately preceding ``X_val`` in the same gap-free run (for
                sequence models).
            feature_names: column names, kept for explanations.
            starts, starts_val: bool, shape ``(n,)`` / ``(n_val,)``: True where a row follows a
                data gap (``None``: no gap). Sequence models never window across a gap.
            sample_weight: non-negative weight per train row, shape ``(n,)`` (e.g. the average
                uniqueness of overlapping labels, AFML ch. 4); ``None``: equal weights.
            categorical_features: names (among ``feature_names``) of integer-coded columns
                (codes ``0..k-1``, NaN allowed) the model splits as categories, not as numbers
                (a pooled model's ``symbol``); only for models with ``supports_categorical``.

        Returns:
            ``self``.

        Raises:
            ValueError: on shape mismatches or non-finite values; categorical features given to
                a model without ``supports_categorical``, not among the feature names, or whose
                values are not non-negative integers.
        """
        X = self._inputs(X, "X")
        y = _as_vector(y, len(X), "y")
        if X_val is not None:
            X_val = self._inputs(X_val, "X_val", X.shape[1])
            y_val = _as_vector(y_val, len(X_val), "y_val")
        if X_val_context is not None and len(X_val_context):
            X_val_context = self._inputs(X_val_context, "X_val_context", X.shape[1])
        self.feature_names_ = list(feature_names) if feature_names else [
            f"f{i}" for i in range(X.shape[1])
        ]
        self.categorical_features_ = self._categorical(categorical_features, X, X_val)
        starts = _as_starts(starts, len(X), "starts")
        if X_val is not None:
            starts_val = _as_starts(starts_val, len(X_val), "starts_val")
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
            if sample_weight.shape != (len(X),) or not np.isfinite(sample_weight).all() \
                    or (sample_weight < 0).any() or sample_weight.sum() <= 0:
                raise ValueError("sample_weight must be finite, >= 0, not all 0, one per row of X")
        self._fit(X, y, X_val, y_val, X_val_context, starts=starts, starts_val=starts_val,
                  sample_weight=sample_weight)
        self.n_features_in_ = X.shape[1]
        return self

    def _categorical(self, names: Sequence[str] | None, *matrices: np.ndarray | None
                     ) -> tuple[str, ...]:
        """The checked ``categorical_features`` of :meth:`fit` (after ``feature_names_``)."""
        if not names:
            return ()
        if not self.supports_categorical:
            raise ValueError(f"{type(self).__name__} takes no categorical features "
                             f"({list(names)}): one-hot encode them")
        unknown = [n for n in names if n not in self.feature_names_]
        if unknown:
            raise ValueError(f"categorical features {unknown} are not among the feature names")
        for name in names:
            j = self.feature_names_.index(name)
            for m in matrices:
                col = np.asarray(m[:, j] if m is not None else (), dtype=np.float64)
                col = col[np.isfinite(col)]
                if (col < 0).any() or (col != np.round(col)).any():
                    raise ValueError(f"categorical feature {name!r} must hold integer codes "
                                     ">= 0 (or NaN)")
        return tuple(names)

    def predict(self, X: np.ndarray, context: np.ndarray | None = None,
                starts: np.ndarray | None = None) -> np.ndarray:
        """Predict the forward return for each row of ``X``.

        Args:
            X: features, shape ``(n, f)``.
            context: up to ``lookback - 1`` rows preceding ``X`` in time, in the same gap-free
                run as ``X[0]``, shape ``(k, f)``; rows without a full window are padded by
                repeating the first available row of their run.
            starts: bool, shape ``(n,)``: True where a row follows a data gap. A sequence model
                predicts each gap-free run separately (the context only reaches the first one).

        Returns:
            float64 array of shape ``(n,)``.

        Raises:
            NotFittedError: when the model has not been fitted.
            ValueError: when ``X`` has the wrong number of columns or non-finite values.
        """
        self._check_fitted()
        X = self._inputs(X, "X", self.n_features_in_)
        if context is not None and len(context):
            context = self._inputs(context, "context", self.n_features_in_)
        else:
            context = None
        flags = _as_starts(starts, len(X), "starts")
        if flags is None or int(self.lookback) <= 1 or not flags[1:].any():
            first_ctx = None if flags is not None and flags[0] else context
            out = np.asarray(self._predict(X, first_ctx), dtype=np.float64).reshape(-1)
        else:
            bounds = [*np.flatnonzero(flags[1:]) + 1, len(X)]
            pieces, a = [], 0
            for b in bounds:
                ctx = context if a == 0 and not flags[0] else None
                pieces.append(np.asarray(self._predict(X[a:b], ctx), dtype=np.float64)
                              .reshape(-1))
                a = b
            out = np.concatenate(pieces)
        if out.shape != (len(X),):
            raise RuntimeError(f"{type(self).__name__} returned {out.shape}, expected ({len(X)},)")
        return out

    def _inputs(self, X: Any, name: str, n_features: int | None = None) -> np.ndarray:
        """``X`` as a checked float32 matrix: NaN kept for models that take missing values,
        filled with 0 (neutral after scaling) for the others; infinities refused."""
        arr = _as_matrix(X, name, n_features=n_features, allow_nan=True)
        return arr if self.accepts_missing else np.nan_to_num(arr, nan=0.0)

    def training_loss(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
        """The loss the model is trained on, averaged over rows (lower is better).

        The default is the mean squared error in target units (fraction²); models trained on
        another loss (Huber, pseudo-Huber) override it, so that permutation importance scores a
        model by what it optimises (:func:`huracan.evaluation.importance.permutation_importance`).

        Args:
            y_true: targets (forward return, fraction), shape ``(n,)``.
            y_pred: predictions of :meth:`predict`, shape ``(n,)``.

        Returns:
            The mean loss (a float; its unit depends on the loss).
        """
        r = np.asarray(y_true, dtype=np.float64) - np.asarray(y_pred, dtype=np.float64)
        return float(np.mean(r * r))

    def shap_values(
        self,
        X: np.ndarray,
        context: np.ndarray | None = None,
        background: np.ndarray | None = None,
    ) -> np.ndarray:
        """SHAP attributions of each input feature for each row of ``X``.

        Returns:
            array of shape ``(n, f)`` in the model's output units (forward return, fraction);
            sequence models sum each feature's attributions over the ``lookback`` window.

        Raises:
            NotFittedError: before ``fit``.
            NotImplementedError: for a model without an explainer.
        """
        raise NotImplementedError(f"{type(self).__name__} has no SHAP explainer")

    # ----------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Save hyperparameters and fitted state under directory ``path``; returns it."""
        self._check_fitted("nothing to save")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {
            "class": f"{type(self).__module__}:{type(self).__qualname__}",
            "params": self.get_params(),
            "n_features_in": self.n_features_in_,
            "feature_names": self.feature_names_,
            "categorical_features": list(self.categorical_features_),
        }
        (path / PARAMS_FILE).write_text(json.dumps(meta, indent=2, default=str))
        self._save_state(path)
        return path

    @staticmethod
    def load(path: str | Path) -> Forecaster:
        """Load a model saved by :meth:`save` (the class is read from ``params.json``)."""
        path = Path(path)
        meta = json.loads((path / PARAMS_FILE).read_text())
        module_name, _, qualname = meta["class"].partition(":")
        cls = getattr(importlib.import_module(module_name), qualname)
        model: Forecaster = cls(**meta["params"])
        model.feature_names_ = meta["feature_names"]
        model.categorical_features_ = tuple(meta.get("categorical_features", ()))
        model._load_state(path)
        model.n_features_in_ = int(meta["n_features_in"])
        return model

    # ----------------------------------------------------------------- subclass hooks
    @abstractmethod
    def _fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        X_val: np.ndarray | None,
        y_val: np.ndarray | None,
        X_val_context: np.ndarray | None,
        *,
        starts: np.ndarray | None = None,
        starts_val: np.ndarray | None = None,
        sample_weight: np.ndarray | None = None,
    ) -> None: ...

    @abstractmethod
    def _predict(self, X: np.ndarray, context: np.ndarray | None) -> np.ndarray:
        """Predict one gap-free run of rows (``context`` precedes it in the same run)."""

    @abstractmethod
    def _save_state(self, path: Path) -> None: ...

    @abstractmethod
    def _load_state(self, path: Path) -> None: ...

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def _as_matrix(X: Any, name: str, n_features: int | None = None,
               allow_nan: bool = False) -> np.ndarray:
    arr = np.asarray(X, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows, features), got shape {arr.shape}")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"{name} has {arr.shape[1]} features, the model expects {n_features}")
    bad = np.isinf(arr) if allow_nan else ~np.isfinite(arr)
    if bad.any():
        what = "infinite" if allow_nan else "NaN or infinite"
        raise ValueError(f"{name} contains {what} values")
    return arr


def _as_vector(y: Any, n: int, name: str) -> np.ndarray:
    if y is None:
        raise ValueError(f"{name} is required")
    arr = np.asarray(y, dtype=np.float32).reshape(-1)
    if arr.shape != (n,):
        raise ValueError(f"{name} has {arr.shape[0]} rows, expected {n}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _as_starts(starts: Any, n: int, name: str) -> np.ndarray | None:
    if starts is None:
        return None
    arr = np.asarray(starts, dtype=bool).reshape(-1)
    if arr.shape != (n,):
        raise ValueError(f"{name} has {arr.shape[0]} rows, expected {n}")
    return arr


def _segment_first(n_prefix: int, n: int, starts: np.ndarray | None) -> np.ndarray:
    """For each row of ``prefix + X`` (``n_prefix + n`` rows), the index of the first row of its
    gap-free run (the prefix belongs to ``X[0]``'s run unless ``starts[0]``)."""
    flags = np.zeros(n_prefix + n, dtype=bool)
    flags[0] = True
    if starts is not None:
        flags[n_prefix:] |= starts
    idx = np.arange(n_prefix + n)
    return np.maximum.accumulate(np.where(flags, idx, 0))


def sequence_windows(X: np.ndarray, lookback: int, context: np.ndarray | None = None,
                     starts: np.ndarray | None = None) -> np.ndarray:
    """Build causal sliding windows: window ``i`` ends at row ``i`` of ``X``.

    Args:
        X: shape ``(n, f)``.
        lookback: window length in bars.
        context: rows preceding ``X`` (oldest first) in the same gap-free run; only the last
            ``lookback - 1`` are used.
        starts: bool, shape ``(n,)``: True where a row follows a data gap. A window never
            reaches back past the first row of its run (nor into ``context`` after a gap at
            ``X[0]``): the missing bars are the run's first row repeated (edge padding), never a
            bar from the other side of the gap and never a later row.

    Returns:
        float32 array of shape ``(n, lookback, f)``; ``out[i, -1] == X[i]``.
    """
    X = np.asarray(X, dtype=np.float32)
    pad = lookback - 1
    prefix = (
        np.asarray(context, dtype=np.float32)[-pad:]
        if context is not None and pad > 0
        else np.empty((0, X.shape[1]), np.float32)
    )
    full = np.concatenate([prefix, X], axis=0)
    m = len(prefix)
    first = _segment_first(m, len(X), starts)
    rows = np.arange(m, m + len(X))
    idx = np.maximum(rows[:, None] - pad + np.arange(lookback)[None, :], first[rows][:, None])
    return full[idx]


def full_windows(starts: np.ndarray | None, n: int, lookback: int) -> np.ndarray:
    """Bool mask of the rows of ``X`` (``n`` rows, no context) whose window of ``lookback`` bars
    lies entirely inside their gap-free run (no edge padding): the rows a sequence model trains
    on."""
    first = _segment_first(0, n, starts)
    return np.arange(n) - first >= lookback - 1


def tree_shap(booster: Any, X: np.ndarray, feature_names: list[str]) -> np.ndarray:
    """TreeSHAP values of a LightGBM/XGBoost booster (shap delegates to the library's own
    ``pred_contrib``), shape ``(n, f)``."""
    import pandas as pd
    import shap

    frame = pd.DataFrame(X, columns=feature_names)
    values = shap.TreeExplainer(booster).shap_values(frame)
    return np.asarray(values, dtype=np.float64).reshape(len(X), len(feature_names))
