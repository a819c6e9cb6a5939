"""The execution model (huracan/evaluation/execution.py): the formula by hand for each fill mode,
funding legs, borrow, impact, the spread estimators, trade attribution, and the synthetic series
the issue names (bid-ask bounce, a close-to-open gap forecast, a slow autocorrelated drift)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from huracan.evaluation.backtest import BacktestConfig
from huracan.evaluation.execution import (
    MarketBars,
    abdi_ranaldo_spread,
    bar_return,
    bars_frame,
    bars_from_frame,
    close_bars,
    corwin_schultz_spread,
    diagnostics,
    estimate_half_spread,
    execute,
    extract_trades,
    lagged,
    market_bars,
    round_trip_cost,
    trade_cost,
)

H1 = pd.Timedelta("1h")
FREE = {"half_spread": 0.0, "slippage_bps": 0.0, "borrow_rate": 0.0}


def frame(close, next_open, next_close, start="2024-01-01 00:00", **extra) -> pd.DataFrame:
    """Feature-frame rows: bar_close, next_open (open of bar t+1), next_return (close to
    close)."""
    close = np.asarray(close, dtype=np.float64)
    idx = pd.date_range(start, periods=len(close), freq="1h", tz="UTC", name="timestamp")
    out = pd.DataFrame({"bar_close": close, "next_open": np.asarray(next_open, np.float64),
                        "next_return": np.asarray(next_close, np.float64) / close - 1.0},
                       index=idx)
    for k, v in extra.items():
        out[k] = np.asarray(v, dtype=np.float64)
    return out


# closes 100, 102, 101, then 104; opens of the next bars 101, 101, 103
F3 = frame([100.0, 102.0, 101.0], [101.0, 101.0, 103.0], [102.0, 101.0, 104.0])
POS3 = np.array([1.0, -1.0, 0.0])


def test_next_open_fill_by_hand():
    bars = market_bars(F3, BacktestConfig(fee=0.001, **FREE), 8760)
    assert bars.gap == pytest.approx([0.01, 101 / 102 - 1, 103 / 101 - 1])
    assert bars.hold == pytest.approx([102 / 101 - 1, 0.0, 104 / 103 - 1])
    assert bars.next_return == pytest.approx(F3["next_return"].to_numpy())
    r = execute(POS3, bars, 8760).returns
    # bar 0: flat before, long filled at 101, marked at 102; fee on 1 unit
    # bar 1: the long holds the gap 102 -> 101, flips short at 101 (2 units), short 101 -> 101
    # bar 2: the short holds the gap 101 -> 103, exits at 103 (1 unit)
    want = [102 / 101 - 1 - 0.001, 101 / 102 - 1 - 0.002, -(103 / 101 - 1) - 0.001]
    assert r["strategy_return"].to_numpy() == pytest.approx(want, abs=1e-15)
    assert r["turnover"].tolist() == [1.0, 2.0, 1.0]
    assert r["cost"].to_numpy() == pytest.approx([0.001, 0.002, 0.001])
    t = execute(POS3, bars, 8760).trades
    assert t["side"].tolist() == ["long", "short"]
    # the long: bar 0, then its gap leg into bar 1's fill and half the flip's fee
    assert t["return"].iloc[0] == pytest.approx((102 / 101 - 0.001) * (101 / 102 - 0.001) - 1)
    # the short: bar 1's growth factor without the long's part (costs are charged on the
    # equity at C_t, so the short's fee is 0.001 of it), then its gap leg and exit fee in bar 2
    bar1 = (101 / 102 - 0.002) / (101 / 102 - 0.001)
    assert t["return"].iloc[1] == pytest.approx(bar1 * (1 - (103 / 101 - 1) - 0.001) - 1)
    assert bar1 == pytest.approx(1 - 0.001 / (101 / 102 - 0.001))


def test_close_fill_by_hand():
    bars = market_bars(F3, BacktestConfig(fee=0.001, fill="close", **FREE), 8760)
    assert bars.gap.tolist() == [0.0, 0.0, 0.0]
    r = execute(POS3, bars, 8760).returns
    assert r["strategy_return"].to_numpy() == pytest.approx(
        [0.02 - 0.001, -(101 / 102 - 1) - 0.002, -0.001], abs=1e-15)


def test_delay_fill_by_hand_and_its_error():
    # 5m bars from 01:00 to 03:55; a bar's close = 100 + minutes / 100 (the 01:05 close: 101.05)
    opens = pd.date_range("2024-01-01 01:00", "2024-01-01 03:55", freq="5min", tz="UTC")
    minutes = (opens - opens[0]).total_seconds() / 60 + 5
    fine = pd.DataFrame({"timestamp": opens, "close": 101.0 + minutes / 100})
    cfg = BacktestConfig(fee=0.001, fill="delay", latency="5m", **FREE)
    bars = market_bars(F3, cfg, 8760, fine=fine)
    # the first 5m bar closing >= 5 min after 01:00, 02:00, 03:00 closes at 01:05, 02:05, 03:05
    fills = np.array([101.05, 101.65, 102.25])
    assert bars.gap == pytest.approx(fills / F3["bar_close"].to_numpy() - 1)
    assert bars.hold == pytest.approx(np.array([102.0, 101.0, 104.0]) / fills - 1)
    late = market_bars(F3, BacktestConfig(fill="delay", latency="12min", **FREE), 8760,
                       fine=fine)  # first close >= 01:12 is 01:15's
    assert late.gap[0] == pytest.approx(101.15 / 100 - 1)
    with pytest.raises(ValueError, match=r"^backtest.fill=delay: no bar of the finer series "
                                         r".*2 of 3 bar\(s\), first the bar opening 2024-01-01 "
                                         r"01:00") as err:
        market_bars(F3, cfg, 8760, fine=fine[fine["timestamp"] < "2024-01-01 02:00"])
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="needs a finer series"):
        market_bars(F3, cfg, 8760)


def test_funding_legs_split_at_the_fill():
    f = frame([100.0, 100.0, 100.0], [100.0] * 3, [100.0] * 3, start="2024-01-01 06:00")
    settle = pd.DataFrame({
        "timestamp": pd.to_datetime(["2024-01-01 08:00:00.007", "2024-01-01 08:30:00.000",
                                     "2024-01-01 16:00:00.000"], utc=True),
        "funding_rate": [0.001, 0.0005, 0.002]})
    bars = market_bars(f, BacktestConfig(fee=0.0, **FREE), 8760, funding=settle,
                       perpetual=True)
    # row 07:00 closes at 08:00 = its fill (next open): the 08:00 settlement (jitter floored)
    # is paid by the position held before the fill; 08:30 falls in its hold leg
    assert bars.funding_gap.tolist() == [0.0, 0.001, 0.0]
    assert bars.funding_hold.tolist() == [0.0, 0.0005, 0.0]
    r = execute(np.array([1.0, -1.0, -1.0]), bars, 8760).returns
    # the long pays 0.001 at 08:00, the short receives 0.0005 at 08:30
    assert r["funding_cost"].tolist() == pytest.approx([0.0, 0.0005, 0.0])
    assert r["strategy_return"].tolist() == pytest.approx([0.0, -0.0005, 0.0])
    # filled 45 min late: both settlements fall before the fill and go to the old position
    opens = pd.date_range("2024-01-01 07:00", "2024-01-01 09:45", freq="15min", tz="UTC")
    fine = pd.DataFrame({"timestamp": opens, "close": 100.0})
    late = market_bars(f, BacktestConfig(fee=0.0, fill="delay", latency="45min", **FREE), 8760,
                       funding=settle, fine=fine, perpetual=True)
    assert late.funding_gap.tolist() == pytest.approx([0.0, 0.0015, 0.0])
    assert late.funding_hold.tolist() == [0.0, 0.0, 0.0]


def test_borrow_on_spot_shorts_only():
    f = frame([100.0] * 3, [100.0] * 3, [100.0] * 3)
    cfg = BacktestConfig(fee=0.0, half_spread=0.0, slippage_bps=0.0, borrow_rate=0.0876)
    bars = market_bars(f, cfg, 8760)
    assert bars.borrow == pytest.approx([1e-5] * 3)  # 8.76 % a year over 8,760 bars
    r = execute(np.array([-1.0, -0.5, 1.0]), bars, 8760).returns
    assert r["borrow_cost"].to_numpy() == pytest.approx([1e-5, 0.5e-5, 0.0])
    assert market_bars(f, cfg, 8760, perpetual=True).borrow.tolist() == [0.0] * 3


def test_square_root_impact_by_hand():
    close = [100.0, 101.0, 99.99, 100.5]
    f = frame(close, [*close[1:], 100.0], [*close[1:], 100.0], bar_volume=[10, 20, 30, 40])
    cfg = BacktestConfig(fee=0.0, notional=1e6, impact_coef=0.5, spread_window=3, **FREE)
    bars = market_bars(f, cfg, 8760)
    # row 2: sigma = std (ddof 1) of the log returns of rows 1 and 2, volume = mean of rows 0-2
    sigma = np.std([math.log(101 / 100), math.log(99.99 / 101)], ddof=1)
    want = 0.5 * sigma * math.sqrt(1e6 / (99.99 * 20.0))
    assert bars.impact[2] == pytest.approx(want)
    assert bars.impact[0] == 0.0  # no two returns yet
    # a flip of 2 units pays impact * 2^1.5
    assert trade_cost(2.0, 0.0, bars.impact[2]) == pytest.approx(want * 2 ** 1.5)
    r = execute(np.array([0.0, 0.0, 1.0, -1.0]), bars, 8760).returns
    assert r["cost"].to_numpy() == pytest.approx([0, 0, bars.impact[2],
                                                  bars.impact[3] * 2 ** 1.5])
    assert round_trip_cost(bars)[2] == pytest.approx(2 * bars.impact[2])
    with pytest.raises(ValueError, match="no traded volume in the trailing 3 bars of row 0"):
        market_bars(f.assign(bar_volume=0.0), cfg, 8760)


def test_costs_per_unit_turnover_add_up():
    f = frame([100.0] * 3, [100.0] * 3, [100.0] * 3)
    bars = market_bars(f, BacktestConfig(), 8760)  # defaults: 4 + 1 + 1 bps
    assert bars.cost_lin == pytest.approx([0.0006] * 3)


def test_bar_return_scalar_equals_array():
    rng = np.random.default_rng(3)
    cols = rng.normal(0, 0.01, size=(9, 50))
    cols[4] = np.abs(cols[4])  # cost_lin
    cols[5] = np.abs(cols[5])  # impact
    cols[8] = np.abs(cols[8])  # borrow
    vec = bar_return(*cols)
    one = [bar_return(*(float(c[i]) for c in cols)) for i in range(50)]
    assert np.array_equal(vec, np.array(one))


def test_a_step_by_step_loop_on_the_bars_lists_is_the_vectorised_execution():
    """What the sizer's environment does: one scalar bar_return per step on precomputed bars."""
    rng = np.random.default_rng(8)
    n = 200
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n + 1)))
    f = frame(close[:-1], close[1:] * (1 + rng.normal(0, 0.001, n)), close[1:],
              bar_volume=rng.uniform(10, 20, n))
    bars = market_bars(f, BacktestConfig(notional=1e5, spread_window=24), 8760)
    pos = np.round(rng.uniform(-1, 1, n), 2)
    lists = bars.step_lists()
    prev, net = 0.0, []
    for t in range(n):
        p = float(pos[t])
        net.append(bar_return(prev, p, *(col[t] for col in lists)))
        prev = p
    assert all(type(x) is float for x in net)
    want = execute(pos, bars, 8760).returns["strategy_return"].to_numpy()
    assert np.array(net) == pytest.approx(want, rel=1e-12, abs=1e-17)


