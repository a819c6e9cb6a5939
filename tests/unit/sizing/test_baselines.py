"""Sizing baselines: hand-computed returns, trades and parity with the backtest (the execution
model) and with the env."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from sizing_market import COSTLY, funding  # tests/unit/sizing/sizing_market.py
from sizing_market import bars as market

from huracan.evaluation.backtest import BacktestConfig, BacktestResult, positions_from_forecast
from huracan.evaluation.execution import MarketBars, close_bars, execute
from huracan.evaluation.metrics import compute_metrics
from huracan.evaluation.statistics import probabilistic_sharpe_ratio
from huracan.sizing.baselines import (
    comparison_table,
    evaluate_baselines,
    fixed_fraction,
    flat,
    kelly,
    sign_rule,
    simulate,
    volatility_target,
)
from huracan.sizing.env import EnvConfig, SizingData, SizingEnv, run_episode

TS = pd.date_range("2024-01-01", periods=5, freq="1h", tz="UTC")
PRED = np.array([0.002, 0.002, -0.002, 0.0, 0.002])
NEXT = np.array([0.01, -0.01, -0.02, 0.05, 0.01])
CFG = EnvConfig(fee=0.001, episode_bars=None, random_start=False, periods_per_year=10_000)


def run_backtest(ts, pred, nxt, label, cfg: BacktestConfig, ppy: float) -> BacktestResult:
    """The backtest's threshold rule filled at the close with the fee only (the bars of
    :class:`SizingData` without ``bars``)."""
    pos = positions_from_forecast(pred, cfg.threshold, cfg.long_only)
    return execute(pos, close_bars(ts, nxt, cfg.fee), ppy, predictions=pred, labels=label)


def test_fixed_full_size_equals_the_backtest_and_hand_values():
    res = fixed_fraction(SizingData(TS, PRED, NEXT), CFG)
    r = res.returns
    assert r["position"].tolist() == [1, 1, -1, 0, 1]
    assert r["turnover"].tolist() == [1, 0, 2, 1, 1]
    # net = position x next return - fee x turnover
    assert r["strategy_return"].to_numpy() == pytest.approx([0.009, -0.01, 0.018, -0.001, 0.009])
    bt = run_backtest(TS, PRED, NEXT, NEXT, BacktestConfig(fee=0.001), 10_000)
    np.testing.assert_allclose(r["strategy_return"], bt.returns["strategy_return"], atol=1e-15)
    # trades: the backtest's one extraction (a flip's cost split between the two trades)
    np.testing.assert_allclose(res.trade_returns, bt.trades["return"].to_numpy(), atol=1e-15)
    assert res.trades is not None and res.trades["side"].tolist() == ["long", "short", "long"]
    # long closed at bar 2's fill: 1.009 x 0.99 x (1 - its half of the flip's 0.2 % cost) - 1
    assert res.trade_returns[0] == pytest.approx(1.009 * 0.99 * (1 - 0.001) - 1)
    assert r["equity"].iloc[-1] == pytest.approx(np.prod(1 + r["strategy_return"]))


def test_metrics_are_compute_metrics_of_the_returns_plus_psr():
    data = SizingData(TS, PRED, NEXT)
    res = fixed_fraction(data, CFG)
    g = res.returns["strategy_return"].to_numpy()
    assert res.metrics == compute_metrics(g, res.trade_returns, PRED, NEXT, 10_000)
    assert res.psr == probabilistic_sharpe_ratio(g)
    table = comparison_table(evaluate_baselines(data, CFG))
    assert list(table.index) == ["fixed", "sign_rule", "volatility_target", "kelly"]
    cash = flat(data, CFG)
    assert cash.name == "flat" and (cash.returns["strategy_return"] == 0).all()
    assert cash.metrics.n_trades == 0 and (cash.returns["position"] == 0).all()
    assert {"sharpe", "sortino", "max_drawdown", "calmar", "psr", "total_reward"} <= set(table)


def test_sign_rule_is_the_backtest_threshold_rule():
    res = sign_rule(SizingData(TS, np.array([0.002, 0.0005, -0.002, -0.0005, 0.002]), NEXT), CFG,
                    threshold=0.001)
    bt = run_backtest(TS, np.array([0.002, 0.0005, -0.002, -0.0005, 0.002]), NEXT, NEXT,
                      BacktestConfig(threshold=0.001, fee=0.001), 10_000)
    assert res.returns["position"].tolist() == bt.returns["position"].tolist() == [1, 0, -1, 0, 1]
    np.testing.assert_allclose(res.returns["strategy_return"], bt.returns["strategy_return"],
                               atol=1e-15)


def test_volatility_targeting_by_hand():
    vol = np.array([0.01, 0.02, 0.0, 0.005, 0.01])  # per bar; x sqrt(10,000) = 1, 2, 0, 0.5, 1
    data = SizingData(TS, PRED, NEXT, volatility=vol)
    res = volatility_target(data, CFG, target_vol=0.5)
    # exposure 0.5 / annual vol: 0.5, 0.25, flat (vol 0), 1 (but forecast 0: flat), 0.5
    assert res.returns["size"].tolist() == pytest.approx([0.5, 0.25, 0.0, 1.0, 0.5])
    assert res.returns["leverage"].tolist() == [1, 1, 1, 1, 1]
    p = np.array([0.5, 0.25, 0.0, 0.0, 0.5])
    assert res.returns["position"].to_numpy() == pytest.approx(p)
    turn = np.array([0.5, 0.25, 0.25, 0.0, 0.5])
    assert res.returns["strategy_return"].to_numpy() == pytest.approx(p * NEXT - 0.001 * turn)
    # above 1x the exposure becomes leverage, capped at max_leverage (5)
    big = volatility_target(data, CFG, target_vol=3.0)
    assert big.returns["size"].tolist() == [1, 1, 0, 1, 1]
    assert big.returns["leverage"].tolist() == pytest.approx([3, 1.5, 1, 5, 3])
    assert big.returns["position"].tolist() == pytest.approx([3, 1.5, 0, 0, 3])


def test_kelly_fraction_by_hand():
    vol = np.array([0.02, 0.04, 0.02, 0.02, 0.01])
    data = SizingData(TS, PRED, NEXT, volatility=vol)
    res = kelly(data, CFG, fraction=0.5)
    # e = 0.5 x |mu| / sigma^2: 0.5 x 0.002 / 4e-4 = 2.5; / 16e-4 = 0.625; 2.5; 0 (mu 0);
    # 0.5 x 0.002 / 1e-4 = 10 -> cap 5
    e = np.array([2.5, 0.625, 2.5, 0.0, 5.0])
    assert (res.returns["size"] * res.returns["leverage"]).to_numpy() == pytest.approx(e)
    p = np.sign(PRED) * e
    assert res.returns["position"].to_numpy() == pytest.approx(p)
    turn = np.abs(np.diff(np.concatenate([[0.0], p])))
    assert res.returns["strategy_return"].to_numpy() == pytest.approx(p * NEXT - 0.001 * turn)
    # a 4-bar label horizon quarters the per-bar edge
    h4 = kelly(data, CFG, fraction=0.5, horizon=4)
    assert h4.returns["position"].iloc[0] == pytest.approx(0.625)


def test_liquidated_baseline_is_flat_afterwards():
    data = SizingData(TS, np.ones(5), np.array([0.01, -0.25, 0.05, 0.05, 0.05]))
    res = fixed_fraction(data, CFG, fraction=1.0, leverage=5.0)
    r = res.returns
    assert res.liquidated == "margin"
    assert r["strategy_return"].tolist() == pytest.approx([0.05 - 0.005, -1.0, 0.0, 0.0, 0.0])
    assert r["position"].tolist() == [5, 5, 0, 0, 0]
    assert r["equity"].tolist()[1:] == [0.0, 0.0, 0.0, 0.0]
    assert res.metrics.total_return == pytest.approx(-1.0)


def _iter_actions(actions: np.ndarray) -> Iterator[np.ndarray]:
    yield from actions


@pytest.mark.parametrize("case", ["plain", "funding_wicks", "drawdown_limit", "margin",
                                  "next_open_costs", "next_open_margin"])
def test_simulate_equals_an_env_rollout(case: str):
    n = 300
    rng = np.random.default_rng(7)
    r = rng.normal(0.0, 0.006, n)
    if case == "margin":
        r[200] = -0.3
    extra: dict[str, object] = {}
    if case == "funding_wicks":  # close fill, funding settled every 8th hold leg
        z = np.zeros(n)
        ts = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC")
        extra = {"low_return": np.minimum(r, 0) - 0.002, "high_return": np.maximum(r, 0) + 0.002,
                 "bars": MarketBars(ts, z, r, np.full(n, 0.0004), z, z,
                                    np.where(np.arange(n) % 8 == 7, 3e-4, 0.0), z, fill="close")}
    if case.startswith("next_open"):  # next-open fills, spread + slippage, funding legs, wicks
        bars, low, high = market(n, seed=5, perpetual=True, settlements=funding(seed=2))
        if case == "next_open_margin":  # a -30 % bar, its low and the close at -30 %
            hold = bars.hold.copy()
            hold[200] = 0.7 / (1 + bars.gap[200]) - 1
            bars = MarketBars(bars.timestamps, bars.gap, hold, bars.cost_lin, bars.impact,
                              bars.funding_gap, bars.funding_hold, bars.borrow)
            low[200] = -0.3
        r = bars.next_return
        low, high = np.minimum(low, r), np.maximum(high, r)
        extra = {"low_return": low, "high_return": high, "bars": bars}
    forecast = rng.normal(0, 0.002, n)
    forecast[200] = 0.001  # a 5x long into the -30 % bar of the margin case
    data = SizingData(pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC"), forecast, r,
                      **extra)  # type: ignore[arg-type]
    cfg = EnvConfig(fee=0.0004, drawdown_penalty=0.7, consistency_bonus=1e-3, reward_scale=100,
                    episode_bars=None, random_start=False,
                    drawdown_limit=0.05 if case == "drawdown_limit" else None)
    actions = rng.uniform([0.0, 1.0], [1.0, 5.0], (n, 2)).astype(np.float32)
    actions[200] = (1.0, 5.0)
    sim = simulate(data, actions[:, 0].astype(np.float64), actions[:, 1].astype(np.float64),
                   cfg).returns
    it = _iter_actions(actions)
    env_frame = run_episode(SizingEnv(data, cfg), lambda obs: next(it))
    if case in ("drawdown_limit", "margin", "next_open_margin"):
        assert sim["liquidated"].ne("").sum() == 1  # the scenario does liquidate
    for col in ("position", "strategy_return", "equity", "drawdown", "reward", "cost",
                "funding_cost", "borrow_cost"):
        np.testing.assert_allclose(sim[col], env_frame[col], rtol=1e-5, atol=1e-6, err_msg=col)
    assert sim["liquidated"].tolist() == env_frame["liquidated"].tolist()
    if case.startswith("next_open"):
        assert sim["funding_cost"].abs().sum() > 0 and sim["cost"].sum() > 0


def test_baselines_are_the_execution_model_on_next_open_bars():
    """A baseline's returns and trades are execute()'s on the same bars: next-open fills, fee +
    half-spread + slippage, borrow on the spot shorts."""
    n = 400
    bars, _, _ = market(n, seed=9, cfg=COSTLY)
    rng = np.random.default_rng(1)
    data = SizingData(bars.timestamps, rng.normal(0, 0.002, n), bars.next_return, bars=bars)
    cfg = EnvConfig(episode_bars=None, random_start=False)
    for res in evaluate_baselines(data, cfg).values():
        assert res.liquidated == ""
        ex = execute(res.returns["position"].to_numpy(), bars, cfg.periods_per_year)
        np.testing.assert_allclose(res.returns["strategy_return"], ex.returns["strategy_return"],
                                   rtol=0, atol=1e-15, err_msg=res.name)
        np.testing.assert_allclose(res.trade_returns, ex.trades["return"], rtol=0, atol=1e-12,
                                   err_msg=res.name)
    # the same positions filled at the close with the fee only earn more: the costs are real
    fixed = fixed_fraction(data, cfg)
    cheap = execute(fixed.returns["position"].to_numpy(),
                    close_bars(bars.timestamps, bars.next_return, 0.0004), 8760.0)
    paid = fixed.returns["cost"].sum()
    assert paid > cheap.returns["cost"].sum()
    assert fixed.returns["borrow_cost"].sum() > 0  # the shorts of a spot market pay borrow


def test_invalid_arguments_raise():
    data = SizingData(TS, PRED, NEXT)
    with pytest.raises(ValueError, match="fraction"):
        fixed_fraction(data, CFG, fraction=1.5)
    with pytest.raises(ValueError, match="leverage"):
        fixed_fraction(data, CFG, leverage=6.0)
    with pytest.raises(ValueError, match="target_vol"):
        volatility_target(data, CFG, target_vol=0.0)
    with pytest.raises(ValueError, match="fraction"):
        kelly(data, CFG, fraction=0.0)
    with pytest.raises(ValueError, match="shape"):
        simulate(data, np.ones(4), np.ones(5), CFG)
    assert flat(data, CFG).trade_returns.size == 0
