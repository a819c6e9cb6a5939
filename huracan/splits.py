"""Forward-only train/validation/test splits with an embargo, and the train-only scaler.

Rows are bars in time order. The label of row t looks ``horizon`` bars ahead, so the last
``embargo >= horizon`` rows before each boundary are dropped: no training label overlaps the
period a later split is scored on (Lopez de Prado 2018, *Advances in Financial Machine Learning*,
ch. 7 "purging and embargo").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.preprocessing import StandardScaler


@dataclass(frozen=True)
class ForwardSplit:
    """Row positions of each split (half-open ``[start, stop)`` ranges, in time order)."""

    train: range
    val: range
    test: range
    embargo: int

    def context(self, name: str, lookback: int) -> range:
        """Rows preceding split ``name`` usable as sequence context (up to ``lookback - 1``).

        Context rows are features only (known before the split starts); they may include embargo
        rows, never a row of the split itself or a later one.
        """
        start = getattr(self, name).start
        return range(max(0, start - max(lookback - 1, 0)), start)


def forward_split(
    n_rows: int,
    train: float = 0.70,
    val: float = 0.15,
    test: float = 0.15,
    *,
    embargo: int,
    horizon: int,
) -> ForwardSplit:
    """Split ``n_rows`` bars forward in time: train, then val, then test.

    Boundaries sit at ``floor(train * n)`` and ``floor((train + val) * n)``; the ``embargo`` rows
    just before the val and the test start are dropped.

    Raises:
        ValueError: fractions not positive or not summing to 1; ``embargo < horizon``; a split
            left empty.
    """
    if min(train, val, test) <= 0 or abs(train + val + test - 1.0) > 1e-9:
        raise ValueError(f"split fractions must be > 0 and sum to 1, got {train}/{val}/{test}")
    if embargo < horizon:
        raise ValueError(f"embargo ({embargo} bars) must be >= the label horizon ({horizon} bars)")
    a = int(np.floor(train * n_rows))
    b = int(np.floor((train + val) * n_rows))
    split = ForwardSplit(
        train=range(0, a - embargo),
        val=range(a, b - embargo),
        test=range(b, n_rows),
        embargo=embargo,
    )
    for name in ("train", "val", "test"):
        if len(getattr(split, name)) == 0:
            raise ValueError(f"{name} split is empty with {n_rows} rows and embargo {embargo}")
    return split


def fit_scaler(X_train: np.ndarray) -> StandardScaler:
    """Fit a per-feature standard scaler (scikit-learn) on the train rows only."""
    return StandardScaler().fit(np.asarray(X_train, dtype=np.float64))
