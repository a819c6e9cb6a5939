"""Config typos fail: every shipped preset and group option composes into the typed settings of
its app (so a preset with an unknown key fails ``make test``), a misspelt key in an override or a
preset file stops each command with one line naming it, and a run logged with an old config shape
is still read (through :meth:`JobSettings.from_logged`)."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from runners import run_module  # tests/integration/runners.py

from huracan.config import register_resolvers
from huracan.resources import experiments_dir
from huracan.settings import JobSettings, UnknownKeyError
from huracan.splits import ForwardSplitter
from huracan.tuning import TuneSettings

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"
TRAIN_PRESETS = sorted(str(p.relative_to(experiments_dir()).with_suffix(""))
                       for p in [*experiments_dir().glob("*.yaml"),
                                 *experiments_dir().glob("tuned/*.yaml")])
NIGHTLY_PRESETS = sorted(f"nightly/{p.stem}" for p in experiments_dir().glob("nightly/*.yaml"))
GROUP_OPTIONS = sorted(f"{d.name}={p.stem}" for d in CONF.iterdir()
                       if d.is_dir() and d.name not in ("experiment", "hparams_search")
                       for p in d.glob("*.yaml"))
LOGGED = Path(__file__).parent / "logged" / "resolved_c6aad9c.yaml"
SECRETS = {"HURACAN_APPRISE_URLS": "json://localhost:1/a", "HURACAN_TELEGRAM_TOKEN": "1:x",
           "HURACAN_TELEGRAM_CHAT_ID": "1", "HURACAN_ALERT_WEBHOOK": "http://localhost:1/a"}


def _compose(name: str, *overrides: str, hydra_cfg: bool = False):
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(name, overrides=list(overrides), return_hydra_config=hydra_cfg)


def _resolved(cfg) -> dict:
    out = OmegaConf.to_container(cfg, resolve=True)
    out.pop("hydra", None)
    return out


def _sweep(preset: str) -> list[list[str]]:
    """Every job of the preset's multirun, as override lists (its ``hydra.sweeper.params``)."""
    params = _compose("train", f"experiment={preset}", hydra_cfg=True).hydra.sweeper.params or {}
    axes = [[f"{k}={v.strip()}" for v in str(values).split(",")] for k, values in params.items()]
    return [list(job) for job in itertools.product(*axes)]


# ---------------------------------------------------------------------------- every preset
@pytest.mark.parametrize("preset", TRAIN_PRESETS)
def test_every_job_of_every_train_preset_builds_its_settings(preset, monkeypatch):
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    jobs = _sweep(preset)
    for job in jobs:
        s = JobSettings.from_dict(_resolved(_compose("train", f"experiment={preset}", *job)))
        assert s.data.path and s.model["_target_"]
    # and under the tuner, whose config is train's plus its own typed node
    tune = _resolved(_compose("tune", f"experiment={preset}", *jobs[0]))
    assert TuneSettings.from_dict(tune.pop("tune")) == TuneSettings.from_dict(
        _resolved(_compose("tune"))["tune"])
    JobSettings.from_dict(tune)


@pytest.mark.parametrize("option", GROUP_OPTIONS)
def test_every_group_option_builds_the_settings(option, monkeypatch):
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    s = JobSettings.from_dict(_resolved(_compose("train", option)))
    group, name = option.split("=")
    if group == "alerts":
        assert s.make_notifier() is not None
    elif group == "split":
        assert s.split.scheme == name


@pytest.mark.parametrize("preset", NIGHTLY_PRESETS)
def test_every_nightly_preset_builds_its_settings(preset, tmp_path):
    from huracan.nightly import settings_from_config

    settings, symbols, _, _ = settings_from_config(_compose("nightly", f"experiment={preset}"),
                                                   cwd=tmp_path)
    assert symbols and settings.models


def test_the_sizer_config_builds_its_settings(monkeypatch):
    from huracan.sizing.job import sizer_settings

    cfg = _resolved(_compose("sizer"))
    assert sizer_settings(cfg).ppo == cfg["sizer"]["ppo"]
    monkeypatch.setenv("HURACAN_ALERT_WEBHOOK", SECRETS["HURACAN_ALERT_WEBHOOK"])
    for option in ("data=binance_1h", "alerts=webhook"):
        assert sizer_settings(_resolved(_compose("sizer", option))).forecaster == "production"


# ---------------------------------------------------------------------------- as commands
def _one_line(proc: subprocess.CompletedProcess, key: str, group: str, known: str) -> str:
    """The one output line refusing ``key``: naming it, its group and the known keys."""
    assert proc.returncode != 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines()
             if f"unknown config key '{key}' in group '{group}'" in ln
             and f"known keys are {known}" in ln]
    assert lines, proc.stdout[-2000:] + proc.stderr[-2000:]
    return lines[0]


WF_KNOWN = ("_target_, embargo, expanding, n_jobs, oos_end, oos_start, step_bars, train_bars, "
            "val_bars")


