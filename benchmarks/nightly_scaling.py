"""Scaling of the offline nightly: 1, 2 and 4 symbols, sequential vs the joblib fan-out.

Each configuration runs ``python -m huracan.nightly`` offline, from scratch (fresh lake, brain
store and MLflow store in a temporary directory), on real Binance 1h candles of
2024-01-01 .. 2024-09-06 (5,980 bars each, the shipped sample's period) read from
``../shared/data``: BTC/USDT, ETH/USDT, LTC/USDT spot and the BTC/USDT:USDT perpetual. Models:
LightGBM and XGBoost (forward split, the gate, importance, monitor; the sizer is skipped: it needs
a walk-forward forecaster). Configurations:

- ``sequential``: ``nightly.executor=basic nightly.launcher=basic`` (one thing at a time);
- ``joblib-models``: each symbol's model sweep through Hydra's joblib launcher (2 processes);
- ``joblib-symbols``: the symbols side by side in 2 joblib worker processes, each training
  process capped at cores / workers threads.

Prints wall seconds per configuration and the speed-up over ``sequential`` with as many symbols,
and writes them as JSON. The wall time is the whole command (interpreter start-up, imports, Hydra).

With the product's settings the symbols' nights differ in length: a symbol whose candidates are
all ineligible (too few validation trades) promotes nothing and skips the monitor (its Evidently
drift report is the longest step, about 22 s), so the longest symbol bounds the joblib wall time.
``--balanced`` sets ``selection.min_trades=1``: every symbol promotes and runs the whole chain,
which measures the fan-out itself on equal work.

Usage: python benchmarks/nightly_scaling.py [--symbols 1 2 4] [--configs ...] [--balanced]
       [--out FILE]
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

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from huracan.config import shared_data_path  # noqa: E402

SOURCES = {
    "BTC/USDT": "ohlcv/binance-spot_BTCUSDT_1h_20180101-20241231.parquet",
    "ETH/USDT": "ohlcv/binance-spot_ETHUSDT_1h_20180101-20241231.parquet",
    "LTC/USDT": "ohlcv/binance-spot_LTCUSDT_1h_20180101-20241231.parquet",
    "BTC/USDT:USDT": "ohlcv/binance-usdm_BTCUSDT_1h_20190908-20241231.parquet",
}
START, END = pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-09-06 05:00", tz="UTC")
CONFIGS = {
    "sequential": ["nightly.executor=basic", "nightly.launcher=basic"],
    "joblib-models": ["nightly.executor=basic", "nightly.launcher=joblib",
                      "nightly.launcher_jobs=2"],
    "joblib-symbols": ["nightly.executor=joblib", "nightly.n_jobs=2", "nightly.launcher=basic"],
}


def slice_inputs(tmp: Path, symbols: list[str]) -> list[tuple[str, Path]]:
    """The benchmark's input files: each symbol's 2024-01-01 .. 2024-09-06 bars."""
    out = []
    for sym in symbols:
        df = pd.read_parquet(shared_data_path(SOURCES[sym]))
        df = df[(df.timestamp >= START) & (df.timestamp < END)]
        path = tmp / f"{sym.replace('/', '-').replace(':', '_')}.parquet"
        df.to_parquet(path, index=False)
        out.append((sym, path))
    return out


def run_nightly(tmp: Path, inputs: list[tuple[str, Path]], config: list[str],
                balanced: bool = False) -> float:
    """Wall seconds of one offline night from scratch under ``tmp``.

    Raises:
        RuntimeError: the night failed (its stderr tail in the message).
    """
    syms = ",".join(f"'{s}'" for s, _ in inputs)
    imports = ",".join(f"{{symbol:'{s}',file:'{p}'}}" for s, p in inputs)
    cmd = [sys.executable, "-m", "huracan.nightly", f"symbols=[{syms}]", "timeframe=1h",
           "nightly.offline=true", f"nightly.imports=[{imports}]",
           "nightly.models=[lightgbm,xgboost]",
           f"db.url=sqlite:///{tmp / 'brain.db'}", f"tracking.store_dir={tmp / 'mlruns'}",
           f"nightly.lake={tmp / 'lake'}", f"nightly.work_dir={tmp / 'work'}",
           f"hydra.run.dir={tmp / 'hydra'}", "nightly.run_id=bench", *config]
    if balanced:
        cmd.append("nightly.train_overrides=['selection.min_trades=1']")
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "HURACAN_DB_URL", "HURACAN_LAKE")}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"nightly failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS))
    ap.add_argument("--balanced", action="store_true",
                    help="every symbol promotes and runs the whole chain (selection.min_trades=1)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "nightly_scaling.json"))
    args = ap.parse_args()
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
               f"Python {platform.python_version()}")
    print(f"machine: {machine}")
    results: list[dict[str, object]] = []
    for n in args.symbols:
        symbols = list(SOURCES)[:n]
        for name in args.configs:
            if name == "joblib-symbols" and n == 1:
                continue  # one symbol: nothing to fan out
            with tempfile.TemporaryDirectory(prefix="huracan-nightly-bench-") as d:
                tmp = Path(d)
                inputs = slice_inputs(tmp, symbols)
                wall = run_nightly(tmp, inputs, CONFIGS[name], args.balanced)
            seq = next((r["wall_s"] for r in results
                        if r["symbols"] == n and r["config"] == "sequential"), None)
            speedup = (float(seq) / wall) if seq else 1.0  # type: ignore[arg-type]
            results.append({"symbols": n, "config": name, "wall_s": round(wall, 1),
                            "speedup_vs_sequential": round(speedup, 2)})
            print(f"{n} symbol(s) {name:<15} {wall:8.1f} s   x{speedup:.2f}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": machine, "balanced": args.balanced,
                                          "results": results}, indent=2))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
