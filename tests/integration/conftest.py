"""Helpers for running the real entry point into a temporary MLflow store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from huracan.config import register_resolvers

REPO = Path(__file__).resolve().parents[2]


def run_train(args: list[str], tmp: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python -m huracan.train ARGS`` with its MLflow store, Hydra dirs and logs under ``tmp``."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    given = [a for a in args if a != "-m"]
    defaults = [
        f"tracking.store_dir={tmp / 'mlruns'}",
        f"data.quality_log={tmp / 'dq.jsonl'}",
        f"db.url=sqlite:///{tmp / 'brain.db'}",
        f"hydra.run.dir={tmp / 'outputs'}",
        f"hydra.sweep.dir={tmp / 'multirun'}",
    ]
    overrides = given + [d for d in defaults
                         if not any(a.startswith(d.split("=", 1)[0] + "=") for a in given)]
    multirun = ["-m"] if "-m" in args else []  # Hydra rejects overrides placed after -m
    cmd = [sys.executable, "-m", "huracan.train", *overrides, *multirun]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def train_cli():
    """The function :func:`run_train`, as a fixture."""
    return run_train


@pytest.fixture(scope="session")
def edge_sample_path(tmp_path_factory, sample_path):
    """The shipped sample's bars with synthetic prices carrying a real, slow edge (a candidate
    there beats cash): for the tests of gate mechanics that need a promotion
    (:func:`synthetic.edge_like_sample`)."""
    from synthetic import edge_like_sample  # tests/integration/synthetic.py

    return edge_like_sample(sample_path, tmp_path_factory.mktemp("edge") / "edge_5m.parquet")


@pytest.fixture()
def compose_cfg(tmp_path):
    """Compose the training config in-process (no Hydra run), pointed at ``tmp_path``."""
    register_resolvers()

    def _compose(*overrides: str):
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            return compose("train", overrides=[
                f"tracking.store_dir={tmp_path / 'mlruns'}", "tracking.tracking_uri=null",
                f"data.quality_log={tmp_path / 'dq.jsonl'}",
                f"db.url=sqlite:///{tmp_path / 'brain.db'}", *overrides])

    return _compose
