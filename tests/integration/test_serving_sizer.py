"""The served forecaster sizes its raw-candle answers with the production sizer
(``huracan-sizer-<SYMBOL>-<tf>@production``): ``size``/``leverage`` per bar equal the policy's
replay over the answered bars (:func:`huracan.sizing.serve.replay`), lie in ``[0, 1] x [1,
max_leverage]``, never change when bars are appended; a sizer serving ``flat`` (nothing beat
cash) answers size 0; without a sizer (or without a reachable registry) the fallback
``|position|`` x 1 is used and ``sizer`` is null. Timings print with ``-s``."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from dataclasses import replace

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from runners import run_module

from huracan.data.ohlcv import load_ohlcv
from huracan.serving import OUTPUT_COLUMNS
from huracan.serving.pyfunc import _production_sizer
from huracan.sizing.env import SizingData, forecast_volatility
from huracan.sizing.serve import ReplayPolicy, load_policy, replay, sizing_inputs
from huracan.tracking.run import default_tracking_uri

NAME = "huracan-BTCUSDT-1h"
SIZER = "huracan-sizer-BTCUSDT-1h"


@pytest.fixture(scope="module")
def registry(tmp_path_factory, sample_path):
    """A walk-forward forecaster and a tiny PPO sizer on the shipped sample (as
    tests/integration/test_sizer.py trains them), the forecaster's version at hand, the
    sizer's alias left to each test."""
    tmp = tmp_path_factory.mktemp("serving_sizer")
    t0 = time.perf_counter()
    fc = run_module("huracan.train", ["experiment=walkforward_btc_1h", "model=xgboost",
                                "importance.enabled=false", "explain.max_rows=20",
                                f"data.quality_log={tmp / 'dq.jsonl'}",
                                f"hydra.run.dir={tmp / 'fc'}"], tmp)
    assert fc.returncode == 0, fc.stderr[-3000:]
    run_id = json.loads((tmp / "fc" / "result.json").read_text())["run_id"]
    sz = run_module("huracan.sizer", ["sizer.total_timesteps=4096", "sizer.eval_every=2048",
                                "sizer.ppo.n_steps=1024", f"sizer.forecaster_run={run_id}",
                                f"hydra.run.dir={tmp / 'sz'}"], tmp)
    assert sz.returncode == 0, sz.stderr[-3000:]
    print(f"\nsetup (forecaster + sizer training): {time.perf_counter() - t0:.0f} s")
    uri = default_tracking_uri(tmp / "mlruns")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    fv = next(v for v in client.search_model_versions(f"name='{NAME}'") if v.run_id == run_id)
    (sv,) = client.search_model_versions(f"name='{SIZER}'")
    candles, _ = load_ohlcv(sample_path, "1h")
    try:
        yield tmp, client, fv, sv, candles
    finally:
        mlflow.set_tracking_uri(previous)


def _serve_with(client: MlflowClient, sv, fv, policy: str | None):
    """A fresh load of the forecaster (its sizer cache empty) with the sizer version in
    production serving ``policy`` (None: no production sizer)."""
    if policy is None:
        with contextlib.suppress(MlflowException):  # no alias yet
            client.delete_registered_model_alias(SIZER, "production")
    else:
        client.set_registered_model_alias(SIZER, "production", sv.version)
        client.set_tag(sv.run_id, "serve_policy", policy)
    return mlflow.pyfunc.load_model(f"models:/{NAME}/{fv.version}")


def _direct_replay(client, sv, model, candles: pd.DataFrame, out: pd.DataFrame,
                   policy: str) -> pd.DataFrame:
    """The policy replayed straight through :mod:`huracan.sizing.serve` over the answered bars."""
    from huracan.rebuild import run_settings

    spec = model.unwrap_python_model().spec
    settings = run_settings(client, spec.run_id)
    pol = load_policy(client, client.get_run(sv.run_id), policy, fee=settings.backtest.fee,
                      threshold=settings.backtest.threshold, timeframe="1h")
    close = candles.set_index("timestamp")["close"]
    nxt = (close.shift(-1) / close - 1.0).reindex(pd.DatetimeIndex(out["timestamp"]))
    ts = pd.DatetimeIndex(out["timestamp"])
    assert pol.backtest is not None and pol.backtest.fill == "next_open"  # the run's execution
    data = sizing_inputs(ts, out["forecast"].to_numpy(), nxt.to_numpy(), candles, "1h",
                         regimes=out["regime"].to_numpy() if pol.needs_regime else None,
                         bars=pol.market(ts, candles))
    return replay(pol, data, restart_after_liquidation=True)


