"""Hydra callbacks of ``python -m huracan.train``: the sweep's MLflow parent run, its summary table,
and secret masking in Hydra's own output files.

Launcher-agnostic by construction: under Hydra's joblib and ray launchers the jobs run in other
processes (``on_job_start``/``on_job_end`` run there, with a fresh callback object per job), so
nothing here collects job results in memory. Each job writes ``result.json`` into its own output
dir (:func:`huracan.tracking.results.write_result`); the parent's ``on_multirun_end`` reads
``<sweep dir>/*/result.json`` (:func:`~huracan.tracking.results.read_results`). The parent run's
id travels the other way through ``<sweep dir>/sweep.json``
(:func:`~huracan.tracking.results.sweep_parent`), with an MLflow tag lookup as a fallback for a
worker that does not share the sweep dir.

- :class:`SweepRun`: one MLflow parent run per multirun (``huracan.role=sweep``); every job's run
  is nested under it (the MLflow UI's comparison view of a sweep). At the end the summary table is
  printed and logged to it (``sweep/summary.csv``, ``sweep/summary.txt``): per candidate its net
  Sharpe, breakeven cost and net return per scored window beside buy & hold's and cash's rows on
  the same windows, and a line naming the floor (how many candidates beat cash where they are
  selected); a sweep that fails (a job raised, so Hydra skips ``on_multirun_end``) still gets its
  table and ends FAILED (at exit). The parent names ONE winner (:func:`sweep_winner`): the best
  eligible job, the candidate the registry gate judges (``best_run_id``, ``best_model``), with
  its headline metrics (``best/<window>_sharpe``...); a higher score that is not eligible is
  named as such (``top_ineligible_run_id``, ``top_ineligible_reason``), never as the best.
- :class:`MaskSecrets`: rewrites ``.hydra/{config,hydra,overrides}.yaml`` and ``multirun.yaml``
  with URL passwords and secret-named values masked (:func:`huracan.secrets.mask_text`).
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from huracan.io import atomic_write_text
from huracan.secrets import mask_text, mask_url
from huracan.settings import SelectionSettings
from huracan.tracking.names import SWEEP
from huracan.tracking.results import (
    SWEEP_DIR_TAG,
    SWEEP_FILE,
    SWEEP_ROLE_TAG,
    _write_json,
    read_result,
    read_results,
)

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- summary table
#: what every sweep summary compares its candidates with, on the same window: buy & hold (from
#: each job's ``<window>_buy_hold_sharpe`` / ``<window>_buy_hold_total_return`` metrics, logged
#: by :func:`huracan.evaluation.diagnostics.window_diagnostics`) and cash (never trade: Sharpe 0,
#: return 0, no trades, PSR 0)
BASELINE_STATUS = "baseline"
BUY_HOLD, CASH = "buy & hold", "cash"


def _windows(scheme: str) -> tuple[str, ...]:
    """The scored windows a job of ``scheme`` reports: OOS for walk-forward, else val and test."""
    return ("oos",) if scheme == "walk_forward" else ("val", "test")


def _baseline_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Buy & hold and cash rows for the successful jobs of each split scheme: one buy & hold
    row per distinct window (jobs scored on the same bars share one; ``job`` lists the jobs it
    stands beside, ``all`` when every job of the scheme), none when no job logged buy & hold;
    one cash row per scheme."""
    ok = [r for r in results if r.get("status", "ok") == "ok"]
    rows: list[dict[str, Any]] = []
    for scheme in dict.fromkeys(str(r.get("scheme", "forward")) for r in ok):
        group = [r for r in ok if str(r.get("scheme", "forward")) == scheme]
        prefixes = _windows(scheme)
        windows: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for r in group:
            m = r.get("metrics", {})
            if any(f"{p}_buy_hold_sharpe" in m for p in prefixes):
                key = tuple(f"{float(m.get(f'{p}_buy_hold_{k}', math.nan)):.12g}"
                            for p in prefixes for k in ("sharpe", "total_return"))
                windows.setdefault(key, []).append(r)
        for members in windows.values():
            m = members[0]["metrics"]
            jobs = "all" if len(members) == len(group) else ",".join(
                str(r.get("job", 0)) for r in members)
            row: dict[str, Any] = {"job": jobs, "model": BUY_HOLD, "status": BASELINE_STATUS,
                                   "scheme": scheme}
            for p in prefixes:
                row |= {f"{p}_sharpe": m.get(f"{p}_buy_hold_sharpe", math.nan),
                        f"{p}_return": m.get(f"{p}_buy_hold_total_return", math.nan),
                        f"{p}_trades": 1}  # one entry, held to the window's end
            rows.append(row)
        cash: dict[str, Any] = {"job": "all", "model": CASH, "status": BASELINE_STATUS,
                                "scheme": scheme}
        for p in prefixes:
            cash |= {f"{p}_sharpe": 0.0, f"{p}_return": 0.0, f"{p}_trades": 0, f"{p}_psr": 0.0}
        rows.append(cash)
    return rows


