"""The sizer job's data preparation, by hand: regime one-hot, intrabar returns, the OOS frame."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from huracan.sizing.env import SizingData
from huracan.sizing.job import (
    REGIME_COLUMNS,
    SizerSettings,
    intrabar_returns,
    regime_onehot,
    registered_sizer_name,
    sizing_frame,
)

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


def test_sizing_frame_reads_as_sizing_data_with_funding_of_the_held_bar():
    oos = pd.DataFrame({"timestamp": TS, "fold": 0, "prediction": [0.001, -0.002, np.nan, 0.0],
                        "asset_return": [0.01, -0.01, 0.02, 0.0], "label": [0.01, -0.01, 0.02, 0],
                        "regime": ["low", "high", "high", "unknown"]})
    funding = pd.DataFrame({"timestamp": [TS[2]], "funding_rate": [0.0001]})
    frame = sizing_frame(oos, None, "1h", funding)
    assert len(frame) == 3  # the bar without a forecast is left out
    data = SizingData.from_frame(frame)
    np.testing.assert_allclose(data.forecast, [0.001, -0.002, 0.0])
    # the position of row t is held over bar t+1: the settlement at TS[2] is row 1's
    np.testing.assert_allclose(data.funding, [0.0, 0.0001, 0.0])
    assert data.regime is not None and data.regime.shape == (3, 5)


def test_settings_refuse_bad_values_and_name():
    with pytest.raises(ValueError, match="summing to 1"):
        SizerSettings(split=(0.5, 0.2, 0.2))
    with pytest.raises(ValueError, match=r"sizer\.funding"):
        SizerSettings(funding="exchange")
    with pytest.raises(ValueError, match=r"sizer\.serve"):
        SizerSettings(serve="martingale")
    assert registered_sizer_name("BTC/USDT", "1h") == "huracan-sizer-BTCUSDT-1h"
