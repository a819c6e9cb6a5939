"""How long an Evidently drift report takes: 30 days and 1 year of 1h bars x all features.

    .venv/bin/python benchmarks/drift_timing.py [--repeats 3]

Real candles (Binance spot BTC/USDT 1h, ../shared/data), features built with the default
configuration (21 features) plus a forecast column and the label: what
:func:`huracan.analysis.drift.drift_report` gets from ``drift report`` for a production model.
The reference is a training window as the forward split makes it on the shipped sample (the
first 70 % of its 2024 feature rows, 4,068 rows); the current windows are

- ``30d``: the newest 30 days (720 bars, 2024-08-07 .. 2024-09-06),
- ``1y``: one year of bars (2023: 8,591 feature rows, the exchange's gaps and warm-ups removed),
- ``1y_vs_1y``: 2023 against a one-year reference (2022).

For each: the median of ``--repeats`` runs (after a warm-up that pays Evidently's import) of
``Report.run`` (Evidently's statistics AND the rendering of its widgets, which happens inside
``run``), our parsing, the scaling drift, the summary, ``save_html``, ``save_json``, and adding the
snapshot to a workspace; plus the same report with the drift preset alone (no
``DataSummaryPreset``) to show what the summary costs. Prints a table; writes JSON to
``benchmarks/results/drift_timing.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data" / "ohlcv"
SPOT_1H = SHARED / "binance-spot_BTCUSDT_1h_20180101-20241231.parquet"
SAMPLE_5M = REPO / "huracan" / "datasets" / "binance-spot_BTCUSDT_5m_20240101-20240906.parquet"
RESULTS = REPO / "benchmarks" / "results" / "drift_timing.json"


def _frames() -> tuple[pd.DataFrame, dict[str, tuple[pd.DataFrame, pd.DataFrame]], list[str]]:
    from huracan.data.ohlcv import load_ohlcv
    from huracan.features.build import FeatureConfig, build_features

    sample, _ = load_ohlcv(SAMPLE_5M, "1h")
    fs = build_features(sample, "1h", FeatureConfig())
    names = list(fs.feature_names)
    train = fs.frame.iloc[: int(0.7 * len(fs.frame))]
    candles = pd.read_parquet(SPOT_1H)
    long = build_features(candles, "1h", FeatureConfig()).frame
    cases = {
        "30d": (train, fs.frame[fs.frame.index > fs.frame.index.max() - pd.Timedelta("30d")]),
        "1y": (train, long[(long.index >= "2023-01-01") & (long.index < "2024-01-01")]),
        "1y_vs_1y": (long[(long.index >= "2022-01-01") & (long.index < "2023-01-01")],
                     long[(long.index >= "2023-01-01") & (long.index < "2024-01-01")]),
    }
    out = {}
    for key, (ref, cur) in cases.items():
        # a forecast column, as drift_for_model adds one (a fixed linear score of two features)
        out[key] = tuple(f.assign(prediction=0.05 * f["ret_1"] - 0.01 * f["rsi_14"] / 100)
                         for f in (ref, cur))
    return fs.frame, out, names


def _one(ref: pd.DataFrame, cur: pd.DataFrame, names: list[str], scaler, tmp: Path,
         summary: bool = True) -> dict[str, float]:
    from huracan.analysis.drift import add_to_workspace, drift_report

    t0 = time.perf_counter()
    rep = drift_report(ref, cur, names, prediction_col="prediction", target_col="label",
                       scaler=scaler, out_dir=tmp / "out")
    total = time.perf_counter() - t0
    t = dict(rep.timings)
    t["report_total"] = total
    if summary:
        t1 = time.perf_counter()
        add_to_workspace(rep.snapshot, tmp / "ws", "bench")
        t["workspace_add"] = time.perf_counter() - t1
    t["html_mb"] = (tmp / "out" / "drift_report.html").stat().st_size / 1e6
    return t


def _drift_only(ref: pd.DataFrame, cur: pd.DataFrame, names: list[str]) -> float:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    cols = [*names, "prediction", "label"]
    dd = DataDefinition(numerical_columns=cols)
    t0 = time.perf_counter()
    Report([DataDriftPreset(columns=names)], include_tests=True).run(
        current_data=Dataset.from_pandas(cur[cols].reset_index(drop=True), data_definition=dd),
        reference_data=Dataset.from_pandas(ref[cols].reset_index(drop=True), data_definition=dd))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from huracan.splits import fit_scaler

    t0 = time.perf_counter()
    import evidently  # noqa: F401  (the import is paid once per process)

    import_s = time.perf_counter() - t0
    _, cases, names = _frames()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        ref0, cur0 = cases["30d"]
        _one(ref0, cur0, names, fit_scaler(ref0[names].to_numpy(np.float32)), tmp)  # warm-up
        for key, (ref, cur) in cases.items():
            scaler = fit_scaler(ref[names].to_numpy(np.float32))
            runs = [_one(ref, cur, names, scaler, tmp) for _ in range(args.repeats)]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            med["drift_preset_only_run"] = statistics.median(
                _drift_only(ref, cur, names) for _ in range(args.repeats))
            med["reference_rows"], med["current_rows"] = len(ref), len(cur)
            results[key] = med
    cols = ["reference_rows", "current_rows", "evidently_run", "drift_preset_only_run",
            "parse", "scaling", "summary", "save_html", "save_json", "workspace_add",
            "report_total", "html_mb"]
    print(f"Evidently import (once per process): {import_s:.2f} s; {len(names)} features + "
          "forecast + label; median of", args.repeats, "runs (seconds)")
    print(pd.DataFrame(results).T[cols].to_string(float_format=lambda x: f"{x:.3f}"))
    machine = {"python": platform.python_version(), "cpu_count": os.cpu_count(),
               "machine": platform.machine(), "processor": platform.processor()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"import_s": import_s, "features": len(names),
                                   "repeats": args.repeats, "results": results,
                                   "machine": machine}, indent=2))
    print(f"written {RESULTS}")


if __name__ == "__main__":
    main()
