"""The typed stages every job is composed of.

    load_validated -> build_features -> (splitter.folds) -> fit_predict_folds -> evaluate_forward /
    evaluate_walk_forward -> explain -> (analysis, tracking, registry)

Each stage takes and returns plain values (settings dataclasses, arrays, frames): the forward job
and the walk-forward job (:mod:`huracan.pipeline`), ``registry monitor``, ``features analyze`` and
later tuning and the nightly pipeline all call the same functions. Nothing here reads a Hydra
config or talks to MLflow.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.base import clone as sklearn_clone
from sklearn.preprocessing import StandardScaler

from huracan import progress
from huracan.data.ohlcv import bars_per_year, load_ohlcv, timeframe_to_timedelta
from huracan.data.quality import JsonlQualitySink
from huracan.data.validate import validate_for_training
from huracan.db.migrate import SchemaNotCurrentError, require_current_schema
from huracan.evaluation import plots
from huracan.evaluation.backtest import BacktestConfig, BacktestResult
from huracan.evaluation.diagnostics import window_diagnostics
from huracan.evaluation.evidence import window_evidence
from huracan.evaluation.execution import (
    ExecutionInputError,
    MarketBars,
    bars_frame,
    diagnostics,
    execute,
    market_bars,
)
from huracan.evaluation.explain import ShapResult
from huracan.evaluation.explain import explain as shap_explain
from huracan.evaluation.metrics import compute_metrics
from huracan.evaluation.rules import Rule, RuleInput, ThresholdRule
from huracan.features.build import (
    LABEL,
    LABEL_END,
    NEXT_RETURN,
    PRICE_COLUMNS,
    FeatureConfig,
    FeatureSet,
    LabelConfig,
)
from huracan.features.build import build_features as build_feature_set
from huracan.models.base import Forecaster
from huracan.resources import source_root
from huracan.settings import DataSettings
from huracan.splits import Fold, fit_scaler, purge

log = logging.getLogger(__name__)

#: rows before the scored split saved with the evaluation window, so that any sequence model
#: (lookback up to this many bars) can be re-scored on exactly the same bars later
EVAL_CONTEXT_ROWS = 256


# ----------------------------------------------------------------------------- bookkeeping
class Timer:
    """Accumulates wall time per named stage (seconds)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str) -> _Stage:
        return _Stage(self, name)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + float(seconds)


class _Stage:
    def __init__(self, timer: Timer, name: str) -> None:
        self.timer, self.name = timer, name

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.timer.add(self.name, time.perf_counter() - self.t0)


def seed_everything(seed: int) -> None:
    """Seed Python's and NumPy's global generators (models seed their own libraries)."""
    random.seed(seed)
    np.random.seed(seed)


def code_version() -> str:
    """The git commit of the checkout Huracan runs from (``+dirty`` if modified), or ``unknown``."""
    import subprocess

    root = source_root()
    if root is None:  # installed wheel: no checkout (a repository around site-packages is not ours)
        return "unknown"
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}+dirty" if dirty.strip() else sha


def frame_fingerprint(frame: pd.DataFrame) -> str:
    """sha256 of a frame's values and index (pandas' stable row hashing)."""
    hashed = pd.util.hash_pandas_object(frame, index=True).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()


def feature_list_fingerprint(names: Sequence[str]) -> str:
    """sha256 of the comma-joined feature names (order matters)."""
    return hashlib.sha256(",".join(names).encode()).hexdigest()


# ----------------------------------------------------------------------------- data, features
def load_validated(data: DataSettings, *, log_quality: bool = True) -> pd.DataFrame:
    """Load and validate the candles of ``data`` (rule checks, resampling, gaps logged, then the
    Great Expectations suite as a training gate).

    Returns:
        complete candles ``timestamp, open, high, low, close, volume`` at ``data.timeframe``.

    Raises:
        DataValidationError: the file breaks a rule (file, column, row and rule in the message).
        DegradedDataError: critical expectations fail and ``data.allow_degraded`` is false.
    """
    sink = JsonlQualitySink(data.quality_log) if (log_quality and data.quality_log) else None
    candles, _ = load_ohlcv(data.path, data.timeframe, symbol=data.symbol, sink=sink)
    validate_for_training(candles, data.timeframe, str(data.path), data.symbol, sink,
                          allow_degraded=bool(data.allow_degraded), record_gaps=False)
    return candles


def symbol_data(data: DataSettings, symbol: str,
                paths: Mapping[str, str] | None = None) -> DataSettings:
    """The candle file of another market beside ``data`` (a context symbol, a pooled model's
    symbol), read and validated as ``data`` is (same timeframe, quality log, degraded policy).

    The file is ``paths[symbol]`` when given, else ``data.path`` with the pair's compact name
    swapped (``.../binance-spot_BTCUSDT_1h_...parquet`` -> ``..._ETHUSDT_...`` for ``ETH/USDT``).

    Raises:
        ValueError: one line naming the symbol and the file tried, when the file does not exist
            or ``data.path`` does not name ``data.symbol``'s pair (give ``paths`` then).
    """
    from pathlib import Path

    from huracan.features.naming import compact

    if symbol == data.symbol:
        return data
    if paths and symbol in paths:
        path = str(paths[symbol])
    else:
        own, other = compact(data.symbol), compact(symbol)
        if own not in str(data.path):
            raise ValueError(f"{symbol}: cannot derive its candle file from data.path "
                             f"{data.path!r} (it does not name {own}); give its path")
        path = str(data.path).replace(own, other)
    if not Path(path).exists():
        raise ValueError(f"{symbol}: candle file {path} does not exist [rule: symbol_file]")
    return replace(data, path=path, symbol=symbol, fine_path=None)


