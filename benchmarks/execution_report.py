"""Execution report: what walk-forward candidates earn under each fill, and whether any beats cash.

For BTC/USDT, ETH/USDT and LTC/USDT 1h 2018-2024 from ../shared/data, with the walk-forward
windows of ``experiment=evidence_gbdt_wf`` (365 days per fold, the last 60 early-stop, retrained
every 30 days: OOS 2019-01 .. 2024-12) and LightGBM and XGBoost as the sweep's candidates (the
preset's default hyperparameters, one thread each, seeded), each candidate's walk-forward is
trained ONCE through the library's own stages (``load_validated``, ``build_features``,
``split.folds``, ``fit_predict_folds``, ``evaluate_walk_forward``); its stitched OOS positions
are then re-executed by the one execution model (``market_bars`` + ``execute``) under each fill:

- ``close``: filled at the signal bar's close, the fee only (the old backtest; a diagnostic);
- ``next_open``: filled at the next bar's open, the fee only (``backtest.fee`` as configured);
- ``next_open + 2 bps``: the backtest's default costs (``backtest.half_spread=1`` bps and
  ``backtest.slippage_bps=1`` on top of the fee), what a run scores by default;
- ``next_open + AR spread``: the fee plus the Abdi & Ranaldo (2017) half-spread estimated per bar
  over the trailing ``backtest.spread_window`` bars (``backtest.half_spread=abdi_ranaldo``): the
  basis of the evidence columns (breakeven, PSR, beats cash, buy & hold);
- ``delay 5m``: filled at the close of the first 5m bar closing at least 5 minutes after the
  signal bar's close (``backtest.fill=delay``, ``backtest.latency=5m``), the fee only, on the OOS
  bars the 2024 5m files cover (BTC and ETH 2024-01-01 .. 2024-09-06; there is no LTC 5m file),
  beside ``next_open`` on exactly those bars;
- ``lag1``: the same positions one bar later, ``next_open`` with the fee only (an edge that lives
  in the first bar after a signal disappears there).

Plus, under ``next_open + AR spread``: breakeven cost (extra bps per unit turnover at which the net
return is 0), IC and rank IC of the forecast against the realised label (and the per-fold mean IC
and ICIR), buy & hold's Sharpe on the same bars, trades, net return, PSR and
``huracan.evaluation.evidence.beats_cash(net, trades, min_psr=0.9)`` (also under the default
costs); and how many of the
candidates clear cash. Sharpe figures do not depend on the machine's load; wall times do.

Usage: python benchmarks/execution_report.py [--symbols BTC,ETH,LTC] [--models lightgbm,xgboost]
       [--learning-rates 0.01,0.03,0.1] [--quick] [--out benchmarks/results/execution_report.json]
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]

#: the fills of the report, in column order: (key, column header)
FILL_COLUMNS = (
    ("close", "close"),
    ("next_open", "next_open"),
    ("default", "next_open + 2 bps ³"),
    ("spread", "next_open + AR spread"),
    ("delay", "delay 5m ¹"),
    ("next_open_sub", "next_open, same bars ¹"),
    ("lag1", "lag1 ²"),
)
#: --quick: one symbol, two monthly folds in 2024 (inside the 5m files), smaller trees
QUICK = {"symbols": "BTC", "models": "lightgbm",
         "overrides": ["split.oos_start=2024-01-01", "split.oos_end=2024-02-15",
                       "model.n_estimators=100"]}
MIN_PSR = 0.9


def machine() -> dict[str, Any]:
    """nproc, CPU model (/proc/cpuinfo), Python, load average and UTC time."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "load_avg": [round(x, 2) for x in load],
            "utc": pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%d %H:%M")}


