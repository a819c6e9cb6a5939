"""Unit tests of the Keras sequence models (LSTM, CNN, Transformer) and their shared trainer.

Tiny seeded data (300 bars x 5 features) and tiny networks (2 epochs) keep the file fast; the
behaviour under test (contract, determinism, persistence, causality, SHAP shapes) does not depend
on the model being any good.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from huracan.models.base import Forecaster, NotFittedError
from huracan.models.keras import (
    CNNForecaster,
    KerasForecaster,
    LSTMForecaster,
    PositionalEmbedding,
    TransformerForecaster,
)

LOOKBACK = 8
N_ROWS, N_FEATURES = 300, 5
TRAIN, VAL = 200, 250  # train rows [0, 200), validation [200, 250), test [250, 300)
COMMON: dict[str, Any] = {
    "lookback": LOOKBACK,
    "epochs": 2,
    "batch_size": 32,
    "head_units": 4,
    "seed": 7,
    "verbose": 0,
}
CONFIGS: dict[type[KerasForecaster], dict[str, Any]] = {
    LSTMForecaster: {"units": 4, "num_layers": 2, "attention_units": 4},
    CNNForecaster: {"filters": 4, "kernel_size": 2, "num_layers": 2, "dilation_base": 2},
    TransformerForecaster: {"d_model": 8, "num_heads": 2, "ff_dim": 8, "num_layers": 1},
}
CLASSES = list(CONFIGS)


def make(cls: type[KerasForecaster], **overrides: Any) -> KerasForecaster:
    return cls(**{**COMMON, **CONFIGS[cls], **overrides})


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(12345)
    X = rng.standard_normal((N_ROWS, N_FEATURES)).astype(np.float32)
    signal = 0.5 * X[:, 0] + 0.3 * np.concatenate([[0.0], X[:-1, 1]])  # depends on the past bar
    y = (0.01 * (signal + rng.standard_normal(N_ROWS))).astype(np.float32)  # fractions
    return X, y


def fit(model: KerasForecaster, data: tuple[np.ndarray, np.ndarray]) -> KerasForecaster:
    X, y = data
    model.fit(
        X[:TRAIN],
        y[:TRAIN],
        X[TRAIN:VAL],
        y[TRAIN:VAL],
        X_val_context=X[:TRAIN],
        feature_names=[f"x{i}" for i in range(N_FEATURES)],
    )
    return model


@pytest.fixture(scope="module", params=CLASSES, ids=lambda c: c.model_type)
def fitted(request: pytest.FixtureRequest, data: tuple[np.ndarray, np.ndarray]) -> KerasForecaster:
    return fit(make(request.param), data)


def test_fit_predict_shapes(fitted: KerasForecaster, data: tuple[np.ndarray, np.ndarray]) -> None:
    X, _ = data
    pred = fitted.predict(X[VAL:], context=X[:VAL])
    assert pred.shape == (N_ROWS - VAL,)
    assert pred.dtype == np.float64
    assert np.isfinite(pred).all()
    assert fitted.n_features_in_ == N_FEATURES
    assert fitted.feature_names_ == [f"x{i}" for i in range(N_FEATURES)]
    assert "val_loss" in fitted.history_
    assert 1 <= fitted.best_epoch_ <= COMMON["epochs"]
    # predictions are de-standardised: same order of magnitude as the targets (fractions)
    assert np.abs(pred).max() < 0.5


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.model_type)
def test_get_params_round_trip(cls: type[KerasForecaster]) -> None:
    model = make(cls)
    params = model.get_params()
    assert type(model)(**params).get_params() == params
    assert set(CONFIGS[cls]) <= set(params) and set(COMMON) <= set(params)
    assert type(cls()).__name__ == cls.__name__  # defaults construct
    assert cls().verbose == 2  # users see one line per epoch by default


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.model_type)
def test_unfitted_predict_raises(cls: type[KerasForecaster]) -> None:
    model = make(cls)
    with pytest.raises(NotFittedError):
        model.predict(np.zeros((10, N_FEATURES), np.float32))
    with pytest.raises(NotFittedError):
        model.shap_values(np.zeros((10, N_FEATURES), np.float32))


@pytest.mark.slow  # trains each network a second time
def test_same_seed_gives_identical_predictions(
    fitted: KerasForecaster, data: tuple[np.ndarray, np.ndarray]
) -> None:
    X, _ = data
    expected = fitted.predict(X[VAL:], context=X[:VAL])
    # a fresh fit, after other models were trained in this process
    again = fit(make(type(fitted)), data)
    np.testing.assert_array_equal(again.predict(X[VAL:], context=X[:VAL]), expected)
    # fit() calls keras.backend.clear_session(): models fitted before must keep working unchanged
    np.testing.assert_array_equal(fitted.predict(X[VAL:], context=X[:VAL]), expected)
    if isinstance(fitted, CNNForecaster):  # the seed is really used (checked on the cheapest model)
        other = fit(make(CNNForecaster, seed=COMMON["seed"] + 1), data)
        assert not np.array_equal(other.predict(X[VAL:], context=X[:VAL]), expected)


def test_save_load_round_trip(
    fitted: KerasForecaster, data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    X, _ = data
    fitted.save(tmp_path / "model")
    assert (tmp_path / "model" / "model.keras").is_file()
    keras.backend.clear_session()  # loading must not rely on objects of the training session
    loaded = Forecaster.load(tmp_path / "model")
    assert type(loaded) is type(fitted)
    assert loaded.get_params() == fitted.get_params()
    assert loaded.feature_names_ == fitted.feature_names_
    np.testing.assert_array_equal(
        loaded.predict(X[VAL:], context=X[:VAL]), fitted.predict(X[VAL:], context=X[:VAL])
    )


def test_unfitted_save_raises(tmp_path: Path) -> None:
    with pytest.raises(NotFittedError):
        make(LSTMForecaster).save(tmp_path / "model")


def test_context_changes_only_first_lookback_minus_one_predictions(
    fitted: KerasForecaster, data: tuple[np.ndarray, np.ndarray]
) -> None:
    X, _ = data
    without = fitted.predict(X[VAL:])
    with_context = fitted.predict(X[VAL:], context=X[:VAL])
    np.testing.assert_allclose(with_context[LOOKBACK - 1 :], without[LOOKBACK - 1 :], rtol=1e-6)
    assert not np.allclose(with_context[: LOOKBACK - 1], without[: LOOKBACK - 1], rtol=1e-6)


def test_predictions_are_causal(
    fitted: KerasForecaster, data: tuple[np.ndarray, np.ndarray]
) -> None:
    X, _ = data
    test, context = X[VAL:].copy(), X[:VAL]
    base = fitted.predict(test, context=context)
    k = 20
    perturbed = test.copy()
    perturbed[k:] += (
        np.random.default_rng(3).normal(0.0, 5.0, perturbed[k:].shape).astype(np.float32)
    )
    moved = fitted.predict(perturbed, context=context)
    np.testing.assert_allclose(moved[:k], base[:k], rtol=1e-6)  # rows before k cannot see it
    assert not np.allclose(moved[k:], base[k:])  # ... and rows from k on do


@pytest.mark.slow  # SHAP's gradient explainer per network (tens of seconds)
def test_shap_values_shapes_and_units(
    fitted: KerasForecaster, data: tuple[np.ndarray, np.ndarray]
) -> None:
    X, _ = data
    rows = X[VAL : VAL + 3]
    values = fitted.shap_values(rows, context=X[:VAL], background=X[:TRAIN])
    assert values.shape == (3, N_FEATURES)
    assert np.isfinite(values).all()

    result = fitted.shap_explanation(
        X[VAL:],
        context=X[:VAL],
        background=X[:TRAIN],
        max_samples=5,
        max_background=20,
        nsamples=50,
    )
    assert result.values.shape == (5, N_FEATURES)
    assert result.mean_abs.shape == (N_FEATURES,)
    assert np.isfinite(result.values).all() and np.isfinite(result.mean_abs).all()
    np.testing.assert_allclose(result.mean_abs, np.abs(result.values).mean(axis=0))
    assert result.rows.shape == (5,) and np.all(np.diff(result.rows) > 0)
    assert result.feature_names == fitted.feature_names_
    assert np.isfinite(result.base_value)
    # attributions are in prediction units (fractions): same order as the prediction spread
    pred = fitted.predict(X[VAL:], context=X[:VAL])
    assert np.abs(result.values).max() < 10 * (np.abs(pred - result.base_value).max() + 1e-6)

    # seeded: the same call gives the same attributions, and NumPy's global state is untouched
    np.random.seed(0)
    again = fitted.shap_explanation(
        X[VAL:],
        context=X[:VAL],
        background=X[:TRAIN],
        max_samples=5,
        max_background=20,
        nsamples=50,
    )
    draw = np.random.random()
    np.random.seed(0)
    assert draw == np.random.random()
    np.testing.assert_array_equal(again.values, result.values)


def test_fit_without_validation_runs_all_epochs_and_prints_them(
    data: tuple[np.ndarray, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    X, y = data
    model = make(CNNForecaster, epochs=3, verbose=2).fit(X[:TRAIN], y[:TRAIN])
    assert isinstance(model, CNNForecaster)
    assert len(model.history_["loss"]) == 3 and "val_loss" not in model.history_
    assert model.best_epoch_ == 3
    assert model.predict(X[TRAIN:]).shape == (N_ROWS - TRAIN,)
    out = capsys.readouterr().out
    assert all(f"Epoch {i}/3" in out for i in (1, 2, 3))  # verbose=2: one line per epoch


def test_invalid_inputs_raise(data: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = data
    with pytest.raises(ValueError, match="lookback"):
        make(LSTMForecaster).fit(X[: LOOKBACK - 1], y[: LOOKBACK - 1])
    with pytest.raises(ValueError, match="divisible"):
        make(TransformerForecaster, d_model=6, num_heads=4).fit(X[:TRAIN], y[:TRAIN])
    with pytest.raises(ValueError, match="dropout"):
        make(CNNForecaster, dropout=1.0).fit(X[:TRAIN], y[:TRAIN])
    with pytest.raises(ValueError, match="loss"):
        make(CNNForecaster, loss="mae").fit(X[:TRAIN], y[:TRAIN])


def test_positional_embedding_is_registered() -> None:
    assert keras.saving.get_registered_name(PositionalEmbedding) == "huracan>PositionalEmbedding"
    layer = PositionalEmbedding(4)
    restored = PositionalEmbedding.from_config(layer.get_config())
    assert restored.sequence_length == 4
