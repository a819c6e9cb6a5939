"""How much evidence a result carries, and which candidates may be chosen at all.

Pure functions on backtest outputs and job results (plain dicts), used by the jobs (per-window
PSR), the sweep (DSR of every candidate against the N candidates actually compared, PBO across
them), the selection (eligibility by trades) and the registry gate (the evidence of a decision).
Formulas live in :mod:`huracan.evaluation.statistics` (Bailey & Lopez de Prado 2012, 2014;
Bailey, Borwein, Lopez de Prado & Zhu 2015); this module decides what they are applied to.

Units: Sharpe ratios here are PER BAR (``sr``); ``bars`` and ``trades`` are counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from huracan.evaluation import statistics as st
from huracan.evaluation.execution import MarketBars, execute, lagged, trades_of
from huracan.evaluation.metrics import compute_metrics
from huracan.evaluation.selection import SelectionSettings


@dataclass(frozen=True)
class WindowEvidence:
    """The evidence of one scored window of one run.

    Attributes:
        bars: bars scored.
        trades: trades taken.
        sr: per-bar Sharpe of the net returns (0 when flat).
        skew, kurtosis: sample skewness and (non-excess) kurtosis of the net returns.
        psr: probabilistic Sharpe ratio against 0 (Bailey & Lopez de Prado 2012), in [0, 1];
            0 for a flat series (no evidence of skill).
        flat: fewer than 3 bars or all returns equal (e.g. never traded).
    """

    bars: int
    trades: int
    sr: float
    skew: float
    kurtosis: float
    psr: float
    flat: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def window_evidence(net_returns: np.ndarray, n_trades: int) -> WindowEvidence:
    """Evidence of per-bar net returns (fractions) over which ``n_trades`` trades were taken."""
    from scipy import stats

    r = np.asarray(net_returns, dtype=np.float64).reshape(-1)
    flat = len(r) < 3 or bool(np.all(r == r[0]))
    if flat:
        return WindowEvidence(bars=len(r), trades=int(n_trades), sr=0.0, skew=0.0, kurtosis=3.0,
                              psr=0.0, flat=True)
    sr = st.per_bar_sharpe(r)
    skew, kurt = float(stats.skew(r)), float(stats.kurtosis(r, fisher=False))
    return WindowEvidence(bars=len(r), trades=int(n_trades), sr=sr, skew=skew, kurtosis=kurt,
                          psr=float(st.psr_from_moments(sr, len(r), skew, kurt)))


#: name of the built-in policy "never trade" (position 0 on every bar): the floor of every decision
CASH = "cash"


@dataclass(frozen=True)
class CashVerdict:
    """Whether a strategy's net returns beat the ``cash`` policy (position 0, return 0), and the
    evidence the verdict had.

    Attributes:
        beats: ``True`` when the compounded net return is positive AND the probabilistic Sharpe
            ratio of the net returns against 0 is at least ``min_psr``.
        psr: PSR against a Sharpe of 0 (Bailey & Lopez de Prado 2012), in [0, 1]; 0 when flat.
        sr: per-bar Sharpe ratio of the net returns.
        total_return: compounded net return over the window, fraction.
        bars, trades: evidence counts. min_psr: the bar the PSR had to reach.
        reason: one line naming the figures and the rule.
    """

    beats: bool
    psr: float
    sr: float
    total_return: float
    bars: int
    trades: int
    min_psr: float
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def beats_cash(net_returns: np.ndarray, n_trades: int, min_psr: float = 0.9,
               what: str = "candidate") -> CashVerdict:
    """Does a strategy beat doing nothing? The floor every decision applies (gate, rollback,
    regime aliases, threshold grid, Optuna presets, the sizer gate).

    Rule: beats cash iff its compounded net return over the window is > 0 and its PSR (Bailey &
    Lopez de Prado 2012: probability that the true Sharpe ratio exceeds 0, given the bars, skew
    and kurtosis) is ``>= min_psr``. A flat series (never traded) has PSR 0 and never beats cash:
    it IS cash.

    Args:
        net_returns: per-bar simple returns net of every cost, fractions, shape ``(n,)``.
        n_trades: trades taken over the window (reported as evidence).
        min_psr: the PSR the strategy must reach, in [0, 1] (``registry.min_psr``, default 0.9).
        what: the name used in ``reason``.

    Raises:
        ValueError: ``min_psr`` outside [0, 1].
    """
    if not (0.0 <= float(min_psr) <= 1.0):
        raise ValueError(f"min_psr must be in [0, 1], got {min_psr}")
    r = np.asarray(net_returns, dtype=np.float64).reshape(-1)
    r = r[np.isfinite(r)]
    ev = window_evidence(r, n_trades)
    total = float(np.prod(1.0 + r) - 1.0) if len(r) else 0.0
    ok = (not ev.flat) and total > 0.0 and ev.psr >= float(min_psr)
    figures = (f"net return {100 * total:+.2f} %, PSR {ev.psr:.3f} "
               f"{'>=' if ev.psr >= min_psr else '<'} min_psr {min_psr:g} over {ev.bars} bars, "
               f"{int(n_trades)} trades")
    if ev.flat:
        reason = f"{what} never trades ({ev.bars} bars): it is cash"
    elif ok:
        reason = f"{what} beats cash: {figures}"
    else:
        reason = f"{what} does not beat cash: {figures}"
    return CashVerdict(bool(ok), float(ev.psr), float(ev.sr), total, ev.bars, int(n_trades),
                       float(min_psr), reason)


def lagged_execution(position: np.ndarray, bars: MarketBars, periods_per_year: float,
                     lag: int = 1) -> dict[str, float]:
    """The same positions decided ``lag`` rows later, executed on the same ``bars``: a
    robustness check of the fill.

    An edge that lives in the first bar after a signal (bid-ask bounce: a close at the bid
    followed by one at the ask) cannot be traded by a real order; replaying ``position[t -
    lag]`` on bar ``t`` (flat for the first ``lag`` rows) through
    :func:`huracan.evaluation.execution.execute` removes it. Rows are taken in order, so across
    a data gap "one bar later" is the next available bar.

    Args:
        position: per-row position, shape ``(n,)``, units of equity.
        bars: the rows' market (:class:`~huracan.evaluation.execution.MarketBars`), length ``n``.
        periods_per_year: bars per year. lag: rows of delay, ``>= 1``.

    Returns:
        ``{"sharpe": annualised Sharpe, "total_return": compounded, fraction}``.

    Raises:
        ValueError: ``lag < 1`` or a position series of another length than ``bars``.
    """
    res = execute(lagged(position, lag), bars, periods_per_year)
    return {"sharpe": res.metrics.sharpe, "total_return": res.metrics.total_return}


def deflate(candidates: Mapping[str, Mapping[str, float]], n_trials: int | None = None,
            sr_variance: float | None = None) -> dict[str, dict[str, float]]:
    """DSR of every candidate against all of them (Bailey & Lopez de Prado 2014).

    Args:
        candidates: ``{run_id: {"sr", "skew", "kurtosis", "bars"}}`` on the same window (the
            per-bar evidence of :func:`window_evidence`).
        n_trials: the trials actually run (e.g. every training job and tuning trial on the same
            symbol and timeframe in the tracking store); ``N = max(len(candidates), n_trials)``.
        sr_variance: the per-bar Sharpe variance across those trials, used only when fewer than
            two candidates give one of their own (``None``: 0).

    Returns:
        ``{run_id: {"dsr", "benchmark_sr", "n_trials", "sr_variance"}}``; the benchmark is the
        expected maximum per-bar Sharpe of ``N`` trials whose variance is that of the
        candidates' Sharpes (ddof 1; with one candidate ``sr_variance``). With ``N = 1`` or no
        variance the benchmark is 0 (DSR = PSR).
    """
    srs = np.array([float(c["sr"]) for c in candidates.values()], dtype=np.float64)
    n = max(len(srs), int(n_trials or 0))
    var = float(np.var(srs, ddof=1)) if len(srs) > 1 else float(sr_variance or 0.0)
    if not math.isfinite(var) or var < 0:
        var = 0.0
    bench = st.expected_max_sharpe(n, var) if n > 1 else 0.0
    out = {}
    for run_id, c in candidates.items():
        bars = int(c["bars"])
        if bars < 3 or bool(c.get("flat", False)):
            dsr = 0.0
        else:
            dsr = st.psr_from_moments(float(c["sr"]), bars, float(c["skew"]),
                                      float(c["kurtosis"]), benchmark_sr=bench)
        out[run_id] = {"dsr": float(dsr), "benchmark_sr": float(bench), "n_trials": float(n),
                       "sr_variance": var}
    return out


@dataclass(frozen=True)
class Eligibility:
    """Which results may be selected: ``eligible`` run ids, and why the others are not."""

    eligible: list[str]
    reasons: dict[str, str]

    def summary(self, min_trades: int) -> str:
        if self.eligible:
            return f"{len(self.eligible)} of {len(self.eligible) + len(self.reasons)} " \
                   f"candidate(s) eligible (>= {min_trades} trades on the selection window)"
        why = "; ".join(f"{k}: {v}" for k, v in list(self.reasons.items())[:5])
        return f"no candidate is eligible (>= {min_trades} trades on the selection window): {why}"


def eligibility(results: Iterable[Mapping[str, Any]], min_trades: int) -> Eligibility:
    """Results that finished and traded at least ``min_trades`` times on their selection window
    (the objective's window: ``val_`` or ``oos_``) with a finite objective."""
    ok, reasons = [], {}
    for r in results:
        rid = str(r.get("run_id") or f"job {r.get('job')}")
        label = f"{r.get('model_type', '?')} ({rid[:8]})"
        if r.get("status", "ok") != "ok":
            reasons[label] = "failed"
            continue
        objective = str(r.get("objective", "val_composite_score"))
        window = objective.split("_", 1)[0]
        trades = int(r.get("metrics", {}).get(f"{window}_n_trades", 0))
        value = float(r.get("objective_value", math.nan))
        if not math.isfinite(value):
            reasons[label] = f"{objective} is not finite"
        elif trades < min_trades:
            reasons[label] = f"{trades} trade(s) on {window}"
        else:
            ok.append(rid)
    return Eligibility(ok, reasons)


def aligned_returns(frames: Mapping[str, pd.DataFrame]) -> tuple[np.ndarray, list[str]]:
    """A ``T x N`` matrix of net per-bar returns of N runs on the bars they all scored (inner join
    on ``timestamp``), and the run ids of its columns."""
    series = [f.set_index("timestamp")["strategy_return"].rename(k) for k, f in frames.items()]
    if not series:
        return np.empty((0, 0)), []
    joined = pd.concat(series, axis=1, join="inner").sort_index()
    return joined.to_numpy(np.float64), list(joined.columns)


def pbo(frames: Mapping[str, pd.DataFrame],
        n_splits: int = SelectionSettings.pbo_splits) -> dict[str, float] | None:
    """Probability of backtest overfitting of the runs' returns on their common bars (CSCV with
    ``n_splits`` blocks, reduced to an even number that fits), or ``None`` with fewer than 2 runs
    or too few common bars (fewer than 2 per block)."""
    matrix, _ = aligned_returns(frames)
    t, n = matrix.shape if matrix.ndim == 2 else (0, 0)
    s = min(int(n_splits), t // 2)
    s -= s % 2
    if n < 2 or s < 2:
        return None
    res = st.probability_of_backtest_overfitting(matrix, n_splits=s)
    return {"pbo": float(res.pbo), "pbo_candidates": float(n), "pbo_splits": float(s),
            "pbo_bars": float(t), "pbo_combinations": float(res.n_combinations),
            "pbo_prob_oos_loss": float(res.prob_oos_loss)}


def composite_on_rows(frame: pd.DataFrame, rows: np.ndarray, periods_per_year: float) -> float:
    """The composite score of the backtest rows ``rows`` (positions into ``frame``, in the order
    given, e.g. a bootstrap resample): the rows' net returns as the execution model charged
    them, trades re-extracted from that sequence (:func:`~huracan.evaluation.execution.
    trades_of`).

    ``frame`` is an :func:`~huracan.evaluation.execution.execute` returns frame (``position``,
    ``strategy_return``, ``exit_leg``, ``prediction``, ``label``)."""
    part = frame.iloc[np.asarray(rows, dtype=np.int64)]
    trades = trades_of(part.assign(timestamp=pd.DatetimeIndex(np.arange(len(part)))))
    m = compute_metrics(part["strategy_return"].to_numpy(), trades["return"].to_numpy(),
                        part["prediction"].to_numpy(), part["label"].to_numpy(),
                        periods_per_year)
    return float(m.composite_score)


def score_difference_interval(candidate: pd.DataFrame, champion: pd.DataFrame,
                              periods_per_year: float, n_resamples: int = 500,
                              confidence: float = 0.9, seed: int = 0) -> dict[str, float]:
    """Paired stationary-bootstrap interval (Politis & Romano 1994, via ``arch``) of
    ``composite(candidate) - composite(champion)`` on the same bars.

    Both backtest frames (:func:`~huracan.evaluation.execution.execute` returns) cover the same
    bars in the same order; each resample draws the same bar blocks for both (mean block length
    chosen on their net returns, Politis & White 2004), keeps each bar's net return as executed
    and re-extracts trades from the resampled sequence.

    Returns:
        ``{"estimate", "low", "high", "confidence", "n_resamples", "block_length"}``.

    Raises:
        ValueError: the frames differ in length.
    """
    n = len(candidate)
    if len(champion) != n:
        raise ValueError(f"candidate ({n}) and champion ({len(champion)}) bars differ")
    both = pd.concat([candidate, champion], ignore_index=True)
    block = st.auto_block_length(candidate["strategy_return"].to_numpy(np.float64),
                                 champion["strategy_return"].to_numpy(np.float64))

    def stat(idx: np.ndarray) -> float:
        return composite_on_rows(both, idx, periods_per_year)

    res = st.paired_bootstrap_interval(np.arange(n, dtype=np.float64),
                                       np.arange(n, 2 * n, dtype=np.float64), stat,
                                       n_resamples=n_resamples, confidence=confidence,
                                       expected_block=block, seed=seed)
    return {"estimate": res.estimate, "low": res.low, "high": res.high,
            "confidence": res.confidence, "n_resamples": float(res.n_resamples),
            "block_length": float(res.block_length)}


def candidate_windows(results: Sequence[Mapping[str, Any]]) -> list[str]:
    """The scored windows (``val``, ``test``, ``oos``) for which results carry evidence."""
    seen: list[str] = []
    for r in results:
        for w in r.get("evidence", {}) or {}:
            if w not in seen:
                seen.append(w)
    return seen