def summary_frame(results: list[dict[str, Any]], min_trades: int | None = None) -> pd.DataFrame:
    """One row per job: model, status, the selection metric, and for each scored window (val and
    test for a forward split, OOS for walk-forward) the net Sharpe, breakeven cost (bps per unit
    turnover, ``<window>_breakeven_bps``), net total return, composite, trades, PSR and DSR (when
    the sweep computed it); ``eligible`` (>= ``min_trades`` trades on the selection window);
    fit seconds. Then the baselines on the same windows (``status`` = ``baseline``): buy & hold
    (when the jobs logged it) and cash (see :data:`BUY_HOLD`, :data:`CASH`)."""
    from huracan.evaluation.evidence import eligibility

    ok_ids = set(eligibility(results, min_trades).eligible) if min_trades is not None else set()
    rows = []
    for r in results:
        row: dict[str, Any] = {"job": r.get("job", 0), "model": r.get("model_type", "?"),
                               "status": r.get("status", "ok")}
        if row["status"] != "ok":
            row["error"] = str(r.get("error", ""))[:120]
            rows.append(row)
            continue
        m = r.get("metrics", {})
        row["scheme"] = r.get("scheme", "forward")
        row["objective"] = r.get("objective", "")
        row["objective_value"] = r.get("objective_value", math.nan)
        for p in _windows(row["scheme"]):
            row[f"{p}_sharpe"] = m.get(f"{p}_sharpe", math.nan)
            row[f"{p}_breakeven_bps"] = m.get(f"{p}_breakeven_bps", math.nan)
            row[f"{p}_return"] = m.get(f"{p}_total_return", math.nan)
            row[f"{p}_composite"] = m.get(f"{p}_composite_score", math.nan)
            row[f"{p}_trades"] = int(m.get(f"{p}_n_trades", 0))
            row[f"{p}_psr"] = m.get(f"{p}_psr", math.nan)
            if f"{p}_dsr" in m:
                row[f"{p}_dsr"] = m[f"{p}_dsr"]
        if min_trades is not None:
            row["eligible"] = "yes" if str(r.get("run_id")) in ok_ids else "no"
        if row["scheme"] == "walk_forward":
            row["folds"] = r.get("n_folds", 1)
        row["fit_s"] = r.get("timings", {}).get("fit", math.nan)
        row["run_id"] = r.get("run_id", "")
        rows.append(row)
    rows += _baseline_rows(results)
    frame = pd.DataFrame(rows)
    for col in frame.columns:  # counts stay integers beside a failed job's empty cells
        if col.endswith("_trades") or col == "folds":
            frame[col] = frame[col].astype("Int64")
    return frame


def floor_line(results: list[dict[str, Any]], min_psr: float = 0.9) -> str:
    """One line naming the floor of the sweep's selection: how many successful candidates beat
    cash on the window they are selected on (the window of their ``objective``: ``val``
    forward, ``oos`` walk-forward), by the rule every decision applies
    (:func:`huracan.evaluation.evidence.beats_cash`: net total return > 0 and ``<window>_psr``
    >= ``min_psr``, the ``registry.min_psr`` setting), and buy & hold there when logged. ``""``
    without a successful job."""
    ok = [r for r in results if r.get("status", "ok") == "ok"]
    if not ok:
        return ""
    parts = []
    for window in dict.fromkeys(str(r.get("objective", "val_")).split("_", 1)[0] for r in ok):
        group = [r for r in ok if str(r.get("objective", "val_")).split("_", 1)[0] == window]
        beat = sum(1 for r in group
                   if float(r.get("metrics", {}).get(f"{window}_total_return", math.nan)) > 0
                   and float(r.get("metrics", {}).get(f"{window}_psr", math.nan)) >= min_psr)
        bh = sorted({float(r["metrics"][f"{window}_buy_hold_sharpe"]) for r in group
                     if f"{window}_buy_hold_sharpe" in r.get("metrics", {})})
        text = (f"{beat} of {len(group)} candidates beat cash on {window} (net return > 0 and "
                f"PSR >= {min_psr:g})")
        if bh:
            text += (f"; buy & hold Sharpe there {bh[0]:.3f}" if len(bh) == 1 else
                     f"; buy & hold Sharpe there {bh[0]:.3f} to {bh[-1]:.3f}")
        parts.append(text)
    return "floor: cash (never trade: Sharpe 0, return 0); " + "; ".join(parts)


