"""Funding, basis and open-interest features: hand-computed values, staleness, rule-named bad
input, the real files, and loading from the brain store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from huracan.features.derivatives import (
    basis_features,
    funding_features,
    infer_interval,
    open_interest_features,
    settlement_table,
)
from huracan.features.families import (
    FEAR_GREED_SOURCE,
    build_family_features,
    load_sources,
    load_sources_from_files,
)

SHARED_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
DERIV = SHARED_DATA / "derivatives"
BTC_FUNDING = DERIV / "binance-usdm_BTCUSDT_funding_20190910-20241231.parquet"
BTC_MARK = DERIV / "binance-usdm_BTCUSDT_mark-1h_20191223-20241231.parquet"
BTC_OI = DERIV / "unknown-agg_BTC_open-interest-1d_20190330-20241120.parquet"
XRP_FUNDING = (DERIV / "freqtrade_testdata"
               / "binance-usdm_XRPUSDT_funding_20211118-20211218.parquet")
SPOT_1H = SHARED_DATA / "ohlcv" / "binance-spot_BTCUSDT_1h_20180101-20241231.parquet"
FEAR_GREED = SHARED_DATA / "sentiment" / "alternative-me_fear-greed-1d_20200101-20241231.parquet"


def need(*paths: Path) -> None:
    missing = [p for p in paths if not p.exists()]
    if missing:
        pytest.skip(f"{missing[0]} not found (../shared/data is expected beside the checkout)")


def utc(*values: str) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(list(values), utc=True, format="ISO8601"))


def hourly(start: str, n: int) -> pd.DatetimeIndex:
    return pd.date_range(start, periods=n, freq="1h", tz="UTC")


def settlements(start: str, n: int, every: str = "8h", rates=None, exchange: str | None = None
                ) -> pd.DataFrame:
    times = pd.date_range(start, periods=n, freq=every, tz="UTC")
    rates = np.arange(1, n + 1) * 1e-4 if rates is None else np.asarray(rates, dtype=float)
    out = pd.DataFrame({"timestamp": times, "funding_rate": rates})
    return out if exchange is None else out.assign(exchange=exchange)


# --------------------------------------------------------------------------------------------
# funding
# --------------------------------------------------------------------------------------------

def test_interval_is_inferred_causally_and_rounded_to_the_minute():
    times = utc("2024-01-01 00:00:00.017", "2024-01-01 08:00:00.007", "2024-01-01 16:00:00.011",
                "2024-01-01 20:00", "2024-01-02 00:00")
    got = infer_interval(times, lookback=1)
    assert pd.isna(got.iloc[0])
    assert got.iloc[1:].tolist() == pd.to_timedelta(["8h", "8h", "4h", "4h"]).tolist()
    # with a longer lookback the median follows the change later (it never looks ahead)
    assert infer_interval(times, lookback=3).iloc[3] == pd.Timedelta("8h")


def test_funding_features_by_hand():
    f = settlements("2024-01-01 00:00", 4)  # 00:00, 08:00, 16:00, 01-02 00:00; 1..4 bp
    bars = hourly("2024-01-01 00:00", 48)
    out = funding_features(f, bars, "1h")
    rate = out["funding_rate"]
    # the first settlement has no inferred interval yet (no staleness limit): not used
    assert rate.loc[:"2024-01-01 06:00"].isna().all()
    assert rate.loc["2024-01-01 07:00"] == pytest.approx(2e-4)  # 07:00 bar closes at 08:00
    assert rate.loc["2024-01-01 23:00"] == pytest.approx(4e-4)
    assert out["funding_rate_chg_3"].loc["2024-01-01 23:00"] == pytest.approx(3e-4)
    assert np.isnan(out["funding_rate_chg_3"].loc["2024-01-01 22:00"])
    assert out["funding_carry_annual"].loc["2024-01-01 23:00"] == pytest.approx(4e-4 * 1095)
    # stale after 2 intervals (16 h): last settlement 01-02 00:00 -> fresh until close 16:00
    assert rate.loc["2024-01-02 15:00"] == pytest.approx(4e-4)
    assert np.isnan(rate.loc["2024-01-02 16:00"])
    assert (out["funding_available"] == rate.notna()).all()
    assert out["funding_rate_z_30d"].isna().all()  # 4 settlements: far from 80 % of 30 days


def test_funding_zscore_window_and_minimum_count():
    rng = np.random.default_rng(1)
    rates = rng.normal(1e-4, 5e-5, 120)
    table = settlement_table(settlements("2024-01-01", 120, rates=rates))
    z = table["z"]
    # 30 days of 8 h settlements = 90 expected; >= 80 % = 72 present (rows 0..71)
    assert np.isnan(z.iloc[70]) and not np.isnan(z.iloc[71])
    for k in (71, 100, 119):
        t = table["known_at"].iloc[k]
        window = table.loc[(table["known_at"] > t - pd.Timedelta("30D"))
                           & (table["known_at"] <= t), "funding_rate"]
        expect = (rates[k] - window.mean()) / window.std(ddof=1)
        assert z.iloc[k] == pytest.approx(expect, rel=1e-9)
    flat = settlement_table(settlements("2024-01-01", 100, rates=np.full(100, 1e-4)))
    assert (flat["z"].iloc[71:] == 0.0).all()  # constant window: z = 0, not a division by 0


def test_funding_spread_between_exchanges_is_annualised():
    a = settlements("2024-01-01", 6, rates=[1e-4] * 6, exchange="binance")
    b = settlements("2024-01-01", 12, every="4h", rates=[2e-4] * 12, exchange="Bybit")
    bars = hourly("2024-01-01 00:00", 40)
    out = funding_features(pd.concat([a, b]), bars, "1h")
    assert out["funding_rate"].dropna().eq(1e-4).all()  # primary: binance
    row = out.loc["2024-01-01 12:00"]
    assert row["funding_carry_annual"] == pytest.approx(1e-4 * 1095)
    assert row["funding_spread_annual"] == pytest.approx(2e-4 * 2190 - 1e-4 * 1095)
    by = funding_features(pd.concat([a, b]), bars, "1h", primary_exchange="BYBIT")
    assert by.loc["2024-01-01 12:00", "funding_carry_annual"] == pytest.approx(2e-4 * 2190)
    # 03:00: bybit's 04:00 rate is known, binance's first usable one comes at 08:00
    assert np.isnan(out.loc["2024-01-01 03:00", "funding_rate"])
    assert np.isnan(out.loc["2024-01-01 03:00", "funding_spread_annual"])  # one rate only
    assert "funding_spread_annual" not in funding_features(a, bars, "1h").columns


@pytest.mark.parametrize("change,match", [
    ({"funding_rate": [0.5, 1e-4]}, r"'funding_rate' row 0.*rate_out_of_range"),
    ({"funding_rate": [np.nan, 1e-4]}, r"'funding_rate' row 0.*not_null"),
    ({"timestamp": utc("2024-01-01", "2024-01-01")}, r"two settlements.*unique_settlement"),
    ({"timestamp": pd.to_datetime(["2024-01-01", "2024-01-02"])}, r"naive.*utc_timestamps"),
])
def test_bad_funding_names_column_and_rule(change, match):
    f = settlements("2024-01-01", 2).assign(**change)
    with pytest.raises(ValueError, match=match):
        funding_features(f, hourly("2024-01-01", 3), "1h")


def test_unknown_primary_exchange_and_missing_column():
    f = settlements("2024-01-01", 2, exchange="binance")
    with pytest.raises(ValueError, match="known_exchange"):
        funding_features(f, hourly("2024-01-01", 3), "1h", primary_exchange="okx")
    with pytest.raises(ValueError, match=r"'funding_rate'.*required_columns"):
        funding_features(f.drop(columns="funding_rate"), hourly("2024-01-01", 3), "1h")


def test_real_funding_with_exchange_jitter():
    need(XRP_FUNDING, BTC_FUNDING)
    xrp = pd.read_parquet(XRP_FUNDING)  # real timestamps; rates made distinct to tell apart
    xrp["funding_rate"] = np.arange(1, len(xrp) + 1) * 1e-5
    assert xrp["timestamp"].iloc[2] == pd.Timestamp("2021-11-18 16:00:00.011", tz="UTC")
    bars = hourly("2021-11-18 00:00", 24)
    out = funding_features(xrp, bars, "1h")
    # the 15:00 bar closes at 16:00:00.000, before the settlement was stamped (.011)
    assert out.loc["2021-11-18 15:00", "funding_rate"] == pytest.approx(2e-5)
    assert out.loc["2021-11-18 16:00", "funding_rate"] == pytest.approx(3e-5)
    joined = out["funding_carry_annual"].dropna()
    assert np.allclose(joined, out["funding_rate"].dropna() * 1095)  # 8 h despite the jitter
    btc = pd.read_parquet(BTC_FUNDING)
    bars = hourly("2021-02-01 00:00", 24)
    got = funding_features(btc, bars, "1h")
    raw = btc.set_index("timestamp")["funding_rate"]
    assert got.loc["2021-02-01 07:00", "funding_rate"] == raw["2021-02-01 08:00"]
    assert got.loc["2021-02-01 06:00", "funding_rate"] == raw["2021-02-01 00:00"]


# --------------------------------------------------------------------------------------------
# basis
# --------------------------------------------------------------------------------------------

def test_basis_by_hand_with_holes():
    bars = hourly("2024-01-01", 70)
    spot = pd.Series(100.0, index=bars)
    mark = pd.DataFrame({"timestamp": bars, "close": 100.0 + np.arange(70) * 0.01})
    mark = mark.drop(index=[5])  # the 05:00 mark candle is missing
    out = basis_features(mark, spot.drop(bars[40]), "1h")
    assert out["basis"].iloc[0] == pytest.approx(0.0)
    assert out.loc[bars[30], "basis"] == pytest.approx(0.30 / 100)
    assert np.isnan(out.loc[bars[5], "basis"])  # no mark close at that time: no stale pairing
    assert out.loc[bars[30], "basis_chg_24"] == pytest.approx(0.24 / 100)
    assert np.isnan(out.loc[bars[29], "basis_chg_24"])  # 24 bars earlier = 05:00 (no basis)
    assert np.isnan(out.loc[bars[64], "basis_chg_24"])  # 24 bars earlier: the spot hole
    assert out.loc[bars[65], "basis_chg_24"] == pytest.approx(0.24 / 100)
    assert bars[40] not in out.index  # spot bar missing: not in the output
    assert out["basis_available"].sum() == 68


def test_basis_uses_the_mark_candle_closing_with_the_bar():
    bars = pd.date_range("2024-01-01", periods=6, freq="4h", tz="UTC")
    spot = pd.Series(100.0, index=bars)
    hours = pd.date_range("2024-01-01", periods=24, freq="1h", tz="UTC")
    mark = pd.DataFrame({"timestamp": hours, "close": 100.0 + np.arange(24)})
    out = basis_features(mark, spot, "4h", change_bars=1)  # mark timeframe inferred: 1h
    # bar 00:00-04:00 closes at 04:00: the 03:00 mark candle closes then (close 103)
    assert out["basis"].tolist() == pytest.approx([0.03, 0.07, 0.11, 0.15, 0.19, 0.23])
    assert out["basis_chg_1"].iloc[1] == pytest.approx(0.04)
    late = basis_features(mark.iloc[:-1], spot, "4h")  # the 23:00 candle is missing
    assert np.isnan(late["basis"].iloc[5])
    with pytest.raises(ValueError, match="positive_price"):
        basis_features(mark.assign(close=0.0), spot, "4h")


def test_basis_on_real_mark_prices():
    need(BTC_MARK, SPOT_1H)
    spot = pd.read_parquet(SPOT_1H).set_index("timestamp")["close"]["2021-01-01":"2021-03-31"]
    out = basis_features(pd.read_parquet(BTC_MARK), spot, "1h")
    assert out["basis_available"].mean() > 0.99
    assert out["basis"].abs().max() < 0.03  # a perpetual tracks spot within a few percent


# --------------------------------------------------------------------------------------------
# open interest
# --------------------------------------------------------------------------------------------

def daily_oi(n: int = 20, growth: float = 0.1) -> pd.DataFrame:
    days = pd.date_range("2024-01-01", periods=n, freq="D", tz="UTC")
    return pd.DataFrame({"timestamp": days,
                         "open_interest_usd": 1e9 * np.exp(growth * np.arange(n))})


def test_open_interest_changes_by_hand():
    bars = hourly("2024-01-01", 24 * 22)
    spot = pd.Series(100.0 * np.exp(0.001 * np.arange(len(bars))), index=bars)
    out = open_interest_features(daily_oi(), spot, "1h")
    # the bar closing at 01-06 00:00 sees snapshots of 01-06 and 01-05
    row = out.loc["2024-01-05 23:00"]
    assert row["oi_logchg_1d"] == pytest.approx(0.1)
    assert np.isnan(row["oi_logchg_7d"])  # 12-30 not there
    assert out.loc["2024-01-08 23:00", "oi_logchg_7d"] == pytest.approx(0.7)
    assert row["oi_price_agreement_1d"] == 1.0  # both rising
    falling = open_interest_features(daily_oi(), spot[::-1].set_axis(bars), "1h")
    assert falling.loc["2024-01-05 23:00", "oi_price_agreement_1d"] == -1.0
    # snapshots stop at 01-20 00:00; stale after 2 days (2 spacings)
    assert out.loc["2024-01-21 23:00", "open_interest_available"] == 1
    assert out.loc["2024-01-22 00:00", "open_interest_available"] == 0
    assert out.loc["2024-01-22 00:00"].drop("open_interest_available").isna().all()
    late = open_interest_features(daily_oi(), spot, "1h", delay="1D")
    assert late.loc["2024-01-05 23:00", "oi_logchg_1d"] == pytest.approx(0.1)
    # snapshot 01-02 is known at 01-03 00:00 (the first one, 01-01, has no spacing yet: unused)
    assert late.loc["2024-01-02 23:00", "open_interest_available"] == 1
    assert late.loc["2024-01-02 22:00", "open_interest_available"] == 0


def test_open_interest_zscore_matches_a_brute_force_window():
    rng = np.random.default_rng(3)
    oi = daily_oi(60)
    oi["open_interest_usd"] *= np.exp(rng.normal(0, 0.05, 60))
    bars = hourly("2024-01-01", 24 * 60)
    out = open_interest_features(oi, pd.Series(1.0, index=bars), "1h")
    logv = np.log(oi["open_interest_usd"].to_numpy())
    k = 45  # the snapshot of day 45, seen by the bar closing at its timestamp
    window = logv[k - 29: k + 1]
    expect = (logv[k] - window.mean()) / window.std(ddof=1)
    assert out.loc[oi["timestamp"].iloc[k] - pd.Timedelta("1h"), "oi_z_30d"] == pytest.approx(
        expect, rel=1e-9)
    assert np.isnan(out.loc[oi["timestamp"].iloc[22] - pd.Timedelta("1h"), "oi_z_30d"])


def test_open_interest_rules():
    bars = hourly("2024-01-01", 48)
    spot = pd.Series(1.0, index=bars)
    two = pd.concat([daily_oi(3).assign(exchange="a"), daily_oi(3).assign(exchange="b")])
    with pytest.raises(ValueError, match="one_exchange"):
        open_interest_features(two, spot, "1h")
    assert open_interest_features(two, spot, "1h", exchange="B")["open_interest_available"].any()
    with pytest.raises(ValueError, match="positive_open_interest"):
        open_interest_features(daily_oi(3).assign(open_interest_usd=0.0), spot, "1h")
    with pytest.raises(ValueError, match="unique_snapshot"):
        open_interest_features(pd.concat([daily_oi(3), daily_oi(3)]), spot, "1h")
    with pytest.raises(ValueError, match="positive_price"):
        open_interest_features(daily_oi(3), spot * 0, "1h")
    contracts = daily_oi(3).rename(columns={"open_interest_usd": "open_interest"})
    assert open_interest_features(contracts, spot, "1h")["open_interest_available"].any()


# --------------------------------------------------------------------------------------------
# the brain store
# --------------------------------------------------------------------------------------------

def test_load_sources_from_the_store_matches_the_files(engine, tmp_path):
    need(BTC_FUNDING, BTC_OI, FEAR_GREED, SPOT_1H)
    from huracan.data.ingest import ingest_file

    ingest_file(engine, "funding", BTC_FUNDING)
    ingest_file(engine, "open-interest", BTC_OI, exchange="aggregate", symbol="BTC/USDT")
    fg = pd.read_parquet(FEAR_GREED)
    path = tmp_path / "fear_greed.parquet"
    pd.DataFrame({"timestamp": fg["timestamp"], "score": (fg["value"] - 50) / 50.0,
                  "n_items": 1}).to_parquet(path)
    ingest_file(engine, "sentiment", path, symbol="BTC/USDT", sentiment_source=FEAR_GREED_SOURCE)

    start, end = "2021-01-01T00:00Z", "2021-02-01T00:00Z"
    stored = load_sources(engine, "BTC/USDT", start, end)
    assert set(stored) == {"funding", "open_interest", "liquidations", "sentiment"}
    assert stored["liquidations"].empty
    assert stored["funding"]["timestamp"].min() == pd.Timestamp("2020-11-17", tz="UTC")  # 45 d
    files = load_sources_from_files(SHARED_DATA, "BTC/USDT", start, end)
    spot = pd.read_parquet(SPOT_1H)
    bars = spot[(spot.timestamp >= start) & (spot.timestamp < end)]
    fams = ["funding", "sentiment", "open_interest"]
    a = build_family_features(bars, "1h", stored, fams)
    b = build_family_features(bars, "1h", files, fams)
    cols = [c for c in a.frame.columns if c.startswith(("funding", "fear_greed", "sentiment"))]
    pd.testing.assert_frame_equal(a.frame[cols], b.frame[cols])
    # the store keeps the daily OI stamp as is (known at its timestamp); the file loader delays
    # the vendor's daily values by a day: the store's series leads by one day
    shifted = b.frame["oi_logchg_1d"].shift(-24)
    both = a.frame["oi_logchg_1d"].notna() & shifted.notna()
    assert both.sum() > 600
    np.testing.assert_allclose(a.frame.loc[both, "oi_logchg_1d"], shifted[both])
    with pytest.raises(ValueError, match="naive"):
        load_sources(engine, "BTC/USDT", "2021-01-01", end)
