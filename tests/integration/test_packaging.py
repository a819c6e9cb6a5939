"""A non-editable install trains and validates: build a wheel (no network), install it into a
temporary directory, and run the entry points from outside the repository with that copy first on
``sys.path`` (so ``conf/``, ``experiments/`` and ``expectations/`` must come from the wheel).

The wheel is built from a copy of the source tree (``pyproject.toml``, ``README.md``,
``huracan/``, ``conf/``, ``experiments/``, ``expectations/``, symlinks kept): building in the
checkout itself would leave ``build/`` and ``*.egg-info`` behind in a shared working tree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
REAL_OHLCV = SHARED_DATA / "ohlcv" / "binance-spot_BTCUSDT_1h_20180101-20241231.parquet"
SOURCES = ("pyproject.toml", "README.md", "MANIFEST.in", "LICENSE", "huracan", "conf",
           "experiments", "expectations")


def _files(root: Path) -> set[str]:
    """Every file under ``root`` (following symlinked directories), relative, no caches."""
    out = set()
    for d, _, names in os.walk(root, followlinks=True):
        for n in names:
            rel = (Path(d) / n).relative_to(root).as_posix()
            if "__pycache__" not in rel:
                out.add(rel)
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``(tmp, site dir, wheel path, seconds to build and install)``."""
    tmp = tmp_path_factory.mktemp("pkg")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif path.is_file():
            shutil.copy2(path, src / name)
    t0 = time.perf_counter()
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                            "--no-build-isolation", "--no-index", ".", "-w", str(tmp / "wheel")],
                           cwd=src, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    wheels = list((tmp / "wheel").glob("huracan-*.whl"))
    assert len(wheels) == 1
    site = tmp / "site"
    inst = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
                           "--target", str(site), str(wheels[0])],
                          capture_output=True, text=True, timeout=600)
    assert inst.returncode == 0, inst.stdout[-2000:] + inst.stderr[-2000:]
    return tmp, site, wheels[0], time.perf_counter() - t0


