"""How well a forecast ranks the realised label: information coefficient (IC), rank IC and ICIR.

Source: Qlib's ``SigAnaRecord`` (``qlib/workflow/record_temp.py``) and ``calc_ic``
(``qlib/contrib/eva/alpha.py``): IC is the Pearson correlation of the forecast with the label,
rank IC the Spearman correlation (Pearson on average ranks, ties sharing their mean rank), and
ICIR = ``mean(IC) / std(IC, ddof=1)`` over a sequence of ICs (not annualised).

One deliberate difference: Qlib correlates a cross-section (many instruments) per date and takes
the mean and ICIR over dates. Huracan forecasts one symbol, so an IC here is a time-series
correlation over a window's bars, and walk-forward's ICIR runs over the folds' ICs (each fold's
model scored on its own out-of-sample step): how steady the forecast's skill is from one refit
to the next.

All functions are pure: numpy arrays in, floats out. Pairs where either value is NaN or infinite
are dropped (Qlib's pandas ``corr`` drops NaN pairs likewise); a correlation with fewer than 2
pairs, or with a constant side, is NaN (undefined), never 0.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy.stats import rankdata


class Correlation(NamedTuple):
    """A correlation and the number of (forecast, label) pairs it was computed on."""

    value: float
    pairs: int


class FoldIC(NamedTuple):
    """Walk-forward IC summary over folds (Qlib's ``IC`` / ``ICIR`` with folds as the dates).

    Attributes:
        mean: mean of the finite per-fold ICs (NaN when there is none).
        icir: ``mean / std(ddof=1)`` of the finite per-fold ICs; NaN with fewer than 2 of them
            or when they are all equal.
        folds: how many folds had a finite IC (the ICIR's sample size).
    """

    mean: float
    icir: float
    folds: int


def _pairs(forecast: npt.ArrayLike, label: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(forecast, dtype=np.float64).reshape(-1)
    y = np.asarray(label, dtype=np.float64).reshape(-1)
    if f.shape != y.shape:
        raise ValueError(f"forecast has {f.shape[0]} values and label {y.shape[0]}: "
                         "an IC needs one label per forecast")
    ok = np.isfinite(f) & np.isfinite(y)
    return f[ok], y[ok]


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    xc, yc = x - x.mean(), y - y.mean()
    denom = np.sqrt(np.dot(xc, xc) * np.dot(yc, yc))
    if denom == 0.0:  # underflow of a near-constant side
        return float("nan")
    return float(np.clip(np.dot(xc, yc) / denom, -1.0, 1.0))


def information_coefficient(forecast: npt.ArrayLike, label: npt.ArrayLike) -> Correlation:
    """Pearson IC of the forecast against the realised label over one window.

    Args:
        forecast: the model's forecast per bar (e.g. forward return, fraction), shape ``(n,)``.
        label: the realised label of the same bars (the value the model was trained to
            forecast), shape ``(n,)``.

    Returns:
        ``Correlation(value, pairs)``: value in [-1, 1], NaN with fewer than 2 finite pairs or a
        constant side; ``pairs`` the finite pairs used.

    Raises:
        ValueError: the two arrays differ in length.
    """
    f, y = _pairs(forecast, label)
    return Correlation(_pearson(f, y), len(f))


def rank_ic(forecast: npt.ArrayLike, label: npt.ArrayLike) -> Correlation:
    """Spearman rank IC: the Pearson correlation of the average ranks of forecast and label
    (``scipy.stats.rankdata``; ties share their mean rank, as in ``scipy.stats.spearmanr`` and
    pandas' ``corr(method="spearman")`` that Qlib uses). Same shapes, NaN rules and errors as
    :func:`information_coefficient`."""
    f, y = _pairs(forecast, label)
    if len(f) < 2:
        return Correlation(float("nan"), len(f))
    return Correlation(_pearson(rankdata(f), rankdata(y)), len(f))


def information_ratio_of_ics(ics: npt.ArrayLike) -> FoldIC:
    """Mean IC and ICIR of a sequence of ICs (one per fold), NaN entries left out.

    ``ICIR = mean(IC) / std(IC, ddof=1)`` (Qlib ``SigAnaRecord``: ``ic.mean() / ic.std()``,
    pandas' sample standard deviation); not annualised. NaN with fewer than 2 finite ICs or a
    zero standard deviation.
    """
    v = np.asarray(ics, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return FoldIC(float("nan"), float("nan"), 0)
    mean = float(v.mean())
    if len(v) < 2:
        return FoldIC(mean, float("nan"), 1)
    sd = float(v.std(ddof=1))
    return FoldIC(mean, mean / sd if sd > 0 else float("nan"), len(v))


def fold_ics(forecast: npt.ArrayLike, label: npt.ArrayLike, folds: npt.ArrayLike,
             rank: bool = False) -> dict[int, Correlation]:
    """The IC (``rank=True``: rank IC) of each walk-forward fold's out-of-sample bars.

    Args:
        forecast, label: per bar of the stitched out-of-sample series, shape ``(n,)``.
        folds: the fold whose model made each forecast, integers, shape ``(n,)``.
        rank: Spearman instead of Pearson.

    Returns:
        ``{fold: Correlation}`` in ascending fold order.

    Raises:
        ValueError: the arrays differ in length.
    """
    f = np.asarray(forecast, dtype=np.float64).reshape(-1)
    y = np.asarray(label, dtype=np.float64).reshape(-1)
    k = np.asarray(folds).reshape(-1)
    if not (len(f) == len(y) == len(k)):
        raise ValueError(f"forecast ({len(f)}), label ({len(y)}) and folds ({len(k)}) must "
                         "have one value per bar")
    one = rank_ic if rank else information_coefficient
    return {int(fold): one(f[k == fold], y[k == fold]) for fold in np.unique(k)}


__all__ = ["Correlation", "FoldIC", "fold_ics", "information_coefficient",
           "information_ratio_of_ics", "rank_ic"]
