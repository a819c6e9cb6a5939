"""Walk-forward parity with freqtrade FreqAI's example job: speed and out-of-sample results.

Runs ``python -m huracan.train experiment=freqai_parity -m`` (7 pairs x 10 daily folds = 70
LightGBM fits on freqtrade's own 5m X/BTC test candles, OOS 2018-01-20 .. 2018-01-30) into a
throw-away MLflow store and prints:

- wall time of the whole command (interpreter start-up, imports and Hydra included);
- fits, mean fit seconds, fit + predict seconds;
- framework overhead = (wall - fit - predict) / wall, and the fold-loop overhead = (time inside the
  fold loop but outside fit and predict: slicing, scaler) / fold-loop time;
- the stitched OOS metrics net of fees per pair, and pooled: equal capital per pair without
  rebalancing (net profit = mean of the pairs' compounded returns), every trade of every pair for
  trades, profit factor and win rate.

The FreqAI reference (freqtrade 2026.9, LightGBMRegressor, 569 features, ~1,500 training rows per
fit) took 568 s and 824 s wall on the same kind of 2-core machine, 7.8-11.4 s per model; its
backtest of the same period: net profit 0.60 %, 97 trades, profit factor 1.06, win rate 51.5 %.

Usage: python benchmarks/walkforward_parity.py [--out benchmarks/results/parity.json]
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
from sweep_runner import REPO, run_sweep  # benchmarks/ is on sys.path when run as a script

FREQAI = {"wall_s": (568.0, 824.0), "net_profit_pct": 0.60, "trades": 97, "profit_factor": 1.06,
          "win_rate_pct": 51.5}


def delayed_return(returns: pd.DataFrame, fee: float) -> float:
    """Compounded net return when every position starts one bar later than the backtest's (a
    diagnostic of how much of the result hangs on filling at the signal bar's close)."""
    pos = returns["position"].shift(1).fillna(0.0).to_numpy()
    turnover = abs(pd.Series(pos).diff().fillna(pos[0])).to_numpy()
    net = pos * returns["asset_return"].to_numpy() - fee * turnover
    return float((1 + net).prod() - 1)


def pooled(per_pair: list[dict], trades: pd.DataFrame) -> dict:
    """Equal capital per pair: net profit = mean compounded return; trades pooled."""
    gains = trades.loc[trades["return"] > 0, "return"].sum()
    losses = -trades.loc[trades["return"] < 0, "return"].sum()
    return {
        "net_profit_pct": 100 * sum(p["total_return"] for p in per_pair) / len(per_pair),
        "trades": len(trades),
        "profit_factor": float(gains / losses) if losses > 0 else float("inf"),
        "win_rate_pct": 100 * float((trades["return"] > 0).mean()) if len(trades) else 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "parity.json"))
    parser.add_argument("--extra", nargs="*", default=[], help="extra Hydra overrides")
    args = parser.parse_args()

    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        proc, wall, results = run_sweep(["experiment=freqai_parity", *args.extra], tmp)
        if proc.returncode != 0:
            print(proc.stderr[-4000:], file=sys.stderr)
            return proc.returncode
        client = MlflowClient(tracking_uri=f"sqlite:///{tmp}/mlruns/mlflow.db")
        fee = float(client.get_run(results[0]["run_id"]).data.params["backtest.fee"])
        folds, trades, per_pair = [], [], []
        for r in results:
            local = client.download_artifacts(r["run_id"], "walkforward", f"{tmp}/dl/{r['job']}")
            f = pd.read_parquet(Path(local) / "folds.parquet")
            f["symbol"] = r["symbol"]
            folds.append(f)
            local = client.download_artifacts(r["run_id"], "backtest", f"{tmp}/dl/{r['job']}")
            t = pd.read_parquet(Path(local) / "oos_trades.parquet")
            ret = pd.read_parquet(Path(local) / "oos_returns.parquet")
            t["symbol"] = r["symbol"]
            trades.append(t)
            m = r["metrics"]
            per_pair.append({"symbol": r["symbol"], "folds": r["n_folds"],
                             "oos_bars": int(m["oos_bars"]), "trades": int(m["oos_n_trades"]),
                             "total_return": m["oos_total_return"],
                             "net_profit_pct": 100 * m["oos_total_return"],
                             "profit_factor": m["oos_profit_factor"],
                             "win_rate_pct": 100 * m["oos_hit_ratio"],
                             "sharpe": m["oos_sharpe"], "max_drawdown_pct":
                             100 * m["oos_max_drawdown"],
                             "buy_hold_pct": 100 * float((1 + ret.asset_return).prod() - 1),
                             "delayed_1bar_pct": 100 * delayed_return(ret, fee)})
    fold_frame = pd.concat(folds, ignore_index=True)
    trade_frame = pd.concat(trades, ignore_index=True)
    fit = float(fold_frame["fit_seconds"].sum())
    pred = float(fold_frame["predict_seconds"].sum())
    loop = float(fold_frame["fold_seconds"].sum())
    summary = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"Python {platform.python_version()}",
        "wall_s": wall, "fits": len(fold_frame), "mean_fit_s": fit / len(fold_frame),
        "fit_s": fit, "predict_s": pred, "fold_loop_s": loop,
        "framework_overhead_share": (wall - fit - pred) / wall,
        "fold_overhead_share": (loop - fit - pred) / loop,
        "mean_train_rows": float(fold_frame["train_rows"].mean()),
        "per_pair": per_pair, "pooled": pooled(per_pair, trade_frame), "freqai": FREQAI,
    }
    print(f"machine: {summary['machine']}")
    print(f"wall time {wall:.1f} s for {len(fold_frame)} fits (FreqAI: "
          f"{FREQAI['wall_s'][0]:.0f}-{FREQAI['wall_s'][1]:.0f} s); mean fit "
          f"{summary['mean_fit_s']:.3f} s on {summary['mean_train_rows']:.0f} rows; "
          f"fit+predict {fit + pred:.1f} s")
    print(f"framework overhead {100 * summary['framework_overhead_share']:.0f} % of the wall "
          f"time; fold-loop overhead {100 * summary['fold_overhead_share']:.1f} % of the loop "
          f"({loop - fit - pred:.2f} s of {loop:.1f} s)")
    table = pd.DataFrame(per_pair).drop(columns=["total_return"])
    summary["pooled_buy_hold_pct"] = float(table["buy_hold_pct"].mean())
    summary["pooled_delayed_1bar_pct"] = float(table["delayed_1bar_pct"].mean())
    print(table.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    p = summary["pooled"]
    print(f"pooled: net profit {p['net_profit_pct']:.2f} %, {p['trades']} trades, profit factor "
          f"{p['profit_factor']:.2f}, win rate {p['win_rate_pct']:.1f} %   (FreqAI: "
          f"{FREQAI['net_profit_pct']:.2f} %, {FREQAI['trades']} trades, "
          f"{FREQAI['profit_factor']:.2f}, {FREQAI['win_rate_pct']:.1f} %)")
    print(f"pooled buy & hold {summary['pooled_buy_hold_pct']:.2f} %; the same positions one bar "
          f"later: {summary['pooled_delayed_1bar_pct']:.2f} %")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
