"""What the execution model reads besides the feature frame (huracan/stages.py): the finer series
of fill=delay (data.fine_path, a finer data.path, the candle lake, or a one-line error) and
funding=auto from the brain store on perpetuals (real files from ../shared/data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from huracan.data.lake import CandleLake
from huracan.data.ohlcv import load_ohlcv
from huracan.evaluation.backtest import BacktestConfig
from huracan.features.build import FeatureConfig, build_features
from huracan.settings import DataSettings
from huracan.stages import ExecutionInputs, execution_inputs, fine_series, run_bars

SAMPLE = Path(__file__).resolve().parents[2] / "huracan" / "datasets" / \
    "binance-spot_BTCUSDT_5m_20240101-20240906.parquet"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
PERP_1H = SHARED / "ohlcv" / "binance-usdm_BTCUSDT_1h_20190908-20241231.parquet"
FUNDING = SHARED / "derivatives" / "binance-usdm_BTCUSDT_funding_20190910-20241231.parquet"
DELAY = BacktestConfig(fill="delay", latency="5m")


@pytest.fixture(scope="module")
def hourly(tmp_path_factory) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    """The shipped 5m sample's first 20 days, and the same resampled to 1h in a file."""
    fine, tf = load_ohlcv(SAMPLE)
    assert tf == "5m"
    fine = fine[fine.timestamp < "2024-01-21"].reset_index(drop=True)
    coarse, _ = load_ohlcv(SAMPLE, "1h")
    coarse = coarse[coarse.timestamp < "2024-01-21"].reset_index(drop=True)
    path = tmp_path_factory.mktemp("h") / "btc_1h.parquet"
    coarse.to_parquet(path)
    return path, coarse, fine


def test_the_finer_series_comes_from_fine_path_a_finer_data_path_or_the_lake(
        hourly, tmp_path, monkeypatch):
    path, coarse, fine = hourly
    start, end = coarse.timestamp.min(), coarse.timestamp.max()
    monkeypatch.setenv("HURACAN_LAKE", str(tmp_path / "lake"))
    # the shipped sample is 5m resampled to 1h: it is its own finer series
    got, tf = fine_series(DataSettings(str(SAMPLE), "BTC/USDT", "1h"), start, end)
    assert tf == "5m" and len(got) > 12 * len(coarse)
    # data.fine_path wins
    fine_file = tmp_path / "fine.parquet"
    fine.to_parquet(fine_file)
    got, tf = fine_series(DataSettings(str(path), "BTC/USDT", "1h", fine_path=str(fine_file)),
                          start, end)
    assert tf == "5m" and len(got) == len(fine)
    # an hourly file and no fine path: the lake's finest series of the symbol
    data = DataSettings(str(path), "BTC/USDT", "1h")
    with pytest.raises(ValueError, match=r"backtest\.fill=delay needs a series of BTC/USDT "
                                         r"finer than 1h: none in data\.fine_path") as err:
        fine_series(data, start, end)
    assert "\n" not in str(err.value) and str(tmp_path / "lake") in str(err.value)
    CandleLake(tmp_path / "lake").append(fine, "binance", "BTC/USDT", "5m")
    got, tf = fine_series(data, start, end)
    assert tf == "5m"
    assert got["timestamp"].tolist() == fine.loc[fine.timestamp < end, "timestamp"].tolist()
    with pytest.raises(ValueError, match=r"not finer than data\.timeframe=1h"):
        fine_series(DataSettings(str(path), "BTC/USDT", "1h", fine_path=str(path)), start, end)


def test_a_delay_fill_runs_on_the_finer_series(hourly):
    _, coarse, fine = hourly
    fs = build_features(coarse, "1h", FeatureConfig())
    data = DataSettings(str(SAMPLE), "BTC/USDT", "1h")
    inputs = execution_inputs(DELAY, data, coarse)
    bars = run_bars(fs, DELAY, "1h", inputs)
    closes = fine.set_index("timestamp")["close"]
    # filled at the close of the first 5m bar after the signal bar's close: the 5m bar opening
    # at the next hour
    t = fs.frame.index[10]
    fill = closes[t + pd.Timedelta("1h")]
    assert bars.gap[10] == pytest.approx(fill / fs.frame["bar_close"].iloc[10] - 1)
    assert bars.fill == "delay"
    nxt = bars.next_return
    assert nxt == pytest.approx(fs.frame["next_return"].to_numpy())


@pytest.mark.skipif(not FUNDING.exists(), reason=f"{FUNDING} not found (../shared/data)")
def test_funding_auto_reads_a_perpetuals_settlements_from_the_brain_store(tmp_path):
    from huracan.data.ingest import ingest_file
    from huracan.db import migrate
    from huracan.db.session import make_engine

    candles = pd.read_parquet(PERP_1H)
    candles = candles[(candles.timestamp >= "2024-01-01") & (candles.timestamp < "2024-01-21")]
    candles = candles.reset_index(drop=True)
    url = f"sqlite:///{tmp_path / 'brain.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    perp = DataSettings(str(PERP_1H), "BTC/USDT:USDT", "1h")
    empty = execution_inputs(BacktestConfig(), perp, candles, url)
    assert empty.funding is None and empty.perpetual
    assert "holds no funding of BTC/USDT:USDT" in empty.notes[0]
    ingest_file(engine, "funding", FUNDING)
    engine.dispose()
    inputs = execution_inputs(BacktestConfig(), perp, candles, url)
    assert inputs.funding is not None and inputs.notes == []
    fs = build_features(candles, "1h", FeatureConfig())
    bars = run_bars(fs, BacktestConfig(), "1h", inputs)
    raw = pd.read_parquet(FUNDING)
    raw["timestamp"] = pd.to_datetime(raw["timestamp"], utc=True).dt.floor("s")
    rates = raw.set_index("timestamp")["funding_rate"]
    idx = fs.frame.index
    # the row opening at 07:00 closes at 08:00, the settlement and the fill (next open): the
    # position held before the fill pays it
    at7 = np.flatnonzero(idx.hour == 7)[0]
    assert bars.funding_gap[at7] == pytest.approx(rates[idx[at7] + pd.Timedelta("1h")])
    assert (bars.funding_gap[idx.hour % 8 != 7] == 0).all()
    assert (bars.funding_hold == 0).all()  # settlements fall exactly at the fills
    assert (bars.borrow == 0).all()  # no borrow on a perpetual
    # a spot symbol pays no funding (and its shorts pay the borrow rate instead)
    spot = execution_inputs(BacktestConfig(), DataSettings(str(PERP_1H), "BTC/USDT", "1h"),
                            candles, url)
    assert spot.funding is None and not spot.perpetual
    assert execution_inputs(BacktestConfig(funding="none"), perp, candles, url).funding is None


def test_without_inputs_the_bars_are_a_spot_market_without_funding(hourly):
    _, coarse, _ = hourly
    fs = build_features(coarse, "1h", FeatureConfig())
    bars = run_bars(fs, BacktestConfig(), "1h", ExecutionInputs())
    assert (bars.funding_gap == 0).all() and (bars.borrow > 0).all()
    with pytest.raises(ValueError, match="needs a finer series"):
        run_bars(fs, DELAY, "1h")
