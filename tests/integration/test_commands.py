"""Commands fail loudly and briefly, tested as commands (subprocesses from the repository root):
``python -m huracan.train`` on a bad data file (one reason line, no traceback, the failure
recorded, nothing registered), ``huracan registry show`` of an unknown model, every module
entry point without a command (usage, exit 2), and the Hydra apps' ``--help``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sqlalchemy import create_engine, inspect

from huracan.db.migrate import head_revision
from huracan.tracking.run import default_tracking_uri

pytestmark = pytest.mark.slow  # commands: subprocesses

REPO = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-Pa55"
#: MLflow's own INFO lines when it creates a fresh SQLite store (its logger, on stderr)
MLFLOW_INFO = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d INFO mlflow\.")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "HURACAN_DB_URL", "HYDRA_FULL_ERROR")}
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def _module(module: str, *args: str, cwd: Path = REPO, **env: str
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=_env(**env),
                          capture_output=True, text=True, timeout=300)


def _stderr_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    """stderr without blank lines and MLflow's store-creation INFO lines."""
    return [ln for ln in proc.stderr.splitlines() if ln.strip() and not MLFLOW_INFO.match(ln)]


@pytest.fixture()
def bad_files(tmp_path, sample_path) -> dict[str, Path]:
    """Two files breaking one rule each: a duplicated timestamp (row 500) and high < low (row
    200), both from the shipped sample's first 3,000 5m candles."""
    df = pd.read_parquet(sample_path).iloc[:3000].copy()
    dup = pd.concat([df.iloc[:500], df.iloc[[499]], df.iloc[500:]]).reset_index(drop=True)
    hl = df.copy()
    hl.loc[200, "high"] = hl.loc[200, "low"] - 1.0
    paths = {"duplicate": tmp_path / "dup.parquet", "high_low": tmp_path / "hl.parquet"}
    dup.to_parquet(paths["duplicate"])
    hl.to_parquet(paths["high_low"])
    return paths


def _runs(tmp: Path) -> tuple[MlflowClient, list]:
    client = MlflowClient(tracking_uri=default_tracking_uri(tmp / "mlruns"))
    exp = client.get_experiment_by_name("huracan")
    return client, (client.search_runs([exp.experiment_id]) if exp else [])


def test_train_on_a_bad_file_prints_one_reason_line_and_records_the_failure(
        tmp_path, bad_files, train_cli):
    bad = bad_files["duplicate"]
    proc = train_cli([f"data.path={bad}"], tmp_path)
    reason = (f"huracan.train: error: {bad}: column 'timestamp' row 500 (timestamp "
              "2024-01-02 17:35:00+00:00): duplicate timestamp; 1 row(s) break this rule "
              "[rule: unique_timestamp]")
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert _stderr_lines(proc) == [reason]  # the reason alone: no traceback, no Hydra banner
    assert "Traceback" not in proc.stdout + proc.stderr
    assert len(proc.stdout.splitlines()) <= 3  # the job's two log lines (data quality, train)
    # the failure is recorded: result.json, the data-quality log, a FAILED MLflow run
    result = json.loads((tmp_path / "outputs" / "result.json").read_text())
    assert result["status"] == "failed" and result["model_type"] == "lightgbm"
    assert result["error"] == "DataValidationError: " + reason.removeprefix(
        "huracan.train: error: ")
    issues = [json.loads(ln) for ln in (tmp_path / "dq.jsonl").read_text().splitlines()]
    assert [i["issue_type"] for i in issues] == ["unique_timestamp"]
    client, runs = _runs(tmp_path)
    assert [r.info.status for r in runs] == ["FAILED"]  # none left RUNNING
    assert runs[0].data.tags["data_path"] == str(bad)
    assert client.search_registered_models() == []  # nothing registered, nothing gated


def test_hydra_full_error_brings_the_traceback_back(tmp_path, bad_files):
    bad = bad_files["high_low"]
    proc = _module("huracan.train", f"data.path={bad}", f"tracking.store_dir={tmp_path / 'm'}",
                   f"db.url=sqlite:///{tmp_path / 'b.db'}", f"hydra.run.dir={tmp_path / 'o'}",
                   f"data.quality_log={tmp_path / 'dq.jsonl'}", HYDRA_FULL_ERROR="1")
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "DataValidationError" in proc.stderr
    assert "[rule: high_ge_low]" in proc.stderr


