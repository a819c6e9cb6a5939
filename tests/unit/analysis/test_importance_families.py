"""Importance summed per feature family: shares, the clipping of negative permutation increases,
the logged metrics and artifact, the nightly line, and a model whose signal sits in a context
column is reported as using other markets."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest

from huracan.analysis.analyzer import log_rankings
from huracan.analysis.families import (
    ARTIFACT,
    describe,
    family_metrics,
    family_report,
    family_sums,
    shap_families,
    shares_of,
)
from huracan.analysis.importance_store import store_rankings
from huracan.evaluation.importance import ImportanceResult, analyze, rank_table
from huracan.models.lightgbm import LightGBMForecaster
from huracan.orchestration.steps import stored_families

NAMES = ["ret_1", "rsi_14", "ctx_ETHUSDT_ret_1", "ctx_ETHUSDT_beta_24", "htf_4h_ret_1",
         "funding_rate"]


def test_family_sums_and_shares():
    sums = family_sums([0.1, 0.1, 0.4, 0.2, 0.2, 0.0], NAMES)
    assert list(sums) == ["own", "context", "higher_timeframe", "market_structure"]
    np.testing.assert_allclose(list(sums.values()), [0.2, 0.6, 0.2, 0.0])
    shares = shares_of(sums)
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["context"] == pytest.approx(0.6)
    assert shares_of({"own": 0.0, "context": 0.0}) == {"own": 0.0, "context": 0.0}
    with pytest.raises(ValueError, match="5 importances for 6"):
        family_sums([1, 2, 3, 4, 5], NAMES)
    with pytest.raises(ValueError, match="NaN"):
        family_sums([1, 2, 3, 4, 5, np.nan], NAMES)


def test_negative_permutation_increases_count_as_zero():
    # own: +0.3 and -0.5 -> 0.3 (not -0.2); context 0.1 + 0; htf -0.1 -> 0
    report = family_report({"permutation": np.array([0.3, -0.5, 0.1, 0.0, -0.1, 0.0])}, NAMES)
    block = report["methods"]["permutation"]
    assert block["sums"]["own"] == pytest.approx(0.3)
    assert block["sums"]["higher_timeframe"] == 0.0
    assert block["shares"]["own"] == pytest.approx(0.75)
    assert block["total"] == pytest.approx(0.4)
    assert report["summary"].startswith("uses mostly its own candles (own 75%, context 25%")


def test_report_metrics_and_description():
    imp = {"shap": np.array([0.05, 0.05, 0.5, 0.2, 0.1, 0.1]),
           "permutation": np.array([0.0, 0.0, 1.0, 0.0, 0.0, 0.0]),
           "correlation": np.ones(6)}
    report = family_report(imp, NAMES)
    assert report["features"] == {"own": 2, "context": 2, "higher_timeframe": 1,
                                  "market_structure": 1}
    assert list(report["methods"]) == ["shap", "permutation"]  # correlation is not summed
    m = family_metrics(report)
    assert m["importance/family_context_shap"] == pytest.approx(0.7)
    assert m["importance/family_own_shap"] == pytest.approx(0.1)
    assert m["importance/family_context_permutation"] == pytest.approx(1.0)
    assert len(m) == 8
    assert report["summary"] == ("uses mostly other markets (context) (context 70%, "
                                 "own 10%, higher_timeframe 10%, market_structure 10%; SHAP)")
    assert describe({"own": 0.4, "context": 0.35, "higher_timeframe": 0.25}).startswith(
        "uses most of all its own candles")
    assert describe({"own": 0.0}, "permutation") == "no feature moved the model (permutation)"


class FakeClient:
    def __init__(self) -> None:
        self.texts: dict[str, str] = {}
        self.metrics: dict[str, float] = {}

    def log_text(self, run_id, text, path):
        self.texts[path] = text

    def log_batch(self, run_id, metrics):
        self.metrics.update({m.key: m.value for m in metrics})


def _result() -> ImportanceResult:
    imp = {"shap": np.array([0.1, 0.1, 0.6, 0.0, 0.2, 0.0]),
           "permutation": np.array([0.2, -0.1, 0.6, 0.0, 0.2, 0.0]),
           "correlation": np.linspace(0.1, 0.6, 6)}
    return ImportanceResult(feature_names=NAMES, importances=imp, table=rank_table(imp, NAMES),
                            timings={"permutation": 0.1}, baseline_loss=1.0)


def test_log_rankings_logs_family_metrics_and_artifact():
    client = FakeClient()
    log_rankings(client, "run-x", _result(), {"shift": None})
    families = json.loads(client.texts[ARTIFACT])
    assert families["methods"]["shap"]["shares"]["context"] == pytest.approx(0.6)
    assert client.metrics["importance/family_context_shap"] == pytest.approx(0.6)
    assert client.metrics["importance/family_own_permutation"] == pytest.approx(0.2)
    assert client.metrics["importance/family_higher_timeframe_permutation"] == pytest.approx(0.2)
    assert "importance/family_symbol_shap" not in client.metrics  # no symbol column


def test_nightly_line_from_the_stored_ranking(engine):
    assert stored_families(engine, "run-none") == ""
    store_rankings(engine, _result().table, "BTC/USDT", "1h", "run-y", "lightgbm",
                   datetime(2024, 9, 1, tzinfo=UTC))
    line = stored_families(engine, "run-y")
    assert line.startswith("lightgbm: uses mostly other markets (context) (context 60%")


def test_a_context_signal_is_attributed_to_the_context_family():
    """Label = a context column's value + noise: SHAP and permutation both put the model's
    information in the context family."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(900, len(NAMES))).astype(np.float32)
    y = 0.01 * X[:, 2] + rng.normal(0, 0.002, len(X))
    model = LightGBMForecaster(n_estimators=30, n_jobs=1, early_stopping_rounds=10,
                               log_period=0, seed=0)
    model.fit(X[:600], y[:600], X[600:750], y[600:750], feature_names=NAMES)
    res = analyze(model, X[750:], y[750:], None, X[:600], y[:600], n_repeats=2, seed=0,
                  shap_max_rows=100)
    report = family_report(res.importances, res.feature_names)
    for method in ("shap", "permutation"):
        assert report["methods"][method]["shares"]["context"] > 0.8, report
    assert "other markets" in report["summary"]


def test_shap_families_per_pooled_symbol_with_a_prefix():
    values = np.array([[0.1, -0.1, 0.4, 0.0, 0.2, 0.0], [-0.1, 0.1, -0.4, 0.0, 0.2, 0.0]])
    report = shap_families(values, NAMES)
    m = family_metrics(report, "ETHUSDT")
    assert m["importance/ETHUSDT/family_context_shap"] == pytest.approx(0.4 / 0.8)
    assert m["importance/ETHUSDT/family_own_shap"] == pytest.approx(0.2 / 0.8)
    assert list(report["methods"]) == ["shap"]
    with pytest.raises(ValueError, match="for 6 features"):
        shap_families(values[:, :5], NAMES)
