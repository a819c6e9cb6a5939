"""The pooled model (:mod:`huracan.models.pooled`) and the categorical features of the trees.

Tiny seeded data: two symbols whose label's SIGN depends on the symbol (a planted per-symbol
effect only the ``symbol`` input can explain), tiny LightGBM/XGBoost fits (30 trees, 1 thread).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from huracan.models.base import Forecaster, NotFittedError
from huracan.models.lightgbm import LightGBMForecaster
from huracan.models.pooled import SYMBOL_COLUMN, Block, PooledModel, onehot_column
from huracan.models.xgboost import XGBoostForecaster
from huracan.splits import fit_scaler

SYMBOLS = ["BTC/USDT", "ETH/USDT"]
NAMES = ["x0", "x1", "x2"]
N = 900  # rows per symbol: train [0, 600), val [600, 700), test [700, 900)


def lgbm() -> LightGBMForecaster:
    return LightGBMForecaster(n_estimators=30, learning_rate=0.2, num_leaves=7,
                              min_child_samples=20, early_stopping_rounds=10, n_jobs=1,
                              log_period=0, objective="regression")


def xgbm() -> XGBoostForecaster:
    return XGBoostForecaster(n_estimators=30, learning_rate=0.3, max_depth=3,
                             early_stopping_rounds=10, n_jobs=1, log_period=0,
                             objective="reg:squarederror")


def planted(seed: int = 3) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per symbol: unscaled features ``(N, 3)`` (each symbol at its own level) and labels
    ``y = sign * 0.01 * x0 + noise`` with sign +1 for BTC, -1 for ETH."""
    rng = np.random.default_rng(seed)
    out = {}
    for sign, (level, sym) in zip((1.0, -1.0), enumerate(SYMBOLS), strict=True):
        X = rng.standard_normal((N, 3)) * (1 + level) + 10.0 * level
        z = (X[:, 0] - 10.0 * level) / (1 + level)
        y = sign * 0.01 * z + 0.002 * rng.standard_normal(N)
        out[sym] = (X.astype(np.float32), y)
    return out


def fit_pooled(base: Forecaster, data: dict[str, tuple[np.ndarray, np.ndarray]]) -> PooledModel:
    model = PooledModel(base, SYMBOLS, NAMES)
    model.set_scalers({s: fit_scaler(X[:600]) for s, (X, _) in data.items()})
    train = [Block(s, model.transform(s, X[:600]), y[:600]) for s, (X, y) in data.items()]
    val = [Block(s, model.transform(s, X[600:700]), y[600:700]) for s, (X, y) in data.items()]
    return model.fit(train, val)


@pytest.fixture(scope="module")
def data() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return planted()


@pytest.fixture(scope="module")
def fitted(data) -> PooledModel:
    return fit_pooled(lgbm(), data)


def test_encoding_follows_the_base_model():
    assert PooledModel(lgbm(), SYMBOLS, NAMES).encoded_names == [*NAMES, SYMBOL_COLUMN]
    from huracan.models.keras import CNNForecaster

    net = PooledModel(CNNForecaster(lookback=4), SYMBOLS, NAMES)
    assert net.encoding == "onehot"
    assert net.encoded_names == [*NAMES, "symbol_BTCUSDT", "symbol_ETHUSDT"]
    assert onehot_column("BTC/USDT:USDT") == "symbol_BTCUSDT"
    X = net.encode("ETH/USDT", np.zeros((2, 3)))
    assert X[:, 3:].tolist() == [[0.0, 1.0], [0.0, 1.0]]
    with pytest.raises(ValueError, match="no categorical"):
        PooledModel(CNNForecaster(), SYMBOLS, NAMES, encoding="categorical")
    with pytest.raises(ValueError, match="distinct"):
        PooledModel(lgbm(), ["BTC/USDT", "BTC/USDT"], NAMES)


def test_the_planted_per_symbol_effect_is_learnt_through_symbol(fitted, data):
    """The label's sign depends on the symbol: the pooled model forecasts both symbols well,
    the same trees without the ``symbol`` column cannot (their forecast of one symbol is
    uncorrelated or wrong-signed)."""
    ics = {}
    for s, (X, y) in data.items():
        pred = fitted.estimator_for(s).predict(fitted.transform(s, X[700:]))
        ics[s] = np.corrcoef(pred, y[700:])[0, 1]
    assert min(ics.values()) > 0.6, ics
    blind = lgbm()  # the same rows stacked, without the symbol
    Xs = np.concatenate([fitted.transform(s, X[:600]) for s, (X, _) in data.items()])
    ys = np.concatenate([y[:600] for _, y in data.values()])
    blind.fit(Xs, ys, feature_names=NAMES)
    blind_ics = [np.corrcoef(blind.predict(fitted.transform(s, X[700:])), y[700:])[0, 1]
                 for s, (X, y) in data.items()]
    assert min(blind_ics) < 0.3, blind_ics
    # the symbol column carries attribution in the base model
    enc = fitted.encode("ETH/USDT", fitted.transform("ETH/USDT", data["ETH/USDT"][0][700:]))
    shap = fitted.base_.shap_values(enc)
    assert np.abs(shap[:, -1]).mean() > 0


