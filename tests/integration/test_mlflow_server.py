"""A real MLflow tracking server on Postgres, as a team runs it (deploy/docker-compose.yml without
Docker): ``mlflow server`` with a Postgres backend store, proxied artifacts (``--serve-artifacts``,
a local directory standing in for the S3 bucket) and job execution off; a two-model sweep of
``python -m huracan.train`` logs to it over HTTP with its brain store on a second Postgres
database; everything is read back through the server with MlflowClient.

Both databases are created fresh on the server named by ``HURACAN_TEST_PG_URL`` and dropped
afterwards; without that variable the tests are skipped, with it set and the server not answering
they fail (the root conftest's ``pg_admin`` fixture).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
MODEL_NAME = "huracan-BTCUSDT-1h"
START_TIMEOUT_S = 120
SWEEP_TIMEOUT_S = 900


@dataclass
class Served:
    """What the module fixture produced: the server's URI, the brain store, the sweep's output."""

    uri: str
    brain_url: str
    artifacts_dir: Path
    sweep_dir: Path
    tmp: Path
    proc: subprocess.CompletedProcess[str]
    server_pid: int
    startup_s: float
    sweep_s: float


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(uri: str, server: subprocess.Popen[bytes], log: Path) -> float:
    """Seconds until ``GET /health`` answers 200; fails with the server's log tail otherwise."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < START_TIMEOUT_S:
        if server.poll() is not None:
            pytest.fail(f"mlflow server exited {server.returncode}: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as resp:
                if resp.status == 200:
                    return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.25)
    pytest.fail(f"mlflow server not healthy after {START_TIMEOUT_S} s: {log.read_text()[-3000:]}")


