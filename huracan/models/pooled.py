"""One forecaster fitted on the rows of several symbols (a pooled model), used per symbol.

The rows of every symbol share the model's input columns (``feature_names``: the per-symbol
features, e.g. ``ret_1``, ``rv_24``...), each symbol's columns standardised with that symbol's own
train rows (``means_``/``scales_``), plus the symbol itself (Qlib-style training across a universe
of instruments):

- ``encoding="categorical"`` (the gradient-boosted trees, ``supports_categorical``): one extra
  column ``symbol`` holding the symbol's code ``0..k-1`` (its position in ``symbols``), fitted as
  a categorical feature (LightGBM ``categorical_feature``, XGBoost feature type ``c``);
- ``encoding="onehot"`` (the networks): ``k`` extra columns ``symbol_<PAIR>`` (1 for the row's
  symbol, 0 elsewhere; ``BTC/USDT`` -> ``symbol_BTCUSDT``, the name of
  :func:`huracan.features.naming.symbol_onehot`).

:meth:`PooledModel.estimator_for` is a per-symbol view that behaves as a :class:`Forecaster`
fitted on ``feature_names`` (``predict``, ``shap_values``, ``lookback``...): it appends the
symbol's encoding to the scaled rows and asks the pooled network, so the single-symbol stages
(evaluation, serving, explanations) use it unchanged, with :meth:`PooledModel.scaler_for` as the
scaler. The stacked fit (:meth:`PooledModel.fit`) takes one block of consecutive rows per symbol;
each block's first row is flagged as a start, so no sequence window joins two symbols.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sklearn.base import clone
from sklearn.preprocessing import StandardScaler

from huracan.models.base import Forecaster, NotFittedError

#: the categorical symbol column of the trees (:data:`huracan.features.naming.SYMBOL_COLUMN`)
SYMBOL_COLUMN = "symbol"
ENCODINGS = ("categorical", "onehot")
POOLED_FILE = "pooled.json"
BASE_DIR = "base"


def onehot_column(symbol: str) -> str:
    """``symbol_<PAIR>``: the one-hot column of ``symbol`` (``BTC/USDT:USDT`` ->
    ``symbol_BTCUSDT``; as :func:`huracan.features.naming.symbol_onehot`, which this layer may
    not import)."""
    pair = symbol.split(":", 1)[0].replace("/", "").replace("-", "").upper()
    return f"{SYMBOL_COLUMN}_{pair}"


@dataclass(frozen=True)
class Block:
    """One symbol's consecutive rows in a stacked fit.

    Attributes:
        symbol: the rows' symbol (one of :attr:`PooledModel.symbols`).
        X: the rows' features scaled with the symbol's train scaler, ``(n, f)`` (no encoding).
        y: their labels (forward return, fraction), ``(n,)``.
        starts: bool ``(n,)``, True where a row follows a data gap (None: no gap); the block's
            first row is a start whatever it says.
        weight: train weight per row ``(n,)`` (None: 1 each).
        context: for the first validation block only: the scaled rows preceding it in its
            gap-free run (sequence models' first windows), ``(k, f)``.
    """

    symbol: str
    X: np.ndarray
    y: np.ndarray
    starts: np.ndarray | None = None
    weight: np.ndarray | None = None
    context: np.ndarray | None = None


class PooledModel:
    """A forecaster fitted on the stacked rows of several symbols, with the symbol as an input.

    Args:
        base: an unfitted forecaster (its hyperparameters are copied, ``sklearn.base.clone``).
        symbols: the symbols, in encoding order (the code of ``symbols[i]`` is ``i``).
        feature_names: the per-symbol input columns, before the encoding.
        encoding: ``"categorical"`` or ``"onehot"``; default: categorical when the base model
            ``supports_categorical`` (LightGBM, XGBoost), else one-hot (the networks).

    Fitted attributes: ``base_`` (the fitted forecaster, inputs :attr:`encoded_names`),
    ``means_`` / ``scales_`` (``(k, f)``: each symbol's train-row mean and standard deviation of
    every column, NaN for a symbol without train rows), ``n_samples_`` (train rows per symbol).

    Raises:
        ValueError: no symbol, a repeated symbol, an unknown encoding, or ``categorical`` for a
            base model without categorical support.
    """

    model_type: ClassVar[str] = "pooled"

    def __init__(self, base: Forecaster, symbols: Sequence[str], feature_names: Sequence[str],
                 encoding: str | None = None) -> None:
        symbols = [str(s) for s in symbols]
        if not symbols or len(set(symbols)) != len(symbols):
            raise ValueError(f"a pooled model needs distinct symbols, got {symbols}")
        if encoding is None:
            encoding = "categorical" if base.supports_categorical else "onehot"
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
        if encoding == "categorical" and not base.supports_categorical:
            raise ValueError(f"{type(base).__name__} takes no categorical feature: "
                             "use encoding='onehot'")
        self.base = base
        self.symbols = symbols
        self.feature_names = [str(f) for f in feature_names]
        self.encoding = encoding

    # ----------------------------------------------------------------- symbols, encoding
    def code(self, symbol: str) -> int:
        """The code of ``symbol`` (its position in :attr:`symbols`).

        Raises:
            ValueError: one line naming the unknown symbol and the known ones.
        """
        try:
            return self.symbols.index(str(symbol))
        except ValueError:
            raise ValueError(f"unknown symbol {symbol!r}: this pooled model knows "
                             f"{', '.join(self.symbols)}") from None

    @property
    def encoded_names(self) -> list[str]:
        """The base model's input columns: :attr:`feature_names` then the symbol encoding."""
        if self.encoding == "categorical":
            return [*self.feature_names, SYMBOL_COLUMN]
        return [*self.feature_names, *(onehot_column(s) for s in self.symbols)]

    def encode(self, symbol: str, X: np.ndarray) -> np.ndarray:
        """Scaled rows of ``symbol`` ``(n, f)`` with its encoding appended, float32
        ``(n, f + 1)`` (categorical) or ``(n, f + k)`` (one-hot).

        Raises:
            ValueError: unknown symbol, or ``X`` without ``f`` columns.
        """
        code = self.code(symbol)
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ValueError(f"expected {len(self.feature_names)} feature columns, "
                             f"got shape {X.shape}")
        if self.encoding == "categorical":
            extra = np.full((len(X), 1), code, dtype=np.float32)
        else:
            extra = np.zeros((len(X), len(self.symbols)), dtype=np.float32)
            extra[:, code] = 1.0
        return np.concatenate([X, extra], axis=1)

    # ----------------------------------------------------------------- scalers
    def set_scalers(self, scalers: Mapping[str, StandardScaler]) -> PooledModel:
        """Keep each symbol's train-only scaler (fitted on that symbol's train rows,
        :func:`huracan.splits.fit_scaler`) as ``means_`` / ``scales_``; returns ``self``.

        Raises:
            ValueError: an unknown symbol, or a scaler of another width.
        """
        k, f = len(self.symbols), len(self.feature_names)
        means = np.full((k, f), np.nan)
        scales = np.full((k, f), np.nan)
        seen = np.zeros(k, dtype=np.int64)
        for symbol, scaler in scalers.items():
            i = self.code(symbol)
            if len(scaler.mean_) != f:
                raise ValueError(f"{symbol}: scaler of {len(scaler.mean_)} columns, "
                                 f"expected {f}")
            means[i], scales[i] = scaler.mean_, scaler.scale_
            seen[i] = int(np.max(scaler.n_samples_seen_))
        self.means_, self.scales_, self.n_samples_ = means, scales, seen
        return self

    def scaler_for(self, symbol: str) -> StandardScaler:
        """A fitted :class:`StandardScaler` with ``symbol``'s train-row mean and scale.

        Raises:
            ValueError: unknown symbol, or a symbol without train rows in the fit.
            NotFittedError: before :meth:`set_scalers`.
        """
        i = self.code(symbol)
        if not hasattr(self, "means_"):
            raise NotFittedError("PooledModel has no scalers; fit it first")
        if self.n_samples_[i] == 0:
            raise ValueError(f"{symbol} had no train rows in this pooled fit: no scaler")
        scaler = StandardScaler()
        scaler.mean_ = self.means_[i].copy()
        scaler.scale_ = self.scales_[i].copy()
        scaler.var_ = scaler.scale_ ** 2
        scaler.n_samples_seen_ = int(self.n_samples_[i])
        scaler.n_features_in_ = len(self.feature_names)
        return scaler

    def transform(self, symbol: str, X: np.ndarray) -> np.ndarray:
        """Unscaled rows of ``symbol`` ``(n, f)`` scaled with its train scaler, float32."""
        return np.asarray(self.scaler_for(symbol).transform(np.asarray(X, dtype=np.float64)),
                          dtype=np.float32)

    # ----------------------------------------------------------------- fit / predict
    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` (or :meth:`load`) has run."""
        return getattr(self, "base_", None) is not None and self.base_.is_fitted

    def _stack(self, blocks: Sequence[Block], keep_first_flag: bool
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """Encoded rows, labels, start flags and weights of ``blocks`` one after another."""
        X = np.concatenate([self.encode(b.symbol, b.X) for b in blocks])
        y = np.concatenate([np.asarray(b.y, dtype=np.float64).reshape(-1) for b in blocks])
        flags = []
        for i, b in enumerate(blocks):
            s = np.zeros(len(b.X), dtype=bool) if b.starts is None else \
                np.asarray(b.starts, dtype=bool).copy()
            if len(s) and not (i == 0 and keep_first_flag):
                s[0] = True
            flags.append(s)
        weights = None
        if any(b.weight is not None for b in blocks):
            weights = np.concatenate([np.ones(len(b.X)) if b.weight is None else
                                      np.asarray(b.weight, dtype=np.float64) for b in blocks])
        return X, y, np.concatenate(flags), weights

    def fit(self, train: Sequence[Block], val: Sequence[Block] = ()) -> PooledModel:
        """Fit a fresh copy of the base model on the stacked ``train`` blocks, early-stopping
        on the stacked ``val`` blocks; returns ``self``.

        Every block's first row is a start (no sequence window spans two blocks); the first
        validation block keeps its own flag and its ``context`` (its preceding rows), the others
        start their windows afresh. The categorical encoding is passed to the base model as
        ``categorical_features=["symbol"]``. Set the scalers (:meth:`set_scalers`) that scaled
        the blocks before using :meth:`scaler_for`.

        Raises:
            ValueError: no train rows; a block of an unknown symbol or of the wrong width; what
                the base model's ``fit`` raises.
        """
        train = [b for b in train if len(b.X)]
        val = [b for b in val if len(b.X)]
        if not train:
            raise ValueError("a pooled fit needs train rows of at least one symbol")
        X, y, starts, weights = self._stack(train, keep_first_flag=False)
        X_val = y_val = starts_val = ctx = None
        if val:
            X_val, y_val, starts_val, _ = self._stack(val, keep_first_flag=True)
            first = val[0]
            if first.context is not None and len(first.context):
                ctx = self.encode(first.symbol, first.context)
        self.base_ = clone(self.base)
        self.base_.fit(X, y, X_val, y_val, X_val_context=ctx, feature_names=self.encoded_names,
                       starts=starts, starts_val=starts_val, sample_weight=weights,
                       categorical_features=[SYMBOL_COLUMN]
                       if self.encoding == "categorical" else None)
        return self

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError("PooledModel is not fitted; call fit() first")

    def predict(self, symbol: str, X: np.ndarray, context: np.ndarray | None = None,
                starts: np.ndarray | None = None) -> np.ndarray:
        """Forecasts (forward return, fraction) ``(n,)`` of ``symbol``'s scaled rows ``X``
        ``(n, f)``; ``context`` and ``starts`` as :meth:`Forecaster.predict`.

        Raises:
            ValueError: unknown symbol or wrong width. NotFittedError: before ``fit``.
        """
        self._check_fitted()
        ctx = None if context is None or not len(context) else self.encode(symbol, context)
        return self.base_.predict(self.encode(symbol, X), context=ctx, starts=starts)

    def estimator_for(self, symbol: str) -> SymbolEstimator:
        """The per-symbol view: a forecaster on :attr:`feature_names` predicting ``symbol``.

        Raises:
            ValueError: one line naming the unknown symbol and the known ones.
        """
        self.code(symbol)
        return SymbolEstimator(self, str(symbol))

    # ----------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Save the fitted pooled model under directory ``path`` (``pooled.json``: symbols,
        feature names, encoding, per-symbol scalers; ``base/``: the base model's own
        :meth:`Forecaster.save`); returns ``path``.

        Raises:
            NotFittedError: before ``fit``.
        """
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {"symbols": self.symbols, "feature_names": self.feature_names,
                "encoding": self.encoding,
                "means": _nan_list(self.means_), "scales": _nan_list(self.scales_),
                "n_samples": [int(n) for n in self.n_samples_]}
        (path / POOLED_FILE).write_text(json.dumps(meta, indent=2))
        self.base_.save(path / BASE_DIR)
        return path

    @staticmethod
    def load(path: str | Path) -> PooledModel:
        """Load a model saved by :meth:`save` (predicts identically)."""
        path = Path(path)
        meta = json.loads((path / POOLED_FILE).read_text())
        fitted = Forecaster.load(path / BASE_DIR)
        model = PooledModel(clone(fitted), meta["symbols"], meta["feature_names"],
                            meta["encoding"])
        model.base_ = fitted
        model.means_ = np.array(meta["means"], dtype=np.float64)
        model.scales_ = np.array(meta["scales"], dtype=np.float64)
        model.n_samples_ = np.array(meta["n_samples"], dtype=np.int64)
        return model

    def __repr__(self) -> str:
        return (f"PooledModel({self.base!r}, symbols={self.symbols}, "
                f"encoding={self.encoding!r})")


def _nan_list(a: np.ndarray) -> list[list[float | None]]:
    """A float matrix as JSON lists (NaN -> null)."""
    return [[None if not np.isfinite(v) else float(v) for v in row] for row in np.asarray(a)]


class SymbolEstimator:
    """One symbol's view of a fitted :class:`PooledModel`: a forecaster on the pooled model's
    ``feature_names`` (scaled with :meth:`PooledModel.scaler_for`) that appends the symbol's
    encoding and predicts with the pooled network. Picklable (it holds the pooled model).

    What the single-symbol stages read of a :class:`Forecaster`: ``predict``, ``shap_values``
    (attributions of the ``feature_names`` columns; the symbol column's share is left out),
    ``training_loss``, ``lookback``, ``feature_names_``, ``n_features_in_``, ``is_fitted``,
    ``model_type``, ``accepts_missing``, ``requirements``, ``get_params``.
    """

    def __init__(self, pooled: PooledModel, symbol: str) -> None:
        self.pooled = pooled
        self.symbol = symbol

    @property
    def base(self) -> Forecaster:
        return self.pooled.base_ if self.pooled.is_fitted else self.pooled.base

    @property
    def lookback(self) -> int:
        return int(self.base.lookback)

    @property
    def model_type(self) -> str:
        return str(self.base.model_type)

    @property
    def accepts_missing(self) -> bool:
        return bool(self.base.accepts_missing)

    @property
    def requirements(self) -> tuple[str, ...]:
        return tuple(self.base.requirements)

    @property
    def feature_names_(self) -> list[str]:
        return list(self.pooled.feature_names)

    @property
    def n_features_in_(self) -> int:
        return len(self.pooled.feature_names)

    @property
    def is_fitted(self) -> bool:
        return self.pooled.is_fitted

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The base model's hyperparameters."""
        return self.base.get_params(deep=deep)

    def predict(self, X: np.ndarray, context: np.ndarray | None = None,
                starts: np.ndarray | None = None) -> np.ndarray:
        """As :meth:`Forecaster.predict` on this symbol's scaled rows ``(n, f)``; ``(n,)``."""
        return self.pooled.predict(self.symbol, X, context=context, starts=starts)

    def shap_values(self, X: np.ndarray, context: np.ndarray | None = None,
                    background: np.ndarray | None = None) -> np.ndarray:
        """SHAP of the ``f`` feature columns for each row of ``X`` ``(n, f)`` (the symbol
        encoding's attribution dropped): ``(n, f)``, forward return (fraction)."""
        self.pooled._check_fitted()
        enc = self.pooled.encode

        def encoded(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None or not len(a) else enc(self.symbol, a)

        values = self.pooled.base_.shap_values(enc(self.symbol, X), context=encoded(context),
                                               background=encoded(background))
        return np.asarray(values)[:, : self.n_features_in_]

    def training_loss(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
        """The base model's training loss (:meth:`Forecaster.training_loss`)."""
        return self.base.training_loss(y_true, y_pred)

    def __repr__(self) -> str:
        return f"SymbolEstimator({self.symbol!r} of {self.pooled!r})"
