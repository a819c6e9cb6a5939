"""Typed settings refuse keys they do not know: one line naming the dotted key, the group and the
known keys, in every group of a training job and of the other apps (sizer, tune, nightly, drift);
a run's logged config is read through the explicit compatibility path only; the selection
defaults (``min_trades``, ``pbo_splits``) and the fee have one home each."""

from __future__ import annotations

import ast
import copy
import inspect
import logging
import re
from dataclasses import fields
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from huracan.analysis.drift import DriftSettings
from huracan.config import register_resolvers
from huracan.evaluation.backtest import BacktestConfig
from huracan.evaluation.rules import BarrierRule, MetaRule, ThresholdRule, make_rule
from huracan.features.build import FeatureConfig, LabelConfig
from huracan.models.lightgbm import LightGBMForecaster
from huracan.orchestration.config import (
    MonitorOptions,
    NightlyConfig,
    NightlyOptions,
    RayOptions,
    SizerStepOptions,
)
from huracan.settings import (
    CONFIG_ONLY_KEYS,
    RETIRED_KEYS,
    TRAIN_CONFIG_KEYS,
    DataSettings,
    DbSettings,
    ExplainSettings,
    ImportanceSettings,
    JobSettings,
    RegimeSettings,
    RegistrySettings,
    SelectionSettings,
    TrackingSettings,
    TrainSettings,
    UnknownKeyError,
)
from huracan.splits import ForwardSplitter, WalkForwardSplitter
from huracan.tuning import TuneSettings

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"
TYPO = "zz_typo"  # close to no known key: the message carries no "did you mean"


