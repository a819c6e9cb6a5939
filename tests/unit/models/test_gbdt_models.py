"""The estimator contract for the gradient-boosted tree models."""

from __future__ import annotations

import numpy as np
import pytest

from huracan.models.base import Forecaster, NotFittedError
from huracan.models.lightgbm import LightGBMForecaster
from huracan.models.xgboost import XGBoostForecaster

MODELS = [
    LightGBMForecaster(n_estimators=60, early_stopping_rounds=10, seed=7, log_period=0),
    XGBoostForecaster(n_estimators=60, early_stopping_rounds=10, seed=7, log_period=0),
]


@pytest.fixture(scope="module")
def data():
    """Label = 0.01 * f0 - 0.005 * f1 + noise: two features carry all the signal."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1200, 6)).astype(np.float32)
    y = 0.01 * X[:, 0] - 0.005 * X[:, 1] + rng.normal(0, 0.002, 1200)
    return X[:800], y[:800], X[800:1000], y[800:1000], X[1000:], y[1000:]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.model_type)
def test_get_params_round_trips(model):
    params = model.get_params()
    clone = type(model)(**params)
    assert clone.get_params() == params
    assert "seed" in params and params["seed"] == 7


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.model_type)
def test_unfitted_predict_is_refused(model):
    with pytest.raises(NotFittedError):
        type(model)(**model.get_params()).predict(np.zeros((3, 6), np.float32))


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.model_type)
def test_fit_predict_shapes_learning_and_save_load(model, data, tmp_path):
    X, y, Xv, yv, Xt, yt = data
    est = type(model)(**model.get_params())
    assert est.fit(X, y, Xv, yv, feature_names=[f"c{i}" for i in range(6)]) is est
    pred = est.predict(Xt)
    assert pred.shape == (len(Xt),) and pred.dtype == np.float64
    assert np.corrcoef(pred, yt)[0, 1] > 0.8  # it learned the planted signal
    with pytest.raises(ValueError, match="features"):
        est.predict(Xt[:, :5])
    loaded = Forecaster.load(est.save(tmp_path / "m"))
    np.testing.assert_allclose(loaded.predict(Xt), pred, rtol=1e-6, atol=1e-9)
    assert loaded.get_params() == est.get_params()


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.model_type)
def test_same_seed_same_predictions(model, data):
    X, y, Xv, yv, Xt, _ = data
    a = type(model)(**model.get_params()).fit(X, y, Xv, yv).predict(Xt)
    b = type(model)(**model.get_params()).fit(X, y, Xv, yv).predict(Xt)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.model_type)
def test_tree_shap_ranks_the_planted_features_first(model, data):
    X, y, Xv, yv, Xt, _ = data
    est = type(model)(**model.get_params()).fit(X, y, Xv, yv)
    values = est.shap_values(Xt[:100])
    assert values.shape == (100, 6)
    order = np.argsort(-np.abs(values).mean(axis=0))
    assert set(order[:2]) == {0, 1}
    # TreeSHAP is additive: attributions + expected value reproduce the prediction
    pred = est.predict(Xt[:100])
    spread = np.ptp(pred - values.sum(axis=1))
    assert spread < 1e-5


def test_bad_inputs_are_refused(data):
    X, y, *_ = data
    est = LightGBMForecaster(n_estimators=5)
    with pytest.raises(ValueError, match="infinite"):
        est.fit(np.where(X > 2, np.inf, X), y)
    with pytest.raises(ValueError, match="NaN"):
        est.fit(X, np.where(y > 0, np.nan, y))  # a missing label is never allowed
    # missing inputs (uncovered market-structure families) are the trees' to handle
    assert est.accepts_missing and np.isfinite(
        est.fit(np.where(X > 2, np.nan, X), y).predict(X[:10])).all()
    with pytest.raises(ValueError, match="rows"):
        est.fit(X, y[:-1])
    with pytest.raises(ValueError, match="hyperparameter"):
        est.set_params(nope=1)
