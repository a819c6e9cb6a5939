"""Sentiment into the brain store: the real daily Fear & Greed file, and headlines scored by VADER
with the crypto lexicon (SQLite and Postgres)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from huracan.config import shared_data_root
from huracan.data.ingest import FEAR_GREED_SOURCE, VADER_SOURCE, ingest_file
from huracan.db.queries import sentiment_frame

SHARED_DATA = Path(shared_data_root())
FEAR_GREED = next((SHARED_DATA / "sentiment").glob("alternative-me_fear-greed-1d_*.parquet"),
                  None)


def test_fear_and_greed_file_becomes_daily_scores(engine):
    if FEAR_GREED is None:
        pytest.skip("no Fear & Greed file in ../shared/data/sentiment")
    report = ingest_file(engine, "sentiment", FEAR_GREED)
    raw = pd.read_parquet(FEAR_GREED)
    assert report.inserted == len(raw) and report.rejected == 0
    again = ingest_file(engine, "sentiment", FEAR_GREED)
    assert again.inserted == 0 and again.unchanged == len(raw)
    stored = sentiment_frame(engine, "BTC/USDT", "2018-01-01T00:00Z", "2030-01-01T00:00Z",
                             source=FEAR_GREED_SOURCE)
    first = raw.sort_values("timestamp").iloc[0]
    row = stored.sort_values("timestamp").iloc[0]
    assert row.score == pytest.approx((first.value - 50) / 50) and row.n_items == 1


def test_headlines_are_scored_with_the_crypto_lexicon(engine, tmp_path):
    t = pd.Timestamp("2024-03-14 09:00", tz="UTC")
    path = tmp_path / "headlines.parquet"
    pd.DataFrame({"timestamp": [t, t, t + pd.Timedelta("1h"), t + pd.Timedelta("2h")],
                  "text": ["Bitcoin surges to record high above $73,000",
                           "ETF inflows stay strong as rally extends",
                           "ETH crashes as longs get liquidated",
                           " "]}).to_parquet(path)
    report = ingest_file(engine, "headlines", path, symbol="BTC/USDT")
    assert report.inserted == 2 and report.rejected == 1  # the blank headline
    stored = sentiment_frame(engine, "BTC/USDT", "2024-01-01T00:00Z", "2025-01-01T00:00Z",
                             source=VADER_SOURCE).sort_values("timestamp")
    assert stored.n_items.tolist() == [2, 1]
    assert stored.score.iloc[0] > 0.3 and stored.score.iloc[1] < -0.3
