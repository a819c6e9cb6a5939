"""PPO sizer: tiny seeded trainings reproduce, never see the evaluation bars, and save/load."""

from __future__ import annotations

import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from huracan.sizing.env import EnvConfig, SizingData
from huracan.sizing.ppo import (
    META_NAME,
    PPOConfig,
    SizerModel,
    evaluate_ppo,
    load_sizer,
    save_sizer,
    train_ppo,
)

N, BOUNDARY = 1500, 1000
ENV = EnvConfig(episode_bars=200, reward_scale=100.0, forecast_window=48, vol_window=24)
PPO_CFG = PPOConfig(total_timesteps=2048, n_steps=512, batch_size=128, n_epochs=2, seed=3)


def _data(seed: int = 0) -> SizingData:
    rng = np.random.default_rng(seed)
    r = rng.normal(0.0, 0.006, N)
    f = 0.3 * r + rng.normal(0.0, 0.004, N)  # a forecast with some skill
    return SizingData(pd.date_range("2024-01-01", periods=N, freq="1h", tz="UTC"), f, r)


def _perturbed(data: SizingData, rows: slice, seed: int) -> SizingData:
    rng = np.random.default_rng(seed)
    f, r = data.forecast.copy(), data.next_return.copy()
    k = len(range(*rows.indices(N)))
    f[rows] = rng.normal(0, 0.01, k)
    r[rows] = rng.normal(0, 0.02, k)
    return replace(data, forecast=f, next_return=r)


@pytest.fixture(scope="module")
def data() -> SizingData:
    return _data()


@pytest.fixture(scope="module")
def sizer(data: SizingData) -> SizerModel:
    return train_ppo(data, BOUNDARY, ENV, PPO_CFG)


def _actions(sizer: SizerModel, data: SizingData) -> np.ndarray:
    r = evaluate_ppo(sizer, data, BOUNDARY).returns
    return r[["size", "leverage"]].to_numpy()


def test_training_reproduces_and_never_sees_the_evaluation_bars(sizer: SizerModel,
                                                                 data: SizingData):
    print(f"PPO steps/s: {sizer.steps_per_second:,.0f} ({sizer.fit_seconds:.2f} s for "
          f"{PPO_CFG.total_timesteps} steps)")
    assert sizer.train_bars == BOUNDARY
    assert sizer.train_end == data.timestamps[BOUNDARY - 1]
    assert len(sizer.learning_curve) >= 5  # 200-bar episodes over 2,048 steps
    # same seed, and every bar from the boundary on replaced: the same policy
    blind = train_ppo(_perturbed(data, slice(BOUNDARY, None), 1), BOUNDARY, ENV, PPO_CFG)
    np.testing.assert_array_equal(_actions(sizer, data), _actions(blind, data))
    # another seed gives another policy (the comparison above can fail)
    other = train_ppo(data, BOUNDARY, ENV, replace(PPO_CFG, seed=4))
    assert not np.array_equal(_actions(sizer, data), _actions(other, data))


def test_evaluation_runs_on_held_out_bars_only(sizer: SizerModel, data: SizingData):
    res = evaluate_ppo(sizer, data, BOUNDARY)
    r = res.returns
    assert len(r) == N - BOUNDARY
    assert (pd.DatetimeIndex(r["timestamp"]) >= data.timestamps[BOUNDARY]).all()
    assert r["size"].between(0, 1).all() and r["leverage"].between(1, 5).all()
    np.testing.assert_allclose(r["position"], np.sign(r["forecast"]) * r["size"] * r["leverage"],
                               rtol=1e-6)
    # the training bars do not enter the evaluation at all
    changed = evaluate_ppo(sizer, _perturbed(data, slice(0, BOUNDARY), 2), BOUNDARY).returns
    pd.testing.assert_frame_equal(r, changed)
    assert res.metrics.n_trades > 0
    with pytest.raises(ValueError, match="trained on"):
        evaluate_ppo(sizer, data, BOUNDARY - 1)
    regime = np.eye(2)[np.zeros(N, dtype=int)]
    with pytest.raises(ValueError, match="layout"):
        evaluate_ppo(sizer, replace(data, regime=regime), BOUNDARY)


def test_save_and_load_round_trip(sizer: SizerModel, data: SizingData, tmp_path: Path):
    path = save_sizer(sizer, tmp_path / "sizer")
    assert path.suffix == ".zip"
    with zipfile.ZipFile(path) as zf:
        assert META_NAME in zf.namelist() and "policy.pth" in zf.namelist()
    loaded = load_sizer(path)
    assert loaded.env_config == sizer.env_config and loaded.ppo_config == sizer.ppo_config
    assert loaded.train_end == sizer.train_end
    assert loaded.observation_names == sizer.observation_names
    np.testing.assert_array_equal(_actions(loaded, data), _actions(sizer, data))
    plain = tmp_path / "plain.zip"
    sizer.policy.save(plain)
    with pytest.raises(ValueError, match=META_NAME):
        load_sizer(plain)


def test_training_refuses_an_empty_training_part(data: SizingData):
    with pytest.raises(ValueError, match="at least 2 rows"):
        train_ppo(data, 1, ENV, PPO_CFG)
    with pytest.raises(ValueError, match="batch_size"):
        PPOConfig(n_steps=64, batch_size=128)


def test_training_shows_its_timesteps_on_a_terminal(data: SizingData,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]):
    """With a bar drawn (forced here), the PPO callback carries it to ``total_timesteps`` and
    training is unchanged; off a terminal nothing is printed."""
    from huracan import progress

    cfg = replace(PPO_CFG, total_timesteps=512, n_steps=256, n_epochs=1)
    quiet = train_ppo(data, BOUNDARY, ENV, cfg)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(progress, "enabled", lambda console=None: True)
    shown = train_ppo(data, BOUNDARY, ENV, cfg)
    err = capsys.readouterr().err  # a non-terminal console prints the bar's final state
    assert "PPO timesteps" in err and "512/512" in err
    np.testing.assert_array_equal(_actions(quiet, data), _actions(shown, data))