def family_sources(features: FeatureConfig, data: DataSettings, candles: pd.DataFrame,
                   db_url: str | None = None) -> dict[str, Any]:
    """The market-structure families' source data for the candles' period: from Parquet files
    laid out as ../shared/data (``features.sources=files``) or from the brain store
    (``store``); empty without families.

    Raises:
        ValueError: ``store`` without a database URL.
        SchemaNotCurrentError: ``store`` names a database not at the newest migration (the
            message says to run ``huracan db upgrade``); nothing is read or written.
    """
    if not features.families:
        return {}
    from huracan.features import families as fam

    bar = timeframe_to_timedelta(data.timeframe)
    start, end = candles["timestamp"].min(), candles["timestamp"].max() + bar
    if features.sources == "store":
        if not db_url:
            raise ValueError("features.sources=store needs db.url")
        from huracan.db.session import make_engine, safe_url

        engine = make_engine(db_url)
        try:
            try:
                require_current_schema(engine)
            except SchemaNotCurrentError as exc:
                raise SchemaNotCurrentError(f"features.sources=store: brain store "
                                            f"{safe_url(db_url)}: {exc}") from None
            sources = fam.load_sources(engine, data.symbol, start, end)
        finally:
            engine.dispose()
        funding = sources.get("funding")
        if funding is not None and len(funding):
            # the store keeps funding times rounded to the minute (jitter of 1-20 ms removed):
            # a rate is treated as known one minute after its stored time, never before it
            sources["funding"] = funding.assign(
                known_at=pd.to_datetime(funding["timestamp"], utc=True) + pd.Timedelta("1min"))
        return sources
    from huracan.config import shared_data_root

    root = features.sources_dir or shared_data_root()
    return fam.load_sources_from_files(root, data.symbol, start, end)


def context_candles(features: FeatureConfig, data: DataSettings, *,
                    log_quality: bool = True) -> dict[str, pd.DataFrame]:
    """The validated candles of every context symbol of ``features.context`` (the target
    ``data.symbol`` skipped when listed, compared by compact pair name): each read as the target is,
    :func:`load_validated` of :func:`symbol_data` (``features.context_paths`` first, else the
    file beside ``data.path``). Empty without context symbols.

    Raises:
        ValueError: a context symbol's candle file cannot be found (one line naming it).
        DataValidationError, DegradedDataError: as :func:`load_validated`.
    """
    from huracan.features.naming import compact

    out: dict[str, pd.DataFrame] = {}
    for symbol in features.context:
        if compact(symbol) == compact(data.symbol) or symbol in out:
            continue  # the target itself (BTC/USDT:USDT and BTC/USDT are one pair's file)
        out[symbol] = load_validated(symbol_data(data, symbol, features.context_paths),
                                     log_quality=log_quality)
    return out


def build_features(candles: pd.DataFrame, timeframe: str, features: FeatureConfig,
                   columns: Sequence[str] | None = None,
                   label: LabelConfig | None = None,
                   sources: dict[str, Any] | None = None,
                   keep_unlabelled: bool = False,
                   context: Mapping[str, pd.DataFrame] | None = None) -> FeatureSet:
    """Causal features and the label (:func:`huracan.features.build.build_features`), optionally
    restricted to ``columns`` (a stored top-N selection), before any scaler is fitted;
    ``keep_unlabelled`` keeps the latest rows whose label is not known yet (serving);
    ``context``: the context symbols' candles (:func:`context_candles`).

    Raises:
        ValueError: no usable rows, or a requested column that the configuration does not build.
    """
    fs = build_feature_set(candles, timeframe, features, label, sources, keep_unlabelled,
                           context)
    if columns is not None:
        missing = [c for c in columns if c not in fs.feature_names]
        if missing:
            raise ValueError(f"selected feature(s) {missing} are not built by the configuration")
        fs = replace(fs, feature_names=list(columns))
    return fs


# ----------------------------------------------------------------------------- execution
def is_perpetual(symbol: str | None) -> bool:
    """A ccxt unified perpetual symbol (``BTC/USDT:USDT``): settled in a quote currency."""
    return bool(symbol) and ":" in str(symbol)


@dataclass
class ExecutionInputs:
    """What the execution model reads besides the feature frame (:func:`execution_inputs`):
    funding settlements (``timestamp, funding_rate``) of a perpetual, the finer series of
    ``fill=delay`` (``timestamp, close``, at ``fine_timeframe``), and notes on what was
    assumed."""

    perpetual: bool = False
    funding: pd.DataFrame | None = None
    fine: pd.DataFrame | None = None
    fine_timeframe: str | None = None
    notes: list[str] = field(default_factory=list)


def lake_root() -> str:
    """The candle lake's directory: ``HURACAN_LAKE`` (the nightly's ``nightly.lake``), else
    ``data/lake``."""
    import os

    return os.environ.get("HURACAN_LAKE", "data/lake")


def fine_series(data: DataSettings, start: pd.Timestamp, end: pd.Timestamp
                ) -> tuple[pd.DataFrame, str]:
    """The finer candles of ``data.symbol`` for ``fill=delay``, ``(candles, timeframe)``, from
    the first of: ``data.fine_path``; ``data.path`` itself when its bars are finer than
    ``data.timeframe`` (the shipped 5m samples resampled to 1h); the candle lake
    (:func:`lake_root`, the finest stored series of the symbol finer than the timeframe).

    Raises:
        ExecutionInputError: none of them holds a series finer than ``data.timeframe`` (one
            line naming where it looked).
        DataValidationError: ``data.fine_path`` breaks a rule.
    """
    from huracan.data.lake import CandleLake

    bar = timeframe_to_timedelta(data.timeframe)
    for path in (data.fine_path, data.path):
        if not path:
            continue
        candles, tf = load_ohlcv(path, None, symbol=data.symbol)
        if timeframe_to_timedelta(tf) < bar:
            return candles, tf
        if path == data.fine_path:
            raise ExecutionInputError(
                f"data.fine_path {path} holds {tf} bars, not finer than data.timeframe="
                f"{data.timeframe}: backtest.fill=delay needs a finer series")
    lake = CandleLake(lake_root())
    finer = [(timeframe_to_timedelta(tf), ex, tf) for ex, sym, tf in lake.series()
             if sym in (data.symbol, data.symbol.replace("/", "-").replace(":", "_"))
             and timeframe_to_timedelta(tf) < bar]
    for _, exchange, tf in sorted(finer):
        candles = lake.read(exchange, data.symbol, tf, start=start, end=end)
        if len(candles):
            return candles, tf
    raise ExecutionInputError(
        f"backtest.fill=delay needs a series of {data.symbol} finer than {data.timeframe}: none "
        f"in data.fine_path (unset), data.path ({data.path}) or the lake at {lake_root()}")