def _stop(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group (mlflow + uvicorn workers), SIGKILL after 20 s."""
    if server.poll() is not None:
        return
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)


def _process_tree(pgid: int) -> list[tuple[int, str]]:
    """``(rss_kb, command)`` of every process in the group ``pgid``."""
    out = subprocess.run(["ps", "-o", "rss=,args=", "-g", str(pgid)], capture_output=True,
                         text=True, check=False).stdout
    rows = []
    for line in out.splitlines():
        rss, _, args = line.strip().partition(" ")
        rows.append((int(rss), args))
    return rows


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, pg_admin: URL,
           edge_sample_path: Path) -> Iterator[Served]:
    admin = pg_admin
    tmp = tmp_path_factory.mktemp("mlflow_server")
    suffix = uuid.uuid4().hex[:10]
    dbs = {"mlflow": f"huracan_mlflow_test_{suffix}", "brain": f"huracan_brain_test_{suffix}"}
    eng = create_engine(admin, isolation_level="AUTOCOMMIT")
    server: subprocess.Popen[bytes] | None = None
    try:
        with eng.connect() as conn:
            for name in dbs.values():
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        backend = admin.set(drivername="postgresql+psycopg2", database=dbs["mlflow"])
        brain_url = admin.set(database=dbs["brain"]).render_as_string(hide_password=False)
        port = _free_port()
        uri = f"http://127.0.0.1:{port}"
        artifacts = tmp / "artifacts"
        log = tmp / "server.log"
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
               "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        if backend.password:  # libpq reads it; the command line (ps) never shows it
            env["PGPASSWORD"] = backend.password
        cmd = [str(VENV_BIN / "mlflow"), "server",
               "--backend-store-uri",
               backend.set(password=None).render_as_string(hide_password=False),
               "--artifacts-destination", str(artifacts), "--serve-artifacts",
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
        with log.open("wb") as fh:
            server = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        startup_s = _wait_healthy(uri, server, log)

        sweep_dir = tmp / "multirun"
        train_env = {k: v for k, v in os.environ.items()
                     if not k.startswith(("MLFLOW_", "HURACAN_DB_URL", "AWS_"))}
        train_env.update({"MLFLOW_TRACKING_URI": uri, "HURACAN_DB_URL": brain_url,
                          "TF_CPP_MIN_LOG_LEVEL": "2",
                          "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})
        # the sample's bars with edge prices: a candidate beats cash, so the gate promotes
        overrides = ["model=lightgbm,xgboost", "importance.enabled=false",
                     f"data.path={edge_sample_path}",
                     "explain.max_rows=20", f"tracking.store_dir={tmp / 'mlruns'}",
                     f"data.quality_log={tmp / 'dq.jsonl'}",
                     f"hydra.run.dir={tmp / 'outputs'}", f"hydra.sweep.dir={sweep_dir}", "-m"]
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "huracan.train", *overrides], cwd=REPO,
                              env=train_env, capture_output=True, text=True,
                              timeout=SWEEP_TIMEOUT_S)
        sweep_s = time.monotonic() - t0
        print(f"\nmlflow server (Postgres backend, job execution off): healthy after "
              f"{startup_s:.1f} s; two-model sweep against it: {sweep_s:.1f} s wall")
        yield Served(uri, brain_url, artifacts, sweep_dir, tmp, proc, server.pid, startup_s,
                     sweep_s)
    finally:
        if server is not None:
            _stop(server)
        with eng.connect() as conn:
            for name in dbs.values():
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        eng.dispose()


@pytest.fixture(scope="module")
def client(served: Served) -> Any:
    from mlflow.tracking import MlflowClient

    assert served.proc.returncode == 0, served.proc.stderr[-3000:]
    return MlflowClient(tracking_uri=served.uri)


@pytest.fixture(scope="module")
def runs(client: Any) -> tuple[Any, list[Any]]:
    """The sweep's parent run and its child runs, from the server."""
    exp = client.get_experiment_by_name("huracan")
    assert exp is not None and exp.artifact_location.startswith("mlflow-artifacts:")
    found = client.search_runs([exp.experiment_id])
    parents = [r for r in found if r.data.tags.get("huracan.role") == "sweep"]
    assert len(parents) == 1
    return parents[0], [r for r in found if r is not parents[0]]


def test_server_runs_without_job_consumers(served: Served):
    tree = _process_tree(served.server_pid)
    assert tree and any("mlflow" in cmd for _, cmd in tree)  # the server is still up
    assert not [cmd for _, cmd in tree if "huey" in cmd or "_job_runner" in cmd]
    print(f"\nserver tree: {len(tree)} processes, {sum(r for r, _ in tree) / 1024:.0f} MB RSS")


def test_sweep_logs_a_parent_and_two_finished_children(runs):
    parent, children = runs
    assert parent.info.status == "FINISHED"
    assert sorted(r.data.tags["model_type"] for r in children) == ["lightgbm", "xgboost"]
    for r in children:
        assert r.info.status == "FINISHED"
        assert r.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert "val_composite_score" in r.data.metrics and "test_sharpe" in r.data.metrics
        assert r.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied by the server
    # one winner: the best selection score among the jobs with enough validation trades
    # (selection.min_trades = 30), the run the gate judged (seeded: LightGBM's)
    eligible = [r for r in children if r.data.metrics["val_n_trades"] >= 30]
    best = max(eligible, key=lambda r: r.data.metrics["val_composite_score"])
    assert parent.data.tags["best_model"] == best.data.tags["model_type"]
    assert parent.data.tags["best_run_id"] == best.info.run_id
    assert parent.data.tags["huracan.gate.candidate_run_id"] == best.info.run_id
    assert parent.data.metrics["best/val_sharpe"] == best.data.metrics["val_sharpe"]


def test_both_models_registered_as_versions(client, runs):
    _, children = runs
    versions = client.search_model_versions(f"name='{MODEL_NAME}'")
    assert sorted(v.run_id for v in versions) == sorted(r.info.run_id for r in children)
    assert all(v.status == "READY" for v in versions)


def test_gate_decision_recorded_in_mlflow_brain_store_and_gate_json(client, runs,
                                                                     served: Served):
    parent, _ = runs
    (decision,) = json.loads((served.sweep_dir / "gate.json").read_text())["decisions"]
    assert decision["model"] == MODEL_NAME
    assert decision["decision"] == "promoted"  # no champion: beating cash is the whole test
    assert parent.data.tags["huracan.gate.decision"] == decision["decision"]
    eng = create_engine(served.brain_url)
    try:
        with eng.connect() as conn:
            rows = conn.execute(text(
                "SELECT event_type, to_version FROM registry_events "
                "WHERE model_name = :m AND coalesce(alias, 'production') = 'production'"),
                {"m": MODEL_NAME}).all()
    finally:
        eng.dispose()
    to_table = {"promoted": "promotion", "rejected": "rejection", "skipped": "skipped"}
    assert [r.event_type for r in rows] == [to_table[decision["decision"]]]
    prod = client.get_model_version_by_alias(MODEL_NAME, "production")
    assert prod.version == decision["version"] == str(rows[0].to_version)
    assert prod.run_id == decision["candidate_run_id"]
    assert decision["reason"].startswith("candidate beats cash: net return")
    assert "no champion: candidate promoted with composite_score" in decision["reason"]


def test_artifacts_download_through_the_server(client, runs, served: Served, tmp_path):
    _, children = runs
    for r in children:
        local = client.download_artifacts(r.info.run_id, "backtest/returns.parquet",
                                          str(tmp_path / r.info.run_id))
        returns = pd.read_parquet(local)
        assert len(returns) > 100 and {"timestamp", "strategy_return"} <= set(returns.columns)
        # the bytes live in the server's artifact destination, not in a client-side store
        stored = list(served.artifacts_dir.rglob(f"{r.info.run_id}/artifacts/backtest/"
                                                 "returns.parquet"))
        assert len(stored) == 1 and stored[0].read_bytes() == Path(local).read_bytes()
    assert not (served.tmp / "mlruns").exists()  # nothing fell back to the local SQLite store


def test_registered_model_loads_through_the_server_and_predicts(client, served: Served,
                                                               tmp_path):
    import mlflow
    import numpy as np

    newest = max(client.search_model_versions(f"name='{MODEL_NAME}'"),
                 key=lambda v: int(v.version))
    source = client.get_model_version_download_uri(MODEL_NAME, newest.version)
    assert source.startswith("mlflow-artifacts:")  # served by the tracking server
    local = mlflow.artifacts.download_artifacts(artifact_uri=source, tracking_uri=served.uri,
                                                dst_path=str(tmp_path))
    model = mlflow.pyfunc.load_model(local)
    names = model.metadata.get_input_schema().input_names()
    X = pd.DataFrame(np.random.default_rng(0).normal(size=(5, len(names))), columns=names)
    pred = np.asarray(model.predict(X))
    assert pred.shape == (5,) and np.isfinite(pred).all()
