"""Importance methods on data where the answer is known, the permutation batching, the ranking
rules and each model's training loss (hand-computed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from huracan.evaluation.importance import (
    AGGREGATE,
    analyze,
    permutation_importance,
    permutation_increases,
    rank_by,
    rank_table,
    spearman_abs,
)
from huracan.models.base import Forecaster, sequence_windows
from huracan.models.keras import CNNForecaster
from huracan.models.lightgbm import LightGBMForecaster
from huracan.models.xgboost import XGBoostForecaster

N_FEATURES = 6
NAMES = [f"x{i}" for i in range(N_FEATURES)]


@pytest.fixture(scope="module")
def known():
    """Label = 0.01 x0 - 0.007 x1 + noise: x0 then x1 carry all the signal; x2..x5 are noise."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1400, N_FEATURES)).astype(np.float32)
    y = 0.01 * X[:, 0] - 0.007 * X[:, 1] + rng.normal(0, 0.003, len(X))
    return {"X": X[:900], "y": y[:900], "Xv": X[900:1100], "yv": y[900:1100],
            "Xt": X[1100:], "yt": y[1100:], "ctx": X[1100 - 16 : 1100]}


def _fit(model: Forecaster, d: dict) -> Forecaster:
    return model.fit(d["X"], d["y"], d["Xv"], d["yv"], X_val_context=d["X"][-16:],
                     feature_names=NAMES)


@pytest.fixture(scope="module")
def lgbm(known) -> Forecaster:
    return _fit(LightGBMForecaster(n_estimators=150, early_stopping_rounds=20, alpha=0.01,
                                   seed=3, log_period=0), known)


@pytest.fixture(scope="module")
def cnn(known) -> Forecaster:
    return _fit(CNNForecaster(filters=8, kernel_size=2, num_layers=1, lookback=4, epochs=8,
                              batch_size=32, head_units=8, dropout=0.0, learning_rate=5e-3,
                              patience=3, seed=3, verbose=0), known)


def _assert_known_answer(result) -> None:
    for method in ("shap", "permutation", "correlation", AGGREGATE):
        top = result.top(2, method)
        assert top == ["x0", "x1"], f"{method}: {result.ranking(method)}"


def test_lightgbm_each_method_ranks_the_two_signal_features_first(lgbm, known):
    res = analyze(lgbm, known["Xt"], known["yt"], None, known["X"], known["y"], None,
                  n_repeats=3, seed=1)
    _assert_known_answer(res)
    assert not res.shap_reused and res.n_shap_rows == 200
    assert set(res.timings) == {"shap", "permutation", "correlation", AGGREGATE}
    # the aggregate of two features that are 1st and 2nd everywhere is exactly 1.0 and 2.0
    agg = res.ranking(AGGREGATE).set_index("feature")["importance"]
    assert agg["x0"] == 1.0 and agg["x1"] == 2.0
    # noise features barely move the Huber loss when shuffled
    perm = res.importances["permutation"]
    assert perm[0] > 10 * np.abs(perm[2:]).max()


def test_keras_each_method_ranks_the_two_signal_features_first(cnn, known):
    res = analyze(cnn, known["Xt"], known["yt"], known["ctx"], known["X"], known["y"], None,
                  n_repeats=2, seed=1, shap_max_rows=60)
    _assert_known_answer(res)
    assert res.n_shap_rows == 60


def test_precomputed_shap_values_are_reused(lgbm, known):
    fake = np.zeros((5, N_FEATURES))
    fake[:, 4] = 1.0  # pretend x4 dominates SHAP
    res = analyze(lgbm, known["Xt"], known["yt"], None, known["X"], known["y"], fake,
                  n_repeats=1)
    assert res.shap_reused and res.timings["shap"] == 0.0 and res.n_shap_rows == 5
    assert res.top(1, "shap") == ["x4"]
    with pytest.raises(ValueError, match="shap_values"):
        analyze(lgbm, known["Xt"], known["yt"], None, known["X"], known["y"], fake[:, :3])


