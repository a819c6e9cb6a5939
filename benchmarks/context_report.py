"""Context report: do other markets, higher timeframes or one pooled model add out-of-sample edge?

Per symbol (BTC/USDT, ETH/USDT, LTC/USDT 1h from ../shared/data), LightGBM walk-forward (365 days
per fold, the last 60 early-stop, retrained every 90 days; OOS 2019-03-01 .. 2024-12-31), under
the default execution model (next-open fill, fee + 1 bps half-spread + 1 bps slippage), four
variants, each one training job of the library (:func:`huracan.pipeline.run_job` on typed
:class:`huracan.settings.JobSettings` composed from the presets, into a throw-away store):

- ``own``: the symbol's own 21 price features (``experiment=context_1h_wf`` with
  ``features.context=[]`` and ``features.timeframes=[]``);
- ``+context``: plus the context columns of BTC/USDT and ETH/USDT (``ctx_<PAIR>_*``: returns,
  volatility, rolling beta / correlation, relative strength, availability; the target itself is
  skipped when it is a context symbol);
- ``+context+HTF``: plus the price features of closed 4h and 1d bars (``htf_<tf>_*``);
- ``pooled``: ONE model per fold on the rows of the three symbols (``experiment=pooled_1h_wf``,
  own features, per-symbol scaling, the symbol as a categorical), scored per symbol.

Columns, all from the job's own metrics (:func:`huracan.stages.evaluate_walk_forward`; nothing is
recomputed here): OOS net Sharpe, IC (``oos_rank_ic``: Spearman of forecast and realised label on
the OOS rows), breakeven cost (``oos_breakeven_bps``: extra bps per unit turnover at which the net
return is 0), trades, clears cash (the gate's rule, :func:`huracan.evaluation.evidence.beats_cash`:
compounded net return > 0 and PSR >= ``registry.min_psr`` = 0.9, read off ``oos_total_return`` /
``oos_psr``), buy & hold's Sharpe on the same bars, and the SHAP share of each feature family on
the last fold (``importance/family_<family>_shap``).

Cost figures: the wall time of the pooled GBDT walk-forward (3 symbols) beside the
single-symbol walk-forward of BTC own features, run back to back (minutes apart, load printed),
and the feature building of the 3 symbols with context (BTC, ETH) and two higher timeframes (4h,
1d; median of 3, candles already loaded; loading timed apart). Wall times depend on the machine
and its load (printed: ``lscpu`` model, cores, load average); Sharpe figures do not.

Usage: python benchmarks/context_report.py [--quick] [--pairs N] [--symbols BTC,ETH,LTC]
       [--variants own,context,context_htf,pooled] [--out benchmarks/results/context_report.json]
       [--md benchmarks/results/context_report.md]
``--quick``: OOS 2024-01-01 .. 2024-07-01 (two folds), 100 trees: a smoke run of every path.
Rows are written to ``--out`` as they finish, so a run stopped early leaves its partial results;
``--append`` adds a later part (e.g. ``--variants pooled``, which runs the first symbol's own job
right before the pooled one for the cost pair) to the rows already there.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

VARIANTS = ("own", "context", "context_htf", "pooled")
LABELS = {"own": "own", "context": "+context", "context_htf": "+context+HTF",
          "pooled": "pooled"}
SYMBOLS = ("BTC", "ETH", "LTC")
CONTEXT = "[BTC/USDT,ETH/USDT]"
TIMEFRAMES = "[4h,1d]"
#: the features of each single-symbol variant
FEATURES = {"own": ["features.context=[]", "features.timeframes=[]"],
            "context": [f"features.context={CONTEXT}", "features.timeframes=[]"],
            "context_htf": [f"features.context={CONTEXT}", f"features.timeframes={TIMEFRAMES}"]}
#: the walk-forward of every variant (the same folds for all: comparable)
SPLIT = ["split.train_bars=365d", "split.val_bars=60d", "split.step_bars=90d",
         "split.oos_start=2019-03-01", "split.oos_end=null"]
QUICK = ["split.oos_start=2024-01-01", "split.oos_end=2024-07-01", "model.n_estimators=100"]
#: LightGBM on one thread (deterministic, load-insensitive), quiet, no regime evidence (a pooled
#: job has none: the cost pair does the same work), no registry, no model logged
COMMON = ["model=lightgbm", "model.n_jobs=1", "model.log_period=0", "regime=none",
          "registry.enabled=false", "tracking.log_model=false"]
FAMILIES = ("own", "context", "higher_timeframe", "symbol")


# ----------------------------------------------------------------------------- machine
def machine() -> dict[str, Any]:
    """CPU model (``lscpu``), cores, Python, load average and UTC time."""
    cpu = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {"cpu": cpu, "nproc": os.cpu_count(), "python": platform.python_version(),
            "load_avg": load(), "utc": utc_now()}


def load() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else []


def utc_now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())


# ----------------------------------------------------------------------------- settings
def compose(experiment: str, overrides: Sequence[str]) -> Any:
    """Typed :class:`huracan.settings.JobSettings` of ``experiment`` with ``overrides``."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from huracan.config import register_resolvers
    from huracan.settings import JobSettings

    register_resolvers()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = hydra_compose("train", overrides=[f"experiment={experiment}", *overrides])
    return JobSettings.from_dict(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]