def execution_inputs(cfg: BacktestConfig, data: DataSettings, candles: pd.DataFrame,
                     db_url: str | None = None) -> ExecutionInputs:
    """Funding and the finer series the backtest settings ask for (the I/O of the execution
    model, done once per job).

    - ``backtest.funding=auto`` on a perpetual symbol: its settlements from the brain store of
      ``db_url`` when the store is migrated and holds any for the period (else none, noted);
    - ``backtest.fill=delay``: :func:`fine_series`.

    Raises:
        ValueError: ``fill=delay`` without a finer series.
    """
    out = ExecutionInputs(perpetual=is_perpetual(data.symbol))
    bar = timeframe_to_timedelta(data.timeframe)
    start, end = candles["timestamp"].min(), candles["timestamp"].max() + 2 * bar
    if cfg.funding == "auto" and out.perpetual:
        out.funding = _store_funding(data.symbol, start, end, db_url, out.notes)
    if cfg.fill == "delay":
        out.fine, out.fine_timeframe = fine_series(data, start, end + pd.Timedelta(cfg.latency))
    return out


def _store_funding(symbol: str, start: pd.Timestamp, end: pd.Timestamp, db_url: str | None,
                   notes: list[str]) -> pd.DataFrame | None:
    """Funding settlements of ``symbol`` from the brain store, or None with a note why not."""
    if not db_url:
        notes.append("backtest.funding=auto: no brain store (db.url): no funding charged")
        return None
    from huracan.db.queries import funding_frame
    from huracan.db.session import make_engine, safe_url

    engine = make_engine(db_url)
    try:
        try:
            require_current_schema(engine)
        except SchemaNotCurrentError as exc:
            notes.append(f"backtest.funding=auto: brain store {safe_url(db_url)} is not usable "
                         f"({exc}): no funding charged")
            return None
        frame = funding_frame(engine, symbol.split(":")[0], start, end)  # store: BTC/USDT
    finally:
        engine.dispose()
    if frame is None or len(frame) == 0:
        notes.append(f"backtest.funding=auto: the brain store holds no funding of {symbol} "
                     "for the period: no funding charged")
        return None
    return frame[["timestamp", "funding_rate"]].drop_duplicates("timestamp")


def run_bars(fs: FeatureSet, cfg: BacktestConfig, timeframe: str,
             inputs: ExecutionInputs | None = None) -> MarketBars:
    """The :class:`~huracan.evaluation.execution.MarketBars` of every row of ``fs.frame``
    (:func:`huracan.evaluation.execution.market_bars`), built once per job; backtests take
    their rows' slice (:meth:`MarketBars.take`). Without ``inputs``: a spot market, no funding.

    Raises:
        ValueError: a column the settings need is missing, or ``fill=delay`` without a finer
            series covering the rows.
    """
    inputs = inputs or ExecutionInputs()
    bars = market_bars(fs.frame, cfg, bars_per_year(timeframe), perpetual=inputs.perpetual,
                       funding=inputs.funding, fine=inputs.fine,
                       fine_timeframe=inputs.fine_timeframe)
    if inputs.notes:
        bars = replace(bars, notes=(*bars.notes, *inputs.notes))
    return bars


# ----------------------------------------------------------------------------- fit + predict
@dataclass
class FoldOutcome:
    """What one fold's fit produced.

    Attributes:
        fold: the fold's row ranges.
        predictions: forecasts (forward return, fraction) per scored part (``val``, ``test``),
            one per row of that part.
        fit_seconds, predict_seconds: wall time of ``fit`` and of the ``predict`` calls.
        seconds: wall time of the whole fold inside the loop (slicing, scaler, fit, predict).
        model, scaler: the fitted estimator and its train-only scaler (kept for the last fold
            only, so parallel workers never ship models back).
    """

    fold: Fold
    predictions: dict[str, np.ndarray]
    fit_seconds: float
    predict_seconds: float
    seconds: float
    model: Forecaster | None = None
    scaler: StandardScaler | None = None


def gap_starts(index: pd.DatetimeIndex, timeframe: str) -> np.ndarray:
    """Bool per feature row: True where the row does not follow the previous row by exactly one
    bar (a data gap, or warm-up rows dropped after one); the first row is True."""
    ts = pd.DatetimeIndex(index)
    out = np.ones(len(ts), dtype=bool)
    if len(ts) > 1:
        out[1:] = np.diff(ts.asi8) != timeframe_to_timedelta(timeframe).value
    return out


def run_context(fold: Fold, part: str, lookback: int, starts: np.ndarray | None) -> range:
    """The context rows of ``part`` (see :meth:`Fold.context`) cut to the gap-free run of the
    part's first row: no context row lies before a gap that precedes the part."""
    ctx = fold.context(part, lookback)
    if starts is None or len(ctx) == 0:
        return ctx
    first = getattr(fold, part).start
    breaks = np.flatnonzero(starts[ctx.start + 1 : first + 1]) + ctx.start + 1
    return range(int(breaks[-1]) if len(breaks) else ctx.start, first)


