"""A pooled job's scores across its markets: the equal-weight portfolio of the symbols' net
returns (the run's headline metrics) and the per-symbol cash floor (which symbols trade).

Equal weight: every symbol is a fixed ``1/n`` sleeve of the capital, each sleeve traded by its
own symbol's positions under the execution model; the portfolio's return of a bar is
``sum_s r_s / n`` over the union of the symbols' scored bar times, a symbol without that bar
(a data outage, a later listing) contributing 0 (its sleeve is not invested on that bar).
Rebalanced to ``1/n`` every bar; the rebalancing trades are not charged (each sleeve's own
trades are, in its ``r_s``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from huracan.evaluation.backtest import BacktestResult
from huracan.evaluation.diagnostics import window_diagnostics
from huracan.evaluation.evidence import beats_cash, window_evidence
from huracan.evaluation.execution import MarketBars
from huracan.evaluation.metrics import compute_metrics
from huracan.stages import Evaluation, buy_and_hold

#: diagnostics read from the portfolio's own per-bar series (net, turnover, buy & hold)
PORTFOLIO_DIAGNOSTICS = ("breakeven_bps", "excess_return", "information_ratio",
                         "buy_hold_sharpe", "buy_hold_total_return")
#: diagnostics read from every symbol's rows stacked (forecast against realised label)
SIGNAL_DIAGNOSTICS = ("ic", "rank_ic", "ic_pairs", "ic_mean", "icir", "rank_ic_mean",
                      "rank_icir", "ic_folds")


def equal_weight(columns: Mapping[str, pd.Series]) -> pd.Series:
    """``sum_s x_s / n`` per bar time over the union of the series' indexes (bar open times), a
    series without a bar counting 0; sorted by time.

    Raises:
        ValueError: no series.
    """
    if not columns:
        raise ValueError("an equal-weight portfolio needs at least one symbol")
    wide = pd.concat(dict(columns), axis=1).sort_index()
    return wide.fillna(0.0).sum(axis=1) / len(columns)


def portfolio_frame(evaluations: Mapping[str, Evaluation], bars: Mapping[str, MarketBars],
                    index: Mapping[str, pd.DatetimeIndex], window: str,
                    periods_per_year: float) -> pd.DataFrame:
    """The equal-weight portfolio of one scored window, one row per bar time: ``timestamp``,
    ``strategy_return`` (net, fraction), ``turnover`` (sleeve-weighted) and ``buy_hold``
    (the equal-weight portfolio of each symbol's buy & hold on its own scored bars under the
    same execution model, :func:`huracan.stages.buy_and_hold`).

    Args:
        evaluations: per symbol, its evaluation (``results[window].returns``).
        bars: per symbol, the market bars of every row of its feature frame.
        index: per symbol, its feature frame's index (bar open times), to find its rows.
    """
    net, turnover, hold = {}, {}, {}
    for sym, ev in evaluations.items():
        ret = ev.results[window].returns
        ts = pd.DatetimeIndex(ret["timestamp"])
        rows = index[sym].get_indexer(ts)
        net[sym] = pd.Series(ret["strategy_return"].to_numpy(np.float64), index=ts)
        turnover[sym] = pd.Series(ret["turnover"].to_numpy(np.float64), index=ts)
        hold[sym] = pd.Series(buy_and_hold(bars[sym].take(rows), periods_per_year), index=ts)
    out = pd.DataFrame({"strategy_return": equal_weight(net), "turnover": equal_weight(turnover),
                        "buy_hold": equal_weight(hold)})
    out.index.name = "timestamp"
    return out.reset_index()


def portfolio_metrics(evaluations: Mapping[str, Evaluation], bars: Mapping[str, MarketBars],
                      index: Mapping[str, pd.DatetimeIndex], periods_per_year: float
                      ) -> tuple[dict[str, float], dict[str, dict[str, Any]],
                                 dict[str, pd.DataFrame]]:
    """The headline metrics of a pooled run, named as a single market's (``oos_sharpe``,
    ``oos_composite_score``, ``oos_n_trades``, ``oos_psr``, ``oos_bars``... per scored window),
    so sweeps, selection and the gate read a pooled run as any other.

    Per window: :func:`huracan.evaluation.metrics.compute_metrics` on the portfolio's net
    returns (:func:`portfolio_frame`) with every symbol's trades (``n_trades`` = their total)
    and every symbol's forecasts and labels (accuracy); PSR and bars
    (:func:`huracan.evaluation.evidence.window_evidence`); the window diagnostics
    (:func:`huracan.evaluation.diagnostics.window_diagnostics`) of the portfolio series
    (:data:`PORTFOLIO_DIAGNOSTICS`: breakeven bps, excess return and information ratio against
    the buy & hold portfolio, its Sharpe) and of the symbols' rows stacked
    (:data:`SIGNAL_DIAGNOSTICS`: IC and rank IC pooled over symbols, per-fold ICs);
    ``<window>_n_symbols``; and ``<window>_n_folds`` when the symbols' evaluations carry it.

    Returns:
        ``(metrics, evidence per window, portfolio frame per window)``.
    """
    first = next(iter(evaluations.values()))
    metrics: dict[str, float] = {}
    evidence: dict[str, dict[str, Any]] = {}
    frames: dict[str, pd.DataFrame] = {}
    for window in first.results:
        port = portfolio_frame(evaluations, bars, index, window, periods_per_year)
        results = [ev.results[window] for ev in evaluations.values()]
        stacked = pd.concat([r.returns for r in results], ignore_index=True)
        trades = np.concatenate([r.trades["return"].to_numpy(np.float64) for r in results])
        net = port["strategy_return"].to_numpy(np.float64)
        m = compute_metrics(net, trades, stacked["prediction"].to_numpy(np.float64),
                            stacked["label"].to_numpy(np.float64), periods_per_year)
        out = m.as_dict(f"{window}_")
        ev = window_evidence(net, m.n_trades)
        out[f"{window}_psr"], out[f"{window}_bars"] = ev.psr, float(ev.bars)
        evidence[window] = ev.as_dict()
        own = window_diagnostics(
            BacktestResult(port.assign(prediction=np.nan, label=np.nan), pd.DataFrame(), m),
            port["buy_hold"].to_numpy(np.float64), split=window,
            periods_per_year=periods_per_year)
        signal = window_diagnostics(BacktestResult(stacked, pd.DataFrame(), m),
                                    np.zeros(len(stacked)), split=window,
                                    periods_per_year=periods_per_year)
        out |= {k: v for k, v in own.items() if k.removeprefix(f"{window}_")
                in PORTFOLIO_DIAGNOSTICS}
        out |= {k: v for k, v in signal.items() if k.removeprefix(f"{window}_")
                in SIGNAL_DIAGNOSTICS}
        out[f"{window}_n_symbols"] = float(len(evaluations))
        folds = first.metrics.get(f"{window}_n_folds")
        if folds is not None:
            out[f"{window}_n_folds"] = float(folds)
        metrics |= out
        frames[window] = port
    return metrics, evidence, frames


def cash_floor(evaluations: Mapping[str, Evaluation], min_psr: float,
               min_bars: int) -> dict[str, dict[str, Any]]:
    """Per symbol, does it trade? The registry gate's cash floor on the symbol's own scored
    selection window (its whole walk-forward OOS; on a forward split its validation window,
    never the test split, which is reported and not decided on): it trades iff its net returns
    beat cash (:func:`huracan.evaluation.evidence.beats_cash`: compounded net return > 0 and
    PSR >= ``min_psr``, ``registry.min_psr``) over at least ``min_bars`` bars
    (``registry.min_eval_bars``: the gate skips a decision on fewer); else it is served as cash
    (position 0).

    Returns:
        per symbol: ``trade`` (bool), ``reason`` (one line), ``bars``, ``trades``, ``psr``,
        ``sr`` (per bar), ``total_return`` (fraction), ``min_psr``, ``min_bars``, ``window``.

    Raises:
        ValueError: ``min_psr`` outside [0, 1].
    """
    out: dict[str, dict[str, Any]] = {}
    for sym, ev in evaluations.items():
        window = "val" if ev.scored == "test" else ev.scored  # never decide on test rows
        res = ev.results[window]
        verdict = beats_cash(res.returns["strategy_return"].to_numpy(np.float64),
                             int(res.metrics.n_trades), min_psr=min_psr, what=sym)
        enough = verdict.bars >= int(min_bars)
        reason = verdict.reason if enough else (
            f"{sym}: only {verdict.bars} scored bars < registry.min_eval_bars={min_bars}: cash")
        out[sym] = {**verdict.as_dict(), "trade": bool(verdict.beats and enough),
                    "reason": reason, "min_bars": int(min_bars), "window": window}
    return out
