"""``huracan features top`` and ``trend`` on stored rankings (the sub-app, via CliRunner)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
from typer.testing import CliRunner

from huracan.analysis.importance_store import store_rankings
from huracan.cli.features import features_app
from huracan.evaluation.importance import rank_table

FEATURES = ["ret_1", "ret_3", "rsi_14", "rv_12", "vol_z_24", "macd"]
T0 = datetime(2024, 9, 1, 12, tzinfo=UTC)
runner = CliRunner()


def _store(engine, run_id: str, order: list[str], hours: int) -> None:
    imp = np.array([len(order) - order.index(f) for f in FEATURES], dtype=float)
    store_rankings(engine, rank_table({"shap": imp, "permutation": imp, "correlation": imp},
                                      FEATURES),
                   "BTC/USDT", "1h", run_id, "lightgbm", T0 + timedelta(hours=hours))


def test_top_prints_the_latest_aggregate_ranking(engine, db_url):
    res = runner.invoke(features_app, ["top", "BTC/USDT", "--db-url", db_url])
    assert res.exit_code == 1 and "no stored aggregate feature ranking" in res.output
    _store(engine, "run-old", FEATURES, 0)
    _store(engine, "run-new", FEATURES[::-1], 1)
    res = runner.invoke(features_app, ["top", "BTC/USDT", "--timeframe", "1h", "--n", "3",
                                       "--db-url", db_url])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert "run run-new (lightgbm)" in lines[0] and "2024-09-01 13:00:00" in lines[0]
    assert [ln.split()[1] for ln in lines[2:]] == ["macd", "vol_z_24", "rv_12"]
    assert lines[2].split() == ["1", "macd", "1.00"]  # mean rank
    res = runner.invoke(features_app, ["top", "BTC/USDT", "--n", "2", "--json",
                                       "--method", "shap", "--db-url", db_url])
    doc = json.loads(res.output)
    assert doc["run_id"] == "run-new" and doc["method"] == "shap"
    assert [f["feature"] for f in doc["features"]] == ["macd", "vol_z_24"]


def test_trend_shows_ranks_per_analysis(engine, db_url):
    _store(engine, "run-a", FEATURES, 0)
    _store(engine, "run-b", ["ret_3", "ret_1", *FEATURES[2:]], 1)
    _store(engine, "run-c", ["macd", "ret_3", "ret_1", *FEATURES[2:5]], 2)
    res = runner.invoke(features_app, ["trend", "BTC/USDT", "--n", "2", "--db-url", db_url])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert "last 3 analyses" in lines[0]
    assert lines[1].split()[2:] == ["09-01", "12:00:00", "09-01", "13:00:00", "09-01",
                                    "14:00:00"]
    assert lines[2].split()[1:] == ["run-a", "run-b", "run-c"]
    assert lines[3].split()[1:] == ["lightgbm"] * 3 + ["move"]
    rows = {ln.split()[0]: ln.split()[1:] for ln in lines[4:]}
    # latest top 2 first (macd, ret_3), then the earlier top-2 member ret_1
    assert [ln.split()[0] for ln in lines[4:]] == ["macd", "ret_3", "ret_1"]
    assert rows["macd"] == ["6", "6", "1", "+5"]
    assert rows["ret_3"] == ["2", "1", "2", "+0"]
    assert rows["ret_1"] == ["1", "2", "3", "-2"]
    res = runner.invoke(features_app, ["trend", "BTC/USDT", "--last", "1", "--n", "1",
                                       "--db-url", db_url])
    assert res.output.splitlines()[4].split() == ["macd", "1", "+0"]
    res = runner.invoke(features_app, ["trend", "ETH/USDT", "--db-url", db_url])
    assert res.exit_code == 1
