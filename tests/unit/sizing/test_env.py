"""Sizing environment: costs, funding, reward and liquidation by hand; the step loop equal to the
execution model's vectorised execution; causality; gymnasium API."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env
from sizing_market import COSTLY, funding  # tests/unit/sizing/sizing_market.py
from sizing_market import bars as market

from huracan.evaluation.backtest import BacktestConfig
from huracan.evaluation.execution import MarketBars, execute
from huracan.sizing.env import (
    EnvConfig,
    SizingData,
    SizingEnv,
    day_ends,
    forecast_zscore,
    observation_features,
    realised_volatility,
    run_episode,
)

# four 1h bars across midnight: rows 1 (23:00) and 3 (the last) close a UTC day
TS = pd.DatetimeIndex(["2024-01-01 22:00", "2024-01-01 23:00", "2024-01-02 00:00",
                       "2024-01-02 01:00"], tz="UTC")
FORECAST = np.array([0.01, 0.01, -0.01, 0.01])
NEXT = np.array([0.02, -0.01, -0.03, 0.01])
FUNDING = np.array([0.001, 0.0, 0.002, 0.0])
#: the close fill with the fee only and funding settled in each bar's hold leg
Z = np.zeros(4)
HAND_BARS = MarketBars(TS, Z, NEXT, np.full(4, 0.001), Z, Z, FUNDING, Z, fill="close")
HAND = EnvConfig(fee=0.001, maintenance_margin=0.005, drawdown_penalty=2.0,
                 consistency_bonus=0.01, reward_scale=1.0, episode_bars=None, random_start=False)


def _random_data(n: int = 400, seed: int = 0, **extra: object) -> SizingData:
    rng = np.random.default_rng(seed)
    r = rng.normal(0.0, 0.006, n)
    f = 0.3 * r + rng.normal(0.0, 0.004, n)
    ts = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC")
    return SizingData(ts, f, r, **extra)  # type: ignore[arg-type]


def _full_data(n: int = 400, seed: int = 0) -> SizingData:
    rng = np.random.default_rng(seed + 1)
    regime = np.eye(3)[rng.integers(0, 3, n)]
    r = np.random.default_rng(seed).normal(0.0, 0.006, n)
    low = np.minimum(r, 0.0) - np.abs(rng.normal(0, 0.003, n))
    high = np.maximum(r, 0.0) + np.abs(rng.normal(0, 0.003, n))
    return _random_data(n, seed, confidence=rng.uniform(0, 1, n), regime=regime,
                        liquidation_density=rng.uniform(0, 3, n),
                        importance_trend=rng.normal(0, 1, (n, 2)), low_return=low,
                        high_return=high)


def test_step_reward_fees_funding_drawdown_and_streak_by_hand():
    env = SizingEnv(SizingData(TS, FORECAST, NEXT, bars=HAND_BARS), HAND)
    env.reset(seed=0)
    # actions (size, leverage) -> positions sign(forecast) x size x leverage: +1, +1, -1.5, +2
    steps = [env.step(np.array(a, dtype=np.float32))
             for a in ([0.5, 2.0], [1.0, 1.0], [0.5, 3.0], [1.0, 2.0])]
    infos = [s[4] for s in steps]
    assert [i["position"] for i in infos] == pytest.approx([1.0, 1.0, -1.5, 2.0])
    assert [i["turnover"] for i in infos] == pytest.approx([1.0, 0.0, 2.5, 3.5])
    # bar 0: 1 x 0.02 - fee 0.001 x 1 - funding 1 x 0.001 (long pays) = 0.018
    # bar 1: -0.01 (no trade, no funding); equity 1.018 x 0.99, drawdown 1 %
    # bar 2: -1.5 x -0.03 - 0.001 x 2.5 - (-1.5 x 0.002) (the short RECEIVES funding) = 0.0455
    # bar 3: 2 x 0.01 - 0.001 x 3.5 = 0.0165
    g = [0.018, -0.01, 0.0455, 0.0165]
    assert [i["return"] for i in infos] == pytest.approx(g)
    assert infos[2]["funding_cost"] == pytest.approx(-0.003)
    assert infos[0]["funding_cost"] == pytest.approx(0.001)
    assert infos[3]["equity"] == pytest.approx(np.prod(1 + np.array(g)))
    # reward = g - 2 x (increase of max drawdown) + 0.01 x streak when a day closes positive:
    # day 1 closes at row 1 (+0.782 %): streak 1; day 2 closes at the last row: streak 2
    expected = [0.018, -0.01 - 2.0 * 0.01 + 0.01 * 1, 0.0455, 0.0165 + 0.01 * 2]
    assert [s[1] for s in steps] == pytest.approx(expected)
    assert [i["day_bonus"] for i in infos] == [0, 1, 0, 2]
    assert [s[2] for s in steps] == [False] * 4  # never terminated
    assert [s[3] for s in steps] == [False, False, False, True]  # truncated at the last row
    with pytest.raises(ValueError, match="reset"):
        env.step(np.array([1.0, 1.0], dtype=np.float32))


def test_negative_day_resets_the_streak():
    ts = pd.date_range("2024-01-01", periods=5, freq="1D", tz="UTC")  # every row closes a day
    r = np.array([0.01, 0.01, -0.01, 0.01, 0.01])
    cfg = EnvConfig(fee=0.0, consistency_bonus=1.0, drawdown_penalty=0.0, episode_bars=None,
                    random_start=False)
    env = SizingEnv(SizingData(ts, np.ones(5), r), cfg)
    env.reset()
    out = [env.step(np.array([1.0, 1.0], dtype=np.float32)) for _ in range(5)]
    assert [s[4]["day_bonus"] for s in out] == [1, 2, 0, 1, 2]
    assert [s[1] for s in out] == pytest.approx(r + np.array([1, 2, 0, 1, 2]))


def test_margin_liquidation_ends_the_episode_with_the_loss():
    ts = pd.date_range("2024-01-01", periods=4, freq="1h", tz="UTC")
    r = np.array([0.0, -0.19, 0.05, 0.05])
    cfg = EnvConfig(fee=0.001, maintenance_margin=0.1, drawdown_penalty=1.0,
                    consistency_bonus=0.0, episode_bars=None, random_start=False)
    env = SizingEnv(SizingData(ts, np.ones(4), r), cfg)
    env.reset()
    _, _, term0, _, i0 = env.step(np.array([1.0, 5.0], dtype=np.float32))
    assert not term0 and i0["return"] == pytest.approx(-0.005)  # entry fee on 5x
    # bar 1 at 5x: equity left 1 - 0.95 = 0.05 <= 0.1 x 5 x 0.81 = 0.405 -> margin call
    _, rew1, term1, trunc1, i1 = env.step(np.array([1.0, 5.0], dtype=np.float32))
    assert term1 and not trunc1 and i1["liquidated"] == "margin"
    assert i1["return"] == -1.0 and i1["equity"] == 0.0 and i1["drawdown"] == 1.0
    # the whole equity is lost, and the max drawdown jumps from 0.5 % to 100 %
    assert rew1 == pytest.approx(-1.0 - 1.0 * (1.0 - 0.005))
    # the same bar at 1x survives: 1 - 0.19 > 0.1 x 1 x 0.81
    env.reset()
    env.step(np.array([1.0, 1.0], dtype=np.float32))
    _, _, term, _, info = env.step(np.array([1.0, 1.0], dtype=np.float32))
    assert not term and info["liquidated"] is None and info["return"] == pytest.approx(-0.19)
    # a rollout pads the bars after the liquidation flat, the equity left at 0
    frame = run_episode(env, lambda obs: np.array([1.0, 5.0], dtype=np.float32))
    assert frame["liquidated"].tolist() == ["", "margin", "", ""]
    assert frame["strategy_return"].tolist() == pytest.approx([-0.005, -1.0, 0.0, 0.0])
    assert frame["equity"].tolist()[1:] == [0.0, 0.0, 0.0]


def test_intrabar_wick_liquidates_and_drawdown_limit_stops():
    ts = pd.date_range("2024-01-01", periods=3, freq="1h", tz="UTC")
    r = np.array([0.0, 0.0, 0.0])
    low = np.array([-0.25, 0.0, 0.0])
    data = SizingData(ts, np.ones(3), r, low_return=low, high_return=np.zeros(3))
    env = SizingEnv(data, EnvConfig(fee=0.0, episode_bars=None, random_start=False))
    env.reset()
    # the close is unchanged, but the low (-25 %) wipes a 5x long: 1 - 1.25 <= m x 5 x 0.75
    *_, term, _, info = env.step(np.array([1.0, 5.0], dtype=np.float32))
    assert term and info["liquidated"] == "margin"
    env.reset()
    *_, term, _, info = env.step(np.array([1.0, 2.0], dtype=np.float32))  # 2x survives the wick
    assert not term
    # drawdown stop at 10 %: a 1x long losing 12 % is closed at the close, paying the exit fee
    data = SizingData(ts, np.ones(3), np.array([-0.12, 0.0, 0.0]))
    env = SizingEnv(data, EnvConfig(fee=0.001, drawdown_limit=0.1, episode_bars=None,
                                    random_start=False, drawdown_penalty=0.0,
                                    consistency_bonus=0.0))
    env.reset()
    _, rew, term, _, info = env.step(np.array([1.0, 1.0], dtype=np.float32))
    assert term and info["liquidated"] == "drawdown"
    assert info["return"] == pytest.approx(-0.12 - 0.001 - 0.001)
    assert rew == pytest.approx(-0.122)


def test_observation_at_t_uses_no_later_bar():
    n, t = 300, 150
    a = _full_data(n, seed=3)
    rng = np.random.default_rng(99)

    def after(x: np.ndarray | None, keep: int, new: np.ndarray) -> np.ndarray:
        assert x is not None
        return np.concatenate([x[:keep], new])

    # change everything that happens after the close of bar t: the forecast and inputs of rows
    # > t; the returns and wicks of the bars following rows >= t
    r_b = after(a.next_return, t, rng.normal(0, 0.05, n - t))
    b = replace(
        a,
        forecast=after(a.forecast, t + 1, rng.normal(0, 0.05, n - t - 1)),
        next_return=r_b,
        confidence=after(a.confidence, t + 1, np.full(n - t - 1, 0.9)),
        regime=after(a.regime, t + 1, np.eye(3)[np.zeros(n - t - 1, dtype=int)]),
        liquidation_density=after(a.liquidation_density, t + 1, np.full(n - t - 1, 50.0)),
        importance_trend=after(a.importance_trend, t + 1, np.full((n - t - 1, 2), -7.0)),
        low_return=after(a.low_return, t, np.minimum(r_b[t:], 0.0) - 0.1),
        high_return=after(a.high_return, t, np.maximum(r_b[t:], 0.0) + 0.1),
    )
    cfg = EnvConfig(episode_bars=None, random_start=False, forecast_window=24, vol_window=12)
    fa, names = observation_features(a, cfg)
    fb, _ = observation_features(b, cfg)
    np.testing.assert_array_equal(fa[: t + 1], fb[: t + 1])
    assert not np.array_equal(fa[t + 1 :], fb[t + 1 :])  # the test can fail
    assert "regime_2" in names and "importance_trend_1" in names
    actions = np.random.default_rng(5).uniform([0, 1], [1, 5], (t + 1, 2)).astype(np.float32)
    obs = {}
    for key, data in (("a", a), ("b", b)):
        env = SizingEnv(data, cfg)
        o, _ = env.reset()
        seen = [o]
        for k in range(t):
            o, *_ = env.step(actions[k])
            seen.append(o)
        obs[key] = np.array(seen)
    np.testing.assert_array_equal(obs["a"], obs["b"])  # observations of rows 0 .. t


def test_check_env_passes_with_and_without_optional_inputs():
    for data in (_random_data(200), _full_data(200)):
        env = SizingEnv(data, EnvConfig(episode_bars=50))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(env, skip_render_check=True)
        # the only remark: gymnasium recommends [-1, 1] actions (PPO sees them through UnitActions)
        assert all("symmetric and normalized" in str(w.message) for w in caught), caught


def test_observation_layout_and_bounds():
    env = SizingEnv(_full_data(200), EnvConfig(episode_bars=50))
    assert env.observation_names == (
        "forecast_z", "confidence", "volatility", "regime_0", "regime_1", "regime_2",
        "liquidation_density", "importance_trend_0", "importance_trend_1", "pnl_1", "pnl_24",
        "pnl_168", "drawdown", "position", "leverage")
    obs, _ = env.reset(seed=1)
    assert obs.dtype == np.float32 and obs.shape == (15,)
    assert obs[-4:].tolist() == [0.0, 0.0, 0.0, 1.0]  # flat, no drawdown, leverage 1 at start
    obs, *_ = env.step(np.array([1.0, 3.0], dtype=np.float32))
    assert abs(obs[-2]) == pytest.approx(3.0) and obs[-1] == pytest.approx(3.0)
    assert env.observation_space.contains(obs)


def test_seeded_random_starts_and_evaluation_start():
    data = _random_data(400)
    env = SizingEnv(data, EnvConfig(episode_bars=100))
    starts = [env.reset(seed=s)[1]["start"] for s in (1, 1, 2, 3, 4)]
    assert starts[0] == starts[1] and len(set(starts)) > 1
    assert all(0 <= s <= 300 for s in starts)
    info = env.reset(seed=1)[1]
    assert info["stop"] - info["start"] == 100
    ev = SizingEnv(data, EnvConfig(episode_bars=None, random_start=False))
    assert ev.reset(seed=7)[1] == {"row": 0, "start": 0, "stop": 400}
    assert env.reset(options={"start": 10})[1]["start"] == 10


def test_features_are_causal_and_documented_units():
    r = np.array([0.01, -0.01, 0.02, 0.0, 0.03])
    vol = realised_volatility(r, window=3)
    assert vol[:2].tolist() == [0.0, 0.0]  # fewer than 2 known returns
    assert vol[2] == pytest.approx(np.std(r[:2], ddof=1))
    assert vol[4] == pytest.approx(np.std(r[1:4], ddof=1))  # rows t-3 .. t-1
    f = np.array([1.0, 3.0, -2.0])
    z = forecast_zscore(f, window=2, clip=10)
    assert z.tolist() == pytest.approx([0.0, 3.0 / np.std([1, 3], ddof=1),
                                        -2.0 / np.std([3, -2], ddof=1)])
    assert day_ends(TS).tolist() == [False, True, False, True]


def test_invalid_inputs_raise_clear_errors():
    ts = pd.date_range("2024-01-01", periods=3, freq="1h", tz="UTC")
    with pytest.raises(ValueError, match="rows"):
        SizingData(ts, np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match="one-hot"):
        SizingData(ts, np.zeros(3), np.zeros(3), regime=np.ones((3, 2)))
    with pytest.raises(ValueError, match="NaN"):
        SizingData(ts, np.array([0.0, np.nan, 0.0]), np.zeros(3))
    with pytest.raises(ValueError, match="increasing"):
        SizingData(ts[::-1], np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="both"):
        SizingData(ts, np.zeros(3), np.zeros(3), low_return=np.zeros(3))
    with pytest.raises(ValueError, match="max_leverage"):
        EnvConfig(max_leverage=0.5)
    env = SizingEnv(SizingData(ts, np.ones(3), np.zeros(3)))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="2 finite numbers"):
        env.step(np.array([1.0], dtype=np.float32))
    with pytest.raises(ValueError, match="same 3 rows"):
        SizingData(ts, np.zeros(3), np.zeros(3), bars=HAND_BARS)


def _stepped(data: SizingData, cfg: EnvConfig, actions: np.ndarray) -> pd.DataFrame:
    it = iter(actions)
    return run_episode(SizingEnv(data, cfg), lambda obs: next(it))


@pytest.mark.parametrize("market_kind", ["perpetual_funding", "spot_borrow", "estimated_spread"])
def test_env_steps_equal_execute_on_the_same_bars(market_kind: str):
    """The step loop (scalar bar_components on MarketBars.step_lists) and the vectorised
    execution model give the same net returns for the same positions, to 1e-12."""
    n = 500
    cfg_bt = COSTLY
    kw: dict[str, object] = {}
    if market_kind == "perpetual_funding":
        kw = {"perpetual": True, "settlements": funding(periods=80, seed=3)}
    elif market_kind == "estimated_spread":
        cfg_bt = BacktestConfig(half_spread="abdi_ranaldo", spread_window=24,
                                notional=1e5, impact_coef=0.5)
    bars, _, _ = market(n, seed=11, cfg=cfg_bt, **kw)  # type: ignore[arg-type]
    desc = bars.describe()
    assert desc["cost_bps_median"] > 4.0  # more than the fee: spread and slippage are charged
    if market_kind == "perpetual_funding":
        assert desc["funding"] and not desc["borrow"]
    elif market_kind == "spot_borrow":
        assert desc["borrow"] and not desc["funding"]
    else:
        assert desc["impact"]
    assert np.abs(bars.gap).max() > 0  # fills at the next open, away from the close
    rng = np.random.default_rng(4)
    forecast = rng.normal(0.0, 0.002, n)
    data = SizingData(bars.timestamps, forecast, bars.next_return, bars=bars)
    cfg = EnvConfig(max_leverage=3.0, episode_bars=None, random_start=False)
    actions = rng.uniform([0.0, 1.0], [1.0, 3.0], (n, 2))
    actions[::7, 0] = 0.0  # flat now and then: entries, exits and flips
    frame = _stepped(data, cfg, actions.astype(np.float32))
    assert frame["liquidated"].eq("").all()
    pos = frame["position"].to_numpy()
    assert (np.sign(pos[1:]) != np.sign(pos[:-1])).sum() > 50
    ex = execute(pos, bars, cfg.periods_per_year).returns
    np.testing.assert_allclose(frame["strategy_return"], ex["strategy_return"], rtol=0,
                               atol=1e-12)
    for col in ("cost", "funding_cost", "borrow_cost", "turnover"):
        np.testing.assert_allclose(frame[col], ex[col], rtol=0, atol=1e-12, err_msg=col)
    assert frame["cost"].sum() > 0
    assert frame["equity"].iloc[-1] == pytest.approx(np.prod(1 + ex["strategy_return"]),
                                                     rel=1e-12)


def test_next_open_fill_gives_the_gap_to_the_old_position():
    """Row t's gap leg (close to next open) is earned by the position held before the fill."""
    ts = TS[:2]
    gap, hold = np.array([0.01, -0.02]), np.array([0.005, 0.03])
    z = np.zeros(2)
    bars = MarketBars(ts, gap, hold, np.full(2, 0.001), z, z, z, z)
    nxt = bars.next_return
    env = SizingEnv(SizingData(ts, np.array([1.0, -1.0]), nxt, bars=bars),
                    EnvConfig(episode_bars=None, random_start=False))
    env.reset()
    g0 = env.step(np.array([1.0, 1.0], dtype=np.float32))[4]["return"]
    g1 = env.step(np.array([1.0, 1.0], dtype=np.float32))[4]["return"]
    # bar 0: flat before (no gap P&L), long over the hold leg, 1 unit of turnover
    assert g0 == pytest.approx(0.005 - 0.001)
    # bar 1: the long earns the gap (+1 x -2 %), then the short the hold leg, 2 units of turnover
    assert g1 == pytest.approx((1 - 0.02) * (1 - 0.03) - 1 - 0.002)
