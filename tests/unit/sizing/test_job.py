"""The sizer job's data preparation, by hand: regime one-hot, intrabar returns, the OOS frame on
the execution model's bars; the cash floor of the served policy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from huracan.evaluation.backtest import BacktestConfig
from huracan.sizing.baselines import evaluate_baselines, flat
from huracan.sizing.data import (
    REGIME_COLUMNS,
    intrabar_returns,
    oos_rows,
    regime_onehot,
    registered_sizer_name,
    sizer_bars,
    sizing_frame,
)
from huracan.sizing.env import EnvConfig, SizingData
from huracan.sizing.job import SizerSettings, cash_floor

TS = pd.date_range("2024-01-01", periods=4, freq="1h", tz="UTC")


def test_regime_onehot_always_has_the_five_columns():
    out = regime_onehot(["low", None, "extreme", "sideways"])
    assert tuple(out.columns) == REGIME_COLUMNS
    np.testing.assert_array_equal(out.sum(axis=1), 1.0)
    assert out.loc[0, "regime_low"] == 1 and out.loc[2, "regime_extreme"] == 1
    assert out.loc[1, "regime_unknown"] == 1 and out.loc[3, "regime_unknown"] == 1


def test_intrabar_returns_by_hand_and_bracketing():
    candles = pd.DataFrame({"timestamp": TS, "close": [100.0, 102.0, 101.0, 99.0],
                            "low": [99.0, 98.0, 100.0, 97.0], "high": [101.0, 103.0, 104.0, 99.5]})
    nxt = np.array([0.02, 101 / 102 - 1, 99 / 101 - 1, 0.0])
    low, high = intrabar_returns(TS, candles, "1h", nxt)
    np.testing.assert_allclose(low[:3], [98 / 100 - 1, 100 / 102 - 1, 97 / 101 - 1])
    np.testing.assert_allclose(high[:3], [103 / 100 - 1, 104 / 102 - 1, 99.5 / 101 - 1])
    assert low[3] == high[3] == 0.0  # no next bar: the close-to-close return itself
    assert (low <= nxt).all() and (high >= nxt).all()


def test_sizing_frame_on_the_execution_models_bars_with_funding_legs():
    ts5 = pd.date_range("2024-01-01", periods=5, freq="1h", tz="UTC")
    candles = pd.DataFrame({"timestamp": ts5, "open": [100.0, 101.0, 99.0, 103.0, 102.0],
                            "high": [102.0, 103.0, 104.0, 104.0, 103.0],
                            "low": [99.0, 98.0, 98.5, 101.0, 100.0],
                            "close": [100.5, 100.0, 102.0, 102.5, 101.0],
                            "volume": [1.0] * 5})
    oos = pd.DataFrame({"timestamp": TS, "fold": 0, "prediction": [0.001, -0.002, np.nan, 0.0],
                        "asset_return": [0.01, -0.01, 0.02, 0.0], "label": [0.01, -0.01, 0.02, 0],
                        "regime": ["low", "high", "high", "unknown"]})
    settle = pd.DataFrame({"timestamp": [TS[2]], "funding_rate": [0.0001]})
    rows = oos_rows(oos)
    assert list(rows) == [TS[0], TS[1], TS[3]]  # the bar without a forecast is left out
    bars = sizer_bars(rows, candles, "1h", BacktestConfig(), funding=settle, perpetual=True)
    close, opens = candles["close"].to_numpy(), candles["open"].to_numpy()
    # next-open fills: the gap leg to the next open, the hold leg on to the next close
    np.testing.assert_allclose(bars.gap, opens[[1, 2, 4]] / close[[0, 1, 3]] - 1)
    np.testing.assert_allclose(bars.next_return, close[[1, 2, 4]] / close[[0, 1, 3]] - 1)
    # fee 4 bps + half-spread 1 bp + slippage 1 bp per unit of turnover; no borrow on a perpetual
    np.testing.assert_allclose(bars.cost_lin, 6e-4)
    assert not bars.borrow.any()
    # the settlement at TS[2] (row 1's close and fill instant) is paid by the position held
    # before row 1's fill: row 1's gap leg
    np.testing.assert_allclose(bars.funding_gap, [0.0, 0.0001, 0.0])
    np.testing.assert_allclose(bars.funding_hold, 0.0)
    frame = sizing_frame(oos, candles, "1h", bars)
    data = SizingData.from_frame(frame, bars=bars)
    np.testing.assert_allclose(data.forecast, [0.001, -0.002, 0.0])
    np.testing.assert_allclose(data.next_return, bars.next_return)  # the candles' return
    assert data.bars is bars and data.regime is not None and data.regime.shape == (3, 5)
    assert data.slice(1).bars is not None and len(data.slice(1).bars) == 2
    # a spot market charges borrow on shorts instead of funding
    spot = sizer_bars(rows, candles, "1h", BacktestConfig(borrow_rate=0.0876))
    np.testing.assert_allclose(spot.borrow, 0.0876 / 8760)
    # the last candle has no next bar: refused, or flat with unknown_flat (serving)
    with pytest.raises(ValueError, match="without a next bar"):
        sizer_bars(ts5[3:], candles, "1h", BacktestConfig())
    live = sizer_bars(ts5[3:], candles, "1h", BacktestConfig(), unknown_flat=True)
    assert live.gap[-1] == live.hold[-1] == 0.0


def test_cash_floor_serves_flat_unless_the_policy_beats_cash():
    n = 600
    rng = np.random.default_rng(3)
    ts = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC")
    r = rng.normal(0.0, 0.006, n)
    cfg = EnvConfig(episode_bars=None, random_start=False)
    noise = SizingData(ts, rng.normal(0.0, 0.002, n), r)
    test = evaluate_baselines(noise, cfg) | {"flat": flat(noise, cfg)}
    serve, reason, verdict = cash_floor("fixed", test, 0.9, n)
    assert serve == "flat" and "does not beat cash" in reason and not verdict["beats"]
    assert "serves flat" in reason
    # a forecast that knows the next return beats cash by far
    oracle = SizingData(ts, r, r)
    test = evaluate_baselines(oracle, cfg)
    serve, reason, verdict = cash_floor("sign_rule", test, 0.9, n)
    assert serve == "sign_rule" and verdict["beats"] and verdict["psr"] >= 0.9
    assert cash_floor("flat", test, 0.9, n)[0] == "flat"


def test_settings_refuse_bad_values_and_name():
    with pytest.raises(ValueError, match="summing to 1"):
        SizerSettings(split=(0.5, 0.2, 0.2))
    with pytest.raises(ValueError, match=r"sizer\.funding"):
        SizerSettings(funding="exchange")
    with pytest.raises(ValueError, match=r"sizer\.serve"):
        SizerSettings(serve="martingale")
    assert SizerSettings(serve="flat").serve == "flat"
    assert registered_sizer_name("BTC/USDT", "1h") == "huracan-sizer-BTCUSDT-1h"
