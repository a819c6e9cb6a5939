"""Regimes inside a training job and across a sweep: detection per fold, per-regime evidence,
and the honest regime-switching backtest.

- :func:`detect_regimes`: per fold, a detector fitted on that fold's TRAIN rows classifies the
  fold's scored rows (validation and test / OOS); the last fold's detector is the one saved with
  the registered model (``regime/detector.json``), so a live classification uses the thresholds
  the model was selected with.
- :func:`regime_evidence`: per scored window, :func:`huracan.regime.selection.per_regime_metrics`
  as flat MLflow metrics (``regime/high/oos_sharpe``...).
- :func:`walk_forward_switching`: a strategy that trades, bar by bar, the model chosen for the
  regime detected at that bar, where the choice for each fold is made on the candidates'
  evidence from EARLIER folds only (the first fold is the warm-up) and a regime whose choice
  does not beat cash there is flat, compared with the single best model chosen the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from huracan.evaluation.backtest import BacktestResult
from huracan.evaluation.execution import bars_of_returns, execute
from huracan.regime.detection import (
    UNKNOWN,
    HMMRegime,
    VolatilityRegime,
    apply_cascades,
    realized_volatility_24h,
    regime_features,
    segment_starts,
)
from huracan.regime.selection import RegimeChoice, per_regime_metrics, select_per_regime
from huracan.settings import SelectionSettings
from huracan.tracking.names import read_metric, regime_metric, switching_metric

#: metrics logged per regime (with ``bars``)
REGIME_METRICS = ("sharpe", "composite_score", "max_drawdown", "total_return", "n_trades")


@dataclass
class RegimeResult:
    """Regime of every feature row (``unknown`` where no fold scored it), the last fold's
    detector (JSON-ready) and, for ``hmm``, the filtered probability of the chosen state."""

    regimes: np.ndarray
    detector: dict[str, Any]
    probability: np.ndarray | None = None
    shares: dict[str, float] = field(default_factory=dict)


def detect_regimes(frame: pd.DataFrame, folds: Sequence[Any], settings: Any, timeframe: str,
                   seed: int = 42) -> RegimeResult:
    """Classify the scored rows of every fold with a detector fitted on that fold's train rows.

    Args:
        frame: the feature frame (``bar_close``; ``cascade_indicator`` when present), indexed
            by bar open time.
        folds: the folds (``train``, ``val``, ``test`` row ranges).
        settings: :class:`huracan.settings.RegimeSettings`.
        timeframe: bar size (``1h``).

    Returns:
        :class:`RegimeResult`; a later fold's OOS rows keep their own fold's classification.
    """
    n = len(frame)
    idx = pd.DatetimeIndex(frame.index)
    starts = segment_starts(idx, timeframe)
    close = frame["bar_close"].to_numpy(np.float64)
    regimes = np.full(n, UNKNOWN, dtype=object)
    prob = np.full(n, np.nan) if settings.kind == "hmm" else None
    detector: dict[str, Any] = {}
    if settings.kind == "volatility":
        vol = realized_volatility_24h(pd.Series(close, index=idx), timeframe,
                                      segment_start=starts).to_numpy()
    else:
        X = regime_features(pd.Series(close, index=idx), timeframe, segment_start=starts)
    det: VolatilityRegime | HMMRegime
    for fold in folds:
        tr = slice(fold.train.start, fold.train.stop)
        scored = [r for r in (fold.val, fold.test) if len(r)]
        if settings.kind == "volatility":
            det = VolatilityRegime(tuple(settings.quantiles)).fit(vol[tr])
            labels = det.classify(vol)
        else:
            det = HMMRegime(n_components=int(settings.n_components),
                            extreme_quantile=float(settings.extreme_quantile),
                            random_state=seed).fit(X[tr])
            stop = max(r.stop for r in scored)
            labels_part, p = det.classify(X[:stop])  # filtered: row t reads rows <= t only
            labels = np.full(n, UNKNOWN, dtype=object)
            labels[:stop] = labels_part
            assert prob is not None
            for r in scored:
                prob[r.start : r.stop] = p[r.start : r.stop]
        for r in scored:
            part = slice(r.start, r.stop)
            if r is fold.test:
                regimes[part] = labels[part]
            else:  # a validation row keeps an earlier fold's OOS classification
                unset = regimes[part] == UNKNOWN
                regimes[part] = np.where(unset, labels[part], regimes[part])
        detector = det.to_dict()
    if "cascade_indicator" in frame:
        flags = np.nan_to_num(frame["cascade_indicator"].to_numpy(np.float64)) > 0
        scored_mask = regimes != UNKNOWN
        regimes = np.where(scored_mask, apply_cascades(regimes, flags), regimes)
    scored = regimes[regimes != UNKNOWN]
    shares = {str(k): float(v) for k, v in
              pd.Series(scored).value_counts(normalize=True).items()} if len(scored) else {}
    return RegimeResult(regimes.astype(object), {"kind": settings.kind, **detector}, prob, shares)


def regime_evidence(window: str, returns: pd.DataFrame, regimes: np.ndarray,
                    periods_per_year: float, min_bars: int
                    ) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Per-regime metrics of one scored window (its executed returns): flat MLflow metrics
    (``regime/<regime>/<window>_<metric>``) and the nested table (``{regime: {metric: v}}``)."""
    table = per_regime_metrics(returns, regimes, periods_per_year, min_bars=min_bars)
    flat: dict[str, float] = {}
    nested: dict[str, dict[str, float]] = {}
    for regime, row in table.iterrows():
        if regime == "all" or row["bars"] == 0:
            continue
        nested[str(regime)] = {k: float(row[k]) for k in table.columns}
        for k in ("bars", *REGIME_METRICS):
            v = float(row[k])
            if np.isfinite(v):
                flat[regime_metric(window, k, str(regime))] = v
    return flat, nested


