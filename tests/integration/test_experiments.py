"""Every named experiment preset composes and instantiates its model (cf. lightning-hydra-template
``tests/test_sweeps.py``); every model config group file instantiates with get_params round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from huracan.config import register_resolvers

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted(p.stem for p in (REPO / "experiments").glob("*.yaml"))
MODELS = sorted(p.stem for p in (REPO / "conf" / "model").glob("*.yaml"))


def _compose(*overrides: str, hydra_cfg: bool = False):
    register_resolvers()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=hydra_cfg)


def test_there_are_presets_and_the_full_zoo():
    assert EXPERIMENTS
    assert set(MODELS) >= {"lightgbm", "xgboost", "lstm", "cnn", "transformer"}


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_with_a_question_and_a_sweep(name):
    text = (REPO / "experiments" / f"{name}.yaml").read_text()
    assert text.startswith("# @package _global_")
    assert "Question:" in text  # each preset states the question it answers
    cfg = _compose(f"experiment={name}", hydra_cfg=True)
    sweep = cfg.hydra.sweeper.params
    assert "model" in sweep
    for model in str(sweep.model).split(","):
        m = _compose(f"experiment={name}", f"model={model.strip()}")
        OmegaConf.resolve(m)
        assert Path(m.data.path).is_file()
        assert instantiate(m.model).seed == m.seed


@pytest.mark.parametrize("name", MODELS)
def test_model_config_kwargs_are_the_params(name):
    cfg = _compose(f"model={name}")
    est = instantiate(cfg.model)
    kwargs = {k: v for k, v in OmegaConf.to_container(cfg.model, resolve=True).items()
              if k != "_target_"}
    assert est.get_params() == kwargs


def test_the_freqai_parity_preset_fills_as_freqtrade_backtests():
    # freqtrade fills at the next candle's open and charges the fee only (no spread, no slippage)
    bt = _compose("experiment=freqai_parity").backtest
    assert (bt.fill, float(bt.half_spread), float(bt.slippage_bps), float(bt.fee)) == \
        ("next_open", 0.0, 0.0, 0.001)