def format_table(results: list[dict[str, Any]], min_trades: int | None = None,
                 min_psr: float = 0.9) -> str:
    """The summary as fixed-width text (run ids left out), then :func:`floor_line` (cash floor
    at ``min_psr``)."""
    frame = summary_frame(results, min_trades)
    if frame.empty:
        return "(no job results)"
    shown = frame.drop(columns=[c for c in ("run_id", "scheme") if c in frame.columns])
    for col in shown.columns[shown.dtypes == "Int64"]:  # na_rep does not reach pd.NA
        shown[col] = [("-" if pd.isna(v) else str(v)) for v in shown[col]]
    table = str(shown.to_string(index=False, float_format=lambda x: f"{x:.3f}", na_rep="-"))
    floor = floor_line(results, min_psr)
    return f"{table}\n{floor}" if floor else table


# ----------------------------------------------------------------------------- the winner
#: the parent run's headline metrics: ``best/<window>_<name>`` of the winner, per scored window
#: (the selection window, then the unseen one: ``val`` and ``test`` forward, ``oos``
#: walk-forward), from these job metrics
HEADLINE = ("sharpe", "n_trades", "psr", "dsr", "total_return", "breakeven_bps",
            "composite_score", "max_drawdown")


def best_candidates(results: list[dict[str, Any]],
                    eligible: set[str] | None = None) -> list[dict[str, Any]]:
    """Per registered model, the successful result with the highest ``objective_value`` among
    ``eligible`` run ids (all when ``None``); NaN never wins. What the registry gate puts
    through the gate (:class:`huracan.callbacks.gate.RegistryGate`)."""
    best: dict[str, dict[str, Any]] = {}
    for r in results:
        name = r.get("registered_model")
        score = float(r.get("objective_value", math.nan))
        if r.get("status", "ok") != "ok" or not name or r.get("version") is None \
                or not math.isfinite(score):
            continue
        if eligible is not None and str(r.get("run_id")) not in eligible:
            continue
        if name not in best or score > float(best[name]["objective_value"]):
            best[name] = r
    return list(best.values())


@dataclass(frozen=True)
class Winner:
    """The one answer of a sweep: ``best``, the gate's candidate (``None`` when no job is
    eligible); ``top_ineligible``, a job that scored higher on the selection objective but may
    not be selected (``None`` when the best score is eligible), with ``ineligible_reason``;
    ``note``, one line saying how ``best`` was chosen (or why there is none)."""

    best: dict[str, Any] | None
    top_ineligible: dict[str, Any] | None
    ineligible_reason: str
    note: str


def sweep_winner(results: list[dict[str, Any]], min_trades: int) -> Winner:
    """The sweep's winner by the registry gate's own rule: eligible jobs only
    (:func:`huracan.evaluation.evidence.eligibility`: finished, finite objective, at least
    ``min_trades`` trades on the selection window), the best objective per registered model
    (:func:`best_candidates`, exactly the candidates the gate judges), and of those the highest
    objective (one registered model: its candidate). Jobs without a registered version (registry
    off) are ranked the same way among the eligible. Whether the winner is promoted is the
    gate's decision on the unseen window (``huracan.gate.decision``: cash floor, PSR, champion).

    Returns:
        the :class:`Winner`; ``top_ineligible`` is the highest finite objective above the
        winner's (or any, without a winner) that failed eligibility, with its reason.
    """
    from huracan.evaluation.evidence import eligibility

    ok = [r for r in results if r.get("status", "ok") == "ok"
          and math.isfinite(float(r.get("objective_value", math.nan)))]
    elig = eligibility(results, min_trades)
    allowed = set(elig.eligible)
    if any(r.get("registered_model") for r in ok):
        pool = best_candidates(results, allowed)
    else:
        pool = [r for r in ok if str(r.get("run_id")) in allowed]
    best = max(pool, key=lambda r: float(r["objective_value"])) if pool else None
    floor = -math.inf if best is None else float(best["objective_value"])
    higher = [r for r in ok if str(r.get("run_id")) not in allowed
              and float(r["objective_value"]) > floor]
    top = max(higher, key=lambda r: float(r["objective_value"])) if higher else None
    reason = ""
    if top is not None:
        why = next(iter(eligibility([top], min_trades).reasons.values()), "not eligible")
        reason = f"{why} < selection.min_trades {min_trades}" if "trade(s)" in why else why
    rule = f">= {min_trades} trades on the selection window"
    if best is None:
        note = f"no winner: {elig.summary(min_trades)}"
    else:
        note = (f"best {best['objective']} of {len(elig.eligible)} eligible of {len(results)} "
                f"job(s) ({rule}); the gate's candidate")
    return Winner(best, top, reason, note)


