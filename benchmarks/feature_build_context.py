"""Feature-building time with context symbols and higher timeframes (issue 25's cost figure).

For BTC/USDT, ETH/USDT and LTC/USDT 1h 2018-2024 (../shared/data, Binance spot, real gaps kept)
each built with ``features.context=[BTC/USDT, ETH/USDT]`` (the target skips itself) and
``features.timeframes=[4h, 1d]``: the wall time of :func:`huracan.stages.build_features` (own +
context + higher-timeframe columns and the label), summed over the three targets. Goal: under
10 s in total. Loading and validating the candles (:func:`huracan.stages.load_validated`, once
per file) is timed apart: it is the data step every job pays with or without context.
The price-only build (today's default) is timed beside it for the increment.

Run: PYTHONPATH=. python benchmarks/feature_build_context.py [--repeats 3]
Prints one line per target (best of ``--repeats``), the total, and the machine.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from execution_report import machine  # benchmarks/execution_report.py

from huracan import stages
from huracan.config import shared_data_root
from huracan.features.build import FeatureConfig
from huracan.settings import DataSettings

SYMBOLS = ("BTC/USDT", "ETH/USDT", "LTC/USDT")
CONTEXT = ["BTC/USDT", "ETH/USDT"]
TIMEFRAMES = ["4h", "1d"]


def data_of(symbol: str) -> DataSettings:
    pair = symbol.replace("/", "")
    path = Path(shared_data_root()) / "ohlcv" / f"binance-spot_{pair}_1h_20180101-20241231.parquet"
    return DataSettings(path=str(path), symbol=symbol, timeframe="1h")


def best_of(repeats: int, fn) -> tuple[float, object]:
    """The shortest wall time of ``repeats`` calls of ``fn`` (seconds) and its last result."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cfg = FeatureConfig(context=CONTEXT, timeframes=TIMEFRAMES)
    t0 = time.perf_counter()
    candles = {s: stages.load_validated(data_of(s), log_quality=False) for s in SYMBOLS}
    load_s = time.perf_counter() - t0
    total = total_own = 0.0
    for symbol in SYMBOLS:
        context = {s: candles[s] for s in CONTEXT if s != symbol}
        own_s, _ = best_of(args.repeats, lambda s=symbol: stages.build_features(
            candles[s], "1h", replace(cfg, context=[], timeframes=[])))
        secs, fs = best_of(args.repeats, lambda s=symbol, c=context: stages.build_features(
            candles[s], "1h", cfg, context=c))
        total += secs
        total_own += own_s
        print(f"{symbol}: {len(candles[symbol])} bars -> {len(fs.frame)} rows x "
              f"{len(fs.feature_names)} features (context {sorted(context)}, timeframes "
              f"{TIMEFRAMES}) in {secs:.2f} s (price features only: {own_s:.2f} s)")
    print(f"TOTAL feature building, 3 symbols with context + 2 higher timeframes: {total:.2f} s "
          f"(goal < 10 s; price features only {total_own:.2f} s); loading + validating the "
          f"3 candle files once: {load_s:.2f} s")
    print(f"machine: {machine()}")


if __name__ == "__main__":
    main()
