"""The training job: the only module that reads the Hydra ``DictConfig`` and wires the stages.

data (load + validate + resample) -> features (causal) -> forward split with embargo -> train-only
scaler -> model fit (early stopping on val) -> predict val/test -> backtest + metrics -> SHAP ->
MLflow run (params, metrics, artifacts, pyfunc model).
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from huracan.data.ohlcv import bars_per_year, load_ohlcv
from huracan.data.quality import JsonlQualitySink
from huracan.data.validate import validate_for_training
from huracan.evaluation import plots
from huracan.evaluation.backtest import BacktestConfig, BacktestResult, run_backtest
from huracan.evaluation.explain import explain
from huracan.features.analyzer import analyze_job
from huracan.features.build import NEXT_RETURN, FeatureConfig, FeatureSet, build_features
from huracan.models.base import Forecaster
from huracan.registry.promotion import build_manifest, register_version, registered_model_name
from huracan.splits import ForwardSplit, fit_scaler, forward_split
from huracan.tracking import run as tracking

log = logging.getLogger(__name__)

#: rows before the test split saved with the evaluation window, so that any sequence model (lookback
#: up to this many bars) can be re-scored on exactly the same test bars later
EVAL_CONTEXT_ROWS = 256


@dataclass
class TrainResult:
    """What one job returns: the MLflow run, its metrics and stage timings (seconds)."""

    run_id: str
    model_type: str
    symbol: str
    timeframe: str
    metrics: dict[str, float]
    timings: dict[str, float] = field(default_factory=dict)
    model_uri: str | None = None
    registered_model: str | None = None
    version: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def seed_everything(seed: int) -> None:
    """Seed Python's and NumPy's global generators (models seed their own libraries)."""
    random.seed(seed)
    np.random.seed(seed)


def code_version() -> str:
    """The git commit of the checkout Huracan runs from (``+dirty`` if modified), or ``unknown``."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}+dirty" if dirty.strip() else sha


def frame_fingerprint(frame: pd.DataFrame) -> str:
    """sha256 of a frame's values and index (pandas' stable row hashing)."""
    hashed = pd.util.hash_pandas_object(frame, index=True).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()


