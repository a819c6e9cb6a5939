"""Each metric against numbers computed by hand (arithmetic shown in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from huracan.evaluation import metrics as m

R = np.array([0.01, -0.02, 0.03, 0.0])
PPY = 4  # four bars a "year" keeps the arithmetic by hand short


def test_sharpe_hand_computed():
    # mean = 0.02 / 4 = 0.005; deviations 0.005, -0.025, 0.025, -0.005
    # sample var = (2.5e-5 + 6.25e-4 + 6.25e-4 + 2.5e-5) / 3 = 4.3333e-4; sd = 0.0208167
    # Sharpe = 0.005 / 0.0208167 * sqrt(4) = 0.480384
    assert m.sharpe_ratio(R, PPY) == pytest.approx(0.480384, abs=1e-6)


def test_sharpe_flat_series_is_zero_not_nan():
    assert m.sharpe_ratio(np.zeros(10), 8760) == 0.0


def test_sortino_uses_all_bars_for_downside():
    # downside: min(r, 0) = [0, -0.02, 0, 0]; mean of squares over ALL 4 bars = 4e-4 / 4 = 1e-4
    # downside risk = sqrt(1e-4) * sqrt(4) = 0.02; annual mean = 0.005 * 4 = 0.02 -> Sortino 1.0
    assert m.downside_risk(R, PPY) == pytest.approx(0.02)
    assert m.sortino_ratio(R, PPY) == pytest.approx(1.0)


def test_sortino_without_losses_is_infinite():
    assert m.sortino_ratio(np.array([0.01, 0.02]), PPY) == math.inf


def test_drawdown_total_and_annual_return_calmar():
    # equity: 1.01, 0.9898, 1.019494, 1.019494; peak 1.01 -> trough 0.9898: 1 - 0.98 = 0.02
    assert m.max_drawdown(R) == pytest.approx(0.02)
    assert m.total_return(R) == pytest.approx(0.019494)
    # 4 bars at 4 bars/year = 1 year: CAGR equals the total return
    assert m.annual_return(R, PPY) == pytest.approx(0.019494)
    assert m.calmar_ratio(R, PPY) == pytest.approx(0.019494 / 0.02)
    # 2 bars = half a year: growth 1.1 * 1.1 = 1.21 per half year -> 1.21 ** 2 - 1 = 0.4641
    assert m.annual_return(np.array([0.1, 0.1]), PPY) == pytest.approx(0.4641)


def test_drawdown_counts_starting_capital_as_first_peak():
    # equity 0.9, 0.945: the first bar already lost 10 % of the starting capital
    assert m.max_drawdown(np.array([-0.1, 0.05])) == pytest.approx(0.1)


def test_calmar_without_drawdown_is_nan():
    assert math.isnan(m.calmar_ratio(np.array([0.01, 0.02]), PPY))


def test_profit_factor_and_hit_ratio_over_trades():
    trades = np.array([0.02, -0.01, 0.03, -0.005])
    # gains 0.05, losses 0.015 -> 3.3333; 2 of 4 trades win
    assert m.profit_factor(trades) == pytest.approx(3.333333, abs=1e-6)
    assert m.hit_ratio(trades) == 0.5
    assert m.profit_factor(np.array([0.01, 0.02])) == m.PROFIT_FACTOR_CAP == 10.0
    assert m.profit_factor(np.array([])) == 0.0
    assert m.hit_ratio(np.array([])) == 0.0
    # a huge ratio is capped too: 1.0 / 0.01 = 100 -> 10
    assert m.profit_factor(np.array([1.0, -0.01])) == 10.0


def test_directional_accuracy_ignores_bars_without_move():
    pred = np.array([0.1, -0.2, 0.3, 0.4, -0.1])
    actual = np.array([0.5, 0.1, -0.1, 0.0, -0.3])
    # bar 3 did not move; of the other 4, bars 0 and 4 have matching signs -> 2/4
    assert m.directional_accuracy(pred, actual) == 0.5


def test_composite_score_weights():
    # 0.4*1 + 0.3*2 + 0.2*(1 - 0.1) + 0.1*0.5 = 0.4 + 0.6 + 0.18 + 0.05
    assert m.composite_score(1.0, 2.0, 0.1, 0.5) == pytest.approx(1.23)


def test_metrics_reject_nan():
    with pytest.raises(ValueError, match="NaN"):
        m.sharpe_ratio(np.array([0.1, np.nan]), PPY)


def test_constant_nonzero_returns_score_zero_sharpe_not_rounding_noise():
    assert m.sharpe_ratio(np.full(100, 0.001), 1) == 0.0


# ----------------------------------------------------------------------------- empyrical
@pytest.fixture(scope="module")
def real_strategy_returns(candles_1h):
    """Net returns of a simple real strategy on BTC/USDT 1h 2023: long when the last bar rose,
    short when it fell, 0.04 % fee per unit of turnover; and the buy-and-hold returns."""
    close = candles_1h.set_index("timestamp")["close"].loc["2023-01-01":"2023-12-31"]
    r = close.pct_change().dropna().to_numpy()
    pos = np.sign(np.concatenate([[0.0], r[:-1]]))
    turnover = np.abs(np.diff(np.concatenate([[0.0], pos])))
    return pos * r - 0.0004 * turnover, r


@pytest.mark.parametrize("which", [0, 1])
def test_metrics_agree_with_empyrical_reloaded(real_strategy_returns, which):
    empyrical = pytest.importorskip("empyrical")
    r = real_strategy_returns[which]
    ppy = 8760
    assert m.sharpe_ratio(r, ppy) == pytest.approx(empyrical.sharpe_ratio(r, annualization=ppy),
                                                  rel=1e-9)
    assert m.sortino_ratio(r, ppy) == pytest.approx(
        empyrical.sortino_ratio(r, annualization=ppy), rel=1e-9)
    assert m.downside_risk(r, ppy) == pytest.approx(
        empyrical.downside_risk(r, annualization=ppy), rel=1e-9)
    assert m.max_drawdown(r) == pytest.approx(-empyrical.max_drawdown(r), rel=1e-9)
    assert m.annual_return(r, ppy) == pytest.approx(
        empyrical.annual_return(r, annualization=ppy), rel=1e-9)
    assert m.calmar_ratio(r, ppy) == pytest.approx(
        empyrical.calmar_ratio(r, annualization=ppy), rel=1e-9)
    assert m.total_return(r) == pytest.approx(empyrical.cum_returns_final(r), rel=1e-9)


def test_drawdown_counts_the_starting_capital_as_a_peak_like_empyrical():
    empyrical = pytest.importorskip("empyrical")
    r = np.array([-0.05, 0.01, 0.02])
    assert m.max_drawdown(r) == pytest.approx(0.05)
    assert empyrical.max_drawdown(r) == pytest.approx(-0.05)
