"""Drift of a production model's inputs, forecasts and labels (Evidently 0.7), wired to decisions.

The question: does the data a production model sees now still look like the data it was trained
on? Three layers:

- :func:`drift_report` (pure but for Evidently): one Evidently ``Report`` of a reference frame
  against a current frame (``DataDriftPreset`` over the model's input features, a ``ValueDrift``
  each for the model's forecasts and the realised label, ``DataSummaryPreset``), run with
  ``include_tests=True``; the per-column tests are read back from the snapshot's dict; the
  dataset-drift decision (share of drifted features >= ``drift_share``) is taken here, since
  Evidently 0.7 returns a share and no boolean; plus the scaling drift against the scaler saved
  with the model. Returns a :class:`DriftResult` (HTML and JSON saved on request, timings).
- :func:`drift_for_model`: reference = the registered version's training window (manifest
  ``huracan.train_start`` .. ``huracan.train_end``), current = the newest bars (``30d`` by
  default), features rebuilt with the run's own settings (:func:`huracan.rebuild.run_settings`,
  :func:`huracan.rebuild.rebuild_features`), forecasts by the version's pyfunc model. Logs a
  monitoring MLflow run linked to the version by tags, writes a ``drift_reports`` row, and when
  over threshold a ``data_quality_logs`` row, a ``retrain_requests`` row and an alert; adds the
  snapshot to an Evidently workspace (one project per registered model), so
  ``evidently ui --workspace DIR`` shows drift over time.
- :func:`check_drift_for_monitor` (what ``registry monitor`` calls, never raises) and
  :func:`weekly_rescale` (refit a scaler on the newest training-length window and log old vs new
  parameters; the registered model is NOT changed).

Which statistical test per column: Evidently chooses (``evidently.legacy.calculations.stattests.
registry._get_default_stattest``, 0.7.23): for a numerical column with a reference of more than
1,000 rows, the normed Wasserstein distance (Wasserstein-1 distance divided by the reference's
standard deviation; drift when >= 0.1), or the Jensen-Shannon distance (>= 0.1) when the column
has at most 5 distinct values; with 1,000 reference rows or fewer, the two-sample
Kolmogorov-Smirnov test (drift when p < 0.05), chi-square (more than 2 values) or a Z-test for
proportions (2 values) for columns with at most 5 distinct values. A 1h model trained on a few
months has thousands of training rows: Wasserstein for every feature. Hourly features are
autocorrelated, so p-value tests on small windows reject far more often than their nominal level;
the normed Wasserstein distance is an effect size and does not have that problem.

Every client, engine and notifier is passed in explicitly; nothing here is created at import
time. Evidently is imported inside the functions (its import costs about 5 s).
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from filelock import FileLock

from huracan.timeutil import to_utc
from huracan.tracking.names import time_metric

log = logging.getLogger(__name__)

#: MLflow experiment of the monitoring runs (drift reports, rescales)
MONITORING_EXPERIMENT = "huracan-monitoring"
#: run/version tag prefix shared with the registry
TAG = "huracan."
PREDICTION = "prediction"
TARGET = "label"
#: Evidently stat tests whose score is a p-value (drift when the score is BELOW the threshold);
#: every other method's score is a distance (drift when at or above the threshold)
P_VALUE_METHODS = ("p_value", "Anderson-Darling", "Cramer-von Mises", "Epps-Singleton",
                   "Fisher's Exact test", "g_test", "Mann-Whitney U-rank test", "t_test")
#: the files a report is saved as
HTML_NAME, JSON_NAME, SUMMARY_NAME = "drift_report.html", "drift_report.json", "drift_summary.json"


class DriftInputError(ValueError):
    """Unusable input: an unparseable or empty window, a bad threshold, missing columns."""


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True)
class ColumnDrift:
    """Evidently's drift test of one column.

    Attributes:
        column: column name; role: ``feature``, ``prediction`` or ``target``.
        method: the stat test Evidently chose (e.g. ``Wasserstein distance (normed)``).
        score: its drift score: a p-value for tests (``score_kind="p_value"``, drift when below
            ``threshold``) or a distance (``"distance"``, drift at or above ``threshold``).
        drifted: Evidently's verdict (its per-column test FAILED).
    """

    column: str
    role: str
    method: str
    score: float
    threshold: float
    score_kind: str
    drifted: bool


@dataclass(frozen=True)
class ScalingDrift:
    """How one feature moved in units of the scaler saved with the model.

    Attributes:
        scaler_mean, scaler_scale: the scaler's ``mean_`` and ``scale_`` (population standard
            deviation of the training rows; sklearn sets 1.0 for a constant feature).
        current_mean, current_std: the current window's mean and population std (ddof 0).
        mean_shift: ``(current_mean - scaler_mean) / scaler_scale``: how many training standard
            deviations the mean moved (signed).
        std_ratio: ``current_std / scaler_scale``: 1 = same spread as in training.
        flagged: ``|mean_shift| > shift_limit`` or ``std_ratio`` outside
            ``[1 / ratio_limit, ratio_limit]``.
    """

    feature: str
    scaler_mean: float
    scaler_scale: float
    current_mean: float
    current_std: float
    mean_shift: float
    std_ratio: float
    flagged: bool


@dataclass
class DriftResult:
    """What :func:`drift_report` found.

    Attributes:
        features: per input feature, Evidently's test (same order as the ``features`` argument).
        prediction, target: drift of the model's forecasts and of the realised label (``None``
            when not computed; ``target_note`` says why).
        n_features, n_drifted, drift_share: features tested, flagged, and their share.
        threshold: the drift-share threshold; ``dataset_drift = drift_share >= threshold``.
        evidently_share: the share Evidently's ``DriftedColumnsCount`` reported (same columns:
            equals ``drift_share``; kept as a cross-check).
        scaling: per feature, the shift in units of the model's scaler (empty without a scaler).
        summary: per column (features, prediction, label): role, missing values and range of
            both windows (``current_*`` from Evidently's ``DataSummaryPreset``; ``reference_*``
            from pandas, as Evidently 0.7's dict export carries the current dataset's values
            only) and ``out_of_range_share``, the share of current rows outside the reference's
            ``[min, max]``.
        reference_rows, current_rows; reference_start .. current_end: window sizes and bounds
            (ISO UTC, ``None`` when the frames carry no time index).
        timings: wall seconds: ``import`` (Evidently's import, about 5 s in a fresh process,
            ~0 after), ``evidently_run`` (``Report.run``: the statistics and Evidently's
            rendering of its widgets), ``parse``, ``scaling``, ``summary``, ``save_html``,
            ``save_json``, ``total``.
        snapshot: the Evidently ``Snapshot`` (not serialised).
        html_path, json_path, summary_path: where the report was saved (``None`` if not saved).
    """

    features: list[ColumnDrift]
    prediction: ColumnDrift | None
    target: ColumnDrift | None
    n_features: int
    n_drifted: int
    drift_share: float
    threshold: float
    evidently_share: float | None
    scaling: list[ScalingDrift]
    summary: list[dict[str, Any]]
    reference_rows: int
    current_rows: int
    reference_start: str | None = None
    reference_end: str | None = None
    current_start: str | None = None
    current_end: str | None = None
    target_note: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    snapshot: Any = None
    html_path: Path | None = None
    json_path: Path | None = None
    summary_path: Path | None = None

    @property
    def dataset_drift(self) -> bool:
        """Share of drifted features at or above the threshold."""
        return self.drift_share >= self.threshold

    @property
    def drifted_features(self) -> list[str]:
        """The features Evidently flagged, in input order."""
        return [c.column for c in self.features if c.drifted]

    @property
    def scaling_flagged(self) -> list[str]:
        """The features whose mean or spread moved beyond the scaling limits."""
        return [s.feature for s in self.scaling if s.flagged]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no snapshot; paths as strings)."""
        return {
            "dataset_drift": self.dataset_drift, "drift_share": self.drift_share,
            "threshold": self.threshold, "n_features": self.n_features,
            "n_drifted": self.n_drifted, "drifted_features": self.drifted_features,
            "evidently_share": self.evidently_share,
            "features": [asdict(c) for c in self.features],
            "prediction": None if self.prediction is None else asdict(self.prediction),
            "target": None if self.target is None else asdict(self.target),
            "target_note": self.target_note,
            "scaling": [asdict(s) for s in self.scaling],
            "scaling_flagged": self.scaling_flagged,
            "summary": self.summary,
            "reference_rows": self.reference_rows, "current_rows": self.current_rows,
            "reference_start": self.reference_start, "reference_end": self.reference_end,
            "current_start": self.current_start, "current_end": self.current_end,
            "timings": dict(self.timings),
            "html_path": None if self.html_path is None else str(self.html_path),
            "json_path": None if self.json_path is None else str(self.json_path),
        }

    def columns_frame(self) -> pd.DataFrame:
        """One row per tested column (features, then prediction and target when computed)."""
        cols = [*self.features, *(c for c in (self.prediction, self.target) if c is not None)]
        return pd.DataFrame([asdict(c) for c in cols])

    def scaling_frame(self) -> pd.DataFrame:
        """One row per feature of the scaling drift (empty without a scaler)."""
        return pd.DataFrame([asdict(s) for s in self.scaling])

    def save(self, out_dir: str | Path) -> tuple[Path, Path]:
        """Write ``drift_report.html``, ``drift_report.json`` (Evidently's ``save_json``: the
        snapshot's ``{"metrics": [...], "tests": [...]}``; the full snapshot, widgets included,
        goes to the workspace) and ``drift_summary.json`` (:meth:`as_dict`) under ``out_dir``
        (created); returns the HTML and JSON paths and records the timings.

        Raises:
            ValueError: the result carries no snapshot.
        """
        if self.snapshot is None:
            raise ValueError("this DriftResult has no Evidently snapshot to save")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        self.html_path = out / HTML_NAME
        self.snapshot.save_html(str(self.html_path))
        t1 = time.perf_counter()
        self.json_path = out / JSON_NAME
        self.snapshot.save_json(str(self.json_path))
        t2 = time.perf_counter()
        self.timings["save_html"] = t1 - t0
        self.timings["save_json"] = t2 - t1
        self.summary_path = out / SUMMARY_NAME
        self.summary_path.write_text(json.dumps(_json_ready(self.as_dict()), indent=2))
        return self.html_path, self.json_path


