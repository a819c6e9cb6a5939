"""A pooled sequence network (one-hot symbol): blocks per symbol, windows never crossing symbols
or gaps, SHAP through the per-symbol view, save/load and pickling identical. Tiny networks
(2 epochs) on three synthetic symbols."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from pooled_synthetic import HORIZON, SYMBOLS, synthetic

from huracan.models.keras import CNNForecaster, LSTMForecaster, TransformerForecaster
from huracan.models.pooled import PooledModel
from huracan.pooled import fit_predict_pooled, pooled_folds
from huracan.splits import WalkForwardSplitter

LOOKBACK = 6
NETS = {
    "cnn": lambda: CNNForecaster(lookback=LOOKBACK, epochs=2, batch_size=64, filters=4,
                                 kernel_size=2, num_layers=1, head_units=4, seed=3, verbose=0),
    "lstm": lambda: LSTMForecaster(lookback=LOOKBACK, epochs=2, batch_size=64, units=4,
                                   num_layers=1, attention_units=4, head_units=4, seed=3,
                                   verbose=0),
    "transformer": lambda: TransformerForecaster(lookback=LOOKBACK, epochs=2, batch_size=64,
                                                 d_model=8, num_heads=2, ff_dim=8, num_layers=1,
                                                 head_units=4, seed=3, verbose=0),
}
SPLIT = WalkForwardSplitter(train_bars=400, val_bars=80, step_bars=300, embargo=HORIZON)


@pytest.mark.parametrize("name", [
    "cnn",  # the fastest network stays in the fast tier (about 15 s)
    pytest.param("lstm", marks=pytest.mark.slow),
    pytest.param("transformer", marks=pytest.mark.slow),
])
def test_pooled_network_fits_predicts_explains_and_reloads(name, tmp_path: Path):
    sets = synthetic("planted")
    folds = pooled_folds(SPLIT, sets, "1h", HORIZON)[-2:]
    out = fit_predict_pooled(NETS[name](), sets, folds, parts=("val", "test"), timeframe="1h")
    model = out.model
    assert model.encoding == "onehot"
    assert model.base_.n_features_in_ == 3 + len(SYMBOLS)
    for outcomes in out.outcomes.values():
        for o in outcomes:
            assert np.isfinite(o.predictions["test"]).all()
    last = out.outcomes["BTC/USDT"][-1]
    view, scaler = last.model, last.scaler
    X = np.asarray(scaler.transform(sets["BTC/USDT"].X), dtype=np.float32)
    rows = X[last.fold.test.start : last.fold.test.start + 40]
    ctx = X[last.fold.test.start - LOOKBACK + 1 : last.fold.test.start]
    pred = view.predict(rows, context=ctx)
    np.testing.assert_allclose(pred, last.predictions["test"][:40], rtol=1e-5, atol=1e-7)
    # another symbol's encoding gives other forecasts from the same rows
    assert not np.allclose(model.predict("ETH/USDT", rows, context=ctx), pred)
    shap = view.shap_values(rows[:5], context=ctx,
                            background=X[last.fold.train.start : last.fold.train.stop])
    assert shap.shape == (5, 3) and np.isfinite(shap).all()
    loaded = PooledModel.load(model.save(tmp_path / "pooled"))
    np.testing.assert_allclose(loaded.estimator_for("BTC/USDT").predict(rows, context=ctx), pred,
                               rtol=1e-6, atol=1e-9)
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_allclose(again.predict("BTC/USDT", rows, context=ctx), pred,
                               rtol=1e-6, atol=1e-9)
