"""Split one zoo run's wall time into stages and report the framework overhead.

Runs ``python -m huracan.train model=<zoo> -m`` into a throw-away MLflow store, then reads each
job's ``result.json`` (stage timings measured inside the job) and prints:

- start-up: a fresh interpreter importing what every job imports (measured apart, median of 3),
- per job and step (:data:`sweep_runner.STEPS`): load + validate, features (with the market
  bars), fit, predict (summed over folds), the rest of the fold loop, backtest (with regimes),
  SHAP, feature importance (permutation, correlation, storage, shift check), and the MLflow
  bookkeeping split into setup (store, run), metrics, params, tags, datasets, artifacts
  (frames, reports, tables), plots (built and saved), the pyfunc model, and registration,
- the rest: Hydra composition, the sweep's parent run and summary, the end-of-sweep gate, and
  in-job bookkeeping between stages (start-up included in it, as it is in the wall time),

and the framework overhead = everything but fit + predict, as a share of the total wall time.

Usage: python benchmarks/zoo_breakdown.py [--models lightgbm,xgboost,lstm,cnn,transformer]
       [--extra split=walk_forward ...]   (extra Hydra overrides, e.g. experiment=...)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

from sweep_runner import (  # benchmarks/ is on sys.path when run as a script
    MLFLOW_STEPS,
    REPO,
    format_steps,
    run_sweep,
    startup_seconds,
    step_seconds,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="lightgbm,xgboost,lstm,cnn,transformer")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "zoo.json"))
    parser.add_argument("--extra", nargs="*", default=[], help="extra Hydra overrides")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        proc, total, results = run_sweep([f"model={args.models}", *args.extra], tmp)
        if proc.returncode != 0:
            print(proc.stderr[-4000:], file=sys.stderr)
            return proc.returncode

    steps = [(f"{r['model_type']}", step_seconds(r["timings"])) for r in results]
    fitpred = sum(st["fit"] + st["predict"] for _, st in steps)
    sums = {step: sum(st[step] for _, st in steps) for step in steps[0][1]} if steps else {}
    staged = sum(sums.values())
    startup = startup_seconds()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; load average {os.getloadavg()[0]:.2f} "
          "(a shared machine: figures are indicative)")
    print(f"start-up (a fresh interpreter importing the job's modules): {startup:.2f} s")
    print(format_steps(steps))
    mlflow_s = sum(sums[s] for s in MLFLOW_STEPS)
    rest = total - staged
    overhead = total - fitpred
    print(f"MLflow bookkeeping (setup, metrics, params, tags, datasets, artifacts, plots, model, "
          f"registration): {mlflow_s:.1f} s")
    print(f"the rest (start-up, imports, Hydra, sweep run, end-of-sweep gate, bookkeeping): "
          f"{rest:.1f} s")
    print(f"total wall time: {total:.1f} s; fit+predict: {fitpred:.1f} s; "
          f"framework overhead: {overhead:.1f} s = {100 * overhead / total:.0f} % of the total")
    print("\nscored window (validation/test for a forward split, stitched OOS for walk-forward):")
    perf = []
    for r in results:
        m = r["metrics"]
        for p in ("oos",) if r.get("scheme") == "walk_forward" else ("val", "test"):
            perf.append({"model": r["model_type"], "window": p,
                         "bars": int(m.get(f"{p}_bars", 0)) or None,
                         "sharpe": m[f"{p}_sharpe"], "total_return_pct":
                         100 * m[f"{p}_total_return"], "max_drawdown_pct":
                         100 * m[f"{p}_max_drawdown"], "trades": int(m[f"{p}_n_trades"]),
                         "profit_factor": m[f"{p}_profit_factor"],
                         "composite": m[f"{p}_composite_score"]})
    import pandas as pd

    print(pd.DataFrame(perf).to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"total_s": total, "fit_predict_s": fitpred, "rest_s": rest,
                               "startup_s": startup, "mlflow_s": mlflow_s,
                               "load_average": os.getloadavg(),
                               "overhead_share": overhead / total, "totals_s": sums,
                               "extra": args.extra, "performance": perf,
                               "jobs": [{"model": name, **st} for name, st in steps]},
                              indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