def _json_ready(value: Any) -> Any:
    from huracan.data.quality_db import json_safe

    return json_safe(value)


# ----------------------------------------------------------------------------- the report
def _bounds(frame: pd.DataFrame) -> tuple[str | None, str | None]:
    if isinstance(frame.index, pd.DatetimeIndex) and len(frame):
        return frame.index.min().isoformat(), frame.index.max().isoformat()
    if "timestamp" in frame.columns and len(frame):
        ts = pd.to_datetime(frame["timestamp"], utc=True)
        return ts.min().isoformat(), ts.max().isoformat()
    return None, None


def score_kind(method: str) -> str:
    """``p_value`` when Evidently's ``method`` reports a p-value, else ``distance``."""
    return "p_value" if any(m in method for m in P_VALUE_METHODS) else "distance"


def scaling_drift(current: pd.DataFrame, features: Sequence[str], scaler: Any, *,
                  shift_limit: float = 0.5, ratio_limit: float = 2.0) -> list[ScalingDrift]:
    """How far each feature's current mean and spread moved in units of ``scaler``.

    Args:
        current: rows of the current window, with the ``features`` columns (unscaled).
        features: the scaler's columns, in the order it was fitted on (``n`` names).
        scaler: a fitted scikit-learn ``StandardScaler`` (``mean_``, ``scale_`` of shape
            ``(n,)``), e.g. ``mlflow.pyfunc.load_model(uri).unwrap_python_model().scaler``.
        shift_limit: flag ``|mean_shift| >`` this many training standard deviations.
        ratio_limit: flag a spread ratio above this or below its inverse (> 1).

    Returns:
        one :class:`ScalingDrift` per feature.

    Raises:
        DriftInputError: the scaler's width differs from ``len(features)``, a limit is not
            positive, or the current window is empty.
    """
    mean = np.asarray(getattr(scaler, "mean_", []), dtype=np.float64).reshape(-1)
    scale = np.asarray(getattr(scaler, "scale_", []), dtype=np.float64).reshape(-1)
    if len(mean) != len(features) or len(scale) != len(features):
        raise DriftInputError(f"the scaler has {len(mean)} column(s), the features "
                              f"{len(features)}: pass the model's features in its order")
    if shift_limit <= 0 or ratio_limit <= 1:
        raise DriftInputError("shift_limit must be > 0 and ratio_limit > 1")
    if current.empty:
        raise DriftInputError("the current window is empty")
    X = current[list(features)].to_numpy(np.float64)
    cur_mean = np.nanmean(X, axis=0)
    cur_std = np.nanstd(X, axis=0)
    safe = np.where(scale > 0, scale, 1.0)
    shift = (cur_mean - mean) / safe
    ratio = cur_std / safe
    out = []
    for i, name in enumerate(features):
        flagged = bool(abs(shift[i]) > shift_limit or ratio[i] > ratio_limit
                       or ratio[i] < 1.0 / ratio_limit)
        out.append(ScalingDrift(str(name), float(mean[i]), float(scale[i]), float(cur_mean[i]),
                                float(cur_std[i]), float(shift[i]), float(ratio[i]), flagged))
    return out


def _column_summary(reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str],
                    roles: Mapping[str, str], evidently: Mapping[str, dict[str, Any]]
                    ) -> list[dict[str, Any]]:
    out = []
    for c in columns:
        ref = pd.to_numeric(reference[c], errors="coerce")
        cur = pd.to_numeric(current[c], errors="coerce") if c in current else pd.Series(
            dtype=float)
        ev = evidently.get(c, {})
        lo, hi = ref.min(), ref.max()
        valid = cur.dropna()
        outside = float(((valid < lo) | (valid > hi)).mean()) if len(valid) else math.nan
        out.append({
            "column": c, "role": roles.get(c, "feature"),
            "reference_missing": int(ref.isna().sum()),
            "current_missing": int(ev.get("missing", cur.isna().sum())),
            "reference_min": float(lo), "reference_max": float(hi),
            "reference_mean": float(ref.mean()), "reference_std": float(ref.std()),
            "current_min": float(ev.get("min", valid.min() if len(valid) else math.nan)),
            "current_max": float(ev.get("max", valid.max() if len(valid) else math.nan)),
            "current_mean": float(ev.get("mean", valid.mean() if len(valid) else math.nan)),
            "current_std": float(ev.get("std", valid.std() if len(valid) else math.nan)),
            "out_of_range_share": outside,
        })
    return out


def _parse_snapshot(d: Mapping[str, Any]) -> tuple[dict[str, dict[str, Any]], float | None,
                                                   dict[str, dict[str, Any]]]:
    """From ``snapshot.dict()``: per column its ValueDrift (method, threshold, score, test status),
    the DriftedColumnsCount share, and per column the DataSummaryPreset values (current data)."""
    status = {t.get("metric_config", {}).get("metric_id"): t.get("status")
              for t in d.get("tests", []) if t.get("id") == "drift"}
    drift: dict[str, dict[str, Any]] = {}
    share = None
    summary: dict[str, dict[str, Any]] = {}
    keys = {"MissingValueCount": "missing", "MinValue": "min", "MaxValue": "max",
            "MeanValue": "mean", "StdValue": "std"}
    for m in d.get("metrics", []):
        cfg = m.get("config") or {}
        kind = str(cfg.get("type", "")).rsplit(":", 1)[-1]
        value = m.get("value")
        if kind == "ValueDrift":
            drift[str(cfg["column"])] = {"method": str(cfg.get("method")),
                                         "threshold": cfg.get("threshold"),
                                         "score": value, "status": status.get(m.get("id"))}
        elif kind == "DriftedColumnsCount" and isinstance(value, Mapping):
            share = float(value["share"])
        elif kind in keys and "column" in cfg:
            v = value.get("count") if isinstance(value, Mapping) else value
            summary.setdefault(str(cfg["column"]), {})[keys[kind]] = v
    return drift, share, summary


def _column_drift(column: str, role: str, parsed: Mapping[str, Any]) -> ColumnDrift:
    method = str(parsed["method"])
    kind = score_kind(method)
    score = float(parsed["score"])
    threshold = float(parsed["threshold"]) if parsed["threshold"] is not None else math.nan
    if parsed["status"] in ("FAIL", "WARNING"):
        drifted = True
    elif parsed["status"] == "SUCCESS":
        drifted = False
    else:  # no test result: Evidently's rule
        drifted = score < threshold if kind == "p_value" else score >= threshold
    return ColumnDrift(column, role, method, score, threshold, kind, bool(drifted))


@dataclass(frozen=True)
class _ReportColumns:
    """The columns one drift report tests.

    Attributes:
        roles: column -> ``feature``, ``prediction`` or ``target``, in test order (features,
            then the forecast, then the label).
        use_target: the label is tested (present in the reference, enough matured rows).
        target_note: why the label is or is not tested.
    """

    roles: dict[str, str]
    use_target: bool
    target_note: str

    @property
    def columns(self) -> list[str]:
        """The tested columns, in test order."""
        return list(self.roles)


def _report_columns(reference: pd.DataFrame, current: pd.DataFrame, features: list[str],
                    prediction_col: str | None, target_col: str | None, drift_share: float,
                    min_target_rows: int) -> _ReportColumns:
    """Check :func:`drift_report`'s inputs and choose its columns (the label only with at least
    ``min_target_rows`` matured labels in the current window).

    Raises:
        DriftInputError: as :func:`drift_report`, but for the scaler's width.
    """
    if not features:
        raise DriftInputError("no features to test")
    if not 0.0 < float(drift_share) <= 1.0:
        raise DriftInputError(f"drift_share {drift_share} must be in (0, 1]")
    for label, frame in (("reference", reference), ("current", current)):
        if len(frame) < 2:
            raise DriftInputError(f"the {label} window has {len(frame)} row(s); need >= 2")
    roles = {f: "feature" for f in features}
    if prediction_col is not None:
        roles[prediction_col] = "prediction"
    target_note = ""
    use_target = False
    if target_col is not None:
        matured = int(current[target_col].notna().sum()) if target_col in current else 0
        if target_col not in reference:
            target_note = f"no {target_col!r} column in the reference"
        elif matured < int(min_target_rows):
            target_note = (f"{matured} matured label(s) in the current window "
                           f"(< {min_target_rows}): target drift not computed")
        else:
            use_target = True
            roles[target_col] = "target"
            target_note = f"{matured} matured label(s) in the current window"
    columns = list(roles)
    for label, frame in (("reference", reference), ("current", current)):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DriftInputError(f"the {label} frame lacks column(s) {missing}")
        bad = [c for c in columns if not pd.api.types.is_numeric_dtype(frame[c])]
        if bad:
            raise DriftInputError(f"the {label} frame has non-numeric column(s) {bad}")
    return _ReportColumns(roles=roles, use_target=use_target, target_note=target_note)


