"""Walk-forward (or forward) fits of one model on the rows of several symbols.

Folds are cut ONCE on the union of the symbols' bar times (:func:`pooled_folds`) and each fold's
time boundaries are mapped to every symbol's own rows, so a fold's fit never sees any symbol's
row at or after the fold's first validation (resp. OOS) bar: no symbol's OOS bar is forecast by a
model trained on another symbol's later rows. Per fold (:func:`fit_predict_pooled`): each
symbol's scaler is fitted on that symbol's train rows only (:func:`huracan.splits.fit_scaler`),
the train and validation rows are stacked symbol by symbol (each block's first row a start: no
sequence window crosses symbols or gaps), one fresh model is fitted, and each symbol's parts are
predicted from its own rows. The outcomes are the single-symbol :class:`~huracan.stages.
FoldOutcome` per symbol, so :func:`huracan.stages.evaluate_walk_forward`, serving bundles and
explanations run per symbol unchanged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from huracan import progress
from huracan.features.build import FeatureSet
from huracan.models.base import Forecaster
from huracan.models.pooled import Block, PooledModel
from huracan.splits import Fold, Splitter, fit_scaler, purge
from huracan.stages import FoldOutcome, LabelTimes, gap_starts, run_context

log = logging.getLogger(__name__)


@dataclass
class PooledOutcome:
    """What the pooled fold loop produced.

    Attributes:
        outcomes: per symbol, one :class:`FoldOutcome` per fold in which the symbol had train
            rows and rows in every part of ``parts`` (its ranges index that symbol's own
            :class:`FeatureSet`; a fold skipped for a symbol that has OOS rows is logged;
            ``fold.index`` is the pooled fold's number). Its ``fit_seconds`` / ``seconds`` are the
            symbol's share of the pooled fit and fold by its train rows (summed over the symbols
            of a fold: the fold's totals, when none is skipped). When the symbol is scored in
            the last fold, that outcome carries ``model = PooledModel.estimator_for(symbol)``
            and ``scaler = PooledModel.scaler_for(symbol)``.
        model: the last fold's fitted :class:`PooledModel`.
        train_end: per fold, the open time of the last train row over all symbols (UTC).
        fit_seconds: per fold, the wall time of the pooled ``fit``.
    """

    outcomes: dict[str, list[FoldOutcome]]
    model: PooledModel
    train_end: list[pd.Timestamp] = field(default_factory=list)
    fit_seconds: list[float] = field(default_factory=list)


def _index(fs: FeatureSet) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(fs.frame.index)


def pooled_folds(splitter: Splitter, sets: Mapping[str, FeatureSet], timeframe: str,
                 horizon: int) -> list[dict[str, Fold]]:
    """Folds cut once on the union of the symbols' bar times, mapped to each symbol's rows.

    ``splitter.folds`` runs on the sorted union of every symbol's feature-row open times; each
    part of a union fold (train, val, test: the union rows ``[a, b)``) becomes, for a symbol, its
    rows whose open time lies in ``[union[a], union[b - 1]]``. A symbol may have no row in a part
    (an empty range at the position where its rows would be).

    Args:
        splitter: the run's splitter (``split.*``).
        sets: symbol -> its features (index: bar open time, UTC).
        timeframe: bar size; horizon: label horizon in bars (embargo >= horizon).

    Returns:
        per fold in time order, symbol -> :class:`Fold` over that symbol's rows (``index`` = the
        pooled fold's number, ``embargo`` the splitter's).

    Raises:
        ValueError: no symbol; what ``splitter.folds`` raises on the union.
    """
    if not sets:
        raise ValueError("pooled folds need at least one symbol")
    union = _index(next(iter(sets.values())))
    for fs in list(sets.values())[1:]:
        union = union.union(_index(fs))
    union = union.sort_values()
    out = []
    for fold in splitter.folds(union, timeframe, horizon):
        out.append({sym: _map_fold(fold, union, _index(fs)) for sym, fs in sets.items()})
    return out


def _map_fold(fold: Fold, union: pd.DatetimeIndex, ts: pd.DatetimeIndex) -> Fold:
    """The rows of ``ts`` inside the time span of each part of a fold over ``union``."""

    def part(r: range) -> range:
        if len(r) == 0:
            k = len(ts) if r.start >= len(union) else int(ts.searchsorted(union[r.start]))
            return range(k, k)
        a = int(ts.searchsorted(union[r.start], "left"))
        b = int(ts.searchsorted(union[r.stop - 1], "right"))
        return range(a, max(a, b))

    return Fold(train=part(fold.train), val=part(fold.val), test=part(fold.test),
                embargo=fold.embargo, index=fold.index)


def _first_time(sets: Mapping[str, FeatureSet], folds: Mapping[str, Fold],
                part: str) -> int | None:
    """Open time (ns) of the earliest row of ``part`` over all symbols (None: no row)."""
    times = [int(_index(sets[s]).asi8[getattr(f, part).start])
             for s, f in folds.items() if len(getattr(f, part))]
    return min(times) if times else None


def _train_end(sets: Mapping[str, FeatureSet], folds: Mapping[str, Fold]) -> pd.Timestamp:
    ends = [_index(sets[s])[f.train.stop - 1] for s, f in folds.items() if len(f.train)]
    return max(ends) if ends else pd.NaT


def fit_predict_pooled(prototype: Forecaster, sets: Mapping[str, FeatureSet],
                       folds: Sequence[Mapping[str, Fold]], parts: Sequence[str] = ("test",),
                       timeframe: str | None = None,
                       labels: Mapping[str, LabelTimes] | None = None,
                       n_jobs: int = 1) -> PooledOutcome:
    """Fit one fresh pooled model per fold on every symbol's train rows, predict each symbol.

    Args:
        prototype: an unfitted forecaster (copied per fold); trees get the symbol as a
            categorical, networks as a one-hot (:class:`PooledModel`).
        sets: symbol -> features; every set has the same ``feature_names`` (the order of
            ``sets`` is the symbols' encoding order).
        folds: :func:`pooled_folds`.
        parts: the fold parts to predict per symbol (``"val"``, ``"test"``).
        timeframe: with it, data gaps of each symbol are located (:func:`gap_starts`) and no
            sequence window crosses one.
        labels: symbol -> :class:`LabelTimes`: each symbol's train/val rows whose label reaches
            the next part of the pooled fold (the earliest row of ANY symbol in it) are purged
            (:func:`huracan.splits.purge`), train rows weighted per symbol when asked.
        n_jobs: with ``> 1``, every fold but the last runs in parallel worker processes
            (joblib's loky backend, as :func:`huracan.stages.fit_predict_folds`) while the last
            runs here and keeps its model; every fit is seeded by the model's own ``seed``, so
            the forecasts equal the sequential run's.

    Returns:
        :class:`PooledOutcome`.

    Raises:
        ValueError: no fold, sets with different feature names, a fold without train rows of
            any symbol, a ``labels`` entry missing for a symbol.
    """
    if not folds:
        raise ValueError("no pooled fold to fit")
    symbols = list(sets)
    names = list(sets[symbols[0]].feature_names)
    for s in symbols[1:]:
        if list(sets[s].feature_names) != names:
            raise ValueError(f"{s}: its feature names differ from {symbols[0]}'s; a pooled "
                             "model needs the same columns for every symbol")
    if labels is not None and set(symbols) - set(labels):
        raise ValueError(f"labels missing for {sorted(set(symbols) - set(labels))}")
    starts = {s: None if timeframe is None else gap_starts(_index(fs), timeframe)
              for s, fs in sets.items()}
    data = {s: (fs.X, fs.y) for s, fs in sets.items()}
    fmaps = [_purged(sets, fmap, labels) for fmap in folds]
    train_end = [_train_end(sets, fmap) for fmap in fmaps]
    args = (prototype, symbols, names, data)
    rest = (parts, starts, labels)
    head, last = fmaps[:-1], fmaps[-1]
    with progress.bar("pooled walk-forward folds", total=len(fmaps)) as shown:
        if n_jobs > 1 and head:
            from joblib import Parallel, delayed

            done = []
            for o in Parallel(n_jobs=n_jobs, backend="loky", return_as="generator")(
                    delayed(_fit_fold_unkept)(*args, fmap, *rest) for fmap in head):
                done.append(o)
                shown.advance()
        else:
            done = []
            for fmap in head:
                done.append(_fit_fold_unkept(*args, fmap, *rest))
                shown.advance()
        model, per_symbol, fit_s = _fit_fold(*args, last, *rest, keep=True)
        shown.advance()
    done.append((per_symbol, fit_s))
    outcomes: dict[str, list[FoldOutcome]] = {s: [] for s in symbols}
    for fmap, (fold_outcomes, seconds) in zip(fmaps, done, strict=True):
        for s, o in fold_outcomes.items():
            outcomes[s].append(o)
        log.debug("pooled fold %d: %s train rows, fit %.2fs", next(iter(fmap.values())).index,
                  {s: len(f.train) for s, f in fmap.items()}, seconds)
    return PooledOutcome(outcomes=outcomes, model=model, train_end=train_end,
                         fit_seconds=[seconds for _, seconds in done])


def _purged(sets: Mapping[str, FeatureSet], fmap: Mapping[str, Fold],
            labels: Mapping[str, LabelTimes] | None) -> dict[str, Fold]:
    """Each symbol's fold purged at the pooled fold's boundaries (the earliest val / test row
    of any symbol)."""
    if labels is None:
        return dict(fmap)
    val_time, test_time = _first_time(sets, fmap, "val"), _first_time(sets, fmap, "test")
    return {s: purge(f, labels[s].timestamps, labels[s].label_end, val_time=val_time,
                     test_time=test_time) for s, f in fmap.items()}


def _fit_fold_unkept(prototype: Forecaster, symbols: list[str], names: list[str],
                     data: Mapping[str, tuple[np.ndarray, np.ndarray]],
                     fmap: Mapping[str, Fold], parts: Sequence[str],
                     starts: Mapping[str, np.ndarray | None],
                     labels: Mapping[str, LabelTimes] | None
                     ) -> tuple[dict[str, FoldOutcome], float]:
    """:func:`_fit_fold` without its model (what a worker process sends back)."""
    _, out, fit_s = _fit_fold(prototype, symbols, names, data, fmap, parts, starts, labels,
                              keep=False)
    return out, fit_s


def _fit_fold(prototype: Forecaster, symbols: list[str], names: list[str],
              data: Mapping[str, tuple[np.ndarray, np.ndarray]], fmap: Mapping[str, Fold],
              parts: Sequence[str], starts: Mapping[str, np.ndarray | None],
              labels: Mapping[str, LabelTimes] | None, keep: bool
              ) -> tuple[PooledModel, dict[str, FoldOutcome], float]:
    """One pooled fold: per-symbol train-only scalers, the stacked fit, per-symbol forecasts."""
    t0 = time.perf_counter()
    model = PooledModel(prototype, symbols, names)
    fitted = [s for s in symbols if len(fmap[s].train)]
    if not fitted:
        raise ValueError(f"pooled fold {next(iter(fmap.values())).index} has no train rows")
    scalers = {s: fit_scaler(data[s][0][fmap[s].train.start : fmap[s].train.stop])
               for s in fitted}
    model.set_scalers(scalers)
    lookback = int(prototype.lookback)

    def scaled(s: str, r: range) -> np.ndarray:
        return np.asarray(scalers[s].transform(data[s][0][r.start : r.stop]), dtype=np.float32) \
            if len(r) else np.empty((0, len(names)), dtype=np.float32)

    def flags(s: str, r: range) -> np.ndarray | None:
        st = starts[s]
        return None if st is None else st[r.start : r.stop]

    def block(s: str, part: str, with_context: bool = False) -> Block:
        r = getattr(fmap[s], part)
        w = labels[s].weights(r) if labels is not None and part == "train" else None
        ctx = scaled(s, run_context(fmap[s], part, lookback, starts[s])) if with_context \
            else None
        return Block(s, scaled(s, r), data[s][1][r.start : r.stop], flags(s, r), w, ctx)

    val_syms = [s for s in fitted if len(fmap[s].val)]
    t_fit = time.perf_counter()
    model.fit([block(s, "train") for s in fitted],
              [block(s, "val", i == 0) for i, s in enumerate(val_syms)])
    fit_s = time.perf_counter() - t_fit
    n_train = sum(len(fmap[s].train) for s in fitted)
    out: dict[str, FoldOutcome] = {}
    for s in symbols:
        fold = fmap[s]
        empty = [p for p in ("train", *parts) if len(getattr(fold, p)) == 0]
        if empty:  # nothing to score, or a rule could not be fitted on its validation rows
            if len(fold.test):
                log.warning("%s: no %s rows in pooled fold %d: its %d OOS rows are not "
                            "forecast", s, "/".join(empty), fold.index, len(fold.test))
            continue
        preds, predict_s = {}, 0.0
        for part in parts:
            r = getattr(fold, part)
            x, ctx = scaled(s, r), scaled(s, run_context(fold, part, lookback, starts[s]))
            t_pred = time.perf_counter()
            preds[part] = model.predict(s, x, context=ctx, starts=flags(s, r)) if len(r) \
                else np.empty(0)
            predict_s += time.perf_counter() - t_pred
        share = len(fold.train) / n_train
        out[s] = FoldOutcome(fold=fold, predictions=preds, fit_seconds=fit_s * share,
                             predict_seconds=predict_s, seconds=0.0,
                             model=model.estimator_for(s) if keep else None,  # type: ignore[arg-type]
                             scaler=model.scaler_for(s) if keep else None)
    total = time.perf_counter() - t0
    for s, o in out.items():
        o.seconds = total * len(fmap[s].train) / n_train
    return model, out, fit_s