@dataclass(frozen=True)
class LabelTimes:
    """Label reach of every feature row, for purging and sample weights (picklable for joblib).

    Attributes:
        timestamps: row open times, int64 ns, ``(n,)``.
        label_end: the bar whose close decides each row's label, int64 ns, ``(n,)``.
        uniqueness: weight train rows by the average uniqueness of their labels (AFML 4.2).
        row_weights: extra weight per feature row (liquidation density, a cascade / normal row
            mask), ``(n,)``, or None.
        bar_ns: the bar size of the rows' time grid, ns (None: every bar is a row).
    """

    timestamps: np.ndarray
    label_end: np.ndarray
    uniqueness: bool = False
    row_weights: np.ndarray | None = None
    bar_ns: int | None = None

    @classmethod
    def of(cls, fs: FeatureSet, uniqueness: bool = False,
           row_weights: np.ndarray | None = None) -> LabelTimes:
        """The label times of ``fs`` (its bar size from ``fs.timeframe`` when known)."""
        idx = pd.DatetimeIndex(fs.frame.index)
        end = pd.DatetimeIndex(fs.frame[LABEL_END]) if LABEL_END in fs.frame else idx
        bar = None if fs.timeframe is None else int(timeframe_to_timedelta(fs.timeframe).value)
        return cls(idx.asi8.copy(), end.asi8.copy(), uniqueness, row_weights, bar)

    def weights(self, rows: range) -> np.ndarray | None:
        """The train weights of ``rows``: average uniqueness of their labels among themselves
        (with ``uniqueness``) times ``row_weights`` (when given); ``None`` when neither.

        Raises:
            ValueError: every row of ``rows`` has weight 0 (e.g. no cascade in the window); with
                ``bar_ns`` None, a label ending on a bar that is not a row.
        """
        if len(rows) == 0:
            return None
        w = self._uniqueness(rows)
        if self.row_weights is not None:
            extra = np.asarray(self.row_weights[rows.start : rows.stop], dtype=np.float64)
            w = extra if w is None else w * extra
            if not (w > 0).any():
                raise ValueError("every training row has weight 0 (train.rows / "
                                 "train.sample_weight leave nothing to learn from in this "
                                 "window)")
        return w

    def _uniqueness(self, rows: range) -> np.ndarray | None:
        """Average uniqueness (AFML 4.2) of the labels of ``rows``, concurrency counted over
        EVERY bar from the first row to the last label end: the bars of the time grid
        (``bar_ns``), not only the feature rows. A label ends on a bar that may not be a row (the
        last ``max_holding`` bars before a data gap have no label of their own and are dropped);
        bars inside a data gap lie in no label's span (labels never cross a gap), so they count
        nowhere."""
        if not self.uniqueness:
            return None
        from huracan.labels import average_uniqueness_weights

        start = int(self.timestamps[rows.start])
        stop = int(self.label_end[rows.start : rows.stop].max())
        if self.bar_ns:  # integer steps: np.arange would size the grid in float64 and drop the end
            step = int(self.bar_ns)
            bars = pd.DatetimeIndex(start + step * np.arange((stop - start) // step + 1,
                                                             dtype=np.int64))
        else:
            bars = pd.DatetimeIndex(self.timestamps[(self.timestamps >= start)
                                                    & (self.timestamps <= stop)])
        events = pd.DatetimeIndex(self.timestamps[rows.start : rows.stop])
        ends = pd.DatetimeIndex(self.label_end[rows.start : rows.stop])
        w = average_uniqueness_weights(events, ends.to_numpy(), bars)
        return w.to_numpy(np.float64)


def clone(model: Forecaster) -> Forecaster:
    """A fresh unfitted copy with the same hyperparameters (``sklearn.base.clone``)."""
    return sklearn_clone(model)


def fit_fold(prototype: Forecaster, X: np.ndarray, y: np.ndarray, fold: Fold,
             feature_names: Sequence[str], parts: Sequence[str] = ("test",),
             keep: bool = False, starts: np.ndarray | None = None,
             labels: LabelTimes | None = None) -> FoldOutcome:
    """Fit a fresh copy of ``prototype`` and a fresh scaler on ``fold.train``, early-stop on
    ``fold.val``, predict each part in ``parts``.

    Sequence models get, as context, only rows preceding each part (features known before the
    part starts) in the same gap-free run, and their windows never cross a gap (``starts``, from
    :func:`gap_starts`). The scaler sees the fold's train rows and nothing else. With
    ``labels``, train and val rows whose label reaches into the next part are purged
    (:func:`huracan.splits.purge`) and the train rows are weighted by label uniqueness when asked.

    Args:
        prototype: an unfitted forecaster (its hyperparameters are copied).
        X: unscaled features of all rows, shape ``(n, f)``; y: labels, shape ``(n,)``.
        fold: the fold's row ranges.
        feature_names: names of the ``f`` columns.
        parts: the fold parts to predict (``"val"``, ``"test"``).
        keep: return the fitted model and scaler.
    """
    t0 = time.perf_counter()
    model = clone(prototype)
    if labels is not None:
        fold = purge(fold, labels.timestamps, labels.label_end)
    tr, va = fold.train, fold.val
    scaler = fit_scaler(X[tr.start : tr.stop])

    def scaled(r: range) -> np.ndarray:
        if len(r) == 0:
            return np.empty((0, X.shape[1]), dtype=np.float32)
        return np.asarray(scaler.transform(X[r.start : r.stop]), dtype=np.float32)

    lookback = int(model.lookback)

    def flags(r: range) -> np.ndarray | None:
        return None if starts is None else starts[r.start : r.stop]

    t_fit = time.perf_counter()
    model.fit(scaled(tr), y[tr.start : tr.stop], scaled(va), y[va.start : va.stop],
              X_val_context=scaled(run_context(fold, "val", lookback, starts)),
              feature_names=list(feature_names), starts=flags(tr), starts_val=flags(va),
              sample_weight=None if labels is None else labels.weights(tr))
    fit_s = time.perf_counter() - t_fit
    preds: dict[str, np.ndarray] = {}
    predict_s = 0.0
    for part in parts:
        rows = getattr(fold, part)
        x_part, ctx = scaled(rows), scaled(run_context(fold, part, lookback, starts))
        t_pred = time.perf_counter()
        preds[part] = model.predict(x_part, context=ctx, starts=flags(rows))
        predict_s += time.perf_counter() - t_pred
    return FoldOutcome(fold=fold, predictions=preds, fit_seconds=fit_s, predict_seconds=predict_s,
                       seconds=time.perf_counter() - t0, model=model if keep else None,
                       scaler=scaler if keep else None)


def fit_predict_folds(prototype: Forecaster, fs: FeatureSet, folds: Sequence[Fold],
                      parts: Sequence[str] = ("test",), n_jobs: int = 1,
                      timeframe: str | None = None,
                      labels: LabelTimes | None = None) -> list[FoldOutcome]:
    """Fit and predict every fold; the last fold's model and scaler are kept.

    With ``n_jobs > 1`` all folds but the last run in parallel worker processes (joblib's loky
    backend; the feature matrix is memory-mapped, models stay in the workers) while the last fold
    runs here, so its fitted model is available without pickling. Every fold is seeded by the
    model's own ``seed``, so parallel and sequential runs give identical predictions.

    With ``timeframe``, data gaps are located from the feature rows' timestamps
    (:func:`gap_starts`) and no sequence window crosses one.

    Returns:
        one :class:`FoldOutcome` per fold, in fold order.
    """
    X, y, names = fs.X, fs.y, list(fs.feature_names)
    starts = None if timeframe is None else gap_starts(pd.DatetimeIndex(fs.frame.index),
                                                       timeframe)
    head, last = list(folds[:-1]), folds[-1]
    if n_jobs > 1 and len(head) > 0:
        from joblib import Parallel, delayed

        with progress.bar("walk-forward folds", total=len(folds)) as shown:
            done = []  # in fold order, as each finishes
            for o in Parallel(n_jobs=n_jobs, backend="loky", return_as="generator")(
                    delayed(fit_fold)(prototype, X, y, f, names, parts, False, starts, labels)
                    for f in head):
                done.append(o)
                shown.advance()
            outcomes = [*done, fit_fold(prototype, X, y, last, names, parts, True, starts,
                                        labels)]
            shown.advance()
    else:
        outcomes = [fit_fold(prototype, X, y, f, names, parts, f is last, starts, labels)
                    for f in progress.track(folds, "walk-forward folds")]
    for o in outcomes:
        log.debug("fold %d: %d train / %d val / %d test rows, fit %.2fs, predict %.2fs",
                  o.fold.index, len(o.fold.train), len(o.fold.val), len(o.fold.test),
                  o.fit_seconds, o.predict_seconds)
    return outcomes


