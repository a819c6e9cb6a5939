"""Simple sizing rules on the same bars, costs and liquidation rule as the PPO sizer's environment.

Every rule turns the bars into a path of actions ``(size, leverage)`` known at the close of each
bar; :func:`simulate` then trades the whole path at once through the ONE execution model
(:func:`huracan.evaluation.execution.bar_components`, the per-bar formula of
:func:`~huracan.evaluation.execution.execute`, on the data's
:class:`~huracan.evaluation.execution.MarketBars`: fill, fee + half-spread + slippage, impact,
funding legs, borrow) and applies the environment's liquidation and reward (vectorised; equal
to :func:`~huracan.evaluation.execution.execute` of the same positions and to a
:class:`~huracan.sizing.env.SizingEnv` rollout in the tests). Trades come from
:func:`huracan.evaluation.execution.extract_trades`, the backtest's one extraction. The rules:

- :func:`flat`: size 0 on every bar (cash), the floor of the sizer gate;

- :func:`fixed_fraction`: size ``fraction``, leverage ``leverage`` on every bar; ``(1, 1)`` is
  "full size 1x", the product's fixed sizing.
- :func:`sign_rule`: the forecaster's own rule of the backtest: full size 1x when
  ``|forecast| > threshold``, else flat.
- :func:`volatility_target`: exposure ``min(cap, target_vol / forecast_vol)`` (Moreira & Muir
  2017, "Volatility-Managed Portfolios", J. Finance 72(4); Harvey et al. 2018, "The Impact of
  Volatility Targeting", J. Portfolio Management 45(1)).
- :func:`kelly`: fractional continuous Kelly ``fraction x mu / sigma^2`` from the forecast
  (Kelly 1956, "A New Interpretation of Information Rate", Bell System Technical Journal 35(4);
  continuous form ``f* = (mu - r) / sigma^2``: Thorp 2006, "The Kelly Criterion in Blackjack,
  Sports Betting and the Stock Market", Handbook of Asset and Liability Management, vol. 1, ch. 9,
  section 7).

An exposure ``e = size x leverage`` is split as ``size = min(e, 1)``, ``leverage = max(e, 1)``.
Results carry per-bar returns and the metrics of
:func:`huracan.evaluation.metrics.compute_metrics` plus the Probabilistic Sharpe Ratio
(:func:`huracan.evaluation.statistics.probabilistic_sharpe_ratio`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from huracan.evaluation.execution import (
    MarketBars,
    bar_components,
    exit_legs,
    extract_trades,
    trade_cost,
)
from huracan.evaluation.metrics import TradingMetrics, compute_metrics
from huracan.evaluation.statistics import probabilistic_sharpe_ratio
from huracan.sizing.env import (
    EPISODE_COLUMNS,
    EnvConfig,
    SizingData,
    day_ends,
    forecast_volatility,
    margin_call,
    position_sign,
    sizing_bars,
)

#: the do-nothing policy: position 0 on every bar (the cash floor of the sizer gate)
FLAT = "flat"


@dataclass
class SizingResult:
    """One sizing policy on one window of bars.

    Attributes:
        name: the policy (``fixed``, ``volatility_target``, ``ppo``...).
        returns: one row per bar, columns :data:`huracan.sizing.env.EPISODE_COLUMNS`
            (``strategy_return``: the bar's net simple return, fraction of equity).
        trade_returns: compounded net return of each trade (a run of bars on one side), ``(k,)``.
        metrics: :class:`~huracan.evaluation.metrics.TradingMetrics` of ``strategy_return``
            (annualised by ``periods_per_year``).
        psr: Probabilistic Sharpe Ratio against a zero Sharpe (probability).
        trades: the trades (:func:`huracan.evaluation.execution.extract_trades` columns), when
            extracted.
    """

    name: str
    returns: pd.DataFrame
    trade_returns: np.ndarray
    metrics: TradingMetrics
    psr: float
    trades: pd.DataFrame | None = None

    @property
    def liquidated(self) -> str:
        """The liquidation rule that ended the window (``margin``, ``drawdown``), or ``""``."""
        hits = self.returns["liquidated"].to_numpy()
        named = hits[hits != ""]
        return str(named[0]) if len(named) else ""

    def summary(self) -> dict[str, float | str]:
        """Metrics, PSR, mean exposure ``|position|``, total reward and liquidation, one dict."""
        out: dict[str, float | str] = {"policy": self.name}
        out |= self.metrics.as_dict()
        out["psr"] = self.psr
        out["mean_exposure"] = float(self.returns["position"].abs().mean())
        out["mean_leverage"] = float(self.returns["leverage"].mean())
        out["total_reward"] = float(self.returns["reward"].sum())
        out["liquidated"] = self.liquidated
        return out


def split_exposure(exposure: np.ndarray, max_leverage: float) -> tuple[np.ndarray, np.ndarray]:
    """``size = min(e, 1)``, ``leverage = clip(e, 1, max_leverage)`` of an exposure ``e >= 0``.

    Raises:
        ValueError: negative or non-finite exposure.
    """
    e = np.asarray(exposure, dtype=np.float64)
    if not np.isfinite(e).all() or (e < 0).any():
        raise ValueError("exposure must be finite and >= 0")
    return np.minimum(e, 1.0), np.clip(e, 1.0, max_leverage)


def previous_positions(position: np.ndarray, liquidated: np.ndarray | None = None) -> np.ndarray:
    """``p_{t-1}`` per row: the position shifted by one row, starting flat, and flat after a
    liquidation (the account was closed at that bar; a restarted account starts flat)."""
    p = np.asarray(position, dtype=np.float64)
    prev = np.concatenate([[0.0], p[:-1]])
    if liquidated is not None and len(p):
        hit = np.asarray(liquidated, dtype=object) != ""
        prev[1:][hit[:-1]] = 0.0
    return prev


def frame_trades(timestamps: pd.DatetimeIndex, position: np.ndarray, net: np.ndarray,
                 bars: MarketBars, liquidated: np.ndarray | None = None) -> pd.DataFrame:
    """The trades of a per-bar path (:func:`huracan.evaluation.execution.extract_trades`, the
    backtest's extraction): a trade is a run of bars on one side; a flip's cost is split by
    turnover between the trade closed and the one opened
    (:func:`~huracan.evaluation.execution.exit_legs`); a trade ended by a liquidation ends
    there with ``exit_reason`` ``margin`` or ``drawdown`` (the liquidation bar's return holds
    its exit).

    Args:
        timestamps: ``(n,)``. position: ``p_t``, ``(n,)``. net: ``g_t``, ``(n,)``.
        bars: the rows' market. liquidated: per row ``""`` or the rule's name.

    Returns:
        :data:`huracan.evaluation.execution.TRADE_COLUMNS`.
    """
    p = np.asarray(position, dtype=np.float64)
    prev = previous_positions(p, liquidated)
    cost = bar_components(prev, p, *bars.arrays())[1]
    leg = exit_legs(prev, p, bars.gap, bars.funding_gap, cost)
    reasons = None if liquidated is None else np.asarray(liquidated, dtype=object)
    return extract_trades(timestamps, p, net, leg, reasons)


def step_rewards(strategy_return: np.ndarray, drawdown: np.ndarray, timestamps: pd.DatetimeIndex,
                 last_row: int, liquidated: bool, cfg: EnvConfig) -> np.ndarray:
    """The environment's per-step reward of a path starting at row 0 (module docstring of
    :mod:`huracan.sizing.env`), vectorised over bars with one loop over days.

    Args:
        strategy_return: ``g_t`` per bar, ``(n,)``; drawdown: after each bar, ``(n,)``.
        timestamps: bar open times ``(n,)`` (UTC days). last_row: the episode's last row (the
            liquidation bar, or ``n - 1``); later rows score 0.
        liquidated: whether ``last_row`` is a liquidation (its day scores no bonus).
        cfg: weights and scale.

    Returns:
        shape ``(n,)``.
    """
    g = np.asarray(strategy_return, dtype=np.float64)
    n = len(g)
    live = np.arange(n) <= last_row
    mdd = np.maximum.accumulate(np.concatenate([[0.0], np.asarray(drawdown, np.float64)]))
    bonus = np.zeros(n)
    ends = np.flatnonzero(day_ends(timestamps) & live)
    if liquidated and (len(ends) == 0 or ends[-1] != last_row):
        ends = np.append(ends, last_row)
    equity = np.cumprod(1.0 + g)
    streak, day_start = 0, 1.0
    for t in ends:
        if not (liquidated and t == last_row) and equity[t] > day_start:
            streak += 1
            bonus[t] = streak
        else:
            streak = 0
        day_start = equity[t]
    reward = cfg.reward_scale * (g - cfg.drawdown_penalty * np.diff(mdd)
                                 + cfg.consistency_bonus * bonus)
    return np.where(live, reward, 0.0)


def simulate(data: SizingData, size: np.ndarray, leverage: np.ndarray, cfg: EnvConfig,
             name: str = "policy") -> SizingResult:
    """Trade a path of actions through the execution model, with the environment's
    liquidation and reward (vectorised).

    Row ``t``'s action is taken at the close of bar ``t``; the window starts flat at row 0 and
    runs to the last row (as a :class:`~huracan.sizing.env.SizingEnv` episode with
    ``random_start=False, episode_bars=None``). After a liquidation the account is flat (size 0,
    return 0) to the end.

    Args:
        data: the bars, ``n`` rows.
        size: ``(n,)`` in ``[0, 1]``; leverage: ``(n,)`` in ``[1, max_leverage]`` (both clipped,
            as the environment clips actions).
        cfg: the environment's settings (``maintenance_margin``, ``drawdown_limit``, reward
            weights, ``long_only``, ``periods_per_year``; ``fee`` only without
            ``data.bars``).
        name: the policy's name in the result.

    Raises:
        ValueError: ``size``/``leverage`` not of shape ``(n,)`` or not finite.
    """
    n = len(data)
    s = np.asarray(size, dtype=np.float64)
    lev = np.asarray(leverage, dtype=np.float64)
    if s.shape != (n,) or lev.shape != (n,):
        raise ValueError(f"size and leverage must have shape ({n},), got {s.shape}, {lev.shape}")
    if not (np.isfinite(s).all() and np.isfinite(lev).all()):
        raise ValueError("size and leverage must be finite")
    s = np.clip(s, 0.0, 1.0)
    lev = np.clip(lev, 1.0, cfg.max_leverage)
    bars = sizing_bars(data, cfg.fee)
    p = position_sign(data.forecast, cfg.long_only) * s * lev
    # the execution model's per-bar parts, as execute() computes them (its metrics and trades
    # come after the liquidation rule, from the path actually held)
    prev = np.concatenate([[0.0], p[:-1]])
    gross, cost, funding_cost, borrow_cost = bar_components(prev, p, *bars.arrays())
    g = gross - cost - funding_cost - borrow_cost
    turnover = np.abs(p - prev)
    mc = margin_call(p, bars, cfg.maintenance_margin, data.low_return, data.high_return)
    g = np.where(mc, -1.0, g)
    equity = np.cumprod(1.0 + g)
    peak = np.maximum.accumulate(np.concatenate([[1.0], equity]))[1:]
    event = mc.copy()
    if cfg.drawdown_limit is not None:
        event |= (1.0 - equity / peak >= cfg.drawdown_limit) & (p != 0)
    liquidated = np.full(n, "", dtype=object)
    last = n - 1
    if event.any():
        last = int(np.argmax(event))
        liquidated[last] = "margin" if mc[last] else "drawdown"
        if not mc[last]:  # closed at the bar's close: the exit through the shared cost
            g[last] -= trade_cost(abs(p[last]), bars.cost_lin[last], bars.impact[last])
        after = slice(last + 1, n)
        for a in (g, p, s, lev, turnover, cost, funding_cost, borrow_cost):
            a[after] = 0.0
        equity = np.cumprod(1.0 + g)
        peak = np.maximum.accumulate(np.concatenate([[1.0], equity]))[1:]
    dd = 1.0 - equity / peak
    reward = step_rewards(g, dd, data.timestamps, last, bool(liquidated[last]), cfg)
    frame = pd.DataFrame({
        "timestamp": data.timestamps, "forecast": data.forecast, "size": s, "leverage": lev,
        "position": p, "asset_return": bars.next_return, "turnover": turnover, "cost": cost,
        "funding_cost": funding_cost, "borrow_cost": borrow_cost, "strategy_return": g,
        "equity": equity, "drawdown": dd, "liquidated": liquidated,
        "reward": reward})[list(EPISODE_COLUMNS)]
    return result_from_frame(name, frame, data, cfg)


def check_rows(frame: pd.DataFrame, timestamps: pd.DatetimeIndex) -> None:
    """Raise ``ValueError`` unless ``frame["timestamp"]`` is exactly ``timestamps``, in order."""
    if len(frame) != len(timestamps) or not (
            pd.DatetimeIndex(frame["timestamp"]) == timestamps).all():
        raise ValueError("the frame must have one row per bar of data, in order")


def result_from_frame(name: str, frame: pd.DataFrame, data: SizingData,
                      cfg: EnvConfig) -> SizingResult:
    """Metrics of a per-bar frame (:data:`~huracan.sizing.env.EPISODE_COLUMNS`) over ``data``.

    Accuracy compares ``data.forecast`` with ``data.label`` (default ``next_return``), so it is
    the forecaster's and equal for every sizing policy on the same bars.

    Raises:
        ValueError: the frame's rows differ from ``data``'s bars.
    """
    check_rows(frame, data.timestamps)
    g = frame["strategy_return"].to_numpy(np.float64)
    trades = frame_trades(data.timestamps, frame["position"].to_numpy(np.float64), g,
                          sizing_bars(data, cfg.fee), frame["liquidated"].to_numpy(dtype=object))
    label = data.label if data.label is not None else data.next_return
    metrics = compute_metrics(g, trades["return"].to_numpy(np.float64), data.forecast, label,
                              cfg.periods_per_year)
    return SizingResult(name=name, returns=frame, trade_returns=trades["return"].to_numpy(),
                        metrics=metrics, psr=probabilistic_sharpe_ratio(g), trades=trades)


def fixed_fraction(data: SizingData, cfg: EnvConfig, fraction: float = 1.0,
                   leverage: float = 1.0) -> SizingResult:
    """Constant size ``fraction`` and leverage on every bar; ``(1, 1)``: full size 1x.

    Raises:
        ValueError: ``fraction`` outside ``[0, 1]`` or ``leverage`` outside
            ``[1, cfg.max_leverage]``.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    if not 1.0 <= leverage <= cfg.max_leverage:
        raise ValueError(f"leverage must be in [1, {cfg.max_leverage}], got {leverage}")
    n = len(data)
    name = "fixed" if (fraction, leverage) == (1.0, 1.0) else f"fixed_{fraction:g}x{leverage:g}"
    return simulate(data, np.full(n, fraction), np.full(n, leverage), cfg, name)


