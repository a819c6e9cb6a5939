"""The nightly steps of one symbol, in order, each recorded in ``pipeline_runs``.

``download`` -> ``validate`` -> ``features`` -> ``train`` -> ``importance`` -> ``gate`` ->
``monitor`` -> ``paper`` -> ``sizer`` (see :data:`STEPS`). Each step is claimed in the ledger
(:class:`huracan.orchestration.runs.PipelineRunStore`), runs, puts its outputs in place (files are
written to a temporary name and renamed; store writes are transactions of the existing code) and
only then is finished; a rerun of the same night skips what is finished and resumes at the first
step that is not. One symbol's failure ends that symbol's night only: :func:`run_symbol` never
raises.

What each step does (commands are the ones users run by hand, with the same settings):

- ``download``: online, ``huracan download`` (ccxt, retry, fallback, validation) of the missing
  candles into the Parquet lake and of funding and open interest into the brain store; offline
  (``nightly.offline=true``), only the ``nightly.imports`` files go into the lake (validated, as
  ``huracan lake import``) and nothing touches the network.
- ``validate``: the lake's candles of the training window are written to the night's snapshot
  (``<work>/<night>/<SYMBOL>/candles.parquet``) and validated by the OHLCV suite; findings go to
  ``data_quality_logs``. Critical failures fail the step (the symbol is not trained, an alert
  goes out) unless ``nightly.allow_degraded``.
- ``features``: the training config's features built on the snapshot (a cheap check before the
  expensive part: rows, columns).
- ``train``: ``python -m huracan.train -m model=...`` on the snapshot through the configured Hydra
  launcher, with the gate held back for its own step. Each job ranks its features as usual (the
  data are in memory there: about 1 s per job against 8 s for a rebuild).
- ``importance``: every run of the sweep has its stored ranking (SHAP, permutation, correlation;
  the next cycle's ``features.top_n`` reads them): a run without one (its analysis failed, or
  ``importance.enabled=false``) is analysed now, as ``huracan features analyze`` would. The
  step's line says which kind of information each run's model uses (its SHAP importance summed
  per feature family: own candles, context markets, higher timeframes, market structure).
- ``gate``: the sweep's best eligible candidate meets the promotion gate, then the regime
  aliases (:class:`huracan.callbacks.gate.RegistryGate`, as at the end of a sweep).
- ``monitor``: ``huracan registry monitor`` (drift check, then rollback when production degraded
  by more than the tolerance); "no unseen data yet" is a skip, not a failure.
- ``paper``: is the paper loop alive? The live paper account of the symbol
  (``paper-<SYMBOLKEY>-<tf>``): its last decision (newest order's ``decided_at`` or the
  account's ``heartbeat_at``) older than ``nightly.paper.max_age`` (default two bars) or none
  at all alerts (warning) and the step says STALE; the account's daily MLflow monitoring run is
  logged for yesterday and today (:func:`huracan.paper.monitoring.log_daily_run`). A symbol
  without an account is a skip, or a failure (and an alert) with ``nightly.paper.expected``.
  Cheap: a few store queries, no model loaded.
- ``sizer``: ``python -m huracan.sizer`` when the last sizer retrain of the symbol is older than
  ``nightly.sizer.every_days`` and production is a walk-forward forecaster.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from huracan import progress
from huracan.orchestration.runs import PipelineRunStore, StepBusyError
from huracan.secrets import mask_text
from huracan.tracking.results import write_json_atomic

log = logging.getLogger("huracan.nightly")

STEPS = ("download", "validate", "features", "train", "importance", "gate", "monitor", "paper",
         "sizer")
MONITOR_NO_DATA = 3  # `huracan registry monitor` exit code: no unseen bars yet


class StepSkipped(Exception):  # noqa: N818 (a control-flow signal, not an error)
    """Raised by a step that has nothing to do; the message is the reason."""


@dataclass(frozen=True)
class NightSettings:
    """Everything a symbol's night needs, as plain (picklable) values: the executors ship it to
    worker processes and Ray tasks. Paths are absolute (workers may start elsewhere).

    Attributes:
        run_id: the night (``nightly.run_id``; default ``<UTC date>-<timeframe>``).
        timeframe: the models' bar size; ``source_timeframe`` the lake series' (finer or equal,
            resampled by the loader).
        history_days: train on the newest N days of the lake (``None``: everything stored).
        train_overrides: extra ``huracan.train`` overrides (e.g. ``split=walk_forward``).
        launcher: Hydra launcher of each symbol's model sweep (``basic`` or ``joblib``).
        threads: cap on each training process's threads (``None``: the models' own settings);
            the executors set it when symbols run side by side.
        db_url / tracking_uri: the brain store and MLflow (secrets: passed to child processes
            through their environment, never on a command line or in a log line).
    """

    run_id: str
    timeframe: str
    offline: bool
    lake: str
    exchange: str
    source_timeframe: str
    since: str
    until: str | None
    history_days: int | None
    imports: dict[str, str]
    derivatives: tuple[str, ...]
    allow_degraded: bool
    models: tuple[str, ...]
    train_overrides: tuple[str, ...]
    launcher: str
    launcher_jobs: int
    threads: int | None
    monitor: bool
    monitor_window: str
    drift_share: float
    weekly_rescale: bool
    sizer: bool
    sizer_every_days: float
    sizer_overrides: tuple[str, ...]
    work_dir: str
    cwd: str
    db_url: str
    tracking_uri: str | None
    store_dir: str
    experiment_name: str
    alerts: dict[str, Any] = field(default_factory=dict)
    python: str = sys.executable
    paper: bool = True
    paper_expected: bool = False
    paper_max_age: str | None = None
    paper_daily_run: bool = True

    def symbol_dir(self, symbol: str) -> Path:
        """``<work_dir>/<run_id>/<SYMBOL key>``: the night's files of one symbol."""
        from huracan.data.lake import symbol_key

        return Path(self.work_dir) / self.run_id / symbol_key(symbol)

    def env(self) -> dict[str, str]:
        """The environment of child processes: the store and tracking settings, thread caps."""
        env = dict(os.environ)
        env["HURACAN_DB_URL"] = self.db_url
        if self.tracking_uri:
            env["MLFLOW_TRACKING_URI"] = self.tracking_uri
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
        # the interpreter's bin first: child commands (and mlflow's own) come from this venv
        env["PATH"] = str(Path(self.python).parent) + os.pathsep + env.get("PATH", "")
        if self.threads:
            n = str(self.threads)
            env.update(OMP_NUM_THREADS=n, MKL_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n,
                       TF_NUM_INTRAOP_THREADS=n, TF_NUM_INTEROP_THREADS="1",
                       HURACAN_N_JOBS=n)
        return env

    def common_overrides(self) -> list[str]:
        """Overrides every child Hydra app gets: tracking store and experiment."""
        return [f"tracking.store_dir={self.store_dir}",
                f"tracking.experiment_name={self.experiment_name}"]


