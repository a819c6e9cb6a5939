"""The diagnostics every scored window logs beside its trading metrics (issue 22, section 3 of the
execution design): the cost headroom, the forecast's information coefficient, and the strategy
against buy & hold on the same bars.

:func:`window_diagnostics` reads one backtest's per-bar frame and returns flat metrics named
``<split>_<name>`` (``val_``, ``test_``, ``oos_``); the formulas live in
:mod:`huracan.evaluation.execution` (breakeven, through the execution model's cost term),
:mod:`huracan.evaluation.metrics` (excess return, information ratio) and
:mod:`huracan.evaluation.signal` (IC, rank IC, ICIR). Pure: values in, values out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from huracan.evaluation.execution import breakeven_bps
from huracan.evaluation.metrics import (
    excess_return,
    information_ratio,
    sharpe_ratio,
    total_return,
)
from huracan.evaluation.signal import (
    fold_ics,
    information_coefficient,
    information_ratio_of_ics,
    rank_ic,
)

if TYPE_CHECKING:
    from huracan.evaluation.backtest import BacktestResult

#: the metrics of every scored window, ``<split>_`` + name (see :func:`window_diagnostics`)
WINDOW_DIAGNOSTICS: tuple[str, ...] = (
    "breakeven_bps", "ic", "rank_ic", "ic_pairs", "excess_return", "information_ratio",
    "buy_hold_sharpe", "buy_hold_total_return",
)
#: the walk-forward metrics over folds, ``<split>_`` + name
FOLD_DIAGNOSTICS: tuple[str, ...] = ("ic_mean", "icir", "rank_ic_mean", "rank_icir", "ic_folds")

#: the per-bar columns :func:`window_diagnostics` reads from a backtest's ``returns`` frame
REQUIRED_COLUMNS: tuple[str, ...] = ("prediction", "turnover", "strategy_return", "label")


def window_diagnostics(result: BacktestResult, benchmark_returns: npt.ArrayLike,
                       folds: npt.ArrayLike | None = None, *, split: str,
                       periods_per_year: float) -> dict[str, float]:
    """Flat diagnostics of one scored window (``split`` = ``val``, ``test`` or ``oos``).

    Args:
        result: the window's backtest; its ``returns`` frame needs ``prediction`` (the forecast),
            ``turnover`` (``|p_t - p_{t-1}|``), ``strategy_return`` (per-bar net return,
            fraction) and ``label`` (the realised label), one row per bar; a ``fold`` column
            (walk-forward) gives the per-fold ICs when ``folds`` is not passed.
        benchmark_returns: buy & hold's per-bar net returns on the SAME bars under the SAME
            execution model (position 1 from the first bar, paying its entry cost), shape
            ``(n,)``, fractions.
        folds: the fold of each bar, shape ``(n,)`` (default: the frame's ``fold`` column, if
            any); per-fold IC metrics only when given or present.
        split: the metric prefix.
        periods_per_year: bars per year (8,760 for 1h), for the annualised figures.

    Returns:
        ``<split>_breakeven_bps``: extra cost per unit turnover (bps) at which the compounded net
        return is 0 (:func:`~huracan.evaluation.execution.breakeven_bps`; NaN without trading);
        ``<split>_ic`` / ``<split>_rank_ic``: Pearson / Spearman correlation of forecast and label
        over the window's bars, ``<split>_ic_pairs`` the finite pairs they used
        (:mod:`huracan.evaluation.signal`; Qlib ``SigAnaRecord``);
        ``<split>_excess_return``: ``mean(net - benchmark) * periods_per_year`` (annualised,
        arithmetic, Qlib ``PortAnaRecord``) and ``<split>_information_ratio``: its annualised
        Sharpe; ``<split>_buy_hold_sharpe`` / ``<split>_buy_hold_total_return``: the benchmark's
        annualised Sharpe and compounded return on the window.
        With folds: ``<split>_ic_mean``, ``<split>_icir`` (mean / sample std of the folds' ICs),
        ``<split>_rank_ic_mean``, ``<split>_rank_icir`` and ``<split>_ic_folds`` (folds with a
        finite IC).

    Raises:
        KeyError: the frame lacks one of :data:`REQUIRED_COLUMNS` (named).
        ValueError: ``benchmark_returns`` or ``folds`` do not have one value per bar; returns or
            turnover not finite.
    """
    frame = result.returns
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise KeyError(f"{split} backtest returns lack column(s) {', '.join(missing)}: "
                       f"window diagnostics read {', '.join(REQUIRED_COLUMNS)}")
    n = len(frame)
    bench = np.asarray(benchmark_returns, dtype=np.float64).reshape(-1)
    if len(bench) != n:
        raise ValueError(f"{split}: benchmark_returns has {len(bench)} bars, the backtest {n}: "
                         "buy & hold must be scored on the same bars")
    net = frame["strategy_return"].to_numpy(np.float64)
    turnover = frame["turnover"].to_numpy(np.float64)
    forecast = frame["prediction"].to_numpy(np.float64)
    label = frame["label"].to_numpy(np.float64)
    ic = information_coefficient(forecast, label)
    out = {
        "breakeven_bps": breakeven_bps(net, turnover),
        "ic": ic.value,
        "rank_ic": rank_ic(forecast, label).value,
        "ic_pairs": float(ic.pairs),
        "excess_return": excess_return(net, bench, periods_per_year),
        "information_ratio": information_ratio(net, bench, periods_per_year),
        "buy_hold_sharpe": sharpe_ratio(bench, periods_per_year),
        "buy_hold_total_return": total_return(bench),
    }
    if folds is None and "fold" in frame.columns:
        folds = frame["fold"].to_numpy()
    if folds is not None:
        fold_ids = np.asarray(folds).reshape(-1)
        if len(fold_ids) != n:
            raise ValueError(f"{split}: folds has {len(fold_ids)} values, the backtest {n} bars")
        pearson = information_ratio_of_ics(
            [c.value for c in fold_ics(forecast, label, fold_ids).values()])
        spearman = information_ratio_of_ics(
            [c.value for c in fold_ics(forecast, label, fold_ids, rank=True).values()])
        out |= {"ic_mean": pearson.mean, "icir": pearson.icir, "rank_ic_mean": spearman.mean,
                "rank_icir": spearman.icir, "ic_folds": float(pearson.folds)}
    return {f"{split}_{k}": float(v) for k, v in out.items()}


__all__ = ["FOLD_DIAGNOSTICS", "REQUIRED_COLUMNS", "WINDOW_DIAGNOSTICS", "window_diagnostics"]
