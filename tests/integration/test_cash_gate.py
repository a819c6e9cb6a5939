"""The registry gate's cash floor, as commands (``python -m huracan.train`` with the registry on):
a series with no edge (a random walk, or a bid-ask bounce under next-open fills and a half-spread)
promotes nothing and the event names cash; a series with a real, slow autocorrelated drift is
promoted; the gate scores the rule the run fitted; the DSR of a run after a 6-job sweep on the
same symbol and timeframe counts N >= 7 from the tracking store."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from synthetic import edge_file, no_edge_file, random_walk_file  # tests/integration/synthetic.py

from huracan.db.session import make_engine
from huracan.registry import events
from huracan.registry.evaluate import load_window, score_model
from huracan.registry.promotion import PRODUCTION, alias_version
from huracan.tracking.run import default_tracking_uri

pytestmark = pytest.mark.slow
NAME = "huracan-BTCUSDT-1h"
FAST = ["model.n_estimators=60", "explain.max_rows=20", "importance.enabled=false",
        "regime=none"]


def _history(tmp: Path) -> list:
    engine = make_engine(f"sqlite:///{tmp / 'brain.db'}")
    try:
        return events.history(engine, NAME)
    finally:
        engine.dispose()


def _client(tmp: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=default_tracking_uri(tmp / "mlruns"))


@pytest.mark.parametrize("series", ["random_walk", "bounce"])
def test_no_edge_promotes_nothing_and_the_event_says_cash(tmp_path, train_cli, series):
    """Every bar traded on the sign of the forecast (threshold 0, one trade makes a candidate
    eligible), so the floor, not eligibility, decides. The bounce series' close-to-close returns
    revert (trades at the bid or the ask): filled at the next open with the Abdi-Ranaldo
    half-spread, nothing of it is left."""
    path = (random_walk_file if series == "random_walk" else no_edge_file)(tmp_path)
    proc = train_cli([f"data.path={path}", *FAST, "backtest.threshold=0.0",
                      "selection.min_trades=1", "backtest.half_spread=abdi_ranaldo"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "REJECTED: candidate does not beat cash" in proc.stdout, proc.stdout[-3000:]
    [ev] = _history(tmp_path)
    assert ev.event == "rejected" and "does not beat cash" in ev.reason
    assert "cash is the floor" in ev.reason and ev.champion_version is None
    cash = ev.evidence["cash"]
    assert cash["beats"] is False and cash["min_psr"] == 0.9 and cash["bars"] == ev.eval_bars
    assert cash["psr"] < 0.9 or cash["total_return"] <= 0
    assert ev.evidence["candidate"]["execution"]["fill"] == "next_open"
    client = _client(tmp_path)
    assert alias_version(client, NAME, PRODUCTION) is None  # production absent
    if series == "bounce":  # filled at the close (a diagnostic), the bounce looks like an edge
        m = client.get_run(ev.run_id).data.metrics
        assert m["test_sharpe_close"] > 0 > m["test_sharpe"]


def test_a_slow_autocorrelated_drift_is_promoted_with_its_fitted_rule(tmp_path, train_cli):
    """The drift persists over ~100 bars: it survives next-open fills and 6 bps a unit of
    turnover, beats cash and is promoted with no champion. The rule chooses its threshold on
    validation from a grid that excludes backtest.threshold (0.0008): the gate scores the
    fitted rule (the run's own test figures), not the default threshold."""
    path = edge_file(tmp_path)
    proc = train_cli([f"data.path={path}", *FAST, "rule.grid=[0.0003,0.002]"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "PROMOTED to production: candidate beats cash" in proc.stdout, proc.stdout[-3000:]
    [ev] = _history(tmp_path)
    assert ev.event == "promoted" and ev.reason.startswith("candidate beats cash")
    assert "no champion" in ev.reason
    cash = ev.evidence["cash"]
    assert cash["beats"] is True and cash["psr"] >= 0.9 and cash["total_return"] > 0
    client = _client(tmp_path)
    prod = alias_version(client, NAME, PRODUCTION)
    assert prod is not None and str(prod.version) == str(ev.candidate_version)
    fit = json.loads(Path(client.download_artifacts(ev.run_id, "rule/fit.json",
                                                    str(tmp_path))).read_text())
    rule = ev.evidence["forecasts"]["candidate"]["rule"]
    assert rule["source"] == "fitted" and rule["chosen_on"] == "validation"
    assert rule["threshold"] in (0.0003, 0.002) and rule["threshold"] != 0.0008
    assert fit["threshold"] == rule["threshold"] and fit["chosen_on"] == "validation"
    # the gate re-scores the run's test bars exactly as the run scored them with its fitted rule
    m = client.get_run(ev.run_id).data.metrics
    assert ev.evidence["candidate"]["composite_score"] == pytest.approx(
        m["test_composite_score"], rel=1e-9)
    assert ev.evidence["candidate"]["trades"] == m["test_n_trades"]
    # `registry monitor`'s scorer applies the same fitted rule to the registered model
    mlflow.set_tracking_uri(default_tracking_uri(tmp_path / "mlruns"))
    rescored = score_model(f"models:/{NAME}/{ev.candidate_version}", load_window(client,
                                                                                  ev.run_id))
    assert rescored.metrics.as_dict()["composite_score"] == pytest.approx(
        m["test_composite_score"], rel=1e-6)
    assert rescored.metrics.n_trades == m["test_n_trades"]


def test_the_dsr_after_a_six_job_sweep_counts_every_trial_in_the_store(tmp_path, train_cli):
    path = edge_file(tmp_path)
    sweep = train_cli([f"data.path={path}", *FAST, "registry.enabled=false",
                       "model.seed=1,2,3,4,5,6", "-m"], tmp_path, timeout=1200)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    run = train_cli([f"data.path={path}", *FAST, "model.seed=7"], tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    [ev] = _history(tmp_path)
    sel = ev.evidence["selection"]
    assert sel["n_candidates"] == 1  # the run alone, but deflated against every trial
    assert sel["n_trials_in_store"] == 7 and sel["n_trials"] >= 7
    # deflated against the best of seven: never above the PSR
    assert sel["dsr"] is not None and 0.0 <= sel["dsr"] <= sel["psr"]
