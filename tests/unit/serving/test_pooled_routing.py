"""Routing of the pooled pyfunc (huracan.serving.pooled): the ``symbol`` column picks that
symbol's spec, estimator view, scaler and rule; a symbol under the cash floor answers position,
size and leverage 0; a missing, unknown or mixed symbol is one InputRuleError line naming the
column and the model's symbols. A stand-in pooled model (per-symbol linear forecasts) keeps it
fast; the real PooledModel, logged and served over HTTP, is tests/integration/
test_pooled_serving.py."""

from __future__ import annotations

from dataclasses import asdict
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import StandardScaler

from huracan.data.candle_request import OUTPUT_COLUMNS, InputRuleError
from huracan.evaluation.rules import ThresholdRule
from huracan.features.build import FeatureConfig
from huracan.serving import pooled as pooled_mod
from huracan.serving.bundle import _price_names
from huracan.serving.pooled import PooledPyfunc, request_symbol
from huracan.serving.raw import CASH_FLOOR, ServingSpec, measure_warmup, predict_candles

POOL = "huracan-pool-BTCUSDT-ETHUSDT-1h"
SYMBOLS = ["BTC/USDT", "ETH/USDT"]
FEATURES = asdict(FeatureConfig(return_horizons=[1, 4], volatility_windows=[24],
                                volume_windows=[24], calendar=False))


class _View:
    """A Forecaster-like per-symbol view: forecast = X @ weights (the symbol's own weights)."""

    lookback = 1
    is_fitted = True

    def __init__(self, names: list[str], weights: np.ndarray) -> None:
        self.feature_names_ = names
        self.weights = weights

    def predict(self, X, context=None, starts=None):
        return np.asarray(X, dtype=np.float64) @ self.weights


class _Pool:
    """Stand-in of huracan.models.pooled.PooledModel's serving contract."""

    def __init__(self, names: list[str], frames: dict[str, np.ndarray]) -> None:
        rng = np.random.default_rng(0)
        self.symbols = list(SYMBOLS)
        self.feature_names = names
        self.weights = {s: rng.normal(0, 1e-3, len(names)) for s in SYMBOLS}
        self.scalers = {s: StandardScaler().fit(frames[s]) for s in SYMBOLS}

    def estimator_for(self, symbol: str) -> _View:
        if symbol not in self.symbols:
            raise ValueError(symbol)
        return _View(self.feature_names, self.weights[symbol])

    def scaler_for(self, symbol: str) -> StandardScaler:
        return self.scalers[symbol]


@pytest.fixture(scope="module")
def pool(sample_1h):
    names = _price_names(FEATURES, "1h")
    rng = np.random.default_rng(1)
    frames = {s: rng.normal(i, 1 + i, (50, len(names))) for i, s in enumerate(SYMBOLS)}
    model = _Pool(names, frames)
    warmup = measure_warmup(FEATURES, "1h")
    specs = {s: ServingSpec(symbol=s, timeframe="1h", registered_model=POOL, run_id=None,
                            features=FEATURES, feature_names=names, warmup_bars=warmup)
             for s in SYMBOLS}
    rules = {s: ThresholdRule(threshold=0.0) for s in SYMBOLS}
    candles = sample_1h.iloc[-300:].reset_index(drop=True)
    return model, specs, rules, candles


@pytest.fixture()
def no_sizer(monkeypatch):
    """No registry: the production sizer lookup answers none, and is recorded per symbol."""
    asked: list[str] = []

    def lookup(spec):
        asked.append(spec.symbol)
        return None, None

    monkeypatch.setattr(pooled_mod, "production_sizer", lookup)
    return asked


def _request(candles: pd.DataFrame, symbol: object) -> pd.DataFrame:
    return candles.assign(symbol=symbol)


def _rule_error(model, frame) -> InputRuleError:
    with pytest.raises(InputRuleError) as info:
        model.predict(None, frame)
    assert "\n" not in info.value.message
    return info.value