def sign_rule(data: SizingData, cfg: EnvConfig, threshold: float = 0.0) -> SizingResult:
    """The forecaster's own rule (the backtest's): size 1, leverage 1 when
    ``|forecast| > threshold`` (a return, fraction), else flat.

    Raises:
        ValueError: ``threshold < 0``.
    """
    if threshold < 0:
        raise ValueError("threshold must be >= 0")
    size = (np.abs(data.forecast) > threshold).astype(np.float64)
    return simulate(data, size, np.ones(len(data)), cfg, "sign_rule")


def volatility_target(data: SizingData, cfg: EnvConfig, target_vol: float = 0.5,
                      cap: float | None = None) -> SizingResult:
    """Exposure ``e_t = min(cap, target_vol / (vol_t sqrt(periods_per_year)))``.

    ``vol_t`` is :func:`~huracan.sizing.env.forecast_volatility` (per bar, known at the close of
    bar ``t``); flat while it is 0 (the first 2 bars without a given volatility). Moreira & Muir
    2017; Harvey et al. 2018.

    Args:
        target_vol: annualised volatility target, fraction (0.5 = 50 %/yr).
        cap: the largest exposure (default ``cfg.max_leverage``).

    Raises:
        ValueError: ``target_vol <= 0`` or ``cap`` outside ``(0, cfg.max_leverage]``.
    """
    if target_vol <= 0:
        raise ValueError("target_vol must be > 0")
    cap = cfg.max_leverage if cap is None else cap
    if not 0.0 < cap <= cfg.max_leverage:
        raise ValueError(f"cap must be in (0, {cfg.max_leverage}]")
    vol = forecast_volatility(data, cfg) * math.sqrt(cfg.periods_per_year)
    e = np.zeros(len(data))
    np.divide(target_vol, vol, out=e, where=vol > 0)
    size, lev = split_exposure(np.minimum(e, cap), cfg.max_leverage)
    return simulate(data, size, lev, cfg, "volatility_target")


