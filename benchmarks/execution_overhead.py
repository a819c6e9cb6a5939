"""What the shared execution model costs beside the fold loop, on the shipped sample walk-forward.

Runs the stages of ``python -m huracan.train split=walk_forward`` (the shipped BTC/USDT sample,
LightGBM, the default backtest: next-open fills, 6 bps per unit of turnover) in process and
times:

- the fold loop: every fold's fit + predict (:func:`huracan.stages.fit_predict_folds`);
- the execution model: building the job's market bars once (:func:`huracan.stages.run_bars`),
  executing the stitched OOS positions (:func:`huracan.evaluation.execution.execute`) and the
  diagnostics (close fill, one bar late: two more ``execute`` calls);
- the whole evaluation stage (:func:`huracan.stages.evaluate_walk_forward`: rule fits, the
  executions, fold table, evaluation window), for scale.

The goal (issue 22) is an execution overhead under 10 % of the fold loop. Each timing is the best
of ``--repeat`` runs (the fold loop runs once).

Usage: python benchmarks/execution_overhead.py [--repeat 5] [--extra OVERRIDE ...]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def best_of(fn, repeat: int) -> float:
    """The fastest of ``repeat`` calls of ``fn``, seconds."""
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return min(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--extra", nargs="*", default=[], help="extra Hydra overrides")
    args = parser.parse_args()

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from huracan import stages
    from huracan.config import register_resolvers
    from huracan.data.ohlcv import bars_per_year
    from huracan.evaluation.execution import diagnostics, execute
    from huracan.settings import JobSettings

    register_resolvers()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["split=walk_forward", "data.quality_log=null",
                                          *args.extra])
    settings = JobSettings.from_dict(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
    data, bt = settings.data, settings.backtest
    tf, ppy = data.timeframe, bars_per_year(data.timeframe)
    candles = stages.load_validated(data, log_quality=False)
    fs = stages.build_features(candles, tf, settings.features, label=settings.label)
    folds = settings.split.folds(fs.frame.index, tf, fs.horizon)
    stages.seed_everything(settings.seed)
    t = time.perf_counter()
    outcomes = stages.fit_predict_folds(settings.make_model(), fs, folds, ("test",),
                                        timeframe=tf,
                                        labels=stages.LabelTimes.of(fs))
    loop_wall = time.perf_counter() - t
    fit_predict = sum(o.fit_seconds + o.predict_seconds for o in outcomes)

    inputs = stages.execution_inputs(bt, data, candles, None)
    t_bars = best_of(lambda: stages.run_bars(fs, bt, tf, inputs), args.repeat)
    bars = stages.run_bars(fs, bt, tf, inputs)
    rule = settings.make_rule()
    ev = stages.evaluate_walk_forward(fs, outcomes, bt, tf, "bench", rule, 0, bars)
    rows = np.concatenate([np.arange(o.fold.test.start, o.fold.test.stop) for o in outcomes])
    pos = ev.results["oos"].returns["position"].to_numpy()
    oos = bars.take(rows)
    t_exec = best_of(lambda: execute(pos, oos, ppy), args.repeat)
    res = execute(pos, oos, ppy)
    t_diag = best_of(lambda: diagnostics(res, oos, ppy, bt.fee), args.repeat)
    t_eval = best_of(lambda: stages.evaluate_walk_forward(fs, outcomes, bt, tf, "bench", rule, 0,
                                                          bars), args.repeat)
    execution = t_bars + t_exec + t_diag
    print(f"sample walk-forward: {len(outcomes)} folds, {len(fs.frame)} feature rows, "
          f"{len(rows)} OOS bars, {res.metrics.n_trades} trades")
    print(f"fold loop: fit + predict {fit_predict:.2f} s (loop wall {loop_wall:.2f} s)")
    print(f"execution model: market bars {t_bars * 1e3:.1f} ms, execute {t_exec * 1e3:.1f} ms, "
          f"diagnostics {t_diag * 1e3:.1f} ms = {execution * 1e3:.1f} ms "
          f"= {100 * execution / fit_predict:.2f} % of fit + predict (goal < 10 %)")
    print(f"whole evaluation stage (rule fits, executions, fold table, window): "
          f"{t_eval * 1e3:.1f} ms = {100 * t_eval / fit_predict:.2f} % of fit + predict")


if __name__ == "__main__":
    main()
