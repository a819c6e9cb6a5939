"""From forecast to position: the four trading rules on the same walk-forward forecasts.

For BTC, ETH and LTC 1h 2018-2024 (../shared/data), runs ``python -m huracan.train
experiment=rules_1h_wf data.base=<X> -m`` (LightGBM, monthly refits on the last year; one job per
rule) into a throw-away store and prints, per symbol and rule, the stitched OOS trades, Sharpe
(annualised), PSR, max drawdown and turnover (capital traded per year, x), beside buy & hold on the
same bars.

Usage: python benchmarks/rules_report.py [--only BTC,ETH,LTC] [--extra ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from sweep_runner import REPO, run_sweep


def report(symbol: str, extra: list[str]) -> dict:
    from mlflow import MlflowClient

    from huracan.data.ohlcv import bars_per_year
    from huracan.evaluation.metrics import max_drawdown, sharpe_ratio

    with tempfile.TemporaryDirectory() as tmp:
        proc, wall, results = run_sweep(["experiment=rules_1h_wf", f"data.base={symbol}",
                                         *extra], tmp)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit(proc.returncode)
        client = MlflowClient(tracking_uri=f"sqlite:///{tmp}/mlruns/mlflow.db")
        rows, bh = [], None
        for r in results:
            if r.get("status") != "ok":
                continue
            run = client.get_run(r["run_id"])
            ret = pd.read_parquet(client.download_artifacts(
                r["run_id"], "backtest/oos_returns.parquet", tmp))
            ppy = bars_per_year(r["timeframe"])
            m = r["metrics"]
            years = len(ret) / ppy
            kind = run.data.tags.get("rule_kind", "?")
            if kind == "threshold":
                fixed = run.data.params.get("rule.grid", "[]") in ("[]", "()")
                kind = "fixed threshold (today's)" if fixed else "validated threshold"
            rows.append({"rule": kind,
                         "trades": int(m["oos_n_trades"]), "sharpe": m["oos_sharpe"],
                         "psr": m["oos_psr"], "max_drawdown_pct": 100 * m["oos_max_drawdown"],
                         "return_pct": 100 * m["oos_total_return"],
                         "turnover_per_year": float(ret["turnover"].sum()) / years})
            if bh is None:
                a = ret["asset_return"].to_numpy()
                bh = {"sharpe": sharpe_ratio(a, ppy), "return_pct": 100 * (np.prod(1 + a) - 1),
                      "max_drawdown_pct": 100 * max_drawdown(a), "bars": len(a),
                      "start": str(ret["timestamp"].iloc[0]),
                      "end": str(ret["timestamp"].iloc[-1])}
    print(f"\n== {symbol}/USDT 1h walk-forward OOS {bh['start'][:10]} .. {bh['end'][:10]} "
          f"({bh['bars']} bars), sweep {wall:.0f} s")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    print(f"buy & hold: Sharpe {bh['sharpe']:.2f}, return {bh['return_pct']:.1f} %, "
          f"max drawdown {bh['max_drawdown_pct']:.1f} %")
    return {"symbol": symbol, "rules": rows, "buy_hold": bh, "wall_s": wall}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="BTC,ETH,LTC")
    parser.add_argument("--extra", nargs="*", default=[])
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "rules.json"))
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    outs = [report(s, args.extra) for s in args.only.split(",")]
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(outs, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
