"""Feature families by column name, and the candle file of another symbol."""

from __future__ import annotations

import pytest

from huracan import stages
from huracan.features.naming import compact, family_totals, feature_family
from huracan.settings import DataSettings


@pytest.mark.parametrize("name,family", [
    ("ret_1", "own"), ("rv_72", "own"), ("macd_hist", "own"), ("dow_cos", "own"),
    ("ctx_ETHUSDT_ret_1", "context"), ("ctx_BTCUSDT_available", "context"),
    ("htf_4h_rsi_14", "higher_timeframe"), ("htf_1d_available", "higher_timeframe"),
    ("symbol", "symbol"), ("symbol_LTCUSDT", "symbol"),
    ("funding_rate", "market_structure"), ("oi_change_24", "market_structure"),
])
def test_feature_family(name, family):
    assert feature_family(name) == family


def test_family_totals_sum_per_family_in_report_order():
    totals = family_totals({"ctx_ETHUSDT_ret_1": 0.5, "ret_1": 1.0, "ret_3": 0.25,
                            "funding_rate": 0.1})
    assert list(totals) == ["own", "context", "market_structure"]
    assert totals["own"] == pytest.approx(1.25)


def test_compact():
    assert compact("BTC/USDT") == "BTCUSDT" and compact("BTC/USDT:USDT") == "BTCUSDT"


def test_symbol_data_swaps_the_pair_and_refuses_a_missing_file(tmp_path):
    btc = tmp_path / "binance-spot_BTCUSDT_1h.parquet"
    eth = tmp_path / "binance-spot_ETHUSDT_1h.parquet"
    btc.write_bytes(b"x")
    eth.write_bytes(b"x")
    data = DataSettings(path=str(btc), symbol="BTC/USDT", timeframe="1h")
    other = stages.symbol_data(data, "ETH/USDT")
    assert other.path == str(eth) and other.symbol == "ETH/USDT" and other.timeframe == "1h"
    assert stages.symbol_data(data, "BTC/USDT") is data
    with pytest.raises(ValueError, match=r"LTC/USDT: candle file .*LTCUSDT.* does not exist"):
        stages.symbol_data(data, "LTC/USDT")
    assert stages.symbol_data(data, "LTC/USDT", {"LTC/USDT": str(eth)}).path == str(eth)