def _evidence_tables(frames: Mapping[str, pd.DataFrame], mask_of: Any, periods_per_year: float,
                     min_bars: int) -> dict[str, pd.DataFrame]:
    out = {}
    for name, f in frames.items():
        part = f[mask_of(f)]
        if len(part) >= 2:
            out[name] = per_regime_metrics(part, part["regime"].to_numpy(), periods_per_year,
                                           min_bars=min_bars)
    return out


def walk_forward_switching(frames: Mapping[str, pd.DataFrame], fee: float,
                           periods_per_year: float, *, metric: str = "composite_score",
                           min_trades: int = SelectionSettings.min_trades, min_bars: int = 50,
                           extreme_exposure: float = 0.25, min_psr: float = 0.9
                           ) -> dict[str, Any]:
    """The regime-switching strategy on the candidates' common scored bars, chosen walk-forward.

    Args:
        frames: candidate name (containing its model type) -> its executed returns frame on
            the scored window (:func:`huracan.evaluation.execution.execute`'s columns with
            ``fold`` and ``regime``), all on the same bars (inner-joined here); the strategies
            are executed on the first candidate's bars (:func:`~huracan.evaluation.execution.
            bars_of_returns`).
        fee: the fee of a frame logged before the execution model (its close-fill fallback).
        periods_per_year: bars per year.
        metric, min_trades, min_bars, extreme_exposure: the per-regime selection.
        min_psr: the cash floor (``registry.min_psr``): a regime whose choice does not beat cash
            on the earlier folds' bars of that regime is flat in the fold
            (:func:`~huracan.regime.selection.select_per_regime`).

    Returns:
        ``{"switching", "single_best", "buy_hold"}`` backtest results on the bars from the second
        fold on (the first has no earlier evidence), and ``"choices"``: per fold, the per-regime
        choice (``cash`` included) and the single best model, both made on earlier folds only.
    """
    names = sorted(frames)
    base = frames[names[0]]
    common = set(base["timestamp"])
    for name in names[1:]:
        common &= set(frames[name]["timestamp"])
    aligned = {k: f[f["timestamp"].isin(common)].sort_values("timestamp").reset_index(drop=True)
               for k, f in frames.items()}
    ref = aligned[names[0]]
    folds = sorted(ref["fold"].unique()) if "fold" in ref else [0]
    n = len(ref)
    pos = np.zeros(n)
    single = np.zeros(n)
    choices = []
    for k in folds[1:]:
        before = _evidence_tables(aligned, lambda f, k=k: f["fold"] < k, periods_per_year,
                                  min_bars)
        now = (ref["fold"] == k).to_numpy()
        earlier = {m: aligned[m][aligned[m]["fold"] < k] for m in before}
        selection = select_per_regime(before, metric=metric, min_trades=min_trades,
                                      extreme_exposure=extreme_exposure, returns=earlier,
                                      min_psr=min_psr) if before else {}
        overall = {m: float(t.loc["all", metric]) for m, t in before.items()}
        best = max(overall, key=lambda m: overall[m]) if overall else names[0]
        regs = ref.loc[now, "regime"].to_numpy()
        for regime in set(regs) - {UNKNOWN}:
            choice: RegimeChoice | None = selection.get(regime)
            if choice is None or choice.is_cash:  # cash: flat in this regime
                continue
            m = now.copy()
            m[now] = regs == regime
            pos[m] = choice.exposure * aligned[choice.model].loc[m, "position"].to_numpy()
        single[now] = aligned[best].loc[now, "position"].to_numpy()
        choices.append({"fold": int(k), "single_best": best,
                        "regimes": {r: c.to_dict() for r, c in selection.items()}})
    keep = (ref["fold"] > folds[0]).to_numpy() if len(folds) > 1 else np.zeros(n, bool)
    bars = bars_of_returns(ref, fee).take(keep)

    def bt(p: np.ndarray) -> BacktestResult:
        return execute(p[keep], bars, periods_per_year,
                       predictions=ref.loc[keep, "prediction"].to_numpy(np.float64),
                       labels=ref.loc[keep, "label"].to_numpy(np.float64))

    return {"switching": bt(pos), "single_best": bt(single), "buy_hold": bt(np.ones(n)),
            "choices": choices, "bars": int(keep.sum())}


