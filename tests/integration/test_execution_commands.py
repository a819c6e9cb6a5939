"""The execution settings as commands (``python -m huracan.train`` in a subprocess): a delay fill
on the shipped 5m sample trains and logs its execution with open-to-open labels, a delay fill
without a finer series and a fill mode that does not exist fail in one line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from huracan.data.ohlcv import load_ohlcv
from huracan.tracking.run import default_tracking_uri

#: MLflow's own INFO lines when it creates a fresh SQLite store (its logger, on stderr)
MLFLOW_INFO = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d INFO mlflow\.")


def _stderr_lines(proc) -> list[str]:
    return [ln for ln in proc.stderr.splitlines() if ln.strip() and not MLFLOW_INFO.match(ln)]


@pytest.mark.slow  # a command: a subprocess
def test_a_delay_fill_without_a_finer_series_fails_in_one_line(tmp_path, sample_path, train_cli,
                                                               monkeypatch):
    hourly, _ = load_ohlcv(sample_path, "1h")
    path = tmp_path / "btc_1h.parquet"
    hourly.to_parquet(path)
    lake = tmp_path / "no-lake"
    monkeypatch.setenv("HURACAN_LAKE", str(lake))
    proc = train_cli(["backtest.fill=delay", f"data.path={path}"], tmp_path)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert _stderr_lines(proc) == [
        "huracan.train: error: backtest.fill=delay needs a series of BTC/USDT finer than 1h: "
        f"none in data.fine_path (unset), data.path ({path}) or the lake at {lake}"]
    result = json.loads((tmp_path / "outputs" / "result.json").read_text())
    assert result["status"] == "failed" and "ExecutionInputError" in result["error"]
    proc = train_cli(["backtest.fill=open"], tmp_path)
    assert proc.returncode == 1
    assert _stderr_lines(proc) == ["huracan.train: error: backtest.fill must be one of "
                                   "next_open, close, delay, got 'open'"]


@pytest.mark.slow
def test_a_delay_fill_on_the_shipped_sample_trains_and_logs_its_execution(tmp_path, train_cli):
    proc = train_cli(["backtest.fill=delay", "backtest.latency=5m", "label.price=open",
                      "model.n_estimators=60", "explain.max_rows=20", "importance.enabled=false",
                      "registry.enabled=false"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "(embargo 2 bars)" in proc.stdout + proc.stderr  # open-to-open: the label reaches 2
    client = MlflowClient(tracking_uri=default_tracking_uri(tmp_path / "mlruns"))
    run = client.search_runs([client.get_experiment_by_name("huracan").experiment_id])[0]
    assert run.data.params["backtest.fill"] == "delay"
    assert run.data.params["label.price"] == "open"
    ret = pd.read_parquet(client.download_artifacts(run.info.run_id,
                                                    "backtest/returns.parquet", str(tmp_path)))
    assert (ret.exec_fill == "delay").all()
    # filled at the close of the 5m bar after the signal bar's close: the 5m sample's closes
    fine, _ = load_ohlcv(client.get_run(run.info.run_id).data.tags["data_path"])
    closes = fine.set_index("timestamp")["close"]
    window = pd.read_parquet(client.download_artifacts(run.info.run_id,
                                                       "data/eval_window.parquet", str(tmp_path)))
    row = window[window.split == "test"].iloc[0]
    fill = closes[row.timestamp + pd.Timedelta("1h")]  # the 5m bar opening at the next hour
    assert row.exec_gap == pytest.approx(fill / row.bar_close - 1)
    execution = json.loads(Path(client.download_artifacts(
        run.info.run_id, "backtest/execution.json", str(tmp_path))).read_text())
    assert execution["fill"] == "delay" and execution["cost_bps_median"] == pytest.approx(6.0)
    m = run.data.metrics
    for part in ("val", "test"):
        assert {f"{part}_sharpe", f"{part}_sharpe_close", f"{part}_total_return_close",
                f"{part}_sharpe_lag1", f"{part}_total_return_lag1"} <= set(m)