def _run_evidently(reference: pd.DataFrame, current: pd.DataFrame, features: list[str],
                   cols: _ReportColumns, drift_share: float, *, name: str | None,
                   timestamp: datetime | None, metadata: Mapping[str, Any] | None,
                   tags: Sequence[str]) -> tuple[Any, float, float]:
    """Evidently's ``Report`` (``DataDriftPreset`` over ``features``, a ``ValueDrift`` per
    forecast/label column, ``DataSummaryPreset``; with tests) run on ``cols.columns``.

    Returns:
        ``(snapshot, import seconds, Report.run seconds)``.
    """
    columns, roles = cols.columns, cols.roles
    t_import = time.perf_counter()
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset, DataSummaryPreset

    import_s = time.perf_counter() - t_import
    definition = DataDefinition(numerical_columns=columns)
    ref_ds = Dataset.from_pandas(reference[columns].reset_index(drop=True),
                                 data_definition=definition)
    cur_ds = Dataset.from_pandas(current[columns].reset_index(drop=True),
                                 data_definition=definition)
    items: list[Any] = [DataDriftPreset(columns=features, drift_share=float(drift_share))]
    items += [ValueDrift(column=c) for c in columns if roles[c] != "feature"]
    items.append(DataSummaryPreset())
    meta = {k: str(v) for k, v in (metadata or {}).items()}
    t0 = time.perf_counter()
    snapshot = Report(items, include_tests=True).run(
        current_data=cur_ds, reference_data=ref_ds, timestamp=timestamp, metadata=meta,
        tags=list(tags), name=name)
    return snapshot, import_s, time.perf_counter() - t0


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: Sequence[str],
    *,
    prediction_col: str | None = None,
    target_col: str | None = None,
    drift_share: float = 0.5,
    scaler: Any = None,
    out_dir: str | Path | None = None,
    name: str | None = None,
    timestamp: datetime | None = None,
    metadata: Mapping[str, Any] | None = None,
    tags: Sequence[str] = (),
    shift_limit: float = 0.5,
    ratio_limit: float = 2.0,
    min_target_rows: int = 24,
) -> DriftResult:
    """Evidently 0.7 drift report of ``current`` against ``reference``.

    One ``Report([DataDriftPreset(columns=features, drift_share=drift_share), ValueDrift(
    prediction_col), ValueDrift(target_col), DataSummaryPreset()], include_tests=True)``. Each
    column gets the stat test Evidently chooses for it (module docstring: normed Wasserstein
    distance for numerical columns when the reference has more than 1,000 rows, K-S p-value at
    or below 1,000 rows, ...); its verdict is the status of Evidently's per-column test, read from
    the snapshot's dict. Dataset drift is decided here: ``n_drifted / n_features >= drift_share``
    over the input features only (the forecast and the label are reported beside, not counted).

    Args:
        reference: reference rows (the model's training window), ``(n_ref, >= f)``; a
            ``DatetimeIndex`` (or a ``timestamp`` column) gives the window bounds.
        current: current rows, ``(n_cur, >= f)``.
        features: the ``f`` input feature columns (numeric), present in both frames.
        prediction_col: the model's forecast column (fraction, forward return), in both frames.
        target_col: the realised label column. Target drift is computed when the reference has it
            and the current window has at least ``min_target_rows`` matured (non-NaN) labels.
        drift_share: dataset-drift threshold on the share of drifted features, in ``(0, 1]``.
        scaler: the scaler saved with the model (columns in ``features`` order): adds the scaling
            drift (:func:`scaling_drift` with ``shift_limit``, ``ratio_limit``).
        out_dir: when given, the HTML and JSON reports are written there (:meth:`DriftResult.save`).
        name, timestamp, metadata, tags: recorded on the Evidently snapshot (the workspace's time
            axis is ``timestamp``, a naive UTC datetime; default now).

    Returns:
        a :class:`DriftResult` with the snapshot attached.

    Raises:
        DriftInputError: no features; a feature, prediction or target column missing or
            non-numeric; fewer than 2 rows in a window; ``drift_share`` outside ``(0, 1]``; a
            scaler of another width.
    """
    t_start = time.perf_counter()
    features = [str(f) for f in features]
    cols = _report_columns(reference, current, features, prediction_col, target_col,
                           drift_share, min_target_rows)
    roles, columns = cols.roles, cols.columns
    snapshot, import_s, run_s = _run_evidently(
        reference, current, features, cols, drift_share, name=name, timestamp=timestamp,
        metadata=metadata, tags=tags)
    t1 = time.perf_counter()
    drift, ev_share, ev_summary = _parse_snapshot(snapshot.dict())
    missing_tests = [c for c in columns if c not in drift]
    if missing_tests:  # pragma: no cover - Evidently always reports every requested column
        raise RuntimeError(f"Evidently returned no drift test for {missing_tests}")
    per_feature = [_column_drift(f, "feature", drift[f]) for f in features]
    prediction = (None if prediction_col is None
                  else _column_drift(prediction_col, "prediction", drift[prediction_col]))
    target = None if not cols.use_target or target_col is None else _column_drift(
        target_col, "target", drift[target_col])
    n_drifted = sum(c.drifted for c in per_feature)
    t2 = time.perf_counter()
    scaling = [] if scaler is None else scaling_drift(current, features, scaler,
                                                      shift_limit=shift_limit,
                                                      ratio_limit=ratio_limit)
    t3 = time.perf_counter()
    summary = _column_summary(reference, current, columns, roles, ev_summary)
    t4 = time.perf_counter()
    ref_bounds, cur_bounds = _bounds(reference), _bounds(current)
    result = DriftResult(
        features=per_feature, prediction=prediction, target=target,
        n_features=len(features), n_drifted=int(n_drifted),
        drift_share=n_drifted / len(features), threshold=float(drift_share),
        evidently_share=ev_share, scaling=scaling, summary=summary,
        reference_rows=len(reference), current_rows=len(current),
        reference_start=ref_bounds[0], reference_end=ref_bounds[1],
        current_start=cur_bounds[0], current_end=cur_bounds[1], target_note=cols.target_note,
        timings={"import": import_s, "evidently_run": run_s, "parse": t2 - t1,
                 "scaling": t3 - t2, "summary": t4 - t3},
        snapshot=snapshot)
    if out_dir is not None:
        result.save(out_dir)
    result.timings["total"] = time.perf_counter() - t_start
    return result


# ----------------------------------------------------------------------------- windows
def _utc(value: Any) -> pd.Timestamp:
    """:func:`huracan.timeutil.to_utc` (naive input is read as UTC, a command-line
    convenience), an unreadable or missing time raised as :class:`DriftInputError` (what
    ``huracan drift`` reports in one line)."""
    try:
        return to_utc(value)
    except ValueError as exc:
        raise DriftInputError(str(exc)) from exc


def window_span(spec: str, timeframe: str) -> pd.Timedelta:
    """``"30d"`` / ``"72h"`` (a duration) or ``"720"`` (bars of ``timeframe``) as a Timedelta.

    Raises:
        DriftInputError: neither a positive bar count nor a positive duration.
    """
    from huracan.data.ohlcv import timeframe_to_timedelta

    spec = str(spec).strip()
    try:
        span = (int(spec) * timeframe_to_timedelta(timeframe) if spec.isdigit()
                else pd.Timedelta(spec))
    except ValueError as exc:
        raise DriftInputError(f"current window {spec!r}: expected bars (720) or a duration "
                              "(30d, 72h)") from exc
    if span <= pd.Timedelta(0):
        raise DriftInputError(f"current window {spec!r} must be positive")
    return span


def select_window(frame: pd.DataFrame, current: str | tuple[Any, Any], timeframe: str
                  ) -> pd.DataFrame:
    """Rows of a feature frame (``DatetimeIndex``, UTC, sorted) in the current window: the
    newest ``span`` (``"30d"``: bars whose open time is after ``last - 30d``) or
    ``(from, to)``, both inclusive (naive times are UTC; ``None`` = open end).

    Raises:
        DriftInputError: unparseable window or no row in it.
    """
    idx = pd.DatetimeIndex(frame.index)
    if isinstance(current, tuple):
        lo = None if current[0] is None else _utc(current[0])
        hi = None if current[1] is None else _utc(current[1])
        if lo is not None and hi is not None and lo > hi:
            raise DriftInputError(f"window start {lo} is after its end {hi}")
        mask = np.ones(len(idx), dtype=bool)
        if lo is not None:
            mask &= idx >= lo
        if hi is not None:
            mask &= idx <= hi
        out = frame[mask]
        label = f"{lo} .. {hi}"
    else:
        if len(idx) == 0:
            raise DriftInputError("no feature rows")
        span = window_span(current, timeframe)
        out = frame[idx > idx.max() - span]
        label = f"the newest {current}"
    if len(out) < 2:
        raise DriftInputError(f"the current window ({label}) holds {len(out)} feature row(s) "
                              f"of the data ({idx.min() if len(idx) else '-'} .. "
                              f"{idx.max() if len(idx) else '-'}); need >= 2")
    return out


# ----------------------------------------------------------------------------- the model
def resolve_version(client: Any, model: str) -> Any:
    """The registered ``ModelVersion`` named by ``model``: ``NAME`` (its ``production`` alias),
    ``NAME@ALIAS``, ``NAME/VERSION``, optionally prefixed ``models:/``.

    Raises:
        LookupError: no such model, alias or version, or the alias holds the cash policy.
    """
    from mlflow.exceptions import MlflowException

    from huracan.registry.cash import cash_reason, is_cash
    from huracan.registry.promotion import PRODUCTION, alias_version

    spec = model.removeprefix("models:/").strip("/")
    if "@" in spec:
        name, alias = spec.split("@", 1)
    elif "/" in spec:
        name, version = spec.rsplit("/", 1)
        try:
            return client.get_model_version(name, version)
        except MlflowException as exc:
            raise LookupError(f"{name} has no version {version}") from exc
    else:
        name, alias = spec, PRODUCTION
    mv = alias_version(client, name, alias)
    if mv is None:
        raise LookupError(f"{name} has no version with alias {alias!r} (is it registered "
                          "and promoted?)")
    if is_cash(mv):
        raise LookupError(f"{name}@{alias} is cash (v{mv.version}, position 0): no model "
                          f"inputs to check ({cash_reason(mv)})")
    return mv


