"""The logged pyfunc answers raw candles: same forecasts as the feature path, the run's own
test-window predictions, positions and regimes, nothing read from later bars, clear errors."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from huracan.data.ohlcv import load_ohlcv
from huracan.serving import OUTPUT_COLUMNS
from huracan.tracking.run import default_tracking_uri

pytestmark = pytest.mark.slow
NAME = "huracan-BTCUSDT-1h"
REPO = Path(__file__).resolve().parents[2]


def train_cheap(tmp: Path):
    """One cheap real LightGBM run on the shipped sample, registered (no alias): the result."""
    from hydra import compose, initialize_config_dir

    from huracan.config import register_resolvers
    from huracan.train import run_config

    register_resolvers()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[
            "model=lightgbm", "model.n_estimators=60", "explain.max_rows=20",
            "importance.enabled=false", f"tracking.store_dir={tmp / 'mlruns'}",
            "tracking.tracking_uri=null", f"data.quality_log={tmp / 'dq.jsonl'}",
            f"db.url=sqlite:///{tmp / 'brain.db'}"])
    return run_config(cfg)


@pytest.fixture(scope="module")
def served(tmp_path_factory, sample_path):
    tmp = tmp_path_factory.mktemp("pyfunc_raw")
    res = train_cheap(tmp)
    uri = default_tracking_uri(tmp / "mlruns")
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    model = mlflow.pyfunc.load_model(f"models:/{NAME}/{res.version}")
    candles, _ = load_ohlcv(sample_path, "1h")
    returns = pd.read_parquet(client.download_artifacts(res.run_id, "backtest/returns.parquet",
                                                        str(tmp)))
    return res, client, model, candles, returns


def test_raw_candles_give_the_feature_path_forecasts_and_the_version(served):
    from huracan.rebuild import rebuild_features, run_settings

    res, client, model, candles, _ = served
    out = model.predict(candles)
    assert list(out.columns) == list(OUTPUT_COLUMNS)
    assert str(out["timestamp"].dtype) == "datetime64[ns, UTC]"
    for col in ("forecast", "position", "size", "leverage"):
        assert out[col].dtype == np.float64, col
    assert out["timestamp"].is_monotonic_increasing and out["timestamp"].is_unique
    assert set(out["regime"]) <= {"low", "normal", "high", "extreme", "unknown"}
    assert set(out["position"]) <= {-1.0, 0.0, 1.0}
    assert (out["leverage"] == 1.0).all() and (out["size"] == out["position"].abs()).all()
    assert out["sizer"].isna().all()  # no production sizer: the fallback, flagged
    assert (out["registered_model"] == NAME).all() and (out["run_id"] == res.run_id).all()
    assert (out["model_version"] == str(res.version)).all()
    # the feature path on the same bars: identical forecasts
    settings = run_settings(client, res.run_id)
    fs, _ = rebuild_features(settings, keep_unlabelled=True)
    names = model.metadata.get_input_schema().input_names()
    feats = fs.frame[names]
    by_features = pd.Series(np.asarray(model.predict(feats)), index=feats.index)
    raw = out.set_index("timestamp")["forecast"]
    warmup = model.unwrap_python_model().spec.warmup_bars
    assert len(raw) == len(by_features) == len(candles) - warmup
    np.testing.assert_array_equal(raw.to_numpy(), by_features.reindex(raw.index).to_numpy())


def test_raw_answers_match_the_runs_own_test_backtest(served):
    _, _, model, candles, returns = served
    out = model.predict(candles).set_index("timestamp")
    test = returns.set_index(pd.DatetimeIndex(returns["timestamp"]))
    got = out.reindex(test.index)
    np.testing.assert_allclose(got["forecast"], test["prediction"], rtol=1e-12, atol=0)
    np.testing.assert_array_equal(got["position"].to_numpy(), test["position"].to_numpy())
    np.testing.assert_array_equal(got["regime"].to_numpy(), test["regime"].to_numpy())


def test_appending_bars_never_changes_earlier_answers(served):
    _, _, model, candles, _ = served
    short = model.predict(candles.iloc[:1500])
    longer = model.predict(candles.iloc[:1700])
    head = longer[longer["timestamp"].isin(short["timestamp"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(short, head)
    # the last answered bar is the last bar sent
    assert short["timestamp"].iloc[-1] == candles["timestamp"].iloc[1499]


def _error(model, frame) -> str:
    with pytest.raises(MlflowException) as info:
        model.predict(frame)
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    return info.value.message


def test_bad_requests_name_the_rule(served):
    _, _, model, candles, _ = served
    spec = model.unwrap_python_model().spec
    bars = candles.iloc[:400].reset_index(drop=True)
    msg = _error(model, bars.drop(columns=["close"]))
    assert "'close'" in msg and "[rule: required_columns]" in msg
    msg = _error(model, bars.iloc[: spec.min_bars - 1])
    assert "[rule: min_bars]" in msg and str(spec.min_bars) in msg
    swapped = bars.copy()
    swapped.loc[[10, 11], "timestamp"] = swapped.loc[[11, 10], "timestamp"].to_numpy()
    msg = _error(model, swapped)
    assert "row 11" in msg and "[rule: increasing_timestamp]" in msg
    dup = pd.concat([bars.iloc[:20], bars.iloc[19:]], ignore_index=True)
    msg = _error(model, dup)
    assert "row 20" in msg and "[rule: unique_timestamp]" in msg
    neg = bars.copy()
    neg.loc[5, "low"] = -1.0
    assert "column 'low' row 5" in (msg := _error(model, neg)) and "[rule: positive_price]" in msg
    inf = bars.copy()
    inf.loc[7, "close"] = np.inf
    assert _error(model, inf) == "column 'close' row 7: inf is not a finite number " \
        "[rule: numeric_values]"
    # exactly min_bars bars answer exactly one bar: the last
    one = model.predict(bars.iloc[: spec.min_bars])
    assert len(one) == 1 and one["timestamp"].iloc[0] == bars["timestamp"].iloc[spec.min_bars - 1]


def test_candles_breaking_training_ohlc_rules_are_refused_naming_row_and_rule(served):
    """The OHLC consistency rules of training's loader (huracan.data.ohlcv.validate_ohlcv)
    apply to served candles too: one line naming the column, row, bar and rule."""
    _, _, model, candles, _ = served
    bars = candles.iloc[:400].reset_index(drop=True)
    ts = bars.loc[250, "timestamp"]
    inverted = bars.copy()
    inverted.loc[250, "high"] = inverted.loc[250, "low"] * 0.99
    assert _error(model, inverted) == (
        f"request: column 'high' row 250 (timestamp {ts}): high < low; 1 row(s) break this rule "
        "[rule: high_ge_low]")
    body_high, body_low = bars[["open", "close"]].max(axis=1), bars[["open", "close"]].min(axis=1)
    below_body = bars.copy()  # low < high < max(open, close)
    below_body.loc[250, "high"] = (bars.loc[250, "low"] + body_high[250]) / 2
    assert "row 250" in (msg := _error(model, below_body)) and "[rule: high_ge_open_close]" in msg
    above_body = bars.copy()  # min(open, close) < low < high
    above_body.loc[300, "low"] = (body_low[300] + bars.loc[300, "high"]) / 2
    assert "row 300" in (msg := _error(model, above_body)) and "[rule: low_le_open_close]" in msg
    missing = bars.copy()
    missing.loc[42, "volume"] = np.nan
    assert "column 'volume' row 42" in (msg := _error(model, missing)) and \
        "[rule: not_null]" in msg
    off_grid = bars.copy()
    off_grid.loc[3, "timestamp"] = off_grid.loc[3, "timestamp"] + pd.Timedelta(minutes=30)
    assert "row 3" in (msg := _error(model, off_grid)) and "[rule: on_timeframe_grid]" in msg


def test_feature_input_still_returns_one_forecast_per_row(served):
    _, _, model, _, _ = served
    names = model.metadata.get_input_schema().input_names()
    rng = np.random.default_rng(0)
    pred = model.predict(pd.DataFrame(rng.normal(size=(7, len(names))), columns=names))
    assert isinstance(pred, np.ndarray) and pred.shape == (7,) and np.isfinite(pred).all()
    msg = _error(model, pd.DataFrame(rng.normal(size=(3, 2)), columns=names[:2]))
    assert names[2] in msg and "[rule: required_columns]" in msg


def test_a_cash_production_sizer_answers_size_and_leverage_0(served):
    """The sizer's production is the registered cash policy: every answered bar has size 0 and
    leverage 0 (no exposure), the label names it; forecasts and the rule's positions unchanged."""
    from huracan.registry.cash import ensure_cash_version

    res, client, _, candles, _ = served
    bars = candles.iloc[-300:].reset_index(drop=True)
    plain = mlflow.pyfunc.load_model(f"models:/{NAME}/{res.version}").predict(bars)
    sizer = "huracan-sizer-BTCUSDT-1h"
    cash = ensure_cash_version(client, sizer, reason="PPO did not beat cash")
    client.set_registered_model_alias(sizer, "production", cash.version)
    try:
        out = mlflow.pyfunc.load_model(f"models:/{NAME}/{res.version}").predict(bars)
    finally:
        client.delete_registered_model_alias(sizer, "production")
    assert plain["sizer"].isna().all() and (plain["size"] == plain["position"].abs()).all()
    assert (out["size"] == 0.0).all() and (out["leverage"] == 0.0).all()
    assert set(out["sizer"]) == {f"{sizer}/{cash.version}:cash"}
    np.testing.assert_array_equal(out["forecast"], plain["forecast"])
    np.testing.assert_array_equal(out["position"], plain["position"])