def _compose(name: str, *overrides: str) -> dict:
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(name, overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.fixture(scope="module")
def train_cfg() -> dict:
    """The default ``train`` config, resolved, with walk-forward and meta-rule variants."""
    return {"forward": _compose("train"),
            "walk_forward": _compose("train", "split=walk_forward", "rule=meta")}


def _names(cls: type) -> set[str]:
    return {f.name for f in fields(cls) if f.init and not f.name.endswith("_")}


def _listed(message: str) -> set[str]:
    """The known keys a refusal lists (between 'known keys are ' and the end or ';')."""
    listed = message.split("known keys are ", 1)[1].split(";", 1)[0].split(" (", 1)[0]
    return {k.strip() for k in listed.split(",")}


def _refused(exc: pytest.ExceptionInfo[UnknownKeyError], key: str, group: str,
             known: set[str]) -> None:
    message = str(exc.value)
    assert "\n" not in message
    where = f"group '{group}'" if group else "the top level of the config"
    assert message.startswith(f"unknown config key '{key}' in {where}")
    assert _listed(message) == known
    assert exc.value.keys == [key]


# ---------------------------------------------------------------------------- train job groups
GROUPS = [  # (variant, group, the known keys)
    ("forward", "data", _names(DataSettings) | {"base"}),
    ("forward", "features", _names(FeatureConfig) | {"top_n"}),
    ("forward", "split", _names(ForwardSplitter) | {"_target_"}),
    ("walk_forward", "split", _names(WalkForwardSplitter) | {"_target_"}),
    ("forward", "backtest", _names(BacktestConfig)),
    ("forward", "label", _names(LabelConfig)),
    ("forward", "explain", _names(ExplainSettings)),
    ("forward", "train", _names(TrainSettings)),
    ("forward", "regime", _names(RegimeSettings)),
    ("forward", "importance", _names(ImportanceSettings)),
    ("forward", "tracking", _names(TrackingSettings)),
    ("forward", "registry", _names(RegistrySettings)),
    ("forward", "selection", _names(SelectionSettings)),
    ("forward", "db", _names(DbSettings)),
    ("forward", "rule", _names(ThresholdRule) | {"kind"}),
    ("walk_forward", "rule", _names(MetaRule) | {"kind"}),
    ("forward", "model", set(inspect.signature(LightGBMForecaster).parameters) | {"_target_"}),
    ("forward", "alerts", {"_target_"}),
]


@pytest.mark.parametrize(("variant", "group", "known"), GROUPS,
                         ids=[f"{v}-{g}" for v, g, _ in GROUPS])
def test_every_group_refuses_an_unknown_key_naming_it_and_the_known_keys(
        train_cfg, variant, group, known):
    cfg = copy.deepcopy(train_cfg[variant])
    JobSettings.from_dict(cfg)  # the shipped config itself is accepted
    cfg[group][TYPO] = 1
    with pytest.raises(UnknownKeyError) as exc:
        JobSettings.from_dict(cfg)
    _refused(exc, f"{group}.{TYPO}", group, known)


def test_an_unknown_top_level_key_is_refused_and_hydra_is_not(train_cfg):
    cfg = copy.deepcopy(train_cfg["forward"])
    cfg["hydra"] = {"job": {"name": "train"}}  # Hydra's own node: not a setting, not refused
    JobSettings.from_dict(cfg)
    cfg["selecton"] = {"min_trades": 5}
    with pytest.raises(UnknownKeyError) as exc:
        JobSettings.from_dict(cfg)
    _refused(exc, "selecton", "", set(TRAIN_CONFIG_KEYS))
    assert str(exc.value).endswith("did you mean 'selection'?")


def test_a_misspelt_key_is_named_with_the_closest_known_one(train_cfg):
    cfg = copy.deepcopy(train_cfg["walk_forward"])
    cfg["split"]["trian_bars"] = "30d"
    with pytest.raises(UnknownKeyError, match=re.escape(
            "unknown config key 'split.trian_bars' in group 'split' (WalkForwardSplitter): "
            "known keys are _target_, embargo, expanding, n_jobs, oos_end, oos_start, "
            "step_bars, train_bars, val_bars; did you mean 'split.train_bars'?")):
        JobSettings.from_dict(cfg)


def test_a_meta_rules_primary_params_are_checked_against_the_primary_rule(train_cfg):
    cfg = copy.deepcopy(train_cfg["walk_forward"])
    cfg["rule"]["primary_params"]["min_holdng"] = 4
    with pytest.raises(UnknownKeyError) as exc:
        JobSettings.from_dict(cfg)
    _refused(exc, "rule.primary_params.min_holdng", "rule.primary_params",
             _names(ThresholdRule))
    with pytest.raises(UnknownKeyError, match=r"'rule\.pt_mul' in group 'rule' \(kind barrier\)"):
        make_rule({"kind": "barrier", "pt_mul": 3.0})


def test_config_only_keys_are_named_and_accepted(train_cfg):
    assert set(CONFIG_ONLY_KEYS) == {"data"} and set(CONFIG_ONLY_KEYS["data"]) == {"base"}
    cfg = copy.deepcopy(train_cfg["forward"])
    cfg["data"]["base"] = "ETH"  # conf/data/binance_1h.yaml interpolates it into path, symbol
    assert JobSettings.from_dict(cfg).data == JobSettings.from_dict(train_cfg["forward"]).data
    cfg["features"]["top_n"] = 12
    assert JobSettings.from_dict(cfg).top_n == 12


def test_the_refusal_survives_pickling():
    import pickle

    err = UnknownKeyError("split", ["trian_bars"], ["train_bars", "val_bars"],
                          kind="WalkForwardSplitter")
    back = pickle.loads(pickle.dumps(err))  # a joblib launcher ships it between processes
    assert str(back) == str(err) and back.keys == ["split.trian_bars"]


# ---------------------------------------------------------------------------- other apps
def _sizer_cfg() -> dict:
    return _compose("sizer")


@pytest.mark.parametrize(("group", "known"), [
    ("", {"alerts", "data", "db", "registry", "seed", "sizer", "tracking"}),
    ("sizer", None),
    ("sizer.ppo", None),
    ("data", _names(DataSettings) | {"base"}),
    ("registry", _names(RegistrySettings)),
])
def test_the_sizer_refuses_unknown_keys(group, known):
    from huracan.sizing.job import SizerSettings, sizer_settings
    from huracan.sizing.ppo import PPOConfig

    known = known or {"sizer": _names(SizerSettings), "sizer.ppo": _names(PPOConfig)}[group]
    cfg = _sizer_cfg()
    assert sizer_settings(cfg).ppo == cfg["sizer"]["ppo"]
    node = cfg
    for part in [p for p in group.split(".") if p]:
        node = node[part]
    node[TYPO] = 1
    with pytest.raises(UnknownKeyError) as exc:
        sizer_settings(cfg)
    _refused(exc, f"{group}.{TYPO}" if group else TYPO, group, known)


@pytest.mark.parametrize(("group", "known"), [
    ("", {"alerts", "db", "nightly", "ray", "symbols", "timeframe", "tracking"}),
    ("nightly", _names(NightlyOptions)),
    ("nightly.monitor", _names(MonitorOptions)),
    ("nightly.sizer", _names(SizerStepOptions)),
    ("ray", _names(RayOptions)),
    ("tracking", _names(TrackingSettings)),
    ("db", _names(DbSettings)),
])
def test_the_nightly_refuses_unknown_keys(group, known):
    cfg = _compose("nightly")
    NightlyConfig.from_dict(cfg)
    node = cfg
    for part in [p for p in group.split(".") if p]:
        node = node[part]
    node[TYPO] = 1
    with pytest.raises(UnknownKeyError) as exc:
        NightlyConfig.from_dict(cfg)
    _refused(exc, f"{group}.{TYPO}" if group else TYPO, group, known)


def test_the_nightly_options_mirror_the_shipped_config():
    n = _compose("nightly")["nightly"]
    typed = NightlyConfig.from_dict(_compose("nightly")).nightly
    assert set(n) == _names(NightlyOptions)  # every shipped key is a field, every field shipped
    assert typed.monitor.window == n["monitor"]["window"] and typed.models == n["models"]


def test_tune_and_drift_refuse_unknown_keys():
    t = _compose("tune")["tune"]
    assert set(t) | {"worker_trials"} == _names(TuneSettings)  # workers get +tune.worker_trials
    assert TuneSettings.from_dict(t).n_trials == t["n_trials"]
    with pytest.raises(UnknownKeyError) as exc:
        TuneSettings.from_dict({**t, "n_trails": 5})
    _refused(exc, "tune.n_trails", "tune", _names(TuneSettings))
    with pytest.raises(UnknownKeyError) as exc:
        DriftSettings.from_dict({"shar": 0.3})
    _refused(exc, "drift.shar", "drift", _names(DriftSettings))


# ---------------------------------------------------------------------------- logged runs
def test_a_logged_config_is_read_through_the_retired_keys_table_only(
        train_cfg, monkeypatch, caplog):
    logged = copy.deepcopy(train_cfg["forward"])
    logged["regime"]["min_eval_bars_old"] = 48   # as if a field had been retired since
    logged["old_top"] = True
    with pytest.raises(UnknownKeyError):
        JobSettings.from_dict(logged)  # a fresh config never drops anything
    with pytest.raises(UnknownKeyError, match=r"in run abc; a key retired since belongs in "
                                              r"huracan\.settings\.RETIRED_KEYS"):
        JobSettings.from_logged(logged, source="run abc")  # not in the table: still refused
    monkeypatch.setitem(RETIRED_KEYS, "regime", {"min_eval_bars_old": "renamed (test)"})
    monkeypatch.setitem(RETIRED_KEYS, "", {"old_top": "retired (test)"})
    with caplog.at_level(logging.DEBUG, logger="huracan.settings"):
        s = JobSettings.from_logged(logged, source="run abc")
    assert s.regime == JobSettings.from_dict(train_cfg["forward"]).regime
    assert {r.getMessage() for r in caplog.records} == {
        "run abc: retired config key regime.min_eval_bars_old dropped (renamed (test))",
        "run abc: retired config key old_top dropped (retired (test))"}
    with pytest.raises(UnknownKeyError):
        JobSettings.from_dict(logged)  # the table is for logged runs only
    assert "min_eval_bars_old" in logged["regime"]  # the caller's mapping is left as it was


def test_a_logged_model_node_is_not_checked_against_todays_class(train_cfg):
    logged = copy.deepcopy(train_cfg["forward"])
    logged["model"]["retired_hyperparameter"] = 3  # the logged model is loaded, not rebuilt
    assert JobSettings.from_logged(logged).model["retired_hyperparameter"] == 3
    with pytest.raises(UnknownKeyError, match=r"'model\.retired_hyperparameter'"):
        JobSettings.from_dict(logged)


# ---------------------------------------------------------------------------- selection
def test_selection_is_typed_and_its_defaults_are_the_shipped_ones(train_cfg):
    shipped = train_cfg["forward"]["selection"]
    assert SelectionSettings() == SelectionSettings(**shipped)
    s = JobSettings.from_dict(train_cfg["forward"])
    assert s.selection == SelectionSettings()
    with pytest.raises(ValueError, match=r"selection\.min_trades must be >= 0"):
        SelectionSettings(min_trades=-1)


def test_selection_min_trades_reaches_the_rule_and_the_regimes():
    cfg = _compose("train", "selection.min_trades=7", "rule=validated_threshold")
    s = JobSettings.from_dict(cfg)
    assert s.selection.min_trades == s.regime.min_trades == s.make_rule().min_trades == 7
    from huracan.callbacks.sweep import _selection_settings

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        dc = compose("train", overrides=["selection.min_trades=7", "selection.pbo_splits=8"])
    assert _selection_settings(dc) == (7, 8)


def test_code_defaults_read_the_one_home():
    from huracan.callbacks.sweep import SweepRun
    from huracan.evaluation.evidence import pbo
    from huracan.evaluation.execution import bars_of_returns, close_bars
    from huracan.regime.jobs import walk_forward_switching
    from huracan.regime.live import select
    from huracan.regime.selection import select_per_regime
    from huracan.sizing.env import EnvConfig

    def default(fn, name):
        return inspect.signature(fn).parameters[name].default

    home = SelectionSettings()
    assert {RegimeSettings().min_trades, ThresholdRule().min_trades, BarrierRule().min_trades,
            default(select_per_regime, "min_trades"), default(select, "min_trades"),
            default(walk_forward_switching, "min_trades")} == {home.min_trades}
    assert {default(pbo, "n_splits"), SweepRun().pbo_splits} == {home.pbo_splits}
    assert {EnvConfig().fee, default(close_bars, "fee"),
            default(bars_of_returns, "fee")} == {BacktestConfig().fee}


_HOMES = {"min_trades": ("huracan/evaluation/selection.py", 30),
          "pbo_splits": ("huracan/evaluation/selection.py", 16),
          "n_splits": ("huracan/settings.py", 16), "fee": ("huracan/evaluation/backtest.py", 4e-4)}


def _defaults(tree: ast.AST) -> list[tuple[str, object, int]]:
    """``(name, literal, line)`` of every literal default of a parameter, class field,
    assignment or ``.get("name", literal)`` in a module."""
    out: list[tuple[str, object, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arguments):
            pos = node.posonlyargs + node.args
            pairs = list(zip(pos[len(pos) - len(node.defaults):], node.defaults, strict=True))
            pairs += [(a, d) for a, d in zip(node.kwonlyargs, node.kw_defaults, strict=True) if d]
            out += [(a.arg, d.value, d.lineno) for a, d in pairs if isinstance(d, ast.Constant)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                and isinstance(node.value, ast.Constant):
            out.append((node.target.id, node.value.value, node.lineno))
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:  # x = literal, self.x = literal
                name = getattr(target, "id", None) or getattr(target, "attr", None)
                if name:
                    out.append((str(name), node.value.value, node.lineno))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr == "get" and len(node.args) == 2 \
                and all(isinstance(a, ast.Constant) for a in node.args):
            key, value = node.args  # type: ignore[misc]
            out.append((str(key.value).rsplit(".", 1)[-1], value.value, node.lineno))
    return out


def test_no_module_repeats_the_selection_or_fee_literals():
    found = []
    for path in sorted((REPO / "huracan").rglob("*.py")):
        rel = str(path.relative_to(REPO))
        tree = ast.parse(path.read_text())
        for name, value, line in _defaults(tree):
            home = _HOMES.get(name)
            if home and value == home[1] and rel != home[0]:
                found.append(f"{rel}:{line} {name}={value}")
        if rel != _HOMES["fee"][0]:
            found += [f"{rel}:{n.lineno} {n.value}" for n in ast.walk(tree)
                      if isinstance(n, ast.Constant) and n.value == 4e-4
                      and not isinstance(n.value, bool)]
    assert found == []


def test_a_test_metric_as_objective_is_refused_naming_the_rule(train_cfg):
    from huracan.settings import SelectionOnTestError
    from huracan.tuning import TuneError, check_metric

    cfg = copy.deepcopy(train_cfg["forward"])
    for ok in ("val_sharpe", "oos_composite_score", None):
        assert JobSettings.from_dict({**cfg, "objective": ok}).objective == str(ok)
    with pytest.raises(SelectionOnTestError, match=re.escape(
            "objective=test_sharpe: never select on test; a selection never looks at test rows, "
            "use a val_ or oos_ metric")):
        JobSettings.from_dict({**cfg, "objective": "test_sharpe"})
    # tune applies the same rule (one copy) under its own key and error class
    with pytest.raises(TuneError, match=r"tune\.metric=test_sharpe: never select on test"):
        check_metric("test_sharpe")
    # a past run is rebuilt as it was logged
    assert JobSettings.from_logged({**cfg, "objective": "test_sharpe"}).objective == "test_sharpe"
