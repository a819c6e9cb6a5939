"""The prediction log through ``mlflow models serve`` (a subprocess on loopback) of a real
production model (tests/integration/paper_model.py): with ``HURACAN_PREDICTION_LOG`` naming a
SQLite brain store, N requests give N rows (bar time, forecast, position, version, execution
settings of the run) and N inputs Parquet files whose digest matches the request; with the
variable unset, nothing is written; in-process pyfunc calls are logged as ``in_process``."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from paper_model import NAME, train_production  # tests/integration/paper_model.py
from runners import wait_for_ping  # tests/integration/runners.py

from huracan.data.prediction_store import inputs_digest, read_predictions
from huracan.db import migrate
from huracan.db.session import make_engine
from huracan.serving import prediction_log as pl

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
N = 8
BARS = 367  # the warm-up (195 bars for this model) + answered bars


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _payload(frame: pd.DataFrame) -> bytes:
    f = frame.assign(timestamp=frame["timestamp"].map(lambda t: t.isoformat()))
    split = json.loads(f.to_json(orient="split", index=False))
    return json.dumps({"inputs": {"columns": split["columns"], "data": split["data"]}}).encode()


def _sent(frame: pd.DataFrame) -> pd.DataFrame:
    """The candles as the server receives them (the JSON wire format rounds the floats)."""
    body = json.loads(_payload(frame))["inputs"]
    return pd.DataFrame(body["data"], columns=body["columns"])


def _post(base: str, frame: pd.DataFrame) -> list[dict]:
    req = urllib.request.Request(f"{base}/invocations", data=_payload(frame),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        assert resp.status == 200
        return json.loads(resp.read())["predictions"]


def _store(path: Path) -> str:
    url = f"sqlite:///{path}"
    eng = make_engine(url)
    migrate.upgrade(eng)
    eng.dispose()
    return url


def _serve(pm, tmp: Path, name: str, extra: dict[str, str]) -> tuple[subprocess.Popen, str, Path]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in (pl.LOG_ENV, "HURACAN_PREDICTION_INPUTS", "HURACAN_DB_URL")}
    env.update({"MLFLOW_TRACKING_URI": pm.tracking_uri, "PATH": f"{BIN}:{env['PATH']}",
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **extra})
    log = tmp / f"{name}.log"
    srv = subprocess.Popen([str(BIN / "mlflow"), "models", "serve", "-m",
                            f"models:/{NAME}@production", "--env-manager", "local",
                            "-h", "127.0.0.1", "-p", str(port)], env=env, cwd=tmp,
                           stdout=log.open("w"), stderr=subprocess.STDOUT)
    return srv, f"http://127.0.0.1:{port}", log


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("predlog")
    pm = train_production(tmp)
    on_url = _store(tmp / "log.db")
    off_url = _store(tmp / "off.db")
    on = _serve(pm, tmp, "on", {pl.LOG_ENV: on_url,
                                "HURACAN_PREDICTION_INPUTS": str(tmp / "inputs")})
    off = _serve(pm, tmp, "off", {"HURACAN_DB_URL": off_url,
                                  "HURACAN_PREDICTION_INPUTS": str(tmp / "off-inputs")})
    try:
        t0 = time.perf_counter()
        for srv, base, log in (on, off):
            wait_for_ping(srv, base, log, t0, timeout_s=180)
        yield pm, tmp, on[1], on_url, off[1], off_url
    finally:
        for srv, _, _ in (on, off):
            srv.terminate()
            try:
                srv.wait(timeout=20)
            except subprocess.TimeoutExpired:
                srv.kill()


#: unseen bars, gap-free from here to 2019-08-15 (the request's newest bar is answered)
FROM = pd.Timestamp("2019-06-01", tz="UTC")


def _requests(pm) -> list[pd.DataFrame]:
    unseen = pm.candles[pm.candles["timestamp"] >= FROM].reset_index(drop=True)
    frames = [unseen.iloc[i * 7: i * 7 + BARS].reset_index(drop=True) for i in range(N)]
    assert all((f["timestamp"].diff().iloc[1:] == pd.Timedelta("1h")).all() for f in frames)
    return frames


def _wait_rows(url: str, n: int, timeout_s: float = 30.0) -> pd.DataFrame:
    eng = make_engine(url)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            rows = read_predictions(eng)
            if len(rows) >= n or time.monotonic() > deadline:
                return rows
            time.sleep(0.2)
    finally:
        eng.dispose()


def test_served_requests_are_logged_with_their_inputs(served):
    pm, tmp, base, url, _, _ = served
    frames = _requests(pm)
    answers = [_post(base, f) for f in frames]
    rows = _wait_rows(url, N).sort_values("bar_time").reset_index(drop=True)
    assert len(rows) == N
    for frame, answer, (_, row) in zip(frames, answers, rows.iterrows(), strict=True):
        last = answer[-1]
        assert len(answer) > 100
        assert row["bar_time"] == pd.Timestamp(last["timestamp"]).tz_convert("UTC")
        assert row["bar_time"] == frame["timestamp"].iloc[-1]
        assert row["forecast"] == pytest.approx(last["forecast"], rel=1e-12, abs=1e-15)
        assert row["position"] == last["position"] and row["size"] == last["size"]
        assert row["regime"] == last["regime"] and row["source"] == "serve"
        assert (row["model_name"], row["model_version"], row["run_id"]) == \
            (NAME, pm.version, pm.run_id)
        assert (row["symbol"], row["timeframe"], row["inputs_rows"]) == ("BTC/USDT", "1h", BARS)
        assert row["execution"]["threshold"] == 0.0 and row["execution"]["fill"]
        assert 0 < row["latency_ms"] < 5000
        path = Path(row["inputs_path"])
        assert path.is_file() and path.is_relative_to(tmp / "inputs")
        assert row["inputs_digest"] == inputs_digest(_sent(frame))
        assert inputs_digest(pd.read_parquet(path)) == row["inputs_digest"]
    served_at = rows["served_at"]
    assert served_at.is_monotonic_increasing or len(set(served_at)) == N


def test_unset_variable_logs_nothing(served):
    pm, tmp, _, _, base, url = served
    for frame in _requests(pm)[:3]:
        _post(base, frame)
    time.sleep(1.0)
    assert _wait_rows(url, 1, timeout_s=1.0).empty
    assert not (tmp / "off-inputs").exists()


def test_in_process_pyfunc_calls_are_logged_in_process(served, monkeypatch):
    pm, tmp, _, _, _, _ = served
    url = _store(tmp / "inproc.db")
    monkeypatch.setenv(pl.LOG_ENV, url)
    monkeypatch.setenv("HURACAN_PREDICTION_INPUTS", str(tmp / "inproc-inputs"))
    monkeypatch.delenv("_MLFLOW_IS_IN_SERVING_ENVIRONMENT", raising=False)
    mlflow.set_tracking_uri(pm.tracking_uri)
    pl.reset_process_log()
    try:
        model = mlflow.pyfunc.load_model(f"models:/{NAME}@production")
        frame = _requests(pm)[0]
        answer = model.predict(frame)
        plog = pl.process_log()
        assert plog is not None and plog.flush(20)
    finally:
        pl.reset_process_log()
    rows = _wait_rows(url, 1)
    assert len(rows) == 1 and rows["source"].iloc[0] == "in_process"
    assert rows["forecast"].iloc[0] == answer["forecast"].iloc[-1]
    shutil.rmtree(tmp / "inproc-inputs")
