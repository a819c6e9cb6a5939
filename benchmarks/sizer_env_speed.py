"""Sizing environment speed: env steps per second with fixed actions (the brief's target is more
than 3,000 steps/s), moved here from the unit tests, where a timing assert flaked under load.

    .venv/bin/python benchmarks/sizer_env_speed.py [--steps 20000] [--repeats 3]

Data: 5,000 seeded synthetic 1h bars with every observation the environment can take (forecast
confidence, regime one-hot, liquidation density, importance trend, intrabar low/high returns) on
execution-model bars (next-open fills with a close-to-open gap, 6 bps per unit of turnover,
funding settled every 8 bars), 720-bar episodes; the action is fixed at size 0.5, leverage 2. The
median of ``--repeats`` runs is printed with the target.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from huracan.evaluation.execution import MarketBars
from huracan.sizing.env import EnvConfig, SizingData, SizingEnv

TARGET = 3000.0


def synthetic_data(n: int = 5000, seed: int = 0) -> SizingData:
    """``n`` seeded 1h bars with every optional observation (as the unit tests build them)."""
    base = np.random.default_rng(seed)
    r = base.normal(0.0, 0.006, n)              # next-bar returns
    f = 0.3 * r + base.normal(0.0, 0.004, n)    # a forecast correlated with them
    rng = np.random.default_rng(seed + 1)
    ts = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC")
    gap = rng.normal(0.0, 5e-5, n)
    z = np.zeros(n)
    bars = MarketBars(ts, gap, (1.0 + r) / (1.0 + gap) - 1.0, np.full(n, 6e-4), z,
                      np.where(np.arange(n) % 8 == 7, 1e-4, 0.0), z, z)
    return SizingData(ts, f, bars.next_return, confidence=rng.uniform(0, 1, n),
                      regime=np.eye(3)[rng.integers(0, 3, n)], bars=bars,
                      liquidation_density=rng.uniform(0, 3, n),
                      importance_trend=rng.normal(0, 1, (n, 2)),
                      low_return=np.minimum(bars.next_return, 0.0)
                      - np.abs(rng.normal(0, 0.003, n)),
                      high_return=np.maximum(bars.next_return, 0.0)
                      + np.abs(rng.normal(0, 0.003, n)))


def steps_per_second(steps: int) -> float:
    env = SizingEnv(synthetic_data(), EnvConfig(episode_bars=720))
    env.reset(seed=0)
    action = np.array([0.5, 2.0], dtype=np.float32)
    t0 = time.perf_counter()
    for _ in range(steps):
        *_, term, trunc, _ = env.step(action)
        if term or trunc:
            env.reset()
    return steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rates = [steps_per_second(args.steps) for _ in range(args.repeats)]
    median = statistics.median(rates)
    print(f"sizing env: {median:,.0f} steps/s (median of {args.repeats} x {args.steps:,} steps; "
          f"runs {', '.join(f'{r:,.0f}' for r in rates)}); target > {TARGET:,.0f}: "
          f"{'met' if median > TARGET else 'NOT met'}")


if __name__ == "__main__":
    main()