# ----------------------------------------------------------------------------- evaluation
@dataclass
class Evaluation:
    """What the predict+backtest stage produced for one run.

    Attributes:
        metrics: flat MLflow metrics (``val_sharpe``, ``test_sharpe`` or ``oos_sharpe``...).
        results: backtest per scored window (``val``, ``test`` or ``oos``).
        frames: Parquet artifacts by path (``backtest/returns.parquet``...).
        figures: figure builders by artifact path (built only when logged).
        eval_window: the scored bars with the run's out-of-sample forecasts plus context rows
            (the registry gate's window, :func:`eval_window`).
        scored: name of the window the run is judged on (``test`` or ``oos``).
        evidence: per window, :class:`huracan.evaluation.evidence.WindowEvidence` as a dict
            (bars, trades, per-bar Sharpe, moments, PSR); the metrics carry ``<window>_psr``.
        bars: the market bars of every feature row the backtests were run on.
        tags: run tags of the stage's decisions (:func:`rule_tags`: the fitted rule's choice,
            ``flat`` and why when no threshold beat cash on validation).
    """

    metrics: dict[str, float]
    results: dict[str, BacktestResult]
    evidence: dict[str, dict[str, Any]] = field(default_factory=dict)
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, Callable[[], Figure]] = field(default_factory=dict)
    eval_window: pd.DataFrame | None = None
    scored: str = "test"
    bars: MarketBars | None = None
    tags: dict[str, str] = field(default_factory=dict)


def _with_evidence(name: str, result: BacktestResult, bars: MarketBars,
                   metrics: dict[str, float], evidence: dict[str, dict[str, Any]], fee: float,
                   ppy: float) -> None:
    """PSR and bars of a scored window, and its diagnostics through the execution model:
    ``<name>_sharpe_close`` / ``_total_return_close`` (the same positions filled at the close,
    fee only) and ``<name>_sharpe_lag1`` / ``_total_return_lag1`` (one bar later)."""
    ev = window_evidence(result.returns["strategy_return"].to_numpy(), result.metrics.n_trades)
    metrics[f"{name}_psr"] = ev.psr
    metrics[f"{name}_bars"] = float(ev.bars)
    for key, value in diagnostics(result, bars, ppy, fee).items():
        metrics[f"{name}_{key}"] = value
    evidence[name] = ev.as_dict() | {"execution": result.execution}


def buy_and_hold(bars: MarketBars, periods_per_year: float) -> np.ndarray:
    """Buy & hold's per-bar net returns on ``bars`` under the same execution model (position 1
    decided at the first bar's close and held, paying its entry cost), fractions, ``(n,)``."""
    return execute(np.ones(len(bars)), bars, periods_per_year).returns[
        "strategy_return"].to_numpy(np.float64)


def _with_diagnostics(name: str, result: BacktestResult, bars: MarketBars,
                      metrics: dict[str, float], figures: dict[str, Callable[[], Figure]],
                      ppy: float, title: str, fill: str | None = None) -> None:
    """The window diagnostics of a scored window
    (:func:`huracan.evaluation.diagnostics.window_diagnostics`: ``<name>_breakeven_bps``,
    ``_ic``, ``_rank_ic``, ``_excess_return``, ``_information_ratio`` against buy & hold on the
    same bars, ``_buy_hold_sharpe``...; per-fold ``_ic_mean`` / ``_icir`` when the returns
    carry a ``fold`` column) and its cost-sensitivity plot ``plots/cost_sensitivity_<name>.png``
    (:func:`huracan.evaluation.plots.cost_sensitivity_figure`; its title adds the window's
    dates and ``fill``)."""
    metrics.update(window_diagnostics(result, buy_and_hold(bars, ppy), split=name,
                                      periods_per_year=ppy))
    net = result.returns["strategy_return"].to_numpy(np.float64)
    turnover = result.returns["turnover"].to_numpy(np.float64)
    when = result.returns["timestamp"]
    figures[f"plots/cost_sensitivity_{name}.png"] = lambda: plots.cost_sensitivity_figure(
        net, turnover, ppy, f"{title} {name}: net Sharpe against extra cost",
        timestamps=when, fill=fill)


def _rows(fs: FeatureSet, rows: range | np.ndarray) -> pd.DataFrame:
    return fs.frame.iloc[rows] if isinstance(rows, np.ndarray) else \
        fs.frame.iloc[rows.start : rows.stop]


def _take(bars: MarketBars, rows: range | np.ndarray) -> MarketBars:
    return bars.take(rows)


def rule_input(fs: FeatureSet, rows: range | np.ndarray, predictions: np.ndarray,
               timeframe: str | None = None, bars: MarketBars | None = None) -> RuleInput:
    """What a trading rule sees of feature rows ``rows``: forecasts, returns, labels, the bars'
    prices, gap flags (with ``timeframe``), the model's (unscaled) features and, with ``bars``
    (the :func:`run_bars` of every row), the market of these rows (what a rule fitted on them
    is scored with)."""
    frame = _rows(fs, rows)
    idx = pd.DatetimeIndex(frame.index)
    price = {c: frame[c].to_numpy(np.float64) if c in frame else None for c in PRICE_COLUMNS}
    return RuleInput(timestamps=idx, forecast=np.asarray(predictions, dtype=np.float64),
                     next_return=frame[NEXT_RETURN].to_numpy(np.float64),
                     label=frame[LABEL].to_numpy(np.float64), close=price["bar_close"],
                     high=price["bar_high"], low=price["bar_low"],
                     starts=None if timeframe is None else gap_starts(idx, timeframe),
                     features=frame[list(fs.feature_names)].to_numpy(np.float64),
                     bars=None if bars is None else _take(bars, rows))


