"""Throughput and memory of the paper replay (``huracan paper replay``) for a GBDT production
model.

Trains the test production model in process (tests/integration/paper_model.py: 20-tree
LightGBM on real Binance BTC/USDT 1h candles of 2019-01..04, threshold rule, Abdi-Ranaldo
half-spread), then replays it (:func:`huracan.paper.loop.replay`: one answer over the whole
request, the per-bar fill/mark/decide logic, ``--chunk`` bars per SQLite transaction) over
unseen bars from 2019-05-01 for 3 months, 1 year and 2 years, each into a fresh SQLite brain
store, and reports:

- bars/s of the whole replay (answer + ledger writes) and of its two parts; the goal (issue 24)
  is >= 1,000 bars/s for the year (a year of 1h bars in < 10 s);
- the peak of Python allocations during the replay (``tracemalloc``, a second run: tracing slows
  it down), to show how memory grows with the bars.

Usage: python benchmarks/paper_replay.py [--chunk 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPANS = (("3 months", "2019-08-01"), ("1 year", "2020-05-01"), ("2 years", "2021-05-01"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunk", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per span (best)")
    args = parser.parse_args()

    import pandas as pd

    sys.path.insert(0, str(REPO / "tests" / "integration"))
    import paper_model as pm

    from huracan.db import migrate
    from huracan.db.session import make_engine
    from huracan.paper import loop
    from huracan.paper.ledger import AccountSpec
    from huracan.paper.production import RegisteredProduction

    load0 = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="paper_replay_"))
    t = time.perf_counter()
    model = pm.train_production(tmp)
    print(f"trained {model.name} v{model.version} in {time.perf_counter() - t:.1f} s")
    prod = RegisteredProduction(model.client, model.name)
    execution = loop.execution_settings(prod.settings.backtest, pm.SYMBOL, pm.TIMEFRAME)
    start = pd.Timestamp("2019-05-01", tz="UTC")

    def run(label: str, end: str, k: int) -> loop.ReplayResult:
        engine = make_engine(f"sqlite:///{tmp / f'{label}-{k}.db'.replace(' ', '_')}")
        migrate.upgrade(engine)
        spec = AccountSpec("bench", pm.SYMBOL, "1h", "replay", model.name, prod.label, start,
                           execution)
        try:
            return loop.replay(engine, prod, spec, model.candles,
                               end=pd.Timestamp(end, tz="UTC"), chunk=args.chunk)
        finally:
            engine.dispose()

    rows = []
    for label, end in SPANS:
        runs = [run(label, end, k) for k in range(args.repeat)]
        best = min(runs, key=lambda r: r.seconds)
        tracemalloc.start()
        run(label, end, args.repeat)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        loop_s = best.seconds - best.answer_seconds
        rows.append((label, best.bars, best.seconds, best.bars / best.seconds,
                     best.answer_seconds, best.bars / max(loop_s, 1e-9), peak / 2**20,
                     best.decided, best.marks))
    print(f"\nchunk {args.chunk} bars per transaction, SQLite file store, best of {args.repeat}")
    print(f"{'span':<9} {'bars':>6} {'seconds':>8} {'bars/s':>8} {'answer s':>9} "
          f"{'ledger bars/s':>14} {'peak MiB':>9} {'decided':>8} {'marks':>6}")
    for r in rows:
        print(f"{r[0]:<9} {r[1]:>6} {r[2]:>8.2f} {r[3]:>8.0f} {r[4]:>9.2f} {r[5]:>14.0f} "
              f"{r[6]:>9.1f} {r[7]:>8} {r[8]:>6}")
    print(f"\nmachine: {os.cpu_count()} CPU(s); load average before {load0[0]:.2f}, "
          f"after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
