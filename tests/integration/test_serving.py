"""``mlflow models serve`` of the production model answers raw candles over HTTP: per-bar
forecast, regime, position, size, leverage and the version; bad requests get HTTP 400 naming the
rule. Start-up and request latency are printed (``-s``)."""

from __future__ import annotations

import json
import tempfile
import time

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from runners import (  # tests/integration/runners.py
    candle_payload,
    post_bytes,
    post_json,
    served_model,
)

from huracan.data.ohlcv import load_ohlcv
from huracan.tracking.run import default_tracking_uri

pytestmark = pytest.mark.slow
NAME = "huracan-BTCUSDT-1h"


@pytest.fixture(scope="module")
def server(tmp_path_factory, train_cli, sample_path):
    tmp = tmp_path_factory.mktemp("serving")
    proc = train_cli(["model=lightgbm", "model.n_estimators=60", "explain.max_rows=20",
                      "importance.enabled=false"], tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    uri = default_tracking_uri(tmp / "mlruns")
    client = MlflowClient(tracking_uri=uri)
    (version,) = client.search_model_versions(f"name='{NAME}'")  # registered by the job
    client.set_registered_model_alias(NAME, "production", version.version)
    prod = client.get_model_version_by_alias(NAME, "production")
    with served_model(f"models:/{NAME}@production", uri, tmp) as (base, startup):
        candles, _ = load_ohlcv(sample_path, "1h")
        yield base, prod, candles, startup, client


def test_served_model_answers_raw_candles_per_bar(server):
    base, prod, candles, startup, _ = server
    spec_bars = 400  # > the model's 168-bar minimum (167 warm-up + 1)
    bars = candles.iloc[-spec_bars:]
    code, body = post_json(f"{base}/invocations", candle_payload(bars))
    assert code == 200, body
    rows = body["predictions"]
    assert len(rows) == spec_bars - 167
    last = rows[-1]
    assert set(last) == {"timestamp", "forecast", "regime", "position", "size", "leverage",
                         "sizer", "registered_model", "model_version", "run_id"}
    assert last["sizer"] is None  # no sizer registered: size = |position|, leverage = 1
    assert last["timestamp"].startswith(bars["timestamp"].iloc[-1].isoformat()[:19])
    assert np.isfinite(last["forecast"])  # equal to the run's own: test below
    assert last["regime"] in {"low", "normal", "high", "extreme"}
    assert last["position"] in (-1.0, 0.0, 1.0) and last["leverage"] == 1.0
    assert last["registered_model"] == NAME and last["model_version"] == str(prod.version)
    assert last["run_id"] == prod.run_id
    # latency of a 200-bar answer (167 warm-up + 200 bars sent), over 5 requests
    bars = candles.iloc[-367:]
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        code, body = post_json(f"{base}/invocations", candle_payload(bars))
        times.append(time.perf_counter() - t0)
        assert code == 200 and len(body["predictions"]) == 200
    print(f"\nserve start-up {startup:.1f} s; 200-bar request: median "
          f"{sorted(times)[2] * 1000:.0f} ms, min {min(times) * 1000:.0f} ms")


def test_bad_requests_are_http_400_naming_the_rule(server):
    base, _, candles, _, _ = server
    bars = candles.iloc[-400:]
    code, body = post_json(f"{base}/invocations", candle_payload(bars.drop(columns=["close"])))
    assert code == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "'close'" in body["message"] and "[rule: required_columns]" in body["message"]
    code, body = post_json(f"{base}/invocations", candle_payload(bars.iloc[:50]))
    assert code == 400 and "[rule: min_bars]" in body["message"]
    assert "at least 168" in body["message"]


def test_ohlc_rule_errors_are_400_with_the_rule_alone_not_the_request(server):
    """A bar with high below low breaks training's ``high_ge_low`` rule: HTTP 400 whose body is the
    one rule line (before: 200, and other rule errors echoed the whole request, 24 KB for 300
    bars); a valid request is still answered 200 with the run's own forecasts."""
    base, prod, candles, _, client = server
    bars = candles.iloc[-300:].reset_index(drop=True)
    bad = bars.copy()
    bad.loc[250, "high"] = bad.loc[250, "low"] * 0.99
    code, raw = post_bytes(f"{base}/invocations", candle_payload(bad))
    body = json.loads(raw)
    ts = bars.loc[250, "timestamp"]
    rule = (f"request: column 'high' row 250 (timestamp {ts}): high < low; 1 row(s) break this "
            "rule [rule: high_ge_low]")
    assert code == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE"
    assert body["message"] == rule and body["rule"] == "high_ge_low"
    assert "stack_trace" not in body and "Failed to predict" not in raw.decode()
    assert bars.loc[0, "timestamp"].isoformat()[:16] not in raw.decode()  # no echo of the bars
    assert len(raw) < 400, len(raw)
    print(f"\n300-bar high<low request: HTTP {code}, error body {len(raw)} bytes")
    # every rule answers with its line alone, whatever the request's size
    code, raw = post_bytes(f"{base}/invocations", candle_payload(bars.drop(columns=["close"])))
    assert code == 400 and len(raw) < 400 and json.loads(raw)["rule"] == "required_columns"
    # the valid request: 200 and the forecasts the run recorded for the same bars
    code, body = post_json(f"{base}/invocations", candle_payload(bars))
    assert code == 200
    answered = pd.DataFrame(body["predictions"])
    answered["timestamp"] = pd.to_datetime(answered["timestamp"], utc=True)
    returns = pd.read_parquet(client.download_artifacts(prod.run_id, "backtest/returns.parquet",
                                                        tempfile.mkdtemp()))
    both = answered.merge(returns, on="timestamp")
    # every answered bar but the last one sent (whose label, hence test row, does not exist yet)
    assert len(answered) == 300 - 167 and len(both) == len(answered) - 1
    assert both["timestamp"].iloc[-1] == answered["timestamp"].iloc[-2]
    np.testing.assert_allclose(both["forecast"], both["prediction"], rtol=1e-12, atol=0)
