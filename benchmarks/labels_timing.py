"""Timing of the label and barrier kernels on a seeded random walk (60,000 1h bars).

Run: ``python benchmarks/labels_timing.py``. Prints the milliseconds of
:func:`huracan.labels.triple_barrier_labels`, :func:`~huracan.labels.average_uniqueness_weights`,
:func:`~huracan.labels.cusum_filter` and :func:`~huracan.labels.simulate_barrier_exits`.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from huracan.labels import (
    average_uniqueness_weights,
    barrier_volatility,
    cusum_filter,
    simulate_barrier_exits,
    triple_barrier_labels,
)


def main() -> None:
    rng = np.random.default_rng(0)
    n_bars, hold = 60_000, 24
    idx = pd.date_range("2020-01-01", periods=n_bars, freq="1h", tz="UTC")
    px = pd.Series(100 * np.exp(np.cumsum(rng.normal(0, 0.01, n_bars))), index=idx)
    hi = px * np.exp(np.abs(rng.normal(0, 0.004, n_bars)))
    lw = px * np.exp(-np.abs(rng.normal(0, 0.004, n_bars)))
    v = barrier_volatility(px, 24, hold)
    t = time.perf_counter()
    tb = triple_barrier_labels(px, hi, lw, volatility=v, pt_mult=1.0, sl_mult=1.0, max_holding=hold)
    t_tb = time.perf_counter() - t
    t = time.perf_counter()
    average_uniqueness_weights(tb.index, tb["end_time"], px.index)
    t_u = time.perf_counter() - t
    t = time.perf_counter()
    ev = cusum_filter(px, 2 * barrier_volatility(px, 24))
    t_cs = time.perf_counter() - t
    t = time.perf_counter()
    tr = simulate_barrier_exits(px, hi, lw, ev, 1, v, 1.0, 1.0, hold)
    t_sim = time.perf_counter() - t
    print(
        f"{n_bars} bars, max_holding {hold}: triple_barrier_labels {t_tb * 1e3:.1f} ms "
        f"({len(tb)} labels), average_uniqueness_weights {t_u * 1e3:.1f} ms, "
        f"cusum_filter {t_cs * 1e3:.1f} ms ({len(ev)} events), "
        f"simulate_barrier_exits {t_sim * 1e3:.1f} ms ({len(tr)} trades)"
    )


if __name__ == "__main__":
    main()
