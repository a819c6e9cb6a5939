"""Build the model matrix: causal features, the forward-return label, the 1-bar P&L return.

Gaps: the candles are reindexed to the full timeframe grid and cut into gap-free segments; every
indicator restarts in each segment (warm-up rows are NaN), and labels never reach across a gap.
Rows with any NaN feature or label are dropped, so no value is computed across a missing bar.

A label whose reach (``features.horizon`` bars for the forward return, the vertical barrier
``max_holding`` bars for triple barriers) passes the last bar of its segment (a data gap follows,
or the data end) is not known: its row is DROPPED, never truncated at the last bar before the gap
and never bridged to the first bar after it (the policy and its source, AFML snippets 3.2-3.5, are
in :mod:`huracan.labels`). :attr:`FeatureSet.unlabelled` counts these rows by cause.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from huracan.data.ohlcv import complete_grid, timeframe_to_timedelta
from huracan.features import technical as ta

LABEL = "label"
NEXT_RETURN = "next_return"
#: the time of the bar whose close decides each row's label (how far the label reaches)
LABEL_END = "label_end"
#: the bar's own prices, kept beside the features for trading rules (never model inputs)
PRICE_COLUMNS = ("bar_close", "bar_high", "bar_low")
#: the open of bar t+1 (where a decision at bar t's close is filled, ``backtest.fill=next_open``)
NEXT_OPEN = "next_open"
#: the bar's traded volume, base units (the square-root impact of ``backtest.notional``)
BAR_VOLUME = "bar_volume"
#: what the execution model (:mod:`huracan.evaluation.execution`) reads per row
EXECUTION_COLUMNS = (NEXT_OPEN, BAR_VOLUME)
#: columns of the frame that are never model inputs
NON_FEATURES = (LABEL, NEXT_RETURN, LABEL_END, *PRICE_COLUMNS, *EXECUTION_COLUMNS)
#: the prices ``label.price`` may read
LABEL_PRICES = ("close", "open")
#: why a row with complete features has no label (the keys of :attr:`FeatureSet.unlabelled`)
UNLABELLED_CAUSES = ("gap", "end_of_data", "no_volatility")


@dataclass(frozen=True)
class LabelConfig:
    """What a model learns to predict (the ``label`` config group).

    Attributes:
        kind: ``forward_return`` (``close_{t+h}/close_t - 1`` with ``features.horizon``) or
            ``triple_barrier`` (Lopez de Prado 2018, AFML 3.2-3.5: +1 / -1 for the profit-take /
            stop-loss barrier touched first, at ``pt_mult`` / ``sl_mult`` times the rolling
            volatility scaled to ``max_holding`` bars; on the vertical barrier 0, or the sign of
            the return there with ``zero_on_vertical=false``).
        price: the prices a ``forward_return`` label reads: ``close`` (``close_{t+h}/close_t -
            1``, reach ``h`` bars) or ``open``, aligned to the next-open fill: ``open_{t+1+h} /
            open_{t+1} - 1``, the return a position filled at the next open and left at the open
            ``h`` bars later earns (reach ``h + 1`` bars, so the embargo grows with it).
        max_holding: the vertical barrier, bars; the label's reach (the embargo follows it).
        vol_window: bars of the rolling volatility of the barriers.
        weights: ``uniqueness`` weights the train rows by the average uniqueness of their
            overlapping labels (AFML 4.2); ``none``: equal weights.
    """

    kind: str = "forward_return"
    pt_mult: float = 2.0
    sl_mult: float = 1.0
    max_holding: int = 24
    vol_window: int = 24
    zero_on_vertical: bool = True
    weights: str = "none"
    price: str = "close"

    def __post_init__(self) -> None:
        if self.kind not in ("forward_return", "triple_barrier"):
            raise ValueError(f"label.kind must be forward_return or triple_barrier, "
                             f"got {self.kind!r}")
        if self.price not in LABEL_PRICES:
            raise ValueError(f"label.price must be close or open, got {self.price!r}")
        if self.price == "open" and self.kind != "forward_return":
            raise ValueError("label.price=open applies to label.kind=forward_return only (the "
                             "triple barriers read the closes, highs and lows)")

    def reach(self, horizon: int) -> int:
        """Bars the label reads past its row (the embargo follows it): ``horizon`` for a
        close-to-close forward return, ``horizon + 1`` open to open, ``max_holding`` for triple
        barriers."""
        if self.kind != "forward_return":
            return int(self.max_holding)
        return int(horizon) + (1 if self.price == "open" else 0)
        if self.weights not in ("none", "uniqueness"):
            raise ValueError(f"label.weights must be none or uniqueness, got {self.weights!r}")


@dataclass(frozen=True)
class FeatureConfig:
    """Feature windows (all in bars), the forward-return horizon, and the market-structure
    families joined beside the price features.

    Attributes:
        horizon: label = simple forward return over ``horizon`` bars, ``close_{t+h}/close_t - 1``.
        families: market-structure families (:mod:`huracan.features.families`: ``derivatives``
            = funding, basis, open_interest; ``liquidations``; ``sentiment``; ``headlines``),
            empty for price features only. Uncovered bars are NaN with a ``<family>_available``
            flag (a model input too), never a silent zero.
        family_params: :class:`huracan.features.families.FamilyParams` fields.
        sources: where the families' data come from: ``files`` (``sources_dir``, laid out as
            ../shared/data) or ``store`` (the brain store of ``db.url``).
        sources_dir: the data root for ``files`` (default: the shared data directory).
        context: context symbols (``[BTC/USDT, ETH/USDT]``) whose candles add the
            ``ctx_<PAIR>_*`` columns (:mod:`huracan.features.context`); the target itself is
            skipped when listed (:func:`huracan.stages.context_candles`).
        context_paths: explicit candle files per context symbol (else derived from
            ``data.path``, :func:`huracan.stages.symbol_data`).
        context_windows: bars of the rolling beta / correlation against each context symbol.
        timeframes: higher timeframes (``[4h, 1d]``, whole multiples of the data's timeframe)
            whose closed bars add the ``htf_<tf>_*`` columns (:mod:`huracan.features.timeframes`).
    """

    horizon: int = 1
    return_horizons: list[int] = field(default_factory=lambda: [1, 3, 6, 12, 24])
    volatility_windows: list[int] = field(default_factory=lambda: [12, 24, 72])
    atr_period: int = 14
    rsi_period: int = 14
    macd_fast: int = 12
    macd_slow: int = 26
    macd_signal: int = 9
    volume_windows: list[int] = field(default_factory=lambda: [24, 168])
    calendar: bool = True
    families: list[str] = field(default_factory=list)
    family_params: dict[str, Any] = field(default_factory=dict)
    sources: str = "files"
    sources_dir: str | None = None
    context: list[str] = field(default_factory=list)
    context_paths: dict[str, str] = field(default_factory=dict)
    context_windows: list[int] = field(default_factory=lambda: [24, 168])
    timeframes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.horizon < 1:
            raise ValueError(f"features.horizon must be >= 1 bar, got {self.horizon}")
        if any(int(w) < 2 for w in self.context_windows):
            raise ValueError(f"features.context_windows must be >= 2 bars, got "
                             f"{list(self.context_windows)}")
        for tf in self.timeframes:  # a multiple of the data's timeframe: checked on build
            timeframe_to_timedelta(str(tf))
        unknown = sorted(set(self.context_paths) - set(self.context))
        if unknown:
            raise ValueError(f"features.context_paths names {unknown}, not in features.context "
                             f"{list(self.context)}")
        if self.sources not in ("files", "store"):
            raise ValueError(f"features.sources must be files or store, got {self.sources!r}")


@dataclass
class FeatureSet:
    """Features and targets, one row per usable bar in time order.

    Attributes:
        frame: indexed by bar open time (UTC); columns = ``feature_names`` + the
            :data:`NON_FEATURES` (``label``, ``next_return``, ``next_open``...).
        feature_names: model input columns.
        horizon: label horizon in bars.
        coverage: family -> share of the rows it covers.
        timeframe: the bar size of the grid the index lies on (uniqueness weights count every
            bar of it, :class:`huracan.stages.LabelTimes`).
        unlabelled: rows with complete price features whose label is unknown, by cause
            (:data:`UNLABELLED_CAUSES`): ``gap`` (the label's reach passes the last bar before a
            data gap), ``end_of_data`` (it passes the last bar of the data) and
            ``no_volatility`` (a triple-barrier event whose barrier width is zero or still in
            its volatility warm-up); dropped from ``frame`` unless built with
            ``keep_unlabelled``.
    """

    frame: pd.DataFrame
    feature_names: list[str]
    horizon: int
    coverage: dict[str, float] = field(default_factory=dict)
    timeframe: str | None = None
    unlabelled: dict[str, int] = field(default_factory=dict)

    @property
    def X(self) -> np.ndarray:
        return self.frame[self.feature_names].to_numpy(np.float32)

    @property
    def y(self) -> np.ndarray:
        return self.frame[LABEL].to_numpy(np.float64)


def compute_features(candles: pd.DataFrame, cfg: FeatureConfig) -> pd.DataFrame:
    """Features for one gap-free run of candles indexed by open time (NaN during warm-up)."""
    parts = [
        ta.log_returns(candles["close"], cfg.return_horizons),
        ta.realized_volatility(candles["close"], cfg.volatility_windows),
        ta.wilder_atr(candles, cfg.atr_period).to_frame(),
        ta.bar_shape(candles),
        ta.rsi(candles["close"], cfg.rsi_period).to_frame(),
        ta.macd(candles["close"], cfg.macd_fast, cfg.macd_slow, cfg.macd_signal),
        ta.volume_zscore(candles["volume"], cfg.volume_windows),
    ]
    if cfg.calendar:
        parts.append(ta.calendar(pd.DatetimeIndex(candles.index)))
    return pd.concat(parts, axis=1)


def _label(seg: pd.DataFrame, cfg: FeatureConfig, label: LabelConfig) -> pd.DataFrame:
    """The label and its end time for one gap-free segment (NaN where it is not known yet:
    a reach past the segment's last bar, or a zero barrier width)."""
    close = seg["close"]
    if label.kind == "forward_return":
        from huracan.labels import forward_return_label, open_to_open_label

        lab = open_to_open_label(seg["open"], cfg.horizon) if label.price == "open" else \
            forward_return_label(close, cfg.horizon)
        return pd.DataFrame({LABEL: lab["label"], LABEL_END: lab["end_time"]})
    from huracan.labels import barrier_volatility, triple_barrier_labels

    vol = barrier_volatility(close, label.vol_window, label.max_holding)
    tb = triple_barrier_labels(close, seg["high"], seg["low"], volatility=vol,
                               pt_mult=label.pt_mult, sl_mult=label.sl_mult,
                               max_holding=label.max_holding,
                               zero_on_vertical=label.zero_on_vertical)
    if tb.empty:  # a segment too short for any label: NaT of the index's (UTC) dtype
        return pd.DataFrame({LABEL: np.nan,
                             LABEL_END: pd.Series(pd.NaT, index=close.index,
                                                  dtype=close.index.dtype)})
    return pd.DataFrame({LABEL: tb["label"].astype(np.float64), LABEL_END: tb["end_time"]},
                        index=close.index)


def _join_context_htf(frame: pd.DataFrame, names: list[str], grid: pd.DataFrame,
                      timeframe: str, cfg: FeatureConfig,
                      context: Mapping[str, pd.DataFrame] | None
                      ) -> tuple[pd.DataFrame, list[str]]:
    """``frame`` with the higher-timeframe and context columns joined by bar open time (NaN
    kept), and the feature names extended by them."""
    extras = []
    if cfg.timeframes:
        from huracan.features.timeframes import timeframe_features

        extras.append(timeframe_features(grid[["open", "high", "low", "close", "volume"]],
                                         timeframe, cfg.timeframes, cfg, compute_features))
    if context:
        from huracan.features.context import context_features, grid_close

        index = pd.DatetimeIndex(grid.index)
        closes = {sym: grid_close(c, index) for sym, c in context.items()}
        extras.append(context_features(grid["close"], closes, cfg.return_horizons,
                                       cfg.volatility_windows, cfg.context_windows))
    if not extras:
        return frame, names
    extra = pd.concat(extras, axis=1)
    frame = frame.join(extra, how="left")
    return frame, names + [c for c in extra.columns if c not in names]


def build_features(candles: pd.DataFrame, timeframe: str, cfg: FeatureConfig,
                   label: LabelConfig | None = None,
                   sources: Mapping[str, Any] | None = None,
                   keep_unlabelled: bool = False,
                   context: Mapping[str, pd.DataFrame] | None = None) -> FeatureSet:
    """Turn validated candles into a :class:`FeatureSet`.

    Args:
        candles: columns ``timestamp, open, high, low, close, volume`` (gaps allowed).
        timeframe: bar size of ``candles`` (``1h``).
        cfg: feature windows and the forward-return horizon.
        label: the label (default: the forward return over ``cfg.horizon`` bars).
        sources: the families' source frames (:func:`huracan.features.families.load_sources`
            or ``load_sources_from_files``); needed when ``cfg.families`` is not empty.
        keep_unlabelled: keep the last rows whose label (and ``next_return``) is not known yet
            (NaN): serving predicts the latest bar; training never uses this.
        context: context symbol -> its validated candles (``timestamp`` + ``close`` at least,
            :func:`huracan.stages.context_candles`): adds the ``ctx_<PAIR>_*`` columns of every
            symbol given (:mod:`huracan.features.context`; ``cfg.context`` only says which to
            load). ``cfg.timeframes`` adds the ``htf_<tf>_*`` columns
            (:mod:`huracan.features.timeframes`). Both are joined after the warm-up cut and may
            be NaN (kept, with their ``*_available`` flags), like the families.

    Returns:
        the usable rows (complete features and label), in time order; the frame also carries
        ``label_end`` (the bar whose close decides the label), ``next_return``, the bar's
        prices (``bar_close``, ``bar_high``, ``bar_low``) and what the execution model reads
        (``next_open``: the open of bar t+1 in the same gap-free segment; ``bar_volume``), none
        of them model inputs (:data:`NON_FEATURES`).
        ``horizon`` is the label's longest reach in bars (:meth:`LabelConfig.reach`);
        ``unlabelled`` counts the rows dropped for want of a label (a reach past a data gap or
        the data end: dropped, never truncated or bridged).

    Raises:
        ValueError: when no row survives the warm-up (too little data), or a timeframe of
            ``cfg.timeframes`` is not a whole multiple of ``timeframe``.
    """
    grid = complete_grid(candles, timeframe).set_index("timestamp")
    if cfg.timeframes:
        from huracan.features.timeframes import check_timeframes

        check_timeframes(cfg.timeframes, timeframe)  # refused before any work
    missing = grid["close"].isna()
    segment = missing.cumsum()  # a new segment id after every missing bar
    frames, cuts = [], []
    label = label or LabelConfig()
    reach = label.reach(cfg.horizon)
    for _, seg in grid[~missing].groupby(segment[~missing], sort=True):
        feats = compute_features(seg, cfg)
        close = seg["close"]
        lab = _label(seg, cfg, label)
        feats[LABEL] = lab[LABEL]
        feats[LABEL_END] = lab[LABEL_END]
        feats[NEXT_RETURN] = close.shift(-1) / close - 1.0
        feats["bar_close"], feats["bar_high"], feats["bar_low"] = close, seg["high"], seg["low"]
        feats[NEXT_OPEN] = seg["open"].shift(-1)  # bar t+1 of the same gap-free segment
        feats[BAR_VOLUME] = seg["volume"]
        frames.append(feats)
        cuts.append(np.arange(len(seg)) >= len(seg) - reach)  # reach past the segment's end
    frame = pd.concat(frames).replace([np.inf, -np.inf], np.nan)
    names = [c for c in frame.columns if c not in NON_FEATURES]
    complete = frame[names].notna().all(axis=1).to_numpy()
    no_label = complete & frame[LABEL].isna().to_numpy()
    cut = np.concatenate(cuts)
    in_last = np.arange(len(frame)) >= len(frame) - len(frames[-1])
    unlabelled = {"gap": int((no_label & cut & ~in_last).sum()),
                  "end_of_data": int((no_label & cut & in_last).sum()),
                  "no_volatility": int((no_label & ~cut).sum())}
    frame = frame.dropna(subset=names if keep_unlabelled else None)
    if frame.empty:
        raise ValueError("no usable rows after feature warm-up; need a longer gap-free history")
    frame.index.name = "timestamp"
    frame, names = _join_context_htf(frame, names, grid, timeframe, cfg, context)
    coverage: dict[str, float] = {}
    if cfg.families:
        from huracan.features.families import build_family_features

        fam = build_family_features(candles[["timestamp", "close"]], timeframe, sources or {},
                                    cfg.families, cfg.family_params)
        extra = fam.frame.replace([np.inf, -np.inf], np.nan)
        extra.index = pd.DatetimeIndex(extra.index)
        frame = frame.join(extra, how="left")  # NaN where a family is not covered: kept
        flags = list(fam.flags.values())
        frame[flags] = frame[flags].fillna(0).astype(np.float64)
        names += [c for c in extra.columns if c not in names]
        coverage = {f: float(frame[flag].mean()) for f, flag in fam.flags.items()}
    return FeatureSet(frame=frame, feature_names=names, horizon=reach, coverage=coverage,
                      timeframe=timeframe, unlabelled=unlabelled)
