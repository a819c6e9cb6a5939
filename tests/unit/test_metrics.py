"""Each metric against numbers computed by hand (arithmetic shown in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from huracan.evaluation import execution as ex
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


# ----------------------------------------------------------------------------- costs, benchmark
def test_breakeven_bps_solves_the_compounded_return_exactly():
    # (1.5 - x)(0.6 - x) = 1  ->  x^2 - 2.1 x - 0.1 = 0  ->  x = (2.1 - sqrt(4.81)) / 2
    x = (2.1 - math.sqrt(4.81)) / 2  # -0.0465856: a rebate of 465.9 bps per unit turnover
    assert ex.breakeven_bps(np.array([0.5, -0.4]), np.array([1.0, 1.0])) == pytest.approx(
        1e4 * x, abs=1e-6)


def test_breakeven_bps_charges_only_the_traded_bars_and_sits_near_the_first_order_figure():
    net, turnover = np.array([0.02, 0.01, -0.005]), np.array([1.0, 0.0, 1.0])
    # (1.02 - x) * 1.01 * (0.995 - x) = 1  ->  x^2 - 2.015 x + (1.0149 - 1/1.01) = 0
    c = 1.0149 - 1 / 1.01
    x = (2.015 - math.sqrt(2.015**2 - 4 * c)) / 2  # 0.0123843
    be = ex.breakeven_bps(net, turnover)
    assert be == pytest.approx(1e4 * x, abs=1e-6)
    assert np.prod(1 + net - be * 1e-4 * turnover) == pytest.approx(1.0, abs=1e-12)
    # first order: 1e4 * sum(net) / sum(turnover) = 1e4 * 0.025 / 2 = 125 bps (exact: 123.84)
    assert 1e4 * net.sum() / turnover.sum() == pytest.approx(125.0)
    assert abs(be - 125.0) < 2.0


def test_breakeven_bps_of_a_strategy_that_breaks_even_is_zero():
    assert ex.breakeven_bps(np.array([0.1, -1 / 11]), np.array([1.0, 1.0])) == pytest.approx(
        0.0, abs=1e-6)  # 1.1 * (10 / 11) = 1


def test_breakeven_bps_is_nan_without_turnover_or_after_a_total_loss():
    assert math.isnan(ex.breakeven_bps(np.array([0.01, 0.02]), np.zeros(2)))
    # a bar without trading already wiped the account out: no cost brings the return to 0
    assert math.isnan(ex.breakeven_bps(np.array([0.01, -1.0]), np.array([1.0, 0.0])))
    with pytest.raises(ValueError, match="turnover must be >= 0"):
        ex.breakeven_bps(np.array([0.01]), np.array([-1.0]))
    with pytest.raises(ValueError, match="returns have 2 bars and turnover 1"):
        ex.breakeven_bps(np.array([0.01, 0.0]), np.array([1.0]))


# strategy R = [0.01, -0.02, 0.03, 0.0] against a benchmark B on the same 4 bars
B = np.array([0.0, -0.01, 0.01, 0.01])


def test_excess_return_is_the_annualised_mean_excess_as_in_qlib():
    # excess = [0.01, -0.01, 0.02, -0.01]: mean 0.0025 per bar * 4 bars a year = 0.01
    assert m.excess_return(R, B, PPY) == pytest.approx(0.01)
    # not the difference of compounded returns: 0.019494 - (0.99 * 1.01 * 1.01 - 1) = 0.009595
    assert m.total_return(R) - m.total_return(B) == pytest.approx(0.009595)


def test_information_ratio_hand_computed():
    # excess deviations from 0.0025: 0.0075, -0.0125, 0.0175, -0.0125
    # sample var = (5.625e-5 + 1.5625e-4 + 3.0625e-4 + 1.5625e-4) / 3 = 2.25e-4 -> sd 0.015
    # IR = 0.0025 / 0.015 * sqrt(4) = 0.333333
    assert m.information_ratio(R, B, PPY) == pytest.approx(1 / 3)
    assert m.information_ratio(R, R, PPY) == 0.0  # the benchmark itself: no active risk
    with pytest.raises(ValueError, match="returns have 4 bars and the benchmark 3"):
        m.information_ratio(R, B[:3], PPY)


def test_information_ratio_agrees_with_empyrical_excess_sharpe(real_strategy_returns):
    empyrical = pytest.importorskip("empyrical")
    net, bh = real_strategy_returns
    assert m.information_ratio(net, bh, 8760) == pytest.approx(
        empyrical.excess_sharpe(net, bh) * math.sqrt(8760), rel=1e-9)


def test_cost_sensitivity_charges_the_extra_cost_per_unit_turnover():
    curve = ex.cost_sensitivity(np.array([0.01, 0.01]), np.array([1.0, 0.0]), PPY,
                               extra_bps=(0.0, 50.0))
    assert list(curve["extra_bps"]) == [0.0, 50.0]
    # 0 bps: a constant series scores Sharpe 0 (module convention); total 1.01^2 - 1
    assert curve["sharpe"][0] == 0.0 and curve["total_return"][0] == pytest.approx(0.0201)
    # 50 bps on the first bar only: [0.005, 0.01]; mean 0.0075, sd 0.0035355 -> * sqrt(4)
    assert curve["sharpe"][1] == pytest.approx(0.0075 / math.sqrt(1.25e-5) * 2)
    assert curve["total_return"][1] == pytest.approx(1.005 * 1.01 - 1)
    assert len(ex.cost_sensitivity(R, np.ones(4), PPY)["sharpe"]) == 51  # 0, 1, ..., 50 bps
