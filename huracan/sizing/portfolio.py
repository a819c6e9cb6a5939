"""Several symbols at once: the PPO sizer allocates weights across them ("asset allocation
weights"), per-symbol sizes summing to at most 1, one leverage for the account.

:class:`PortfolioEnv` is :class:`~huracan.sizing.env.SizingEnv`'s rules (the execution model's
fills and costs, funding legs, liquidation, reward; see :mod:`huracan.sizing.env`) on ``k``
symbols sharing one cross-margin account, on the bars all of them have (:class:`PortfolioData`
aligns them by inner join):

- action ``(w_1 .. w_k, leverage)``: raw weights clipped to ``[0, 1]`` and scaled down to sum to 1
  when their sum exceeds 1 (:func:`allocation_weights`; the rest stays in cash), leverage clipped
  to ``[1, max_leverage]``;
- positions ``p_i = sign(forecast_i) x w_i x leverage`` (units of equity), so the gross exposure
  ``sum |p_i| <= leverage``;
- ``g_t = sum_i bar_return(p_i', p_i, *bars_i[t])``
  (:func:`huracan.evaluation.execution.bar_return` on each symbol's
  :class:`~huracan.evaluation.execution.MarketBars`; the cross terms ``p_i' gap_i x p_j hold_j``,
  ``i != j``, second order in the close-to-fill gap, are left out), so the account's return is
  the sum of what :func:`~huracan.evaluation.execution.execute` gives each symbol's positions;
- margin liquidation on the account: ``1 + sum_i bar_return_i(h_i) <= m sum_i |p_i| (1 + h_i)``
  at the close (``h_i`` the hold leg) and, with intrabar extremes, with every symbol at its
  adverse extreme at once (conservative: the extremes of different symbols need not coincide);
- the drawdown stop closes every position (exit through the shared cost function,
  :func:`~huracan.evaluation.execution.trade_cost` of each ``|p_i|``); the reward is the
  single-symbol one on the account's equity.

Observation: each symbol's bar block (``<symbol>:forecast_z``, ``<symbol>:confidence``,
``<symbol>:volatility``, its regime one-hot...; :func:`~huracan.sizing.env.observation_features`),
then ``pnl_<h>``, ``drawdown``, the positions held ``position:<symbol>`` and ``leverage``.

Baselines on the same bars (:func:`evaluate_portfolio_baselines`): ``equal_weight`` (``1/k`` each,
1x) and ``inverse_volatility`` (weights proportional to ``1 / vol_i``, normalised to 1, 1x: the
naive risk parity of Maillard, Roncalli & Teiletche 2010, "The Properties of Equally Weighted Risk
Contribution Portfolios", J. Portfolio Management 36(4), with correlations ignored).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
from gymnasium import spaces

from huracan.evaluation.execution import BAR_ARRAYS, bar_components, bar_return, trade_cost
from huracan.evaluation.metrics import compute_metrics
from huracan.evaluation.statistics import probabilistic_sharpe_ratio
from huracan.sizing.baselines import (
    SizingResult,
    check_rows,
    frame_trades,
    previous_positions,
)
from huracan.sizing.env import (
    EnvConfig,
    SizingData,
    SizingEnv,
    adverse_hold,
    forecast_volatility,
    observation_features,
    position_sign,
    sizing_bars,
)


def allocation_weights(raw: np.ndarray) -> np.ndarray:
    """Raw weights ``(k,)`` -> weights in ``[0, 1]`` summing to at most 1: clip each to
    ``[0, 1]``, then divide by their sum when it exceeds 1. Non-finite values count as 0."""
    w = np.clip(np.nan_to_num(np.asarray(raw, dtype=np.float64), nan=0.0), 0.0, 1.0)
    total = float(w.sum())
    return w / total if total > 1.0 else w


@dataclass(frozen=True)
class PortfolioData:
    """Several symbols' :class:`~huracan.sizing.env.SizingData` on the same bars.

    Build with :meth:`align` (inner join on timestamps). Quacks like ``SizingData`` where the
    trainer needs it: ``len``, ``timestamps``, :meth:`slice`, :meth:`row_of`.

    Raises:
        ValueError: fewer than 2 symbols, or symbols whose timestamps differ (use :meth:`align`).
    """

    symbols: tuple[str, ...]
    parts: tuple[SizingData, ...]

    def __post_init__(self) -> None:
        if len(self.symbols) < 2 or len(self.symbols) != len(self.parts):
            raise ValueError("a portfolio needs at least 2 symbols, one SizingData each")
        first = self.parts[0].timestamps
        for sym, part in zip(self.symbols, self.parts, strict=True):
            if len(part.timestamps) != len(first) or not (part.timestamps == first).all():
                raise ValueError(f"{sym}: timestamps differ from {self.symbols[0]}'s "
                                 f"(align the symbols first)")

    @classmethod
    def align(cls, data: Mapping[str, SizingData]) -> PortfolioData:
        """Keep the bars every symbol has (inner join on timestamps), in time order.

        Raises:
            ValueError: fewer than 2 symbols or no common bar.
        """
        if len(data) < 2:
            raise ValueError("a portfolio needs at least 2 symbols")
        common = None
        for part in data.values():
            common = part.timestamps if common is None else common.intersection(part.timestamps)
        assert common is not None
        if len(common) == 0:
            raise ValueError(f"the symbols {list(data)} share no bar")
        parts = [part.take(np.flatnonzero(part.timestamps.isin(common)))
                 for part in data.values()]
        return cls(tuple(data), tuple(parts))

    def __len__(self) -> int:
        return len(self.parts[0])

    @property
    def timestamps(self) -> pd.DatetimeIndex:
        """The shared bar open times, ``(n,)``."""
        return self.parts[0].timestamps

    def slice(self, start: int, stop: int | None = None) -> PortfolioData:
        """Rows ``[start, stop)`` of every symbol (:meth:`SizingData.slice`)."""
        return PortfolioData(self.symbols, tuple(p.slice(start, stop) for p in self.parts))

    def row_of(self, boundary: int | str | pd.Timestamp) -> int:
        """:meth:`SizingData.row_of` on the shared timestamps."""
        return self.parts[0].row_of(boundary)


class PortfolioEnv(SizingEnv):
    """Gymnasium environment of the multi-symbol sizer (rules in the module docstring).

    Spaces:
        action: ``Box([0]*k + [1], [1]*k + [max_leverage])`` float32: ``(w_1 .. w_k, leverage)``.
        observation: ``Box(-obs_clip, obs_clip, (d,))`` float32, names in
            :attr:`observation_names`.

    ``info`` of a step holds ``row``, ``weights`` ``(k,)``, ``leverage``, ``positions`` ``(k,)``,
    ``gross_exposure``, ``turnover``, ``cost``, ``funding_cost``, ``borrow_cost`` (summed over
    the symbols), ``return``, ``equity``, ``drawdown``, ``max_drawdown``, ``streak``,
    ``day_bonus``, ``liquidated``.

    Raises:
        ValueError: (at ``step``) an action that is not ``k + 1`` finite numbers, stepping a
            finished episode; (at ``reset``) a start row outside the data.
    """

    def __init__(self, data: PortfolioData, config: EnvConfig | None = None) -> None:
        gym.Env.__init__(self)
        self.data = data  # type: ignore[assignment]
        self.config = cfg = config or EnvConfig()
        self.n = len(data)
        self.k = k = len(data.symbols)
        blocks, names = [], []
        for sym, part in zip(data.symbols, data.parts, strict=True):
            feats, cols = observation_features(part, cfg)
            blocks.append(feats)
            names += [f"{sym}:{c}" for c in cols]
        static = np.column_stack(blocks)
        self._static32 = static.astype(np.float32)
        self._k = static.shape[1]
        self.observation_names = tuple(
            names + [f"pnl_{h}" for h in cfg.pnl_horizons] + ["drawdown"]
            + [f"position:{s}" for s in data.symbols] + ["leverage"])
        dim = len(self.observation_names)
        self.observation_space = spaces.Box(-cfg.obs_clip, cfg.obs_clip, shape=(dim,),
                                            dtype=np.float32)
        self.action_space = spaces.Box(
            np.array([0.0] * k + [1.0], dtype=np.float32),
            np.array([1.0] * k + [cfg.max_leverage], dtype=np.float32), dtype=np.float32)
        self._sign_m = np.column_stack([position_sign(p.forecast, cfg.long_only)
                                        for p in data.parts])
        self.part_bars = tuple(sizing_bars(p, cfg.fee) for p in data.parts)
        # one (n, k) matrix per execution array, in bar_return's order
        self._bars_m = tuple(np.column_stack([getattr(b, name) for b in self.part_bars])
                             for name in BAR_ARRAYS)
        self._has_extremes = all(p.low_return is not None for p in data.parts)
        if self._has_extremes:
            self._low_m = np.column_stack([np.asarray(p.low_return) for p in data.parts])
            self._high_m = np.column_stack([np.asarray(p.high_return) for p in data.parts])
        self._init_episodes(data.timestamps, dim)

    def _reset_state(self) -> None:
        super()._reset_state()
        self._pos_v = np.zeros(getattr(self, "k", 0))

    def _observation(self) -> np.ndarray:
        obs = self._obs
        j = self._fill_account(obs)
        clip = self.config.obs_clip
        obs[j: j + self.k] = np.clip(self._pos_v, -clip, clip)
        obs[j + self.k] = self._lev
        return obs.copy()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """One bar for the whole account (module docstring)."""
        if self._done:
            raise ValueError("episode finished: call reset() first")
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (self.k + 1,) or not np.isfinite(a).all():
            raise ValueError(f"action must be {self.k + 1} finite numbers (w_1..w_{self.k}, "
                             f"leverage), got {action!r}")
        cfg = self.config
        w = allocation_weights(a[: self.k])
        lev = min(max(float(a[-1]), 1.0), cfg.max_leverage)
        t = self._t
        p = self._sign_m[t] * w * lev
        prev = self._pos_v
        gap, hold, cost_lin, impact, f_gap, f_hold, borrow = (m[t] for m in self._bars_m)
        parts = bar_components(prev, p, gap, hold, cost_lin, impact, f_gap, f_hold, borrow)
        cost, funding_cost, borrow_cost = (float(x.sum()) for x in parts[1:])
        g = float(parts[0].sum()) - cost - funding_cost - borrow_cost
        gross = float(np.abs(p).sum())
        turnover = float(np.abs(p - prev).sum())
        liquidated: str | None = None
        exit_cost = 0.0
        if gross != 0.0:
            m = cfg.maintenance_margin
            hit = 1.0 + g <= m * float(np.abs(p) @ (1.0 + hold))
            if self._has_extremes and not hit:
                h = adverse_hold(gap, np.where(p > 0, self._low_m[t], self._high_m[t]))
                g_w = float(bar_return(prev, p, gap, h, cost_lin, impact, f_gap, f_hold,
                                       borrow).sum())
                hit = 1.0 + g_w <= m * float(np.abs(p) @ (1.0 + h))
            if hit:
                liquidated, g = "margin", -1.0
            elif cfg.drawdown_limit is not None:
                exit_cost = float(trade_cost(np.abs(p), cost_lin, impact).sum())
        g, equity, dd, mdd, bonus, reward, liquidated = self._settle(t, g, gross != 0.0,
                                                                     exit_cost, liquidated)
        self._pos_v = np.zeros(self.k) if liquidated is not None else p
        self._lev = lev
        terminated = liquidated is not None
        truncated = not terminated and self._t >= self._stop
        info = {"row": t, "weights": w, "leverage": lev, "positions": p,
                "gross_exposure": gross, "turnover": turnover, "cost": cost,
                "funding_cost": funding_cost, "borrow_cost": borrow_cost, "return": g,
                "equity": equity, "drawdown": dd,
                "max_drawdown": mdd, "streak": self._streak, "day_bonus": bonus,
                "liquidated": liquidated}
        return self._observation(), float(reward), terminated, truncated, info


def run_portfolio_episode(env: gym.Env[Any, Any], act: Callable[[np.ndarray], np.ndarray], *,
                          start: int = 0) -> pd.DataFrame:
    """Play one episode of a (possibly wrapped) :class:`PortfolioEnv` from ``start``; a
    liquidated episode is padded flat to its last row.

    Returns:
        one row per bar: ``timestamp``, ``weight:<sym>`` and ``position:<sym>`` per symbol,
        ``leverage``, ``gross_exposure``, ``turnover``, ``cost``, ``funding_cost``,
        ``borrow_cost``, ``strategy_return`` (fraction), ``equity``, ``drawdown``,
        ``liquidated``, ``reward``.

    Raises:
        ValueError: ``env`` does not wrap a :class:`PortfolioEnv`.
    """
    base = env.unwrapped
    if not isinstance(base, PortfolioEnv):
        raise ValueError("run_portfolio_episode needs a PortfolioEnv (possibly wrapped)")
    obs, info = env.reset(options={"start": start})
    stop = int(info["stop"])
    rows: list[dict[str, Any]] = []
    done = False
    while not done:
        obs, reward, terminated, truncated, step = env.step(act(obs))
        done = terminated or truncated
        rows.append({"row": step["row"], "weights": step["weights"],
                     "positions": step["positions"], "leverage": step["leverage"],
                     "gross_exposure": step["gross_exposure"], "turnover": step["turnover"],
                     "cost": step["cost"], "funding_cost": step["funding_cost"],
                     "borrow_cost": step["borrow_cost"],
                     "strategy_return": step["return"], "equity": step["equity"],
                     "drawdown": step["drawdown"], "liquidated": step["liquidated"] or "",
                     "reward": reward})
    last = rows[-1]
    zeros = np.zeros(base.k)
    for t in range(last["row"] + 1, stop):
        rows.append({"row": t, "weights": zeros, "positions": zeros, "leverage": 0.0,
                     "gross_exposure": 0.0, "turnover": 0.0, "cost": 0.0,
                     "funding_cost": 0.0, "borrow_cost": 0.0, "strategy_return": 0.0,
                     "equity": last["equity"],
                     "drawdown": last["drawdown"], "liquidated": "", "reward": 0.0})
    data: PortfolioData = base.data  # type: ignore[assignment]
    idx = np.array([r["row"] for r in rows], dtype=np.int64)
    frame = pd.DataFrame({"timestamp": data.timestamps[idx]})
    weights = np.vstack([r["weights"] for r in rows])
    positions = np.vstack([r["positions"] for r in rows])
    for i, sym in enumerate(data.symbols):
        frame[f"weight:{sym}"] = weights[:, i]
        frame[f"position:{sym}"] = positions[:, i]
    for c in ("leverage", "gross_exposure", "turnover", "cost", "funding_cost", "borrow_cost",
              "strategy_return", "equity", "drawdown", "liquidated", "reward"):
        frame[c] = [r[c] for r in rows]
    return frame


def portfolio_result(name: str, frame: pd.DataFrame, data: PortfolioData,
                     cfg: EnvConfig) -> SizingResult:
    """Metrics of a :func:`run_portfolio_episode` frame: Sharpe, drawdown... of the account's
    ``strategy_return``; trades are every symbol's runs on one side
    (:func:`~huracan.sizing.baselines.frame_trades` per symbol on its own bars: its own return
    stream, a flip's cost split by turnover);
    accuracy over every symbol-bar. ``returns`` gains ``position`` (the gross exposure) and
    ``size`` (the summed weights), so :meth:`SizingResult.summary` reads as for one symbol.

    Raises:
        ValueError: the frame's rows differ from ``data``'s bars.
    """
    check_rows(frame, data.timestamps)
    g = frame["strategy_return"].to_numpy(np.float64)
    trades = []
    liquidated = frame["liquidated"].to_numpy(dtype=object)
    for sym, part in zip(data.symbols, data.parts, strict=True):
        p = frame[f"position:{sym}"].to_numpy(np.float64)
        bars = sizing_bars(part, cfg.fee)
        # the symbol's own return stream: the execution model on its bars
        gross, cost, funding, borrow = bar_components(previous_positions(p, liquidated), p,
                                                      *bars.arrays())
        g_i = gross - cost - funding - borrow
        trades.append(frame_trades(data.timestamps, p, g_i, bars, liquidated)["return"]
                      .to_numpy(np.float64))
    forecast = np.concatenate([p.forecast for p in data.parts])
    label = np.concatenate([p.label if p.label is not None else p.next_return
                            for p in data.parts])
    metrics = compute_metrics(g, np.concatenate(trades), forecast, label, cfg.periods_per_year)
    out = frame.copy()
    out["position"] = out["gross_exposure"]
    out["size"] = out[[f"weight:{s}" for s in data.symbols]].sum(axis=1)
    return SizingResult(name=name, returns=out, trade_returns=np.concatenate(trades),
                        metrics=metrics, psr=probabilistic_sharpe_ratio(g))


def simulate_portfolio(data: PortfolioData, weights: np.ndarray, leverage: np.ndarray,
                       cfg: EnvConfig, name: str) -> SizingResult:
    """A scripted path of actions (``weights`` ``(n, k)``, ``leverage`` ``(n,)``) through a
    :class:`PortfolioEnv` from row 0 to the end: the environment's own arithmetic.

    Raises:
        ValueError: shapes other than ``(n, k)`` and ``(n,)``.
    """
    n, k = len(data), len(data.symbols)
    w = np.asarray(weights, dtype=np.float64)
    lev = np.asarray(leverage, dtype=np.float64)
    if w.shape != (n, k) or lev.shape != (n,):
        raise ValueError(f"weights must be ({n}, {k}) and leverage ({n},), got {w.shape}, "
                         f"{lev.shape}")
    env = PortfolioEnv(data, _whole(cfg))
    rows = iter(np.column_stack([w, lev]))

    def scripted(_obs: np.ndarray) -> np.ndarray:
        return next(rows)

    frame = run_portfolio_episode(env, scripted)
    return portfolio_result(name, frame, data, env.config)


def _whole(cfg: EnvConfig) -> EnvConfig:
    from dataclasses import replace

    return replace(cfg, random_start=False, episode_bars=None)


def evaluate_portfolio_baselines(data: PortfolioData, cfg: EnvConfig) -> dict[str, SizingResult]:
    """``equal_weight`` and ``inverse_volatility`` (module docstring), both 1x, on ``data``."""
    n, k = len(data), len(data.symbols)
    vol = np.column_stack([forecast_volatility(p, cfg) for p in data.parts])
    inv = np.zeros_like(vol)
    np.divide(1.0, vol, out=inv, where=vol > 0)
    total = inv.sum(axis=1, keepdims=True)
    iw = np.full((n, k), 1.0 / k)
    np.divide(inv, total, out=iw, where=total > 0)
    ones = np.ones(n)
    return {"equal_weight": simulate_portfolio(data, np.full((n, k), 1.0 / k), ones, cfg,
                                               "equal_weight"),
            "inverse_volatility": simulate_portfolio(data, iw, ones, cfg,
                                                     "inverse_volatility")}


__all__ = ["PortfolioData", "PortfolioEnv", "allocation_weights", "evaluate_portfolio_baselines",
           "portfolio_result", "run_portfolio_episode", "simulate_portfolio"]
