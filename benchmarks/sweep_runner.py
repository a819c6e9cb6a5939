"""Shared by the benchmarks: run ``python -m huracan.train ... -m`` into a throw-away store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def run_sweep(overrides: list[str], tmp: str) -> tuple[subprocess.CompletedProcess, float,
                                                        list[dict[str, Any]]]:
    """Run a multirun with its MLflow store, brain store, Hydra dirs and logs under ``tmp``.

    Returns:
        the finished process, its wall time (seconds, interpreter start-up included) and the
        jobs' ``result.json`` records in job order.
    """
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    cmd = [sys.executable, "-m", "huracan.train", *overrides,
           f"tracking.store_dir={tmp}/mlruns", f"hydra.sweep.dir={tmp}/multirun",
           f"data.quality_log={tmp}/dq.jsonl", f"db.url=sqlite:///{tmp}/brain.db", "-m"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    results = [json.loads(p.read_text())
               for p in sorted(Path(tmp, "multirun").glob("*/result.json"))]
    return proc, wall, sorted(results, key=lambda r: int(r.get("job", 0)))
