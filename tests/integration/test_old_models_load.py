"""Models logged before the layering moves (issue 23) still load and answer as they did.

The fixtures (``tests/fixtures/logged_models``, see its README) were logged at commit 88ff781:
their ``python_model.pkl`` names ``huracan.tracking.pyfunc.ForecasterPyfunc`` and
``huracan.sizing.pyfunc.SizerPyfunc``, the paths every already-registered version carries.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "logged_models"


@pytest.fixture()
def no_registry(tmp_path, monkeypatch):
    """An empty tracking store: the raw-candle answer looks up no version and no sizer."""
    uri = f"sqlite:///{tmp_path / 'empty.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    yield
    mlflow.set_tracking_uri(previous)


def test_forecaster_logged_before_the_move_answers_features_as_it_did():
    model = mlflow.pyfunc.load_model(str(FIXTURES / "forecaster"))
    assert type(model.unwrap_python_model()).__name__ == "ForecasterPyfunc"
    features = pd.read_parquet(FIXTURES / "forecaster_input_features.parquet")
    expected = pd.read_parquet(FIXTURES / "forecaster_expected_features.parquet")["forecast"]
    got = np.asarray(model.predict(features))
    assert got.shape == (len(features),) == (50,)
    np.testing.assert_allclose(got, expected.to_numpy(), rtol=1e-12, atol=0)


def test_forecaster_logged_before_the_move_answers_raw_candles_as_it_did(no_registry):
    model = mlflow.pyfunc.load_model(str(FIXTURES / "forecaster"))
    candles = pd.read_parquet(FIXTURES / "forecaster_input_candles.parquet")
    expected = pd.read_parquet(FIXTURES / "forecaster_expected_candles.parquet")
    got = model.predict(candles)
    assert list(got.columns) == list(expected.columns)
    assert len(got) == len(expected) > 0
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected, check_exact=False,
                                  rtol=1e-12)


def test_sizer_logged_before_the_move_answers_as_it_did():
    model = mlflow.pyfunc.load_model(str(FIXTURES / "sizer"))
    assert type(model.unwrap_python_model()).__name__ == "SizerPyfunc"
    obs = pd.read_parquet(FIXTURES / "sizer_input.parquet")
    expected = pd.read_parquet(FIXTURES / "sizer_expected.parquet")
    got = model.predict(obs)
    assert list(got.columns) == ["size", "leverage"] and got.shape == (len(obs), 2)
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-6)


@pytest.mark.parametrize(("old_path", "new_module"), [
    ("huracan.serving.cash\nCashPyfunc", "huracan.registry.cash_model"),
    ("huracan.tracking.pyfunc\nForecasterPyfunc", "huracan.serving.pyfunc"),
    ("huracan.sizing.pyfunc\nSizerPyfunc", "huracan.sizing.pyfunc"),
])
def test_pickled_class_paths_of_registered_versions_still_resolve(old_path, new_module):
    """A pickle naming a class by its old module path (what ``python_model.pkl`` of an
    already-registered version holds, e.g. a cash version's) finds today's class."""
    import importlib
    import pickle

    module, name = old_path.split("\n")
    found = pickle.loads(f"c{module}\n{name}\n.".encode())  # protocol 0 GLOBAL opcode
    assert found is getattr(importlib.import_module(new_module), name)
