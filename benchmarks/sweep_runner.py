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


#: the steps a job's ``result.json`` timings are reported in (``huracan.pipeline.run_job``),
#: each the sum of its stage keys; ``fold loop other`` = ``folds - fit - predict`` (slicing,
#: scaling inside the loop)
STEPS: dict[str, tuple[str, ...]] = {
    "load+validate": ("data",),
    "features": ("features", "execution"),
    "fit": ("fit",),
    "predict": ("predict",),
    "fold loop other": (),
    "backtest": ("backtest", "regime"),
    "shap": ("shap",),
    "importance": ("importance",),
    "mlflow setup": ("tracking_setup",),
    "log metrics": ("log_metrics",),
    "log params": ("log_params",),
    "log tags": ("log_tags",),
    "log datasets": ("log_datasets",),
    "log artifacts": ("log_artifacts",),
    "log plots": ("log_plots",),
    "log model": ("log_model",),
    "registration": ("registry",),
}
#: the MLflow bookkeeping steps (everything a job writes to the tracking store)
MLFLOW_STEPS = ("mlflow setup", "log metrics", "log params", "log tags", "log datasets",
                "log artifacts", "log plots", "log model", "registration")


def step_seconds(timings: dict[str, float]) -> dict[str, float]:
    """One job's wall seconds per :data:`STEPS` step from its stage ``timings``. A job run by
    a version that timed ``logging`` as one stage (no ``log_*`` parts) reports it under
    ``log artifacts``."""
    t = {k: float(v) for k, v in timings.items()}
    out = {step: sum(t.get(k, 0.0) for k in keys) for step, keys in STEPS.items()}
    out["fold loop other"] = t.get("folds", 0.0) - t.get("fit", 0.0) - t.get("predict", 0.0)
    parts = ("log_datasets", "log_artifacts", "log_plots", "log_model")
    out["log artifacts"] += t.get("logging", 0.0) - sum(t.get(k, 0.0) for k in parts)
    return out


def startup_seconds(repeats: int = 3) -> float:
    """Median wall seconds of a fresh interpreter importing what every training job imports
    before its first stage (``huracan.train`` with the pipeline, stages, tracking and the
    sweep's callbacks): the start-up each ``python -m huracan.train`` pays once."""
    code = ("import huracan.train, huracan.pipeline, huracan.stages, huracan.tracking.run, "
            "huracan.registry.callback, huracan.tracking.callbacks")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def format_steps(rows: list[tuple[str, dict[str, float]]]) -> str:
    """A table of per-job step seconds (one column per job) with a total column."""
    names = [name for name, _ in rows]
    lines = [f"{'step':<17}" + "".join(f"{n[:11]:>12}" for n in names) + f"{'total':>10}"]
    for step in STEPS:
        values = [r[step] for _, r in rows]
        lines.append(f"{step:<17}" + "".join(f"{v:>12.2f}" for v in values)
                     + f"{sum(values):>10.2f}")
    return "\n".join(lines)
