"""Shared trainer of the Keras sequence models (LSTM, CNN, Transformer).

:class:`KerasForecaster` owns every step the three architectures share, so that each model file
only holds its network (``_build``):

- seeding: ``keras.utils.set_random_seed(seed)`` plus TensorFlow op determinism, so two fits with
  the same seed and data give bit-identical predictions (checked on CPU);
- target standardisation: mean and standard deviation of ``y`` are fitted on the train rows only and
  inverted at predict, so predictions are forward returns as fractions (0.01 = +1 %);
- causal windows of ``lookback`` bars built with :func:`huracan.models.base.sequence_windows`;
  window ``i`` ends at row ``i`` and never contains a later row;
- Adam (Kingma & Ba, 2015) on the Huber loss (Huber, 1964) or the mean squared error, with
  ``EarlyStopping`` on ``val_loss`` and ``restore_best_weights`` when validation rows are given;
- persistence in the native Keras ``.keras`` format plus a small JSON file for the target scaler;
- ``keras.backend.clear_session()`` before each build, so many models trained in one process do not
  pile up Keras global state;
- SHAP attributions (:meth:`KerasForecaster.shap_values` for the base contract,
  :meth:`KerasForecaster.shap_explanation` for a bounded sample) with ``shap.GradientExplainer``
  (expected gradients, Erion et al. 2021, an extension of integrated gradients, Sundararajan et
  al. 2017).

Requires the TensorFlow backend of Keras 3 (the project's pinned stack).
"""

from __future__ import annotations

import json
import warnings
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import keras
import numpy as np

from huracan.models import hooks
from huracan.models.base import (
    Forecaster,
    _as_matrix,
    full_windows,
    sequence_windows,
)

MODEL_FILE = "model.keras"
STATE_FILE = "keras_state.json"
LOSSES = ("huber", "mse")
#: windows per inference batch: Keras' per-batch overhead dominates small batches (LSTM, 50,000
#: windows of 32 x 21 on 2 cores: 5.5 s at 256, 1.9 s at 1,024, 2.1 s at 4,096)
PREDICT_BATCH = 1024
#: expected-gradient samples per explained row in :meth:`KerasForecaster.shap_values`. shap runs
#: one gradient call per row, so the cost is mostly per row; against 200 samples, 64 kept the
#: mean-|SHAP| ranking at Spearman 0.91 (LSTM) and 0.99 (Transformer) on the shipped sample, at
#: 0.7x and 0.5x the time
SHAP_NSAMPLES = 64


@dataclass(frozen=True)
class SequenceShap:
    """SHAP attributions of a sequence model, summed over the lookback window.

    Attributes:
        values: per-row attributions, shape ``(n_explained, n_features)``, in the model's output
            units (forward return as a fraction); entry ``[r, j]`` is the sum over the ``lookback``
            time steps of feature ``j``'s attribution for explained row ``rows[r]``.
        mean_abs: mean over explained rows of ``|values|``, shape ``(n_features,)``: the global
            importance of each feature.
        rows: indices (into the ``X`` passed to :meth:`KerasForecaster.shap_explanation`) of the
            explained rows, increasing, shape ``(n_explained,)``.
        base_value: mean prediction over the background windows (fraction); ``values.sum(1) +
            base_value`` approximates the predictions of the explained rows (expected gradients are
            a sampled estimate, so additivity holds only approximately).
        feature_names: names of the ``n_features`` columns.
    """

    values: np.ndarray
    mean_abs: np.ndarray
    rows: np.ndarray
    base_value: float
    feature_names: list[str]


