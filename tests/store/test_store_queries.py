"""The query API on real ingested data and on hand-written records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from huracan.data.ingest import ingest_file
from huracan.data.quality import QualityIssue
from huracan.data.quality_db import DbQualitySink
from huracan.db.queries import (
    funding_frame,
    liquidation_frame,
    open_interest_frame,
    previous_production,
    quality_summary,
    registry_history,
    sentiment_frame,
    top_features,
)
from huracan.db.records import record_registry_event, store_feature_importance
from huracan.db.session import make_session_factory

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def test_funding_open_interest_and_liquidation_frames(engine, shared):
    for path in shared.funding_files:
        ingest_file(engine, "funding", path)
    ingest_file(engine, "open-interest", shared.open_interest, exchange="aggregate",
                symbol="BTC/USDT")
    ingest_file(engine, "liquidations", shared.liquidation_events)

    fr = funding_frame(engine, "BTC/USDT", "2024-01-01T00:00Z", "2024-01-02T00:00Z")
    assert list(fr.columns) == ["timestamp", "exchange", "funding_rate"]
    assert [t.hour for t in fr.timestamp] == [0, 8, 16]
    assert str(fr.timestamp.dt.tz) == "UTC" and set(fr.exchange) == {"binance"}
    raw = pd.read_parquet(shared.funding_files[0])  # BTCUSDT
    day = raw[(raw.timestamp >= "2024-01-01") & (raw.timestamp < "2024-01-02")]
    assert fr.funding_rate.tolist() == day.funding_rate.tolist()

    oi = open_interest_frame(engine, "BTC/USDT", "2024-11-01T00:00Z", "2024-11-21T00:00Z")
    assert len(oi) == 20 and oi.open_interest.isna().all() and (oi.open_interest_usd > 0).all()

    liq = liquidation_frame(engine, "KDA/USDT", "2025-10-22T00:00Z", "2025-10-23T00:00Z")
    assert len(liq) == 29 and liq.timestamp.is_monotonic_increasing
    assert set(liq.side) <= {"long", "short"} and (liq.size_usd > 0).all()
    assert liquidation_frame(engine, "KDA/USDT", "2025-10-22T00:00Z", "2025-10-23T00:00Z",
                             exchange="bybit").empty
    empty = funding_frame(engine, "DOGE/USDT", T0, T0 + timedelta(days=1))
    assert empty.empty and list(empty.columns) == ["timestamp", "exchange", "funding_rate"]


def test_naive_times_are_refused(engine):
    with pytest.raises(ValueError, match="naive"):
        funding_frame(engine, "BTC/USDT", datetime(2024, 1, 1), T0)


def test_sentiment_frame(engine, tmp_path):
    path = tmp_path / "s.parquet"
    pd.DataFrame({"timestamp": pd.to_datetime(["2024-01-01 00:00", "2024-01-01 01:00"], utc=True),
                  "score": [0.5, -0.25], "n_items": [10, 4]}).to_parquet(path)
    ingest_file(engine, "sentiment", path, symbol="BTC/USDT", sentiment_source="news")
    s = sentiment_frame(engine, "BTC/USDT", T0, T0 + timedelta(days=1), source="news")
    assert s.score.tolist() == [0.5, -0.25] and s.n_items.tolist() == [10, 4]


def test_top_features_of_the_latest_analysis(engine):
    store_feature_importance(engine, {"rsi_14": 0.2, "funding_z": -0.5, "ret_1": 0.1},
                             symbol="BTC/USDT", timeframe="1h", run_id="run-old",
                             model_type="lightgbm", method="correlation", analyzed_at=T0)
    store_feature_importance(engine, {"ret_1": 0.3, "rsi_14": 0.05, "vol_24": 0.4, "oi_chg": 0.2},
                             symbol="BTC/USDT", timeframe="1h", run_id="run-new",
                             model_type="lightgbm", method="shap",
                             analyzed_at=T0 + timedelta(days=1))
    top = top_features(engine, "BTC/USDT", n=3)
    assert top.feature.tolist() == ["vol_24", "ret_1", "oi_chg"]
    assert top["rank"].tolist() == [1, 2, 3] and set(top.run_id) == {"run-new"}
    # ranked by signed importance: a negative one (shuffling the feature lowered the loss, or a
    # method that stores signed values) ranks last, never first
    corr = top_features(engine, "BTC/USDT", n=10, method="correlation")
    assert corr.feature.tolist() == ["rsi_14", "ret_1", "funding_z"]
    assert top_features(engine, "ETH/USDT").empty
    # re-storing an analysis of the same run and method replaces it
    store_feature_importance(engine, {"ret_1": 1.0}, symbol="BTC/USDT", timeframe="1h",
                             run_id="run-new", model_type="lightgbm", method="shap",
                             analyzed_at=T0 + timedelta(days=2))
    assert top_features(engine, "BTC/USDT").feature.tolist() == ["ret_1"]


def test_quality_summary_for_a_time_range(engine):
    sink = DbQualitySink(engine)
    for i, (rule, severity) in enumerate([("gap", "warning"), ("gap", "warning"),
                                          ("nan_rate", "critical"), ("gap", "warning")]):
        sink.write(QualityIssue("f.parquet", rule, severity, {"row": i}, "BTC/USDT",
                                (T0 + timedelta(hours=i)).isoformat()))
    sink.write(QualityIssue("g.parquet", "gap", "warning", {}, "ETH/USDT",
                            (T0 + timedelta(days=5)).isoformat()))
    summary = quality_summary(engine, T0, T0 + timedelta(days=1))
    assert summary[["issue_type", "severity", "count", "unresolved"]].values.tolist() == [
        ["gap", "warning", 3, 3], ["nan_rate", "critical", 1, 1]]
    assert summary.first_seen[0] == pd.Timestamp(T0)
    assert summary.last_seen[0] == pd.Timestamp(T0 + timedelta(hours=3))
    assert quality_summary(engine, T0, T0 + timedelta(days=9), symbol="ETH/USDT")["count"
                           ].tolist() == [1]


def test_registry_history_newest_first(engine):
    name = "huracan-BTCUSDT-1h"
    record_registry_event(engine, model_name=name, event_type="promotion", to_version="1",
                          alias="production", metric="sharpe", challenger_score=1.1,
                          reason="first model", timestamp=T0)
    record_registry_event(engine, model_name=name, event_type="promotion", from_version=1,
                          to_version=3, metric="sharpe", champion_score=1.1,
                          challenger_score=1.4, tolerance=0.05, reason="beats champion",
                          timestamp=T0 + timedelta(hours=2))
    with make_session_factory(engine).begin() as session:  # joins the session's transaction
        record_registry_event(session, model_name=name, event_type="rejection", from_version=1,
                              to_version=2, metric="sharpe", champion_score=1.1,
                              challenger_score=0.9, reason="below champion",
                              timestamp=T0 + timedelta(hours=1))
    record_registry_event(engine, model_name=name, event_type="rollback", from_version=3,
                          to_version=1, alias="production", reason="drift alert",
                          timestamp=T0 + timedelta(hours=3))
    record_registry_event(engine, model_name="other", event_type="promotion", to_version=1,
                          reason="x", timestamp=T0)
    history = registry_history(engine, name)
    assert [e.event_type for e in history] == ["rollback", "promotion", "rejection", "promotion"]
    assert (history[0].from_version, history[0].to_version) == (3, 1)
    assert history[1].tolerance == 0.05
    assert history[2].champion_score == 1.1 and history[2].reason == "below champion"
    assert history[3].timestamp == T0
    assert previous_production(engine, name, 3) == 1
    assert previous_production(engine, name, "1") is None
    assert [e.event_type for e in registry_history(engine, name, event_type="rollback")] == [
        "rollback"]
    with pytest.raises(ValueError, match="event_type"):
        record_registry_event(engine, model_name=name, event_type="promote", reason="typo")
