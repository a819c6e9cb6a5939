"""Validation throughput of the OHLCV suite, and what an incremental download adds to it.

    .venv/bin/python benchmarks/validation.py [--rows 1000000] [--repeats 3]

1. **Suite throughput**: :func:`huracan.data.validate.validate_frame` (GX suite + pandas grid,
   gap and coverage checks) on a ``--rows`` frame of REAL candles: the Binance BTC/USDT 5-minute
   sample (71,769 bars, huracan/datasets) tiled and re-stamped on a contiguous 1-minute grid
   (every row is a real candle, so every rule holds and no gap exists). Reported: wall seconds
   (median of ``--repeats``, after a warm-up), rows/s, and the GX part alone.
2. **Incremental download** (the nightly job): a lake holding real 1h candles up to a day, then
   :func:`huracan.data.sources.download_ohlcv` of the next day (24 bars) from a ccxt binance
   object whose HTTP layer is stubbed with the real candles (tests/data/fake_exchanges.py; ccxt's
   request building and parsing run for real, no network). Also a 1-minute day (1,440 bars) from
   the real 1m file. Reported: total wall time, the validation of the new bars, and the overhead
   (total - validation: lake lookup, ccxt calls and parsing, lake append).

Prints a table and the machine; writes JSON to ``benchmarks/results/validation.json``.
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

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "ohlcv"
SAMPLE_5M = REPO / "huracan" / "datasets" / "binance-spot_BTCUSDT_5m_20240101-20240906.parquet"
SPOT_1H = SHARED / "binance-spot_BTCUSDT_1h_20180101-20241231.parquet"
SPOT_1M = SHARED / "binance-spot_BTCUSDT_1m_20240402-20240407.parquet"
RESULTS = REPO / "benchmarks" / "results" / "validation.json"
sys.path.insert(0, str(REPO / "tests" / "data"))  # the offline exchange stub


def tiled_frame(rows: int) -> pd.DataFrame:
    """``rows`` real candles on a contiguous 1-minute grid (see the module docstring)."""
    base = pd.read_parquet(SAMPLE_5M)
    reps = -(-rows // len(base))
    df = pd.concat([base] * reps, ignore_index=True).iloc[:rows].copy()
    df["timestamp"] = pd.date_range("2020-01-01", periods=rows, freq="1min", tz="UTC").astype(
        "datetime64[ms, UTC]")
    return df


def bench_suite(rows: int, repeats: int) -> dict[str, float]:
    from huracan.data.validate import SuiteRunner, build_suite, validate_frame

    t0 = time.perf_counter()
    runner = SuiteRunner()
    startup = time.perf_counter() - t0
    frame = tiled_frame(rows)
    validate_frame(frame.iloc[:1000], "ohlcv", source="warm-up", timeframe="1m", runner=runner)
    totals, gx_only = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        report = validate_frame(frame, "ohlcv", source="bench", timeframe="1m", runner=runner)
        totals.append(time.perf_counter() - t0)
        assert report.passed and not report.gaps, report.lines()[:3]
        t0 = time.perf_counter()
        runner.run(frame, build_suite("ohlcv"), {"min_rows": 0})
        gx_only.append(time.perf_counter() - t0)
    total = statistics.median(totals)
    return {"rows": rows, "expectations": report.expectations, "seconds": total,
            "rows_per_s": rows / total, "gx_seconds": statistics.median(gx_only),
            "runner_startup_s": startup}


def bench_incremental(path: Path, timeframe: str, history_end: str, day_end: str,
                      repeats: int) -> dict[str, float]:
    from fake_exchanges import FakeExchangeServer, Series

    from huracan.data.lake import CandleLake
    from huracan.data.sources import Attempt, Downloader, download_ohlcv, make_exchange
    from huracan.data.validate import SuiteRunner

    candles = pd.read_parquet(path)
    runner = SuiteRunner()
    totals, validations, new_bars = [], [], 0
    for _ in range(repeats):
        server = FakeExchangeServer("binance", spot={"BTC/USDT": Series({timeframe: candles})})

        def factory(exchange_id: str, server: FakeExchangeServer = server):
            ex = make_exchange(exchange_id)
            ex.enableRateLimit = False
            return server.attach(ex)

        with tempfile.TemporaryDirectory() as tmp:
            lake = CandleLake(tmp)
            history = candles[candles.timestamp < pd.Timestamp(history_end, tz="UTC")]
            lake.append(history, "binance", "BTC/USDT", timeframe)
            dl = Downloader(["binance"], factory=factory,
                            now=lambda: pd.Timestamp(day_end, tz="UTC"))
            dl.client("binance", Attempt("binance"))  # markets loaded once per job, not timed
            t0 = time.perf_counter()
            result = download_ohlcv(dl, lake, "BTC/USDT", timeframe, history.timestamp.iloc[0],
                                    runner=runner)
            totals.append(time.perf_counter() - t0)
            validations.append(result.validation_s)
            new_bars = result.stored
            assert result.ok, result.summary()
    total, validation = statistics.median(totals), statistics.median(validations)
    return {"timeframe": timeframe, "history_bars": len(history), "new_bars": new_bars,
            "total_s": total, "validation_s": validation, "overhead_s": total - validation}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, Python "
          f"{platform.python_version()}, load average {os.getloadavg()[0]:.2f} (1 min)")
    suite = bench_suite(args.rows, args.repeats)
    print(f"ohlcv suite on {suite['rows']:,} rows ({suite['expectations']} GX expectations + "
          f"grid/gap/coverage checks): {suite['seconds']:.2f} s = {suite['rows_per_s']:,.0f} "
          f"rows/s (GX part {suite['gx_seconds']:.2f} s; runner start-up incl. GX import "
          f"{suite['runner_startup_s']:.1f} s, once per process)")
    nightly = [
        bench_incremental(SPOT_1H, "1h", "2024-12-30", "2024-12-31", args.repeats),
        bench_incremental(SPOT_1M, "1m", "2024-04-06", "2024-04-07", args.repeats),
    ]
    for n in nightly:
        print(f"incremental {n['timeframe']} download of {n['new_bars']} new bars onto "
              f"{n['history_bars']:,} stored: total {n['total_s']:.3f} s, validation of the new "
              f"bars {n['validation_s']:.3f} s, overhead {n['overhead_s']:.3f} s")
    out = {"suite": suite, "incremental": nightly, "machine": {
        "cores": os.cpu_count(), "arch": platform.machine(),
        "python": platform.python_version(), "load_1min": os.getloadavg()[0]}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