def backtest_rows(fs: FeatureSet, rows: range | np.ndarray, predictions: np.ndarray,
                  cfg: BacktestConfig, periods_per_year: float,
                  positions: np.ndarray | None = None,
                  exit_reasons: np.ndarray | None = None,
                  bars: MarketBars | None = None) -> BacktestResult:
    """Execute the positions of feature rows ``rows`` (positions into ``fs.frame``): a trading
    rule's ``positions`` as given, else the sign of ``predictions`` beyond
    ``cfg.threshold``; on ``bars`` (the :func:`run_bars` of every row; default: built from
    ``fs.frame`` with ``cfg`` for a spot market without funding)."""
    from huracan.evaluation.backtest import positions_from_forecast

    frame = _rows(fs, rows)
    if bars is None:
        bars = market_bars(fs.frame, cfg, periods_per_year)
    if positions is None:
        positions = positions_from_forecast(predictions, cfg.threshold, cfg.long_only)
    return execute(positions, _take(bars, rows), periods_per_year, predictions=predictions,
                   labels=frame[LABEL].to_numpy(np.float64), exit_reasons=exit_reasons)


def rule_tags(fitted: Sequence[Any]) -> dict[str, str]:
    """Run tags of the rules fitted on validation (one per fold; the last is the one served):
    ``rule_chosen`` (the last fold's: ``flat`` or ``threshold=<value>``), ``rule_flat_reason``
    (why it is flat: no threshold of the grid beat cash on validation) and, with several
    folds, ``rule_flat_folds`` (``"<flat>/<folds>"``)."""
    if not fitted:
        return {}
    last = fitted[-1]
    tags = {"rule_chosen": str(getattr(last, "chosen", ""))}
    if getattr(last, "flat_", False):
        tags["rule_flat_reason"] = str(last.flat_reason_)[:5000]
    if len(fitted) > 1:
        flat = sum(bool(getattr(f, "flat_", False)) for f in fitted)
        tags["rule_flat_folds"] = f"{flat}/{len(fitted)}"
    return tags


def default_rule(cfg: BacktestConfig) -> Rule:
    """Today's rule: sign of the forecast beyond ``backtest.threshold``."""
    return ThresholdRule(threshold=cfg.threshold, long_only=cfg.long_only)


def eval_window(fs: FeatureSet, rows: np.ndarray, predictions: np.ndarray, folds: np.ndarray,
                min_bars: int = 0, bars: MarketBars | None = None) -> pd.DataFrame:
    """The bars a run is judged on, as out-of-sample forecasts (the registry gate's window).

    The scored bars are the last ``max(min_bars, bars of the last fold)`` of ``rows`` (a forward
    split: its test bars; walk-forward: the stitched OOS bars, each forecast by the fold model
    fitted before it, so a partial last step still leaves ``min_bars`` bars), preceded by up to
    :data:`EVAL_CONTEXT_ROWS` rows of context (sequence models read them when re-scored).

    Args:
        fs: the run's features; ``rows`` index its frame.
        rows: positions of the scored rows in time order, shape ``(n,)``.
        predictions: the run's forecast of each row (forward return, fraction), shape ``(n,)``.
        folds: the fold whose model made each forecast, shape ``(n,)``.
        min_bars: bars to keep at least (``registry.min_eval_bars``), when there are as many.
        bars: the run's market bars of every row of ``fs.frame`` (:func:`run_bars`): their
            ``exec_*`` columns are kept with the window so it is re-scored on exactly the
            run's execution (fills, costs, funding).

    Returns:
        unscaled rows: ``timestamp``, every feature, the :data:`NON_FEATURES` (``label``,
        ``next_return``, ``next_open``, ``bar_volume``...), ``split`` (``context``/``test``),
        ``prediction`` (NaN on context rows), ``fold`` (nullable integer, ``<NA>`` on context
        rows) and, with ``bars``, :func:`huracan.evaluation.execution.bars_frame`'s columns.

    Raises:
        ValueError: ``rows``, ``predictions`` and ``folds`` differ in length, or are empty.
    """
    rows = np.asarray(rows, dtype=np.int64)
    pred = np.asarray(predictions, dtype=np.float64).reshape(-1)
    fold = np.asarray(folds, dtype=np.int64).reshape(-1)
    if not (len(rows) == len(pred) == len(fold)) or len(rows) == 0:
        raise ValueError(f"rows ({len(rows)}), predictions ({len(pred)}) and folds "
                         f"({len(fold)}) must be non-empty and of one length")
    keep = min(len(rows), max(int(min_bars), int((fold == fold[-1]).sum())))
    rows, pred, fold = rows[-keep:], pred[-keep:], fold[-keep:]
    start = max(0, int(rows[0]) - EVAL_CONTEXT_ROWS)
    stop = int(rows[-1]) + 1
    frame = fs.frame.iloc[start:stop].reset_index()
    if bars is not None:
        frame = pd.concat([frame, bars_frame(bars.take(slice(start, stop)))], axis=1)
    at = rows - start
    scored = np.zeros(len(frame), dtype=bool)
    scored[at] = True
    frame["split"] = np.where(scored, "test", "context")
    frame["prediction"] = np.nan
    frame.loc[at, "prediction"] = pred
    frame["fold"] = pd.array([pd.NA] * len(frame), dtype="Int64")
    frame.loc[at, "fold"] = fold
    return frame


