"""Rankings in the brain store (SQLite and Postgres): write, read back, history, top-N selection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from huracan.analysis.importance_store import (
    latest_top_features,
    previous_run,
    ranking_history,
    run_ranking,
    select_top_features,
    store_rankings,
)
from huracan.db.queries import top_features
from huracan.db.records import store_feature_importance
from huracan.evaluation.importance import AGGREGATE, rank_table

FEATURES = ["ret_1", "ret_3", "rsi_14", "rv_12", "vol_z_24"]
T0 = datetime(2024, 9, 1, tzinfo=UTC)


def table(order: list[str]) -> pd.DataFrame:
    """A rank table whose three methods all rank ``order`` (best first)."""
    imp = np.array([len(order) - order.index(f) for f in FEATURES], dtype=float)
    return rank_table({"shap": imp / 100, "permutation": imp, "correlation": -imp / 10},
                      FEATURES)


def test_rankings_round_trip_with_the_aggregate_ranked_ascending(engine):
    t = rank_table({"shap": np.array([0.5, 0.1, 0.3, 0.2, 0.0]),
                    "permutation": np.array([0.2, 0.0, 0.5, 0.1, 0.05]),
                    "correlation": np.array([0.3, 0.2, 0.1, 0.4, 0.0])}, FEATURES)
    n = store_rankings(engine, t, "BTC/USDT", "1h", "run-a", "lightgbm", T0)
    assert n == 4 * len(FEATURES)
    for method in ("shap", "permutation", "correlation", AGGREGATE):
        stored = run_ranking(engine, "run-a", method)
        expected = t[t["method"] == method].reset_index(drop=True)
        assert stored["feature"].tolist() == expected["feature"].tolist()
        assert stored["rank"].tolist() == expected["rank"].tolist()
        np.testing.assert_allclose(stored["importance"], expected["importance"])
        assert (stored["analyzed_at"] == pd.Timestamp(T0)).all()
    agg = run_ranking(engine, "run-a", AGGREGATE)
    # mean ranks: ret_1 (1,2,2)=5/3, rsi_14 (2,1,3)=2, rv_12 (3,3,1)=7/3, ...: lowest first
    assert agg["feature"].tolist()[:3] == ["ret_1", "rsi_14", "rv_12"]
    assert agg["importance"].is_monotonic_increasing
    # the shared query sees the aggregate in the same order
    top = top_features(engine, "BTC/USDT", 2, timeframe="1h", method=AGGREGATE)
    assert top["feature"].tolist() == ["ret_1", "rsi_14"]


def test_reanalysis_replaces_a_run_and_latest_wins(engine):
    store_rankings(engine, table(FEATURES), "BTC/USDT", "1h", "run-a", "lightgbm", T0)
    store_rankings(engine, table(FEATURES[::-1]), "BTC/USDT", "1h", "run-b", "xgboost",
                   T0 + timedelta(hours=1))
    assert latest_top_features(engine, "BTC/USDT", "1h", 2) == ["vol_z_24", "rv_12"]
    assert latest_top_features(engine, "BTC/USDT", "1h", 2, model_type="lightgbm") == [
        "ret_1", "ret_3"]
    assert latest_top_features(engine, "BTC/USDT", "1h", 99) == FEATURES[::-1]
    assert latest_top_features(engine, "BTC/USDT", "4h", 2) is None
    assert latest_top_features(engine, "ETH/USDT", "1h", 2) is None
    # re-analysing run-a later replaces its rows and makes it the latest
    store_rankings(engine, table(["rsi_14", *FEATURES[:2], *FEATURES[3:]]), "BTC/USDT", "1h",
                   "run-a", "lightgbm", T0 + timedelta(hours=2))
    assert len(run_ranking(engine, "run-a", "shap")) == len(FEATURES)
    assert latest_top_features(engine, "BTC/USDT", "1h", 1) == ["rsi_14"]
    assert previous_run(engine, "BTC/USDT", "1h", "run-a") == "run-b"
    assert previous_run(engine, "BTC/USDT", "1h", "run-b") is None  # run-a is later now
    assert previous_run(engine, "BTC/USDT", "1h", "run-a", model_type="lightgbm") is None


def test_history_oldest_first_with_limit(engine):
    for i in range(3):
        order = FEATURES[i:] + FEATURES[:i]
        store_rankings(engine, table(order), "BTC/USDT", "1h", f"run-{i}", "lightgbm",
                       T0 + timedelta(days=i))
    store_rankings(engine, table(FEATURES), "BTC/USDT", "4h", "run-4h", "lightgbm", T0)
    hist = ranking_history(engine, "BTC/USDT", "1h")
    assert list(hist.columns) == ["analyzed_at", "run_id", "model_type", "feature",
                                  "importance", "rank"]
    assert hist["run_id"].unique().tolist() == ["run-0", "run-1", "run-2"]
    assert len(hist) == 3 * len(FEATURES)
    first = hist[hist["run_id"] == "run-1"]
    assert first["feature"].iloc[0] == FEATURES[1] and first["rank"].tolist() == [1, 2, 3, 4, 5]
    last2 = ranking_history(engine, "BTC/USDT", "1h", limit=2)
    assert last2["run_id"].unique().tolist() == ["run-1", "run-2"]
    shap = ranking_history(engine, "BTC/USDT", "1h", "shap", model_type="xgboost")
    assert shap.empty and list(shap.columns) == list(hist.columns)


def test_select_top_features_uses_the_stored_ranking_in_column_order(engine, caplog):
    available = [*FEATURES, "macd"]
    cols, note = select_top_features(engine, "BTC/USDT", "1h", 3, available)
    assert cols == available and note.startswith("WARNING") and "no stored" in note
    store_rankings(engine, table(["rv_12", "ret_3", "vol_z_24", "ret_1", "rsi_14"]),
                   "BTC/USDT", "1h", "run-a", "lightgbm", T0)
    cols, note = select_top_features(engine, "BTC/USDT", "1h", 3, available)
    assert cols == ["ret_3", "rv_12", "vol_z_24"]  # the matrix's column order
    assert "run-a" in note and "3 of 6" in note and not note.startswith("WARNING")
    cols, note = select_top_features(engine, "BTC/USDT", "1h", 9, available)
    assert cols == FEATURES and note.startswith("WARNING") and "only 5 features" in note
    # a stored feature this job does not build: fall back to everything, with a warning
    cols, note = select_top_features(engine, "BTC/USDT", "1h", 3, ["ret_3", "ret_1", "macd"])
    assert cols == ["ret_3", "ret_1", "macd"] and "rv_12" in note and note.startswith("WARNING")
    with pytest.raises(ValueError, match="top_n"):
        select_top_features(engine, "BTC/USDT", "1h", 0, available)


def test_store_refuses_unknown_method_and_ranks_aggregate_ascending(engine):
    with pytest.raises(ValueError, match="method"):
        store_feature_importance(engine, {"a": 1.0}, symbol="BTC/USDT", timeframe="1h",
                                 run_id="r", model_type="m", method="gain")
    store_feature_importance(engine, {"a": 2.5, "b": 1.0, "c": 3.0}, symbol="BTC/USDT",
                             timeframe="1h", run_id="r", model_type="m", method=AGGREGATE)
    assert run_ranking(engine, "r", AGGREGATE)["feature"].tolist() == ["b", "a", "c"]
