"""Feature importance of a fitted forecaster by three methods, and their aggregate ranking.

- ``shap``: mean |SHAP value| per feature over (a bounded sample of) the test rows, in the model's
  output units (forward return, fraction). TreeSHAP for the GBDTs, expected gradients for the
  Keras networks (see each model's ``shap_values``); Lundberg & Lee 2017, Lundberg et al. 2020.
- ``permutation``: mean increase of the model's *training loss* on the test rows when one feature
  column is shuffled (Breiman 2001, "Random Forests", Machine Learning 45; scikit-learn's
  ``sklearn.inspection.permutation_importance`` semantics: ``n_repeats`` seeded shuffles, importance
  = permuted loss - baseline loss, so 0 means "unused" and negative means "noise helped").
- ``correlation``: |Spearman rank correlation| (Spearman 1904) of each feature with the label on
  the train rows: model-free, a sanity check of the two model-based methods.
- ``aggregate``: the mean of a feature's ranks across the methods above (lower is better; rank 1 is
  the lowest mean rank). Ranks are by |importance| descending; ties keep the feature order.

Everything here is NumPy in, NumPy/pandas out; storage, MLflow and alerts live in
:mod:`huracan.analysis.analyzer`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from huracan.models.base import Forecaster

log = logging.getLogger(__name__)

#: the per-model methods, in the order they are computed and stored
METHODS = ("shap", "permutation", "correlation")
AGGREGATE = "aggregate"
#: bound on the input of one ``predict`` call in :func:`permutation_increases` (a sequence model
#: materialises ``rows x lookback x features`` float32 windows: ~2.4 MB per 900-row copy at 32 x 21)
MAX_PREDICT_BYTES = 64 * 2**20

LossFn = Callable[[np.ndarray, np.ndarray], float]


# ----------------------------------------------------------------------------- permutation
def _window_prefix(X: np.ndarray, context: np.ndarray | None, pad: int) -> np.ndarray:
    """The ``pad`` rows a sequence model puts before ``X``'s first row when called as
    ``predict(X, context)``: the last ``pad`` context rows, edge-padded with the oldest available
    row (as :func:`huracan.models.base.sequence_windows` does). Shape ``(pad, f)``."""
    f = X.shape[1]
    if pad <= 0:
        return np.empty((0, f), dtype=np.float32)
    ctx = (np.asarray(context, dtype=np.float32)[-pad:] if context is not None and len(context)
           else np.empty((0, f), dtype=np.float32))
    missing = pad - len(ctx)
    if missing > 0:
        first = ctx[:1] if len(ctx) else X[:1]
        ctx = np.concatenate([np.repeat(first, missing, axis=0), ctx], axis=0)
    return ctx


def permutation_increases(
    model: Forecaster,
    X: np.ndarray,
    y: np.ndarray,
    context: np.ndarray | None = None,
    loss: LossFn | None = None,
    n_repeats: int = 5,
    seed: int = 42,
    max_predict_bytes: int = MAX_PREDICT_BYTES,
) -> tuple[np.ndarray, float]:
    """Loss increase of every (repeat, feature) shuffle, and the unshuffled baseline loss.

    For each repeat, every column ``j`` of ``X`` is shuffled in turn (rows permuted with a seeded
    generator, the other columns intact) and scored with ``loss(y, model.predict(X_perm,
    context))``. The permuted copies (all repeats and features) are stacked vertically and
    predicted in as few calls as ``max_predict_bytes`` allows (one for a GBDT on ~900 x 21 rows);
    for a sequence model (``lookback > 1``) each copy is preceded by the ``lookback - 1`` rows
    ``predict`` would have put before it (the last context rows), so every window is exactly the
    one ``predict(X_perm, context)`` builds. Context rows are never permuted (they precede the
    scored rows).

    Args:
        model: a fitted forecaster.
        X: scored rows (scaled), shape ``(n, f)``, time order.
        y: targets (forward return, fraction), shape ``(n,)``.
        context: rows preceding ``X`` (sequence models), shape ``(k, f)``.
        loss: ``loss(y_true, y_pred) -> float``, lower is better; default ``model.training_loss``.
        n_repeats: shuffles per feature (>= 1).
        seed: seed of the shuffles (NumPy ``default_rng``; the permutations drawn do not depend on
            how the copies are batched).
        max_predict_bytes: bound on the model input of one ``predict`` call, counting the
            ``rows x lookback x f`` float32 windows a sequence model materialises.

    Returns:
        ``(increases, baseline)``: increases of shape ``(n_repeats, f)`` in the loss's units, and
        the baseline loss on the unshuffled rows.

    Raises:
        ValueError: on shape mismatches or ``n_repeats < 1``.
        NotFittedError: from ``predict`` for an unfitted model.
    """
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if X.ndim != 2 or len(y) != len(X):
        raise ValueError(f"X {X.shape} and y {y.shape} do not match")
    if n_repeats < 1:
        raise ValueError(f"n_repeats must be >= 1, got {n_repeats}")
    score: LossFn = loss if loss is not None else model.training_loss
    n, f = X.shape
    lookback = max(int(model.lookback), 1)
    pad = lookback - 1
    baseline = float(score(y, model.predict(X, context=context)))
    rng = np.random.default_rng(seed)
    jobs = [(r, j, rng.permutation(n)) for r in range(n_repeats) for j in range(f)]
    # one copy = the window prefix + X; without context the prefix repeats X's first row, which
    # a shuffle of column j changes (with context it is made of context rows, never shuffled)
    block = np.concatenate([_window_prefix(X, context, pad), X], axis=0)  # (n + pad, f)
    prefix_from_x = pad > 0 and (context is None or len(context) == 0)
    per_call = max(1, max_predict_bytes // (len(block) * lookback * f * 4))
    out = np.empty((n_repeats, f), dtype=np.float64)
    for start in range(0, len(jobs), per_call):
        batch = jobs[start : start + per_call]
        stacked = np.tile(block, (len(batch), 1))
        for k, (_, j, perm) in enumerate(batch):
            lo = k * len(block)
            stacked[lo + pad : lo + len(block), j] = X[perm, j]
            if prefix_from_x:
                stacked[lo : lo + pad, j] = X[perm[0], j]
        pred = model.predict(stacked)
        for k, (r, j, _) in enumerate(batch):
            lo = k * len(block) + pad
            out[r, j] = float(score(y, pred[lo : lo + n])) - baseline
    return out, baseline


def permutation_importance(
    model: Forecaster,
    X: np.ndarray,
    y: np.ndarray,
    context: np.ndarray | None = None,
    loss: LossFn | None = None,
    n_repeats: int = 5,
    seed: int = 42,
) -> np.ndarray:
    """Permutation importance: mean loss increase over ``n_repeats`` shuffles of each column.

    See :func:`permutation_increases` for the procedure, arguments and errors (Breiman 2001;
    scikit-learn's ``permutation_importance`` with a loss instead of a score).

    Returns:
        float64 array of shape ``(f,)`` in the loss's units (``model.training_loss`` by default);
        about 0 for a feature the model ignores.
    """
    increases, _ = permutation_increases(model, X, y, context, loss, n_repeats, seed)
    return increases.mean(axis=0)


# ----------------------------------------------------------------------------- correlation
def spearman_abs(X_train: np.ndarray, y_train: np.ndarray) -> np.ndarray:
    """|Spearman rank correlation| of each feature with the label (Spearman 1904).

    Pearson correlation of the average ranks (``scipy.stats.rankdata``), which is Spearman's rho
    with ties handled as ``scipy.stats.spearmanr`` does.

    Args:
        X_train: features, shape ``(n, f)`` (scaling does not matter: ranks are invariant).
        y_train: label (forward return, fraction), shape ``(n,)``.

    Returns:
        float64 array of shape ``(f,)`` in ``[0, 1]``; 0 for a constant column (undefined rho).

    Raises:
        ValueError: on mismatched shapes or fewer than 3 rows.
    """
    X = np.asarray(X_train, dtype=np.float64)
    y = np.asarray(y_train, dtype=np.float64).reshape(-1)
    if X.ndim != 2 or len(X) != len(y):
        raise ValueError(f"X_train {X.shape} and y_train {y.shape} do not match")
    if len(y) < 3:
        raise ValueError(f"need at least 3 rows for a rank correlation, got {len(y)}")
    rx = rankdata(X, axis=0)
    ry = rankdata(y)
    rx -= rx.mean(axis=0)
    ry -= ry.mean()
    denom = np.sqrt((rx * rx).sum(axis=0) * (ry * ry).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (rx * ry[:, None]).sum(axis=0) / denom
    return np.abs(np.nan_to_num(rho, nan=0.0))


# ----------------------------------------------------------------------------- ranking
def rank_by(values: np.ndarray, *, ascending: bool = False) -> np.ndarray:
    """Ranks 1..f: by SIGNED value descending (default) or ascending; ties keep the input order
    (stable sort). Returns int64 array of shape ``(f,)``.

    Signed, not absolute: a permutation importance below zero means shuffling the feature LOWERED
    the loss (the feature hurt, or it is noise), so it must rank last, not first. The other
    methods are non-negative by construction (mean |SHAP|, |Spearman|)."""
    v = np.asarray(values, dtype=np.float64)
    key = v if ascending else -v
    ranks = np.empty(len(v), dtype=np.int64)
    ranks[np.argsort(key, kind="stable")] = np.arange(1, len(v) + 1)
    return ranks


def rank_table(importances: Mapping[str, np.ndarray], feature_names: Sequence[str]
               ) -> pd.DataFrame:
    """Long-format rankings of every method plus their ``aggregate``.

    Args:
        importances: method -> importance per feature, shape ``(f,)`` each (any method names;
            ``aggregate`` is reserved).
        feature_names: the ``f`` feature names, in column order.

    Returns:
        Columns ``method, feature, importance, rank``: one block of ``f`` rows per method, in the
        order given, then ``aggregate``, each block sorted by rank. ``rank`` 1 = most important:
        by signed importance descending for the methods (:func:`rank_by`); for ``aggregate``
        the importance is the mean rank across the methods (lower = more important) and rank 1
        is the lowest mean rank.
        Ties keep the feature order.

    Raises:
        ValueError: no method, a method named ``aggregate``, a shape mismatch, or NaN values.
    """
    names = [str(n) for n in feature_names]
    if not importances:
        raise ValueError("no importance method given")
    if AGGREGATE in importances:
        raise ValueError(f"{AGGREGATE!r} is computed here; do not pass it")
    blocks, ranks = [], []
    for method, values in importances.items():
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        if v.shape != (len(names),):
            raise ValueError(f"{method}: {v.shape[0]} importances for {len(names)} features")
        if np.isnan(v).any():
            raise ValueError(f"{method}: NaN importance")
        r = rank_by(v)
        ranks.append(r)
        blocks.append(_block(method, names, v, r))
    mean_rank = np.mean(np.vstack(ranks), axis=0)
    blocks.append(_block(AGGREGATE, names, mean_rank, rank_by(mean_rank, ascending=True)))
    return pd.concat(blocks, ignore_index=True)


def _block(method: str, names: list[str], values: np.ndarray, ranks: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame({"method": method, "feature": names, "importance": values,
                          "rank": ranks})
    return frame.sort_values("rank", kind="stable", ignore_index=True)


# ----------------------------------------------------------------------------- analysis
@dataclass
class ImportanceResult:
    """The importance of every feature of one fitted model.

    Attributes:
        feature_names: the ``f`` model input columns.
        importances: method -> importance per feature, shape ``(f,)``: ``shap`` mean |SHAP|
            (fraction), ``permutation`` mean training-loss increase, ``correlation`` |Spearman|.
        table: :func:`rank_table` of ``importances`` (with the ``aggregate`` block).
        timings: seconds spent per method (``shap`` is 0 when precomputed values were reused).
        permutation_std: standard deviation over repeats of the loss increase, shape ``(f,)``.
        baseline_loss: the model's training loss on the unshuffled test rows.
        n_shap_rows: rows the SHAP values were computed on (0 without SHAP).
        shap_reused: whether the SHAP values were passed in rather than computed here.
    """

    feature_names: list[str]
    importances: dict[str, np.ndarray]
    table: pd.DataFrame
    timings: dict[str, float] = field(default_factory=dict)
    permutation_std: np.ndarray | None = None
    baseline_loss: float = float("nan")
    n_shap_rows: int = 0
    shap_reused: bool = False

    @property
    def methods(self) -> list[str]:
        """The stored methods, ``aggregate`` last."""
        return [*self.importances, AGGREGATE]

    def ranking(self, method: str = AGGREGATE) -> pd.DataFrame:
        """One method's block of :attr:`table`: ``feature, importance, rank`` sorted by rank."""
        block = self.table[self.table["method"] == method]
        if block.empty:
            raise KeyError(f"no {method!r} ranking (have {self.methods})")
        return block.drop(columns="method").reset_index(drop=True)

    def top(self, n: int, method: str = AGGREGATE) -> list[str]:
        """The ``n`` best-ranked features of ``method``."""
        return self.ranking(method)["feature"].head(n).tolist()


def analyze(
    model: Forecaster,
    X_test: np.ndarray,
    y_test: np.ndarray,
    context: np.ndarray | None,
    X_train: np.ndarray,
    y_train: np.ndarray,
    shap_values: np.ndarray | None = None,
    n_repeats: int = 5,
    seed: int = 42,
    *,
    shap_max_rows: int = 200,
    loss: LossFn | None = None,
) -> ImportanceResult:
    """Importance of every input feature of ``model`` by SHAP, permutation and correlation.

    Args:
        model: a fitted forecaster; its ``feature_names_`` name the ``f`` columns.
        X_test, y_test: test rows (scaled, shape ``(n, f)``) and targets (fraction, ``(n,)``):
            permutation importance is scored here.
        context: rows preceding ``X_test`` (sequence models), shape ``(k, f)``.
        X_train, y_train: train rows and targets: the correlation method, and the SHAP
            background when SHAP values are computed here.
        shap_values: SHAP values already computed on (some of) the test rows, shape ``(m, f)``
            (the training job's :func:`huracan.evaluation.explain.explain`); ``None`` computes them
            on the last ``shap_max_rows`` test rows. A model without an explainer
            (``NotImplementedError``) is ranked without SHAP (logged).
        n_repeats, seed: permutation repeats and seed.
        shap_max_rows: bound on the rows explained when SHAP is computed here.
        loss: permutation scoring loss; default ``model.training_loss``.

    Returns:
        :class:`ImportanceResult` with per-method timings (seconds).

    Raises:
        ValueError: on shape mismatches (``shap_values`` with the wrong number of columns
            included) or NaN importances.
        NotFittedError: for an unfitted model.
    """
    names = list(model.feature_names_)
    f = len(names)
    for arr, label in ((X_test, "X_test"), (X_train, "X_train")):
        if np.asarray(arr).ndim != 2 or np.asarray(arr).shape[1] != f:
            raise ValueError(f"{label} has shape {np.asarray(arr).shape}; the model has {f} "
                             "features")
    importances: dict[str, np.ndarray] = {}
    timings: dict[str, float] = {}
    reused = shap_values is not None
    n_shap = 0
    t0 = time.perf_counter()
    if shap_values is None:
        from huracan.evaluation.explain import explain

        try:
            shap_values = explain(model, X_test, context, X_train, shap_max_rows).values
        except NotImplementedError as exc:
            log.warning("no SHAP importance for %s: %s", model.model_type, exc)
    if shap_values is not None:
        sv = np.asarray(shap_values, dtype=np.float64)
        if sv.ndim != 2 or sv.shape[1] != f:
            raise ValueError(f"shap_values has shape {sv.shape}; the model has {f} features")
        importances["shap"] = np.abs(sv).mean(axis=0)
        n_shap = len(sv)
        timings["shap"] = 0.0 if reused else time.perf_counter() - t0

    t0 = time.perf_counter()
    increases, baseline = permutation_increases(model, X_test, y_test, context, loss,
                                                n_repeats, seed)
    importances["permutation"] = increases.mean(axis=0)
    timings["permutation"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    importances["correlation"] = spearman_abs(X_train, y_train)
    timings["correlation"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    table = rank_table(importances, names)
    timings[AGGREGATE] = time.perf_counter() - t0
    return ImportanceResult(feature_names=names, importances=importances, table=table,
                            timings=timings, permutation_std=increases.std(axis=0),
                            baseline_loss=baseline, n_shap_rows=n_shap, shap_reused=reused)