def test_each_symbol_answers_with_its_own_spec_view_scaler_and_rule(pool, no_sizer):
    model, specs, rules, candles = pool
    served = PooledPyfunc.of(model, specs, rules, {s: True for s in SYMBOLS})
    answers = {}
    for s in SYMBOLS:
        out = served.predict(None, _request(candles, s))
        own = predict_candles(candles, specs[s], model.estimator_for(s), model.scaler_for(s),
                              rules[s])
        pd.testing.assert_frame_equal(out, own)
        assert list(out.columns) == list(OUTPUT_COLUMNS)
        assert (out["registered_model"] == POOL).all()
        assert len(out) == len(candles) - specs[s].warmup_bars
        assert set(out["position"]) <= {-1.0, 1.0} and (out["size"] == 1.0).all()
        answers[s] = out
    # the symbols' views and scalers differ: so do their forecasts on the same bars
    assert not np.allclose(answers["BTC/USDT"]["forecast"], answers["ETH/USDT"]["forecast"])
    assert no_sizer == SYMBOLS  # one sizer lookup per symbol, cached
    served.predict(None, _request(candles, "BTCUSDT"))  # the compact pair names it too
    assert no_sizer == SYMBOLS


def test_a_symbol_under_the_cash_floor_answers_position_and_size_0(pool, no_sizer):
    model, specs, rules, candles = pool
    served = PooledPyfunc.of(model, specs, rules, {"BTC/USDT": True, "ETH/USDT": False})
    out = served.predict(None, _request(candles, "ETH/USDT"))
    trading = predict_candles(candles, specs["ETH/USDT"], model.estimator_for("ETH/USDT"),
                              model.scaler_for("ETH/USDT"), rules["ETH/USDT"])
    assert (trading["position"] != 0).any()  # the rule would trade these bars
    assert (out["position"] == 0.0).all() and (out["size"] == 0.0).all()
    assert (out["leverage"] == 0.0).all() and (out["sizer"] == CASH_FLOOR).all()
    np.testing.assert_array_equal(out["forecast"], trading["forecast"])
    np.testing.assert_array_equal(out["regime"], trading["regime"])
    assert no_sizer == []  # a cash-floor symbol never asks for a sizer
    btc = served.predict(None, _request(candles, "BTC/USDT"))
    assert (btc["position"] != 0).any() and btc["sizer"].isna().all()


@pytest.mark.parametrize(("symbol", "rule", "said"), [
    (None, "symbol_column", "row 0: no symbol given"),
    ("", "symbol_column", "no symbol given"),
    ("DOGE/USDT", "known_symbol", "'DOGE/USDT' is not a symbol of this model"),
])
def test_a_missing_or_unknown_symbol_is_one_line_naming_the_column_and_symbols(
        pool, no_sizer, symbol, rule, said):
    model, specs, rules, candles = pool
    served = PooledPyfunc.of(model, specs, rules, {s: True for s in SYMBOLS})
    err = _rule_error(served, _request(candles, symbol))
    assert err.rule == rule and err.error_code == "INVALID_PARAMETER_VALUE"
    assert said in err.message and "column 'symbol'" in err.message
    assert "['BTC/USDT', 'ETH/USDT']" in err.message and err.message.endswith(f"[rule: {rule}]")


def test_no_symbol_column_or_mixed_symbols_are_refused(pool, no_sizer):
    model, specs, rules, candles = pool
    served = PooledPyfunc.of(model, specs, rules, {s: True for s in SYMBOLS})
    err = _rule_error(served, candles)
    assert err.rule == "symbol_column" and "missing column 'symbol'" in err.message
    assert "['BTC/USDT', 'ETH/USDT']" in err.message
    mixed = _request(candles, "BTC/USDT")
    mixed.loc[5, "symbol"] = "ETH/USDT"
    err = _rule_error(served, mixed)
    assert err.rule == "one_symbol" and "['BTC/USDT', 'ETH/USDT']" in err.message
    # the candle rules still apply, after the symbol
    bad = _request(candles, "ETH/USDT").drop(columns=["close"])
    assert _rule_error(served, bad).rule == "required_columns"


def test_request_symbol_matches_as_written_or_compact():
    frame = pd.DataFrame({"symbol": ["ethusdt"] * 3})
    assert request_symbol(frame, SYMBOLS) == "ETH/USDT"
    assert request_symbol(frame.assign(symbol="BTC/USDT"), SYMBOLS) == "BTC/USDT"
    with pytest.raises(InputRuleError, match="symbol_column"):
        request_symbol(frame.iloc[:0], SYMBOLS)


def test_feature_requests_use_the_symbols_scaler_and_view(pool):
    model, specs, rules, _ = pool
    served = PooledPyfunc.of(model, specs, rules, {s: True for s in SYMBOLS})
    rng = np.random.default_rng(2)
    names = model.feature_names
    feats = pd.DataFrame(rng.normal(size=(6, len(names))), columns=names)
    for s in SYMBOLS:
        got = served.predict(None, feats.assign(symbol=s))
        want = model.estimator_for(s).predict(model.scaler_for(s).transform(feats.to_numpy()))
        np.testing.assert_allclose(got, want, rtol=1e-5)
        assert got.shape == (6,)


