"""Trading metrics on a series of per-bar simple returns (fractions, net of costs).

Conventions follow empyrical-reloaded (the maintained fork of Quantopian's empyrical): risk-free
rate 0; sample standard deviation (ddof=1); annualisation by ``periods_per_year`` bars (8,760 for
1h crypto bars, trading 24/7); the starting capital counts as the first equity peak in the
drawdown, as in empyrical. Deviations, each stated where it applies: a strategy that never moves
(all returns equal) scores Sharpe 0 rather than NaN or a rounding-noise ratio; max drawdown is
reported as a positive fraction (empyrical: negative); profit factor is capped. The tests check
every shared metric against empyrical-reloaded 0.7.1 on real return series.

All functions are pure: they take numpy arrays and return floats (the cost-sensitivity curve:
arrays). Benchmark: :func:`excess_return`, :func:`information_ratio` (Qlib's
``PortAnaRecord``); the cost headroom (``breakeven_bps``, ``cost_sensitivity``) charges extra
costs, so it lives with the one execution model (:mod:`huracan.evaluation.execution`); the
forecast's IC family lives in :mod:`huracan.evaluation.signal`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: profit factor reported when there are winning trades but no losing trade (and the cap otherwise)
PROFIT_FACTOR_CAP = 10.0

METRIC_NAMES: tuple[str, ...] = (
    "sharpe", "sortino", "max_drawdown", "calmar", "profit_factor", "hit_ratio", "accuracy",
    "total_return", "annual_return", "n_trades", "composite_score",
)


def _arr(returns: np.ndarray) -> np.ndarray:
    r = np.asarray(returns, dtype=np.float64).reshape(-1)
    if not np.isfinite(r).all():
        raise ValueError("returns contain NaN or infinite values")
    return r


def sharpe_ratio(returns: np.ndarray, periods_per_year: float) -> float:
    """Annualised Sharpe: ``mean(r) / std(r, ddof=1) * sqrt(periods_per_year)``.

    As empyrical's ``sharpe_ratio`` with risk-free 0, except that a series whose returns are all
    equal (e.g. never in the market) returns 0.0 instead of NaN (or, for a constant non-zero
    return, the ratio of its mean to a rounding-noise deviation); fewer than 2 returns give 0.0.
    """
    r = _arr(returns)
    if len(r) < 2 or np.all(r == r[0]):
        return 0.0
    sd = r.std(ddof=1)
    return float(r.mean() / sd * np.sqrt(periods_per_year))


def downside_risk(returns: np.ndarray, periods_per_year: float, required: float = 0.0) -> float:
    """Annualised downside deviation: ``sqrt(mean(min(r - required, 0)^2)) * sqrt(ppy)``.

    The mean runs over ALL bars (empyrical's ``downside_risk``), not only the losing ones.
    """
    r = _arr(returns)
    if len(r) == 0:
        return 0.0
    down = np.minimum(r - required, 0.0)
    return float(np.sqrt(np.mean(down**2)) * np.sqrt(periods_per_year))


def sortino_ratio(returns: np.ndarray, periods_per_year: float, required: float = 0.0) -> float:
    """Annualised Sortino: ``mean(r - required) * ppy / downside_risk`` (empyrical).

    Returns ``inf`` when there is no downside and the mean is positive, 0.0 when the series is
    flat or empty.
    """
    r = _arr(returns)
    if len(r) == 0:
        return 0.0
    dr = downside_risk(r, periods_per_year, required)
    mean = float(np.mean(r - required)) * periods_per_year
    if dr == 0.0:
        return float("inf") if mean > 0 else 0.0
    return mean / dr


def equity_curve(returns: np.ndarray) -> np.ndarray:
    """Compounded equity ``cumprod(1 + r)``, starting capital 1 (shape ``(n,)``)."""
    return np.cumprod(1.0 + _arr(returns))


def drawdown(returns: np.ndarray) -> np.ndarray:
    """Drawdown per bar as a positive fraction of the running peak of compounded equity.

    The starting capital (1.0) counts as the first peak, so a loss on the first bar is a drawdown
    (as in empyrical's ``max_drawdown``, which reports it with a negative sign).
    """
    eq = equity_curve(returns)
    peak = np.maximum.accumulate(np.concatenate([[1.0], eq]))[1:]
    return 1.0 - eq / peak


def max_drawdown(returns: np.ndarray) -> float:
    """Largest peak-to-trough fall of compounded equity, as a positive fraction (0.25 = -25 %)."""
    r = _arr(returns)
    return float(drawdown(r).max()) if len(r) else 0.0


def total_return(returns: np.ndarray) -> float:
    """Compounded return over the whole series: ``prod(1 + r) - 1``."""
    r = _arr(returns)
    return float(np.prod(1.0 + r) - 1.0)


def annual_return(returns: np.ndarray, periods_per_year: float) -> float:
    """Compound annual growth rate: ``(prod(1 + r)) ** (ppy / n) - 1`` (empyrical)."""
    r = _arr(returns)
    if len(r) == 0:
        return 0.0
    ending = float(np.prod(1.0 + r))
    if ending <= 0.0:
        return -1.0
    return ending ** (periods_per_year / len(r)) - 1.0


def calmar_ratio(returns: np.ndarray, periods_per_year: float) -> float:
    """Calmar: annual return / max drawdown (empyrical); NaN when there is no drawdown."""
    mdd = max_drawdown(returns)
    if mdd == 0.0:
        return float("nan")
    return annual_return(returns, periods_per_year) / mdd


def profit_factor(trade_returns: np.ndarray) -> float:
    """Gross profit / gross loss over trades, capped at :data:`PROFIT_FACTOR_CAP` (10).

    No trades gives 0.0; winning trades and no losing trade give the cap.
    """
    t = _arr(trade_returns)
    gains = t[t > 0].sum()
    losses = -t[t < 0].sum()
    if losses == 0.0:
        return PROFIT_FACTOR_CAP if gains > 0 else 0.0
    return float(min(gains / losses, PROFIT_FACTOR_CAP))


def hit_ratio(trade_returns: np.ndarray) -> float:
    """Share of trades with a positive return (0.0 when there are no trades)."""
    t = _arr(trade_returns)
    return float((t > 0).mean()) if len(t) else 0.0


def directional_accuracy(predictions: np.ndarray, actual: np.ndarray) -> float:
    """Share of bars where ``sign(prediction) == sign(actual)``, over bars with a non-zero move."""
    p = np.asarray(predictions, dtype=np.float64).reshape(-1)
    a = np.asarray(actual, dtype=np.float64).reshape(-1)
    if p.shape != a.shape:
        raise ValueError(f"predictions {p.shape} and actual {a.shape} differ in shape")
    moved = a != 0
    if not moved.any():
        return 0.0
    return float((np.sign(p[moved]) == np.sign(a[moved])).mean())


def composite_score(sharpe: float, profit_factor_: float, max_dd: float, accuracy: float) -> float:
    """Huracan's ranking score: ``0.4*Sharpe + 0.3*PF + 0.2*(1 - MDD) + 0.1*accuracy``."""
    return 0.4 * sharpe + 0.3 * profit_factor_ + 0.2 * (1.0 - max_dd) + 0.1 * accuracy


@dataclass(frozen=True)
class TradingMetrics:
    """All metrics of one evaluation window (see module docstring for conventions)."""

    sharpe: float
    sortino: float
    max_drawdown: float
    calmar: float
    profit_factor: float
    hit_ratio: float
    accuracy: float
    total_return: float
    annual_return: float
    n_trades: int
    composite_score: float

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}{k}": float(getattr(self, k)) for k in METRIC_NAMES}


def compute_metrics(
    strategy_returns: np.ndarray,
    trade_returns: np.ndarray,
    predictions: np.ndarray,
    actual: np.ndarray,
    periods_per_year: float,
) -> TradingMetrics:
    """Every metric for one window.

    Args:
        strategy_returns: per-bar simple returns net of costs, shape ``(n,)``.
        trade_returns: compounded return of each trade, shape ``(n_trades,)``.
        predictions, actual: forecast and realised forward return per bar (for accuracy).
        periods_per_year: bars per year (8,760 for 1h).
    """
    s = sharpe_ratio(strategy_returns, periods_per_year)
    pf = profit_factor(trade_returns)
    mdd = max_drawdown(strategy_returns)
    acc = directional_accuracy(predictions, actual)
    return TradingMetrics(
        sharpe=s,
        sortino=sortino_ratio(strategy_returns, periods_per_year),
        max_drawdown=mdd,
        calmar=calmar_ratio(strategy_returns, periods_per_year),
        profit_factor=pf,
        hit_ratio=hit_ratio(trade_returns),
        accuracy=acc,
        total_return=total_return(strategy_returns),
        annual_return=annual_return(strategy_returns, periods_per_year),
        n_trades=len(np.asarray(trade_returns).reshape(-1)),
        composite_score=composite_score(s, pf, mdd, acc),
    )


# ----------------------------------------------------------------------------- costs, benchmark
def _paired(returns: np.ndarray, other: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    r, o = _arr(returns), _arr(other)
    if r.shape != o.shape:
        raise ValueError(f"returns have {r.shape[0]} bars and {what} {o.shape[0]}: they must "
                         "cover the same bars")
    return r, o


def excess_return(strategy: np.ndarray, benchmark: np.ndarray, periods_per_year: float) -> float:
    """Annualised excess return over a benchmark on the same bars: ``mean(r - b) * ppy``.

    Qlib's ``PortAnaRecord`` (``excess_return_with_cost``: ``risk_analysis(return - bench -
    cost)``, its default ``mode="sum"``): the arithmetic mean of the per-bar excess returns
    times the bars per year, NOT the difference of compounded returns (Qlib sums returns to
    keep curves linear). Huracan's ``strategy`` returns are already net of costs, so this is
    Qlib's "with cost" figure.

    Args:
        strategy: the strategy's per-bar net returns (fractions), shape ``(n,)``.
        benchmark: the benchmark's per-bar returns on the same bars, shape ``(n,)``: buy & hold
            under the same execution model (position 1 from the first bar, paying its entry
            cost).
        periods_per_year: bars per year (8,760 for 1h).

    Returns:
        a fraction per year (0.05 = 5 % a year); 0.0 for an empty window.

    Raises:
        ValueError: shapes differ or values are not finite.
    """
    r, b = _paired(strategy, benchmark, "the benchmark")
    if len(r) == 0:
        return 0.0
    return float(np.mean(r - b) * periods_per_year)


def information_ratio(strategy: np.ndarray, benchmark: np.ndarray,
                      periods_per_year: float) -> float:
    """Annualised information ratio: ``mean(r - b) / std(r - b, ddof=1) * sqrt(ppy)``.

    Qlib's ``risk_analysis`` of the excess returns (``information_ratio = mean / std *
    sqrt(N)``, pandas' sample standard deviation); i.e. the Sharpe ratio of the excess returns,
    computed by :func:`sharpe_ratio`, whose conventions apply: a constant excess (e.g. the
    strategy IS the benchmark) or fewer than 2 bars gives 0.0.

    Args / Raises: as :func:`excess_return`.
    """
    r, b = _paired(strategy, benchmark, "the benchmark")
    return sharpe_ratio(r - b, periods_per_year)