def _run(args: list[str], site: Path, cwd: Path, timeout: int = 900,
         **env_extra: str) -> subprocess.CompletedProcess:
    """``python ARGS`` from ``cwd`` (outside the repository) with the installed copy first."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "HURACAN_DB_URL", "PYTHONPATH")}
    env.update(PYTHONPATH=str(site), TF_CPP_MIN_LOG_LEVEL="2", **env_extra)
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_wheel_ships_the_configs_presets_and_suites(installed):
    _, _, wheel, seconds = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    conf = {n.removeprefix("huracan/_conf/") for n in names if n.startswith("huracan/_conf/")}
    assert conf == {f for f in _files(REPO / "conf") if f.endswith(".yaml")}
    assert {n.removeprefix("huracan/_conf/experiment/") for n in names
            if n.startswith("huracan/_conf/experiment/")} == {
        f for f in _files(REPO / "experiments") if f.endswith(".yaml")}
    assert {n.removeprefix("huracan/_expectations/") for n in names
            if n.startswith("huracan/_expectations/")} == _files(REPO / "expectations")
    assert any(n.startswith("huracan/datasets/") and n.endswith(".parquet") for n in names)
    size_mb = wheel.stat().st_size / 1e6
    print(f"wheel {wheel.name}: {size_mb:.2f} MB, {len(names)} files; built and installed in "
          f"{seconds:.1f} s")
    assert size_mb < 20  # the sample parquet is ~4 MB; nothing large slipped in


def test_installed_copy_wins_and_locates_its_resources(installed):
    tmp, site, _, _ = installed
    code = ("import json, huracan, huracan.resources as r\n"
            "from huracan.data.validate import build_suite, load_suite\n"
            "from huracan import tuning\n"
            "print(json.dumps({'file': huracan.__file__, 'root': str(r.source_root()),\n"
            "  'conf': str(r.conf_dir()), 'exp': str(r.experiments_dir()),\n"
            "  'gx': str(r.expectations_dir()), 'tuned': str(r.tuned_presets_dir()),\n"
            "  'space': str(tuning.SPACE_DIR),\n"
            "  'suite_current': load_suite(r.expectations_dir() / 'ohlcv.json')\n"
            "                  == build_suite('ohlcv')}))\n")
    work = tmp / "work"
    proc = _run(["-c", code], site, work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(info["file"]).is_relative_to(site)
    assert info["root"] == "None"
    for key in ("conf", "exp", "gx", "space"):
        assert Path(info[key]).is_relative_to(site) and Path(info[key]).is_dir(), key
    assert Path(info["tuned"]) == work / "experiments" / "tuned"  # never site-packages
    assert info["suite_current"]


def test_installed_train_runs_on_the_shipped_sample(installed):
    tmp, site, _, _ = installed
    out = tmp / "train"
    t0 = time.perf_counter()
    proc = _run(["-m", "huracan.train", "model=lightgbm", "importance.enabled=false",
                 "explain.max_rows=10", f"tracking.store_dir={out / 'mlruns'}",
                 f"db.url=sqlite:///{out / 'h.db'}", f"data.quality_log={out / 'dq.jsonl'}",
                 f"hydra.run.dir={out / 'run'}"], site, tmp / "work")
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "run" / "result.json").read_text())
    assert result["model_type"] == "lightgbm" and result.get("status", "ok") != "failed"
    assert "val_composite_score" in json.dumps(result)
    assert (out / "mlruns").is_dir()
    # Hydra composed from the installed copy of conf/
    assert f"path: {site / 'huracan' / '_conf'}\n      schema: file\n      provider: main" in (
        out / "run" / ".hydra" / "hydra.yaml").read_text()
    print(f"installed huracan.train (lightgbm, shipped sample): {seconds:.1f} s")


@pytest.mark.skipif(not REAL_OHLCV.exists(), reason=f"{REAL_OHLCV} not found")
def test_installed_cli_validates_a_real_file(installed):
    tmp, site, _, _ = installed
    proc = _run(["-m", "huracan.cli", "validate", "ohlcv", str(REAL_OHLCV)], site, tmp / "work")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "PASS" in proc.stdout and "61246 rows" in proc.stdout


@pytest.mark.skipif(not SHARED_DATA.exists(), reason=f"{SHARED_DATA} not found")
def test_installed_presets_compose(installed):
    tmp, site, _, _ = installed
    code = (
        "import json\n"
        "from pathlib import Path\n"
        "from hydra import compose, initialize_config_dir\n"
        "from omegaconf import OmegaConf\n"
        "from huracan.config import register_resolvers\n"
        "from huracan.resources import conf_dir, experiments_dir\n"
        "register_resolvers()\n"
        "names = sorted(p.relative_to(experiments_dir()).with_suffix('').as_posix()\n"
        "               for p in experiments_dir().rglob('*.yaml'))\n"
        "out = {}\n"
        "with initialize_config_dir(config_dir=str(conf_dir()), version_base='1.3'):\n"
        "    for n in names:\n"
        "        cfg = compose('train', overrides=[f'experiment={n}'])\n"
        "        OmegaConf.resolve(cfg)\n"
        "        out[n] = [cfg.model._target_, Path(cfg.data.path).is_file()]\n"
        "print(json.dumps(out))\n")
    proc = _run(["-c", code], site, tmp / "work", HURACAN_SHARED_DATA=str(SHARED_DATA))
    assert proc.returncode == 0, proc.stderr[-3000:]
    composed = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = {p.relative_to(REPO / "experiments").with_suffix("").as_posix()
                for p in (REPO / "experiments").rglob("*.yaml")}
    assert set(composed) == expected and any(n.startswith("tuned/") for n in composed)
    for name, (target, data_found) in composed.items():
        assert target.startswith("huracan.models.") and data_found, name
    assert composed["tuned/btcusdt_1h_lstm"][0].endswith("LSTMForecaster")


def test_installed_train_composes_a_preset_written_in_the_working_dir(installed):
    """The documented recipe for presets ``huracan.tune`` writes outside a checkout
    (``./experiments/tuned``): link them as ``conf/experiment`` and add ``conf`` to Hydra's
    search path."""
    tmp, site, _, _ = installed
    work = tmp / "presets"
    (work / "experiments" / "tuned").mkdir(parents=True)
    (work / "conf").mkdir()
    (work / "conf" / "experiment").symlink_to("../experiments")
    (work / "experiments" / "tuned" / "mine.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /model: xgboost\nmodel:\n"
        "  n_estimators: 17\n")
    proc = _run(["-m", "huracan.train", f"hydra.searchpath=[file://{work / 'conf'}]",
                 "experiment=tuned/mine", "--cfg", "job"], site, work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "n_estimators: 17" in proc.stdout and "XGBoostForecaster" in proc.stdout