@pytest.mark.slow  # a command: a subprocess
def test_train_refuses_a_misspelt_override(train_cli, tmp_path):
    proc = train_cli(["split=walk_forward", "+split.trian_bars=30d"], tmp_path)
    line = _one_line(proc, "split.trian_bars", "split", WF_KNOWN)
    assert line.endswith("did you mean 'split.train_bars'?")
    assert not (tmp_path / "mlruns").exists()  # refused before any MLflow run was opened


@pytest.mark.slow  # a command: a subprocess
def test_train_refuses_a_preset_with_a_misspelt_key(train_cli, tmp_path):
    # a shipped preset copied with one typo into a directory added to Hydra's search path
    src = (experiments_dir() / "walkforward_btc_1h.yaml").read_text()
    assert "  train_bars: 120d\n" in src
    presets = tmp_path / "presets" / "experiment"
    presets.mkdir(parents=True)
    (presets / "typo_wf.yaml").write_text(src.replace("  train_bars: 120d\n",
                                                      "  trian_bars: 120d\n"))
    proc = train_cli([f"hydra.searchpath=[file://{tmp_path / 'presets'}]",
                      "experiment=typo_wf", "model=lightgbm"], tmp_path)
    _one_line(proc, "split.trian_bars", "split", WF_KNOWN)
    # the sweep form fails too (every job refuses the key, the multirun exits non-zero)
    proc = train_cli([f"hydra.searchpath=[file://{tmp_path / 'presets'}]",
                      "experiment=typo_wf", "model=lightgbm", "-m"], tmp_path)
    _one_line(proc, "split.trian_bars", "split", WF_KNOWN)


@pytest.mark.slow  # a command: a subprocess
def test_tune_and_sizer_refuse_a_misspelt_key_in_one_line(tmp_path):
    proc = run_module("huracan.tune", ["+tune.n_trails=3", f"hydra.run.dir={tmp_path / 'h1'}"],
                      tmp_path, timeout=300)
    assert proc.returncode == 1
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("huracan.tune: error")]
    assert len(errors) == 1 and "unknown config key 'tune.n_trails' in group 'tune'" in errors[0]
    assert "Traceback" not in proc.stderr
    proc = run_module("huracan.sizer", ["+sizer.ppo.n_env=2", f"hydra.run.dir={tmp_path / 'h2'}"],
                      tmp_path, timeout=300)
    assert proc.returncode == 1
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("huracan.sizer: error")]
    assert len(errors) == 1 and errors[0].endswith("did you mean 'sizer.ppo.n_envs'?")
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "mlruns").exists()  # refused before any run was opened


@pytest.mark.slow  # a command: a subprocess
def test_nightly_refuses_a_misspelt_key_before_any_work(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "huracan.nightly", "experiment=nightly/sample",
         "+nightly.monitor.windw=7d", f"hydra.run.dir={tmp_path / 'hydra'}",
         f"nightly.work_dir={tmp_path / 'work'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("huracan.nightly: error")]
    assert len(errors) == 1 and errors[0].endswith(
        "unknown config key 'nightly.monitor.windw' in group 'nightly.monitor': known keys are "
        "drift_share, enabled, weekly_rescale, window; did you mean 'nightly.monitor.window'?")
    assert not (tmp_path / "work").exists()


# ---------------------------------------------------------------------------- logged runs
def test_a_run_logged_with_an_old_config_shape_is_read(tmp_path):
    """The ``config/resolved.yaml`` of a run of c6aad9c (before walk-forward, labels, rules,
    regimes, train variants and selection existed), read by run_settings as registry monitor,
    features analyze, drift and the sizer read it."""
    from mlflow import MlflowClient

    from huracan.rebuild import run_settings
    from huracan.tracking.run import configure, default_tracking_uri

    logged = yaml.safe_load(LOGGED.read_text())
    assert "label" not in logged and "_target_" not in logged["split"]
    experiment_id = configure(None, tmp_path / "mlruns", "huracan")
    client = MlflowClient(tracking_uri=default_tracking_uri(tmp_path / "mlruns"))
    run = client.create_run(experiment_id)
    client.log_dict(run.info.run_id, logged, "config/resolved.yaml")
    s = run_settings(client, run.info.run_id)
    assert s.split == ForwardSplitter(train=0.7, val=0.15, test=0.15, embargo=1)
    assert s.regime.kind == "none" and s.rule is None and s.label.kind == "forward_return"
    assert s.explain.max_rows == 200 and s.importance.max_rows == 300  # logged / default
    assert s.selection.min_trades == 30 and s.top_n is None
    # a key that is neither known nor retired still fails, naming the run
    bad = client.create_run(experiment_id)
    client.log_dict(bad.info.run_id, {**logged, "explain": {"max_rows": 5, "max_row": 5}},
                    "config/resolved.yaml")
    with pytest.raises(UnknownKeyError, match=rf"'explain\.max_row' in group 'explain'.*"
                                              rf"in run {bad.info.run_id}; a key retired"):
        run_settings(client, bad.info.run_id)