# ---------------------------------------------------------------------------- spread
HLC = np.array([[101.0, 99.0, 100.5], [102.0, 100.0, 101.5], [101.5, 99.5, 100.0],
                [99.0, 98.0, 98.5]])
TS4 = pd.date_range("2024-01-01", periods=4, freq="1h", tz="UTC")


def test_abdi_ranaldo_by_hand():
    h, lo, c = HLC.T
    lc, eta = np.log(c), (np.log(h) + np.log(lo)) / 2
    # the products 4 (c_{s-1} - eta_{s-1}) (c_{s-1} - eta_s) of the three pairs
    prods = [4 * (lc[s - 1] - eta[s - 1]) * (lc[s - 1] - eta[s]) for s in (1, 2, 3)]
    assert prods == pytest.approx([-9.9013e-05, 1.98506e-04, -2.98781e-04], rel=1e-4)
    s = abdi_ranaldo_spread(h, lo, c, TS4, H1, window=3)  # 2 pairs per window
    assert np.isnan(s[0])
    assert s[1] == 0.0  # a negative mean product: spread 0
    assert s[2] == pytest.approx(math.sqrt((prods[0] + prods[1]) / 2))  # 0.0070531
    assert s[2] == pytest.approx(0.0070531069, rel=1e-8)
    assert s[3] == 0.0
    # a pair across a data gap is skipped
    gapped = pd.DatetimeIndex([TS4[0], TS4[1], TS4[2], TS4[3] + H1])
    s_gap = abdi_ranaldo_spread(h, lo, c, gapped, H1, window=3)
    assert s_gap[3] == pytest.approx(math.sqrt(prods[1]))