def store_overrides(tmp: str) -> list[str]:
    """MLflow store, brain store and quality log under ``tmp``."""
    return [f"tracking.store_dir={tmp}/mlruns", f"db.url=sqlite:///{tmp}/brain.db",
            f"data.quality_log={tmp}/dq.jsonl"]


def preset(name: str) -> str:
    """``name`` when ``conf/experiment/<name>.yaml`` exists, else ``features_btc_1h_wf`` (the
    same data, model and walk-forward once the overrides here are applied: every feature and
    split key the report depends on is overridden)."""
    return name if (REPO / "conf" / "experiment" / f"{name}.yaml").exists() \
        else "features_btc_1h_wf"


def variant_settings(variant: str, symbol: str, extra: Sequence[str]) -> Any:
    """The settings of one single-symbol variant on ``symbol`` (``BTC``)."""
    return compose(preset("context_1h_wf"), [f"data.base={symbol}", *FEATURES[variant], *SPLIT,
                                     *COMMON, *extra])


def pooled_settings(symbols: Sequence[str], extra: Sequence[str]) -> Any:
    """The settings of the pooled job over ``symbols`` (own features)."""
    pairs = ",".join(f"{s}/USDT" for s in symbols)
    return compose(preset("pooled_1h_wf"), [f"data.base={symbols[0]}", f"data.symbols=[{pairs}]",
                                    "features.context=[]", "features.timeframes=[]", *SPLIT,
                                    *COMMON, *extra])


# ----------------------------------------------------------------------------- runs
def run(settings: Any) -> tuple[Any, dict[str, Any]]:
    """Run one job; its :class:`~huracan.pipeline.TrainResult` and the wall time, load and UTC
    start around it."""
    from huracan.pipeline import run_job

    before, started = load(), utc_now()
    t0 = time.perf_counter()
    result = run_job(settings)
    wall = time.perf_counter() - t0
    return result, {"wall_s": wall, "started": started, "load_before": before,
                    "load_after": load(), "folds_s": float(result.timings.get("folds", math.nan)),
                    "features_s": float(result.timings.get("features", math.nan)),
                    "n_folds": int(result.n_folds)}


def clears_cash(m: dict[str, float], min_psr: float, prefix: str = "") -> bool:
    """The gate's cash floor on the OOS window (``beats_cash``: net return > 0, PSR >= min_psr,
    traded at all) from the job's ``oos_total_return``, ``oos_psr`` and ``oos_n_trades``."""
    return (m.get(f"{prefix}oos_n_trades", 0.0) > 0 and m[f"{prefix}oos_total_return"] > 0.0
            and m[f"{prefix}oos_psr"] >= min_psr)