def headline_metrics(winner: Winner) -> dict[str, float]:
    """The winner's headline metrics for the parent run: ``best/<window>_<name>`` (see
    :data:`HEADLINE`) on each scored window of its scheme, ``best/objective_value``, and
    ``best/ineligible_top_score`` when a higher score was not eligible. Missing metrics are
    left out; ``{}`` without a winner."""
    out: dict[str, float] = {}
    best = winner.best
    if best is not None:
        m = best.get("metrics", {})
        for w in _windows(str(best.get("scheme", "forward"))):
            for k in HEADLINE:
                v = m.get(f"{w}_{k}")
                if v is not None and math.isfinite(float(v)):
                    out[f"best/{w}_{k}"] = float(v)
        out["best/objective_value"] = float(best["objective_value"])
    if winner.top_ineligible is not None:
        out["best/ineligible_top_score"] = float(winner.top_ineligible["objective_value"])
    return out


def winner_tags(winner: Winner) -> dict[str, str]:
    """The parent run's tags naming the winner: ``best_run_id``, ``best_model``,
    ``best_objective`` and ``best_note`` (how it was chosen); and, when a higher score was not
    eligible, ``top_ineligible_run_id``, ``top_ineligible_model`` and ``top_ineligible_reason``
    (it is NOT the winner)."""
    tags = {"best_note": winner.note}
    if winner.best is not None:
        tags |= {"best_run_id": str(winner.best["run_id"]),
                 "best_model": str(winner.best.get("model_type", "?")),
                 "best_objective": str(winner.best.get("objective", ""))}
    top = winner.top_ineligible
    if top is not None:
        tags |= {"top_ineligible_run_id": str(top.get("run_id", "")),
                 "top_ineligible_model": str(top.get("model_type", "?")),
                 "top_ineligible_reason": f"not eligible: {winner.ineligible_reason}"}
    return tags


# ----------------------------------------------------------------------------- evidence
def deflate_results(results: list[dict[str, Any]], n_trials: int | None = None,
                    sr_variance: Mapping[str, float] | None = None
                    ) -> dict[str, dict[str, float]]:
    """``{run_id: {"<window>_dsr": ...}}``: the deflated Sharpe ratio of every successful job on
    every scored window, against the N jobs of the sweep that scored that window (Bailey & Lopez
    de Prado 2014; N = 1 for a single run, where DSR = PSR), or against ``n_trials`` when more
    (the trials in the tracking store, :func:`huracan.callbacks.gate.store_trials`), with
    ``sr_variance[window]`` (per-bar) when the sweep has a single candidate there. Adds them to
    each result's metrics."""
    from huracan.evaluation.evidence import candidate_windows, deflate

    ok = [r for r in results if r.get("status", "ok") == "ok" and r.get("run_id")]
    out: dict[str, dict[str, float]] = {str(r["run_id"]): {} for r in ok}
    for w in candidate_windows(ok):
        cands = {str(r["run_id"]): r["evidence"][w] for r in ok if w in r.get("evidence", {})}
        for rid, d in deflate(cands, n_trials,
                              (sr_variance or {}).get(w)).items():
            out[rid][f"{w}_dsr"] = d["dsr"]
            out[rid][f"{w}_dsr_trials"] = d["n_trials"]
    for r in ok:
        r.setdefault("metrics", {}).update(out[str(r["run_id"])])
    return out