class WindowSum(Forecaster):
    """A tiny sequence 'model': prediction = sum over its window of X @ w (decaying by age)."""

    model_type = "window_sum"

    def __init__(self, lookback: int = 4) -> None:
        self.lookback = lookback

    def _fit(self, X, y, X_val, y_val, X_val_context, *, starts=None, starts_val=None,
             sample_weight=None) -> None:
        self.w_ = np.linspace(1.0, 2.0, X.shape[1])

    def _predict(self, X, context):
        win = sequence_windows(X, self.lookback, context)  # (n, lookback, f)
        decay = 0.5 ** np.arange(self.lookback)[::-1]
        return np.einsum("nlf,f,l->n", win.astype(np.float64), self.w_, decay)

    def _save_state(self, path: Path) -> None: ...

    def _load_state(self, path: Path) -> None: ...


@pytest.mark.parametrize("context_rows", [10, 2, 0], ids=["full", "short", "none"])
def test_stacked_permutations_equal_one_predict_per_copy(context_rows):
    """Batched copies (with the window prefix between them) score exactly as separate calls."""
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(40, 3)).astype(np.float32), rng.normal(size=40)
    ctx = rng.normal(size=(context_rows, 3)).astype(np.float32) if context_rows else None
    model = WindowSum(lookback=4).fit(X, y)
    got, baseline = permutation_increases(model, X, y, ctx, n_repeats=3, seed=9,
                                          max_predict_bytes=2000)  # forces several calls
    loss = model.training_loss
    assert baseline == pytest.approx(loss(y, model.predict(X, context=ctx)))
    gen = np.random.default_rng(9)
    expected = np.empty((3, 3))
    for r in range(3):
        for j in range(3):
            Xp = X.copy()
            Xp[:, j] = X[gen.permutation(40), j]
            expected[r, j] = loss(y, model.predict(Xp, context=ctx)) - baseline
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    # batching does not change the result
    one_call, _ = permutation_increases(model, X, y, ctx, n_repeats=3, seed=9)
    np.testing.assert_allclose(one_call, got, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(permutation_importance(model, X, y, ctx, n_repeats=3, seed=9),
                               got.mean(axis=0))


def test_permutation_uses_the_given_loss_and_checks_inputs(lgbm, known):
    mae = permutation_importance(lgbm, known["Xt"], known["yt"], None,
                                 loss=lambda a, b: float(np.mean(np.abs(a - b))), n_repeats=2)
    assert mae.shape == (N_FEATURES,) and np.argmax(mae) == 0
    with pytest.raises(ValueError, match="n_repeats"):
        permutation_importance(lgbm, known["Xt"], known["yt"], n_repeats=0)
    with pytest.raises(ValueError, match="do not match"):
        permutation_importance(lgbm, known["Xt"], known["yt"][:-1])


def test_spearman_abs_matches_scipy_and_handles_constant_columns():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 4))
    X[:, 3] = 1.0
    X[:50, 2] = 0.0  # ties
    y = X[:, 0] - 2 * X[:, 1] + rng.normal(size=300)
    got = spearman_abs(X, y)
    for j in range(3):
        assert got[j] == pytest.approx(abs(spearmanr(X[:, j], y).statistic), abs=1e-12)
    assert got[3] == 0.0
    assert np.argsort(-got)[:2].tolist() == [1, 0]
    with pytest.raises(ValueError, match="match"):
        spearman_abs(X, y[:-1])