def row_of(symbol: str, variant: str, metrics: dict[str, float], run_metrics: dict[str, float],
           min_psr: float, timing: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """One table row from a job's metrics (``prefix`` = ``BTCUSDT/`` for a pooled symbol)."""
    from huracan.tracking.names import importance_metric, read_metric

    m = metrics

    def get(key: str) -> float:
        return float(m.get(f"{prefix}{key}", math.nan))

    pair = prefix.rstrip("/") or None

    def share(f: str) -> float:
        """A pooled symbol's own share, else the run's (old names of past runs read too)."""
        own = read_metric(run_metrics, importance_metric(f"family_{f}_shap", pair))
        run = read_metric(run_metrics, importance_metric(f"family_{f}_shap"), math.nan)
        return float(run if own is None else own)

    shares = {f: share(f) for f in FAMILIES}
    return {"symbol": f"{symbol}/USDT", "variant": variant, "sharpe": get("oos_sharpe"),
            "ic": get("oos_rank_ic"), "pearson_ic": get("oos_ic"),
            "breakeven_bps": get("oos_breakeven_bps"), "trades": get("oos_n_trades"),
            "total_return": get("oos_total_return"), "psr": get("oos_psr"),
            "clears_cash": clears_cash(m, min_psr, prefix),
            "buy_hold_sharpe": get("oos_buy_hold_sharpe"), "oos_bars": get("oos_bars"),
            "shap_shares": shares, **timing}


def run_metrics_of(settings: Any, run_id: str) -> dict[str, float]:
    """Every metric of MLflow run ``run_id`` (the importance family shares among them)."""
    from mlflow import MlflowClient

    from huracan.tracking.run import default_tracking_uri

    uri = settings.tracking.tracking_uri or default_tracking_uri(Path(settings.tracking.store_dir))
    return dict(MlflowClient(tracking_uri=uri).get_run(run_id).data.metrics)


def single(variant: str, symbol: str, extra: Sequence[str]) -> dict[str, Any]:
    settings = variant_settings(variant, symbol, extra)
    result, timing = run(settings)
    row = row_of(symbol, variant, result.metrics, run_metrics_of(settings, result.run_id),
                 float(settings.registry.min_psr), timing)
    print(f"  {symbol} {LABELS[variant]:<13} Sharpe {row['sharpe']:+.2f} IC {row['ic']:+.4f} "
          f"trades {row['trades']:.0f} ({timing['wall_s']:.0f} s, load {timing['load_before']})",
          flush=True)
    return row


def pooled(symbols: Sequence[str], extra: Sequence[str]) -> list[dict[str, Any]]:
    from huracan.features.naming import compact

    settings = pooled_settings(symbols, extra)
    result, timing = run(settings)
    metrics = run_metrics_of(settings, result.run_id)
    min_psr = float(settings.registry.min_psr)
    rows = [row_of(s, "pooled", result.metrics | metrics, metrics, min_psr, timing,
                   prefix=f"{compact(s + '/USDT')}/") for s in symbols]
    for r in rows:
        print(f"  {r['symbol'][:3]} pooled        Sharpe {r['sharpe']:+.2f} IC {r['ic']:+.4f} "
              f"trades {r['trades']:.0f}", flush=True)
    print(f"  pooled job: {timing['wall_s']:.0f} s, load {timing['load_before']}", flush=True)
    return rows


# ----------------------------------------------------------------------------- feature cost
def feature_cost(symbols: Sequence[str], extra: Sequence[str], repeats: int = 3
                 ) -> dict[str, Any]:
    """Feature building for ``symbols`` with context (BTC, ETH) and two higher timeframes:
    seconds to load the candles (target + context, validated), and the median over ``repeats``
    of building every symbol's feature set from loaded candles."""
    from huracan import stages

    t0 = time.perf_counter()
    inputs = []
    for s in symbols:
        settings = variant_settings("context_htf", s, extra)
        candles = stages.load_validated(settings.data, log_quality=False)
        ctx = stages.context_candles(settings.features, settings.data, log_quality=False)
        inputs.append((settings, candles, ctx))
    load_s = time.perf_counter() - t0
    times, shape = [], {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        for settings, candles, ctx in inputs:
            fs = stages.build_features(candles, settings.data.timeframe, settings.features,
                                       label=settings.label, context=ctx)
            shape[settings.data.symbol] = [len(fs.frame), len(fs.feature_names)]
        times.append(time.perf_counter() - t0)
    return {"load_s": load_s, "build_s": statistics.median(times), "build_runs_s": times,
            "shapes": shape, "load_avg": load()}


# ----------------------------------------------------------------------------- report
def _fmt(x: Any, digits: int = 2) -> str:
    if isinstance(x, bool):
        return "yes" if x else "no"
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def markdown(rows: Sequence[dict[str, Any]], cost: dict[str, Any]) -> str:
    """The report table (one row per symbol and variant) and the cost lines."""
    head = ["symbol", "variant", "OOS net Sharpe", "IC (rank)", "breakeven bps", "trades",
            "net return", "PSR", "clears cash", "buy & hold Sharpe",
            "SHAP share own / context / HTF"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = {v: i for i, v in enumerate(VARIANTS)}
    for r in sorted(rows, key=lambda r: (r["symbol"], order[r["variant"]])):
        sh = r["shap_shares"]
        known = any(math.isfinite(v) for v in sh.values())  # a family without columns: 0 %
        shares = " / ".join(f"{100 * (sh[f] if math.isfinite(sh[f]) else 0.0):.0f} %"
                            for f in ("own", "context", "higher_timeframe")) if known else "n/a"
        out.append("| " + " | ".join([
            r["symbol"], LABELS[r["variant"]], _fmt(r["sharpe"]), _fmt(r["ic"], 4),
            _fmt(r["breakeven_bps"], 1), _fmt(r["trades"], 0),
            f"{100 * r['total_return']:+.1f} %" if math.isfinite(r["total_return"]) else "n/a",
            _fmt(r["psr"], 3), _fmt(r["clears_cash"]), _fmt(r["buy_hold_sharpe"]),
            shares]) + " |")
    out.append("")
    n = sum(bool(r["clears_cash"]) for r in rows)
    out.append(f"Rows that clear cash: {n} of {len(rows)}.")
    out += cost_lines(cost)
    return "\n".join(out)


def cost_lines(cost: dict[str, Any]) -> list[str]:
    """The cost figures as Markdown list lines: each back-to-back pair (single-symbol job, then
    the pooled job) and the median ratios over the pairs, then the feature building."""
    out: list[str] = []
    pairs = [p for p in cost.get("pairs", []) if "single" in p and "pooled" in p]
    out += [""] if pairs else []
    for k, p in enumerate(pairs, 1):
        one, pool = p["single"], p["pooled"]
        out += [f"- pair {k}: single-symbol walk-forward ({one['symbol']} own, {one['n_folds']} "
                f"folds) {one['wall_s']:.1f} s wall (fold loop {one['folds_s']:.1f} s), started "
                f"{one['started']}, load {one['load_before']}; pooled GBDT walk-forward "
                f"({pool['symbols']} symbols, {pool['n_folds']} folds) {pool['wall_s']:.1f} s "
                f"wall (fold loop {pool['folds_s']:.1f} s), started {pool['started']}, load "
                f"{pool['load_before']}: {pool['wall_s'] / one['wall_s']:.2f}x wall, "
                f"{pool['folds_s'] / one['folds_s']:.2f}x fold loop"]
    if pairs:
        walls = [p["pooled"]["wall_s"] / p["single"]["wall_s"] for p in pairs]
        loops = [p["pooled"]["folds_s"] / p["single"]["folds_s"] for p in pairs]
        out.append(f"- pooled / single, median of {len(pairs)} pair(s): "
                   f"{statistics.median(walls):.2f}x wall, {statistics.median(loops):.2f}x fold "
                   "loop (target: within 3x)")
    feat = cost.get("features")
    if feat:
        shapes = ", ".join(f"{k} {v[0]} x {v[1]}" for k, v in feat["shapes"].items())
        out += [f"- feature building, {len(feat['shapes'])} symbols with context (BTC, ETH) and "
                f"4h + 1d: {feat['build_s']:.2f} s (median of {len(feat['build_runs_s'])}; "
                f"{shapes} rows x features); loading the candles (target + context, validated): "
                f"{feat['load_s']:.2f} s; load {feat['load_avg']} (target: under 10 s)"]
    return out


def save(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=float))
    tmp.replace(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", default=",".join(SYMBOLS))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--quick", action="store_true", help="OOS 2024-01..06, 100 trees")
    parser.add_argument("--extra", nargs="*", default=[], help="more Hydra overrides")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" /
                                            "context_report.json"))
    parser.add_argument("--append", action="store_true",
                        help="keep the rows and costs already in --out (same symbol and variant "
                             "replaced): a report run in parts")
    parser.add_argument("--md", default=None, help="also write the Markdown table here")
    parser.add_argument("--pairs", type=int, default=1,
                        help="back-to-back (single-symbol, pooled) job pairs timed")
    parser.add_argument("--verbose", action="store_true", help="the jobs' log lines too")
    args = parser.parse_args()
    if not args.verbose:  # the data-quality warnings of every load (real gaps) and job logs
        logging.getLogger("huracan").setLevel(logging.ERROR)
    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    info = machine() | {"presets": [preset("context_1h_wf"), preset("pooled_1h_wf")],
                        "commit": git_commit(), "argv": sys.argv[1:]}
    print(f"presets: {info['presets']}, commit {info['commit']}")
    print(f"machine: {info['cpu']}, {info['nproc']} cores, Python {info['python']}, load "
          f"{info['load_avg']}, {info['utc']}", flush=True)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    out = Path(args.out)
    payload: dict[str, Any] = {"quick": args.quick, "runs": [], "rows": [], "cost": {}}
    if args.append and out.exists():
        payload = json.loads(out.read_text())
    payload["runs"].append(info)
    with tempfile.TemporaryDirectory() as tmp:
        extra = [*store_overrides(tmp), *(QUICK if args.quick else []), *args.extra]
        warm_store(symbols[0], extra)
        for step in run_plan(symbols, variants, args.pairs):
            execute_step(step, symbols, variants, extra, payload)
            save(out, payload)
    payload["runs"][-1]["end"] = machine()
    save(out, payload)
    table = markdown(payload["rows"], payload["cost"])
    print(f"\nLightGBM walk-forward, 1h, {'QUICK ' if payload['quick'] else ''}OOS "
          f"{'2024-01 .. 2024-06' if payload['quick'] else '2019-03 .. 2024-12'}, default "
          "execution model\n")
    print(table)
    if args.md:
        Path(args.md).write_text(table + "\n")
    return 0