def evaluate_forward(fs: FeatureSet, outcome: FoldOutcome, cfg: BacktestConfig,
                     timeframe: str, title: str, rule: Rule | None = None,
                     min_eval_bars: int = 0, bars: MarketBars | None = None) -> Evaluation:
    """Backtest the validation and test predictions of a forward split through the trading
    ``rule`` (fitted on the validation predictions only); metrics ``val_*`` and ``test_*``
    (each window also logs its diagnostics: ``_breakeven_bps``, ``_ic``, ``_rank_ic``,
    ``_excess_return``, ``_information_ratio`` against buy & hold on the same bars, and
    ``plots/cost_sensitivity_<window>.png``; :func:`_with_diagnostics`);
    artifacts ``backtest/returns.parquet`` (test), ``backtest/trades.parquet``,
    ``backtest/val_returns.parquet``, ``rule/fit.json`` and the equity/drawdown plots; the
    evaluation window holds the test bars with their forecasts (``min_eval_bars`` is
    :func:`eval_window`'s, the test bars being the last fold's). Every return comes from the
    execution model on ``bars`` (:func:`run_bars`; default: built from ``fs.frame``)."""
    ppy = bars_per_year(timeframe)
    fold = outcome.fold
    rule = rule or default_rule(cfg)
    bars = bars if bars is not None else run_bars(fs, cfg, timeframe)
    fitted = rule.fit(rule_input(fs, fold.val, outcome.predictions["val"], timeframe, bars),
                      cfg, ppy)
    results = {}
    for name in ("val", "test"):
        rows = getattr(fold, name)
        rp = fitted.positions(rule_input(fs, rows, outcome.predictions[name], timeframe))
        results[name] = backtest_rows(fs, rows, outcome.predictions[name], cfg, ppy,
                                      rp.positions, rp.exit_reasons, bars)
    metrics: dict[str, float] = {}
    evidence: dict[str, dict[str, Any]] = {}
    figures = {f"plots/equity_drawdown_{name}.png":
               _equity_plot(results[name].returns, f"{title} {name} (net of costs)",
                            fill=cfg.fill)
               for name in ("val", "test")}
    for name, res in results.items():
        metrics.update(res.metrics.as_dict(f"{name}_"))
        rows = getattr(fold, name)
        _with_evidence(name, res, _take(bars, rows), metrics, evidence, cfg.fee, ppy)
        _with_diagnostics(name, res, _take(bars, rows), metrics, figures, ppy, title,
                          cfg.fill)
    return Evaluation(
        metrics=metrics, results=results, evidence=evidence, bars=bars,
        reports={"rule/fit.json": {"rule": rule.kind, **fitted.fit_report_},
                 "backtest/execution.json": bars.describe()},
        frames={"backtest/returns.parquet": results["test"].returns,
                "backtest/trades.parquet": results["test"].trades,
                "backtest/val_returns.parquet": results["val"].returns},
        figures=figures, scored="test", tags=rule_tags([fitted]),
        eval_window=eval_window(fs, np.arange(fold.test.start, fold.test.stop),
                                outcome.predictions["test"],
                                np.full(len(fold.test), fold.index), min_eval_bars, bars))


def _equity_plot(returns: pd.DataFrame, title: str, boundaries: Sequence[pd.Timestamp] = (),
                 fill: str | None = None) -> Callable[[], Figure]:
    return lambda: plots.equity_drawdown_figure(returns, title, boundaries=boundaries,
                                                fill=fill)


def evaluate_walk_forward(fs: FeatureSet, outcomes: Sequence[FoldOutcome], cfg: BacktestConfig,
                          timeframe: str, title: str, rule: Rule | None = None,
                          min_eval_bars: int = 0, bars: MarketBars | None = None) -> Evaluation:
    """Stitch the OOS predictions of every fold into one series and backtest it once.

    Metrics ``oos_*`` (same definitions as ``val_*``/``test_*``) come from the stitched series;
    the per-fold table slices it (a fold's Sharpe from its bars' net returns, its trades = those
    entered in its OOS step); the window diagnostics (:func:`_with_diagnostics`) add
    ``oos_breakeven_bps``, ``oos_ic``, ``oos_rank_ic``, the per-fold ``oos_ic_mean`` /
    ``oos_icir`` / ``oos_rank_ic_mean`` / ``oos_rank_icir``, ``oos_excess_return`` and
    ``oos_information_ratio`` against buy & hold. Artifacts: ``backtest/oos_returns.parquet``
    (the columns of :func:`huracan.evaluation.execution.execute` with ``fold``),
    ``backtest/oos_trades.parquet``, ``walkforward/folds.parquet``, the OOS equity/drawdown
    plot with fold boundaries marked and ``plots/cost_sensitivity_oos.png``. The evaluation
    window holds the last ``max(min_eval_bars, last OOS step)`` stitched OOS bars with their
    forecasts (:func:`eval_window`). Every return comes from the execution model on ``bars``
    (:func:`run_bars`; default: built from ``fs.frame``).
    """
    ppy = bars_per_year(timeframe)
    rule = rule or default_rule(cfg)
    bars = bars if bars is not None else run_bars(fs, cfg, timeframe)
    rows = np.concatenate([np.arange(o.fold.test.start, o.fold.test.stop) for o in outcomes])
    preds = np.concatenate([o.predictions["test"] for o in outcomes])
    fold_ids = np.concatenate([np.full(len(o.fold.test), o.fold.index) for o in outcomes])
    positions, reasons, fits, fitted_rules = [], [], [], []
    for o in outcomes:  # each fold's rule is fitted on that fold's validation predictions
        val = o.predictions.get("val")
        fitted = rule.fit(rule_input(fs, o.fold.val, val, timeframe, bars), cfg, ppy) \
            if val is not None else rule
        rp = fitted.positions(rule_input(fs, o.fold.test, o.predictions["test"], timeframe))
        positions.append(rp.positions)
        reasons.append(rp.exit_reasons)
        fits.append({"fold": o.fold.index, **fitted.fit_report_})
        fitted_rules.append(fitted)
    result = backtest_rows(fs, rows, preds, cfg, ppy, np.concatenate(positions),
                           np.concatenate(reasons), bars)
    result.returns.insert(1, "fold", fold_ids)
    folds = fold_table(fs, outcomes, result, ppy)
    starts = [pd.Timestamp(fs.frame.index[o.fold.test.start]) for o in outcomes[1:]]
    metrics = result.metrics.as_dict("oos_") | {"oos_n_folds": float(len(outcomes))}
    evidence: dict[str, dict[str, Any]] = {}
    _with_evidence("oos", result, _take(bars, rows), metrics, evidence, cfg.fee, ppy)
    figures: dict[str, Callable[[], Figure]] = {
        "plots/equity_drawdown_oos.png":
        _equity_plot(result.returns, f"{title} walk-forward OOS (net of costs)", starts,
                     cfg.fill)}
    _with_diagnostics("oos", result, _take(bars, rows), metrics, figures, ppy, title, cfg.fill)
    return Evaluation(
        metrics=metrics, results={"oos": result}, evidence=evidence, bars=bars,
        reports={"rule/fit.json": {"rule": rule.kind, "folds": fits},
                 "backtest/execution.json": bars.describe()},
        frames={"backtest/oos_returns.parquet": result.returns,
                "backtest/oos_trades.parquet": result.trades,
                "walkforward/folds.parquet": folds},
        figures=figures,
        eval_window=eval_window(fs, rows, preds, fold_ids, min_eval_bars, bars), scored="oos",
        tags=rule_tags(fitted_rules))