#: metrics of each strategy of the switching comparison logged on the sweep's parent run
SWITCHING_METRICS = ("sharpe", "max_drawdown", "total_return", "n_trades", "composite_score")


def candidate_frames(client: Any, results: Sequence[Mapping[str, Any]]) -> dict[str, pd.DataFrame]:
    """Each successful candidate's scored returns with a ``fold`` and ``regime`` column, keyed
    by ``<model_type>:<run id prefix>``: the stitched OOS for walk-forward (fold = its OOS
    step), validation (fold 0) then test (fold 1) for a forward split, so fold ``k``'s choice
    can be made on folds ``< k``. Runs without regimes are left out."""
    import tempfile

    from huracan.regime.registry import candidate_name

    frames: dict[str, pd.DataFrame] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in results:
            if r.get("status", "ok") != "ok" or not r.get("run_id"):
                continue
            try:
                if r.get("scheme") == "walk_forward":
                    f = pd.read_parquet(client.download_artifacts(
                        r["run_id"], "backtest/oos_returns.parquet", tmp))
                else:
                    parts = []
                    for k, path in enumerate(("backtest/val_returns.parquet",
                                              "backtest/returns.parquet")):
                        part = pd.read_parquet(client.download_artifacts(r["run_id"], path, tmp))
                        parts.append(part.assign(fold=k))
                    f = pd.concat(parts, ignore_index=True)
            except Exception:  # a run without the artifacts is left out of the comparison
                continue
            if "regime" in f and "fold" in f:
                frames[candidate_name(r)] = f
    return frames


def sweep_switching(client: Any, results: Sequence[Mapping[str, Any]], settings: Any, *,
                    metric: str, fee: float, periods_per_year: float,
                    min_psr: float = 0.9) -> dict[str, Any] | None:
    """:func:`walk_forward_switching` over a sweep's candidates (``settings``:
    :class:`huracan.settings.RegimeSettings`; ``min_psr``: ``registry.min_psr``); ``None``
    with fewer than one candidate with regimes or a single fold. Returns the metrics of the
    three strategies (``switching/switching_sharpe``, ``switching/single_best_sharpe``...),
    the per-fold choices and the number of bars compared."""
    frames = candidate_frames(client, results)
    if not frames:
        return None
    out = walk_forward_switching(frames, fee, periods_per_year, metric=metric,
                                 min_trades=int(settings.min_trades),
                                 min_bars=int(settings.min_bars),
                                 extreme_exposure=float(settings.extreme_exposure),
                                 min_psr=min_psr)
    if out["bars"] < 2:
        return None
    metrics: dict[str, float] = {switching_metric("bars"): float(out["bars"]),
                                 switching_metric("candidates"): float(len(frames))}
    for strategy in ("switching", "single_best", "buy_hold"):
        values = out[strategy].metrics.as_dict()
        for m in SWITCHING_METRICS:
            v = float(values[m])
            if np.isfinite(v):
                metrics[switching_metric(f"{strategy}_{m}")] = v
    ref = out["switching"].returns["timestamp"]
    return {"metrics": metrics, "choices": out["choices"], "bars": out["bars"],
            "start": str(ref.iloc[0]), "end": str(ref.iloc[-1]),
            "candidates": sorted(frames)}


def format_switching(report: Mapping[str, Any]) -> str:
    """The switching comparison as a small text table."""
    m = report["metrics"]
    lines = [f"regime switching vs single best vs buy & hold on {report['bars']} bars "
             f"({report['start']} .. {report['end']}), choices from earlier folds only:",
             f"{'strategy':<13}{'sharpe':>8}{'max_dd':>8}{'return':>9}{'trades':>8}"]
    for s in ("switching", "single_best", "buy_hold"):
        v = {k: read_metric(m, switching_metric(f"{s}_{k}"), math.nan) for k in SWITCHING_METRICS}
        lines.append(f"{s:<13}{v['sharpe']:>8.2f}{v['max_drawdown']:>8.1%}"
                     f"{v['total_return']:>9.1%}{v['n_trades']:>8.0f}")
    return "\n".join(lines)