def warm_store(symbol: str, extra: Sequence[str]) -> None:
    """Create the throw-away MLflow store and experiment before the first timed job (the cost
    pair's single-symbol job would otherwise pay for creating the store's tables)."""
    from huracan.tracking.run import configure

    t = variant_settings("own", symbol, extra).tracking
    configure(t.tracking_uri, Path(t.store_dir), t.experiment_name)


TIMING_KEYS = ("wall_s", "folds_s", "started", "load_before", "load_after", "n_folds")


def execute_step(step: Any, symbols: Sequence[str], variants: Sequence[str],
                 extra: Sequence[str], payload: dict[str, Any]) -> None:
    """Run one step of :func:`run_plan` and put its rows / cost into ``payload``."""
    if step == "features":
        payload["cost"]["features"] = feature_cost(symbols, extra)
        return
    pairs = payload["cost"].setdefault("pairs", [])
    if step == "pooled":
        rows = pooled(symbols, extra)
        if not pairs or "pooled" in pairs[-1]:
            pairs.append({})
        pairs[-1]["pooled"] = {k: rows[0][k] for k in TIMING_KEYS} | {"symbols": len(symbols)}
    else:
        kind, symbol = step
        variant = "own" if kind == "warmup" else kind
        rows = [single(variant, symbol, extra)]
        if kind == "own" and symbol == symbols[0]:  # the single-symbol side of a cost pair
            pairs.append({"single": {k: rows[0][k] for k in TIMING_KEYS} | {
                "symbol": rows[0]["symbol"]}})
        if variant not in variants:  # run for the cost pair only
            return
    done = {(r["symbol"], r["variant"]) for r in rows}
    payload["rows"] = [r for r in payload["rows"] if (r["symbol"], r["variant"]) not in done]
    payload["rows"] += rows