def load_pyfunc(client: Any, mv: Any, dst: Path) -> Any:
    """Download ``mv``'s logged model under ``dst`` through ``client``'s tracking URI (no global
    MLflow state) and load it as a pyfunc (:class:`huracan.serving.pyfunc.ForecasterPyfunc`:
    ``unwrap_python_model()`` gives ``estimator`` and the train-only ``scaler``).

    Raises:
        mlflow.exceptions.MlflowException: the logged model or its artifacts are missing.
    """
    import mlflow

    location = (client.get_logged_model(mv.model_id).artifact_location
                if getattr(mv, "model_id", None) else mv.source)
    local = mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=str(dst),
                                                tracking_uri=client.tracking_uri)
    return mlflow.pyfunc.load_model(local)


def predict_window(pyfunc: Any, frame: pd.DataFrame, rows: pd.DataFrame, features: list[str],
                   lookback: int = 1) -> np.ndarray:
    """Forecasts for ``rows`` (a contiguous slice of ``frame``, time-indexed), with up to
    ``lookback - 1`` earlier rows of ``frame`` as context for sequence models (the pyfunc pads
    the first rows of a request otherwise).

    Returns:
        the forecast forward return (fraction) per row of ``rows``, shape ``(len(rows),)``.

    Raises:
        ValueError: ``frame`` lacks a feature column the model needs.
    """
    idx = pd.DatetimeIndex(frame.index)
    i0 = int(idx.searchsorted(rows.index[0]))
    i1 = int(idx.searchsorted(rows.index[-1], side="right"))
    c0 = max(0, i0 - max(int(lookback) - 1, 0))
    pred = np.asarray(pyfunc.predict(frame.iloc[c0:i1][features]), dtype=np.float64).reshape(-1)
    return pred[i0 - c0:]


def default_workspace(tracking_uri: str | None) -> Path:
    """``<MLflow store dir>/evidently``: the directory of a ``sqlite:///.../mlflow.db`` store or
    of a ``file:`` store; ``mlruns/evidently`` for remote stores."""
    uri = tracking_uri or ""
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).parent / "evidently"
    if uri.startswith("file:"):
        return Path(uri.removeprefix("file://").removeprefix("file:")) / "evidently"
    if uri and "://" not in uri:
        return Path(uri) / "evidently"
    return Path("mlruns") / "evidently"


def _dir_lock(directory: Path) -> FileLock:
    """An exclusive lock on ``directory/.huracan.lock`` (created with the directory), held by
    ``with _dir_lock(directory):`` for as long as it takes."""
    directory.mkdir(parents=True, exist_ok=True)
    return FileLock(directory / ".huracan.lock")


def add_to_workspace(snapshot: Any, workspace: str | Path, project: str,
                     description: str = "") -> tuple[str, str]:
    """Add an Evidently snapshot to the local workspace ``workspace``, in the project named
    ``project`` (created with a drift dashboard the first time: share of drifted features,
    prediction and target drift scores, mean forecast); returns ``(project id, snapshot id)``.
    Project creation is serialised by a file lock in the workspace directory.

    Open it with ``evidently ui --workspace DIR`` (http://127.0.0.1:8000). Each snapshot holds
    its widgets (3-6 MB of JSON for 21 features): prune old ones with
    ``Workspace(DIR).delete_run(project_id, snapshot_id)`` if the directory grows too large.

    Raises:
        OSError: the workspace directory cannot be created or written.
    """
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import counter_panel, line_plot_panel
    from evidently.ui.workspace import Workspace

    path = Path(workspace)
    with _dir_lock(path):
        ws = Workspace(str(path))
        found = ws.search_project(project)
        if found:
            proj = found[0]
        else:
            proj = ws.create_project(project, description=description or None)
            dash = proj.dashboard
            dash.add_panel(counter_panel(
                title="Share of drifted features (last report)", size="half",
                values=[PanelMetric(legend="share", metric="DriftedColumnsCount",
                                    metric_labels={"value_type": "share"})]))
            dash.add_panel(counter_panel(
                title="Drifted features (last report)", size="half",
                values=[PanelMetric(legend="count", metric="DriftedColumnsCount",
                                    metric_labels={"value_type": "count"})]))
            dash.add_panel(line_plot_panel(
                title="Share of drifted features over time",
                values=[PanelMetric(legend="share", metric="DriftedColumnsCount",
                                    metric_labels={"value_type": "share"})]))
            dash.add_panel(line_plot_panel(
                title="Forecast and label drift (normed Wasserstein distance)",
                values=[PanelMetric(legend="forecast", metric="ValueDrift",
                                    metric_labels={"column": PREDICTION}),
                        PanelMetric(legend="label", metric="ValueDrift",
                                    metric_labels={"column": TARGET})]))
            dash.add_panel(line_plot_panel(
                title="Mean forecast of the current window",
                values=[PanelMetric(legend="forecast", metric="MeanValue",
                                    metric_labels={"column": PREDICTION})]))
    ref = ws.add_run(proj.id, snapshot)
    return str(proj.id), str(ref.id)


def monitoring_run_name(kind: str, model_name: str, version: str | int,
                        start: Any = None, end: Any = None) -> str:
    """The MLflow run name of a monitoring run: ``<kind>-<model>-v<version> <start>..<end>``,
    the model's registered name without its ``huracan-`` prefix and the window's first and last
    UTC day (``drift-BTCUSDT-1h-v3 2024-12-01..2024-12-31``), so the runs of one model differ
    by window in the runs table; the window part is left out when a bound is unknown."""
    name = f"{kind}-{model_name.removeprefix('huracan-')}-v{version}"
    if start is None or end is None:
        return name
    return f"{name} {to_utc(start):%Y-%m-%d}..{to_utc(end):%Y-%m-%d}"


def _monitoring_experiment(client: Any, name: str, like_run_id: str | None) -> str:
    """The id of experiment ``name`` (:func:`huracan.tracking.run.experiment_id`: marked as
    model training), created with the artifact location of ``like_run_id``'s experiment (so
    monitoring artifacts land beside the model's), else beside the client's store
    (:func:`huracan.tracking.run.artifact_root`)."""
    from huracan.tracking.run import artifact_root, experiment_id

    location = None
    if client.get_experiment_by_name(name) is None:
        if like_run_id:
            run = client.get_run(like_run_id)
            location = client.get_experiment(run.info.experiment_id).artifact_location
        else:
            uri = getattr(client, "tracking_uri", None)
            location = artifact_root(uri, Path("mlruns")) if isinstance(uri, str) else None
    return experiment_id(client, name, location)


def _finite_metrics(values: Mapping[str, float]) -> list[Any]:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(k, float(v), now, 0) for k, v in values.items()
            if v is not None and math.isfinite(float(v))]


@dataclass
class ModelDriftResult:
    """What :func:`drift_for_model` did.

    Attributes:
        report: the :class:`DriftResult` (``report.dataset_drift``: over threshold).
        model_name, version, model_run_id: the registered version checked and its training run.
        symbol, timeframe: its market.
        report_run_id: the MLflow monitoring run (experiment ``huracan-monitoring``).
        drift_report_id: the ``drift_reports`` row.
        retrain_request_id: the pending ``retrain_requests`` row (new or already pending) when
            over threshold, else ``None``; ``retrain_request_created`` whether it is new.
        workspace, workspace_project_id, snapshot_id: where the Evidently snapshot went.
        reference_check: max over features of |reference mean - scaler mean| / scaler scale (0
            when the rebuilt reference rows are exactly the model's training rows).
        current_overlaps_training: the current window shares bars with the span the model saw
            in training or validation (``train_start`` .. the later of ``train_end``/``val_end``).
        current_source: ``logged`` (the current rows are the prediction log's bars, their
            features rebuilt from the logged inputs) or ``rebuilt`` (rebuilt from the data
            file); ``current_note`` why the log was not used (empty otherwise).
        timings: wall seconds per step (``load_model``, ``features``, ``predict``, ``report``,
            ``workspace``, ``mlflow``, ``store``, ``total``).
    """

    report: DriftResult
    model_name: str
    version: str
    model_run_id: str
    symbol: str
    timeframe: str
    report_run_id: str | None = None
    drift_report_id: int | None = None
    retrain_request_id: int | None = None
    retrain_request_created: bool = False
    workspace: Path | None = None
    workspace_project_id: str | None = None
    snapshot_id: str | None = None
    reference_check: float = math.nan
    current_overlaps_training: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    current_source: str = "rebuilt"
    current_note: str = ""

    @property
    def drifted(self) -> bool:
        return self.report.dataset_drift