def kelly(data: SizingData, cfg: EnvConfig, fraction: float = 0.5, horizon: int = 1,
          cap: float | None = None) -> SizingResult:
    """Fractional continuous Kelly: exposure ``e_t = min(cap, fraction x mu_t / sigma_t^2)``.

    ``mu_t = |forecast_t| / horizon`` (the forecast's expected return per bar, fraction) and
    ``sigma_t`` = :func:`~huracan.sizing.env.forecast_volatility` (per bar); the side is the
    forecast's sign. Kelly growth-optimal fraction ``f* = (mu - r) / sigma^2`` with risk-free
    ``r = 0`` (Kelly 1956; Thorp 2006, section 7); ``fraction`` < 1 is fractional Kelly. Flat
    while ``sigma_t = 0``. The forecasts are not calibrated, so ``mu`` is taken at face value.

    Args:
        fraction: share of the Kelly bet, in ``(0, 1]`` (0.5: half Kelly).
        horizon: bars the forecast spans (the label horizon).
        cap: the largest exposure (default ``cfg.max_leverage``).

    Raises:
        ValueError: ``fraction`` outside ``(0, 1]``, ``horizon < 1``, or ``cap`` outside
            ``(0, cfg.max_leverage]``.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError("fraction must be in (0, 1]")
    if horizon < 1:
        raise ValueError("horizon must be >= 1 bar")
    cap = cfg.max_leverage if cap is None else cap
    if not 0.0 < cap <= cfg.max_leverage:
        raise ValueError(f"cap must be in (0, {cfg.max_leverage}]")
    var = forecast_volatility(data, cfg) ** 2
    mu = np.abs(data.forecast) / horizon
    e = np.zeros(len(data))
    np.divide(fraction * mu, var, out=e, where=var > 0)
    size, lev = split_exposure(np.minimum(e, cap), cfg.max_leverage)
    return simulate(data, size, lev, cfg, "kelly")


def evaluate_baselines(data: SizingData, cfg: EnvConfig, *, target_vol: float = 0.5,
                       kelly_fraction: float = 0.5, horizon: int = 1,
                       threshold: float = 0.0) -> dict[str, SizingResult]:
    """Every baseline on ``data``: ``fixed`` (1x), ``sign_rule``, ``volatility_target``,
    ``kelly`` (arguments as in each rule)."""
    return {
        "fixed": fixed_fraction(data, cfg),
        "sign_rule": sign_rule(data, cfg, threshold),
        "volatility_target": volatility_target(data, cfg, target_vol),
        "kelly": kelly(data, cfg, kelly_fraction, horizon),
    }


def comparison_table(results: dict[str, SizingResult]) -> pd.DataFrame:
    """One row per policy (:meth:`SizingResult.summary`), indexed by policy name."""
    return pd.DataFrame([r.summary() for r in results.values()]).set_index("policy")


def flat(data: SizingData, cfg: EnvConfig) -> SizingResult:
    """The do-nothing policy :data:`FLAT` (cash): size 0 on every bar, so every return is 0 and
    no trade is taken; the floor the sizer gate's served policy must beat
    (:func:`huracan.evaluation.evidence.beats_cash`)."""
    n = len(data)
    return simulate(data, np.zeros(n), np.ones(n), cfg, FLAT)
