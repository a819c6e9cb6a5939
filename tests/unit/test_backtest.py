"""Backtest: positions, fees on turnover, trade segmentation, by hand (the close fill with the fee
only, through the execution model: today's numbers of the old close-fill backtest)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from huracan.evaluation.backtest import BacktestConfig, BacktestResult, positions_from_forecast
from huracan.evaluation.execution import close_bars, execute

TS = pd.date_range("2024-01-01", periods=5, freq="1h", tz="UTC")


def run_backtest(ts, pred, nxt, label, cfg: BacktestConfig, ppy: float) -> BacktestResult:
    """The sign of the forecast beyond the threshold, filled at the close with the fee only."""
    pos = positions_from_forecast(pred, cfg.threshold, cfg.long_only)
    return execute(pos, close_bars(ts, nxt, cfg.fee), ppy, predictions=pred, labels=label)
PRED = np.array([0.002, 0.002, -0.002, 0.0, 0.002])
NEXT = np.array([0.01, -0.01, -0.02, 0.05, 0.01])


def test_positions_threshold_and_long_only():
    p = np.array([0.002, 0.0005, -0.0005, -0.002])
    assert positions_from_forecast(p, 0.001).tolist() == [1, 0, 0, -1]
    assert positions_from_forecast(p, 0.001, long_only=True).tolist() == [1, 0, 0, 0]


def test_net_returns_and_trades_by_hand():
    res = run_backtest(TS, PRED, NEXT, NEXT, BacktestConfig(threshold=0.001, fee=0.001), 8760)
    r = res.returns
    assert r["position"].tolist() == [1, 1, -1, 0, 1]
    assert r["turnover"].tolist() == [1, 0, 2, 1, 1]  # flip long->short pays twice
    # gross = position * next return; net = gross - fee * turnover
    assert r["strategy_return"].to_numpy() == pytest.approx([0.009, -0.01, 0.018, -0.001, 0.009])
    t = res.trades
    assert t["side"].tolist() == ["long", "short", "long"]
    assert t["bars"].tolist() == [2, 1, 1]
    # each trade compounds its bars' net returns (the fee taken from the bar's return) and its
    # share of the fill that closes it: long (1.01 - 0.001) * 0.99 * (1 - 0.001) - 1; the flip
    # of bar 2 costs 0.002, half of it (the long's exit) in the long, half in the short:
    # short (1.018 / 0.999) * (1 - 0.001) - 1 = 0.018; the last long still open at the end:
    # entry fee only, 1.01 - 0.001 - 1
    assert t["return"].to_numpy() == pytest.approx([1.009 * 0.99 * 0.999 - 1, 0.018, 0.009],
                                                   abs=1e-12)
    assert t["entry_time"].tolist() == [TS[0], TS[2], TS[4]]
    assert t["exit_time"].tolist() == [TS[1], TS[2], TS[4]]
    mt = res.metrics
    assert mt.n_trades == 3
    assert mt.hit_ratio == pytest.approx(2 / 3)
    # signs: pred [+,+,-,0,+] vs actual [+,-,-,+,+] -> bars 0, 2, 4 match: 3/5
    assert mt.accuracy == pytest.approx(0.6)
    assert mt.total_return == pytest.approx(np.prod(1 + r["strategy_return"]) - 1)


def test_flat_forecast_never_trades_and_pays_nothing():
    res = run_backtest(TS, np.zeros(5), NEXT, NEXT, BacktestConfig(threshold=0.001), 8760)
    assert res.metrics.n_trades == 0
    assert res.returns["strategy_return"].abs().sum() == 0.0
    assert res.metrics.sharpe == 0.0


def test_fees_make_sign_flipping_lose():
    # alternating forecasts flip every bar: turnover 2 per bar eats a 0.04 % edge
    n = 200
    rng = np.random.default_rng(0)
    nxt = rng.normal(0, 0.005, n)
    pred = np.where(np.arange(n) % 2 == 0, 1.0, -1.0) * 0.01
    free = run_backtest(pd.date_range("2024", periods=n, freq="1h", tz="UTC"), pred, nxt, nxt,
                        BacktestConfig(fee=0.0), 8760)
    paid = run_backtest(pd.date_range("2024", periods=n, freq="1h", tz="UTC"), pred, nxt, nxt,
                        BacktestConfig(fee=0.0004), 8760)
    diff = free.returns["strategy_return"] - paid.returns["strategy_return"]
    assert diff.iloc[0] == pytest.approx(0.0004)
    assert diff.iloc[1:].to_numpy() == pytest.approx(np.full(n - 1, 0.0008))


def test_lagged_execution_replays_the_positions_one_bar_later_by_hand():
    from huracan.evaluation.evidence import lagged_execution
    from huracan.evaluation.metrics import sharpe_ratio

    position = np.array([1.0, 1.0, -1.0, 0.0, 1.0])
    r = np.array([0.01, -0.02, 0.03, 0.01, -0.01])
    out = lagged_execution(position, close_bars(TS, r, 0.001), periods_per_year=8760)
    late = np.array([0.0, 1.0, 1.0, -1.0, 0.0])
    net = late * r - 0.001 * np.array([0.0, 1.0, 0.0, 2.0, 1.0])
    assert out["total_return"] == pytest.approx(np.prod(1 + net) - 1)
    assert out["sharpe"] == pytest.approx(sharpe_ratio(net, 8760))
    # a one-bar reversal traded at the signal's close: a perfect edge at lag 0, a loss at lag 1
    rng = np.random.default_rng(0)
    shock = rng.normal(0, 0.01, 500)
    ret = np.r_[shock[1:] - shock[:-1], 0.0]          # each bar undoes the previous one
    pos = -np.sign(np.r_[0.0, ret[:-1]])               # bet on the reversal
    bars = close_bars(pd.date_range("2024", periods=500, freq="1h", tz="UTC"), ret, 0.0004)
    now = execute(pos, bars, 8760).metrics.total_return
    assert now > 0 and lagged_execution(pos, bars, 8760)["total_return"] < 0
    with pytest.raises(ValueError, match="lag"):
        lagged_execution(position, close_bars(TS, r, 0.001), 8760, lag=0)