def git_commit() -> str:
    """The checkout's commit (``git rev-parse --short HEAD``), ``+dirty`` when modified."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                              capture_output=True, text=True, check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO, capture_output=True, text=True, check=False).stdout
        return head + ("+dirty" if dirty.strip() else "")
    except OSError:
        return "unknown"


def run_plan(symbols: Sequence[str], variants: Sequence[str], pairs: int = 1) -> list[Any]:
    """The order of the runs: an untimed warm-up (the first symbol's own-features job), then
    ``pairs`` times that job and the pooled job back to back (their wall times are compared;
    the own job runs for that even when ``own`` is not a variant asked for), then the
    feature-cost measurement, then the rest."""
    steps: list[Any] = []
    pooled_asked = "pooled" in variants and len(symbols) >= 2
    if pooled_asked:  # an untimed own job first: imports and caches warm for both sides
        steps += [("warmup", symbols[0])]
        steps += [("own", symbols[0]), "pooled"] * max(int(pairs), 1)
    elif "own" in variants:
        steps.append(("own", symbols[0]))
    if "context_htf" in variants:
        steps.append("features")
    for s in symbols:
        for v in variants:
            if v != "pooled" and (v, s) not in steps:
                steps.append((v, s))
    return steps


if __name__ == "__main__":
    raise SystemExit(main())
