"""Child process for the lake crash tests: run one lake write and stop at a named checkpoint.

Usage: ``python lake_worker.py ROOT compact|append STOP_AT [BARS.parquet]``

At checkpoint ``STOP_AT`` (see :func:`huracan.data.lake._checkpoint`) it prints ``STOPPED
<name>``, flushes and waits to be killed (the test sends SIGKILL). Without reaching it, it
prints ``DONE`` and exits 0. Exchange/symbol/timeframe are fixed: binance BTC/USDT 1h.
"""

from __future__ import annotations

import sys
import time

import pandas as pd

from huracan.data import lake as lake_module


def main(argv: list[str]) -> int:
    root, action, stop_at = argv[:3]

    def stop(name: str) -> None:
        if name == stop_at:
            print(f"STOPPED {name}", flush=True)
            time.sleep(120)  # the test SIGKILLs us long before this ends

    lake_module._checkpoint = stop
    lake = lake_module.CandleLake(root)
    if action == "compact":
        lake.compact("binance", "BTC/USDT", "1h")
    elif action == "append":
        lake.append(pd.read_parquet(argv[3]), "binance", "BTC/USDT", "1h")
    else:
        raise SystemExit(f"unknown action {action!r}")
    print("DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