def compose_settings(symbol: str, candidate: Sequence[str], overrides: Sequence[str]) -> Any:
    """The typed settings of ``experiment=evidence_gbdt_wf`` on ``symbol`` with a candidate's
    overrides (``model=...``) on one thread (``model.n_jobs=1``: deterministic and
    load-insensitive)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from huracan.config import register_resolvers
    from huracan.settings import JobSettings

    register_resolvers()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=evidence_gbdt_wf", f"data.base={symbol}",
                                          *candidate, "model.n_jobs=1", "model.log_period=0",
                                          "data.quality_log=null", *overrides])
    return JobSettings.from_dict(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]


def fine_path(symbol: str) -> str | None:
    """The shared 5m spot file of ``symbol`` (BTC, ETH: 2024-01-01 .. 2024-09-06), or None."""
    from huracan.config import shared_data_root

    found = sorted(glob.glob(os.path.join(shared_data_root(), "ohlcv",
                                          f"binance-spot_{symbol}USDT_5m_*.parquet")))
    return found[0] if found else None


def delay_covered(timestamps: pd.DatetimeIndex, bar: pd.Timedelta, fine: pd.DataFrame,
                  step: pd.Timedelta, latency: pd.Timedelta) -> np.ndarray:
    """Bool per bar: a bar of the finer series (open times ``fine.timestamp``, size ``step``)
    closes at least ``latency`` after the bar's close and no later than the next bar's close,
    the condition of :func:`huracan.evaluation.execution.delay_fills` (which raises on any bar
    without one): the bars ``fill=delay`` can be scored on."""
    closes = pd.DatetimeIndex(pd.to_datetime(fine["timestamp"], utc=True)).sort_values() + step
    if len(closes) == 0:
        return np.zeros(len(timestamps), dtype=bool)
    target = timestamps + bar + latency
    k = closes.searchsorted(target, "left")
    inside = k < len(closes)
    when = closes[np.minimum(k, len(closes) - 1)]
    return np.asarray(inside & (when <= timestamps + 2 * bar))


def spread_stats(half_spread: np.ndarray) -> dict[str, float]:
    """Mean, median and 90th percentile (bps) of per-bar half-spreads (fractions), and the
    share of bars where the estimate is 0 (Abdi & Ranaldo's negative means set to 0)."""
    h = np.asarray(half_spread, dtype=np.float64) / 1e-4
    return {"half_spread_bps_mean": float(h.mean()), "half_spread_bps_median": float(np.median(h)),
            "half_spread_bps_p90": float(np.percentile(h, 90)),
            "half_spread_zero_share": float((h <= 1e-12).mean())}


def candidates(models: Sequence[str], learning_rates: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``(name, overrides)`` per candidate: each model at the preset's learning rate, or at each
    of ``learning_rates`` (the evidence sweep's grid is 0.01, 0.03, 0.1)."""
    if not learning_rates:
        return [(m, [f"model={m}"]) for m in models]
    return [(f"{m} lr={lr}", [f"model={m}", f"model.learning_rate={lr}"])
            for m in models for lr in learning_rates]


def candidate_row(symbol: str, model: str, results: dict[str, Any], diag: dict[str, float],
                  verdict: Any, bh_sharpe: float, extra: dict[str, Any],
                  verdict_default: Any = None) -> dict[str, Any]:
    """One row of the report: the Sharpe per fill (NaN where not scored) and the evidence."""
    from huracan.evaluation.execution import breakeven_bps

    row: dict[str, Any] = {"symbol": symbol, "model": model}
    for key, _ in FILL_COLUMNS:
        res = results.get(key)
        row[f"sharpe_{key}"] = float(res.metrics.sharpe) if res is not None else math.nan
    spread = results["spread"].metrics
    fee_only = results["next_open"].returns
    row.update({
        "breakeven_bps": diag["oos_breakeven_bps"],
        "breakeven_bps_fee_only": breakeven_bps(fee_only["strategy_return"].to_numpy(np.float64),
                                                fee_only["turnover"].to_numpy(np.float64)),
        "ic": diag["oos_ic"],
        "rank_ic": diag["oos_rank_ic"], "ic_mean": diag.get("oos_ic_mean", math.nan),
        "icir": diag.get("oos_icir", math.nan), "buy_hold_sharpe": bh_sharpe,
        "trades": int(spread.n_trades), "total_return": float(spread.total_return),
        "psr": float(verdict.psr), "beats_cash": bool(verdict.beats),
        "cash_reason": verdict.reason,
        "psr_default": math.nan if verdict_default is None else float(verdict_default.psr),
        "beats_cash_default": None if verdict_default is None else bool(verdict_default.beats),
        **extra,
    })
    return row


def _fmt(x: Any, digits: int = 2) -> str:
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def markdown_tables(rows: Sequence[dict[str, Any]], notes: Sequence[str] = ()) -> str:
    """The report's two Markdown tables (net Sharpe per fill; evidence under next_open + AR
    spread) and the count of candidates that clear cash, per symbol and in all.

    Args:
        rows: :func:`candidate_row` dicts (keys ``symbol``, ``model``, ``sharpe_<fill>`` for each
            fill of :data:`FILL_COLUMNS`, ``breakeven_bps``, ``ic``, ``rank_ic``, ``ic_mean``,
            ``icir``, ``buy_hold_sharpe``, ``trades``, ``total_return`` (fraction), ``psr``,
            ``beats_cash``; optionally ``delay_bars``, ``oos_bars``, ``psr_default`` and
            ``beats_cash_default`` (under the default costs)).
        notes: lines appended after the count (the footnotes of the column headers).

    Raises:
        ValueError: no rows.
    """
    if not rows:
        raise ValueError("no candidate rows to tabulate")
    head = ["symbol", "candidate", *(h for _, h in FILL_COLUMNS)]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["symbol"], r["model"], *(_fmt(r[f"sharpe_{k}"]) for k, _ in FILL_COLUMNS)]
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    head = ["symbol", "candidate", "OOS bars", "trades", "net return + AR spread",
            "breakeven bps: fee only / + AR spread", "IC",
            "rank IC", "fold IC mean / ICIR", "buy & hold Sharpe",
            "PSR: +2 bps / + AR spread", "beats cash: +2 bps / + AR spread"]
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["symbol"], r["model"], _fmt(r.get("oos_bars")), _fmt(r["trades"]),
                 f"{100 * r['total_return']:+.1f} %",
                 f"{_fmt(r.get('breakeven_bps_fee_only'), 1)} / {_fmt(r['breakeven_bps'], 1)}",
                 _fmt(r["ic"], 4), _fmt(r["rank_ic"], 4),
                 f"{_fmt(r['ic_mean'], 4)} / {_fmt(r['icir'], 2)}",
                 _fmt(r["buy_hold_sharpe"]),
                 f"{_fmt(r.get('psr_default'), 3)} / {_fmt(r['psr'], 3)}",
                 f"{_fmt(r.get('beats_cash_default'))} / {_fmt(r['beats_cash'])}"]
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    symbols = list(dict.fromkeys(r["symbol"] for r in rows))
    per = ", ".join(f"{s} {sum(r['beats_cash'] for r in rows if r['symbol'] == s)} of "
                    f"{sum(1 for r in rows if r['symbol'] == s)}" for s in symbols)
    total = sum(bool(r["beats_cash"]) for r in rows)
    out.append(f"Candidates that clear cash (next_open + AR spread, PSR >= {MIN_PSR:g}): "
               f"{total} of {len(rows)} ({per}).")
    if all(r.get("beats_cash_default") is not None for r in rows):
        per = ", ".join(
            f"{s} {sum(bool(r['beats_cash_default']) for r in rows if r['symbol'] == s)} of "
            f"{sum(1 for r in rows if r['symbol'] == s)}" for s in symbols)
        total = sum(bool(r["beats_cash_default"]) for r in rows)
        out.append(f"Under the default costs (next_open + 2 bps): {total} of {len(rows)} "
                   f"({per}).")
    return "\n".join([*out, *notes])


def footnotes(symbols_info: Sequence[dict[str, Any]]) -> list[str]:
    """The footnotes of the delay and lag1 columns, with each symbol's delay window."""
    first = symbols_info[0]
    where = "; ".join(
        f"{s['symbol']} {s['delay_bars']:,} bars {s['delay_start'][:16]} .. {s['delay_end'][:16]}"
        if s["delay_bars"] else f"{s['symbol']}: no 5m file, n/a" for s in symbols_info)
    spread = "; ".join(
        f"{s['symbol']} mean {s['half_spread_bps_mean']:.2f} bps, median "
        f"{s['half_spread_bps_median']:.2f}, 0 on {100 * s['half_spread_zero_share']:.0f} % of "
        f"bars" for s in symbols_info)
    return ["",
            "¹ delay 5m: filled at the close of the first 5m bar closing >= 5 min after the signal "
            "bar's close, fee only, on the OOS bars the 2024 5m files cover, beside next_open "
            f"(fee only) on exactly those bars ({where}).",
            "² lag1: the same positions one bar later, next_open, fee only.",
            f"³ the backtest's default costs: fee + {_fmt(first['default_half_spread'], 0)} bps "
            f"half-spread + {_fmt(first['default_slippage_bps'], 0)} bps slippage per unit of "
            "turnover.",
            f"AR spread: Abdi & Ranaldo (2017) half-spread per bar over the trailing "
            f"{symbols_info[0].get('spread_window', 168)} bars ({spread})."]


def report_symbol(symbol: str, cands: Sequence[tuple[str, list[str]]], overrides: Sequence[str]
                  ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Train each candidate's walk-forward once on ``symbol`` and score it under every fill."""
    from huracan import stages
    from huracan.data.ohlcv import bars_per_year, timeframe_to_timedelta
    from huracan.evaluation.diagnostics import window_diagnostics
    from huracan.evaluation.evidence import beats_cash
    from huracan.evaluation.execution import execute, lagged, market_bars

    t_symbol = time.perf_counter()
    base = compose_settings(symbol, cands[0][1], overrides)
    data, tf = base.data, base.data.timeframe
    ppy, bar = bars_per_year(tf), timeframe_to_timedelta(tf)
    candles = stages.load_validated(data, log_quality=False)
    sources = stages.family_sources(base.features, data, candles, None)
    fs = stages.build_features(candles, tf, base.features, label=base.label, sources=sources)
    folds = base.split.folds(pd.DatetimeIndex(fs.frame.index), tf, fs.horizon)
    labels = stages.LabelTimes.of(fs, base.label.weights == "uniqueness",
                                  base.train.row_weights(fs.frame))
    rows = np.concatenate([np.arange(f.test.start, f.test.stop) for f in folds])
    ts = pd.DatetimeIndex(fs.frame.index)[rows]
    fee_only = replace(base.backtest, fill="next_open", half_spread=0.0, slippage_bps=0.0)
    cfgs = {"close": replace(fee_only, fill="close"), "next_open": fee_only,
            "spread": replace(fee_only, half_spread="abdi_ranaldo"),
            "default": replace(base.backtest, fill="next_open")}
    t0 = time.perf_counter()
    bars = {k: stages.run_bars(fs, c, tf) for k, c in cfgs.items()}
    oos = {k: b.take(rows) for k, b in bars.items()}
    bars_s = time.perf_counter() - t0
    # fill=delay on the OOS bars the finer series covers
    path = fine_path(symbol)
    sub = np.zeros(len(rows), dtype=bool)
    delay_bars = None
    if path is not None:
        fine, fine_tf = stages.fine_series(replace(data, fine_path=path), ts[0], ts[-1] + 3 * bar)
        delay_cfg = replace(fee_only, fill="delay", latency="5m")
        sub = delay_covered(ts, bar, fine, timeframe_to_timedelta(fine_tf),
                            pd.Timedelta(delay_cfg.latency))
        if sub.any():
            frame = fs.frame.iloc[rows[sub]]
            delay_bars = market_bars(frame, delay_cfg, ppy, fine=fine, fine_timeframe=fine_tf)
    info = {"symbol": data.symbol, "candles": len(candles), "feature_rows": len(fs.frame),
            "features": len(fs.feature_names), "folds": len(folds), "oos_bars": len(rows),
            "oos_start": str(ts[0]), "oos_end": str(ts[-1]),
            "delay_bars": int(sub.sum()),
            "delay_start": str(ts[sub][0]) if sub.any() else None,
            "delay_end": str(ts[sub][-1]) if sub.any() else None,
            "fine_path": path, **spread_stats(oos["spread"].cost_lin - fee_only.fee),
            "fee_bps": fee_only.fee / 1e-4, "spread_window": fee_only.spread_window,
            "default_half_spread": cfgs["default"].half_spread,
            "default_slippage_bps": cfgs["default"].slippage_bps,
            "threshold": fee_only.threshold,
            "bars_seconds": bars_s, "candidates": {}}
    out = []
    for i, (model, candidate) in enumerate(cands):
        settings = base if i == 0 else compose_settings(symbol, candidate, overrides)
        rule = settings.make_rule()
        parts = ("val", "test") if rule.needs_validation else ("test",)
        stages.seed_everything(settings.seed)
        t0 = time.perf_counter()
        outcomes = stages.fit_predict_folds(settings.make_model(), fs, folds, parts, n_jobs=1,
                                            timeframe=tf, labels=labels)
        loop_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        ev = stages.evaluate_walk_forward(fs, outcomes, cfgs["spread"], tf, symbol, rule, 0,
                                          bars["spread"])
        scored = ev.results["oos"]
        pos = scored.returns["position"].to_numpy(np.float64)
        preds = scored.returns["prediction"].to_numpy(np.float64)
        lab = scored.returns["label"].to_numpy(np.float64)
        results = {k: execute(pos, oos[k], ppy, predictions=preds, labels=lab)
                   for k in ("close", "next_open", "default", "spread")}
        results["lag1"] = execute(lagged(pos), oos["next_open"], ppy)
        if delay_bars is not None:
            results["delay"] = execute(pos[sub], delay_bars, ppy)
            results["next_open_sub"] = execute(pos[sub], oos["next_open"].take(sub), ppy)
        spread_net = results["spread"].returns["strategy_return"].to_numpy(np.float64)
        if not np.allclose(spread_net, scored.returns["strategy_return"].to_numpy(np.float64)):
            raise AssertionError("re-execution differs from the pipeline's own backtest")
        bench = execute(np.ones(len(rows)), oos["spread"], ppy)
        diag = window_diagnostics(results["spread"],
                                  bench.returns["strategy_return"].to_numpy(np.float64),
                                  scored.returns["fold"].to_numpy(), split="oos",
                                  periods_per_year=ppy)
        verdict = beats_cash(spread_net, results["spread"].metrics.n_trades, min_psr=MIN_PSR,
                             what=f"{model} on {symbol}")
        default_net = results["default"].returns["strategy_return"].to_numpy(np.float64)
        verdict_default = beats_cash(default_net, results["default"].metrics.n_trades,
                                     min_psr=MIN_PSR, what=f"{model} on {symbol}")
        score_s = time.perf_counter() - t0
        fit = sum(o.fit_seconds for o in outcomes)
        out.append(candidate_row(symbol, model, results, diag, verdict,
                                 bench.metrics.sharpe,
                                 {"oos_bars": len(rows), "delay_bars": int(sub.sum()),
                                  "buy_hold_return": bench.metrics.total_return,
                                  "return_close": results["close"].metrics.total_return,
                                  "return_next_open": results["next_open"].metrics.total_return,
                                  "fold_loop_s": loop_s, "fit_s": fit, "scoring_s": score_s},
                                 verdict_default))
        info["candidates"][model] = {"fold_loop_s": loop_s, "fit_s": fit, "scoring_s": score_s}
        print(f"  {symbol} {model}: {len(folds)} folds in {loop_s:.1f} s (fit {fit:.1f} s), "
              f"scoring under {len(results)} fills {score_s:.2f} s; {verdict.reason}",
              flush=True)
    info["wall_s"] = time.perf_counter() - t_symbol
    return out, info


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", default="BTC,ETH,LTC")
    parser.add_argument("--models", default="lightgbm,xgboost")
    parser.add_argument("--learning-rates", default="",
                        help="e.g. 0.01,0.03,0.1 (the evidence sweep's grid): one candidate per "
                             "model and rate; default: the preset's rate")
    parser.add_argument("--quick", action="store_true",
                        help="one symbol (BTC), LightGBM, 2 folds in 2024, 100 trees: a smoke run")
    parser.add_argument("--extra", nargs="*", default=[], help="extra Hydra overrides")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" /
                                             "execution_report.json"))
    args = parser.parse_args(argv)
    symbols, models, overrides = args.symbols, args.models, list(args.extra)
    if args.quick:
        symbols, models = QUICK["symbols"], QUICK["models"]
        overrides = [*QUICK["overrides"], *overrides]
    cands = candidates(models.split(","), [x for x in args.learning_rates.split(",") if x])
    info = machine()
    print(f"machine: {info['nproc']} cores, {info['cpu']}, Python {info['python']}, load "
          f"average {info['load_avg']} at {info['utc']} UTC", flush=True)
    t0 = time.perf_counter()
    rows, symbols_info = [], []
    for symbol in symbols.split(","):
        r, s = report_symbol(symbol, cands, overrides)
        rows += r
        symbols_info.append(s)
    wall = time.perf_counter() - t0
    for s in symbols_info:
        delay = (f"delay 5m on {s['delay_bars']} bars {s['delay_start'][:10]} .. "
                 f"{s['delay_end'][:10]}" if s["delay_bars"] else "no 5m file: delay n/a")
        print(f"{s['symbol']}: {s['folds']} folds, {s['oos_bars']} OOS bars "
              f"{s['oos_start'][:10]} .. {s['oos_end'][:10]}, {s['features']} features; "
              f"AR half-spread mean {s['half_spread_bps_mean']:.2f} bps, median "
              f"{s['half_spread_bps_median']:.2f}, p90 {s['half_spread_bps_p90']:.2f}, 0 on "
              f"{100 * s['half_spread_zero_share']:.0f} % of bars (fee {s['fee_bps']:.0f} bps); "
              f"{delay}; {s['wall_s']:.0f} s")
    table = markdown_tables(rows, footnotes(symbols_info))
    print()
    print(table)
    print(f"\nwall time {wall:.0f} s (load-dependent; the Sharpe figures are not)")
    final = machine()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": info, "machine_end": final, "wall_s": wall,
                               "overrides": overrides, "symbols": symbols_info, "rows": rows,
                               "table": table}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