def test_symbol_view_is_a_forecaster_on_the_feature_names(fitted, data):
    view = fitted.estimator_for("ETH/USDT")
    X = fitted.transform("ETH/USDT", data["ETH/USDT"][0][700:760])
    assert view.feature_names_ == NAMES and view.n_features_in_ == 3 and view.lookback == 1
    assert view.is_fitted and view.model_type == "lightgbm" and view.accepts_missing
    assert view.get_params() == lgbm().get_params()
    shap = view.shap_values(X, background=X)
    assert shap.shape == (60, 3)
    assert np.argmax(np.abs(shap).mean(axis=0)) == 0  # x0 carries the signal
    pred = view.predict(X)
    assert pred.shape == (60,)
    assert view.training_loss(pred, pred) == 0.0


def test_scaler_for_holds_the_symbols_train_stats(fitted, data):
    for s, (X, _) in data.items():
        sc = fitted.scaler_for(s)
        np.testing.assert_allclose(sc.mean_, X[:600].astype(np.float64).mean(axis=0), rtol=1e-6)
        np.testing.assert_allclose(sc.transform(X[:600]).mean(axis=0), 0.0, atol=1e-5)
    assert not np.allclose(fitted.means_[0], fitted.means_[1])


def test_unknown_symbol_is_refused_with_one_line(fitted):
    for call in (lambda: fitted.estimator_for("DOGE/USDT"),
                 lambda: fitted.scaler_for("DOGE/USDT"),
                 lambda: fitted.predict("DOGE/USDT", np.zeros((1, 3)))):
        with pytest.raises(ValueError) as info:
            call()
        msg = str(info.value)
        assert "\n" not in msg and "DOGE/USDT" in msg and "BTC/USDT, ETH/USDT" in msg


@pytest.mark.parametrize("make", [lgbm, xgbm], ids=["lightgbm", "xgboost"])
def test_saved_loaded_and_pickled_model_predicts_identically(make, data, tmp_path: Path):
    model = fit_pooled(make(), data)
    assert model.base_.categorical_features_ == (SYMBOL_COLUMN,)
    loaded = PooledModel.load(model.save(tmp_path / "pooled"))
    unpickled = pickle.loads(pickle.dumps(model))
    view_pickled = pickle.loads(pickle.dumps(model.estimator_for("BTC/USDT")))
    assert loaded.symbols == SYMBOLS and loaded.encoding == "categorical"
    assert loaded.base_.categorical_features_ == (SYMBOL_COLUMN,)
    for s, (X, _) in data.items():
        Xs = model.transform(s, X[700:])
        want = model.predict(s, Xs)
        np.testing.assert_array_equal(loaded.predict(s, loaded.transform(s, X[700:])), want)
        np.testing.assert_array_equal(unpickled.estimator_for(s).predict(Xs), want)
        np.testing.assert_array_equal(loaded.transform(s, X[700:]), Xs)
    np.testing.assert_array_equal(
        view_pickled.predict(model.transform("BTC/USDT", data["BTC/USDT"][0][700:])),
        model.predict("BTC/USDT", model.transform("BTC/USDT", data["BTC/USDT"][0][700:])))


def test_unfitted_pooled_model_refuses(tmp_path: Path):
    model = PooledModel(lgbm(), SYMBOLS, NAMES)
    with pytest.raises(NotFittedError):
        model.predict("BTC/USDT", np.zeros((1, 3)))
    with pytest.raises(NotFittedError):
        model.save(tmp_path)
    with pytest.raises(NotFittedError):
        model.scaler_for("BTC/USDT")


# ----------------------------------------------------------------------------- categorical
def test_categorical_fit_keeps_get_params_and_refuses_bad_codes(data):
    X = np.random.default_rng(0).standard_normal((200, 2)).astype(np.float32)
    X[:, 1] = np.arange(200) % 3
    y = np.where(X[:, 1] == 1, 0.01, -0.01)
    for make in (lgbm, xgbm):
        model = make()
        params = model.get_params()
        model.fit(X, y, feature_names=["a", "code"], categorical_features=["code"])
        assert model.get_params() == params  # not a hyperparameter: Hydra kwargs unchanged
        assert model.categorical_features_ == ("code",)
        assert np.corrcoef(model.predict(X), y)[0, 1] > 0.9
        model.fit(X, y, feature_names=["a", "code"])  # refit without: no longer categorical
        assert model.categorical_features_ == ()
        bad = X.copy()
        bad[0, 1] = 0.5
        with pytest.raises(ValueError, match="integer codes"):
            make().fit(bad, y, feature_names=["a", "code"], categorical_features=["code"])
        with pytest.raises(ValueError, match="not among"):
            make().fit(X, y, feature_names=["a", "code"], categorical_features=["nope"])
    from huracan.models.keras import CNNForecaster

    with pytest.raises(ValueError, match="one-hot"):
        CNNForecaster(lookback=2).fit(X, y, categorical_features=["f1"])