def _check_sized(client, sv, fv, candles, policy: str) -> dict[str, float]:
    model = _serve_with(client, sv, fv, policy)
    bars = candles.iloc[-900:].reset_index(drop=True)
    t0 = time.perf_counter()
    out = model.predict(bars)
    first = time.perf_counter() - t0
    assert list(out.columns) == list(OUTPUT_COLUMNS)
    assert (out["sizer"] == f"{SIZER}/{sv.version}:{policy}").all()
    max_lev = float(client.get_run(sv.run_id).data.params["env.max_leverage"])
    size, lev = out["size"].to_numpy(), out["leverage"].to_numpy()
    assert out["size"].dtype == np.float64 and out["leverage"].dtype == np.float64
    assert ((size >= 0.0) & (size <= 1.0)).all()
    assert ((lev >= 1.0) & (lev <= max_lev + 1e-9)).all()
    # the sizer, not the fallback: size is not |position| x 1 everywhere
    assert not ((size == out["position"].abs().to_numpy()) & (lev == 1.0)).all()
    direct = _direct_replay(client, sv, model, bars, out, policy)
    np.testing.assert_array_equal(direct["timestamp"].to_numpy(), out["timestamp"].to_numpy())
    np.testing.assert_allclose(size, direct["size"].to_numpy(), rtol=1e-12, atol=0)
    np.testing.assert_allclose(lev, direct["leverage"].to_numpy(), rtol=1e-12, atol=0)
    # no look-ahead: appending bars never changes the answer (size, leverage) of earlier bars
    short = model.predict(bars.iloc[:600])
    head = out[out["timestamp"].isin(short["timestamp"])].reset_index(drop=True)
    assert len(head) == len(short) and short["timestamp"].iloc[-1] == bars["timestamp"].iloc[599]
    pd.testing.assert_frame_equal(short, head)
    t0 = time.perf_counter()
    model.predict(bars.iloc[-367:])
    warm = time.perf_counter() - t0
    return {"first_900": first, "warm_200": warm, "answered": len(out)}


@pytest.mark.slow
def test_ppo_sizer_sizes_every_answered_bar(registry):
    _, client, fv, sv, candles = registry
    t = _check_sized(client, sv, fv, candles, "ppo")
    print(f"\nPPO sizer: first request ({t['answered']} bars answered, registry lookups and "
          f"policy load included) {t['first_900']:.2f} s; 200-bar request "
          f"{t['warm_200'] * 1000:.0f} ms")


@pytest.mark.slow
def test_a_baseline_sizer_choice_is_served_too(registry):
    _, client, fv, sv, candles = registry
    t = _check_sized(client, sv, fv, candles, "kelly")
    print(f"\nkelly sizer: first request {t['first_900']:.2f} s; 200-bar request "
          f"{t['warm_200'] * 1000:.0f} ms")


@pytest.mark.slow
def test_a_flat_sizer_answers_size_zero(registry):
    _, client, fv, sv, candles = registry
    model = _serve_with(client, sv, fv, "flat")
    out = model.predict(candles.iloc[-400:].reset_index(drop=True))
    assert (out["sizer"] == f"{SIZER}/{sv.version}:flat").all()
    assert (out["size"] == 0.0).all() and (out["leverage"] == 1.0).all()
    assert out["position"].abs().sum() > 0  # the rule would trade; the sizer says cash


@pytest.mark.slow
def test_without_a_sizer_the_fallback_is_used_and_flagged(registry, tmp_path, monkeypatch):
    _, client, fv, sv, candles = registry
    bars = candles.iloc[-400:].reset_index(drop=True)
    model = _serve_with(client, sv, fv, None)
    out = model.predict(bars)
    assert out["sizer"].isna().all()
    assert (out["size"] == out["position"].abs()).all() and (out["leverage"] == 1.0).all()
    assert (out["model_version"] == str(fv.version)).all()
    # a production sizer exists, but the registry cannot be reached at the first request
    client.set_registered_model_alias(SIZER, "production", sv.version)
    local = mlflow.artifacts.download_artifacts(f"models:/{NAME}/{fv.version}",
                                                dst_path=str(tmp_path / "model"))
    offline = mlflow.pyfunc.load_model(local)
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    uri = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(MlflowException, match="Connection refused"):  # not "no sizer"
            _production_sizer(offline.unwrap_python_model().spec)
        out = offline.predict(bars)
    finally:
        mlflow.set_tracking_uri(uri)
    assert out["sizer"].isna().all() and out["model_version"].isna().all()
    assert (out["size"] == out["position"].abs()).all() and (out["leverage"] == 1.0).all()
    # the lookup is cached: the registry back does not change a loaded model's answer
    assert offline.predict(bars)["sizer"].isna().all()


def test_a_replay_restarts_flat_after_a_liquidation():
    """Serving's replay opens a new account on the bar after a liquidation (``huracan size``'s
    stays flat); the bars before it are the same either way."""
    n = 120
    rng = np.random.default_rng(0)
    r = rng.normal(0.0, 0.002, n)
    r[60] = -0.3  # a crash: a 5x long is liquidated on row 60
    data = SizingData(timestamps=pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC"),
                      forecast=np.full(n, 0.01), next_return=r)
    pol = ReplayPolicy(name="kelly", timeframe="1h", fee=0.0004,
                       params={"env.max_leverage": "5.0", "sizer.kelly_fraction": "1.0"})
    flat = replay(pol, data)
    again = replay(pol, data, restart_after_liquidation=True)
    assert flat["liquidated"].iloc[60] == "margin" and again["liquidated"].iloc[60] == "margin"
    pd.testing.assert_frame_equal(flat.iloc[:61], again.iloc[:61])
    assert (flat["size"].iloc[61:] == 0).all() and (flat["leverage"].iloc[61:] == 0).all()
    assert len(again) == n and (again["leverage"] >= 1.0).all()
    assert (again["size"].iloc[62:] > 0).all()
    # the new account from row 61: the policy over the remaining rows, same trailing volatility
    vol = forecast_volatility(data, pol.env_config())
    rest = replay(pol, replace(data.slice(61), volatility=vol[61:]))
    np.testing.assert_array_equal(again["size"].iloc[61:], rest["size"])
    np.testing.assert_array_equal(again["equity"].iloc[61:], rest["equity"])