def selection_returns(client: Any, results: list[dict[str, Any]]) -> dict[str, pd.DataFrame]:
    """Each successful job's per-bar net returns on its selection window (validation for a
    forward split, the stitched OOS for walk-forward), read from its MLflow artifacts."""
    import tempfile

    frames = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in results:
            if r.get("status", "ok") != "ok" or not r.get("run_id"):
                continue
            path = ("backtest/oos_returns.parquet" if r.get("scheme") == "walk_forward"
                    else "backtest/val_returns.parquet")
            try:
                local = client.download_artifacts(r["run_id"], path, tmp)
            except Exception:  # a run without the artifact is left out of the PBO
                log.warning("run %s has no %s: left out of the PBO", r["run_id"], path)
                continue
            frames[str(r["run_id"])] = pd.read_parquet(local)[["timestamp", "strategy_return"]]
    return frames


# ----------------------------------------------------------------------------- callbacks
def install_log_masking() -> None:
    """Mask secrets (:func:`mask_text`) in every log record this process creates, whatever its
    logger or handler: a wrapper around the log-record factory, so it survives the
    ``logging.config.dictConfig`` calls with which Hydra re-creates its handlers for every job
    (handler filters would not). Idempotent."""
    current = logging.getLogRecordFactory()
    if getattr(current, "huracan_masking", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = current(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to logging's own error handling
            return record
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        return record

    factory.huracan_masking = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


class MaskSecrets(Callback):
    """Mask URL passwords and secret-named values in what Hydra writes: the job's
    ``.hydra/config.yaml``, ``hydra.yaml`` and ``overrides.yaml`` (written before
    ``on_job_start``), the sweep's ``multirun.yaml``, and log lines (Hydra logs each job's
    overrides when it launches them)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        install_log_masking()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        install_log_masking()

    @staticmethod
    def _mask(path: Path) -> None:
        if path.exists():
            text = path.read_text()
            masked = mask_text(text)
            if masked != text:
                atomic_write_text(path, masked)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        install_log_masking()  # job logging is configured (again) just before this call
        hydra_dir = Path(config.hydra.runtime.output_dir) / str(config.hydra.output_subdir or "")
        for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
            self._mask(hydra_dir / name)
        if config.hydra.mode is not None and str(config.hydra.mode) == "RunMode.MULTIRUN":
            self._mask(Path(config.hydra.sweep.dir) / "multirun.yaml")

    def on_job_end(self, config: DictConfig, job_return: Any = None, **kwargs: Any) -> None:
        """Hydra prints a failed job's overrides from its ``JobReturn`` at the end of the sweep
        (``Error executing job with overrides: [...]``): masked here first (in the job's own
        process, before a launcher sends the return back)."""
        if job_return is not None and job_return.overrides:
            job_return.overrides = [mask_text(str(o)) for o in job_return.overrides]

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._mask(Path(config.hydra.sweep.dir) / "multirun.yaml")


class SweepRun(Callback):
    """The sweep's MLflow parent run and summary table (see the module docstring)."""

    def __init__(self) -> None:
        self.run_id: str | None = None
        self.sweep_id: str | None = None
        self.sweep_dir: Path | None = None
        self.closed = False
        self.min_trades: int | None = None
        self.pbo_splits = SelectionSettings.pbo_splits
        self.min_psr = 0.9
        self.switching: dict[str, Any] | None = None

    # ----------------------------------------------------------------- multirun (parent)
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from mlflow import MlflowClient

        from huracan.tracking.run import configure, ui_link

        tr = config.tracking
        self.min_trades, self.pbo_splits = _selection_settings(config)
        self.min_psr = _min_psr(config)
        self.switching = _switching_settings(config)
        experiment_id = configure(tr.tracking_uri, Path(tr.store_dir), tr.experiment_name,
                                  tr.get("artifact_location"))
        self.sweep_dir = Path(config.hydra.sweep.dir).resolve()
        self.sweep_id = uuid.uuid4().hex
        overrides = " ".join(OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
                             or [])  # type: ignore[arg-type]
        symbol, timeframe = str(config.data.symbol), str(config.data.timeframe)
        run = MlflowClient().create_run(
            experiment_id, run_name=f"sweep-{symbol.replace('/', '')}-{timeframe}",
            tags={SWEEP_ROLE_TAG: "sweep", SWEEP_DIR_TAG: str(self.sweep_dir),
                  "huracan.sweep_id": self.sweep_id, "symbol": symbol, "timeframe": timeframe,
                  "sweep_overrides": mask_text(overrides)[:5000]})
        self.run_id = run.info.run_id
        import mlflow

        _write_json(self.sweep_dir / SWEEP_FILE, {
            "run_id": self.run_id, "sweep_id": self.sweep_id,
            "tracking_uri": mask_url(mlflow.get_tracking_uri()),
            "experiment_id": experiment_id})
        atexit.register(self._close_at_exit)
        print(f"sweep: MLflow parent run {self.run_id} ({self.sweep_dir}); in the MLflow UI: "
              f"{ui_link(mlflow.get_tracking_uri(), experiment_id, self.run_id)}", flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._finish("FINISHED")

    def _close_at_exit(self) -> None:
        """A job raised: Hydra skipped ``on_multirun_end``; close the parent run as FAILED."""
        if not self.closed:
            try:
                self._finish("FAILED")
            except Exception:  # at interpreter exit: report, never raise
                log.exception("closing sweep run %s failed", self.run_id)

    def _finish(self, status: str) -> None:
        if self.closed or self.run_id is None or self.sweep_dir is None:
            return
        self.closed = True
        from mlflow import MlflowClient

        results = read_results(self.sweep_dir, self.sweep_id)
        client = MlflowClient()
        dsr = deflate_results(results)
        for run_id, values in dsr.items():
            log_metrics(client, run_id, values)
        pbo = None
        try:
            from huracan.evaluation.evidence import pbo as compute_pbo

            pbo = compute_pbo(selection_returns(client, results), self.pbo_splits)
        except Exception:  # the PBO is evidence, not a reason to fail the sweep
            log.exception("probability of backtest overfitting of sweep %s failed", self.run_id)
        table = format_table(results, self.min_trades, self.min_psr)
        print("\n" + table, flush=True)
        if pbo is not None:
            print(f"probability of backtest overfitting (CSCV, {int(pbo['pbo_candidates'])} "
                  f"candidates, {int(pbo['pbo_bars'])} common bars, {int(pbo['pbo_splits'])} "
                  f"blocks): {pbo['pbo']:.2f}", flush=True)
            log_metrics(client, self.run_id, pbo)
        switching = self._regime_switching(client, results)
        _write_json(self.sweep_dir / "evidence.json", {"dsr": dsr, "pbo": pbo,
                                                       "switching": switching})
        frame = summary_frame(results, self.min_trades)
        client.log_text(self.run_id, frame.to_csv(index=False), "sweep/summary.csv")
        client.log_text(self.run_id, table + "\n", "sweep/summary.txt")
        ok = [r for r in results if r.get("status") == "ok"]
        failed = len(results) - len(ok)
        log_metrics(client, self.run_id, {f"{SWEEP}jobs": float(len(results)),
                                          f"{SWEEP}failed_jobs": float(failed)})
        self._log_winner(client, results)
        if failed and status == "FINISHED":
            status = "FAILED"
        client.set_terminated(self.run_id, status=status)

    def _log_winner(self, client: Any, results: list[dict[str, Any]]) -> None:
        """The sweep's one winner (:func:`sweep_winner`, the gate's candidate) on the parent
        run: its tags (:func:`winner_tags`), headline metrics (:func:`headline_metrics`) and
        ``best_<objective>``."""
        winner = sweep_winner(results, SelectionSettings.min_trades if self.min_trades is None
                              else self.min_trades)
        metrics = headline_metrics(winner)
        if winner.best is not None:
            metrics[f"best_{winner.best['objective']}"] = float(winner.best["objective_value"])
        log_metrics(client, str(self.run_id), metrics)
        for key, value in winner_tags(winner).items():
            client.set_tag(self.run_id, key, value[:5000])
        print(f"sweep winner: {winner.note}"
              + (f": {winner.best.get('model_type')} ({winner.best['run_id']})"
                 if winner.best is not None else "")
              + (f"; top score {winner.top_ineligible.get('model_type')} "
                 f"({winner.top_ineligible.get('run_id')}) not eligible: "
                 f"{winner.ineligible_reason}" if winner.top_ineligible is not None else ""),
              flush=True)

    def _regime_switching(self, client: Any, results: list[dict[str, Any]]
                          ) -> dict[str, Any] | None:
        """The regime-switching strategy vs the single best candidate vs buy & hold on the
        candidates' common scored bars (:func:`huracan.regime.jobs.sweep_switching`), logged on
        the parent run (``switching/switching_sharpe``... and ``regime/switching.json``)."""
        cfg = self.switching
        if cfg is None or self.run_id is None:
            return None
        try:
            from huracan.data.ohlcv import bars_per_year
            from huracan.regime.jobs import format_switching, sweep_switching

            report = sweep_switching(client, results, cfg["regime"], metric=cfg["metric"],
                                     fee=cfg["fee"], min_psr=cfg["min_psr"],
                                     periods_per_year=bars_per_year(cfg["timeframe"]))
        except Exception:  # evidence, not a reason to fail the sweep
            log.exception("regime switching of sweep %s failed", self.run_id)
            return None
        if report is None:
            return None
        print("\n" + format_switching(report), flush=True)
        log_metrics(client, self.run_id, report["metrics"])
        client.log_text(self.run_id, json.dumps(report, indent=2, default=str),
                        "regime/switching.json")
        return report

    # ----------------------------------------------------------------- single run
    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        result = read_result(config.hydra.runtime.output_dir)
        if result is None:
            return
        min_trades, _ = _selection_settings(config)
        if result.get("status", "ok") == "ok":
            from mlflow import MlflowClient

            from huracan.tracking.run import configure

            tr = config.tracking
            configure(tr.tracking_uri, Path(tr.store_dir), tr.experiment_name)
            client = MlflowClient()
            log_metrics(client, str(result["run_id"]),
                        deflate_results([result]).get(str(result["run_id"]), {}))
        print("\n" + format_table([result], min_trades, _min_psr(config)), flush=True)


def log_metrics(client: Any, run_id: str, metrics: Mapping[str, float]) -> None:
    """Log ``metrics`` into ``run_id`` (active or finished) in one ``log_batch`` call, step 0,
    one timestamp: what one ``client.log_metric`` per key wrote, in one store round trip."""
    if not metrics:
        return
    from mlflow.entities import Metric
    from mlflow.utils.time import get_current_time_millis

    now = get_current_time_millis()
    client.log_batch(run_id, metrics=[Metric(str(k), float(v), now, 0)
                                      for k, v in metrics.items()])


def _min_psr(config: DictConfig) -> float:
    """``registry.min_psr`` of a composed config (the cash floor's PSR; default when absent).

    Raises:
        huracan.settings.UnknownKeyError: an unknown ``registry`` key.
    """
    from huracan.settings import RegistrySettings, build

    return float(build(RegistrySettings, _node(config, "registry"), "registry").min_psr)


def _switching_settings(config: DictConfig) -> dict[str, Any] | None:
    """What the sweep's regime-switching comparison needs from a composed config, or ``None``
    when regimes are off (``regime=none``) or absent."""
    from huracan.evaluation.backtest import BacktestConfig
    from huracan.settings import RegimeSettings, RegistrySettings, build

    node = config.get("regime")
    if not node or str(node.get("kind", "none")) == "none":
        return None
    regime = build(RegimeSettings, _node(config, "regime"), "regime")
    reg = build(RegistrySettings, _node(config, "registry"), "registry")
    bt = build(BacktestConfig, _node(config, "backtest"), "backtest")
    return {"regime": regime, "metric": reg.metric, "fee": float(bt.fee),
            "min_psr": float(reg.min_psr), "timeframe": str(config.data.timeframe)}


def _node(config: DictConfig, group: str) -> dict[str, Any] | None:
    """The resolved ``group`` node of a composed config (``None`` when absent)."""
    node = config.get(group)
    if node is None:
        return None
    raw = OmegaConf.to_container(node, resolve=True)
    assert isinstance(raw, dict)
    return {str(k): v for k, v in raw.items()}


def _selection_settings(config: DictConfig) -> tuple[int, int]:
    """``(selection.min_trades, selection.pbo_splits)`` of a composed config (its typed
    :class:`~huracan.settings.SelectionSettings`, defaults when the node is absent).

    Raises:
        huracan.settings.UnknownKeyError: an unknown ``selection`` key.
    """
    from huracan.settings import build

    sel = build(SelectionSettings, _node(config, "selection"), "selection")
    return sel.min_trades, sel.pbo_splits
