"""Selection names its floor (issue 22): ``python -m huracan.train`` and ``python -m huracan.tune``
refuse a test metric as the objective (commands, one line, exit 1), and the sweep's summary shows
each candidate's net Sharpe and breakeven cost beside buy & hold and cash on the same windows
(built from hand-made ``result.json`` files, then logged on a parent run by :class:`SweepRun`)."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from huracan.callbacks.sweep import SweepRun, format_table, summary_frame
from huracan.tracking.results import read_results, write_result
from huracan.tracking.run import configure, default_tracking_uri

REPO = Path(__file__).resolve().parents[2]
RULE = ("never select on test; a selection never looks at test rows, use a val_ or oos_ "
        "metric")


def _errors(proc: subprocess.CompletedProcess[str], prog: str) -> list[str]:
    return [ln for ln in proc.stderr.splitlines() if ln.startswith(f"{prog}: error:")]


def _runs(tmp: Path) -> list[Any]:
    client = MlflowClient(tracking_uri=default_tracking_uri(tmp / "mlruns"))
    exp = client.get_experiment_by_name("huracan")
    return client.search_runs([exp.experiment_id]) if exp else []


# ----------------------------------------------------------------------------- commands
@pytest.mark.slow  # a command: a subprocess
def test_train_refuses_a_test_objective_in_one_line(tmp_path, train_cli):
    proc = train_cli(["objective=test_sharpe"], tmp_path, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert _errors(proc, "huracan.train") == [
        f"huracan.train: error: objective=test_sharpe: {RULE}"]
    assert "Traceback" not in proc.stdout + proc.stderr
    result = json.loads((tmp_path / "outputs" / "result.json").read_text())
    assert result["status"] == "failed"
    assert result["error"].startswith("SelectionOnTestError: objective=test_sharpe")
    assert _runs(tmp_path) == []  # refused before any run was opened


@pytest.mark.slow  # a command: a subprocess
def test_a_sweep_with_a_test_objective_fails_every_job_naming_the_rule(tmp_path, train_cli):
    proc = train_cli(["objective=test_sharpe,test_composite_score", "-m"], tmp_path,
                     timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert _errors(proc, "huracan.train") == [
        f"huracan.train: error: objective=test_sharpe: {RULE}"]  # Hydra reports the first
    results = read_results(tmp_path / "multirun")
    assert [(r["job"], r["status"]) for r in results] == [(0, "failed"), (1, "failed")]
    assert "objective=test_composite_score: never select on test" in results[1]["error"]
    runs = _runs(tmp_path)
    assert [r.data.tags.get("huracan.role") for r in runs] == ["sweep"]  # no job run
    assert runs[0].info.status == "FAILED"


@pytest.mark.slow  # a command: a subprocess
def test_tune_refuses_a_test_objective_with_the_same_rule(tmp_path):
    cmd = [sys.executable, "-m", "huracan.tune", "objective=test_total_return",
           f"tracking.store_dir={tmp_path / 'mlruns'}", f"db.url=sqlite:///{tmp_path / 'b.db'}",
           f"hydra.run.dir={tmp_path / 'run'}", f"tune.preset_dir={tmp_path / 'tuned'}"]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert _errors(proc, "huracan.tune") == [
        f"huracan.tune: error: objective=test_total_return: {RULE}"]
    assert not (tmp_path / "mlruns" / "optuna.db").exists()


# ----------------------------------------------------------------------------- summary
def _job(job: int, model: str, sharpe: float, ret: float, bps: float,
         buy_hold: tuple[float, float] = (0.8, 0.04), run_id: str | None = None,
         psr: float = 0.95) -> dict[str, Any]:
    """A forward job's result.json as :func:`huracan.train.main` writes it: selected on val."""
    metrics = {"val_sharpe": sharpe, "val_total_return": ret, "val_breakeven_bps": bps,
               "val_composite_score": 0.5 + sharpe / 10, "val_n_trades": 40.0, "val_psr": psr,
               "test_sharpe": -0.2, "test_total_return": -0.01, "test_breakeven_bps": -1.5,
               "test_composite_score": 0.3, "test_n_trades": 35.0, "test_psr": 0.4,
               "val_buy_hold_sharpe": buy_hold[0], "val_buy_hold_total_return": buy_hold[1],
               "test_buy_hold_sharpe": -0.6, "test_buy_hold_total_return": -0.05}
    return {"status": "ok", "job": job, "model_type": model, "scheme": "forward",
            "run_id": run_id or f"run{job}", "objective": "val_composite_score",
            "objective_value": metrics["val_composite_score"], "metrics": metrics,
            "timings": {"fit": 2.0}, "sweep_id": "s1"}


def _sweep_dir(tmp: Path, results: list[dict[str, Any]]) -> Path:
    sweep = tmp / "multirun"
    for r in results:
        write_result(sweep / str(r["job"]), r)
    return sweep