def test_corwin_schultz_by_hand():
    h, lo, c = HLC.T

    def two_bar(s: int) -> float:
        shift = max(0.0, c[s - 1] - h[s]) + min(0.0, c[s - 1] - lo[s])
        h2, l2 = h[s] + shift, lo[s] + shift
        beta = math.log(h[s - 1] / lo[s - 1]) ** 2 + math.log(h2 / l2) ** 2
        gamma = math.log(max(h[s - 1], h2) / min(lo[s - 1], l2)) ** 2
        k = 3 - 2 * math.sqrt(2)
        alpha = (math.sqrt(2 * beta) - math.sqrt(beta)) / k - math.sqrt(gamma / k)
        return 2 * (math.exp(alpha) - 1) / (1 + math.exp(alpha))

    pairs = [two_bar(s) for s in (1, 2, 3)]
    # the last pair's close (100) is above bar 3's high (99): bar 3 shifted up by 1
    assert pairs == pytest.approx([-0.0041221, 0.0078696, -0.0063831], abs=1e-7)
    s = corwin_schultz_spread(h, lo, c, TS4, H1, window=3)
    assert s[1] == 0.0  # negative two-bar estimates count as 0
    assert s[2] == pytest.approx(pairs[1] / 2)
    assert s[3] == pytest.approx(pairs[1] / 2)


