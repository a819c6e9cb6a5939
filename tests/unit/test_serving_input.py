"""Raw-candle requests pass the OHLCV rules of training files (huracan.data.ohlcv.validate_ohlcv)
and their errors are one line naming the column, row and rule (issue 21: a bar with high below
low was answered)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from huracan.data.ohlcv import DataValidationError, validate_ohlcv
from huracan.serving.raw import InputRuleError, ServingSpec, validate_candles

SPEC = ServingSpec(symbol="BTC/USDT", timeframe="1h", registered_model="huracan-BTCUSDT-1h",
                   run_id=None, features={}, feature_names=[], warmup_bars=3, lookback=1)


def candles(n: int = 6) -> pd.DataFrame:
    ts = pd.date_range("2024-03-01", periods=n, freq="1h", tz="UTC")
    close = 100.0 + np.arange(n)
    return pd.DataFrame({"timestamp": [t.isoformat() for t in ts], "open": close - 0.5,
                         "high": close + 1.0, "low": close - 1.0, "close": close,
                         "volume": np.full(n, 5.0)})


def refused(frame: pd.DataFrame) -> InputRuleError:
    with pytest.raises(InputRuleError) as info:
        validate_candles(frame, SPEC)
    assert isinstance(info.value, MlflowException)
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    assert info.value.get_http_status_code() == 400
    return info.value


def test_a_bar_with_high_below_low_is_refused_with_the_training_rule_and_message():
    frame = candles()
    frame.loc[4, "high"] = 90.0
    err = refused(frame)
    assert err.rule == "high_ge_low"
    assert err.message == ("request: column 'high' row 4 (timestamp 2024-03-01 04:00:00+00:00): "
                           "high < low; 1 row(s) break this rule [rule: high_ge_low]")
    # the very rule and wording of a training file with the same bars
    as_file = frame.assign(timestamp=pd.to_datetime(frame["timestamp"], utc=True))
    with pytest.raises(DataValidationError) as info:
        validate_ohlcv(as_file, "request", "1h")
    assert str(info.value) == err.message


@pytest.mark.parametrize("column,row,value,rule", [
    ("high", 2, 101.9, "high_ge_open_close"),   # below the close 102
    ("low", 3, 102.9, "low_le_open_close"),     # above the open 102.5
    ("open", 1, 0.0, "positive_price"),
    ("volume", 5, -1.0, "non_negative_volume"),
    ("close", 0, None, "not_null"),
])
def test_each_ohlc_rule_of_training_names_column_row_and_rule(column, row, value, rule):
    frame = candles()
    frame[column] = frame[column].astype(object)
    frame.loc[row, column] = value
    err = refused(frame)
    assert err.rule == rule
    assert err.message.startswith(f"request: column '{column}' row {row} ")
    assert err.message.endswith(f"[rule: {rule}]") and "\n" not in err.message


def test_timestamp_rules_and_the_requests_own_rules():
    frame = candles()
    frame.loc[[2, 3], "timestamp"] = frame.loc[[3, 2], "timestamp"].to_numpy()
    assert refused(frame).rule == "increasing_timestamp"
    frame = candles()
    frame.loc[2, "timestamp"] = "2024-03-01T02:30:00Z"
    assert refused(frame).rule == "on_timeframe_grid"
    frame = candles()
    frame.loc[1, "volume"] = "lots"
    err = refused(frame)
    assert err.message == "column 'volume' row 1: 'lots' is not a finite number " \
        "[rule: numeric_values]"
    assert refused(candles().drop(columns=["low"])).rule == "required_columns"
    assert refused(candles(3)).rule == "min_bars"  # 3 bars, the model needs 3 + 1


def test_the_error_body_is_the_rule_line_even_after_the_server_rewrites_the_message():
    frame = candles()
    frame.loc[4, "high"] = 90.0
    err = refused(frame)
    line = err.message
    # what mlflow/pyfunc/scoring_server/__init__.py (invocations) does to an MlflowException
    # raised by predict before answering err.serialize_as_json() with its HTTP status
    err.message = f"Failed to predict data '{frame.to_dict()}'. \nError: {err.message}"
    body = json.loads(err.serialize_as_json())
    assert body["message"] == line and body["rule"] == "high_ge_low"
    assert body["error_code"] == "INVALID_PARAMETER_VALUE" and "stack_trace" not in body


def test_valid_candles_come_back_normalised():
    out = validate_candles(candles(), SPEC)
    assert list(out.columns) == ["timestamp", "open", "high", "low", "close", "volume"]
    assert str(out["timestamp"].dtype).endswith("UTC]") and out["close"].tolist() == [
        100.0, 101.0, 102.0, 103.0, 104.0, 105.0]


@pytest.mark.parametrize("kind", ["threshold", "barrier"])
def test_a_rule_fitted_flat_is_served_as_position_zero(kind):
    from dataclasses import asdict

    from sklearn.preprocessing import StandardScaler

    from huracan.evaluation.rules import BarrierRule, ThresholdRule
    from huracan.features.build import FeatureConfig, build_features
    from huracan.serving.raw import predict_candles, price_config

    rng = np.random.default_rng(0)
    n = 300
    ts = pd.date_range("2024-03-01", periods=n, freq="1h", tz="UTC")
    close = 100 * np.cumprod(1 + rng.normal(0, 0.01, n))
    frame = pd.DataFrame({"timestamp": ts, "open": close, "high": close * 1.002,
                          "low": close * 0.998, "close": close, "volume": rng.uniform(1, 2, n)})
    features = asdict(FeatureConfig())
    fs = build_features(frame, "1h", price_config(features), keep_unlabelled=True)
    names = list(fs.feature_names)
    spec = ServingSpec(symbol="BTC/USDT", timeframe="1h", registered_model="huracan-BTCUSDT-1h",
                       run_id=None, features=features, feature_names=names,
                       warmup_bars=n - len(fs.frame), lookback=1, rule_kind=kind)

    class Strong:  # forecasts far beyond any threshold: an unfitted rule would trade every bar
        def predict(self, X, starts=None, context=None):
            return np.where(np.arange(len(X)) % 2 == 0, 5.0, -5.0)

    scaler = StandardScaler().fit(fs.frame[names].to_numpy(np.float64))
    cls = ThresholdRule if kind == "threshold" else BarrierRule
    flat = cls(grid=(1.0,), flat_=True, flat_reason_="flat: no threshold beats cash")
    out = predict_candles(frame, spec, Strong(), scaler, flat)
    assert len(out) > 0 and (out["position"] == 0.0).all() and (out["size"] == 0.0).all()
    trading = predict_candles(frame, spec, Strong(), scaler, cls(threshold=1.0))
    if kind == "threshold":
        assert (trading["position"].abs() == 1.0).all()
    else:  # the barrier rule's exits need later prices: not answered unless flat
        assert trading["position"].isna().all()
