"""Several symbols: allocation weights sum to at most 1, account costs and liquidation by hand,
causality, gymnasium API, seeded training on held-out bars, baselines through the same env."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env
from sizing_market import bars as market
from sizing_market import funding  # tests/unit/sizing/sizing_market.py

from huracan.evaluation.execution import MarketBars, execute
from huracan.sizing.env import EnvConfig, SizingData
from huracan.sizing.portfolio import (
    PortfolioData,
    PortfolioEnv,
    allocation_weights,
    evaluate_portfolio_baselines,
    run_portfolio_episode,
)
from huracan.sizing.ppo import PPOConfig, evaluate_ppo, train_ppo

TS = pd.date_range("2024-01-01 21:00", periods=3, freq="1h", tz="UTC")
HAND = EnvConfig(fee=0.001, maintenance_margin=0.005, drawdown_penalty=2.0,
                 consistency_bonus=0.0, reward_scale=1.0, episode_bars=None, random_start=False)


def _pair() -> PortfolioData:
    r, z = np.array([0.02, -0.01, 0.01]), np.zeros(3)
    # close fill, the fee only, a funding rate of 0.1 % settled in bar 0's hold leg
    bars = MarketBars(TS, z, r, np.full(3, 0.001), z, z, np.array([0.001, 0.0, 0.0]), z,
                      fill="close")
    btc = SizingData(TS, np.array([0.01, 0.01, -0.01]), r, bars=bars)
    eth = SizingData(TS, np.array([-0.02, 0.01, 0.01]), np.array([-0.03, 0.02, 0.0]))
    return PortfolioData.align({"BTC/USDT": btc, "ETH/USDT": eth})


def _random(n: int, seed: int, symbols: tuple[str, ...] = ("BTC/USDT", "ETH/USDT")
            ) -> PortfolioData:
    ts = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC")
    parts = {}
    for i, sym in enumerate(symbols):
        rng = np.random.default_rng(seed + i)
        r = rng.normal(0.0, 0.006, n)
        parts[sym] = SizingData(ts, 0.3 * r + rng.normal(0.0, 0.004, n), r)
    return PortfolioData.align(parts)


def test_allocation_weights_never_sum_above_one():
    assert np.allclose(allocation_weights(np.array([0.2, 0.3])), [0.2, 0.3])
    w = allocation_weights(np.array([0.8, 0.7, -0.5]))
    assert np.isclose(w.sum(), 1.0) and np.allclose(w, [0.8 / 1.5, 0.7 / 1.5, 0.0])
    rng = np.random.default_rng(0)
    for raw in rng.uniform(-1, 2, (200, 4)):
        w = allocation_weights(raw)
        assert (w >= 0).all() and w.sum() <= 1 + 1e-12


def test_align_keeps_the_bars_every_symbol_has():
    ts = pd.date_range("2024-01-01", periods=5, freq="1h", tz="UTC")
    a = SizingData(ts, np.arange(5.0), np.zeros(5))
    b = SizingData(ts.delete(2), np.arange(4.0), np.zeros(4))  # a gap at 02:00
    p = PortfolioData.align({"A": a, "B": b})
    assert len(p) == 4 and ts[2] not in p.timestamps
    assert np.array_equal(p.parts[0].forecast, [0.0, 1.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="timestamps differ"):
        PortfolioData(("A", "B"), (a, b))
    with pytest.raises(ValueError, match="at least 2"):
        PortfolioData.align({"A": a})


def test_account_costs_funding_and_reward_by_hand():
    env = PortfolioEnv(_pair(), HAND)
    env.reset(seed=0)
    # bar 0: weights (0.5, 0.3), leverage 2 -> p = (+1.0, -0.6)
    _, reward, _, _, info = env.step(np.array([0.5, 0.3, 2.0]))
    g0 = 1.0 * 0.02 + (-0.6) * (-0.03) - 0.001 * 1.6 - 1.0 * 0.001
    assert np.allclose(info["positions"], [1.0, -0.6]) and info["gross_exposure"] == 1.6
    assert info["return"] == pytest.approx(g0)
    assert reward == pytest.approx(g0)  # a new peak: no drawdown to pay
    # bar 1: raw weights (0.9, 0.6) sum 1.5 -> (0.6, 0.4); leverage 1 -> p = (+0.6, +0.4)
    _, reward, _, _, info = env.step(np.array([0.9, 0.6, 1.0]))
    assert np.allclose(info["weights"], [0.6, 0.4])
    turnover = abs(0.6 - 1.0) + abs(0.4 + 0.6)
    g1 = 0.6 * -0.01 + 0.4 * 0.02 - 0.001 * turnover
    assert info["return"] == pytest.approx(g1)
    eq = (1 + g0) * (1 + g1)
    dd = 1 - eq / (1 + g0) if g1 < 0 else 0.0
    assert info["equity"] == pytest.approx(eq)
    assert reward == pytest.approx(g1 - 2.0 * dd)


def test_a_forced_liquidation_ends_the_episode_with_the_loss():
    ts = pd.date_range("2024-01-01", periods=3, freq="1h", tz="UTC")
    crash = SizingData(ts, np.full(3, 0.01), np.array([-0.25, 0.0, 0.0]))
    calm = SizingData(ts, np.full(3, 0.01), np.zeros(3))
    env = PortfolioEnv(PortfolioData.align({"A": crash, "B": calm}), HAND)
    env.reset(seed=0)
    # all in A at 5x: a -25 % bar wipes the account (5 x 25 % > 100 %)
    _, _, terminated, truncated, info = env.step(np.array([1.0, 0.0, 5.0]))
    assert terminated and not truncated and info["liquidated"] == "margin"
    assert info["return"] == -1.0 and info["equity"] == 0.0
    with pytest.raises(ValueError, match="episode finished"):
        env.step(np.array([0.5, 0.5, 1.0]))
    # the same bar at 1x split across both survives
    env.reset(seed=0)
    _, _, terminated, _, info = env.step(np.array([0.5, 0.5, 1.0]))
    assert not terminated and info["return"] == pytest.approx(-0.125 - 0.001)


def test_observations_hold_nothing_after_their_bar():
    data = _random(300, 1)
    t = 150
    changed = PortfolioData(data.symbols, tuple(
        replace(p, forecast=np.r_[p.forecast[: t + 1], p.forecast[t + 1:] * -7.0],
                next_return=np.r_[p.next_return[:t], p.next_return[t:] * 3.0])
        for p in data.parts))
    cfg = replace(HAND, forecast_window=24, vol_window=12)
    rng = np.random.default_rng(0)
    actions = np.column_stack([rng.uniform(0, 0.5, (t, 2)), rng.uniform(1, 2, t)])
    seen = []
    for d in (data, changed):
        env = PortfolioEnv(d, cfg)
        obs, _ = env.reset(seed=0)
        for a in actions:
            obs, *_ = env.step(a)
        seen.append(obs)  # the observation at the close of bar t
    assert np.array_equal(seen[0], seen[1])


def test_the_env_passes_gymnasiums_checker():
    env = PortfolioEnv(_random(200, 2, ("A", "B", "C")), replace(HAND, episode_bars=50,
                                                                 random_start=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env, skip_render_check=True)
    assert env.action_space.shape == (4,)
    assert env.observation_names[:2] == ("A:forecast_z", "A:confidence")
    assert env.observation_names[-4:] == ("position:A", "position:B", "position:C", "leverage")


def test_baselines_go_through_the_env_and_equal_weight_by_hand():
    data = _random(120, 3)
    cfg = replace(HAND, vol_window=12)
    base = evaluate_portfolio_baselines(data, cfg)
    ew = base["equal_weight"].returns
    p = np.column_stack([np.sign(x.forecast) * 0.5 for x in data.parts])
    r = np.column_stack([x.next_return for x in data.parts])
    prev = np.vstack([np.zeros(2), p[:-1]])
    g = (p * r).sum(axis=1) - 0.001 * np.abs(p - prev).sum(axis=1)
    assert np.allclose(ew["strategy_return"], g)
    iv = base["inverse_volatility"].returns
    w = iv[["weight:BTC/USDT", "weight:ETH/USDT"]].to_numpy()
    assert np.allclose(w.sum(axis=1), 1.0) and not np.allclose(w, 0.5)
    assert base["equal_weight"].metrics.n_trades > 0


def test_seeded_training_reproduces_and_allocations_stay_within_capital():
    data = _random(1200, 4)
    env = EnvConfig(episode_bars=200, reward_scale=100.0, forecast_window=48, vol_window=24)
    ppo = PPOConfig(total_timesteps=1024, n_steps=256, batch_size=64, n_epochs=2, seed=5)
    a, b = (train_ppo(data, 900, env, ppo) for _ in range(2))
    ra, rb = evaluate_ppo(a, data, 900), evaluate_ppo(b, data, 900)
    assert np.array_equal(ra.returns["strategy_return"], rb.returns["strategy_return"])
    w = ra.returns[["weight:BTC/USDT", "weight:ETH/USDT"]].to_numpy()
    assert len(w) == 300 and (w.sum(axis=1) <= 1 + 1e-9).all()
    assert a.train_bars == 900 and a.train_end == data.timestamps[899]
    with pytest.raises(ValueError, match="trained on"):
        evaluate_ppo(a, data, 800)
    frame = run_portfolio_episode(PortfolioEnv(data.slice(900), a.eval_config()),
                                  lambda o: np.array([0.5, 0.5, 1.0]))
    assert len(frame) == 300 and frame["gross_exposure"].max() <= 1.0 + 1e-12


def test_the_account_return_is_the_execution_model_per_symbol():
    """On next-open bars with spread, slippage, funding legs (BTC) and borrow (ETH, spot), the
    account's return is the sum of execute() of each symbol's positions on its own bars."""
    n = 300
    btc_bars, _, _ = market(n, seed=21, perpetual=True, settlements=funding(seed=4))
    eth_bars, _, _ = market(n, seed=22)
    rng = np.random.default_rng(8)
    parts = {sym: SizingData(b.timestamps, rng.normal(0, 0.002, n), b.next_return, bars=b)
             for sym, b in (("BTC/USDT", btc_bars), ("ETH/USDT", eth_bars))}
    data = PortfolioData.align(parts)
    cfg = EnvConfig(episode_bars=None, random_start=False, max_leverage=2.0)
    actions = np.column_stack([rng.uniform(0, 0.6, (n, 2)), rng.uniform(1, 2, n)])
    it = iter(actions)
    frame = run_portfolio_episode(PortfolioEnv(data, cfg), lambda o: next(it))
    assert frame["liquidated"].eq("").all()
    per_symbol = [execute(frame[f"position:{s}"].to_numpy(), b, 8760.0).returns
                  for s, b in (("BTC/USDT", btc_bars), ("ETH/USDT", eth_bars))]
    total = sum(r["strategy_return"].to_numpy() for r in per_symbol)
    np.testing.assert_allclose(frame["strategy_return"], total, rtol=0, atol=1e-12)
    for col in ("cost", "funding_cost", "borrow_cost"):
        np.testing.assert_allclose(frame[col], sum(r[col].to_numpy() for r in per_symbol),
                                   rtol=0, atol=1e-12, err_msg=col)
    assert frame["funding_cost"].abs().sum() > 0 and frame["borrow_cost"].sum() > 0
