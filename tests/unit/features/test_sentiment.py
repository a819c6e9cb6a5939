"""Daily sentiment index with the next-day rule; VADER headlines with the crypto lexicon."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from huracan.features.sentiment import (
    CRYPTO_LEXICON,
    crypto_analyzer,
    daily_index_features,
    daily_index_table,
    headline_features,
    score_headlines,
)

SHARED_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
FEAR_GREED = SHARED_DATA / "sentiment" / "alternative-me_fear-greed-1d_20200101-20241231.parquet"
SPOT_1H = SHARED_DATA / "ohlcv" / "binance-spot_BTCUSDT_1h_20180101-20241231.parquet"


def index(values, start: str = "2024-01-01") -> pd.DataFrame:
    days = pd.date_range(start, periods=len(values), freq="D", tz="UTC")
    return pd.DataFrame({"timestamp": days, "value": values})


def hourly(start: str, n: int) -> pd.DatetimeIndex:
    return pd.date_range(start, periods=n, freq="1h", tz="UTC")


# --------------------------------------------------------------------------------------------
# daily index
# --------------------------------------------------------------------------------------------

def test_a_day_value_is_used_only_by_bars_opening_on_the_next_day():
    out = daily_index_features(index([10, 20, 30]), hourly("2024-01-01", 24 * 4), "1h")
    fg = out["fear_greed"]
    assert fg.loc[:"2024-01-01 23:00"].isna().all()  # day 1's value is not known during day 1
    assert fg.loc["2024-01-02 00:00"] == 10 and fg.loc["2024-01-02 23:00"] == 10
    assert fg.loc["2024-01-03 00:00"] == 20
    assert fg.loc["2024-01-04 00:00"] == 30 and fg.loc["2024-01-04 23:00"] == 30
    assert out["sentiment_available"].tolist() == [0] * 24 + [1] * 72
    days = pd.date_range("2024-01-01", periods=5, freq="D", tz="UTC")
    daily = daily_index_features(index([10, 20, 30]), days, "1d")
    # daily bar of 01-02 opens when day 1's value is known; the 01-05 bar is one day too late
    assert np.isnan(daily["fear_greed"].iloc[0]) and np.isnan(daily["fear_greed"].iloc[4])
    assert daily["fear_greed"].tolist()[1:4] == [10, 20, 30]


def test_changes_and_missing_days():
    vals = [50, 52, 55, 60, 58, np.nan, 40, 45, 47]  # 01-06 missing
    frame = index(vals).dropna()
    table = daily_index_table(frame)
    assert table["fear_greed_chg_3d"].tolist()[3:5] == [10.0, 6.0]
    assert np.isnan(table["fear_greed"].iloc[5])  # the missing day stays missing
    assert table["fear_greed_chg_7d"].iloc[7] == -5.0  # 45 - 50
    assert np.isnan(table["fear_greed_chg_3d"].iloc[8])  # 01-06 missing
    out = daily_index_features(frame, hourly("2024-01-01", 24 * 10), "1h")
    # 01-07 bars would show 01-06's value: none, and 01-05's value is not carried forward
    assert out.loc["2024-01-07 00:00":"2024-01-07 23:00", "fear_greed"].isna().all()
    assert (out.loc["2024-01-07 00:00":"2024-01-07 23:00", "sentiment_available"] == 0).all()
    assert out.loc["2024-01-08 05:00", "fear_greed"] == 40


def test_divergence_by_hand():
    rng = np.random.default_rng(11)
    n = 60
    vals = np.clip(50 + rng.normal(0, 10, n).cumsum() / 3, 0, 100)
    bars = hourly("2024-01-01", 24 * (n + 2))
    close = pd.Series(100 * np.exp(rng.normal(0, 0.01, len(bars)).cumsum()), index=bars)
    table = daily_index_table(index(vals), close, "1h", z_days=30, z_min_days=24, return_days=7)
    d = 45

    def day_end(k: int) -> float:  # close of the last bar of day k (closing at midnight)
        return close[pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(days=k + 1)
                     - pd.Timedelta("1h")]

    r = np.array([np.log(day_end(k) / day_end(k - 7)) if k >= 7 else np.nan for k in range(n)])
    s = vals[d - 29: d + 1]
    rr = r[d - 29: d + 1]
    expect = (vals[d] - s.mean()) / s.std(ddof=1) - (r[d] - rr.mean()) / rr.std(ddof=1)
    assert table["fear_greed_divergence"].iloc[d] == pytest.approx(expect, rel=1e-9)
    assert np.isnan(table["fear_greed_divergence"].iloc[22])  # < 24 days of values
    out = daily_index_features(index(vals), bars, "1h", bars_close=close)
    assert out.loc["2024-02-16 00:00", "fear_greed_divergence"] == pytest.approx(expect)


@pytest.mark.parametrize("frame,match", [
    (index([50, 120]), r"'value' row 1: 120.0 outside \[0.0, 100.0\].*value_range"),
    (pd.DataFrame({"timestamp": pd.to_datetime(["2024-01-01 06:00"], utc=True), "value": [1]}),
     r"row 0 .* not a UTC day start.*daily_day_start"),
    (pd.concat([index([1]), index([2])]), r"appears twice.*unique_day"),
    (index([1]).rename(columns={"value": "v"}), r"missing column 'value'.*required_columns"),
])
def test_bad_daily_index_names_column_and_rule(frame, match):
    with pytest.raises(ValueError, match=match):
        daily_index_features(frame, hourly("2024-01-01", 3), "1h")


def test_real_fear_and_greed():
    if not (FEAR_GREED.exists() and SPOT_1H.exists()):
        pytest.skip("../shared/data not found")
    fg = pd.read_parquet(FEAR_GREED)
    spot = pd.read_parquet(SPOT_1H).set_index("timestamp")["close"]["2021-01-01":"2024-12-31"]
    out = daily_index_features(fg, spot.index, "1h", bars_close=spot)
    raw = fg.set_index("timestamp")["value"]
    assert out.loc["2021-01-31 23:00", "fear_greed"] == raw["2021-01-30"]
    assert out.loc["2021-02-01 00:00", "fear_greed"] == raw["2021-01-31"]
    assert out.loc["2024-10-27 12:00"].drop("sentiment_available").isna().all()  # 10-26 missing
    assert out["sentiment_available"].mean() > 0.99
    assert out["fear_greed_divergence"].abs().max() < 10


# --------------------------------------------------------------------------------------------
# headlines
# --------------------------------------------------------------------------------------------

HEADLINES = pd.DataFrame({
    "timestamp": pd.to_datetime(["2024-03-14T00:05:12Z", "2024-03-14T03:41:00Z",
                                 "2024-03-14T06:12:45Z", "2024-03-14T09:30:00Z",
                                 "2024-03-14T12:02:10Z", "2024-03-14T15:20:00Z",
                                 "2024-03-14T18:45:00Z", "2024-03-14T21:00:00Z"], utc=True),
    "source": ["CoinDesk", "The Block", "Cointelegraph", "Decrypt", "CoinDesk", "The Block",
               "Cointelegraph", "Decrypt"],
    "text": ["Bitcoin surges to record high",
             "ETH crashes as longs get liquidated",
             "Bitcoin Rallies Past $73,000 as Spot ETF Inflows Climb",
             "Crypto market turns bearish after hot CPI print",
             "Traders get rekt as BTC plunges 10% in an hour",
             "Solana mooning: SOL hits new ATH",
             "DeFi protocol exploited, $100M drained from bridge",
             "Bitcoin is not bullish yet, analysts say"]})


def test_crypto_lexicon_turns_market_headlines_the_right_way():
    stock = SentimentIntensityAnalyzer()
    assert stock.polarity_scores("Bitcoin surges to record high")["compound"] == 0.0
    scores = score_headlines(HEADLINES).set_index("text")["compound"]
    assert scores["Bitcoin surges to record high"] > 0.3
    assert scores["ETH crashes as longs get liquidated"] < -0.3
    positive = ["Bitcoin Rallies Past $73,000 as Spot ETF Inflows Climb",
                "Solana mooning: SOL hits new ATH"]
    negative = ["Crypto market turns bearish after hot CPI print",
                "Traders get rekt as BTC plunges 10% in an hour",
                "DeFi protocol exploited, $100M drained from bridge",
                "Bitcoin is not bullish yet, analysts say"]  # VADER's negation flips "bullish"
    assert (scores[positive] >= 0.05).all() and (scores[negative] <= -0.05).all()
    # VADER's own lexicon is untouched (the extension lives on one analyzer instance)
    assert "surges" not in stock.lexicon and crypto_analyzer().lexicon["surges"] > 0


def test_lexicon_valences_are_on_vader_scale():
    assert all(-4 <= v <= 4 for v in CRYPTO_LEXICON.values())
    assert all(k == k.lower() for k in CRYPTO_LEXICON)  # VADER looks words up lower-cased
    for word in ("surge", "surges", "rally", "rallies", "bullish", "moon", "mooning", "pump",
                 "hodl", "ath"):
        assert CRYPTO_LEXICON[word] > 0
    for word in ("bearish", "dump", "dumps", "rekt", "crash", "liquidated"):
        assert CRYPTO_LEXICON[word] < 0


def test_score_headlines_shape_and_rules():
    out = score_headlines(HEADLINES)
    assert list(out.columns) == ["timestamp", "text", "neg", "neu", "pos", "compound"]
    assert out.index.equals(HEADLINES.index)
    np.testing.assert_allclose(out[["neg", "neu", "pos"]].sum(axis=1), 1.0, atol=2e-3)
    with pytest.raises(ValueError, match=r"missing column 'text'.*required_columns"):
        score_headlines(HEADLINES.drop(columns="text"))
    with pytest.raises(ValueError, match=r"'text' row 1 is missing.*not_null"):
        score_headlines(HEADLINES.assign(text=["a", None, "b", "c", "d", "e", "f", "g"]))


def test_headline_features_window():
    scores = score_headlines(HEADLINES)
    bars = hourly("2024-03-14", 48)
    out = headline_features(scores, bars, "1h", window="6h",
                            coverage_start="2024-03-13T12:00Z")
    row = out.loc["2024-03-14 05:00"]  # (00:00, 06:00]: the first two headlines
    assert row["headline_count_6h"] == 2
    assert row["headline_sentiment_6h"] == pytest.approx(scores["compound"].iloc[:2].mean())
    late = out.loc["2024-03-15 20:00"]  # (15:00, 21:00] next day: none
    assert late["headline_count_6h"] == 0 and np.isnan(late["headline_sentiment_6h"])
    default = headline_features(scores, bars, "1h", window="6h")  # covered from the first one
    assert default.loc["2024-03-14 05:00", "headlines_available"] == 0
    assert default.loc["2024-03-14 06:00", "headlines_available"] == 1
