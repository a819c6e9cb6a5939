"""Running Huracan's Hydra apps as commands in tests (imported by the test modules beside it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_module(module: str, args: list[str], tmp: Path,
               timeout: int = 900) -> subprocess.CompletedProcess:
    """``python -m MODULE ARGS`` with its MLflow store and brain store under ``tmp`` (the
    caller's ``MLFLOW_TRACKING_URI`` ignored), from the repository root."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    cmd = [sys.executable, "-m", module, *args, f"tracking.store_dir={tmp / 'mlruns'}",
           f"db.url=sqlite:///{tmp / 'brain.db'}"]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
