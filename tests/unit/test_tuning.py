"""Tuning: the search-space file drives the sampled parameters, pruning stops a fit that reports a
bad intermediate value, per-fold reporting, test metrics refused, the preset round-trips into
``huracan.train``'s config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from hydra import compose, initialize_config_dir

from huracan.config import register_resolvers
from huracan.models import hooks
from huracan.models.lightgbm import LightGBMForecaster
from huracan.tuning import (
    SPACE_DIR,
    IntermediateReporter,
    TuneError,
    apply,
    check_metric,
    load_space,
    preset_text,
    suggest,
)

CONF = Path(__file__).resolve().parents[2] / "conf"
optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_the_search_space_file_drives_the_sampled_parameters(tmp_path):
    space = load_space(SPACE_DIR / "lightgbm.yaml")
    spec = yaml.safe_load((SPACE_DIR / "lightgbm.yaml").read_text())
    seen = []
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: seen.append(suggest(t, space)) or 0.0, n_trials=25)
    assert all(set(v) == set(spec) for v in seen)
    for key, s in spec.items():
        vals = [v[key] for v in seen]
        assert min(vals) >= s["low"] and max(vals) <= s["high"]
        assert all(isinstance(x, int) for x in vals) == (s["type"] == "int")
        assert len(set(vals)) > 5  # actually searched
    # a different file, a different search
    own = tmp_path / "space.yaml"
    own.write_text("model.num_leaves: {type: categorical, choices: [7, 9]}\n")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    got = []
    study.optimize(lambda t: got.append(suggest(t, load_space(own))) or 0.0, n_trials=10)
    assert {v["model.num_leaves"] for v in got} == {7, 9} and all(len(v) == 1 for v in got)
    bad = tmp_path / "bad.yaml"
    bad.write_text("model.learning_rate: {type: float, low: 0.0, high: 0.1, log: true}\n")
    with pytest.raises(TuneError, match=r"bad.yaml: model.learning_rate: a log scale"):
        load_space(bad)


def test_every_shipped_space_names_real_config_keys():
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for model in ("lightgbm", "xgboost", "lstm", "cnn", "transformer"):
            from omegaconf import OmegaConf

            cfg = OmegaConf.to_container(compose("tune", overrides=[f"model={model}"]),
                                         resolve=False)
            space = load_space(SPACE_DIR / f"{model}.yaml") + load_space(
                SPACE_DIR / "labels.yaml")
            apply(cfg, {p.key: 1 for p in space})  # raises on a key the config lacks
    with pytest.raises(TuneError, match="no 'num_leafs'"):
        apply({"model": {"num_leaves": 15}}, {"model.num_leafs": 3})


def test_pruning_stops_a_fit_that_reports_a_bad_intermediate_value():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 5))
    y = 0.01 * X[:, 0] + rng.normal(0, 0.01, 600)
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(
        n_startup_trials=2, n_warmup_steps=5))
    rounds = {}

    def objective(trial, y_fit):
        reporter = IntermediateReporter(trial, maximize=True, per_fold=False)
        model = LightGBMForecaster(n_estimators=60, early_stopping_rounds=100, seed=1,
                                   log_period=0, n_jobs=1)
        with hooks.listening(reporter):
            try:
                model.fit(X[:400], y_fit[:400], X[400:], y[400:])
            finally:
                rounds[trial.number] = len(reporter.reported)
        return 1.0

    for _ in range(2):  # good fits: low validation loss
        study.optimize(lambda t: objective(t, y), n_trials=1)
    # a fit on noise 100x larger reports a far worse validation loss from the first rounds
    study.optimize(lambda t: objective(t, y * 100 + rng.normal(0, 1, 600)), n_trials=1)
    states = [t.state for t in study.trials]
    assert states[:2] == [optuna.trial.TrialState.COMPLETE] * 2
    assert states[2] == optuna.trial.TrialState.PRUNED
    assert rounds[0] == 60 and 5 <= rounds[2] < 60  # stopped inside the fit, after warm-up
    # reported in the study's direction: the negated validation loss
    assert all(v <= 0 for v in study.trials[0].intermediate_values.values())


def test_walk_forward_reports_one_value_per_fold():
    study = optuna.create_study(direction="minimize")
    trial = study.ask()
    rep = IntermediateReporter(trial, maximize=False, per_fold=True)
    for step, loss in [(0, 5.0), (1, 4.0), (2, 3.0), (0, 9.0), (1, 8.0)]:  # two folds
        rep(step, loss)
    rep.close()
    assert rep.reported == [(0, 3.0), (1, 8.0)]
    study.tell(trial, 1.0)
    assert study.trials[0].intermediate_values == {0: 3.0, 1: 8.0}


def test_tuning_never_targets_test_rows():
    assert check_metric("val_composite_score") == "val_composite_score"
    assert check_metric("oos_sharpe") == "oos_sharpe"
    with pytest.raises(TuneError, match="never looks at test"):
        check_metric("test_composite_score")


def test_the_preset_round_trips_into_huracan_train(tmp_path):
    values = {"model.learning_rate": 0.0123, "model.max_depth": 3, "backtest.threshold": 0.0011}
    (tmp_path / "experiment" / "tuned").mkdir(parents=True)
    path = tmp_path / "experiment" / "tuned" / "btcusdt_1h_xgboost.yaml"
    path.write_text(preset_text("xgboost", values, study="s", n_trials=7,
                                metric="val_composite_score", value=0.5, storage="sqlite://"))
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=tuned/btcusdt_1h_xgboost",
                                          f"hydra.searchpath=[file://{tmp_path}]"])
    assert cfg.model._target_.endswith("XGBoostForecaster")  # the preset picks its model
    assert cfg.model.learning_rate == 0.0123 and cfg.model.max_depth == 3
    assert cfg.backtest.threshold == 0.0011
    assert cfg.model.subsample == 0.8  # untuned keys keep the model's defaults
    assert "7 trials" in path.read_text().splitlines()[1]


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF.parent / "experiments" / "tuned")
                                        .glob("*.yaml")))
def test_the_shipped_tuned_presets_compose(name):
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment=tuned/{name}"])
    model = name.rsplit("_", 1)[-1]
    assert cfg.model._target_.lower().endswith(f"{model}forecaster")
    tuned = yaml.safe_load((CONF.parent / "experiments" / "tuned" / f"{name}.yaml").read_text())
    for key, value in tuned["model"].items():
        assert cfg.model[key] == value
