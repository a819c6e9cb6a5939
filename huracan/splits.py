"""Forward-only splits of the feature rows: one train/validation/test split, or walk-forward folds.

Rows are bars in time order. The label of row t looks ``horizon`` bars ahead, so ``embargo >=
horizon`` bars are left out before every boundary: no label of a row used for fitting (or early
stopping) reaches into the period a later split is scored on (Lopez de Prado 2018, *Advances in
Financial Machine Learning*, ch. 7 "purging and embargo").

Two schemes, both Hydra ``split`` config groups (``_target_`` = the splitter class):

- :class:`ForwardSplitter` (``split=forward``, the default): train / val / test = 70/15/15 of the
  rows, one fit.
- :class:`WalkForwardSplitter` (``split=walk_forward``): retrain every ``step_bars`` on the latest
  ``train_bars`` (rolling, or all history with ``expanding=true``), predict the next step
  out-of-sample (OOS), roll forward, repeat to the end of the data (the way freqtrade FreqAI's
  ``backtest_period_days`` and Qlib's rolling tasks evaluate)::

      |---- fit ----|e|val|e|OOS 1|
            |---- fit ----|e|val|e|OOS 2|
                  |---- fit ----|e|val|e|OOS 3|       e = embargo >= label horizon

  The fold's train window is ``train_bars`` long and ends ``embargo`` bars before its OOS step; its
  last ``val_bars`` are the validation rows (early stopping), preceded by another embargo. Fold
  boundaries are placed in TIME on the bar grid and rows are picked by timestamp, so data gaps
  shorten a window instead of shifting it.

A :class:`Fold` holds row positions only; the scaler (:func:`fit_scaler`) is fitted per fold on
that fold's train rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
from sklearn.preprocessing import StandardScaler

from huracan.data.ohlcv import timeframe_to_timedelta


@dataclass(frozen=True)
class Fold:
    """Row positions of one fit (half-open ``[start, stop)`` ranges into the feature frame).

    Attributes:
        index: fold number, 0-based, in time order.
        train: rows the model and the scaler are fitted on.
        val: rows used for early stopping.
        test: rows scored: the test split (forward) or the fold's OOS step (walk-forward).
        embargo: bars left out before ``val`` and before ``test`` (>= the label horizon).
    """

    train: range
    val: range
    test: range
    embargo: int
    index: int = 0

    def context(self, name: str, lookback: int) -> range:
        """Rows preceding split ``name`` usable as sequence context (up to ``lookback - 1``).

        Context rows are features only (known before the split starts); they may include embargo
        rows, never a row of the split itself or a later one.
        """
        start = getattr(self, name).start
        return range(max(0, start - max(lookback - 1, 0)), start)


#: the single split of the forward scheme is a fold whose ``test`` is the test split
ForwardSplit = Fold


def forward_split(
    n_rows: int,
    train: float = 0.70,
    val: float = 0.15,
    test: float = 0.15,
    *,
    embargo: int,
    horizon: int,
) -> Fold:
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
    split = Fold(
        train=range(0, a - embargo),
        val=range(a, b - embargo),
        test=range(b, n_rows),
        embargo=embargo,
    )
    for name in ("train", "val", "test"):
        if len(getattr(split, name)) == 0:
            raise ValueError(f"{name} split is empty with {n_rows} rows and embargo {embargo}")
    return split


def to_bars(size: int | str, timeframe: str, name: str = "size") -> int:
    """A size in bars: an integer (``720``, ``"720"``) or a duration (``"8d"``, ``"36h"``).

    A duration is converted with the bar length of ``timeframe`` and rounded UP to whole bars
    (``"90min"`` at 1h = 2 bars).

    Raises:
        ValueError: not a positive integer or a parseable positive duration.
    """
    if isinstance(size, bool):
        raise ValueError(f"{name}: expected bars (720) or a duration (8d), got {size!r}")
    if isinstance(size, (int, np.integer)):
        bars = int(size)
    else:
        text = str(size).strip()
        if text.isdigit():
            bars = int(text)
        else:
            try:
                span = pd.Timedelta(text)
            except ValueError as exc:
                raise ValueError(f"{name}: expected bars (720) or a duration (8d, 36h), "
                                 f"got {size!r}") from exc
            bars = math.ceil(span / timeframe_to_timedelta(timeframe))
    if bars < 1:
        raise ValueError(f"{name} must be at least 1 bar, got {size!r}")
    return bars


def walk_forward_folds(
    timestamps: pd.DatetimeIndex,
    timeframe: str,
    *,
    train: int | str,
    val: int | str,
    step: int | str,
    embargo: int | str,
    horizon: int,
    expanding: bool = False,
    oos_start: str | pd.Timestamp | None = None,
    oos_end: str | pd.Timestamp | None = None,
) -> list[Fold]:
    """Walk-forward folds over feature rows indexed by bar open time.

    Args:
        timestamps: open times of the feature rows, strictly increasing (gaps allowed).
        timeframe: bar size (``1h``, ``5m``); sizes given as durations are converted with it.
        train: the train window per fold, validation included (bars or duration).
        val: the last part of the train window used for early stopping (bars or duration).
        step: the OOS step: bars predicted by each fold, and how far the window rolls.
        embargo: bars left out between fit and val rows, and between val rows and the OOS step.
        horizon: label horizon in bars (the embargo must be at least this long).
        expanding: the fit rows start at the first row (all history) instead of rolling.
        oos_start: first OOS bar (default: the first bar after a full train window and embargo);
            rounded up to the bar grid.
        oos_end: end of the OOS period, exclusive (default: after the last row). The last step
            may be partial.

    Returns:
        the folds in time order; a step whose OOS window holds no row (a data gap) is skipped.
        Fold ``k`` predicts rows with open time in ``[oos_start + k*step, oos_start + (k+1)*step)``.

    Raises:
        ValueError: ``embargo < horizon``; the validation part leaves no fit rows; timestamps
            not strictly increasing; no fold fits in the data; a fold without fit or val rows.
    """
    ts = pd.DatetimeIndex(timestamps)
    if len(ts) == 0:
        raise ValueError("no feature rows to split")
    if not ts.is_monotonic_increasing or ts.has_duplicates:
        raise ValueError("walk-forward needs strictly increasing timestamps")
    n_train = to_bars(train, timeframe, "split.train_bars")
    n_val = to_bars(val, timeframe, "split.val_bars")
    n_step = to_bars(step, timeframe, "split.step_bars")
    n_emb = to_bars(embargo, timeframe, "split.embargo")
    if n_emb < horizon:
        raise ValueError(f"embargo ({n_emb} bars) must be >= the label horizon ({horizon} bars)")
    if n_train - n_val - n_emb < 1:
        raise ValueError(f"train window of {n_train} bars leaves no fit rows after {n_val} "
                         f"validation bars and a {n_emb}-bar embargo")
    bar = timeframe_to_timedelta(timeframe)
    first = ts[0]
    end = pd.Timestamp(oos_end) if oos_end is not None else ts[-1] + bar
    if oos_start is None:
        start = first + (n_train + n_emb) * bar
    else:
        start = _on_grid(pd.Timestamp(oos_start), first, bar)
    if end.tzinfo is None and first.tzinfo is not None:
        end = end.tz_localize(first.tzinfo)

    def rows(lo: pd.Timestamp, hi: pd.Timestamp) -> range:
        a, b = ts.searchsorted(lo, "left"), ts.searchsorted(hi, "left")
        return range(int(a), int(max(a, b)))

    folds: list[Fold] = []
    s = start
    while s < end:
        e = min(s + n_step * bar, end)
        oos = rows(s, e)
        val_stop = s - n_emb * bar
        val_start = val_stop - n_val * bar
        fit_stop = val_start - n_emb * bar
        fit_start = first if expanding else val_stop - n_train * bar
        if len(oos):
            fold = Fold(train=rows(fit_start, fit_stop), val=rows(val_start, val_stop), test=oos,
                        embargo=n_emb, index=len(folds))
            for part in ("train", "val"):
                if len(getattr(fold, part)) == 0:
                    raise ValueError(f"walk-forward fold predicting {s} .. {e} has no {part} rows "
                                     f"(window {fit_start} .. {val_stop}); lengthen "
                                     f"split.train_bars or move split.oos_start")
            folds.append(fold)
        s = e
    if not folds:
        raise ValueError(f"no walk-forward fold fits: {len(ts)} rows from {first} to {ts[-1]}, "
                         f"first OOS bar {start}, end {end}")
    return folds


def purge(fold: Fold, timestamps: np.ndarray, label_end: np.ndarray, *,
          val_time: int | None = None, test_time: int | None = None) -> Fold:
    """Drop the rows whose label reaches into a later part of the fold (Lopez de Prado 2018,
    AFML 7.4.1, purging): train rows whose ``label_end`` is at or after the first val row, val
    rows whose ``label_end`` is at or after the first test row. Each part is cut at its first
    such row (so it stays a range; later rows reach at least as far for forward returns).

    Args:
        fold: the fold.
        timestamps: open time of every feature row, int64 ns or datetime64, shape ``(n,)``.
        label_end: the time of the bar whose close decides each row's label, same units.
        val_time, test_time: the start of the val / test part (int64 ns) when it is not this
            frame's own first row of the part (a pooled fold, whose parts start at the first row
            of ANY symbol: :func:`huracan.pooled.fit.fit_predict_pooled`); the earlier of the
            two boundaries is used.

    Returns:
        the purged fold (the same object when nothing reaches across).
    """
    ts = np.asarray(timestamps).astype("datetime64[ns]").astype(np.int64)
    end = np.asarray(label_end).astype("datetime64[ns]").astype(np.int64)

    def cut(part: range, boundary_row: int, boundary_time: int | None) -> range:
        bounds = [] if boundary_time is None else [int(boundary_time)]
        if boundary_row < len(ts):
            bounds.append(int(ts[boundary_row]))
        if len(part) == 0 or not bounds:
            return part
        reach = np.flatnonzero(end[part.start : part.stop] >= min(bounds))
        return part if len(reach) == 0 else range(part.start, part.start + int(reach[0]))

    train = cut(fold.train, fold.val.start, val_time)
    val = cut(fold.val, fold.test.start, test_time)
    if train == fold.train and val == fold.val:
        return fold
    return Fold(train=train, val=val, test=fold.test, embargo=fold.embargo, index=fold.index)


def _on_grid(t: pd.Timestamp, origin: pd.Timestamp, bar: pd.Timedelta) -> pd.Timestamp:
    """``t`` rounded up to the bar grid through ``origin`` (UTC if ``t`` is naive)."""
    if t.tzinfo is None and origin.tzinfo is not None:
        t = t.tz_localize(origin.tzinfo)
    k = math.ceil((t - origin) / bar)
    return origin + k * bar


@dataclass(frozen=True)
class ForwardSplitter:
    """``split=forward``: one 70/15/15 train/val/test split with an embargo (fractions of rows)."""

    scheme: ClassVar[str] = "forward"
    #: metrics selection reads (``val_*``): validation, never test
    selection_prefix: ClassVar[str] = "val"
    #: the fold part selection, feature choice and explanations read
    selection_part: ClassVar[str] = "val"
    train: float = 0.70
    val: float = 0.15
    test: float = 0.15
    embargo: int | None = None
    n_jobs: int = 1

    def folds(self, timestamps: pd.DatetimeIndex, timeframe: str, horizon: int) -> list[Fold]:
        """The one fold (see :func:`forward_split`); ``embargo=None``: the label's reach
        (``horizon`` bars)."""
        embargo = horizon if self.embargo is None else int(self.embargo)
        return [forward_split(len(timestamps), self.train, self.val, self.test,
                              embargo=embargo, horizon=horizon)]

    def describe(self) -> dict[str, str]:
        """Settings for run tags and the model manifest."""
        return {"split_scheme": self.scheme,
                "split_fractions": f"{self.train}/{self.val}/{self.test}",
                "split_embargo": str(self.embargo)}


@dataclass(frozen=True)
class WalkForwardSplitter:
    """``split=walk_forward``: retrain every ``step_bars`` (see :func:`walk_forward_folds`).

    Sizes are bars (``720``) or durations (``8d``); ``embargo=None`` is the label's reach.
    ``n_jobs > 1`` fits folds in parallel processes (joblib), with results identical to the
    sequential run.
    """

    scheme: ClassVar[str] = "walk_forward"
    #: metrics selection reads (``oos_*``): the stitched out-of-sample predictions
    selection_prefix: ClassVar[str] = "oos"
    #: the fold part selection, feature choice and explanations read (the last OOS step)
    selection_part: ClassVar[str] = "test"
    train_bars: int | str = "90d"
    val_bars: int | str = "15d"
    step_bars: int | str = "14d"
    embargo: int | str | None = None
    expanding: bool = False
    oos_start: str | None = None
    oos_end: str | None = None
    n_jobs: int = 1

    def folds(self, timestamps: pd.DatetimeIndex, timeframe: str, horizon: int) -> list[Fold]:
        """The folds (see :func:`walk_forward_folds`)."""
        embargo = horizon if self.embargo is None else self.embargo
        return walk_forward_folds(timestamps, timeframe, train=self.train_bars, val=self.val_bars,
                                  step=self.step_bars, embargo=embargo, horizon=horizon,
                                  expanding=self.expanding, oos_start=self.oos_start,
                                  oos_end=self.oos_end)

    def describe(self) -> dict[str, str]:
        """Settings for run tags and the model manifest."""
        return {"split_scheme": self.scheme, "split_train_bars": str(self.train_bars),
                "split_val_bars": str(self.val_bars), "split_step_bars": str(self.step_bars),
                "split_embargo": str(self.embargo), "split_expanding": str(self.expanding),
                "split_oos_start": str(self.oos_start), "split_oos_end": str(self.oos_end)}


Splitter = ForwardSplitter | WalkForwardSplitter


def fit_scaler(X_train: np.ndarray) -> StandardScaler:
    """Fit a per-feature standard scaler (scikit-learn) on the train rows only; missing values
    (uncovered market-structure families) are ignored in the fit and kept in the transform (a
    column with no value in train keeps NaN parameters)."""
    import warnings

    with warnings.catch_warnings():  # all-NaN columns: scikit-learn warns about 0/0
        warnings.simplefilter("ignore", RuntimeWarning)
        return StandardScaler().fit(np.asarray(X_train, dtype=np.float64))