@dataclass
class StepResult:
    """What a finished step reports: ``status`` (done/skipped/failed), a one-line ``detail``
    and the MLflow runs it produced; ``resumed`` when it was already finished."""

    step: str
    status: str
    detail: str = ""
    mlflow_run_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0
    resumed: bool = False


@dataclass
class SymbolOutcome:
    """One symbol's night: its step results in order and whether it failed (a step failed or
    was not reached)."""

    symbol: str
    steps: list[StepResult] = field(default_factory=list)
    failed: bool = False
    degraded: bool = False

    @property
    def worked(self) -> bool:
        """``True`` when this invocation ran at least one step (rather than only reading the
        ledger of a finished night)."""
        return any(not s.resumed for s in self.steps)

    def as_dict(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "failed": self.failed, "degraded": self.degraded,
                "steps": [asdict(s) for s in self.steps]}


# --------------------------------------------------------------------------------------------
# helpers


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def die_with_parent() -> None:
    """In a child process (``preexec_fn``): ask Linux to SIGKILL it when its parent dies
    (``prctl(PR_SET_PDEATHSIG)``), so a killed night never leaves a training process running on
    behind it, writing into a step the rerun has taken over. No-op elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL))


def _run(cmd: list[str], s: NightSettings, log_file: Path) -> subprocess.CompletedProcess[str]:
    """Run a child command with the night's environment; its output goes to ``log_file``
    (the last lines are kept for the step's detail). The child dies with this process."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "a") as fh:
        fh.write(f"\n$ {mask_text(' '.join(cmd))}\n")
        fh.flush()
        proc = subprocess.run(cmd, cwd=s.cwd, env=s.env(), stdout=fh, stderr=subprocess.STDOUT,
                              text=True, check=False, preexec_fn=die_with_parent)
    return proc


def _last_error(log_file: Path) -> str:
    """The most telling line of a child's log: the last ``error``/exception line, else the last
    line."""
    try:
        lines = [ln.strip() for ln in log_file.read_text().splitlines() if ln.strip()]
    except OSError:
        return "no log"
    for ln in reversed(lines):
        low = ln.lower()
        if "error" in low or "exception" in low:
            return mask_text(ln)[:300]
    return mask_text(lines[-1])[:300] if lines else "no output"


def _engine(s: NightSettings) -> Any:
    from huracan.db.session import make_engine

    return make_engine(s.db_url)


def _notifier(s: NightSettings) -> Any:
    from hydra.utils import instantiate

    return instantiate(s.alerts or {"_target_": "huracan.alerts.LogNotifier"})


def _compose_train(s: NightSettings, symbol: str, extra: list[str] | None = None) -> Any:
    """The ``huracan.train`` config the night's sweep of ``symbol`` runs with (one model), as
    Hydra composes it (in-process; the nightly's own Hydra state is restored afterwards)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from huracan.config import register_resolvers
    from huracan.resources import conf_dir

    register_resolvers()
    gh = GlobalHydra.instance()
    backup = gh.hydra if gh.is_initialized() else None
    gh.clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3",
                                   job_name="nightly_compose"):
            return compose("train", overrides=[*train_overrides(s, symbol), f"model={s.models[0]}",
                                               *(extra or [])])
    finally:
        GlobalHydra.instance().clear()
        if backup is not None:
            GlobalHydra.instance().initialize(backup)


def train_overrides(s: NightSettings, symbol: str) -> list[str]:
    """The overrides that point ``huracan.train`` at the night's snapshot of ``symbol``."""
    d = s.symbol_dir(symbol)
    return [f"data.path={d / 'candles.parquet'}", f"data.symbol={symbol}",
            f"data.timeframe={s.timeframe}", f"data.quality_log={d / 'data_quality.jsonl'}",
            f"data.allow_degraded={str(s.allow_degraded).lower()}", f"db.url={s.db_url}",
            f"seed={_seed(s)}", *s.common_overrides(), *s.train_overrides]


def _seed(s: NightSettings) -> int:
    for o in s.train_overrides:
        if o.startswith("seed="):
            return int(o.split("=", 1)[1])
    return 42


# --------------------------------------------------------------------------------------------
# the steps: each returns (detail, mlflow run ids) or raises StepSkipped / an error


def step_download(s: NightSettings, symbol: str) -> tuple[str, list[str]]:
    from huracan.data.lake import CandleLake

    lake = CandleLake(s.lake)
    notes = []
    for imp_symbol, path in s.imports.items():
        if imp_symbol != symbol:
            continue
        from huracan.data.lake_import import import_candles

        res = import_candles(path, lake, s.exchange, symbol, s.source_timeframe,
                             sink=_db_sink(s), allow_degraded=s.allow_degraded)
        if not res.stored:
            raise DegradedNight(f"degraded: {Path(path).name} breaks "
                                f"{', '.join(res.report.failed_rules)[:300]}; not imported, "
                                "training skipped (nightly.allow_degraded=false)")
        notes.append(f"imported {Path(path).name}: {res.written} new bar(s), "
                     f"{res.skipped} stored already")
    notes.append(_liquidation_note(s, symbol))
    if s.offline:
        bounds = lake.bounds(s.exchange, symbol, s.source_timeframe)
        if bounds is None:
            raise FileNotFoundError(
                f"offline: the lake {s.lake} has no {s.exchange} {symbol} {s.source_timeframe} "
                f"candles (add them with huracan lake import FILE --exchange {s.exchange} "
                f"--symbol {symbol} --timeframe {s.source_timeframe})")
        notes.append(f"offline: lake holds {bounds[0]} .. {bounds[1]}")
        return "; ".join(notes), []
    from huracan.data.sources import download_derivatives, download_ohlcv, make_downloader

    engine = _engine(s)
    try:
        downloader = make_downloader(_db_sink(s, engine))
        dl = download_ohlcv(downloader, lake, symbol, s.source_timeframe, s.since, s.until,
                            exchanges=[s.exchange])
        notes.append(f"candles: {dl.summary()}")
        for kind in s.derivatives:
            try:
                dres = download_derivatives(downloader, engine, kind,  # type: ignore[arg-type]
                                            symbol, s.since, s.until, timeframe=s.timeframe)
                notes.append(f"{kind}: {dres.summary()}")
            except Exception as exc:  # derivatives are optional inputs: note, go on
                notes.append(f"{kind}: failed: {mask_text(str(exc)).splitlines()[0][:200]}")
    finally:
        engine.dispose()
    return "; ".join(notes), []


def _liquidation_note(s: NightSettings, symbol: str) -> str:
    """What the liquidation collector (``huracan liquidations``, a long-running stream process,
    not a nightly download) stored for ``symbol`` over the last 24 hours: its 1-minute buckets
    are built from these events when the features need them."""
    from sqlalchemy import func, select

    from huracan.db.tables import Liquidation

    engine = _engine(s)
    try:
        since = datetime.now(UTC) - timedelta(days=1)
        with engine.connect() as conn:
            n, last = conn.execute(select(func.count(), func.max(Liquidation.timestamp)).where(
                Liquidation.symbol.in_([symbol, f"{symbol}:{symbol.split('/')[-1]}"]),
                Liquidation.timestamp >= since)).one()
    finally:
        engine.dispose()
    return (f"liquidations: {n} event(s) from the collector in the last 24 h"
            + (f", newest {last}" if last else ""))


def _db_sink(s: NightSettings, engine: Any | None = None) -> Any:
    from huracan.data.quality_db import DbQualitySink

    return DbQualitySink(engine if engine is not None else _engine(s))


def step_validate(s: NightSettings, symbol: str) -> tuple[str, list[str]]:
    import pandas as pd

    from huracan.data.lake import CandleLake, write_candles
    from huracan.data.validate import validate_frame

    lake = CandleLake(s.lake)
    start = None
    if s.history_days:
        bounds = lake.bounds(s.exchange, symbol, s.source_timeframe)
        if bounds is not None:
            start = bounds[1] - pd.Timedelta(days=s.history_days)
    candles = lake.read(s.exchange, symbol, s.source_timeframe, start=start)
    if candles.empty:
        raise ValueError(f"no {s.exchange} {symbol} {s.source_timeframe} candles in {s.lake}")
    engine = _engine(s)
    try:
        report = validate_frame(candles, "ohlcv", source=f"lake:{s.exchange}:{symbol}:"
                                f"{s.source_timeframe}", symbol=symbol,
                                timeframe=s.source_timeframe, sink=_db_sink(s, engine))
    finally:
        engine.dispose()
    snapshot = s.symbol_dir(symbol) / "candles.parquet"
    detail = (f"{len(candles)} bars {candles['timestamp'].iloc[0]} .. "
              f"{candles['timestamp'].iloc[-1]}; {report.summary()}")
    if report.critical and not s.allow_degraded:
        raise DegradedNight(f"degraded: {', '.join(report.failed_rules)[:300]}; training "
                            "skipped (nightly.allow_degraded=false)")
    write_candles(candles, snapshot)
    return detail, []


class DegradedNight(Exception):  # noqa: N818
    """Critical data-quality rules failed: the symbol is not trained tonight."""


def step_features(s: NightSettings, symbol: str) -> tuple[str, list[str]]:
    from omegaconf import OmegaConf

    from huracan import stages
    from huracan.settings import JobSettings

    cfg = _compose_train(s, symbol)
    resolved: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    settings = JobSettings.from_dict(resolved)
    candles = stages.load_validated(settings.data, log_quality=False)
    sources = stages.family_sources(settings.features, settings.data, candles, settings.db_url)
    context = stages.context_candles(settings.features, settings.data, log_quality=False)
    fs = stages.build_features(candles, settings.data.timeframe, settings.features,
                               label=settings.label, sources=sources, context=context)
    return (f"{len(fs.frame)} rows x {len(fs.feature_names)} features at {s.timeframe} "
            f"from {len(candles)} bars"), []


def _sweep_dir(s: NightSettings, symbol: str, attempt: int) -> Path:
    return s.symbol_dir(symbol) / f"train-{attempt}"


def step_train(s: NightSettings, symbol: str, attempt: int) -> tuple[str, list[str]]:
    from huracan.tracking.results import read_results, sweep_parent

    sweep = _sweep_dir(s, symbol, attempt)
    _kill_stale_runs(s, symbol)
    cmd = [s.python, "-m", "huracan.train", "-m", f"model={','.join(s.models)}",
           *[o for o in train_overrides(s, symbol) if not o.startswith("db.url=")],
           "~hydra.callbacks.registry_gate", f"hydra.sweep.dir={sweep}"]
    if s.launcher == "joblib":
        cmd += ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={s.launcher_jobs}"]
    proc = _run(cmd, s, s.symbol_dir(symbol) / "train.log")
    if proc.returncode != 0:
        raise RuntimeError(f"huracan.train exited {proc.returncode}: "
                           f"{_last_error(s.symbol_dir(symbol) / 'train.log')}")
    parent = sweep_parent(sweep) or {}
    results = read_results(sweep, parent.get("sweep_id"))
    ok = [r for r in results if r.get("status", "ok") == "ok"]
    runs = [str(r["run_id"]) for r in ok if r.get("run_id")]
    write_json_atomic(s.symbol_dir(symbol) / "train.json",
                {"sweep_dir": str(sweep), "parent_run_id": parent.get("run_id"),
                 "sweep_id": parent.get("sweep_id"), "run_ids": runs})
    best = max(ok, key=lambda r: float(r.get("objective_value", float("-inf"))), default=None)
    detail = f"{len(ok)}/{len(s.models)} model(s) trained in {sweep.name}"
    if best is not None:
        detail += (f"; best {best.get('model_type')} {best.get('objective')} "
                   f"{float(best.get('objective_value', float('nan'))):.4f}")
    return detail, [r for r in [parent.get("run_id"), *runs] if r]


def _kill_stale_runs(s: NightSettings, symbol: str) -> None:
    """Mark the MLflow runs an interrupted train attempt of this symbol left RUNNING as KILLED
    (the sweep's parent run is tagged with its sweep dir; jobs nest under it)."""
    from mlflow.tracking import MlflowClient

    from huracan.tracking import run as tracking
    from huracan.tracking.results import SWEEP_DIR_TAG

    base = s.symbol_dir(symbol)
    stale = [p for p in base.glob("train-*") if p.is_dir()]
    if not stale:
        return
    tracking.configure(s.tracking_uri, Path(s.store_dir), s.experiment_name)
    client = MlflowClient()
    exp = client.get_experiment_by_name(s.experiment_name)
    if exp is None:
        return
    for sweep in stale:
        parents = client.search_runs([exp.experiment_id], filter_string=(
            f"tags.`{SWEEP_DIR_TAG}` = '{sweep.resolve()}' and attributes.status = 'RUNNING'"))
        for parent in parents:
            children = client.search_runs([exp.experiment_id], filter_string=(
                f"tags.`mlflow.parentRunId` = '{parent.info.run_id}' and "
                "attributes.status = 'RUNNING'"))
            for run in [*children, parent]:
                client.set_terminated(run.info.run_id, status="KILLED")
                log.warning("marked run %s of the interrupted sweep %s KILLED",
                            run.info.run_id, sweep.name)


def _train_record(s: NightSettings, symbol: str) -> dict[str, Any]:
    rec = _read_json(s.symbol_dir(symbol) / "train.json")
    if rec is None:
        raise RuntimeError(f"no train.json for {symbol}: the train step did not finish")
    return rec


def step_importance(s: NightSettings, symbol: str) -> tuple[str, list[str]]:
    from mlflow.tracking import MlflowClient

    from huracan.analysis.importance_store import run_ranking
    from huracan.pipeline import analyze_run
    from huracan.tracking import run as tracking

    rec = _train_record(s, symbol)
    imp = _compose_train(s, symbol).importance  # the sweep's analysis settings
    tracking.configure(s.tracking_uri, Path(s.store_dir), s.experiment_name)
    client = MlflowClient()
    engine = _engine(s)
    done, new, tops, uses = 0, 0, [], []
    try:
        for run_id in rec["run_ids"]:
            if len(run_ranking(engine, run_id)):
                done += 1
            else:
                out = analyze_run(client, engine, run_id, n_repeats=int(imp.n_repeats),
                                  seed=int(imp.seed), shift_threshold=float(imp.shift_threshold),
                                  top_n=int(imp.top_n_compare), notifier=_notifier(s))
                new += 1
                top = out.result.ranking().head(3)["feature"].tolist()
                tops.append(f"{out.model_type}: {', '.join(top)}")
            uses.append(stored_families(engine, run_id))
    finally:
        engine.dispose()
    return (f"{done} run(s) ranked in their jobs, {new} analysed now"
            + (f"; top {'; '.join(tops)}" if tops else "")
            + (f"; information: {'; '.join(u for u in uses if u)}" if any(uses) else "")), []


def stored_families(engine: Any, run_id: str) -> str:
    """``<model_type>: uses mostly ...``: which kind of information run ``run_id``'s model
    uses, from its stored SHAP ranking (else permutation) summed per feature family
    (:func:`huracan.analysis.families.describe`); ``""`` without a stored ranking."""
    from huracan.analysis.families import FAMILY_METHODS, describe, family_sums, shares_of
    from huracan.analysis.importance_store import run_ranking

    for method in FAMILY_METHODS:
        ranking = run_ranking(engine, run_id, method)
        if len(ranking):
            sums = family_sums(ranking["importance"].to_numpy(), ranking["feature"].tolist())
            return f"{ranking['model_type'].iloc[0]}: {describe(shares_of(sums), method)}"
    return ""


def step_gate(s: NightSettings, symbol: str) -> tuple[str, list[str]]:
    from omegaconf import OmegaConf

    from huracan.callbacks.gate import GATE_FILE, RegistryGate
    from huracan.tracking.results import read_results

    rec = _train_record(s, symbol)
    sweep = Path(rec["sweep_dir"])
    gate_file = sweep / GATE_FILE
    if not gate_file.exists():
        cfg = _compose_train(s, symbol)
        OmegaConf.set_struct(cfg, False)
        cfg.registry.enabled = True
        results = read_results(sweep, rec.get("sweep_id"))
        RegistryGate().decide(cfg, results, rec.get("parent_run_id"), sweep)
    gate = _read_json(gate_file) or {}
    decisions = gate.get("decisions", gate if isinstance(gate, list) else [])
    parts = [f"{d.get('model')} v{d.get('version')}: {d.get('decision')}"
             for d in decisions if isinstance(d, dict)]
    return ("; ".join(parts) or "no decision recorded"), []


def step_monitor(s: NightSettings, symbol: str) -> tuple[str, list[str]]:
    from huracan.registry.promotion import registered_model_name

    if not s.monitor:
        raise StepSkipped("nightly.monitor.enabled=false")
    name = registered_model_name(symbol, s.timeframe)
    if _production(s, name) is None:
        raise StepSkipped(f"{name} has no production version to monitor")
    cmd = [s.python, "-m", "huracan.cli", "registry", "monitor", name,
           "--data", str(s.symbol_dir(symbol) / "candles.parquet"), "--window", s.monitor_window,
           "--drift-share", str(s.drift_share)]
    if s.weekly_rescale:
        cmd.append("--weekly-rescale")
    # the tracking URI reaches the command through MLFLOW_TRACKING_URI (s.env()), never argv
    logf = s.symbol_dir(symbol) / "monitor.log"
    proc = _run(cmd, s, logf)
    if proc.returncode == MONITOR_NO_DATA:
        raise StepSkipped(_last_line(logf))
    if proc.returncode != 0:
        err = _last_error(logf)
        if "has no production version" in err:
            raise StepSkipped(err)
        if "no earlier production version to roll back to" in err:
            # production degraded and there is nothing to fall back to: the monitor did its job
            # (drift and score recorded); it is the model that needs attention, not the night
            _alert(s, f"{name}: production degraded, nothing to roll back to", "critical",
                   {"run": s.run_id, "detail": err})
            return f"DEGRADED, kept (no earlier version to roll back to): {err}", []
        raise RuntimeError(f"registry monitor exited {proc.returncode}: {err}")
    return _last_line(logf), []


def _production(s: NightSettings, name: str) -> Any:
    """The production version of ``name`` (``None`` when there is none)."""
    from mlflow.tracking import MlflowClient

    from huracan.registry.promotion import PRODUCTION, alias_version
    from huracan.tracking import run as tracking

    tracking.configure(s.tracking_uri, Path(s.store_dir), s.experiment_name)
    return alias_version(MlflowClient(), name, PRODUCTION)


def _last_line(log_file: Path) -> str:
    lines = [ln for ln in log_file.read_text().splitlines() if ln.strip()]
    return mask_text(lines[-1])[:300] if lines else ""


def paper_max_age(s: NightSettings) -> str:
    """``nightly.paper.max_age``, or two bars of the night's timeframe (``2h`` at 1h)."""
    from huracan.data.ohlcv import timeframe_to_timedelta

    if s.paper_max_age:
        return s.paper_max_age
    return f"{int(2 * timeframe_to_timedelta(s.timeframe).total_seconds())}s"


def step_paper(s: NightSettings, symbol: str, now: datetime | None = None
               ) -> tuple[str, list[str]]:
    """The ``paper`` step: the live account's liveness (alert when stale or never decided),
    then its daily MLflow runs (yesterday's, today's). ``now``: the clock (tests)."""
    import pandas as pd

    from huracan.paper.monitoring import live_account, liveness, log_daily_run

    if not s.paper:
        raise StepSkipped("nightly.paper.enabled=false")
    account = live_account(symbol, s.timeframe)
    t = pd.Timestamp(now or datetime.now(UTC))
    engine = _engine(s)
    try:
        live = liveness(engine, account, paper_max_age(s), t)
        if not live.exists:
            if s.paper_expected:
                _alert(s, f"{symbol}: no paper account {account}", "critical",
                       {"run": s.run_id, "detail": "nightly.paper.expected=true"})
                raise RuntimeError(f"no paper account {account} (nightly.paper.expected=true)")
            raise StepSkipped(f"no paper account {account}: nothing to check")
        if live.stale:
            _alert(s, f"{symbol}: paper loop {account} is not alive", "warning",
                   {"run": s.run_id, "detail": live.line()})
        runs: list[str] = []
        if s.paper_daily_run:
            from mlflow.tracking import MlflowClient

            from huracan.tracking import run as tracking

            tracking.configure(s.tracking_uri, Path(s.store_dir), s.experiment_name)
            client = MlflowClient()
            for day in (t.normalize() - pd.Timedelta(days=1), t.normalize()):
                runs.append(log_daily_run(client, engine, account, day, now=t))
    finally:
        engine.dispose()
    return live.line() + (f"; daily runs {', '.join(runs)}" if runs else ""), runs


def step_sizer(s: NightSettings, symbol: str, store: PipelineRunStore) -> tuple[str, list[str]]:
    from mlflow.tracking import MlflowClient

    from huracan.registry.cash import is_cash
    from huracan.registry.promotion import registered_model_name

    if not s.sizer:
        raise StepSkipped("nightly.sizer.enabled=false")
    last = store.last_finished(symbol, "sizer")
    if last is not None and last.ended_at is not None and \
            datetime.now(UTC) - last.ended_at < timedelta(days=s.sizer_every_days):
        raise StepSkipped(f"not due: last retrain {last.ended_at:%Y-%m-%d %H:%M} UTC "
                          f"(every {s.sizer_every_days:g} days)")
    name = registered_model_name(symbol, s.timeframe)
    prod = _production(s, name)
    client = MlflowClient()
    if prod is None or not prod.run_id:
        raise StepSkipped(f"{name} has no production forecaster to size")
    if is_cash(prod):
        raise StepSkipped(f"{name}: production is cash (v{prod.version}): nothing to size")
    arts = {a.path for a in client.list_artifacts(prod.run_id, "backtest")}
    if "backtest/oos_returns.parquet" not in arts:
        raise StepSkipped(f"{name} v{prod.version} is not a walk-forward forecaster (the sizer "
                          "learns from walk-forward OOS predictions)")
    d = s.symbol_dir(symbol)
    cmd = [s.python, "-m", "huracan.sizer", f"data.path={d / 'candles.parquet'}",
           f"data.symbol={symbol}", f"data.timeframe={s.timeframe}",
           f"hydra.run.dir={d / 'sizer'}", *s.common_overrides(), *s.sizer_overrides]
    proc = _run(cmd, s, d / "sizer.log")
    if proc.returncode != 0:
        raise RuntimeError(f"huracan.sizer exited {proc.returncode}: "
                           f"{_last_error(d / 'sizer.log')}")
    return _last_line(d / "sizer.log"), []


# --------------------------------------------------------------------------------------------
# one symbol's night


def run_symbol(s: NightSettings, symbol: str) -> SymbolOutcome:
    """Run (or resume) the night of ``symbol``: every step in :data:`STEPS` order, skipping the
    finished ones. Never raises: a failing step ends the symbol's night, recorded and reported
    in the outcome."""
    out = SymbolOutcome(symbol)
    try:  # the schema is brought to head once, by run_night, before the fan-out
        engine = _engine(s)
        store = PipelineRunStore(engine)
    except Exception as exc:
        out.failed = True
        out.steps.append(StepResult("setup", "failed", mask_text(f"{type(exc).__name__}: {exc}")
                                    .splitlines()[0][:300]))
        return out
    runners: dict[str, Callable[[int], tuple[str, list[str]]]] = {
        "download": lambda a: step_download(s, symbol),
        "validate": lambda a: step_validate(s, symbol),
        "features": lambda a: step_features(s, symbol),
        "train": lambda a: step_train(s, symbol, a),
        "importance": lambda a: step_importance(s, symbol),
        "gate": lambda a: step_gate(s, symbol),
        "monitor": lambda a: step_monitor(s, symbol),
        "paper": lambda a: step_paper(s, symbol),
        "sizer": lambda a: step_sizer(s, symbol, store),
    }
    try:
        for step in progress.track(STEPS, f"{symbol} nightly steps"):
            try:
                claimed = store.claim(s.run_id, symbol, step)
            except StepBusyError as exc:
                out.failed = True
                out.steps.append(StepResult(step, "failed", str(exc)))
                return out
            if claimed is None:
                rec = store.get(s.run_id, symbol, step)
                assert rec is not None
                out.steps.append(StepResult(step, rec.status, rec.detail or "",
                                            rec.mlflow_run_ids, rec.seconds or 0.0, True))
                continue
            t0 = time.perf_counter()
            try:
                detail, runs = runners[step](claimed.attempts)
                status = "done"
            except StepSkipped as exc:
                detail, runs, status = str(exc), [], "skipped"
            except DegradedNight as exc:
                detail, runs, status = str(exc), [], "failed"
                out.degraded = True
                _alert(s, f"{symbol}: degraded data, not trained tonight", "warning",
                       {"run": s.run_id, "detail": str(exc)[:300]})
            except (Exception, SystemExit) as exc:  # the gate callback exits 1 on failure
                first = (str(exc).strip().splitlines() or [""])[0]
                detail = mask_text(f"{type(exc).__name__}: {first}")[:500]
                runs, status = [], "failed"
                log.error("%s %s failed: %s\n%s", symbol, step, detail,
                          mask_text(traceback.format_exc()))
            store.finish(s.run_id, symbol, step, status, detail=detail, mlflow_run_ids=runs)
            out.steps.append(StepResult(step, status, detail, runs, time.perf_counter() - t0))
            log.info("%s %-10s %-7s %.1fs %s", symbol, step, status, time.perf_counter() - t0,
                     detail)
            if status == "failed":
                out.failed = True
                return out
        return out
    finally:
        engine.dispose()


def _alert(s: NightSettings, title: str, severity: str, details: dict[str, Any]) -> None:
    from huracan.alerts import Alert

    try:
        _notifier(s).notify(Alert(title, severity, details))
    except Exception:  # alerts never stop the night
        log.exception("alert failed")


def with_threads(s: NightSettings, threads: int | None) -> NightSettings:
    """``s`` with a per-process thread cap (the executors set it for side-by-side symbols)."""
    return replace(s, threads=threads)
