"""Walk-forward parity with freqtrade FreqAI's example job: speed and out-of-sample results.

Runs ``python -m huracan.train experiment=freqai_parity -m`` (7 pairs x 10 daily folds = 70
LightGBM fits on freqtrade's own 5m X/BTC test candles, OOS 2018-01-20 .. 2018-01-30) into a
throw-away MLflow store and prints:

- wall time of the whole command (interpreter start-up, imports and Hydra included);
- fits, mean fit seconds, fit + predict seconds;
- framework overhead = (wall - fit - predict) / wall, and the fold-loop overhead = (time inside the
  fold loop but outside fit and predict: slicing, scaler) / fold-loop time;
- per job and step (:data:`sweep_runner.STEPS`: load + validate, features, fit, predict,
  backtest, SHAP, importance, the MLflow bookkeeping by kind, registration) and the start-up of
  a fresh interpreter importing the job's modules;
- the stitched OOS results per pair and pooled (equal capital per pair without rebalancing: net
  profit = mean of the pairs' compounded returns; every trade of every pair for trades, profit
  factor and win rate), filled as freqtrade fills (the preset's ``backtest.fill=next_open``: the
  next candle's open, the fee the only cost), beside FreqAI's own figures;
- the same positions filled at the signal candle's close (``oos_total_return_close``, the fill
  the table reported before the execution model) and one candle late (``oos_total_return_lag1``),
  and buy & hold on the same bars under the same execution model.

FreqAI's own run of the job (freqtrade 2026.9, LightGBMRegressor, 569 features, ~1,500 training
rows per fit), repeated on this kind of 2-core machine the week of 2026-12-06: 174.6 s wall, 70
models, 97 trades, net profit +0.60 %, profit factor 1.06, win rate 51.5 % (the same result as
before: its backtest is deterministic; earlier runs took 568 s and 824 s wall).

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

import numpy as np
import pandas as pd
from sweep_runner import (  # benchmarks/ is on sys.path when run as a script
    MLFLOW_STEPS,
    REPO,
    format_steps,
    run_sweep,
    startup_seconds,
    step_seconds,
)

FREQAI = {"wall_s": 174.6, "models": 70, "net_profit_pct": 0.60, "trades": 97,
          "profit_factor": 1.06, "win_rate_pct": 51.5}


def buy_hold_return(returns: pd.DataFrame, periods_per_year: float) -> float:
    """Compounded net return of holding the pair over the bars of a logged OOS returns frame,
    under the execution model the run logged with it (position 1 from the first bar, paying its
    entry cost; :func:`huracan.evaluation.execution.bars_of_returns`)."""
    from huracan.evaluation.execution import bars_of_returns, execute

    bars = bars_of_returns(returns)
    return float(execute(np.ones(len(bars)), bars, periods_per_year).metrics.total_return)


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


def comparison_table(summary: dict) -> str:
    """Markdown table: Huracan at next-open fills beside FreqAI, pooled then per pair."""
    p, f = summary["pooled"], FREQAI
    lines = ["| | net profit | trades | profit factor | win rate |", "|---|---|---|---|---|",
             f"| Huracan, pooled (next open, fee only) | {p['net_profit_pct']:+.2f} % | "
             f"{p['trades']} | {p['profit_factor']:.2f} | {p['win_rate_pct']:.1f} % |",
             f"| FreqAI, pooled (next open, fee only) | {f['net_profit_pct']:+.2f} % | "
             f"{f['trades']} | {f['profit_factor']:.2f} | {f['win_rate_pct']:.1f} % |"]
    for r in summary["per_pair"]:
        lines.append(f"| Huracan {r['symbol']} | {r['net_profit_pct']:+.2f} % | {r['trades']} | "
                     f"{r['profit_factor']:.2f} | {r['win_rate_pct']:.1f} % |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "parity.json"))
    parser.add_argument("--extra", nargs="*", default=[], help="extra Hydra overrides")
    args = parser.parse_args()

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from mlflow import MlflowClient

    from huracan.data.ohlcv import bars_per_year

    with tempfile.TemporaryDirectory() as tmp:
        proc, wall, results = run_sweep(["experiment=freqai_parity", *args.extra], tmp)
        if proc.returncode != 0:
            print(proc.stderr[-4000:], file=sys.stderr)
            return proc.returncode
        client = MlflowClient(tracking_uri=f"sqlite:///{tmp}/mlruns/mlflow.db")
        params = client.get_run(results[0]["run_id"]).data.params
        fill = {k: params.get(f"backtest.{k}") for k in ("fill", "fee", "half_spread",
                                                         "slippage_bps")}
        ppy = bars_per_year(results[0]["timeframe"])
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
                             "buy_hold_pct": 100 * buy_hold_return(ret, ppy),
                             "close_fill_pct": 100 * m["oos_total_return_close"],
                             "lag1_pct": 100 * m["oos_total_return_lag1"]})
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
        "execution": fill, "per_pair": per_pair, "pooled": pooled(per_pair, trade_frame),
        "freqai": FREQAI,
    }
    print(f"machine: {summary['machine']}")
    print(f"execution: {fill}")
    print(f"wall time {wall:.1f} s for {len(fold_frame)} fits (FreqAI: "
          f"{FREQAI['wall_s']:.1f} s for {FREQAI['models']} models); mean fit "
          f"{summary['mean_fit_s']:.3f} s on {summary['mean_train_rows']:.0f} rows; "
          f"fit+predict {fit + pred:.1f} s")
    print(f"framework overhead {100 * summary['framework_overhead_share']:.0f} % of the wall "
          f"time; fold-loop overhead {100 * summary['fold_overhead_share']:.1f} % of the loop "
          f"({loop - fit - pred:.2f} s of {loop:.1f} s)")
    steps = [(r["symbol"].split("/")[0], step_seconds(r["timings"])) for r in results]
    startup = startup_seconds()
    staged = sum(sum(st.values()) for _, st in steps)
    mlflow_s = sum(st[k] for _, st in steps for k in MLFLOW_STEPS)
    summary |= {"steps": {name: st for name, st in steps}, "startup_s": startup,
                "mlflow_s": mlflow_s, "rest_s": wall - staged,
                "load_average": os.getloadavg()}
    print(f"per job and step (s); start-up {startup:.2f} s; MLflow bookkeeping {mlflow_s:.1f} s; "
          f"the rest (start-up, Hydra, sweep run, gate) {wall - staged:.1f} s; load average "
          f"{os.getloadavg()[0]:.2f} (a shared machine: figures are indicative)")
    print(format_steps(steps))
    table = pd.DataFrame(per_pair).drop(columns=["total_return"])
    summary["pooled_buy_hold_pct"] = float(table["buy_hold_pct"].mean())
    summary["pooled_close_fill_pct"] = float(table["close_fill_pct"].mean())
    summary["pooled_lag1_pct"] = float(table["lag1_pct"].mean())
    print(table.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    print()
    print(comparison_table(summary))
    print(f"\npooled buy & hold {summary['pooled_buy_hold_pct']:.2f} %; the same positions filled "
          f"at the signal candle's close {summary['pooled_close_fill_pct']:.2f} %, one candle "
          f"late {summary['pooled_lag1_pct']:.2f} %")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