class Timer:
    """Accumulates wall time per named stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str) -> _Stage:
        return _Stage(self, name)


class _Stage:
    def __init__(self, timer: Timer, name: str) -> None:
        self.timer, self.name = timer, name

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.timer.seconds[self.name] = (
            self.timer.seconds.get(self.name, 0.0) + time.perf_counter() - self.t0
        )


@dataclass
class Prepared:
    """Features, split and scaled matrices shared by fit, predict and explain."""

    features: FeatureSet
    split: ForwardSplit
    X: np.ndarray  # scaled, (n, f)
    scaler: Any
    #: how the columns were chosen when ``features.top_n`` is set (else empty)
    selection_note: str = ""

    def rows(self, name: str) -> slice:
        r = getattr(self.split, name)
        return slice(r.start, r.stop)

    def context(self, name: str, lookback: int) -> np.ndarray:
        r = self.split.context(name, lookback)
        return self.X[r.start : r.stop]


def prepare(cfg: DictConfig, timer: Timer) -> tuple[Prepared, pd.DataFrame]:
    """Load, validate and featurise the data, split it, fit the scaler on train only."""
    with timer("data"):
        sink = JsonlQualitySink(cfg.data.quality_log) if cfg.data.quality_log else None
        candles, _ = load_ohlcv(cfg.data.path, cfg.data.timeframe, symbol=cfg.data.symbol,
                                sink=sink)
        # Great Expectations suite: refuses data whose critical expectations fail (e.g. coverage)
        # unless data.allow_degraded=true; load_ohlcv already logged the gaps
        validate_for_training(candles, cfg.data.timeframe, str(cfg.data.path), cfg.data.symbol,
                              sink, allow_degraded=bool(cfg.data.allow_degraded),
                              record_gaps=False)
    with timer("features"):
        fdict: dict[str, Any] = OmegaConf.to_container(cfg.features, resolve=True)  # type: ignore[assignment]
        top_n = fdict.pop("top_n", None)
        fcfg = FeatureConfig(**fdict)
        fs = build_features(candles, cfg.data.timeframe, fcfg)
        note = ""
        if top_n:
            from huracan.db import migrate
            from huracan.db.session import make_engine
            from huracan.features.importance_store import select_top_features

            engine = make_engine(str(cfg.db.url))
            try:
                migrate.upgrade(engine)
                columns, note = select_top_features(engine, str(cfg.data.symbol),
                                                    str(cfg.data.timeframe), int(top_n),
                                                    fs.feature_names)
            finally:
                engine.dispose()
            fs = FeatureSet(fs.frame, columns, fs.horizon)
        split = forward_split(len(fs.frame), cfg.split.train, cfg.split.val, cfg.split.test,
                              embargo=cfg.split.embargo, horizon=fcfg.horizon)
        raw = fs.X
        scaler = fit_scaler(raw[split.train.start : split.train.stop])
        X = scaler.transform(raw).astype(np.float32)
    log.info("data: %d candles -> %d feature rows x %d features; train/val/test = %d/%d/%d rows "
             "(embargo %d bars)", len(candles), len(fs.frame), len(fs.feature_names),
             len(split.train), len(split.val), len(split.test), split.embargo)
    return Prepared(fs, split, X, scaler, note), candles


def evaluate_split(prep: Prepared, model: Forecaster, name: str, bt_cfg: BacktestConfig,
                   ppy: float) -> tuple[np.ndarray, BacktestResult]:
    """Predict split ``name`` (with its preceding context) and backtest it."""
    rows = prep.rows(name)
    pred = model.predict(prep.X[rows], context=prep.context(name, model.lookback))
    frame = prep.features.frame.iloc[rows]
    result = run_backtest(pd.DatetimeIndex(frame.index), pred, frame[NEXT_RETURN].to_numpy(),
                          prep.features.y[rows], bt_cfg, ppy)
    return pred, result


def eval_window(prep: Prepared) -> pd.DataFrame:
    """The test bars plus up to :data:`EVAL_CONTEXT_ROWS` earlier rows, unscaled: ``timestamp``,
    every feature, ``label``, ``next_return`` and ``split`` (``context`` or ``test``)."""
    te = prep.split.test
    start = max(0, te.start - EVAL_CONTEXT_ROWS)
    frame = prep.features.frame.iloc[start : te.stop].reset_index()
    frame["split"] = np.where(np.arange(start, te.stop) < te.start, "context", "test")
    return frame


def split_ranges(prep: Prepared) -> dict[str, str]:
    """Time range of each split as tags (``train_start``/``train_end``...), ISO UTC."""
    idx = prep.features.frame.index
    tags = {}
    for name in ("train", "val", "test"):
        r = getattr(prep.split, name)
        tags[f"{name}_start"] = idx[r.start].isoformat()
        tags[f"{name}_end"] = idx[r.stop - 1].isoformat()
    return tags


def run_importance(cfg: DictConfig, model: Forecaster, prep: Prepared, shap_values: np.ndarray,
                   run_id: str) -> None:
    """Feature-importance loop step: rank, store, log and check for a shift (never fails the
    job: an error is logged and alerted)."""
    from huracan.alerts import Alert
    from huracan.db import migrate
    from huracan.db.session import make_engine

    notifier = instantiate(cfg.alerts)
    te, tr = prep.rows("test"), prep.rows("train")
    engine = make_engine(str(cfg.db.url))
    try:
        migrate.upgrade(engine)
        analyze_job(engine, model=model, X_test=prep.X[te], y_test=prep.features.y[te],
                    context=prep.context("test", model.lookback), X_train=prep.X[tr],
                    y_train=prep.features.y[tr], symbol=str(cfg.data.symbol),
                    timeframe=str(cfg.data.timeframe), run_id=run_id, shap_values=shap_values,
                    n_repeats=int(cfg.importance.n_repeats), seed=int(cfg.importance.seed),
                    shift_threshold=float(cfg.importance.shift_threshold),
                    top_n_compare=int(cfg.importance.top_n_compare), notifier=notifier)
    except Exception as exc:  # the model is trained and logged: report, do not fail the job
        log.exception("feature importance of run %s failed", run_id)
        notifier.notify(Alert(f"feature importance of run {run_id} failed", "warning",
                              {"error": f"{type(exc).__name__}: {exc}"[:500]}))
    finally:
        engine.dispose()


def run(cfg: DictConfig) -> TrainResult:
    """Run one training job as configured; returns its :class:`TrainResult`.

    Raises:
        DataValidationError: the input file breaks a rule (the run ends FAILED).
        ValueError: inconsistent configuration (e.g. embargo shorter than the horizon).
    """
    timer = Timer()
    seed_everything(int(cfg.seed))
    model: Forecaster = instantiate(cfg.model)
    symbol, timeframe = str(cfg.data.symbol), str(cfg.data.timeframe)
    experiment_id = tracking.configure(cfg.tracking.tracking_uri, Path(cfg.tracking.store_dir),
                                       cfg.tracking.experiment_name)
    tags = {"symbol": symbol, "timeframe": timeframe, "model_type": model.model_type,
            "data_path": str(cfg.data.path)}
    run_name = f"{model.model_type}-{symbol.replace('/', '')}-{timeframe}"
    with tracking.job_run(experiment_id, run_name, tags) as run_id:
        import mlflow

        resolved: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
        mlflow.log_params(tracking.flatten(resolved))
        mlflow.log_dict(resolved, "config/resolved.yaml")
        prep, candles = prepare(cfg, timer)
        fs = prep.features
        train_frame = fs.frame.iloc[prep.rows("train")]
        mlflow.set_tags({
            **split_ranges(prep),
            "dataset_sha256": frame_fingerprint(candles),
            "train_frame_sha256": frame_fingerprint(train_frame),
            "feature_list_sha256": hashlib.sha256(",".join(fs.feature_names).encode()).hexdigest(),
            "n_features": str(len(fs.feature_names)),
            "code_version": code_version(),
            **({"feature_selection": prep.selection_note[:5000]} if prep.selection_note else {}),
        })
        mlflow.log_text("\n".join(fs.feature_names) + "\n", "features/feature_list.txt")
        tr, va = prep.rows("train"), prep.rows("val")
        log.info("fitting %r", model)
        with timer("fit"):
            model.fit(prep.X[tr], prep.features.y[tr], prep.X[va], prep.features.y[va],
                      X_val_context=prep.context("val", model.lookback),
                      feature_names=prep.features.feature_names)
        bt_cfg = BacktestConfig(**OmegaConf.to_container(cfg.backtest, resolve=True))  # type: ignore[arg-type]
        ppy = bars_per_year(timeframe)
        metrics: dict[str, float] = {}
        results: dict[str, BacktestResult] = {}
        with timer("predict"):
            for name in ("val", "test"):
                _, results[name] = evaluate_split(prep, model, name, bt_cfg, ppy)
                metrics.update(results[name].metrics.as_dict(f"{name}_"))
        mlflow.log_metrics(metrics)

        with timer("shap"):
            te = prep.rows("test")
            shap_result = explain(model, prep.X[te], prep.context("test", model.lookback),
                                  prep.X[tr], int(cfg.explain.max_rows))
        if cfg.get("importance") is not None and cfg.importance.enabled:
            with timer("importance"):
                run_importance(cfg, model, prep, shap_result.values, run_id)
        with timer("logging"):
            tracking.log_frame(results["test"].returns, "backtest/returns.parquet")
            tracking.log_frame(results["test"].trades, "backtest/trades.parquet")
            tracking.log_frame(results["val"].returns, "backtest/val_returns.parquet")
            tracking.log_frame(eval_window(prep), "data/eval_window.parquet")
            for name in ("val", "test"):
                tracking.log_figure(
                    plots.equity_drawdown_figure(results[name].returns,
                                                 f"{run_name} {name} (net of fees)"),
                    f"plots/equity_drawdown_{name}.png")
            mlflow.log_text(shap_result.importance.to_csv(index=False), "shap/mean_abs_shap.csv")
            tracking.log_figure(
                plots.shap_summary_figure(shap_result.values, shap_result.X,
                                          prep.features.feature_names, f"SHAP {run_name} (test)",
                                          int(cfg.seed)),
                "shap/summary.png")
            model_uri = None
            if cfg.tracking.log_model:
                example = prep.features.frame.iloc[te][prep.features.feature_names].head(5)
                model_uri = tracking.log_model(model, prep.scaler, example)
        timings = {f"time_{k}_s": v for k, v in timer.seconds.items()}
        mlflow.log_metrics(timings)
        registered, version = None, None
        if model_uri is not None and cfg.registry.enabled:
            with timer("registry"):
                registered = registered_model_name(symbol, timeframe)
                client = mlflow.MlflowClient()
                manifest = build_manifest(client, run_id, str(cfg.registry.metric))
                version = register_version(client, registered, model_uri, manifest).version
            log.info("registered %s v%s (gate at the end of the run/sweep)", registered, version)
    log.info("%s: val Sharpe %.2f composite %.3f | test Sharpe %.2f composite %.3f (%d trades)",
             run_name, metrics["val_sharpe"], metrics["val_composite_score"],
             metrics["test_sharpe"], metrics["test_composite_score"], metrics["test_n_trades"])
    return TrainResult(run_id=run_id, model_type=model.model_type, symbol=symbol,
                       timeframe=timeframe, metrics=metrics, timings=timer.seconds,
                       model_uri=model_uri, registered_model=registered,
                       version=None if version is None else str(version))
