"""Market-structure features vs price only: the zoo walk-forward on BTC/USDT 1h 2021-2024.

Runs ``python -m huracan.train experiment=features_btc_1h_wf -m`` (five models x
``features=price,full``) into a throw-away store and prints the stitched OOS metrics side by side,
and where the market-structure features rank (among all features) in each full-feature model's
SHAP and permutation importance (its last fold, on its last OOS step).

Usage: python benchmarks/features_report.py [--models lightgbm,xgboost,...] [--extra ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import pandas as pd
from sweep_runner import REPO, run_sweep

PRICE = {"ret_1", "ret_3", "ret_6", "ret_12", "ret_24", "rv_12", "rv_24", "rv_72", "atr_14",
         "range", "close_loc", "rsi_14", "macd", "macd_signal", "macd_hist", "vol_z_24",
         "vol_z_168", "hour_sin", "hour_cos", "dow_sin", "dow_cos"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="lightgbm,xgboost,lstm,cnn,transformer")
    parser.add_argument("--extra", nargs="*", default=[])
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "features.json"))
    args = parser.parse_args()
    from mlflow import MlflowClient

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        proc, wall, results = run_sweep(["experiment=features_btc_1h_wf",
                                         f"model={args.models}", *args.extra], tmp)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return proc.returncode
        client = MlflowClient(tracking_uri=f"sqlite:///{tmp}/mlruns/mlflow.db")
        perf, ranks = [], []
        for r in results:
            if r.get("status") != "ok":
                continue
            run = client.get_run(r["run_id"])
            fam = run.data.tags.get("feature_families", "price")
            m = r["metrics"]
            perf.append({"model": r["model_type"], "features": "price" if fam == "price"
                         else "full", "oos_sharpe": m["oos_sharpe"], "psr": m["oos_psr"],
                         "return_pct": 100 * m["oos_total_return"],
                         "max_drawdown_pct": 100 * m["oos_max_drawdown"],
                         "trades": int(m["oos_n_trades"]),
                         "coverage": run.data.tags.get("family_coverage", "")})
            if fam == "price":
                continue
            for method in ("shap", "permutation"):
                try:
                    table = pd.read_csv(client.download_artifacts(
                        r["run_id"], f"importance/{method}.csv", tmp))
                except Exception:  # importance failed for this run (logged in the job)
                    continue
                new = table[~table.feature.isin(PRICE)]
                best = new.nsmallest(3, "rank")
                ranks.append({"model": r["model_type"], "method": method,
                              "features": len(table),
                              "best_new": ", ".join(f"{f} #{k}" for f, k in
                                                     zip(best.feature, best["rank"],
                                                         strict=True)),
                              "new_in_top10": int((new["rank"] <= 10).sum())})
    table = pd.DataFrame(perf).pivot_table(index="model", columns="features",
                                           values=["oos_sharpe", "psr", "return_pct",
                                                   "max_drawdown_pct", "trades"])
    print(f"\nzoo walk-forward, BTC/USDT 1h OOS 2021-2024, sweep {wall:.0f} s")
    print(table.to_string(float_format=lambda x: f"{x:.2f}"))
    print("\nwhere the market-structure features rank (1 = most important):")
    print(pd.DataFrame(ranks).to_string(index=False))
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"performance": perf, "ranks": ranks, "wall_s": wall},
                               indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