class KerasForecaster(Forecaster):
    """Abstract base of the Keras sequence forecasters; subclasses implement :meth:`_build`.

    Inputs are scaled float32 matrices ``(n_rows, n_features)``, one row per bar in time order;
    targets are forward returns as fractions, shape ``(n_rows,)``. Each prediction uses the window
    of the ``lookback`` bars ending at (and including) its row.

    Args:
        lookback: window length in bars (>= 1).
        epochs: maximum number of passes over the train windows (>= 1).
        batch_size: windows per gradient step (>= 1).
        learning_rate: Adam step size (> 0).
        patience: epochs without ``val_loss`` improvement before early stopping (>= 0); used only
            when validation rows are given.
        dropout: dropout rate in ``[0, 1)`` used by the network's Dropout layers.
        head_units: width of the hidden Dense layer of the regression head (>= 1).
        loss: ``"huber"`` (delta 1.0 on the standardised target, robust to fat-tailed returns) or
            ``"mse"``.
        seed: seed of Python, NumPy, TensorFlow and Keras generators, set at every fit.
        verbose: Keras progress output: 0 silent, 1 progress bar, 2 one line per epoch.

    Fitted attributes: ``model_`` (the Keras network), ``y_mean_`` / ``y_std_`` (train target
    mean and standard deviation, fractions), ``history_`` (per-epoch ``loss`` and ``val_loss`` on
    the standardised target), ``best_epoch_`` (1-based epoch whose weights were kept).

    Defaults are sized for about 4,000 rows x 25 features on 2 CPU cores: a full 20-epoch fit at
    lookback 32-48 took 7-28 s per architecture, early-stopped fits 4-16 s.

    Side effects of ``fit`` on the process (needed for reproducibility and memory hygiene): the
    global Python/NumPy/TensorFlow seeds are reset, TensorFlow op determinism is switched on, and
    ``keras.backend.clear_session()`` resets Keras global state (layer-name counters, a global
    mixed-precision policy); models fitted earlier keep working.
    """

    model_type: ClassVar[str] = "keras"
    requirements: ClassVar[tuple[str, ...]] = (*Forecaster.requirements, "tensorflow-cpu", "keras")
    #: fitted network (set by fit/load); typed loosely because Keras ships no complete stubs
    model_: Any

    def __init__(
        self,
        *,
        lookback: int = 32,
        epochs: int = 20,
        batch_size: int = 128,
        learning_rate: float = 2e-3,
        patience: int = 3,
        dropout: float = 0.1,
        head_units: int = 16,
        loss: str = "huber",
        seed: int = 42,
        verbose: int = 2,
    ) -> None:
        self.lookback = lookback
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.patience = patience
        self.dropout = dropout
        self.head_units = head_units
        self.loss = loss
        self.seed = seed
        self.verbose = verbose

    # ----------------------------------------------------------------- subclass hook
    @abstractmethod
    def _build(self, lookback: int, n_features: int) -> keras.Model:
        """Return the uncompiled network: ``(batch, lookback, n_features) -> (batch, 1)``.

        The output is the standardised forward return (linear activation).
        """

    def _check_params(self) -> None:
        """Raise ``ValueError`` on an invalid hyperparameter; subclasses extend it."""
        _check_int(self.lookback, "lookback", 1)
        _check_int(self.epochs, "epochs", 1)
        _check_int(self.batch_size, "batch_size", 1)
        _check_int(self.patience, "patience", 0)
        _check_int(self.head_units, "head_units", 1)
        if not float(self.learning_rate) > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1 or 2, got {self.verbose!r}")

    # ----------------------------------------------------------------- shared layers
    @staticmethod
    def _last_step(x: Any, name: str = "last_step") -> Any:
        """Features of the last bar (the predicted row): ``(batch, steps, c) -> (batch, c)``.

        Pooling over the whole window dilutes the most recent bar by ``1 / lookback``; the
        architectures concatenate this slice to their pooled summary (built-in layers only).
        """
        steps = int(x.shape[1])
        cropped = keras.layers.Cropping1D((steps - 1, 0), name=f"{name}_crop")(x)
        return keras.layers.Flatten(name=name)(cropped)

    def _head(self, x: Any) -> Any:
        """Regression head shared by the architectures: Dense(relu) -> Dropout -> Dense(1)."""
        x = keras.layers.Dense(self.head_units, activation="relu", name="head_dense")(x)
        x = keras.layers.Dropout(self.dropout, name="head_dropout")(x)
        return keras.layers.Dense(1, name="forecast")(x)

    # ----------------------------------------------------------------- fit / predict
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
    ) -> None:
        """Train on full train windows, early-stopping on validation windows when given.

        Train windows use train rows only and never cross a data gap (``starts``); rows without
        a full window inside their gap-free run (the first ``lookback - 1`` rows of the split and
        of every run after a gap) are not used as training samples. Validation windows take their
        first bars from ``X_val_context`` (the rows preceding ``X_val``), exactly as
        :meth:`predict` does with ``context``, and restart after every gap in ``starts_val``.

        Raises:
            ValueError: on an invalid hyperparameter, when ``X`` has fewer than ``lookback`` rows or
                when ``X_val_context`` has the wrong number of columns or non-finite values.
        """
        self._check_params()
        lookback = int(self.lookback)
        if len(X) < lookback:
            raise ValueError(f"X has {len(X)} rows; at least lookback={lookback} are needed")

        y_mean = float(np.mean(y, dtype=np.float64))
        y_std = float(np.std(y, dtype=np.float64))
        if not np.isfinite(y_std) or y_std < 1e-12:
            y_std = 1.0
        self.y_mean_, self.y_std_ = y_mean, y_std

        full = full_windows(starts, len(X), lookback)
        if not full.any():
            raise ValueError(f"no gap-free run of X has lookback={lookback} rows")
        windows = sequence_windows(X, lookback, starts=starts)[full]
        targets = self._standardise(y[full])
        weights = None if sample_weight is None else \
            (sample_weight[full] / sample_weight[full].mean()).astype(np.float32)
        validation = None
        callbacks: list[keras.callbacks.Callback] = []
        if X_val is not None and y_val is not None and len(X_val):
            context = None
            if X_val_context is not None and len(X_val_context):
                context = _as_matrix(X_val_context, "X_val_context", n_features=X.shape[1])
            if starts_val is not None and starts_val[0]:
                context = None  # a gap right before the validation rows: no context across it
            validation = (sequence_windows(X_val, lookback, context, starts_val),
                          self._standardise(y_val))
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor="val_loss",
                    patience=int(self.patience),
                    restore_best_weights=True,
                    verbose=1 if self.verbose else 0,
                )
            )

        if validation is not None and hooks.active():
            callbacks.append(keras.callbacks.LambdaCallback(
                on_epoch_end=lambda epoch, logs: hooks.report_progress(
                    epoch, float((logs or {}).get("val_loss", float("nan"))))))

        # a refit drops the previous network (and its fitted status) before clearing Keras state
        self.model_ = None
        self.n_features_in_ = None
        keras.backend.clear_session()
        _seed_everything(int(self.seed))
        model = self._build(lookback, X.shape[1])
        loss: Any = keras.losses.Huber(delta=1.0) if self.loss == "huber" else "mse"
        model.compile(optimizer=keras.optimizers.Adam(float(self.learning_rate)), loss=loss)
        batch = int(self.batch_size)
        history = model.fit(
            _dataset(windows, targets, batch, shuffle_seed=int(self.seed), weights=weights),
            validation_data=None if validation is None else _dataset(*validation, batch),
            epochs=int(self.epochs),
            shuffle=False,  # the dataset shuffles itself, seeded
            callbacks=callbacks,
            verbose=int(self.verbose),
        )
        self.model_ = model
        self.history_ = {k: [float(v) for v in vals] for k, vals in history.history.items()}
        monitored = self.history_.get("val_loss") if validation is not None else None
        self.best_epoch_ = (
            int(np.argmin(monitored)) + 1 if monitored else len(self.history_.get("loss", []))
        )

    def _predict(self, X: np.ndarray, context: np.ndarray | None) -> np.ndarray:
        windows = sequence_windows(X, int(self.lookback), context)
        out = self._predict_windows(windows)
        return out * self.y_std_ + self.y_mean_

    def _predict_windows(self, windows: np.ndarray) -> np.ndarray:
        """Standardised predictions of ``(n, lookback, f)`` windows, float64 shape ``(n,)``."""
        if len(windows) == 0:
            return np.empty(0, dtype=np.float64)
        out = self.model_.predict(
            _dataset(windows, None, max(int(self.batch_size), PREDICT_BATCH)), verbose=0
        )
        return np.asarray(out, dtype=np.float64).reshape(-1)

    def _standardise(self, y: np.ndarray) -> np.ndarray:
        return ((np.asarray(y, dtype=np.float64) - self.y_mean_) / self.y_std_).astype(np.float32)

    def training_loss(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
        """Mean of the training loss, computed as in training: on the standardised target
        ``(y - y_mean_) / y_std_``, Huber with delta 1.0 (``0.5 r²`` for ``|r| <= 1`` else
        ``|r| - 0.5``, as ``keras.losses.Huber``) or the squared error (``loss="mse"``); unitless.

        Raises:
            NotFittedError: before ``fit`` (the target scaler is learned there).
        """
        self._check_fitted()
        diff = np.asarray(y_true, dtype=np.float64) - np.asarray(y_pred, dtype=np.float64)
        r = np.abs(diff / self.y_std_)
        if self.loss == "mse":
            return float(np.mean(r * r))
        return float(np.mean(np.where(r <= 1.0, 0.5 * r * r, r - 0.5)))

    # ----------------------------------------------------------------- persistence
    def _save_state(self, path: Path) -> None:
        self.model_.save(path / MODEL_FILE)
        state = {
            "y_mean": self.y_mean_,
            "y_std": self.y_std_,
            "best_epoch": self.best_epoch_,
            "history": self.history_,
            "keras_version": keras.__version__,
        }
        (path / STATE_FILE).write_text(json.dumps(state, indent=2))

    def _load_state(self, path: Path) -> None:
        state = json.loads((path / STATE_FILE).read_text())
        self.y_mean_ = float(state["y_mean"])
        self.y_std_ = float(state["y_std"])
        self.best_epoch_ = int(state["best_epoch"])
        self.history_ = state.get("history", {})
        # compile=False: only inference is needed; custom layers are registered (package "huracan")
        # when their module is imported, which Forecaster.load does through the model's class.
        self.model_ = keras.saving.load_model(path / MODEL_FILE, compile=False)

    # ----------------------------------------------------------------- explanations
    def shap_values(
        self,
        X: np.ndarray,
        context: np.ndarray | None = None,
        background: np.ndarray | None = None,
    ) -> np.ndarray:
        """SHAP values of every row of ``X``, summed over the lookback window (base contract).

        Same computation as :meth:`shap_explanation` with every row explained (bound the rows
        yourself, as :func:`huracan.evaluation.explain.explain` does: cost grows linearly with
        ``len(X)``); at most 100 background windows, :data:`SHAP_NSAMPLES` gradient samples
        per row.

        Returns:
            float64 array of shape ``(n, f)`` in the units of :meth:`predict` (fraction).

        Raises:
            NotFittedError: when the model has not been fitted.
            ValueError: on wrong shapes, non-finite values or an empty ``X``.
        """
        n = len(np.asarray(X))
        result = self.shap_explanation(X, context, background, max_samples=max(n, 1),
                                       nsamples=SHAP_NSAMPLES)
        return result.values

    def shap_explanation(
        self,
        X: np.ndarray,
        context: np.ndarray | None = None,
        background: np.ndarray | None = None,
        max_samples: int = 200,
        max_background: int = 100,
        nsamples: int = 200,
        seed: int | None = None,
    ) -> SequenceShap:
        """SHAP values of (a bounded sample of) the predictions, summed over the lookback window.

        Uses ``shap.GradientExplainer`` (expected gradients: Erion et al., 2021, "Improving
        performance of deep learning models with axiomatic attribution priors and expected
        gradients"). ``shap.DeepExplainer`` (DeepLIFT, Shrikumar et al. 2017) was tried first and
        fails with Keras 3 on these networks (shap 0.51 has no rule for ``BatchMatMulV2`` in the
        LSTM's attention pooling, ``BatchToSpaceND`` in dilated convolutions, ``Neg`` in the
        Transformer).

        Attributions are multiplied by the target's train standard deviation, so they are in the
        units of :meth:`predict` (forward return as a fraction). At most ``max_samples`` rows of
        ``X`` and ``max_background`` background windows are used, drawn without replacement with a
        seeded generator; the explainer's own sampling is seeded too (NumPy's global generator is
        restored afterwards).

        Args:
            X: rows to explain, shape ``(n, f)``.
            context: rows preceding ``X`` in time (as for :meth:`predict`), shape ``(k, f)``.
            background: reference rows, shape ``(m, f)``, typically the train rows; only their full
                windows are used (all windows when ``m < lookback``). ``None`` uses ``X``'s windows.
            max_samples: maximum number of explained rows (>= 1).
            max_background: maximum number of background windows (>= 1).
            nsamples: gradient samples per explained row (>= 1).
            seed: seed of the row sampling and of the explainer; ``None`` uses ``self.seed``.

        Returns:
            :class:`SequenceShap` with ``values`` of shape ``(n_explained, f)`` and ``mean_abs`` of
            shape ``(f,)``, ``n_explained = min(n, max_samples)``.

        Raises:
            NotFittedError: when the model has not been fitted.
            ValueError: on wrong shapes, non-finite values, an empty ``X`` or ``background``, or a
                bound below 1.
        """
        import shap  # heavy import, only needed here

        X = self._explain_matrix(X, "X")
        if len(X) == 0:
            raise ValueError("X is empty: nothing to explain")
        _check_int(max_samples, "max_samples", 1)
        _check_int(max_background, "max_background", 1)
        _check_int(nsamples, "nsamples", 1)
        ctx = self._explain_matrix(context, "context") if context is not None else None
        lookback = int(self.lookback)
        seed = int(self.seed if seed is None else seed)
        rng = np.random.default_rng(seed)

        windows = sequence_windows(X, lookback, ctx if ctx is not None and len(ctx) else None)
        rows = _sample_rows(len(windows), max_samples, rng)
        explained = windows[rows]
        if background is None:
            bg_windows = windows
        else:
            bg = self._explain_matrix(background, "background")
            if len(bg) == 0:
                raise ValueError("background is empty")
            bg_windows = sequence_windows(bg, lookback)
            if len(bg) >= lookback:
                bg_windows = bg_windows[lookback - 1 :]
        bg_windows = bg_windows[_sample_rows(len(bg_windows), max_background, rng)]

        explainer = shap.GradientExplainer(self.model_, bg_windows, batch_size=int(nsamples))
        np_state = np.random.get_state()  # the explainer reseeds NumPy's global generator
        try:
            with warnings.catch_warnings():
                # shap passes the input as a one-element list; Keras 3 warns about the structure
                warnings.filterwarnings("ignore", message="The structure of `inputs`")
                raw = explainer.shap_values(explained, nsamples=int(nsamples), rseed=seed)
        finally:
            np.random.set_state(np_state)
        phi = np.asarray(raw[0] if isinstance(raw, list) else raw, dtype=np.float64)
        phi = phi.reshape(len(explained), lookback, X.shape[1]) * self.y_std_
        values = phi.sum(axis=1)
        base_value = float(self._predict_windows(bg_windows).mean() * self.y_std_ + self.y_mean_)
        return SequenceShap(
            values=values,
            mean_abs=np.abs(values).mean(axis=0),
            rows=rows,
            base_value=base_value,
            feature_names=list(self.feature_names_),
        )

    def _explain_matrix(self, X: Any, name: str) -> np.ndarray:
        self._check_fitted()
        return self._inputs(X, name, self.n_features_in_)


def _check_int(value: Any, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _sample_rows(n: int, limit: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of at most ``limit`` of ``n`` rows, drawn without replacement."""
    if n <= limit:
        return np.arange(n)
    return np.sort(rng.choice(n, size=limit, replace=False))


def _dataset(
    x: np.ndarray, y: np.ndarray | None, batch_size: int, shuffle_seed: int | None = None,
    weights: np.ndarray | None = None,
) -> Any:
    """A ``tf.data`` pipeline of ``(window, target)`` batches (of windows alone when ``y`` is None).

    Built here rather than by Keras from NumPy arrays: Keras' array adapter uses a parallel ``map``
    that TensorFlow rewrites (and logs an error line about) under op determinism. Shuffling, when
    ``shuffle_seed`` is given, spans the whole train set and differs (deterministically) per epoch.
    """
    import tensorflow as tf

    if y is None:
        ds = tf.data.Dataset.from_tensor_slices(x)
    elif weights is None:
        ds = tf.data.Dataset.from_tensor_slices((x, y))
    else:  # Keras reads (inputs, targets, sample weights) tuples
        ds = tf.data.Dataset.from_tensor_slices((x, y, weights))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(x), seed=shuffle_seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size)


def _seed_everything(seed: int) -> None:
    """Seed Python, NumPy, TensorFlow and Keras, and make TensorFlow ops deterministic.

    ``tf.config.experimental.enable_op_determinism`` is process-wide (TensorFlow offers no public
    way to turn it back off); it only affects TensorFlow, which nothing else in Huracan uses.
    """
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
