"""Split one zoo run's wall time into stages and report the framework overhead.

Runs ``python -m huracan.train model=<zoo> -m`` into a throw-away MLflow store, then reads each
job's ``result.json`` (stage timings measured inside the job) and prints:

- data + features (load, validate, resample, features, split, scaler) per job,
- fit + predict per model,
- SHAP per model,
- MLflow logging per model (artifacts, plots, the pyfunc model),
- the rest: interpreter start-up, imports, Hydra composition, run bookkeeping,

and the framework overhead = everything but fit + predict, as a share of the total wall time.

Usage: python benchmarks/zoo_breakdown.py [--models lightgbm,xgboost,lstm,cnn,transformer]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="lightgbm,xgboost,lstm,cnn,transformer")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "zoo.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        cmd = [sys.executable, "-m", "huracan.train", f"model={args.models}",
               f"tracking.store_dir={tmp}/mlruns", f"hydra.sweep.dir={tmp}/multirun",
               f"data.quality_log={tmp}/dq.jsonl", "-m"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        total = time.perf_counter() - t0
        if proc.returncode != 0:
            print(proc.stderr[-4000:], file=sys.stderr)
            return proc.returncode
        results = [json.loads(p.read_text())
                   for p in sorted(Path(tmp, "multirun").glob("*/result.json"))]

    rows, fitpred = [], 0.0
    for r in results:
        t = r["timings"]
        fp = t.get("fit", 0.0) + t.get("predict", 0.0)
        fitpred += fp
        rows.append((r["model_type"], t.get("data", 0.0) + t.get("features", 0.0),
                     t.get("fit", 0.0), t.get("predict", 0.0), t.get("shap", 0.0),
                     t.get("logging", 0.0)))
    staged = sum(sum(row[1:]) for row in rows)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    print(f"{'model':<12}{'data+feat':>10}{'fit':>9}{'predict':>9}{'shap':>8}{'logging':>9}")
    for name, df, fit, pred, shap, logging in rows:
        print(f"{name:<12}{df:>10.2f}{fit:>9.2f}{pred:>9.2f}{shap:>8.2f}{logging:>9.2f}")
    rest = total - staged
    overhead = total - fitpred
    print(f"start-up, imports, Hydra, run bookkeeping: {rest:.1f} s")
    print(f"total wall time: {total:.1f} s; fit+predict: {fitpred:.1f} s; "
          f"framework overhead: {overhead:.1f} s = {100 * overhead / total:.0f} % of the total")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"total_s": total, "fit_predict_s": fitpred, "rest_s": rest,
                               "overhead_share": overhead / total,
                               "jobs": [dict(zip(("model", "data_features_s", "fit_s",
                                                  "predict_s", "shap_s", "logging_s"), row,
                                                 strict=True)) for row in rows]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