def test_the_summary_shows_net_sharpe_and_breakeven_beside_buy_and_hold_and_cash(tmp_path):
    failed = {"status": "failed", "job": 2, "model_type": "lstm", "sweep_id": "s1",
              "error": "ValueError: boom"}
    sweep = _sweep_dir(tmp_path, [_job(0, "lightgbm", 1.5, 0.03, 12.5),
                                  _job(1, "xgboost", -0.4, -0.02, -6.25), failed])
    results = read_results(sweep, "s1")
    frame = summary_frame(results, min_trades=30)
    assert list(frame.model) == ["lightgbm", "xgboost", "lstm", "buy & hold", "cash"]
    assert list(frame.status) == ["ok", "ok", "failed", "baseline", "baseline"]
    rows = frame.set_index("model")
    assert rows.loc["lightgbm", "val_sharpe"] == 1.5
    assert rows.loc["lightgbm", "val_breakeven_bps"] == 12.5
    assert rows.loc["xgboost", "val_breakeven_bps"] == -6.25
    assert rows.loc["xgboost", "val_return"] == -0.02
    assert rows.loc["xgboost", "test_breakeven_bps"] == -1.5
    # buy & hold and cash on the same windows, beside every successful job
    bh, cash = rows.loc["buy & hold"], rows.loc["cash"]
    assert (bh.job, bh.val_sharpe, bh.val_return) == ("all", 0.8, 0.04)
    assert (bh.test_sharpe, bh.test_return, bh.val_trades) == (-0.6, -0.05, 1)
    assert math.isnan(bh.val_breakeven_bps) and math.isnan(bh.val_composite)
    assert (cash.job, cash.val_sharpe, cash.val_return, cash.val_trades, cash.val_psr) == (
        "all", 0.0, 0.0, 0, 0.0)
    assert (cash.test_sharpe, cash.test_return) == (0.0, 0.0)
    text = format_table(results, min_trades=30).splitlines()
    assert text[0].split()[:8] == ["job", "model", "status", "objective", "objective_value",
                                   "val_sharpe", "val_breakeven_bps", "val_return"]
    assert text[1].split()[:8] == ["0", "lightgbm", "ok", "val_composite_score", "0.650",
                                   "1.500", "12.500", "0.030"]
    assert text[4].split()[:8] == ["all", "buy", "&", "hold", "baseline", "-", "-", "0.800"]
    assert text[5].split()[:7] == ["all", "cash", "baseline", "-", "-", "0.000", "-"]
    assert text[6] == ("floor: cash (never trade: Sharpe 0, return 0); 1 of 2 candidates beat "
                       "cash on val (net return > 0 and PSR >= 0.9); buy & hold Sharpe "
                       "there 0.800")


def test_the_floor_line_applies_the_cash_rule_of_every_decision():
    """A positive return without the PSR the floor demands does not beat cash (the rule of
    :func:`huracan.evaluation.evidence.beats_cash`), and the bar is the setting's."""
    from huracan.callbacks.sweep import floor_line

    lucky = _job(0, "lightgbm", 0.9, 0.02, 3.0, psr=0.7)
    steady = _job(1, "xgboost", 1.8, 0.05, 9.0, psr=0.97)
    losing = _job(2, "cnn", -0.5, -0.01, -2.0, psr=0.1)
    line = floor_line([lucky, steady, losing])
    assert "1 of 3 candidates beat cash on val (net return > 0 and PSR >= 0.9)" in line
    assert "2 of 3 candidates beat cash on val (net return > 0 and PSR >= 0.6)" in floor_line(
        [lucky, steady, losing], min_psr=0.6)


def test_jobs_on_other_windows_get_a_buy_and_hold_row_each_and_old_results_none(tmp_path):
    # jobs 0 and 2 were scored on one window, job 1 on another (e.g. a sweep over data.path)
    sweep = _sweep_dir(tmp_path, [_job(0, "lightgbm", 0.5, 0.01, 3.0),
                                  _job(1, "lightgbm", 0.2, 0.002, 1.0, buy_hold=(-1.1, -0.07)),
                                  _job(2, "xgboost", -0.1, -0.001, -0.5)])
    frame = summary_frame(read_results(sweep))
    bh = frame[frame.model == "buy & hold"]
    assert list(bh.job) == ["0,2", "1"] and list(bh.val_sharpe) == [0.8, -1.1]
    # a result written before buy & hold was logged: cash alone
    old = _job(0, "lightgbm", 0.5, 0.01, 3.0)
    old["metrics"] = {k: v for k, v in old["metrics"].items() if "buy_hold" not in k}
    frame = summary_frame([old])
    assert list(frame.model) == ["lightgbm", "cash"]
    assert "buy & hold Sharpe" not in format_table([old])


def test_the_sweep_run_logs_the_summary_with_its_baselines(tmp_path, monkeypatch):
    """:class:`SweepRun` at the end of a sweep: the parent run's ``sweep/summary.csv`` and
    ``summary.txt`` carry the candidates, buy & hold and cash, and the floor line is printed."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    experiment = configure(None, tmp_path / "mlruns", "huracan")
    client = MlflowClient()
    parent = client.create_run(experiment, tags={"huracan.role": "sweep"}).info.run_id
    children = [client.create_run(experiment).info.run_id for _ in range(2)]
    for rid in children:
        client.set_terminated(rid, "FINISHED")
    sweep = _sweep_dir(tmp_path, [_job(0, "lightgbm", 1.5, 0.03, 12.5, run_id=children[0]),
                                  _job(1, "xgboost", -0.4, -0.02, -6.25, run_id=children[1])])
    cb = SweepRun()
    cb.run_id, cb.sweep_id, cb.sweep_dir, cb.min_trades = parent, "s1", sweep, 30
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    cb._finish("FINISHED")
    summary = pd.read_csv(client.download_artifacts(parent, "sweep/summary.csv", str(tmp_path)))
    assert list(summary.model) == ["lightgbm", "xgboost", "buy & hold", "cash"]
    assert list(summary.val_breakeven_bps.fillna(-999)) == [12.5, -6.25, -999, -999]
    assert list(summary.val_sharpe) == [1.5, -0.4, 0.8, 0.0]
    assert list(summary.run_id.fillna("")) == [*children, "", ""]
    logged = Path(client.download_artifacts(parent, "sweep/summary.txt",
                                            str(tmp_path / "txt"))).read_text()
    assert "buy & hold" in logged and "floor: cash" in logged
    assert "1 of 2 candidates beat cash on val" in out.getvalue()
    assert client.get_run(parent).info.status == "FINISHED"


@pytest.fixture(autouse=True)
def _no_tracking_env(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