def test_rank_table_ranks_by_signed_value_and_aggregates_mean_ranks():
    table = rank_table({"a": np.array([0.1, -0.5, 0.3, 0.0]),
                        "b": np.array([3.0, 1.0, 2.0, 1.0])},
                       ["f0", "f1", "f2", "f3"])
    assert table["method"].unique().tolist() == ["a", "b", AGGREGATE]
    a = table[table["method"] == "a"].set_index("feature")["rank"].to_dict()
    # signed: a feature whose shuffling LOWERS the loss (-0.5) ranks last, not first
    assert a == {"f2": 1, "f0": 2, "f3": 3, "f1": 4}
    b = table[table["method"] == "b"].set_index("feature")["rank"].to_dict()
    assert b == {"f0": 1, "f2": 2, "f1": 3, "f3": 4}  # tie f1/f3 broken by feature order
    agg = table[table["method"] == AGGREGATE].reset_index(drop=True)
    # mean ranks: f0 1.5, f1 3.5, f2 1.5, f3 3.5 -> ties stable: f0, f2, f1, f3
    assert agg["feature"].tolist() == ["f0", "f2", "f1", "f3"]
    assert agg["importance"].tolist() == [1.5, 1.5, 3.5, 3.5]
    assert agg["rank"].tolist() == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="NaN"):
        rank_table({"a": np.array([np.nan, 1.0])}, ["f0", "f1"])
    with pytest.raises(ValueError, match="features"):
        rank_table({"a": np.array([1.0])}, ["f0", "f1"])
    with pytest.raises(ValueError, match="aggregate"):
        rank_table({AGGREGATE: np.array([1.0])}, ["f0"])


def test_rank_by_ascending():
    assert rank_by(np.array([2.5, 1.0, 2.5, 0.5]), ascending=True).tolist() == [3, 2, 4, 1]


def test_training_losses_match_hand_computed_values():
    y, p = np.array([0.0, 0.0, 0.0]), np.array([0.005, -0.02, 0.01])
    # MSE default: (0.005² + 0.02² + 0.01²) / 3
    assert Forecaster.training_loss(WindowSum(), y, p) == pytest.approx(0.000525 / 3)
    # LightGBM Huber, alpha 0.01: 0.5*0.005², 0.01*(0.02-0.005), 0.5*0.01²
    lgb_loss = LightGBMForecaster(alpha=0.01).training_loss(y, p)
    assert lgb_loss == pytest.approx((0.5 * 0.005**2 + 0.01 * 0.015 + 0.5 * 0.01**2) / 3)
    assert LightGBMForecaster(objective="l1").training_loss(y, p) == pytest.approx(0.035 / 3)
    assert LightGBMForecaster(objective="regression").training_loss(y, p) == pytest.approx(
        0.000525 / 3)
    # XGBoost pseudo-Huber, slope 0.01: δ² (sqrt(1 + (r/δ)²) - 1)
    d = 0.01
    expected = np.mean(d * d * (np.sqrt(1 + (p / d) ** 2) - 1))
    assert XGBoostForecaster(huber_slope=d).training_loss(y, p) == pytest.approx(expected)


def test_keras_training_loss_is_huber_on_the_standardised_target(cnn):
    y = np.array([0.0, 0.0])
    p = np.array([0.5, 3.0]) * cnn.y_std_  # standardised residuals 0.5 and 3.0
    assert cnn.training_loss(y, p) == pytest.approx((0.5 * 0.25 + (3.0 - 0.5)) / 2)
    mse = CNNForecaster(loss="mse")
    mse.__dict__.update(cnn.__dict__)
    mse.loss = "mse"
    assert mse.training_loss(y, p) == pytest.approx((0.25 + 9.0) / 2)


def test_result_views(lgbm, known):
    res = analyze(lgbm, known["Xt"], known["yt"], None, known["X"], known["y"], None,
                  n_repeats=1, shap_max_rows=20)
    assert res.methods == ["shap", "permutation", "correlation", AGGREGATE]
    shap = res.ranking("shap")  # the shap block of the table: mean |SHAP| per feature, ranked
    assert list(shap.columns) == ["feature", "importance", "rank"]
    assert shap["rank"].tolist() == list(range(1, N_FEATURES + 1))
    assert shap["feature"].tolist()[:2] == ["x0", "x1"] and set(shap["feature"]) == set(NAMES)
    by_name = dict(zip(res.feature_names, res.importances["shap"], strict=True))
    assert shap["importance"].tolist() == [by_name[f] for f in shap["feature"]]
    assert shap["importance"].is_monotonic_decreasing
    with pytest.raises(KeyError):
        res.ranking("nope")
    assert len(res.table) == 4 * N_FEATURES