def bounce_candles(n: int, spread: float, vol: float, seed: int, trades: int = 12,
                   drift: np.ndarray | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """Candles of trades at the bid or the ask (a fair coin each) around a random-walk mid:
    ``trades`` per bar, ``spread`` (fraction) wide; ``drift`` (per bar) moves the mid. Returns
    the candles (``n + 1`` bars) and the mid at each close."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(0, vol / np.sqrt(trades), size=(n + 1) * trades)
    if drift is not None:
        steps += np.repeat(drift, trades) / trades
    mid = 100 * np.exp(np.cumsum(steps)).reshape(n + 1, trades)
    px = mid * (1 + rng.choice([-1.0, 1.0], size=mid.shape) * spread / 2)
    ts = pd.date_range("2024-01-01", periods=n + 1, freq="1h", tz="UTC")
    return pd.DataFrame({"timestamp": ts, "open": px[:, 0], "high": px.max(1),
                         "low": px.min(1), "close": px[:, -1], "volume": 1.0}), mid[:, -1]


def rows_of(c: pd.DataFrame) -> pd.DataFrame:
    """The feature-frame columns the execution model reads, one row per bar but the last."""
    close = c["close"].to_numpy()
    return pd.DataFrame({"bar_close": close[:-1], "bar_high": c["high"].to_numpy()[:-1],
                         "bar_low": c["low"].to_numpy()[:-1], "next_open": c["open"].to_numpy()[1:],
                         "next_return": close[1:] / close[:-1] - 1,
                         "bar_volume": c["volume"].to_numpy()[:-1]},
                        index=pd.DatetimeIndex(c["timestamp"][:-1], name="timestamp"))


def test_abdi_ranaldo_recovers_a_simulated_spread():
    candles, _ = bounce_candles(5000, spread=0.002, vol=0.003, seed=0)
    half = estimate_half_spread(candles, "abdi_ranaldo", 168, "1h")
    # 12 trades a bar understate the range a little: within 15 % of the true 10 bps half-spread
    assert np.nanmedian(half) == pytest.approx(0.001, rel=0.15)
    assert estimate_half_spread(candles, "corwin_schultz", 168).notna().sum() == 5000
    # candles read from Parquet carry millisecond timestamps: the same estimate
    ms = candles.assign(timestamp=candles["timestamp"].astype("datetime64[ms, UTC]"))
    assert estimate_half_spread(ms, "abdi_ranaldo", 168, "1h").to_numpy() == pytest.approx(
        half.to_numpy(), nan_ok=True)
    with pytest.raises(ValueError, match="unknown spread estimator 'roll'"):
        estimate_half_spread(candles, "roll", 168)


# ---------------------------------------------------------------------------- the series
def test_next_open_with_open_at_the_previous_close_is_the_close_fill_exactly():
    rng = np.random.default_rng(7)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 201)))
    f = frame(close[:-1], close[:-1], close[1:])  # every open is the previous close
    pos = np.sign(rng.normal(size=200)) * (rng.random(200) > 0.3)
    cfg = BacktestConfig(fee=0.0004, **FREE)
    now = execute(pos, market_bars(f, cfg, 8760), 8760)
    then = execute(pos, close_bars(f.index, f["next_return"].to_numpy(), 0.0004), 8760)
    same = [c for c in now.returns.columns if c != "exec_fill"]  # the fill's name differs
    pd.testing.assert_frame_equal(now.returns[same], then.returns[same], check_exact=True)
    pd.testing.assert_frame_equal(now.trades, then.trades, check_exact=True)
    assert now.metrics == then.metrics
    # and bit for bit today's formula: position * next_return - fee * turnover
    r = f["next_return"].to_numpy()
    turnover = np.abs(np.diff(np.concatenate([[0.0], pos])))
    assert np.array_equal(now.returns["strategy_return"].to_numpy(), pos * r - 0.0004 * turnover)


def test_a_forecast_of_the_close_to_open_gap_earns_exactly_zero_under_next_open():
    # Prices move ONLY across the close-to-open gap: every bar opens and closes at one price,
    # so the hold leg O_{t+1} -> C_{t+1} is exactly 0, and only every other gap is non-zero:
    # gap_t = O_{t+1} / C_t - 1 != 0 at even t, exactly 0 at odd t. The forecast at
    # bar t is the next gap itself (a perfect forecast of it), so it is non-zero only at even t
    # and its position is then exposed, under next_open, to the hold leg of bar t+1 (0) and to
    # the gap leg of row t+1 (0: odd). Each product in the formula has a factor exactly 0, so
    # the gross return is exactly 0.0 on every bar; under the close fill the same forecast
    # earns every gap it predicts.
    rng = np.random.default_rng(11)
    n = 300
    gaps = np.where(np.arange(n) % 2 == 0, rng.normal(0, 0.01, n), 0.0)
    price = np.empty(n + 1)
    price[0] = 100.0
    for t in range(n):
        price[t + 1] = price[t] * (1 + gaps[t]) if gaps[t] else price[t]
    # bar t: open == close == price[t]; the next bar opens (and closes) at price[t + 1]
    f = frame(price[:-1], price[1:], price[1:])
    forecast = f["next_open"].to_numpy() / f["bar_close"].to_numpy() - 1
    assert (forecast[1::2] == 0).all() and (forecast[::2] != 0).all()
    pos = np.sign(forecast)
    cfg = BacktestConfig(fee=0.0004, **FREE)
    nxt = execute(pos, market_bars(f, cfg, 8760), 8760).returns
    assert (nxt["gross_return"].to_numpy() == 0.0).all()
    close = execute(pos, market_bars(f, BacktestConfig(fee=0.0004, fill="close", **FREE), 8760),
                    8760).returns
    assert close["gross_return"].to_numpy() == pytest.approx(np.abs(gaps), abs=1e-15)


def test_a_bid_ask_bounce_edge_vanishes_under_next_open_with_the_half_spread():
    candles, mid = bounce_candles(4000, spread=0.002, vol=0.003, seed=5)
    f = rows_of(candles)
    # the forecaster knows on which side of the mid each close traded and bets on the bounce
    pos = -np.sign(f["bar_close"].to_numpy() - mid[:-1])
    close = execute(pos, market_bars(f, BacktestConfig(fill="close", **FREE), 8760), 8760)
    assert close.metrics.sharpe > 5  # the close fill "earns" the bounce
    for half in (10.0, "abdi_ranaldo"):  # the true half-spread, or estimated from the candles
        cfg = BacktestConfig(half_spread=half, slippage_bps=0.0)
        res = execute(pos, market_bars(f, cfg, 8760), 8760)
        assert res.metrics.sharpe <= 0
        assert res.metrics.total_return < 0


def test_a_slow_autocorrelated_drift_keeps_its_edge_under_next_open():
    n = 4000
    rng = np.random.default_rng(9)
    mu = np.zeros(n + 1)
    for t in range(1, n + 1):  # AR(1) drift per bar, phi 0.99: persistent over ~100 bars
        mu[t] = 0.99 * mu[t - 1] + rng.normal(0, 0.00005)
    candles, _ = bounce_candles(n, spread=0.001, vol=0.003, seed=2, drift=mu)
    f = rows_of(candles)
    pos = np.sign(mu[:n])  # the drift known at each close
    for cfg in (BacktestConfig(), BacktestConfig(half_spread="abdi_ranaldo")):
        res = execute(pos, market_bars(f, cfg, 8760), 8760)
        assert res.metrics.sharpe > 1.0
        assert res.metrics.total_return > 0


# ---------------------------------------------------------------------------- trades
def test_trades_resize_flip_and_end_open_attributed_exactly():
    rng = np.random.default_rng(4)
    pos = np.array([0.0, 0.5, 1.0, 1.0, -1.0, -0.25, 0.0, 0.0, 0.5, 1.0])
    n = len(pos)
    ts = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC")
    bars = MarketBars(ts, gap=rng.normal(0, 0.002, n), hold=rng.normal(0, 0.01, n),
                      cost_lin=np.full(n, 0.0006), impact=np.full(n, 0.0003),
                      funding_gap=rng.normal(0, 1e-4, n), funding_hold=rng.normal(0, 1e-4, n),
                      borrow=np.full(n, 1e-5))
    res = execute(pos, bars, 8760, exit_reasons=np.array(["", "", "", "", "", "time", "", "",
                                                          "", ""], dtype=object))
    t, r = res.trades, res.returns
    assert t["side"].tolist() == ["long", "short", "long"]
    assert t["bars"].tolist() == [3, 2, 2]
    assert t["entry_time"].tolist() == [ts[1], ts[4], ts[8]]
    assert t["exit_reason"].tolist() == ["signal", "time", "end_of_data"]
    net, leg = r["strategy_return"].to_numpy(), r["exit_leg"].to_numpy()
    # the short was entered and left flat: all of bars 5, and bar 4 without the long's exit leg,
    # and its own exit leg in bar 6 (gap leg, gap funding, its whole exit cost)
    assert leg[6] == pytest.approx(-0.25 * bars.gap[6] + 0.25 * bars.funding_gap[6]
                                   - trade_cost(0.25, 0.0006, 0.0003))
    short = (1 + net[4]) / (1 + leg[4]) * (1 + net[5]) * (1 + leg[6]) - 1
    assert t["return"].iloc[1] == pytest.approx(short, abs=1e-15)
    # the flip's cost is split by turnover: 1 unit closed, 1 opened
    assert leg[4] == pytest.approx(1.0 * bars.gap[4] - bars.funding_gap[4]
                                   - 0.5 * trade_cost(2.0, 0.0006, 0.0003))
    # the first long, resized 0.5 -> 1.0 inside it: bars 1-3 whole, plus its exit leg
    assert t["return"].iloc[0] == pytest.approx(np.prod(1 + net[1:4]) * (1 + leg[4]) - 1,
                                                abs=1e-15)
    # the last long, open at the end: marked to market, no exit cost
    assert t["return"].iloc[2] == pytest.approx(np.prod(1 + net[8:]) - 1, abs=1e-15)
    # legs attributed exactly: trades + what is left on flat rows == log equity
    flat = pos == 0
    left = np.log1p(net[flat]) - np.log1p(leg[flat])
    assert np.log1p(t["return"]).sum() + left.sum() == pytest.approx(np.log1p(net).sum(),
                                                                    abs=1e-14)
    assert np.abs(left).max() < 1e-15  # nothing of value is left on the flat rows
    assert res.metrics.n_trades == 3


def test_extract_trades_without_positions_and_lag():
    ts = pd.date_range("2024-01-01", periods=4, freq="1h", tz="UTC")
    assert extract_trades(ts, np.zeros(4), np.zeros(4)).empty
    assert lagged(np.array([1.0, -1.0, 0.5])).tolist() == [0.0, 1.0, -1.0]
    with pytest.raises(ValueError, match="lag must be >= 1"):
        lagged(np.ones(3), 0)


def test_diagnostics_close_and_lag1_through_execute():
    rng = np.random.default_rng(2)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 101)))
    opens = close[1:] * (1 + rng.normal(0, 0.001, 100))
    f = frame(close[:-1], opens, close[1:])
    pos = np.sign(rng.normal(size=100))
    bars = market_bars(f, BacktestConfig(), 8760)
    res = execute(pos, bars, 8760)
    d = diagnostics(res, bars, 8760, fee=0.0004)
    r = f["next_return"].to_numpy()
    net_close = pos * r - 0.0004 * np.abs(np.diff(np.concatenate([[0.0], pos])))
    assert d["total_return_close"] == pytest.approx(np.prod(1 + net_close) - 1)
    late = execute(np.concatenate([[0.0], pos[:-1]]), bars, 8760)
    assert d["sharpe_lag1"] == late.metrics.sharpe
    assert d["total_return_lag1"] == late.metrics.total_return


# ---------------------------------------------------------------------------- windows, config
def test_logged_window_bars_round_trip_and_the_compatibility_path():
    cfg = BacktestConfig(half_spread="abdi_ranaldo", spread_window=3)
    f = F3.assign(bar_high=[101.0, 103.0, 102.0], bar_low=[99.0, 100.0, 100.5]).reset_index()
    bars = market_bars(f, cfg, 8760)
    logged = pd.concat([f, bars_frame(bars)], axis=1)
    again = bars_from_frame(logged, BacktestConfig(), 8760)  # the logged columns win
    for k in ("gap", "hold", "cost_lin", "impact", "funding_gap", "funding_hold", "borrow"):
        assert np.array_equal(getattr(again, k), getattr(bars, k))
    assert bars_from_frame(f, BacktestConfig(), 8760).gap[0] == pytest.approx(0.01)
    old = bars_from_frame(f.drop(columns=["next_open", "bar_close"]), BacktestConfig(), 8760)
    assert old.fill == "close" and old.gap.tolist() == [0.0] * 3
    assert old.cost_lin.tolist() == [0.0004] * 3
    assert "window logged before next_open existed" in old.notes[0]
    res = execute(POS3, old, 8760)
    assert res.execution["notes"] == list(old.notes)


@pytest.mark.parametrize("kwargs, message", [
    ({"fill": "open"}, "backtest.fill must be one of next_open, close, delay"),
    ({"half_spread": "roll"}, "backtest.half_spread must be a number of basis points or one of"),
    ({"half_spread": -1}, "backtest.half_spread must be >= 0 bps"),
    ({"latency": "soon"}, "backtest.latency must be a duration"),
    ({"latency": "-5m"}, "backtest.latency must be >= 0"),
    ({"spread_window": 1}, "backtest.spread_window must be >= 2 bars"),
    ({"slippage_bps": -0.5}, "backtest.slippage_bps must be >= 0"),
    ({"borrow_rate": -0.1}, "backtest.borrow_rate must be >= 0"),
    ({"funding": "store"}, "backtest.funding must be auto or none"),
    ({"notional": 0}, "backtest.notional must be > 0"),
])
def test_backtest_config_refuses_bad_values_in_one_line(kwargs, message):
    with pytest.raises(ValueError, match=message) as err:
        BacktestConfig(**kwargs)
    assert "\n" not in str(err.value)


def test_backtest_config_reads_numbers_given_as_text():
    assert BacktestConfig(half_spread="2.5").half_spread == 2.5
    assert BacktestConfig(half_spread="corwin_schultz").half_spread == "corwin_schultz"


def test_market_bars_names_a_missing_column():
    with pytest.raises(ValueError, match=r"backtest\.fill=next_open needs the column 'next_open'"):
        market_bars(F3.drop(columns="next_open"), BacktestConfig(), 8760)
    with pytest.raises(ValueError, match="column 'next_open' is not finite at row 1"):
        market_bars(F3.assign(next_open=[1.0, np.nan, 2.0]), BacktestConfig(), 8760)


def test_a_runs_backtest_settings_come_back_from_its_logged_params():
    from huracan.evaluation.execution import backtest_config_from_params

    cfg = BacktestConfig(threshold=0.001, fee=0.0002, long_only=True, fill="delay",
                         latency="30s", half_spread="corwin_schultz", spread_window=48,
                         slippage_bps=2.0, funding="none", borrow_rate=0.1, notional=5e4,
                         impact_coef=0.7)
    params = {f"backtest.{k}": str(v) for k, v in vars(cfg).items()}  # MLflow logs str(value)
    assert backtest_config_from_params(params) == cfg
    # a run logged before the execution model: its three keys, today's defaults for the rest
    old = backtest_config_from_params({"backtest.threshold": "0.0008", "backtest.fee": "0.0004",
                                       "backtest.long_only": "False"})
    assert old == BacktestConfig(threshold=0.0008)


def test_a_forward_evaluation_runs_on_the_execution_model_and_logs_its_diagnostics():
    from huracan.features.build import FeatureConfig, build_features
    from huracan.splits import forward_split
    from huracan.stages import FoldOutcome, evaluate_forward, run_bars

    candles, _ = bounce_candles(1200, spread=0.001, vol=0.004, seed=3)
    rng = np.random.default_rng(0)
    candles["volume"] = rng.uniform(1, 2, len(candles))
    fs = build_features(candles, "1h", FeatureConfig())
    fold = forward_split(len(fs.frame), embargo=1, horizon=1)
    preds = {"val": rng.normal(0, 0.002, len(fold.val)),
             "test": rng.normal(0, 0.002, len(fold.test))}
    cfg = BacktestConfig()
    ev = evaluate_forward(fs, FoldOutcome(fold, preds, 0.0, 0.0, 0.0), cfg, "1h", "t")
    bars = run_bars(fs, cfg, "1h")
    for part in ("val", "test"):
        rows = getattr(fold, part)
        pos = ev.results[part].returns["position"].to_numpy()
        want = execute(pos, bars.take(rows), 8760)
        assert ev.metrics[f"{part}_sharpe"] == want.metrics.sharpe
        close = execute(pos, close_bars(fs.frame.index[rows.start:rows.stop],
                                        fs.frame["next_return"].to_numpy()[rows.start:rows.stop],
                                        cfg.fee), 8760)
        assert ev.metrics[f"{part}_sharpe_close"] == pytest.approx(close.metrics.sharpe)
        assert ev.metrics[f"{part}_total_return_close"] == pytest.approx(
            close.metrics.total_return)
        late = execute(lagged(pos), bars.take(rows), 8760)
        assert ev.metrics[f"{part}_sharpe_lag1"] == late.metrics.sharpe
        assert ev.evidence[part]["execution"]["fill"] == "next_open"
    assert ev.reports["backtest/execution.json"]["cost_bps_median"] == pytest.approx(6.0)
    assert ev.eval_window is not None and "exec_gap" in ev.eval_window
