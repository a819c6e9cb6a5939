"""Decisions on evidence, per symbol: what a sweep picks, how much evidence it had, and buy & hold.

For the shipped BTC/USDT sample and for BTC, ETH and LTC 1h 2018-2024 from ../shared/data, runs
``python -m huracan.train experiment=evidence_gbdt_wf -m`` (six tree candidates, walk-forward;
the sample with 120/20/14-day windows, the long files with 365/60/30-day windows) into a
throw-away store and prints, per symbol: the candidate the sweep picked (the best eligible one by
OOS composite), its OOS Sharpe (annualised), PSR, DSR (against the six), trades and total return,
the sweep's PBO, the gate's decision, and buy & hold on the same OOS bars.

Usage: python benchmarks/evidence_report.py [--only sample,BTC,ETH,LTC]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sweep_runner import REPO, run_sweep

DATASETS = {
    "sample": ["data=btc_sample", "split.train_bars=120d", "split.val_bars=20d",
               "split.step_bars=14d"],
    "BTC": ["data.base=BTC"],
    "ETH": ["data.base=ETH"],
    "LTC": ["data.base=LTC"],
}


def report(name: str, overrides: list[str]) -> dict:
    from mlflow import MlflowClient

    from huracan.data.ohlcv import bars_per_year
    from huracan.evaluation.metrics import max_drawdown, sharpe_ratio

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        proc, wall, results = run_sweep(["experiment=evidence_gbdt_wf", *overrides], tmp)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit(proc.returncode)
        evidence = json.loads((Path(tmp) / "multirun" / "evidence.json").read_text())
        gate = json.loads((Path(tmp) / "multirun" / "gate.json").read_text())["decisions"]
        client = MlflowClient(tracking_uri=f"sqlite:///{tmp}/mlruns/mlflow.db")
        ok = [r for r in results if r.get("status") == "ok"]
        picked_id = gate[0]["candidate_run_id"] if gate and gate[0]["candidate_run_id"] else None
        picked = next((r for r in ok if r["run_id"] == picked_id), None)
        ref = picked or max(ok, key=lambda r: r["objective_value"])
        local = client.download_artifacts(ref["run_id"], "backtest/oos_returns.parquet", tmp)
        ret = pd.read_parquet(local)
        ppy = bars_per_year(ref["timeframe"])
        bh = ret["asset_return"].to_numpy()
        rows = []
        for r in ok:
            m = r["metrics"]
            params = client.get_run(r["run_id"]).data.params
            rows.append({"model": f"{r['model_type']} lr={params.get('model.learning_rate')}",
                         "oos_sharpe": m["oos_sharpe"], "psr": m["oos_psr"],
                         "dsr": evidence["dsr"][r["run_id"]]["oos_dsr"],
                         "trades": int(m["oos_n_trades"]),
                         "return_pct": 100 * m["oos_total_return"],
                         # the same positions filled one bar later (fill-assumption check)
                         "sharpe_lag1": m.get("oos_sharpe_lag1", float("nan")),
                         "return_lag1_pct": 100 * m.get("oos_total_return_lag1", float("nan")),
                         "picked": r["run_id"] == picked_id})
    out = {
        "dataset": name, "symbol": ref["symbol"], "wall_s": time.perf_counter() - t0,
        "oos_start": str(ret["timestamp"].iloc[0]), "oos_end": str(ret["timestamp"].iloc[-1]),
        "oos_bars": len(ret), "folds": ref["n_folds"], "candidates": rows,
        "pbo": (evidence.get("pbo") or {}).get("pbo"),
        "gate": gate[0] if gate else None,
        "buy_hold": {"sharpe": sharpe_ratio(bh, ppy), "return_pct": 100 * (np.prod(1 + bh) - 1),
                     "max_drawdown_pct": 100 * max_drawdown(bh)},
    }
    print(f"\n== {name} ({out['symbol']}): {out['folds']} folds, {out['oos_bars']} OOS bars "
          f"{out['oos_start'][:10]} .. {out['oos_end'][:10]}, sweep {wall:.0f} s")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print(f"PBO {out['pbo']}; gate: {out['gate']['decision'] if out['gate'] else '-'} "
          f"({out['gate']['reason'][:160] if out['gate'] else ''})")
    b = out["buy_hold"]
    print(f"buy & hold same bars: Sharpe {b['sharpe']:.2f}, return {b['return_pct']:.1f} %, "
          f"max drawdown {b['max_drawdown_pct']:.1f} %")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(DATASETS))
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "evidence.json"))
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    outs = [report(k, DATASETS[k]) for k in args.only.split(",")]
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(outs, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
