"""Walk-forward candidates meet the gate on a full window of out-of-sample bars: a run logs its
last ``registry.min_eval_bars`` stitched OOS forecasts (a partial last step no longer leaves too
few), yesterday's walk-forward champion is scored on the same bars from its registered model and
its own stored forecasts, and a default walk-forward run is promoted and then sized by
``huracan size`` (as commands, on the shipped sample's bars with synthetic prices carrying a real
edge, ``edge_sample_path``: a candidate must beat cash to be promoted, and the sample's own do
not)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from huracan.db.session import make_engine
from huracan.registry import events
from huracan.registry.evaluate import load_window, stored_forecasts
from huracan.registry.manifest import manifest_value
from huracan.registry.promotion import PRODUCTION, alias_version
from huracan.tracking.run import default_tracking_uri

pytestmark = pytest.mark.slow
NAME = "huracan-BTCUSDT-1h"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: a weekly step leaves a partial last step of 75 bars on the shipped sample (3 on the sample
#: without its last 3 days), fewer than registry.min_eval_bars = 168
WEEKLY = ["model=lightgbm", "split=walk_forward", "split.step_bars=7d", "model.n_estimators=60",
          "explain.max_rows=20", "importance.enabled=false"]


def _production_events(tmp):
    return [e for e in events.history(make_engine(f"sqlite:///{tmp / 'brain.db'}"), NAME)
            if e.alias == PRODUCTION]


@pytest.fixture(scope="module")
def nightly(tmp_path_factory, edge_sample_path, train_cli):
    """Yesterday: a walk-forward run on the sample without its last 3 days (promoted, the first
    version). Today: the same recipe on the whole sample, gated against it."""
    tmp = tmp_path_factory.mktemp("wf_gate")
    early = tmp / "early.parquet"
    candles = pd.read_parquet(edge_sample_path)
    candles.iloc[: len(candles) - 3 * 24 * 12].to_parquet(early)  # 5m candles: 3 days fewer
    runs = []
    for path, out in ((early, "yesterday"), (edge_sample_path, "today")):
        proc = train_cli([*WEEKLY, f"data.path={path}", f"hydra.run.dir={tmp / out}"], tmp)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs.append(json.loads((tmp / out / "result.json").read_text()))
    uri = default_tracking_uri(tmp / "mlruns")
    mlflow.set_tracking_uri(uri)
    return tmp, MlflowClient(tracking_uri=uri), runs


def test_a_partial_last_step_still_leaves_min_eval_bars(nightly):
    tmp, client, (yesterday, _) = nightly
    first = _production_events(tmp)[0]
    assert first.run_id == yesterday["run_id"] and first.event == "promoted"
    assert first.eval_bars == 168  # not the 3 bars of its last step
    mv = client.get_model_version(NAME, yesterday["version"])
    seen = pd.Timestamp(manifest_value(client, mv, "val_end"))
    window = load_window(client, yesterday["run_id"]).frame
    scored = window[window.split == "test"]
    assert len(scored) == 168 and scored["fold"].nunique() == 2
    after = int((pd.to_datetime(scored.timestamp, utc=True) > seen).sum())
    counts = first.evidence["forecasts"]["candidate"]
    assert (counts["bars_from_model"], counts["bars_from_stored"]) == (after, 168 - after)
    assert 0 < after < 168


def test_the_window_holds_the_runs_own_out_of_sample_forecasts(nightly):
    tmp, client, (_, today) = nightly
    run_id = today["run_id"]
    window = load_window(client, run_id)
    frame = window.frame
    scored = frame[frame.split == "test"].set_index("timestamp")
    assert frame[frame.split == "context"]["prediction"].isna().all()
    oos = pd.read_parquet(client.download_artifacts(run_id, "backtest/oos_returns.parquet",
                                                    str(tmp))).set_index("timestamp")
    assert scored.index.isin(oos.index).all() and len(scored) == 168
    np.testing.assert_allclose(scored["prediction"], oos.loc[scored.index, "prediction"])
    assert (scored["fold"] == oos.loc[scored.index, "fold"]).all()
    # the registered model is the last fold's: it forecasts that fold's bars as stored
    model = mlflow.pyfunc.load_model(f"models:/{NAME}/{today['version']}")
    names = model.metadata.get_input_schema().input_names()
    last = frame["fold"] == frame["fold"].max()
    np.testing.assert_allclose(np.asarray(model.predict(frame.loc[last, names]), float),
                               frame.loc[last, "prediction"], rtol=1e-5, atol=1e-9)
    assert stored_forecasts(window).index.size == 168


def test_yesterdays_champion_is_scored_on_the_full_window_from_both_sources(nightly):
    tmp, client, (yesterday, today) = nightly
    second = _production_events(tmp)[-1]
    assert second.run_id == today["run_id"]
    assert second.champion_version == yesterday["version"]
    assert second.eval_bars == 168  # before: only the bars after yesterday's val_end (76)
    champ = second.evidence["forecasts"]["champion"]
    assert champ["stored_forecasts"] and champ["bars_from_stored"] > 0
    assert champ["bars_from_model"] > 0
    assert champ["bars_from_stored"] + champ["bars_from_model"] == 168
    # yesterday's folds are today's folds (same grid, same rows, same seed): every bar was
    # forecast by the same fold model on both sides, so both score the same
    assert second.champion_score == pytest.approx(second.candidate_score, rel=1e-9)
    assert second.event == "promoted"
    assert str(alias_version(client, NAME, PRODUCTION).version) == today["version"]


def test_a_default_walk_forward_run_is_promoted_and_sized(tmp_path, train_cli,
                                                         edge_sample_path):
    proc = train_cli(["model=lightgbm", "split=walk_forward", f"data.path={edge_sample_path}"],
                     tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "PROMOTED to production" in proc.stdout
    [ev] = _production_events(tmp_path)
    assert ev.event == "promoted" and ev.eval_bars >= 168
    assert ev.evidence["forecasts"]["candidate"]["stored_forecasts"]
    uri = default_tracking_uri(tmp_path / "mlruns")
    assert alias_version(MlflowClient(tracking_uri=uri), NAME, PRODUCTION) is not None
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    size = subprocess.run([sys.executable, "-m", "huracan.cli", "size", "BTC/USDT", "--json",
                           "--tracking-uri", uri], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert size.returncode == 0, size.stdout + size.stderr[-2000:]
    answer = json.loads(size.stdout)
    assert answer["forecaster_version"] == "1"  # the version the gate promoted
    assert np.isfinite(answer["forecast"]) and 0.0 <= answer["size"] <= 1.0
