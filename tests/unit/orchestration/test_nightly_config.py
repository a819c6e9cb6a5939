"""The nightly's config: presets compose, settings are absolute and checked, child processes get
secrets through their environment only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from huracan.config import register_resolvers
from huracan.nightly import settings_from_config
from huracan.orchestration.night import default_run_id, run_symbols
from huracan.orchestration.steps import train_overrides
from huracan.resources import conf_dir, experiments_dir

NIGHTLY_PRESETS = sorted(p.stem for p in (experiments_dir() / "nightly").glob("*.yaml"))


def _compose(*overrides: str):
    register_resolvers()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose("nightly", overrides=list(overrides))


@pytest.mark.parametrize("name", NIGHTLY_PRESETS)
def test_nightly_presets_compose_with_a_question(name):
    text = (experiments_dir() / "nightly" / f"{name}.yaml").read_text()
    assert text.startswith("# @package _global_") and "Question:" in text
    settings, symbols, _, _ = settings_from_config(_compose(f"experiment=nightly/{name}"))
    assert symbols
    for path in settings.imports.values():
        assert Path(path).is_file()


def test_settings_are_absolute_and_the_night_is_named(tmp_path):
    cfg = _compose("experiment=nightly/sample", "db.url=sqlite:///rel/brain.db",
                   "nightly.lake=lake", "tracking.store_dir=mlruns")
    s, symbols, _, _ = settings_from_config(cfg, cwd=tmp_path)
    assert symbols == ["BTC/USDT"] and s.offline and s.source_timeframe == "5m"
    assert s.db_url == f"sqlite:///{tmp_path / 'rel' / 'brain.db'}"
    assert s.lake == str(tmp_path / "lake") and Path(s.work_dir).is_absolute()
    assert s.run_id == default_run_id("1h") and s.run_id.endswith("-1h")
    # the store URL reaches child processes through their environment, not their command line
    over = train_overrides(s, "BTC/USDT")
    assert any(o.startswith("data.path=") and o.endswith("BTC-USDT/candles.parquet")
               for o in over)
    env = s.env()
    assert env["HURACAN_DB_URL"] == s.db_url
    assert env["PATH"].split(":")[0] == str(Path(s.python).parent)


def test_thread_cap_reaches_the_children(tmp_path):
    from dataclasses import replace

    s, _, _, _ = settings_from_config(_compose("experiment=nightly/sample"), cwd=tmp_path)
    env = replace(s, threads=1).env()
    assert env["OMP_NUM_THREADS"] == env["HURACAN_N_JOBS"] == env["TF_NUM_INTRAOP_THREADS"] == "1"
    # no cap: the models keep their own thread settings (whatever the caller's environment says)
    assert replace(s, threads=None).env().get("HURACAN_N_JOBS") == os.environ.get("HURACAN_N_JOBS")


@pytest.mark.parametrize(("override", "message"), [
    ("nightly.executor=dask", "nightly.executor must be one of"),
    ("nightly.launcher=ray", "nightly.launcher must be basic or joblib"),
    ("symbols=[]", "symbols is empty"),
    ("timeframe=7x", "timeframe"),
    ("nightly.imports=[{symbol:'BTC/USDT'}]", r"nightly.imports\[0\]"),
])
def test_bad_settings_are_refused_with_the_rule(override, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        settings_from_config(_compose(override), cwd=tmp_path)


def test_unknown_executor_is_refused_before_any_work(tmp_path):
    s, _, _, _ = settings_from_config(_compose(), cwd=tmp_path)
    with pytest.raises(ValueError, match=r"nightly\.executor"):
        run_symbols(s, ["BTC/USDT"], executor="dask")


@pytest.mark.slow  # a command: a subprocess
def test_the_command_refuses_a_bad_setting_in_one_line_and_keeps_secrets(tmp_path):
    import subprocess
    import sys

    secret = "s3cr3t-pw"
    out = subprocess.run(
        [sys.executable, "-m", "huracan.nightly", "nightly.executor=dask",
         f"db.url=postgresql+psycopg2://huracan:{secret}@127.0.0.1:1/brain",
         f"hydra.run.dir={tmp_path / 'hydra'}", f"nightly.work_dir={tmp_path / 'work'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("huracan.nightly: error")]
    assert len(errors) == 1 and "nightly.executor must be one of" in errors[0]
    assert not (tmp_path / "work").exists()  # refused before any step
    written = "".join(p.read_text() for p in (tmp_path / "hydra").rglob("*") if p.is_file())
    assert written and secret not in written and secret not in out.stdout + out.stderr


def test_the_night_turns_the_prediction_log_on_unless_told_otherwise():
    from huracan.nightly import prediction_log_on

    env: dict[str, str] = {}
    assert prediction_log_on("sqlite:////tmp/night/brain.db", env) == \
        "sqlite:////tmp/night/brain.db"
    assert env["HURACAN_PREDICTION_LOG"] == "sqlite:////tmp/night/brain.db"
    off = {"HURACAN_PREDICTION_LOG": "off"}  # an operator's explicit choice stands
    assert prediction_log_on("sqlite:////tmp/night/brain.db", off) == "off"
