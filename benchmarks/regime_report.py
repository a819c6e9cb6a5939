"""Volatility regimes per symbol: regime shares, per-regime winners, and the regime-switching
strategy vs the single best model vs buy & hold on the same walk-forward OOS bars.

Runs ``python -m huracan.train experiment=regimes_1h_wf data.base=X -m`` (LightGBM, XGBoost, LSTM;
365/60/90-day walk-forward windows; thresholds per fold from its train rows) into a throw-away
store, for the shipped sample (120/20/14-day windows) and BTC, ETH and LTC 1h 2018-2024 from
../shared/data, and prints per symbol:

- the regime shares of the OOS bars (the per-fold detectors' classification);
- per regime, each candidate's OOS Sharpe and trades there, and the model the registry's
  ``regime-<name>`` alias got (evidence or the fallback mapping) at the end of the sweep;
- switching (fold k trades the per-regime choice made on folds < k) vs the single best model
  (chosen the same way) vs buy & hold, on the same bars: Sharpe, max drawdown, return, trades.

Usage: python benchmarks/regime_report.py [--only sample,BTC,ETH,LTC] [--regime volatility|hmm]
       [--models lightgbm,xgboost]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from sweep_runner import REPO, run_sweep

from huracan.tracking.names import read_metric, regime_metric, switching_metric

DATASETS = {
    "sample": ["data=btc_sample", "split.train_bars=120d", "split.val_bars=20d",
               "split.step_bars=14d"],
    "BTC": ["data.base=BTC"],
    "ETH": ["data.base=ETH"],
    "LTC": ["data.base=LTC"],
}
REGIMES = ("low", "normal", "high", "extreme")


def report(name: str, overrides: list[str], regime: str, models: str | None = None) -> dict:
    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        extra = [f"model={models}"] if models else []
        proc, wall, results = run_sweep(["experiment=regimes_1h_wf", f"regime={regime}",
                                         *overrides, *extra], tmp)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit(proc.returncode)
        evidence = json.loads((Path(tmp) / "multirun" / "evidence.json").read_text())
        client = MlflowClient(tracking_uri=f"sqlite:///{tmp}/mlruns/mlflow.db")
        ok = [r for r in results if r.get("status") == "ok"]
        ref = ok[0]
        det = json.loads(Path(client.download_artifacts(
            ref["run_id"], "regime/detector.json", tmp)).read_text())
        oos = pd.read_parquet(client.download_artifacts(
            ref["run_id"], "backtest/oos_returns.parquet", tmp))
        shares = {str(k): float(v) for k, v in oos["regime"].value_counts(normalize=True).items()}
        model_name = ref["registered_model"]
        tags = client.get_registered_model(model_name).tags
        mapping = json.loads(tags.get("huracan.regime_map", "{}"))
        per_regime = []
        for r in ok:
            m = r["metrics"]
            row = {"model": r["model_type"], "oos_sharpe": m["oos_sharpe"],
                   "oos_trades": int(m["oos_n_trades"])}
            for g in REGIMES:
                row[f"{g}_sharpe"] = read_metric(m, regime_metric("oos", "sharpe", g), math.nan)
                row[f"{g}_trades"] = int(read_metric(m, regime_metric("oos", "n_trades", g), 0))
            per_regime.append(row)
        sw = evidence.get("switching") or {}
    out = {
        "dataset": name, "symbol": ref["symbol"], "regime_kind": regime, "wall_s": wall,
        "folds": ref["n_folds"], "shares": shares, "oos_bars": len(oos),
        "thresholds_last_fold": det.get("thresholds"),
        "candidates": per_regime,
        "winners": {g: {k: mapping.get(g, {}).get(k) for k in
                        ("model", "source", "exposure", "decision")} for g in REGIMES},
        "switching": sw.get("metrics"), "switching_bars": sw.get("bars"),
        "switching_start": sw.get("start"), "switching_end": sw.get("end"),
        "choices": sw.get("choices"),
    }
    print(f"\n== {name} ({out['symbol']}, regime={regime}): {out['folds']} folds, sweep "
          f"{wall:.0f} s")
    shares = ", ".join(f"{g} {100 * out['shares'][g]:.1f} %" for g in (*REGIMES, "unknown")
                       if g in out["shares"])
    print(f"OOS regime shares ({out['oos_bars']} bars): {shares}")
    print(pd.DataFrame(per_regime).to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    print("registry regime aliases: " + "; ".join(
        f"{g} -> {w['model']} ({w['source']}, x{w['exposure']}, {w['decision']})"
        for g, w in out["winners"].items()))
    m = out["switching"] or {}
    if m:
        print(f"switching vs single best vs buy & hold on {out['switching_bars']} bars "
              f"({str(out['switching_start'])[:10]} .. {str(out['switching_end'])[:10]}):")
        for s in ("switching", "single_best", "buy_hold"):
            v = {k: read_metric(m, switching_metric(f"{s}_{k}"), math.nan)
                 for k in ("sharpe", "max_drawdown", "total_return", "n_trades")}
            print(f"  {s:<12} Sharpe {v['sharpe']:6.2f}  max drawdown "
                  f"{100 * v['max_drawdown']:5.1f} %  return "
                  f"{100 * v['total_return']:8.1f} %  trades {v['n_trades']:6.0f}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(DATASETS))
    parser.add_argument("--regime", default="volatility", choices=("volatility", "hmm"))
    parser.add_argument("--models", default=None,
                        help="candidates (default the experiment's lightgbm,xgboost,lstm)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "regimes.json"))
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    t0 = time.perf_counter()
    outs = [report(k, DATASETS[k], args.regime, args.models) for k in args.only.split(",")]
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(outs, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