def test_specs_rules_and_flags_must_cover_the_models_symbols(pool):
    from dataclasses import replace

    from huracan.serving.pooled import log_pooled_model

    model, specs, rules, _ = pool
    bundles = {s: (replace(specs[s], registered_model=f"huracan-{s[:3]}USDT-1h"), rules[s])
               for s in SYMBOLS}
    with pytest.raises(ValueError, match="several registered models"):
        log_pooled_model(model, bundles, {s: True for s in SYMBOLS}, pd.DataFrame())
    with pytest.raises(ValueError, match="trade flags are for"):
        PooledPyfunc.of(model, specs, rules, {"BTC/USDT": True})
    with pytest.raises(ValueError, match="serving specs are for"):
        PooledPyfunc.of(model, {"BTC/USDT": specs["BTC/USDT"]}, rules,
                        {s: True for s in SYMBOLS})


def test_the_answer_goes_to_the_prediction_log_under_its_symbol(pool, no_sizer, monkeypatch):
    """The hook of the single-symbol model (huracan.serving.pyfunc._log_answer): one item per
    request, the request's symbol and the timed latency in its meta."""
    from huracan.serving import pyfunc

    model, specs, rules, candles = pool
    got: list[tuple[pd.DataFrame, pd.DataFrame, dict]] = []
    fake = SimpleNamespace(submit=lambda req, ans, meta: got.append((req, ans, meta)))
    monkeypatch.setattr(pyfunc, "process_log", lambda: fake)
    served = PooledPyfunc.of(model, specs, rules, {"BTC/USDT": True, "ETH/USDT": False})
    out = served.predict(None, _request(candles, "ETH/USDT"))
    (req, ans, meta), = got
    assert meta["symbol"] == "ETH/USDT" and meta["timeframe"] == "1h"
    assert meta["latency_ms"] > 0 and "symbol" not in req.columns
    pd.testing.assert_frame_equal(ans, out)


def test_a_pooled_context_model_reads_the_context_closes_beside_the_symbol(sample_1h, no_sizer):
    """Pooled symbols with context features (a market outside the pool, the same ``ctx_*``
    columns for every symbol): the request carries ``symbol`` and ``ctx_<PAIR>_close``; the
    answer is that symbol's predict_candles of the same candles and closes; without the
    context column, the candle rule ``required_columns`` names it."""
    from dataclasses import replace

    from huracan.features.build import build_features

    cfg = FeatureConfig(return_horizons=[1, 4], volatility_windows=[24], volume_windows=[24],
                        calendar=False, context=["SOL/USDT"], context_windows=[24])
    candles = sample_1h.iloc[-400:].reset_index(drop=True)
    sol = candles.assign(close=candles["close"] * 0.002, open=candles["open"] * 0.002,
                         high=candles["high"] * 0.002, low=candles["low"] * 0.002)
    fs = build_features(candles, "1h", cfg, context={"SOL/USDT": sol}, keep_unlabelled=True)
    names = list(fs.feature_names)
    assert "ctx_SOLUSDT_beta_24" in names
    rng = np.random.default_rng(3)
    model = _Pool(names, {s: rng.normal(i, 1 + i, (50, len(names))) for i, s in enumerate(SYMBOLS)})
    features = asdict(cfg)
    spec = ServingSpec(symbol="", timeframe="1h", registered_model=POOL, run_id=None,
                       features=features, feature_names=names,
                       context_columns=["ctx_SOLUSDT_close"],
                       warmup_bars=measure_warmup(features, "1h"))
    specs = {s: replace(spec, symbol=s) for s in SYMBOLS}
    rules = {s: ThresholdRule(threshold=0.0) for s in SYMBOLS}
    served = PooledPyfunc.of(model, specs, rules, {s: True for s in SYMBOLS})
    request = candles.assign(ctx_SOLUSDT_close=sol["close"], symbol="ETH/USDT")
    out = served.predict(None, request)
    own = predict_candles(request.drop(columns=["symbol"]), specs["ETH/USDT"],
                          model.estimator_for("ETH/USDT"), model.scaler_for("ETH/USDT"),
                          rules["ETH/USDT"])
    pd.testing.assert_frame_equal(out, own)
    assert len(out) == len(fs.frame) and np.isfinite(out["forecast"]).all()
    err = _rule_error(served, request.drop(columns=["ctx_SOLUSDT_close"]))
    assert err.rule == "required_columns" and "ctx_SOLUSDT_close" in err.message
