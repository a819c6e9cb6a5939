"""One night over several symbols: fan-out (executors), then the summary.

Executors (``nightly.executor``), all running :func:`huracan.orchestration.steps.run_symbol` per
symbol, which never raises, so one symbol's failure never stops the others:

- ``basic``: the symbols one after another in this process.
- ``joblib``: the symbols side by side in ``nightly.n_jobs`` worker processes (joblib's loky
  backend, the engine of Hydra's joblib launcher). Each worker's training processes are capped
  at ``cores // workers`` threads so the workers do not oversubscribe the machine.
- ``ray``: one Ray task per symbol (``num_cpus=1``) on the cluster at ``ray.address`` (``auto``
  or ``ray://host:10001``), or a local Ray started with ``ray.num_cpus`` when no address is
  given. Every node needs this package, and the store, tracking server and lake reachable at
  the same URLs/paths (a shared file system or S3-backed MLflow; see deploy/).

The models of one symbol fan out through Hydra's launcher of its ``huracan.train`` sweep
(``nightly.launcher=joblib``), whose end-of-sweep callbacks read job results from files.

The summary (night-wide step ``summary`` of the pseudo-symbol ``*``): the per-symbol step table,
the daily data-quality report of ``data_quality_logs`` (:mod:`huracan.data.quality_report`) and
one alert (critical when a symbol failed, warning when one was degraded, info otherwise), sent
when this invocation did work; a rerun of a finished night only prints it.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from huracan import progress
from huracan.orchestration.runs import NIGHT, PipelineRunStore
from huracan.orchestration.steps import NightSettings, StepResult, SymbolOutcome, run_symbol
from huracan.secrets import mask_text

log = logging.getLogger("huracan.nightly")

EXECUTORS = ("basic", "joblib", "ray")


@dataclass
class NightOutcome:
    """The night: per-symbol outcomes, wall seconds, the summary text and whether the summary
    was (re)sent."""

    run_id: str
    symbols: list[SymbolOutcome]
    seconds: float
    summary: str = ""
    alerted: bool = False
    quality: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[str]:
        """Symbols whose night failed (a step failed, data degraded, or a worker died)."""
        return [o.symbol for o in self.symbols if o.failed]

    @property
    def exit_code(self) -> int:
        """0 when every symbol finished its night, 1 otherwise."""
        return 1 if self.failed else 0


def _failed_outcome(symbol: str, exc: BaseException) -> SymbolOutcome:
    first = (str(exc).strip().splitlines() or [""])[0]
    return SymbolOutcome(symbol, [StepResult("worker", "failed",
                                             mask_text(f"{type(exc).__name__}: {first}")[:300])],
                         failed=True)


def run_symbols(s: NightSettings, symbols: list[str], executor: str = "basic", n_jobs: int = 2,
                ray_settings: dict[str, Any] | None = None) -> list[SymbolOutcome]:
    """Run the night of every symbol through ``executor``; outcomes in ``symbols`` order. The
    store's schema must be at head (:func:`run_night` upgrades it first).

    Raises:
        ValueError: an unknown executor.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"nightly.executor must be one of {EXECUTORS}, got {executor!r}")
    if executor == "basic" or (len(symbols) <= 1 and executor == "joblib"):
        return [run_symbol(s, sym) for sym in progress.track(symbols, "nightly symbols")]
    cores = os.cpu_count() or 1
    if executor == "joblib":
        from joblib import Parallel, delayed

        workers = max(1, min(n_jobs, len(symbols)))
        capped = replace(s, threads=s.threads or max(1, cores // workers))
        try:
            return list(Parallel(n_jobs=workers, backend="loky")(
                delayed(run_symbol)(capped, sym) for sym in symbols))
        except Exception as exc:  # a worker process died (OOM, kill): report, never hide
            log.exception("joblib executor failed")
            return [_failed_outcome(sym, exc) for sym in symbols]
    return _run_ray(s, symbols, ray_settings or {})


def _run_ray(s: NightSettings, symbols: list[str], cfg: dict[str, Any]) -> list[SymbolOutcome]:
    import ray

    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "ignore_reinit_error": True}
        if cfg.get("address"):
            kwargs["address"] = cfg["address"]
        else:
            kwargs["num_cpus"] = int(cfg.get("num_cpus") or os.cpu_count() or 1)
            if cfg.get("temp_dir"):
                kwargs["_temp_dir"] = str(cfg["temp_dir"])
        ray.init(**kwargs)
        started = True
    try:
        per_task = float(cfg.get("cpus_per_task") or 1)
        threads = s.threads or max(1, int(per_task))
        task = ray.remote(num_cpus=per_task, max_retries=0)(run_symbol)
        refs = [task.remote(replace(s, threads=threads), sym) for sym in symbols]
        out = []
        for sym, ref in zip(symbols, refs, strict=True):
            try:
                out.append(ray.get(ref))
            except Exception as exc:  # the task's worker died
                out.append(_failed_outcome(sym, exc))
        return out
    finally:
        if started:
            ray.shutdown()


def run_night(s: NightSettings, symbols: list[str], *, executor: str = "basic", n_jobs: int = 2,
              ray_settings: dict[str, Any] | None = None) -> NightOutcome:
    """Run (or resume) the night ``s.run_id`` over ``symbols``, then the summary."""
    from huracan.db import migrate
    from huracan.db.session import make_engine

    t0 = time.perf_counter()
    engine = make_engine(s.db_url)
    try:  # once, here: workers creating a fresh store side by side would race
        migrate.upgrade(engine)
    finally:
        engine.dispose()
    from huracan.tracking import run as tracking

    tracking.configure(s.tracking_uri, Path(s.store_dir), s.experiment_name)  # the MLflow store
    outcomes = run_symbols(s, symbols, executor, n_jobs, ray_settings)
    night = NightOutcome(s.run_id, outcomes, time.perf_counter() - t0)
    summarize(s, night)
    return night


def _table(outcomes: list[SymbolOutcome]) -> list[str]:
    lines = []
    for o in outcomes:
        state = "FAILED" if o.failed else "ok"
        if o.degraded:
            state = "DEGRADED (not trained)"
        lines.append(f"{o.symbol}: {state}")
        for st in o.steps:
            tag = " (earlier run)" if st.resumed else ""
            lines.append(f"  {st.step:<10} {st.status:<7} {st.seconds:7.1f}s{tag}  {st.detail}")
    return lines


def summarize(s: NightSettings, night: NightOutcome) -> None:
    """Build the night's summary (steps + daily data-quality report), print it, write
    ``<work>/<night>/summary.json``, record the ``summary`` step and send one alert when this
    invocation did work (a rerun of a finished night only prints)."""
    import pandas as pd

    from huracan.data.quality_report import build_report
    from huracan.db.session import make_engine
    from huracan.orchestration.steps import _alert

    worked = any(o.worked for o in night.symbols)
    lines = [f"nightly {night.run_id}: {len(night.symbols)} symbol(s), "
             f"{len(night.failed)} failed, {night.seconds:.1f}s"]
    lines += _table(night.symbols)
    engine = make_engine(s.db_url)
    try:
        store = PipelineRunStore(engine)
        try:
            report = build_report(engine, pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=1),
                                  expected_symbols=(() if s.offline  # no downloads
                                                    else [o.symbol for o in night.symbols]))
            alert_q = report.alert()
            quality_title = alert_q.title
            night.quality = {"title": alert_q.title, "severity": alert_q.severity,
                             **{k: str(v) for k, v in alert_q.details.items()}}
        except Exception as exc:
            quality_title = f"data-quality report unavailable: {type(exc).__name__}: {exc}"
        lines.append(f"data quality (last 24 h): {mask_text(quality_title)}")
        night.summary = "\n".join(lines)
        prev = store.get(s.run_id, NIGHT, "summary")
        if worked or prev is None or prev.status != "done":
            claimed = store.claim(s.run_id, NIGHT, "summary", reopen=True)
            if claimed is not None:
                severity = ("critical" if night.failed else
                            "warning" if any(o.degraded for o in night.symbols) else "info")
                details = {"run": s.run_id, "failed": ",".join(night.failed) or "none",
                           "symbols": len(night.symbols), "quality": quality_title[:200]}
                for o in night.symbols:
                    last = o.steps[-1] if o.steps else None
                    details[o.symbol] = (f"{'failed' if o.failed else 'ok'}"
                                         + (f" at {last.step}: {last.detail[:120]}"
                                            if o.failed and last else ""))
                _alert(s, f"nightly {s.run_id}: {len(night.symbols) - len(night.failed)}/"
                       f"{len(night.symbols)} symbol(s) ok", severity, details)
                night.alerted = True
                _write_summary(s, night)
                store.finish(s.run_id, NIGHT, "summary", "done",
                             detail=f"{len(night.failed)} failed; {quality_title[:200]}")
    finally:
        engine.dispose()


def _write_summary(s: NightSettings, night: NightOutcome) -> None:
    from huracan.tracking.results import write_json_atomic

    write_json_atomic(Path(s.work_dir) / s.run_id / "summary.json", {
        "run_id": night.run_id, "written_at": datetime.now(UTC).isoformat(),
        "seconds": night.seconds, "failed": night.failed, "quality": night.quality,
        "symbols": [o.as_dict() for o in night.symbols]})


def default_run_id(timeframe: str, now: datetime | None = None) -> str:
    """``<UTC date>-<timeframe>``: one night per day and bar size."""
    return f"{(now or datetime.now(UTC)):%Y-%m-%d}-{timeframe}"
