"""A pooled registered model answers raw candles for each of its symbols (issue 25).

One tiny LightGBM pooled over real BTC/USDT and ETH/USDT 1h slices (../shared/data, walk-forward
with huracan.pooled.fit_predict_pooled), each symbol's serving spec and rule made by the
single-symbol code (huracan.serving.bundle.serving_bundle), logged with
huracan.serving.pooled.log_pooled_model and registered; ETH/USDT under the cash floor (its trade
flag False). In process: each symbol's answer is predict_candles with that symbol's view, scaler
and rule, and its forecasts are the fit's own OOS forecasts. Over HTTP (slow: ``mlflow models
serve``): each symbol's answer equals the in-process one; an unknown or missing symbol is HTTP
400 with the one rule line.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from runners import REPO, candle_payload, post_bytes, post_json, served_model

from huracan import stages
from huracan.config import register_resolvers
from huracan.data.candle_request import OUTPUT_COLUMNS, InputRuleError
from huracan.serving.raw import CASH_FLOOR, predict_candles
from huracan.tracking import run as tracking

POOL = "huracan-pool-BTCUSDT-ETHUSDT-1h"
SYMBOLS = ["BTC/USDT", "ETH/USDT"]
TRADE = {"BTC/USDT": True, "ETH/USDT": False}  # ETH under the cash floor
SLICE = ("2023-09-01", "2024-03-01")  # [start, end) of the candles each symbol is fitted on
REQUEST_BARS = 400  # the request: the last bars of the slice (warm-up 167 -> 233 answered)


def _settings(tmp):
    from huracan.settings import JobSettings

    register_resolvers()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[
            "data=binance_1h", "split=walk_forward", "split.train_bars=60d",
            "split.val_bars=10d", "split.step_bars=30d", "model=lightgbm",
            "model.n_estimators=20", "model.n_jobs=1", "backtest.threshold=0.0",
            f"tracking.store_dir={tmp / 'mlruns'}", "tracking.tracking_uri=null",
            f"data.quality_log={tmp / 'dq.jsonl'}", f"db.url=sqlite:///{tmp / 'brain.db'}"])
    return JobSettings.from_dict(OmegaConf.to_container(cfg, resolve=True))


@pytest.fixture(scope="module")
def pooled(tmp_path_factory, monkeypatch_module):
    """The fitted pool, logged and registered (alias ``production``): ``(tracking uri,
    version, PooledOutcome, feature sets, candles, tmp dir)``."""
    from huracan.pooled.fit import fit_predict_pooled, pooled_folds
    from huracan.serving.bundle import serving_bundle
    from huracan.serving.pooled import log_pooled_model

    monkeypatch_module.setenv("OMP_NUM_THREADS", "1")
    tmp = tmp_path_factory.mktemp("pooled_serving")
    settings = _settings(tmp)
    tf = settings.data.timeframe
    candles, sets = {}, {}
    for s in SYMBOLS:
        if not Path(settings.data.path).exists():
            pytest.skip(f"{settings.data.path} not found (../shared/data beside the checkout)")
        data = stages.symbol_data(settings.data, s)
        full = stages.load_validated(data, log_quality=False)
        ts = pd.DatetimeIndex(full["timestamp"])
        candles[s] = full[(ts >= SLICE[0]) & (ts < SLICE[1])].reset_index(drop=True)
        sets[s] = stages.build_features(candles[s], tf, settings.features, label=settings.label)
    horizon = sets[SYMBOLS[0]].horizon
    folds = pooled_folds(settings.split, sets, tf, horizon)
    outcome = fit_predict_pooled(settings.make_model(), sets, folds, ("val", "test"), tf)
    experiment = tracking.configure(None, tmp / "mlruns", "pooled-serving")
    uri = mlflow.get_tracking_uri()
    with mlflow.start_run(experiment_id=experiment) as run:
        bundles = {s: serving_bundle(settings, sets[s], outcome.outcomes[s][-1], {},
                                     outcome.model.estimator_for(s), run.info.run_id,
                                     stages.run_bars(sets[s], settings.backtest, tf))
                   for s in SYMBOLS}
        example = pd.concat([sets[s].frame[sets[s].feature_names].iloc[-5:].assign(symbol=s)
                             for s in SYMBOLS])
        model_uri = log_pooled_model(outcome.model, bundles, TRADE, example,
                                     registered_model=POOL)
    client = MlflowClient(tracking_uri=uri)
    version = mlflow.register_model(model_uri, POOL).version
    client.set_registered_model_alias(POOL, "production", version)
    return uri, str(version), outcome, sets, candles, tmp


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def _request(candles: pd.DataFrame, symbol: str) -> pd.DataFrame:
    return candles.iloc[-REQUEST_BARS:].reset_index(drop=True).assign(symbol=symbol)


def test_the_registered_pool_answers_each_symbol_with_its_own_parts(pooled):
    uri, version, outcome, sets, candles, _ = pooled
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(f"models:/{POOL}/{version}")
    served = model.unwrap_python_model()
    assert served.symbols == SYMBOLS and served.trade == TRADE
    for s in SYMBOLS:
        out = model.predict(_request(candles[s], s))
        assert list(out.columns) == list(OUTPUT_COLUMNS) and len(out) == REQUEST_BARS - 167
        assert (out["registered_model"] == POOL).all() and (out["model_version"] == version).all()
        # the symbol's own view, scaler and rule (after the save/load round trip)
        own = predict_candles(candles[s].iloc[-REQUEST_BARS:], served.specs[s],
                              outcome.model.estimator_for(s), outcome.model.scaler_for(s),
                              served.rules[s], version, trade=TRADE[s])
        pd.testing.assert_frame_equal(out, own)
        # its forecasts are the fit's own OOS forecasts of these bars (the last fold's)
        last = outcome.outcomes[s][-1]
        oos = pd.Series(last.predictions["test"],
                        index=sets[s].frame.index[last.fold.test.start:last.fold.test.stop])
        both = out.set_index("timestamp")["forecast"].to_frame().join(oos.rename("fit"),
                                                                      how="inner")
        assert len(both) > 100
        np.testing.assert_allclose(both["forecast"], both["fit"], rtol=1e-6, atol=1e-9)
    btc = model.predict(_request(candles["BTC/USDT"], "BTC/USDT"))
    eth = model.predict(_request(candles["ETH/USDT"], "ETHUSDT"))
    assert set(btc["position"]) == {-1.0, 1.0} and btc["sizer"].isna().all()
    assert (eth["position"] == 0).all() and (eth["size"] == 0).all()
    assert (eth["sizer"] == CASH_FLOOR).all()
    assert not np.allclose(btc["forecast"], eth["forecast"])
    with pytest.raises(InputRuleError, match=r"'LTC/USDT' is not a symbol of this model; the "
                       r"model's symbols are \['BTC/USDT', 'ETH/USDT'\] \[rule: known_symbol\]"):
        model.predict(_request(candles["BTC/USDT"], "LTC/USDT"))


@pytest.mark.slow
def test_mlflow_models_serve_answers_each_symbol_over_http(pooled):
    """``mlflow models serve`` of the pool's production alias: each symbol's raw candles get
    the in-process answer; an unknown symbol, or none, is HTTP 400 with the rule line alone."""
    uri, version, _, _, candles, tmp = pooled
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(f"models:/{POOL}@production")
    with served_model(f"models:/{POOL}@production", uri, tmp) as (base, startup):
        for s in SYMBOLS:
            request = _request(candles[s], s)
            code, body = post_json(f"{base}/invocations", candle_payload(request))
            assert code == 200, body
            got = pd.DataFrame(body["predictions"])
            got["timestamp"] = pd.to_datetime(got["timestamp"], utc=True)
            want = model.predict(request)
            assert list(got.columns) == list(OUTPUT_COLUMNS) and len(got) == len(want)
            for col in ("forecast", "position", "size", "leverage"):
                np.testing.assert_allclose(got[col].to_numpy(np.float64), want[col],
                                           rtol=1e-12, atol=0, err_msg=f"{s} {col}")
            for col in ("timestamp", "regime", "sizer", "registered_model", "model_version",
                        "run_id"):
                assert got[col].tolist() == want[col].tolist(), f"{s} {col}"
            assert set(got["model_version"]) == {version}
            if not TRADE[s]:
                assert (got["position"] == 0).all() and (got["size"] == 0).all()
        code, raw = post_bytes(f"{base}/invocations",
                               candle_payload(_request(candles["BTC/USDT"], "DOGE/USDT")))
        body = json.loads(raw)
        assert code == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE"
        assert body["rule"] == "known_symbol" and body["message"] == (
            "column 'symbol': 'DOGE/USDT' is not a symbol of this model; the model's symbols "
            "are ['BTC/USDT', 'ETH/USDT'] [rule: known_symbol]")
        assert len(raw) < 400 and "stack_trace" not in body
        code, body = post_json(f"{base}/invocations",
                               candle_payload(candles["BTC/USDT"].iloc[-REQUEST_BARS:]))
        assert code == 400 and body["rule"] == "symbol_column"
        times = []  # latency of a 233-bar answer (400 candles sent), over 5 requests
        payload = candle_payload(_request(candles["ETH/USDT"], "ETH/USDT"))
        for _ in range(5):
            t0 = time.perf_counter()
            code, body = post_json(f"{base}/invocations", payload)
            times.append(time.perf_counter() - t0)
            assert code == 200 and len(body["predictions"]) == REQUEST_BARS - 167
    print(f"\npooled serve start-up {startup:.1f} s; {REQUEST_BARS - 167}-bar request: median "
          f"{sorted(times)[2] * 1000:.0f} ms, min {min(times) * 1000:.0f} ms")