def _window_frames(settings: Any, data_path: str | Path | None, start: pd.Timestamp,
                   end: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Feature frames for the current window (``data_path`` or the run's file) and for the
    reference window ``[start, end]`` (the same frame when it covers the window, else the run's
    own data file)."""
    from huracan.rebuild import rebuild_features

    fs, _ = rebuild_features(settings, data_path)
    cur_frame = fs.frame
    idx = pd.DatetimeIndex(cur_frame.index)
    if data_path is None or (len(idx) and idx[0] <= start and idx[-1] >= end):
        return cur_frame, cur_frame
    log.info("%s does not cover the training window %s .. %s: reference rebuilt from the run's "
             "data file %s", data_path, start, end, settings.data.path)
    ref_fs, _ = rebuild_features(settings, None)
    return cur_frame, ref_fs.frame


@dataclass(frozen=True)
class DriftModel:
    """The registered version under check, its training run and its model (the resolve step).

    Attributes:
        mv: the MLflow ``ModelVersion``; name, version: its name and number as strings.
        reference_start, reference_end: its training window (manifest ``huracan.train_start``
            .. ``huracan.train_end``, else the run's ``train_start``/``train_end`` tags), UTC.
        settings: its run's :class:`huracan.settings.JobSettings`
            (:func:`huracan.rebuild.run_settings`).
        pyfunc: its loaded pyfunc model (:func:`load_pyfunc`).
        features: the estimator's ``f`` input columns, in its order.
        lookback: bars of context the estimator reads per forecast (1 for tabular models).
        scaler: the train-only scaler saved with the model (``mean_``, ``scale_`` of shape
            ``(f,)``).
    """

    mv: Any
    name: str
    version: str
    reference_start: pd.Timestamp
    reference_end: pd.Timestamp
    settings: Any
    pyfunc: Any
    features: list[str]
    lookback: int
    scaler: Any

    @property
    def symbol(self) -> str:
        """The run's market symbol (``BTC/USDT``)."""
        return str(self.settings.data.symbol)

    @property
    def timeframe(self) -> str:
        """The run's bar timeframe (``1h``)."""
        return str(self.settings.data.timeframe)


@dataclass(frozen=True)
class DriftWindows:
    """The rebuilt feature rows (the rebuild step).

    Attributes:
        reference_frame, current_frame: the feature frames (``DatetimeIndex``, UTC, sorted) the
            windows were cut from; the current one comes from ``data_path``, the reference one
            too when it covers the training window, else from the run's own data file. Earlier
            rows serve as context for sequence models' forecasts.
        reference: rows of the training window, ``(n_ref >= 2, ...)``.
        current: rows of the current window (:func:`select_window`), ``(n_cur >= 2, ...)``;
            both carry a :data:`PREDICTION` column once the report step has forecast them.
    """

    reference_frame: pd.DataFrame
    current_frame: pd.DataFrame
    reference: pd.DataFrame
    current: pd.DataFrame
    current_source: str = "rebuilt"
    current_note: str = ""


@dataclass
class ReportedDrift:
    """The report step's output, what the record and alert steps read.

    Attributes:
        result: the :class:`ModelDriftResult` (report, workspace ids, reference check; the
            record step fills its run and store ids).
        windows: the windows with their :data:`PREDICTION` column.
        workspace: the Evidently workspace directory the snapshot went to.
        created: UTC time stamped on the store rows (also in the default report directory).
    """

    result: ModelDriftResult
    windows: DriftWindows
    workspace: Path
    created: datetime


def drift_for_model(
    client: Any,
    engine: Any,
    model_name_or_uri: str,
    *,
    current: str | tuple[Any, Any] = "30d",
    data_path: str | Path | None = None,
    drift_share: float = 0.5,
    workspace: str | Path | None = None,
    notifier: Any = None,
    out_dir: str | Path | None = None,
    experiment_name: str = MONITORING_EXPERIMENT,
    shift_limit: float = 0.5,
    ratio_limit: float = 2.0,
    current_source: str = "auto",
) -> ModelDriftResult:
    """Drift report of a registered model's training window against its current data, logged,
    stored and acted on.

    The current window's rows come from the prediction log when it covers the window
    (``current_source="auto"``, the default; ``"logged"`` demands it, ``"rebuilt"`` never
    reads it): the features rebuilt, through the same path, from the logged inputs (the
    union of the requests' candles in the window) and kept at the logged bar times only
    (:func:`_logged_windows`); else, as before, rebuilt from ``data_path``. Which one is in
    ``current_source`` (output, MLflow tag ``huracan.drift.current_source``, the stored
    report's details).

    Steps: resolve the version (``NAME`` = its ``production`` alias, ``NAME@ALIAS``,
    ``NAME/VERSION``); read its settings from its run's ``config/resolved.yaml``; load its
    pyfunc model (estimator feature list, lookback, train-only scaler); rebuild its features on
    ``data_path`` (default: the file it trained on) with the run's settings; reference = rows
    from the manifest's ``huracan.train_start`` to ``huracan.train_end`` (rebuilt from the run's
    own file when ``data_path`` does not cover them), current = :func:`select_window`; forecasts
    of both windows by the model; :func:`drift_report` with the realised ``label`` as target
    (rebuilt rows all have matured labels, so the newest ``horizon`` bars, whose labels are not
    known yet, are not in the current window); the snapshot added to the Evidently workspace
    project named after the registered model; a monitoring MLflow run in ``experiment_name``
    tagged ``huracan.role=drift``, ``huracan.monitored_model``, ``huracan.monitored_version``,
    ``huracan.monitored_run``, with metrics (``drift_share``, ``n_drifted``, ``n_features``,
    ``dataset_drift``, prediction and target drift scores, per-feature ``drift_score/<f>``,
    ``scale_shift/<f>``, ``scale_ratio/<f>``, timings ``time/<step>_s``) and artifacts
    ``drift/drift_report.html``, ``.json``, ``drift_summary.json``, ``columns.csv``,
    ``scaling.csv``; the version gets tags ``huracan.last_drift_run`` and
    ``huracan.last_drift_share``; a ``drift_reports`` row. Over threshold (``drift_share`` of
    features drifted or more): a ``data_quality_logs`` row (``feature_drift``, warning), a
    ``retrain_requests`` row (unless one is still pending for the model) and an alert. In code:
    :func:`_resolve_model`, :func:`_rebuild_windows`, :func:`_report_windows`,
    :func:`_record_report`, :func:`_alert_drift`.

    Reference forecasts are in-sample (the model was fitted on those rows), so a model that
    fits its training rows closely shows a wider reference forecast distribution than it will
    ever produce out of sample: read prediction drift with that in mind.

    Args:
        client: an ``MlflowClient`` (its tracking URI is used for every MLflow call).
        engine: a SQLAlchemy Engine on a brain store migrated to head (revision 0003 or later).
        model_name_or_uri: see above.
        current: ``"30d"``, ``"720"`` (bars) or ``(from, to)`` (inclusive; naive = UTC).
        data_path: OHLCV file with the newest data (Parquet/CSV, as for training).
        drift_share: threshold on the share of drifted features, in ``(0, 1]``.
        workspace: Evidently workspace directory (default :func:`default_workspace`).
        notifier: alert notifier (default: the log notifier).
        out_dir: where the HTML/JSON are written (default
            ``<workspace>/../drift_reports/<model>/v<version>-<current end>-<id>``).
        experiment_name: MLflow experiment of the monitoring run.
        shift_limit, ratio_limit: scaling-drift flags (:func:`scaling_drift`).

    Returns:
        a :class:`ModelDriftResult`.

    Raises:
        LookupError: unknown model, alias or version; a version without a source run or without
            ``train_start``/``train_end`` in its manifest or run tags.
        DriftInputError: bad window, threshold or ``current_source``, an empty window, or
            (``current_source="logged"``) a prediction log that does not cover the window.
        huracan.data.ohlcv.DataValidationError: the data file breaks a rule.
        mlflow.exceptions.MlflowException, sqlalchemy.exc.SQLAlchemyError: store failures (the
            monitoring run, if created, ends FAILED).
    """
    t_all = time.perf_counter()
    timings: dict[str, float] = {}
    if not 0.0 < float(drift_share) <= 1.0:
        raise DriftInputError(f"drift_share {drift_share} must be in (0, 1]")
    if current_source not in ("auto", "logged", "rebuilt"):
        raise DriftInputError(f"current_source {current_source!r}: expected auto, logged or "
                              "rebuilt")
    model = _resolve_model(client, model_name_or_uri, timings)
    windows = _rebuild_windows(model, data_path, current, timings)
    if current_source != "rebuilt":
        windows = _logged_windows(engine, model, windows, current, timings,
                                  required=current_source == "logged")
    reported = _report_windows(client, model, windows, drift_share=drift_share,
                               workspace=workspace, out_dir=out_dir, shift_limit=shift_limit,
                               ratio_limit=ratio_limit, timings=timings)
    _record_report(client, engine, reported, experiment_name=experiment_name, started=t_all)
    _alert_drift(reported.result, notifier)
    return reported.result


def _resolve_model(client: Any, model_name_or_uri: str, timings: dict[str, float]
                   ) -> DriftModel:
    """Resolve step: the version (:func:`resolve_version`), its training window, its run's
    settings and its pyfunc model; records ``timings["load_model"]`` (seconds).

    Raises:
        LookupError: unknown model, alias or version; no source run; no
            ``train_start``/``train_end`` in the manifest or the run's tags.
        DriftInputError: an unparseable training-window bound.
    """
    from huracan.rebuild import run_settings

    mv = resolve_version(client, model_name_or_uri)
    name, version = str(mv.name), str(mv.version)
    if not mv.run_id:
        raise LookupError(f"{name} v{version} has no source run to rebuild its features from")
    run_tags = client.get_run(mv.run_id).data.tags
    from huracan.registry.manifest import manifest_value

    bounds = [manifest_value(client, mv, k) or run_tags.get(k)
              for k in ("train_start", "train_end")]
    if not all(bounds):
        raise LookupError(f"{name} v{version}: no train_start/train_end in its manifest")
    ref_start, ref_end = _utc(bounds[0]), _utc(bounds[1])
    settings = run_settings(client, mv.run_id)
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        pyfunc = load_pyfunc(client, mv, Path(tmp) / "model")
    wrapper = pyfunc.unwrap_python_model()
    features = [str(f) for f in wrapper.estimator.feature_names_]
    lookback = int(getattr(wrapper.estimator, "lookback", 1))
    scaler = wrapper.scaler
    timings["load_model"] = time.perf_counter() - t
    return DriftModel(mv=mv, name=name, version=version, reference_start=ref_start,
                      reference_end=ref_end, settings=settings, pyfunc=pyfunc,
                      features=features, lookback=lookback, scaler=scaler)


def _rebuild_windows(model: DriftModel, data_path: str | Path | None,
                     current: str | tuple[Any, Any], timings: dict[str, float]) -> DriftWindows:
    """Rebuild step: the model's features rebuilt with its run's settings
    (:func:`_window_frames`), cut to the training window and to the ``current`` window;
    records ``timings["features"]`` (seconds).

    Raises:
        LookupError: the run's configuration does not build a feature the model needs.
        DriftInputError: fewer than 2 rebuilt rows in the training window; a bad or empty
            current window.
        huracan.data.ohlcv.DataValidationError: the data file breaks a rule.
    """
    ref_start, ref_end = model.reference_start, model.reference_end
    t = time.perf_counter()
    cur_frame, ref_frame = _window_frames(model.settings, data_path, ref_start, ref_end)
    missing = [f for f in model.features if f not in cur_frame.columns]
    if missing:
        raise LookupError(f"{model.name} v{model.version}: feature(s) {missing} are not built "
                          "by its run's configuration")
    ref_rows = ref_frame[(ref_frame.index >= ref_start) & (ref_frame.index <= ref_end)]
    if len(ref_rows) < 2:
        raise DriftInputError(f"{model.name} v{model.version}: the training window {ref_start} "
                              f".. {ref_end} holds {len(ref_rows)} rebuilt row(s)")
    cur_rows = select_window(cur_frame, current, model.timeframe)
    timings["features"] = time.perf_counter() - t
    return DriftWindows(reference_frame=ref_frame, current_frame=cur_frame, reference=ref_rows,
                        current=cur_rows)


#: share of a current window's bars the prediction log must hold to be the current window
LOGGED_MIN_SHARE = 0.9


def _newest_logged(engine: Any, symbol: str, timeframe: str) -> pd.Timestamp | None:
    """The newest bar time of the prediction log for ``symbol``/``timeframe``, or None."""
    from sqlalchemy import func, select

    from huracan.db.tables import Prediction

    with engine.connect() as conn:
        last = conn.execute(select(func.max(Prediction.bar_time)).where(
            Prediction.symbol == symbol, Prediction.timeframe == timeframe)).scalar()
    return None if last is None else to_utc(last)


def _current_bounds(current: str | tuple[Any, Any], rebuilt: pd.DataFrame,
                    newest_logged: pd.Timestamp, timeframe: str
                    ) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``[start, end]`` of the current window for the log: ``(from, to)`` as given (an open
    end: the rebuilt window's, or the newest logged bar); a span ends at the newer of the newest
    logged bar and the newest rebuilt row and reaches back ``span`` (exclusive)."""
    from huracan.data.ohlcv import timeframe_to_timedelta

    newest = max(newest_logged, pd.Timestamp(rebuilt.index[-1]))
    if isinstance(current, tuple):
        lo = _utc(current[0]) if current[0] is not None else pd.Timestamp(rebuilt.index[0])
        hi = _utc(current[1]) if current[1] is not None else newest
        return lo, hi
    return newest - window_span(current, timeframe) + timeframe_to_timedelta(timeframe), newest


def _logged_windows(engine: Any, model: DriftModel, windows: DriftWindows,
                    current: str | tuple[Any, Any], timings: dict[str, float], *,
                    required: bool) -> DriftWindows:
    """The current window from the prediction log when it covers at least
    :data:`LOGGED_MIN_SHARE` of the window's bars (:func:`_current_bounds`): the model's
    features rebuilt by :func:`huracan.rebuild.rebuild_features` (the same path, unlabelled
    newest rows kept) on the logged candles
    (:func:`huracan.data.prediction_store.logged_candles`: the union of the requests' candles,
    the most recently served view of a bar winning), rows at the logged bar times only.
    Otherwise ``windows`` unchanged with a note (``required``: raise instead).

    Raises:
        DriftInputError: ``required`` and the log does not cover the window.
        huracan.data.ohlcv.DataValidationError: the logged candles break a rule.
    """
    from huracan.data.ohlcv import timeframe_to_timedelta
    from huracan.data.prediction_store import DIGEST_COLUMNS, logged_candles
    from huracan.rebuild import rebuild_features

    t = time.perf_counter()
    symbol, timeframe = model.symbol, model.timeframe
    newest = _newest_logged(engine, symbol, timeframe)
    if newest is None:
        note = f"no logged predictions of {symbol} {timeframe}"
    else:
        lo, hi = _current_bounds(current, windows.current, newest, timeframe)
        bar = timeframe_to_timedelta(timeframe)
        candles, times = logged_candles(engine, symbol, timeframe, lo, hi + bar)  # [lo, hi]
        expected = int((hi - lo) / bar) + 1
        note = (f"the prediction log holds {len(times)} of the window's {expected} bars "
                f"({lo} .. {hi}; need {100 * LOGGED_MIN_SHARE:g} %)")
        if len(times) >= max(2, LOGGED_MIN_SHARE * expected) and len(candles):
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "logged_inputs.parquet"
                candles[["timestamp", *DIGEST_COLUMNS]].to_parquet(path)
                fs, _ = rebuild_features(model.settings, path, keep_unlabelled=True)
            frame = fs.frame
            rows = frame[pd.DatetimeIndex(frame.index).isin(times)]
            if len(rows) >= 2:
                timings["logged_features"] = time.perf_counter() - t
                return replace(windows, current_frame=frame, current=rows,
                               current_source="logged", current_note="")
            note += f"; only {len(rows)} logged bar(s) have rebuilt features"
    if required:
        raise DriftInputError(f"current window from the prediction log: {note}")
    timings["logged_features"] = time.perf_counter() - t
    return replace(windows, current_note=note)


def _predict_windows(model: DriftModel, windows: DriftWindows, timings: dict[str, float]
                     ) -> DriftWindows:
    """Both windows with the model's forecast (fraction, forward return) in a
    :data:`PREDICTION` column (:func:`predict_window`); records ``timings["predict"]``."""
    t = time.perf_counter()
    ref_rows = windows.reference.assign(**{PREDICTION: predict_window(
        model.pyfunc, windows.reference_frame, windows.reference, model.features,
        model.lookback)})
    cur_rows = windows.current.assign(**{PREDICTION: predict_window(
        model.pyfunc, windows.current_frame, windows.current, model.features, model.lookback)})
    timings["predict"] = time.perf_counter() - t
    return replace(windows, reference=ref_rows, current=cur_rows)


def _reference_check(model: DriftModel, reference: pd.DataFrame) -> float:
    """Max over features of |reference mean - scaler mean| / scaler scale (0 when the rebuilt
    training window holds exactly the model's training rows); warns above 1e-3."""
    scaler = model.scaler
    ref_x = reference[model.features].to_numpy(np.float64)
    scale = np.where(np.asarray(scaler.scale_) > 0, np.asarray(scaler.scale_), 1.0)
    reference_check = float(np.max(np.abs(ref_x.mean(axis=0) - scaler.mean_) / scale))
    if reference_check > 1e-3:
        log.warning("%s v%s: the rebuilt training window differs from the model's training rows "
                    "(reference mean vs scaler mean: up to %.3g training std)", model.name,
                    model.version, reference_check)
    return reference_check


def _report_windows(client: Any, model: DriftModel, windows: DriftWindows, *,
                    drift_share: float, workspace: str | Path | None,
                    out_dir: str | Path | None, shift_limit: float, ratio_limit: float,
                    timings: dict[str, float]) -> ReportedDrift:
    """Report step: forecasts of both windows, :func:`drift_report` (saved under ``out_dir``,
    default ``<workspace>/../drift_reports/<model>/v<version>-<current end>-<created>-<id>``)
    and its snapshot added to the Evidently workspace (project = the registered model);
    records ``timings["predict"]``, ``["report"]`` and ``["workspace"]`` (seconds).

    Raises:
        DriftInputError: as :func:`drift_report`.
        OSError: the report or the workspace cannot be written.
    """
    from huracan.registry.promotion import seen_until

    name, version, symbol, timeframe = model.name, model.version, model.symbol, model.timeframe
    windows = _predict_windows(model, windows, timings)
    ref_rows, cur_rows = windows.reference, windows.current
    reference_check = _reference_check(model, ref_rows)
    seen = seen_until(model.mv, client)
    overlaps = bool(seen is not None and cur_rows.index[0] <= _utc(seen)
                    and cur_rows.index[-1] >= model.reference_start)
    cur_end = pd.Timestamp(cur_rows.index[-1])
    ws = Path(workspace) if workspace is not None else default_workspace(client.tracking_uri)
    created = datetime.now(UTC)
    if out_dir is None:
        out_dir = (ws.parent / "drift_reports" / name /
                   f"v{version}-{cur_end:%Y%m%dT%H%M}-{created:%Y%m%dT%H%M%S}-"
                   f"{uuid.uuid4().hex[:6]}")
    t = time.perf_counter()
    report = drift_report(
        ref_rows, cur_rows, model.features, prediction_col=PREDICTION, target_col=TARGET,
        drift_share=drift_share, scaler=model.scaler, out_dir=out_dir,
        name=f"{name} v{version} {cur_rows.index[0]:%Y-%m-%d %H:%M} .. {cur_end:%Y-%m-%d %H:%M}",
        timestamp=cur_end.tz_convert("UTC").tz_localize(None).to_pydatetime(),
        metadata={"model": name, "version": version, "symbol": symbol, "timeframe": timeframe,
                  "reference": f"{ref_rows.index[0]} .. {ref_rows.index[-1]}",
                  "current": f"{cur_rows.index[0]} .. {cur_end}",
                  "current_source": windows.current_source},
        tags=[name, f"v{version}", symbol], shift_limit=shift_limit, ratio_limit=ratio_limit)
    timings["report"] = time.perf_counter() - t
    out = ModelDriftResult(report=report, model_name=name, version=version,
                           model_run_id=str(model.mv.run_id), symbol=symbol,
                           timeframe=timeframe, workspace=ws, reference_check=reference_check,
                           current_overlaps_training=overlaps, timings=timings,
                           current_source=windows.current_source,
                           current_note=windows.current_note)
    t = time.perf_counter()
    out.workspace_project_id, out.snapshot_id = add_to_workspace(
        report.snapshot, ws, name, f"Huracan drift reports of {name} ({symbol} {timeframe})")
    timings["workspace"] = time.perf_counter() - t
    return ReportedDrift(result=out, windows=windows, workspace=ws, created=created)


def _record_report(client: Any, engine: Any, reported: ReportedDrift, *, experiment_name: str,
                   started: float) -> None:
    """Record step: the monitoring MLflow run (:func:`_start_drift_run`,
    :func:`_log_drift_run`), then the store rows (:func:`_store_drift_rows`) and the step
    timings (``mlflow``, ``store``, ``total`` since ``started``, a ``time.perf_counter()``
    value). Fills ``reported.result``'s ``report_run_id``, ``drift_report_id`` and retrain
    request fields; the run ends FINISHED, or FAILED when anything here raises.

    Raises:
        mlflow.exceptions.MlflowException, sqlalchemy.exc.SQLAlchemyError: store failures.
    """
    out, report, timings = reported.result, reported.result.report, reported.result.timings
    t = time.perf_counter()
    run_id = _start_drift_run(client, reported, experiment_name)
    out.report_run_id = run_id
    status = "FAILED"
    try:
        _log_drift_run(client, run_id, out)
        timings["mlflow"] = time.perf_counter() - t

        t = time.perf_counter()
        _store_drift_rows(engine, reported, run_id)
        timings["store"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - started
        client.log_batch(run_id, metrics=_finite_metrics(
            {time_metric(k): v for k, v in timings.items() if k in ("mlflow", "store", "total")}))
        if out.drift_report_id is not None:
            client.set_tag(run_id, f"{TAG}drift_report_id", str(out.drift_report_id))
        status = "FINISHED"
    finally:
        client.set_terminated(run_id, status)
    log.info("%s v%s: drift share %.2f (%d/%d features; threshold %g) on %s .. %s; run %s",
             out.model_name, out.version, report.drift_share, report.n_drifted,
             report.n_features, report.threshold, report.current_start, report.current_end,
             run_id)


def _start_drift_run(client: Any, reported: ReportedDrift, experiment_name: str) -> str:
    """Create the monitoring run (tags ``huracan.role=drift``, the monitored model, version and
    run, the windows, the verdict, the Evidently snapshot) in ``experiment_name`` (created
    beside the model's experiment when missing); returns its id."""
    out, report, ws = reported.result, reported.result.report, reported.workspace
    name, version = out.model_name, out.version
    exp_id = _monitoring_experiment(client, experiment_name, out.model_run_id)
    run_name = monitoring_run_name("drift", name, version, report.current_start,
                                   report.current_end)
    run = client.create_run(exp_id, run_name=run_name, tags={
        f"{TAG}role": "drift", f"{TAG}monitored_model": name,
        f"{TAG}monitored_version": version, f"{TAG}monitored_run": out.model_run_id,
        "symbol": out.symbol, "timeframe": out.timeframe,
        f"{TAG}drift.reference": f"{report.reference_start} .. {report.reference_end}",
        f"{TAG}drift.current": f"{report.current_start} .. {report.current_end}",
        f"{TAG}drift.current_source": out.current_source,
        f"{TAG}drift.dataset_drift": str(report.dataset_drift).lower(),
        f"{TAG}drift.drifted_features": ",".join(report.drifted_features)[:5000],
        f"{TAG}evidently_snapshot": str(out.snapshot_id),
        f"{TAG}evidently_workspace": str(ws.resolve()),
        f"{TAG}evidently_project": str(out.workspace_project_id),
    })
    return str(run.info.run_id)


def _log_drift_run(client: Any, run_id: str, out: ModelDriftResult) -> None:
    """Log the report on the monitoring run ``run_id``: metrics (shares, per-feature scores,
    scaling shifts, step timings so far), the threshold param, the ``drift/`` artifacts; tag the
    version with ``huracan.last_drift_run`` and ``huracan.last_drift_share``."""
    report, timings = out.report, out.timings
    metrics = {"drift_share": report.drift_share, "n_drifted": report.n_drifted,
               "n_features": report.n_features, "drift_threshold": report.threshold,
               "dataset_drift": float(report.dataset_drift),
               "reference_rows": report.reference_rows, "current_rows": report.current_rows,
               "n_scaling_flagged": len(report.scaling_flagged),
               "reference_check": out.reference_check}
    if report.prediction is not None:
        metrics["prediction_drift_score"] = report.prediction.score
        metrics["prediction_drifted"] = float(report.prediction.drifted)
    if report.target is not None:
        metrics["target_drift_score"] = report.target.score
        metrics["target_drifted"] = float(report.target.drifted)
    metrics |= {f"drift_score/{c.column}": c.score for c in report.features}
    metrics |= {f"scale_shift/{s.feature}": s.mean_shift for s in report.scaling}
    metrics |= {f"scale_ratio/{s.feature}": s.std_ratio for s in report.scaling}
    metrics |= {time_metric(k): v for k, v in {**timings, **{
        f"evidently_{k}": v for k, v in report.timings.items()}}.items()}
    client.log_batch(run_id, metrics=_finite_metrics(metrics))
    client.log_param(run_id, "drift_share_threshold", str(report.threshold))
    with tempfile.TemporaryDirectory() as tmp:
        report.columns_frame().to_csv(Path(tmp) / "columns.csv", index=False)
        report.scaling_frame().to_csv(Path(tmp) / "scaling.csv", index=False)
        client.log_artifact(run_id, str(Path(tmp) / "columns.csv"), "drift")
        client.log_artifact(run_id, str(Path(tmp) / "scaling.csv"), "drift")
    for path in (report.html_path, report.json_path, report.summary_path):
        if path is not None:
            client.log_artifact(run_id, str(path), "drift")
    client.set_model_version_tag(out.model_name, out.version, f"{TAG}last_drift_run", run_id)
    client.set_model_version_tag(out.model_name, out.version, f"{TAG}last_drift_share",
                                 f"{report.drift_share:.4f}")


def _store_drift_rows(engine: Any, reported: ReportedDrift, run_id: str) -> None:
    """Write, in one transaction, the ``drift_reports`` row and, over threshold, a
    ``data_quality_logs`` row (``feature_drift``, warning) and a ``retrain_requests`` row (or
    the pending one for the model: ``retrain_request_created`` False); their ids go into
    ``reported.result``. ``run_id`` is the monitoring run the rows point to.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the store refuses a row.
    """
    from huracan.analysis import drift_store

    out, report, created = reported.result, reported.result.report, reported.created
    ref_rows, cur_rows = reported.windows.reference, reported.windows.current
    symbol, timeframe, name, version = out.symbol, out.timeframe, out.model_name, out.version
    details = {k: v for k, v in report.as_dict().items() if k not in ("summary",)}
    details |= {"summary": report.summary, "reference_check": out.reference_check,
                "current_overlaps_training": out.current_overlaps_training,
                "current_source": out.current_source, "current_note": out.current_note,
                "model_run_id": out.model_run_id, "workspace": str(reported.workspace),
                "snapshot_id": out.snapshot_id, "step_timings": out.timings}
    reason = (f"{report.n_drifted}/{report.n_features} features drifted (share "
              f"{report.drift_share:.2f} >= {report.threshold:g}) on "
              f"{report.current_start} .. {report.current_end} vs the training window "
              f"{report.reference_start} .. {report.reference_end}: "
              f"{', '.join(report.drifted_features)}; report run {run_id}")
    with engine.begin() as conn:
        out.drift_report_id = drift_store.record_drift_report(
            conn, symbol=symbol, timeframe=timeframe, model_name=name,
            model_version=version, reference_start=ref_rows.index[0],
            reference_end=ref_rows.index[-1], current_start=cur_rows.index[0],
            current_end=pd.Timestamp(cur_rows.index[-1]), reference_rows=report.reference_rows,
            current_rows=report.current_rows, n_features=report.n_features,
            n_drifted=report.n_drifted, drift_share=report.drift_share,
            threshold=report.threshold, drifted=report.dataset_drift,
            drifted_features=report.drifted_features,
            prediction_drift_score=None if report.prediction is None
            else report.prediction.score,
            prediction_drifted=None if report.prediction is None
            else report.prediction.drifted,
            target_drift_score=None if report.target is None else report.target.score,
            target_drifted=None if report.target is None else report.target.drifted,
            details=details, report_run_id=run_id, created_at=created)
        if report.dataset_drift:
            drift_store.record_drift_issue(
                conn, symbol=symbol, source=f"huracan drift {name} v{version}",
                details={"model": name, "version": version, "timeframe": timeframe,
                         "drift_share": report.drift_share,
                         "threshold": report.threshold,
                         "drifted_features": report.drifted_features,
                         "current": [report.current_start, report.current_end],
                         "reference": [report.reference_start, report.reference_end],
                         "report_run_id": run_id, "drift_report_id": out.drift_report_id},
                timestamp=created)
            out.retrain_request_id, out.retrain_request_created = (
                drift_store.record_retrain_request(
                    conn, symbol=symbol, timeframe=timeframe, model_name=name,
                    model_version=version, reason=reason,
                    drift_report_id=out.drift_report_id, report_run_id=run_id,
                    created_at=created))


def _alert_drift(out: ModelDriftResult, notifier: Any) -> None:
    """Alert step: over threshold, a ``warning`` alert through ``notifier`` (default: the log
    notifier) naming the drifted features, the window, the run, the retrain request and the
    HTML report; nothing otherwise."""
    from huracan.alerts import Alert, LogNotifier

    report = out.report
    if report.dataset_drift:
        (notifier or LogNotifier()).notify(Alert(
            f"{out.model_name} v{out.version}: feature drift {report.drift_share:.0%} of "
            f"features >= {report.threshold:.0%}: retrain requested", "warning",
            {"drifted": ",".join(report.drifted_features[:10]),
             "current": f"{report.current_start}..{report.current_end}",
             "report_run": out.report_run_id, "retrain_request": out.retrain_request_id,
             "html": str(report.html_path)}))


# ----------------------------------------------------------------------------- registry monitor
@dataclass(frozen=True)
class MonitorDrift:
    """Drift outcome for ``registry monitor``: ``drifted`` (share >= threshold), ``share``,
    ``report_run_id`` (the MLflow monitoring run), the ``drift_reports`` and
    ``retrain_requests`` ids, and ``error`` (the check failed: everything else is unset)."""

    drifted: bool
    share: float
    threshold: float
    report_run_id: str | None = None
    drift_report_id: int | None = None
    retrain_request_id: int | None = None
    drifted_features: tuple[str, ...] = ()
    html_path: str | None = None
    error: str | None = None
    current_source: str = "rebuilt"

    def line(self) -> str:
        """One line for the command output."""
        if self.error:
            return f"drift check failed: {self.error}"
        verdict = ("DRIFT: retrain requested" + (f" (request {self.retrain_request_id})"
                                                 if self.retrain_request_id else "")
                   if self.drifted else "no drift")
        return (f"drift share {self.share:.2f} (threshold {self.threshold:g}): {verdict}; "
                f"report run {self.report_run_id}; current window: {self.current_source}")


def check_drift_for_monitor(client: Any, engine: Any, name: str, *,
                            data_path: str | Path | None = None,
                            current: str | tuple[Any, Any] = "30d",
                            drift_share: float = 0.5, workspace: str | Path | None = None,
                            notifier: Any = None) -> MonitorDrift:
    """:func:`drift_for_model` on ``name``'s production version, for ``registry monitor`` (the
    current window from the prediction log when it covers it, else rebuilt from ``data_path``).

    Never raises (the performance check must still run): a failure is logged, alerted and
    returned as ``MonitorDrift(error=...)``.
    """
    from huracan.alerts import Alert, LogNotifier

    try:
        res = drift_for_model(client, engine, name, current=current, data_path=data_path,
                              drift_share=drift_share, workspace=workspace, notifier=notifier)
    except Exception as exc:  # reported, never fatal to the monitor
        msg = f"{type(exc).__name__}: {exc}"[:500]
        log.exception("drift check of %s failed", name)
        (notifier or LogNotifier()).notify(Alert(f"{name}: drift check failed", "warning",
                                                 {"error": msg}))
        return MonitorDrift(False, math.nan, float(drift_share), error=msg)
    rep = res.report
    return MonitorDrift(rep.dataset_drift, rep.drift_share, rep.threshold, res.report_run_id,
                        res.drift_report_id, res.retrain_request_id,
                        tuple(rep.drifted_features),
                        None if rep.html_path is None else str(rep.html_path),
                        current_source=res.current_source)


# ----------------------------------------------------------------------------- weekly rescale
@dataclass
class RescaleResult:
    """Old (the model's) vs new scaler parameters on the newest training-length window.

    Attributes:
        params: one row per feature: ``old_mean``, ``old_scale``, ``new_mean``, ``new_scale``,
            ``mean_shift`` = (new_mean - old_mean) / old_scale, ``scale_ratio`` = new / old.
        window_start, window_end, rows: the window the new scaler was fitted on: the newest
            bars spanning as long as the model's training window (``train_end - train_start``).
        run_id: the MLflow run holding ``rescale/params.csv`` and ``rescale/scaler.pkl``.
        max_abs_mean_shift, max_scale_ratio_dev: the largest |mean_shift| and |log scale_ratio|.
    """

    model_name: str
    version: str
    params: pd.DataFrame
    window_start: str
    window_end: str
    rows: int
    run_id: str | None
    max_abs_mean_shift: float
    max_scale_ratio_dev: float
    timings: dict[str, float] = field(default_factory=dict)


RESCALE_NOTE = ("the registered model is unchanged: its pyfunc bundles the scaler it was trained "
                "with, which its estimator needs; this run only logs the parameters a refit on "
                "the newest training-length window would get")


def weekly_rescale(client: Any, model_name_or_uri: str, *,
                   data_path: str | Path | None = None,
                   experiment_name: str = MONITORING_EXPERIMENT) -> RescaleResult:
    """Refit a ``StandardScaler`` on the newest training-length window and log old vs new.

    The window is the newest feature rows spanning the same time as the version's training
    window (manifest ``train_start`` .. ``train_end``), on ``data_path`` (default: the run's
    file). Logged as an MLflow run in ``experiment_name`` (tags ``huracan.role=rescale``,
    ``huracan.monitored_model``, ``huracan.monitored_version``, ``huracan.rescale_note``;
    metrics ``max_abs_mean_shift``, ``max_scale_ratio_dev``, ``mean_shift/<f>``,
    ``scale_ratio/<f>``; artifacts ``rescale/params.csv`` and ``rescale/scaler.pkl``).

    It does NOT change the registered model or its scaler (:data:`RESCALE_NOTE`): the model's
    estimator was fitted on inputs scaled by the old scaler, so swapping scalers under it would
    change its forecasts; a retrain fits both together. The numbers tell how stale the scaling is.

    Raises:
        LookupError: unknown model or a manifest without the training window.
        huracan.data.ohlcv.DataValidationError: the data file breaks a rule.
    """
    import pickle

    from huracan.rebuild import rebuild_features, run_settings
    from huracan.splits import fit_scaler

    t0 = time.perf_counter()
    mv = resolve_version(client, model_name_or_uri)
    name, version = str(mv.name), str(mv.version)
    run_tags = client.get_run(mv.run_id).data.tags
    from huracan.registry.manifest import manifest_value

    bounds = [manifest_value(client, mv, k) or run_tags.get(k)
              for k in ("train_start", "train_end")]
    if not all(bounds):
        raise LookupError(f"{name} v{version}: no train_start/train_end in its manifest")
    span = _utc(bounds[1]) - _utc(bounds[0])
    settings = run_settings(client, mv.run_id)
    with tempfile.TemporaryDirectory() as tmp:
        wrapper = load_pyfunc(client, mv, Path(tmp) / "model").unwrap_python_model()
    features = [str(f) for f in wrapper.estimator.feature_names_]
    old = wrapper.scaler
    fs, _ = rebuild_features(settings, data_path)
    idx = pd.DatetimeIndex(fs.frame.index)
    rows = fs.frame[idx >= idx.max() - span]
    new = fit_scaler(rows[features].to_numpy(np.float32))
    old_scale = np.where(np.asarray(old.scale_) > 0, np.asarray(old.scale_), 1.0)
    params = pd.DataFrame({
        "feature": features, "old_mean": np.asarray(old.mean_, dtype=float),
        "old_scale": np.asarray(old.scale_, dtype=float), "new_mean": new.mean_,
        "new_scale": new.scale_})
    params["mean_shift"] = (params["new_mean"] - params["old_mean"]) / old_scale
    params["scale_ratio"] = params["new_scale"] / old_scale
    max_shift = float(params["mean_shift"].abs().max())
    max_ratio = float(np.abs(np.log(params["scale_ratio"].clip(lower=1e-12))).max())
    out = RescaleResult(name, version, params, rows.index[0].isoformat(),
                        rows.index[-1].isoformat(), len(rows), None, max_shift, max_ratio)
    exp_id = _monitoring_experiment(client, experiment_name, mv.run_id)
    run_name = monitoring_run_name("rescale", name, version, out.window_start, out.window_end)
    run = client.create_run(exp_id, run_name=run_name, tags={
        f"{TAG}role": "rescale", f"{TAG}monitored_model": name,
        f"{TAG}monitored_version": version, f"{TAG}monitored_run": str(mv.run_id),
        f"{TAG}rescale_note": RESCALE_NOTE,
        f"{TAG}rescale.window": f"{out.window_start} .. {out.window_end}"})
    run_id = str(run.info.run_id)
    status = "FAILED"
    try:
        metrics = {"max_abs_mean_shift": max_shift, "max_scale_ratio_dev": max_ratio,
                   "rows": float(len(rows))}
        metrics |= {f"mean_shift/{r.feature}": r.mean_shift for r in params.itertuples()}
        metrics |= {f"scale_ratio/{r.feature}": r.scale_ratio for r in params.itertuples()}
        client.log_batch(run_id, metrics=_finite_metrics(metrics))
        with tempfile.TemporaryDirectory() as tmp:
            params.to_csv(Path(tmp) / "params.csv", index=False)
            with (Path(tmp) / "scaler.pkl").open("wb") as fh:
                pickle.dump(new, fh)
            client.log_artifact(run_id, str(Path(tmp) / "params.csv"), "rescale")
            client.log_artifact(run_id, str(Path(tmp) / "scaler.pkl"), "rescale")
        status = "FINISHED"
    finally:
        client.set_terminated(run_id, status)
    out.run_id = run_id
    out.timings["total"] = time.perf_counter() - t0
    return out


def rescale_due(client: Any, name: str, *, every: str = "7d",
                now: datetime | None = None,
                experiment_name: str = MONITORING_EXPERIMENT) -> bool:
    """True when no finished rescale run of ``name`` started within ``every`` before ``now``
    (the nightly pipeline's schedule for ``drift.weekly_rescale=true``)."""
    exp = client.get_experiment_by_name(experiment_name)
    if exp is None:
        return True
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=(f"tags.`{TAG}role` = 'rescale' and "
                       f"tags.`{TAG}monitored_model` = '{name}' and "
                       "attributes.status = 'FINISHED'"),
        order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        return True
    last = pd.Timestamp(runs[0].info.start_time, unit="ms", tz="UTC")
    return bool(_utc(now or datetime.now(UTC)) - last >= pd.Timedelta(every))


@dataclass(frozen=True)
class DriftSettings:
    """The ``drift`` settings the nightly pipeline reads (``drift.share`` etc.): threshold on
    the share of drifted features, current window, the Evidently workspace (``None``: beside the
    MLflow store) and the weekly scaler refit."""

    share: float = 0.5
    current: str = "30d"
    workspace: str | None = None
    weekly_rescale: bool = False
    rescale_every: str = "7d"

    @classmethod
    def from_dict(cls, node: Mapping[str, Any] | None) -> DriftSettings:
        """From a resolved ``drift`` config node.

        Raises:
            huracan.settings.UnknownKeyError: a key these settings do not know.
        """
        from huracan.settings import build

        settings: DriftSettings = build(cls, node, "drift")
        return settings
