"""Split one zoo run's wall time into stages and report the framework overhead.

Runs ``python -m huracan.train model=<zoo> -m`` into a throw-away MLflow store, then reads each
job's ``result.json`` (stage timings measured inside the job) and prints:

- data + features (load, validate, resample, features, folds) per job,
- fit + predict per model (summed over folds),
- SHAP per model,
- feature importance per model (permutation, correlation, storage, shift check),
- MLflow logging per model (datasets, artifacts, plots, the pyfunc model),
- registry: registering the version per model,
- the rest: interpreter start-up, imports, Hydra composition, the sweep's parent run and summary,
  the end-of-sweep gate, and in-job bookkeeping between stages,

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

from sweep_runner import REPO, run_sweep  # benchmarks/ is on sys.path when run as a script


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

    cols = ("model", "folds", "data+feat", "fit", "predict", "shap", "importance", "logging",
            "registry")
    rows, fitpred = [], 0.0
    for r in results:
        t = r["timings"]
        fitpred += t.get("fit", 0.0) + t.get("predict", 0.0)
        in_loop = t.get("folds", 0.0) - t.get("fit", 0.0) - t.get("predict", 0.0)
        rows.append((r["model_type"], r.get("n_folds", 1),
                     t.get("data", 0.0) + t.get("features", 0.0) + in_loop
                     + t.get("backtest", 0.0),
                     t.get("fit", 0.0), t.get("predict", 0.0), t.get("shap", 0.0),
                     t.get("importance", 0.0), t.get("logging", 0.0), t.get("registry", 0.0)))
    staged = sum(sum(row[2:]) for row in rows)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    print(f"{cols[0]:<12}{cols[1]:>6}" + "".join(f"{c:>11}" for c in cols[2:]))
    for row in rows:
        print(f"{row[0]:<12}{row[1]:>6}" + "".join(f"{v:>11.2f}" for v in row[2:]))
    sums = {c: sum(row[i] for row in rows) for i, c in enumerate(cols) if i >= 2}
    rest = total - staged
    overhead = total - fitpred
    print("totals: " + ", ".join(f"{c} {v:.1f} s" for c, v in sums.items()))
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
                               "overhead_share": overhead / total, "totals_s": sums,
                               "extra": args.extra, "performance": perf,
                               "jobs": [dict(zip(cols, row, strict=True)) for row in rows]},
                              indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
