"""A child process running the live paper loop on a simulated clock over real candles served by
offline exchanges (paper_live_support), for the kill -9 test of test_paper_live.py.

    python paper_live_worker.py --db BRAIN.db --lake DIR --start TIME --max-bars N
        [--account NAME] [--kill-at-order K]

``--kill-at-order K``: SIGKILL this process inside the K-th bar step's transaction, right after
its ``paper_orders`` row was inserted and before the commit (a SQLAlchemy cursor event: the
core's code runs unchanged). Prints the LiveResult as one JSON line on a clean exit.
"""

from __future__ import annotations

import argparse
import json
import os
import signal

import pandas as pd
from paper_live_support import (
    MomentumProduction,
    SimClock,
    account_spec,
    make_downloader,
    make_servers,
    real_candles,
)
from sqlalchemy import event

from huracan.data.lake import CandleLake
from huracan.db.session import make_engine
from huracan.paper import live


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True)
    ap.add_argument("--lake", required=True)
    ap.add_argument("--start", required=True)
    ap.add_argument("--max-bars", type=int, required=True)
    ap.add_argument("--account", default="paper-BTCUSDT-1h")
    ap.add_argument("--kill-at-order", type=int, default=None)
    args = ap.parse_args()
    engine = make_engine(f"sqlite:///{args.db}")
    if not os.path.exists(args.db) or os.path.getsize(args.db) == 0:
        from huracan.db import migrate

        migrate.upgrade(engine)
    if args.kill_at_order is not None:
        seen = {"orders": 0}

        @event.listens_for(engine, "after_cursor_execute")
        def _kill(conn, cursor, statement, params, context, executemany):
            if statement.lstrip().upper().startswith("INSERT INTO PAPER_ORDERS"):
                seen["orders"] += 1
                if seen["orders"] == args.kill_at_order:
                    os.kill(os.getpid(), signal.SIGKILL)

    clock = SimClock(pd.Timestamp(args.start))
    candles = real_candles()
    production = MomentumProduction()
    res = live.run(engine, CandleLake(args.lake), make_downloader(make_servers(candles), clock),
                   production, account_spec(production, account=args.account),
                   now=clock.now, sleep=clock.sleep, max_bars=args.max_bars)
    print(json.dumps({"bars": res.bars, "decided": res.decided, "skipped": res.skipped,
                      "stopped": res.stopped}))


if __name__ == "__main__":
    main()