def test_a_sweep_of_bad_files_runs_every_job_then_fails_with_the_reason(
        tmp_path, bad_files, train_cli):
    dup, hl = bad_files["duplicate"], bad_files["high_low"]
    db = f"postgresql+psycopg2://postgres:{SECRET}@127.0.0.1:1/never_reached"
    proc = train_cli([f"data.path={hl},{dup}", f"db.url={db}", "-m"], tmp_path)
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out and SECRET not in out  # Hydra's job line is masked too
    lines = _stderr_lines(proc)
    assert lines[0].startswith("Error executing job with overrides: ") and "***@" in lines[0]
    assert lines[1] == (f"huracan.train: error: {hl}: column 'high' row 200 (timestamp "
                        "2024-01-01 16:40:00+00:00): high < low; 1 row(s) break this rule "
                        "[rule: high_ge_low]")
    assert len(lines) == 3  # and Hydra's HYDRA_FULL_ERROR hint
    # both jobs ran (the sweep went on after the first) and recorded their failures
    results = [json.loads(p.read_text()) for p in sorted((tmp_path / "multirun").glob(
        "*/result.json"))]
    assert [(r["job"], r["status"]) for r in results] == [(0, "failed"), (1, "failed")]
    assert "[rule: unique_timestamp]" in results[1]["error"]
    client, runs = _runs(tmp_path)
    parent = [r for r in runs if r.data.tags.get("huracan.role") == "sweep"]
    jobs = [r for r in runs if r not in parent]
    assert [r.info.status for r in parent] == ["FAILED"]
    assert sorted(r.data.tags["data_path"] for r in jobs) == sorted([str(hl), str(dup)])
    assert {r.info.status for r in jobs} == {"FAILED"}
    assert client.search_registered_models() == []
    assert not (tmp_path / "multirun" / "gate.json").exists()  # the gate never ran


def test_registry_show_of_an_unknown_model_exits_2_naming_the_registered_ones(tmp_path):
    uri = default_tracking_uri(tmp_path / "mlruns")
    client = MlflowClient(tracking_uri=uri)
    client.create_registered_model("huracan-BTCUSDT-1h")
    proc = _module("huracan.cli", "registry", "show", "huracan-BTCUSTD-1h", "--tracking-uri", uri)
    assert proc.returncode == 2
    assert _stderr_lines(proc) == [f"error: no registered model 'huracan-BTCUSTD-1h' in {uri}; "
                                   "registered: huracan-BTCUSDT-1h"]
    assert proc.stdout == ""
    assert [m.name for m in client.search_registered_models()] == ["huracan-BTCUSDT-1h"]
    known = _module("huracan.cli", "registry", "show", "huracan-BTCUSDT-1h", "--tracking-uri",
                    uri)
    assert known.returncode == 0
    assert json.loads(known.stdout) == {"model_name": "huracan-BTCUSDT-1h", "production": None,
                                        "staging": None}


#: every module that runs a Typer app, and the `huracan` console script's own module
TYPER_MODULES = ["huracan.cli", "huracan.cli.data", "huracan.cli.lake",
                 "huracan.cli.liquidations", "huracan.cli.db", "huracan.cli.features",
                 "huracan.cli.drift", "huracan.cli.nightly",
                 "huracan.cli.registry", "huracan.cli.size", "huracan.cli.select"]


@pytest.mark.parametrize("module", [*TYPER_MODULES, "huracan.data.validate"])
def test_a_module_entry_point_without_a_command_prints_usage_and_exits_2(module, tmp_path):
    proc = _module(module, cwd=tmp_path, PYTHONPATH=str(REPO))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    assert re.search(r"^\s*[Uu]sage: ", out, re.M) and "Traceback" not in out
    assert list(tmp_path.iterdir()) == []  # nothing written where it ran


@pytest.mark.parametrize(("app", "what"), [
    ("train", "train forecasters"), ("tune", "an Optuna study"),
    ("sizer", "train the PPO position sizer"), ("nightly", "the nightly pipeline")])
def test_hydra_app_help_starts_with_what_it_does_and_the_common_overrides(app, what):
    proc = _module(f"huracan.{app}", "--help")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"huracan.{app}: {what}")
    head = proc.stdout.split("== Configuration groups ==")[0]
    assert f"Usage: python -m huracan.{app} " in head
    assert "Common overrides:" in head and "Examples:" in head and "Exit code: 0" in head
    # then Hydra's generated groups and config, and the pointer to Hydra's own options
    assert "== Configuration groups ==" in proc.stdout and "== Config ==" in proc.stdout
    assert lines[-1] == f"Hydra's own options: python -m huracan.{app} --hydra-help"
    assert "is powered by Hydra" not in proc.stdout


def test_train_reading_an_unmigrated_store_says_to_upgrade_it(tmp_path, sample_path, train_cli):
    """``features.sources=store`` on a brain store without the schema: one line naming the store
    and ``huracan db upgrade`` (was sqlite3's ``no such table: funding_rates`` and a traceback);
    no table is created and nothing is registered."""
    store = tmp_path / "empty.db"
    proc = train_cli([f"data.path={sample_path}", "features=full", "features.sources=store",
                      f"db.url=sqlite:///{store}"], tmp_path)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert _stderr_lines(proc) == [
        f"huracan.train: error: features.sources=store: brain store sqlite:///{store}: database "
        f"schema is at no revision (empty database), expected {head_revision()}: run "
        "`huracan db upgrade`"]

    eng = create_engine(f"sqlite:///{store}")
    assert inspect(eng).get_table_names() == []
    eng.dispose()
    client, runs = _runs(tmp_path)
    assert [r.info.status for r in runs] == ["FAILED"]
    assert client.search_registered_models() == []
