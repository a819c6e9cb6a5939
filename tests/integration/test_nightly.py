"""``python -m huracan.nightly`` end to end, offline, on the shipped real samples: a night, its
rerun (report only), a killed night resumed, one symbol's failure isolated (joblib executor), and
two symbols on a local Ray."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from huracan.datasets import DATASETS_DIR

REPO = Path(__file__).resolve().parents[2]
BTC = DATASETS_DIR / "binance-spot_BTCUSDT_5m_20240101-20240906.parquet"
ETH = DATASETS_DIR / "binance-spot_ETHUSDT_5m_20240101-20240906.parquet"
NIGHT = "test-night"

pytestmark = pytest.mark.slow


def _imports(*pairs: tuple[str, Path]) -> str:
    return "nightly.imports=[" + ",".join(f"{{symbol:'{s}',file:'{f}'}}" for s, f in pairs) + "]"


def _cmd(tmp: Path, *overrides: str) -> list[str]:
    base = [
        "experiment=nightly/sample", f"db.url=sqlite:///{tmp / 'brain.db'}",
        f"tracking.store_dir={tmp / 'mlruns'}", f"nightly.lake={tmp / 'lake'}",
        f"nightly.work_dir={tmp / 'work'}", f"hydra.run.dir={tmp / 'hydra'}",
        "nightly.models=[xgboost]", f"nightly.run_id={NIGHT}",
        "nightly.train_overrides=['explain.max_rows=20','selection.min_trades=10']",
    ]
    keys = {o.split("=", 1)[0] for o in overrides}
    return [sys.executable, "-m", "huracan.nightly",
            *[b for b in base if b.split("=", 1)[0] not in keys], *overrides]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "HURACAN_DB_URL", "HURACAN_LAKE")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


def _run(tmp: Path, *overrides: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(tmp, *overrides), cwd=tmp, env=_env(), capture_output=True,
                          text=True, timeout=timeout)


def _rows(tmp: Path) -> pd.DataFrame:
    with sqlite3.connect(tmp / "brain.db") as conn:
        return pd.read_sql("SELECT * FROM pipeline_runs ORDER BY started_at", conn)


def _client(tmp: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}")


def _all_runs(tmp: Path) -> list:
    client = _client(tmp)
    exp = client.get_experiment_by_name("huracan")
    return client.search_runs([exp.experiment_id]) if exp else []


def test_nightly_offline_then_rerun_only_reports(tmp_path, edge_sample_path):
    # the sample's bars with edge prices: its forecaster beats cash, so the gate promotes it
    # and the monitor has a production model to score (the real sample's does not beat cash)
    edge = _imports(("BTC/USDT", edge_sample_path))
    first = _run(tmp_path, edge)
    assert first.returncode == 0, first.stderr[-3000:]
    rows = _rows(tmp_path)
    btc = rows[rows.symbol == "BTC/USDT"].set_index("step")
    assert list(btc.index) == ["download", "validate", "features", "train", "importance",
                               "gate", "monitor", "paper", "sizer"]
    # no paper loop runs here: the liveness check has no account to read (not expected)
    assert btc.loc["paper", "status"] == "skipped" and "no paper account" in btc.loc["paper",
                                                                                       "detail"]
    assert (btc.loc[["download", "validate", "features", "train", "importance", "gate"],
                    "status"] == "done").all()
    # a forward forecaster: the weekly sizer retrain is skipped with the reason
    assert btc.loc["sizer", "status"] == "skipped" and "walk-forward" in btc.loc["sizer", "detail"]
    # the production model's test split ends the sample: its last 30 days are unseen, so the
    # monitor scores them (the model against itself at promotion, within tolerance)
    assert btc.loc["monitor", "status"] == "done"
    assert btc.loc["monitor", "detail"] == "within tolerance: production unchanged"
    assert (rows.attempts == 1).all()
    assert "promoted" in btc.loc["gate", "detail"]
    prod = _client(tmp_path).get_model_version_by_alias("huracan-BTCUSDT-1h", "production")
    assert prod.run_id in btc.loc["train", "mlflow_run_ids"]
    # the importance step stored rankings of the trained run
    with sqlite3.connect(tmp_path / "brain.db") as conn:
        ranked = conn.execute("SELECT count(*) FROM feature_importance WHERE run_id = ?",
                              (prod.run_id,)).fetchone()[0]
    assert ranked > 0
    # ... and says which kind of information each run's model uses (price features: own)
    assert "information: " in btc.loc["importance", "detail"]
    assert "uses mostly its own candles (own 100%; SHAP)" in btc.loc["importance", "detail"]
    # the snapshot the models trained on is the lake's series, validated
    snap = pd.read_parquet(tmp_path / "work" / NIGHT / "BTC-USDT" / "candles.parquet")
    assert len(snap) == len(pd.read_parquet(BTC))
    assert (tmp_path / "work" / NIGHT / "summary.json").exists()
    n_runs = len(_all_runs(tmp_path))
    # every child command a step starts is written to its step log first ("$ python -m ...")
    logs = {p: p.read_bytes() for p in (tmp_path / "work" / NIGHT).rglob("*.log")}
    assert {p.name for p in logs} >= {"train.log", "monitor.log"}

    t0 = time.perf_counter()
    again = _run(tmp_path, edge)
    seconds = time.perf_counter() - t0
    assert again.returncode == 0, again.stderr[-3000:]
    assert "(earlier run)" in again.stdout
    assert len(_all_runs(tmp_path)) == n_runs            # nothing trained, scored or analysed
    rerun = _rows(tmp_path)
    assert (rerun.attempts == 1).all()
    assert set(rerun.ended_at) == set(rows.ended_at) | set(rerun[rerun.symbol == "*"].ended_at)
    # a finished night only reports: no child process started (no step log grew, none added)
    assert {p: p.read_bytes() for p in (tmp_path / "work" / NIGHT).rglob("*.log")} == logs
    print(f"\na finished night reported in {seconds:.1f} s")  # a figure, not an assert


def _wait_for(predicate, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if predicate():
                return
        except (sqlite3.Error, pd.errors.DatabaseError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_killed_night_resumes(tmp_path, edge_sample_path):
    # edge prices: the resumed night's forecaster beats cash and reaches production
    overrides = ("nightly.monitor.enabled=false", _imports(("BTC/USDT", edge_sample_path)))
    proc = subprocess.Popen(_cmd(tmp_path, *overrides), cwd=tmp_path, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    sweep = tmp_path / "work" / NIGHT / "BTC-USDT" / "train-1"

    def training() -> bool:  # the sweep's job is under way: its MLflow run is open
        rows = _rows(tmp_path)
        running = rows[(rows.step == "train") & (rows.status == "running")]
        if len(running) != 1 or not any(sweep.glob("*/.hydra")):
            return False
        try:  # the store may be mid-creation: not ready yet
            runs = _all_runs(tmp_path)
        except Exception:
            return False
        return any(r.info.status == "RUNNING" and "mlflow.parentRunId" in r.data.tags
                   for r in runs)

    try:
        _wait_for(training, 300, "the train step's job to open its MLflow run")
        os.killpg(proc.pid, signal.SIGKILL)  # the night and its training process, mid-step
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    rows = _rows(tmp_path).set_index("step")
    assert rows.loc["train", "status"] == "running"
    assert (rows.loc[["download", "validate", "features"], "status"] == "done").all()
    assert "importance" not in rows.index
    assert not (tmp_path / "work" / NIGHT / "summary.json").exists()

    resumed = _run(tmp_path, *overrides)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows = _rows(tmp_path)
    btc = rows[rows.symbol == "BTC/USDT"].set_index("step")
    assert btc.loc["download", "attempts"] == 1            # finished steps were not repeated
    assert btc.loc["train", "attempts"] == 2 and btc.loc["train", "status"] == "done"
    assert "train-2" in btc.loc["train", "detail"]
    assert (btc.loc[["importance", "gate"], "status"] == "done").all()
    # no run of the killed attempt is left RUNNING; the resumed one produced production
    statuses = {r.info.status for r in _all_runs(tmp_path)}
    assert "RUNNING" not in statuses and "KILLED" in statuses
    prod = _client(tmp_path).get_model_version_by_alias("huracan-BTCUSDT-1h", "production")
    assert prod.run_id in btc.loc["train", "mlflow_run_ids"]
    assert (tmp_path / "work" / NIGHT / "summary.json").exists()


def test_one_symbol_failing_does_not_stop_the_other_joblib(tmp_path):
    bad = tmp_path / "eth_degraded.parquet"
    eth = pd.read_parquet(ETH)
    pd.concat([eth, eth.iloc[100:110]]).to_parquet(bad)  # duplicated bars: a critical rule
    out = _run(tmp_path, "symbols=[BTC/USDT,ETH/USDT]", _imports(("BTC/USDT", BTC),
                                                                 ("ETH/USDT", bad)),
               "nightly.executor=joblib", "nightly.n_jobs=2", "nightly.monitor.enabled=false")
    assert out.returncode == 1, out.stderr[-3000:]
    assert "1 symbol(s) failed: ETH/USDT" in out.stderr
    assert "ETH/USDT: DEGRADED (not trained)" in out.stdout
    rows = _rows(tmp_path)
    eth_rows = rows[rows.symbol == "ETH/USDT"].set_index("step")
    assert list(eth_rows.index) == ["download"] and eth_rows.loc["download", "status"] == "failed"
    assert "unique_timestamp" in eth_rows.loc["download", "detail"]
    btc = rows[rows.symbol == "BTC/USDT"].set_index("step")
    assert btc.loc["gate", "status"] == "done"
    # the lake holds BTC only: the degraded file was not imported
    assert not (tmp_path / "lake" / "ohlcv" / "exchange=binance" / "symbol=ETH-USDT").exists()
    with sqlite3.connect(tmp_path / "brain.db") as conn:
        logged = conn.execute("SELECT count(*) FROM data_quality_logs WHERE symbol = 'ETH/USDT' "
                              "AND severity = 'critical'").fetchone()[0]
    assert logged > 0


def test_two_symbols_on_local_ray(tmp_path, edge_sample_path):
    from synthetic import edge_like_sample  # tests/integration/synthetic.py

    ray_tmp = Path("/tmp") / f"ray{os.getpid()}"
    # edge prices on both samples' bars: each symbol's forecaster beats cash and is promoted
    eth = edge_like_sample(ETH, tmp_path / "eth_edge_5m.parquet", seed=22)
    out = _run(tmp_path, "symbols=[BTC/USDT,ETH/USDT]", _imports(("BTC/USDT", edge_sample_path),
                                                                 ("ETH/USDT", eth)),
               "nightly.executor=ray", "ray.num_cpus=2", f"ray.temp_dir={ray_tmp}",
               "nightly.monitor.enabled=false")
    try:
        assert out.returncode == 0, out.stderr[-3000:]
        rows = _rows(tmp_path)
        for sym in ("BTC/USDT", "ETH/USDT"):
            steps = rows[rows.symbol == sym].set_index("step")
            assert steps.loc["gate", "status"] == "done", steps
        # the Ray workers ran in other processes than the driver
        assert rows[rows.symbol != "*"].pid.nunique() >= 2
        client = _client(tmp_path)
        for name in ("huracan-BTCUSDT-1h", "huracan-ETHUSDT-1h"):
            assert client.get_model_version_by_alias(name, "production").run_id
    finally:
        subprocess.run(["rm", "-rf", str(ray_tmp)], check=False)
