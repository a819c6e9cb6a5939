"""Shift detection: the pure comparison, and the alert + data_quality_logs row on a forced shift
(none on a stable ranking), on SQLite and Postgres."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from huracan.alerts import Alert
from huracan.analysis.importance_store import store_rankings
from huracan.analysis.shift import ISSUE_TYPE, compare_rankings, detect_shift
from huracan.db.tables import DataQualityLog
from huracan.evaluation.importance import rank_table

FEATURES = [f"f{i:02d}" for i in range(20)]
T0 = datetime(2024, 9, 1, tzinfo=UTC)


class RecordingNotifier:
    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def notify(self, alert: Alert) -> None:
        self.alerts.append(alert)


def ranks(order: list[str]) -> pd.Series:
    return pd.Series(np.arange(1, len(order) + 1), index=order)


def test_identical_rankings():
    r = compare_rankings(ranks(FEATURES), ranks(FEATURES), 5)
    assert r.rho == pytest.approx(1.0)
    assert r.entries == [] and r.exits == [] and r.union == FEATURES[:5]
    assert not r.shifted(0.5)


def test_reversed_top_and_entries_exits():
    cur = FEATURES[:5][::-1] + FEATURES[5:]
    r = compare_rankings(ranks(FEATURES), ranks(cur), 5)
    assert r.rho == pytest.approx(-1.0) and r.shifted(0.5)
    moved = ["f07", "f08", *FEATURES[:3], "f03", "f04", "f05", "f06", *FEATURES[9:]]
    r = compare_rankings(ranks(FEATURES), ranks(moved), 5)
    assert r.entries == ["f07", "f08"] and r.exits == ["f03", "f04"]
    assert r.union == [*FEATURES[:5], "f07", "f08"]
    # union ranks: previous 1..5,8,9 vs current 3,4,5,6,7,1,2 -> hand-computed Spearman rho
    assert r.rho == pytest.approx(
        1 - 6 * sum((a - b) ** 2 for a, b in zip([1, 2, 3, 4, 5, 6, 7], [3, 4, 5, 6, 7, 1, 2],
                                                  strict=True)) / (7 * (49 - 1)))


def test_only_shared_features_are_compared():
    """A model trained on a top-N subset ranks fewer features: that is not a shift."""
    small = ranks(FEATURES[:5])
    r = compare_rankings(ranks(FEATURES), small, 10)
    assert r.rho == pytest.approx(1.0) and r.entries == [] and r.exits == []
    assert r.union == FEATURES[:5] and r.not_shared == FEATURES[5:]
    # the subset in another order: compared over the shared features only
    r = compare_rankings(ranks(FEATURES), ranks(["f02", "f01", "f00", "zz"]), 2)
    assert r.union == ["f00", "f01", "f02"] and r.entries == ["f02"] and r.exits == ["f00"]
    assert r.not_shared == [*FEATURES[3:], "zz"]
    assert r.rho == pytest.approx(-1.0)
    assert np.isnan(compare_rankings(small, ranks(["zz"]), 3).rho)
    assert not compare_rankings(small, ranks(["zz"]), 3).shifted(0.5)
    with pytest.raises(ValueError, match="top_n"):
        compare_rankings(small, small, 0)
    with pytest.raises(ValueError, match="empty"):
        compare_rankings(small, pd.Series(dtype=float), 3)


def _store(engine, run_id: str, order: list[str], hours: int, model_type: str = "lightgbm"):
    imp = np.array([len(order) - order.index(f) for f in FEATURES], dtype=float)
    store_rankings(engine, rank_table({"shap": imp, "permutation": imp, "correlation": imp},
                                      FEATURES),
                   "BTC/USDT", "1h", run_id, model_type, T0 + timedelta(hours=hours))


def _quality_rows(engine) -> list:
    with engine.connect() as conn:
        return list(conn.execute(select(DataQualityLog.issue_type, DataQualityLog.severity,
                                        DataQualityLog.symbol, DataQualityLog.details)).all())


def test_forced_shift_alerts_and_logs_a_quality_row(engine):
    notifier = RecordingNotifier()
    _store(engine, "run-1", FEATURES, 0)
    assert detect_shift(engine, "BTC/USDT", "1h", "run-1", 0.5, 10, notifier) is None
    shuffled = list(np.random.default_rng(0).permutation(FEATURES))
    _store(engine, "run-2", shuffled, 1)
    report = detect_shift(engine, "BTC/USDT", "1h", "run-2", 0.5, 10, notifier)
    assert report is not None and report.alerted and report.rho < 0.5
    assert report.previous_run_id == "run-1" and report.current_run_id == "run-2"
    assert len(notifier.alerts) == 1
    alert = notifier.alerts[0]
    assert alert.severity == "warning" and "BTC/USDT 1h" in alert.title
    assert alert.details["previous_run_id"] == "run-1"
    rows = _quality_rows(engine)
    assert len(rows) == 1
    issue_type, severity, symbol, details = rows[0]
    assert (issue_type, severity, symbol) == (ISSUE_TYPE, "warning", "BTC/USDT")
    assert details["run_id"] == "run-2" and details["entries"] == report.entries
    assert details["rho"] == pytest.approx(report.rho, abs=1e-4)


def test_stable_ranking_does_not_alert(engine):
    notifier = RecordingNotifier()
    _store(engine, "run-1", FEATURES, 0)
    swapped = [FEATURES[1], FEATURES[0], *FEATURES[2:]]  # two neighbours swap places
    _store(engine, "run-2", swapped, 1)
    report = detect_shift(engine, "BTC/USDT", "1h", "run-2", 0.5, 10, notifier)
    assert report is not None and not report.alerted and report.rho > 0.9
    assert notifier.alerts == [] and _quality_rows(engine) == []


def test_other_model_types_are_not_compared_by_default(engine):
    notifier = RecordingNotifier()
    _store(engine, "run-lgb", FEATURES, 0, "lightgbm")
    _store(engine, "run-lstm", FEATURES[::-1], 1, "lstm")
    assert detect_shift(engine, "BTC/USDT", "1h", "run-lstm", 0.5, 10, notifier) is None
    across = detect_shift(engine, "BTC/USDT", "1h", "run-lstm", 0.5, 10, notifier,
                          same_model_type=False)
    assert across is not None and across.alerted and len(notifier.alerts) == 1
    with pytest.raises(LookupError):
        detect_shift(engine, "BTC/USDT", "1h", "nope", 0.5, 10, notifier)