def fold_table(fs: FeatureSet, outcomes: Sequence[FoldOutcome], stitched: BacktestResult,
               periods_per_year: float) -> pd.DataFrame:
    """One row per fold: its train/val/OOS time ranges and row counts, fit/predict/fold seconds,
    and the fold's slice of the stitched OOS backtest (Sharpe, composite, trades, total return)."""
    idx = fs.frame.index
    ret = stitched.returns
    trades = stitched.trades
    rows = []
    for o in outcomes:
        f = o.fold
        mask = (ret["fold"] == f.index).to_numpy()
        part = ret[mask]
        first, last = part["timestamp"].iloc[0], part["timestamp"].iloc[-1]
        t = trades[(trades["entry_time"] >= first) & (trades["entry_time"] <= last)]
        m = compute_metrics(part["strategy_return"].to_numpy(), t["return"].to_numpy(),
                            part["prediction"].to_numpy(), fs.y[f.test.start : f.test.stop],
                            periods_per_year)
        rows.append({
            "fold": f.index,
            "train_start": idx[f.train.start], "train_end": idx[f.train.stop - 1],
            "val_start": idx[f.val.start], "val_end": idx[f.val.stop - 1],
            "oos_start": idx[f.test.start], "oos_end": idx[f.test.stop - 1],
            "train_rows": len(f.train), "val_rows": len(f.val), "oos_rows": len(f.test),
            "fit_seconds": o.fit_seconds, "predict_seconds": o.predict_seconds,
            "fold_seconds": o.seconds,
            "sharpe": m.sharpe, "composite_score": m.composite_score,
            "n_trades": m.n_trades, "total_return": m.total_return,
        })
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- explain
@dataclass
class FittedFold:
    """The last fold's fitted model with its scaled rows, for SHAP and importance."""

    model: Forecaster
    scaler: StandardScaler
    fold: Fold
    X: np.ndarray  # all rows scaled with the fold's scaler, (n, f) float32
    y: np.ndarray
    starts: np.ndarray | None = None  # gap_starts of all rows

    def rows(self, part: str) -> np.ndarray:
        r = getattr(self.fold, part)
        return self.X[r.start : r.stop]

    def labels(self, part: str) -> np.ndarray:
        r = getattr(self.fold, part)
        return self.y[r.start : r.stop]

    def context(self, part: str) -> np.ndarray:
        r = run_context(self.fold, part, int(self.model.lookback), self.starts)
        return self.X[r.start : r.stop]

    def tail(self, part: str, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The last ``n`` rows of ``part``, their labels, and the rows preceding them (context:
        the part's own earlier rows, then the rows before the part), ``(X, y, context)``."""
        X, y = self.rows(part), self.labels(part)
        k = max(len(X) - int(n), 0)
        pad = max(int(self.model.lookback) - 1, 0)
        before = np.concatenate([self.context(part), X[:k]])
        return X[k:], y[k:], before[len(before) - pad :]


def fitted_fold(fs: FeatureSet, outcome: FoldOutcome,
                timeframe: str | None = None) -> FittedFold:
    """Wrap a kept fold (``keep=True``) with its scaled matrix (and, with ``timeframe``, the
    gap flags that cut sequence contexts).

    Raises:
        ValueError: the outcome did not keep its model.
    """
    if outcome.model is None or outcome.scaler is None:
        raise ValueError(f"fold {outcome.fold.index} did not keep its model")
    X = np.asarray(outcome.scaler.transform(fs.X), dtype=np.float32)
    starts = None if timeframe is None else gap_starts(pd.DatetimeIndex(fs.frame.index),
                                                       timeframe)
    return FittedFold(outcome.model, outcome.scaler, outcome.fold, X, fs.y, starts)


def explain(fitted: FittedFold, max_rows: int, part: str = "val") -> ShapResult:
    """SHAP of the fitted model on the last ``max_rows`` rows of ``part`` of its fold (the
    selection window: ``val`` for a forward split, the OOS step for walk-forward; never the test
    split of a forward split), train rows as the background; see
    :func:`huracan.evaluation.explain.explain`."""
    return shap_explain(fitted.model, fitted.rows(part), fitted.context(part),
                        fitted.rows("train"), max_rows)


def describe_folds(fs: FeatureSet, folds: Sequence[Fold]) -> dict[str, str]:
    """Run tags: time range of the last fold's train/val/test (the registered model's) and, for
    several folds, of the whole OOS period."""
    idx = fs.frame.index
    last = folds[-1]
    tags = {}
    for name in ("train", "val", "test"):
        r = getattr(last, name)
        tags[f"{name}_start"] = idx[r.start].isoformat()
        tags[f"{name}_end"] = idx[r.stop - 1].isoformat()
    tags["n_folds"] = str(len(folds))
    if len(folds) > 1:
        tags["oos_start"] = idx[folds[0].test.start].isoformat()
        tags["oos_end"] = idx[folds[-1].test.stop - 1].isoformat()
    return tags


def rows_frame(fs: FeatureSet, rows: range | np.ndarray) -> pd.DataFrame:
    """Feature rows (features + label) as a frame with a ``timestamp`` column."""
    frame = fs.frame.iloc[rows] if isinstance(rows, np.ndarray) else \
        fs.frame.iloc[rows.start : rows.stop]
    return frame[[*fs.feature_names, "label"]].reset_index()


def summarize(outcomes: Sequence[FoldOutcome]) -> dict[str, Any]:
    """Fold-loop totals (seconds): fit, predict, in-loop overhead."""
    fit = sum(o.fit_seconds for o in outcomes)
    pred = sum(o.predict_seconds for o in outcomes)
    total = sum(o.seconds for o in outcomes)
    return {"folds": len(outcomes), "fit_s": fit, "predict_s": pred, "fold_s": total,
            "fold_overhead_share": (total - fit - pred) / total if total > 0 else 0.0}
