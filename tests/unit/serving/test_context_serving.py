"""Serving a model with context symbols and higher timeframes (issue 25).

The request carries the target's candles plus ``ctx_<PAIR>_close`` per bar (``ServingSpec.
context_columns``); the served model rebuilds the ``htf_<tf>_*`` columns from the candles and the
``ctx_<PAIR>_*`` columns from those closes, equal to what training built. Old specs load without
the field; the paper loop refuses a context model in one line.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import StandardScaler

from huracan.data.candle_request import InputRuleError, ServingSpec, validate_candles
from huracan.features.build import FeatureConfig, build_features
from huracan.paper.production import refuse_context
from huracan.serving.raw import measure_warmup, predict_candles


def _candles(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    ts = pd.date_range("2023-01-01", periods=n, freq="1h", tz="UTC")
    return pd.DataFrame({"timestamp": ts, "open": open_, "high": np.maximum(open_, close) * 1.002,
                         "low": np.minimum(open_, close) * 0.998, "close": close,
                         "volume": rng.uniform(10.0, 100.0, n)})


class Recorder:
    """A forecaster answering the first input column and keeping every matrix it was given."""

    lookback = 1

    def __init__(self) -> None:
        self.seen: list[np.ndarray] = []

    def predict(self, X, starts=None, context=None):
        self.seen.append(np.asarray(X))
        return np.nan_to_num(np.asarray(X)[:, 0])


def test_served_context_and_htf_features_equal_training() -> None:
    n = 1600
    target, eth = _candles(n, 1), _candles(n, 2)
    eth = eth.drop(index=[1200, 1201])  # ETH missing two bars while BTC trades
    cfg = FeatureConfig(context=["BTC/USDT", "ETH/USDT"], timeframes=["4h", "1d"])
    features = asdict(cfg)
    fs = build_features(target, "1h", cfg, context={"ETH/USDT": eth}, keep_unlabelled=True)
    names = list(fs.feature_names)
    assert "ctx_ETHUSDT_corr_168" in names and "htf_1d_macd" in names
    warmup = measure_warmup(features, "1h")
    assert warmup > 30 * 24  # the 1d MACD signal needs ~34 daily bars, not 168 hourly ones
    spec = ServingSpec(symbol="BTC/USDT", timeframe="1h", registered_model="huracan-BTCUSDT-1h",
                       run_id=None, features=features, feature_names=names,
                       context_columns=["ctx_ETHUSDT_close"], warmup_bars=warmup)
    scaler = StandardScaler().fit(np.nan_to_num(fs.frame[names].to_numpy(np.float64)))
    request = target.copy()
    request["ctx_ETHUSDT_close"] = eth.set_index("timestamp")["close"].reindex(
        request["timestamp"]).to_numpy()  # NaN on the missing ETH bars
    request["timestamp"] = request["timestamp"].map(lambda t: t.isoformat())
    est = Recorder()
    out = predict_candles(request, spec, est, scaler, None)
    assert len(out) == len(fs.frame)
    served = est.seen[-1]
    expect = scaler.transform(fs.frame[names].to_numpy(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(served, expect)  # NaN where training had NaN too
    assert np.isnan(served).any()  # the missing ETH bars' windows: NaN, served as trained
    gone = pd.Timestamp("2023-02-20 00:00", tz="UTC")  # ETH row 1200
    assert fs.frame.loc[gone, "ctx_ETHUSDT_available"] == 0.0
    # a request without the context column is refused, naming it
    with pytest.raises(InputRuleError, match=r"ctx_ETHUSDT_close.*required_columns"):
        validate_candles(request.drop(columns=["ctx_ETHUSDT_close"]), spec)
    bad = request.copy()
    bad.loc[5, "ctx_ETHUSDT_close"] = -1.0
    with pytest.raises(InputRuleError, match=r"row 5.*positive finite price"):
        validate_candles(bad, spec)


def test_old_specs_load_without_context_columns_and_paper_refuses_context_models() -> None:
    spec = ServingSpec(symbol="BTC/USDT", timeframe="1h", registered_model="m", run_id=None,
                       features={}, feature_names=["ret_1"])
    old = {k: v for k, v in asdict(spec).items() if k != "context_columns"}
    loaded = ServingSpec.from_json(json.dumps(old))
    assert loaded.context_columns == []
    refuse_context(loaded, "m v1")  # no context: accepted
    with_ctx = ServingSpec(**{**asdict(spec), "context_columns": ["ctx_ETHUSDT_close"]})
    with pytest.raises(ValueError) as info:
        refuse_context(with_ctx, "huracan-BTCUSDT-1h v3")
    line = str(info.value)
    assert "\n" not in line and "huracan-BTCUSDT-1h v3" in line and "ctx_ETHUSDT_close" in line


def test_bundle_lists_context_columns_not_family_columns() -> None:
    from huracan.serving.bundle import serving_bundle

    cfg = FeatureConfig(context=["BTC/USDT", "ETH/USDT"], timeframes=["4h"])
    target, eth = _candles(600, 3), _candles(600, 4)
    fs = build_features(target, "1h", cfg, context={"ETH/USDT": eth})
    settings = SimpleNamespace(features=cfg, data=SimpleNamespace(symbol="BTC/USDT",
                                                                  timeframe="1h"),
                               make_rule=lambda: SimpleNamespace(kind="threshold"))
    estimator = SimpleNamespace(feature_names_=list(fs.feature_names), lookback=1)
    outcome = SimpleNamespace(predictions={})
    spec, _ = serving_bundle(settings, fs, outcome, {}, estimator, run_id=None)
    assert spec.context_columns == ["ctx_ETHUSDT_close"]  # the BTC target skips itself
    assert spec.family_columns == []  # ctx_* and htf_* are rebuilt, not sent


def test_paper_over_http_refuses_a_served_context_model_in_one_line() -> None:
    """The served model answers the paper's OHLCV-only probe with its ``required_columns``
    400; the paper loop turns it into one permanent line, not a transient outage."""
    from huracan.paper.http import ContextModelError, HttpProduction, ProductionRejectedError

    spec = ServingSpec(symbol="BTC/USDT", timeframe="1h", registered_model="m", run_id=None,
                       features={}, feature_names=["ret_1"],
                       context_columns=["ctx_ETHUSDT_close"])
    probe = pd.DataFrame([["2020-01-01T00:00:00Z", 1.0, 1.0, 1.0, 1.0, 0.0]],
                         columns=["timestamp", "open", "high", "low", "close", "volume"])
    with pytest.raises(InputRuleError) as refused:
        validate_candles(probe, spec)
    body = json.loads(refused.value.serialize_as_json())

    class Answer:
        status_code = 400
        text = json.dumps(body)

        def json(self):
            return body

    class Session:
        def post(self, *args, **kwargs):
            return Answer()

    prod = HttpProduction("http://127.0.0.1:5001", session=Session())
    with pytest.raises(ContextModelError) as info:
        prod.probe_warmup()
    line = str(info.value)
    assert isinstance(info.value, ProductionRejectedError)
    assert "\n" not in line and "reads context symbols" in line and "ctx_ETHUSDT_close" in line
    with pytest.raises(ContextModelError):
        prod.answer(probe)
