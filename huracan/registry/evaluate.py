"""Score registered model versions on an evaluation window (the candidate's scored bars).

The window is the ``data/eval_window.parquet`` artifact every training run logs
(:func:`huracan.stages.eval_window`): its scored bars (``split == "test"``: the test bars of a
forward split, the last stitched out-of-sample bars of a walk-forward run) plus up to 256
preceding ``context`` rows, with unscaled features, ``label``, ``next_return``, and, since the
window carries its out-of-sample forecasts, ``prediction`` (the forecast the run made for that
bar, by the fold model fitted before it; NaN on context rows) and ``fold``.

Where a version's forecast of a scored bar comes from (:func:`forecast_sources`), so that every
bar is predicted by a model fitted before it:

1. its registered model (pyfunc), when the bar is after the version's ``seen_until`` (the last
   bar its model saw in fitting or early stopping);
2. else the stored ``prediction`` of that version's own run's window, when the bar is in it;
3. else the version has no forecast of the bar.

Any version, whatever its model type or feature list, is scored on exactly the same bars: its
pyfunc model reads the feature columns it was trained on, sequence models get the preceding rows
as context, and only the scored rows are executed with the candidate run's backtest settings on
the market bars the run logged with its window (``exec_*`` columns: fills, costs, funding;
:func:`huracan.evaluation.execution.bars_from_frame`).
A window logged before the ``prediction`` column existed has no stored forecasts: its versions
are scored by their registered model on the bars after ``seen_until`` only (today's rule then).

Forecasts become positions with the rule the version's run FITTED, the one serving applies (the
pickled ``rule`` artifact of its logged pyfunc model, :func:`load_rule`: e.g. the threshold chosen
on validation from the grid, a meta classifier); a model logged without one is scored with the
default threshold rule (``backtest.threshold``), and the evidence says so.
"""

from __future__ import annotations

import contextlib
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from huracan.data.ohlcv import bars_per_year, timeframe_to_timedelta
from huracan.evaluation.backtest import BacktestConfig, BacktestResult, positions_from_forecast
from huracan.evaluation.execution import backtest_config_from_params, bars_from_frame, execute
from huracan.features.build import LABEL
from huracan.timeutil import to_utc

WINDOW_ARTIFACT = "data/eval_window.parquet"
#: column of the window: the run's out-of-sample forecast of a scored bar (NaN on context rows)
PREDICTION = "prediction"
#: column of the window: the fold whose model made ``prediction`` (<NA> on context rows)
FOLD = "fold"
#: forecast sources of :func:`forecast_sources`
MODEL, STORED, NONE = "model", "stored", ""


@dataclass(frozen=True)
class EvalWindow:
    """Rows to score (``frame``, with ``split`` = ``context``/``test``), backtest settings,
    annualisation (bars per year) and ``timeframe`` (the bar length, for a rule's gap flags) of
    the run that produced them."""

    frame: pd.DataFrame
    backtest: BacktestConfig
    periods_per_year: float
    run_id: str
    timeframe: str | None = None


#: where the pyfunc model keeps the pickled fitted rule (``huracan.serving.pyfunc.save_bundle``)
RULE_ARTIFACT = "artifacts/rule.pkl"
#: a pooled model's rules, one per symbol (:mod:`huracan.serving.pooled`)
POOLED_RULES = "artifacts/rules.pkl"


@dataclass(frozen=True)
class WindowRule:
    """The rule a version is scored with: ``rule`` (a fitted :mod:`huracan.evaluation.rules`
    rule, or ``None`` for the default threshold rule), the feature columns its model reads (a
    meta rule's classifier inputs) and ``source`` (``fitted``, or why the threshold rule)."""

    rule: Any
    feature_names: tuple[str, ...] = ()
    source: str = "fitted"

    def describe(self) -> dict[str, Any]:
        """What the evidence records of it: source, kind, the fitted threshold and whether it
        was fitted flat (the threshold grid's cash option: position 0 on every bar)."""
        if self.rule is None:
            return {"source": self.source, "kind": "threshold (backtest.threshold)"}
        report = getattr(self.rule, "fit_report_", {}) or {}
        return {"source": self.source, "kind": str(getattr(self.rule, "kind", "?")),
                "threshold": report.get("threshold", getattr(self.rule, "threshold", None)),
                "chosen_on": report.get("chosen_on"),
                "flat": bool(getattr(self.rule, "flat_", False))}


def load_rule(model_uri: str, symbol: str | None = None) -> WindowRule:
    """The fitted rule a logged pyfunc model carries (its ``rule`` artifact, as serving loads
    it), with the model's input feature names; a model logged without one gives the default
    threshold rule (``rule=None``, ``source`` saying so). A pooled model
    (:mod:`huracan.serving.pooled`) carries one rule per symbol (``rules`` artifact): the rule
    of ``symbol`` (the window's market), its inputs without the ``symbol`` column."""
    from mlflow.models import get_model_info

    try:
        schema = get_model_info(model_uri).signature
        names = tuple(schema.inputs.input_names()) if schema is not None else ()
    except Exception:  # a model without a readable signature: a meta rule then has no inputs
        names = ()
    base = model_uri.rstrip("/")
    if base.startswith("models:/m-"):  # a logged model (not a registered version): its store
        with contextlib.suppress(Exception):  # unknown model id: the threshold rule, said below
            base = str(mlflow.get_logged_model(base.removeprefix("models:/"))
                       .artifact_location).rstrip("/")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{base}/{RULE_ARTIFACT}", dst_path=tmp)
        except Exception:  # MLflow raises different types per artifact store
            return _pooled_rule(base, symbol, names, tmp)
        with Path(local).open("rb") as fh:
            rule = pickle.load(fh)
    return WindowRule(rule, names, "fitted")


def _pooled_rule(base: str, symbol: str | None, names: tuple[str, ...],
                 tmp: str) -> WindowRule:
    """``symbol``'s rule from a pooled model's ``rules`` artifact (a pickled dict symbol ->
    fitted rule) at model artifact location ``base``; the default threshold rule (``source``
    saying why) when there is none."""
    none = WindowRule(None, names, "threshold: the model was logged without a fitted rule")
    if symbol is None:
        return none
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=f"{base}/{POOLED_RULES}",
                                                    dst_path=tmp)
    except Exception:  # MLflow raises different types per artifact store
        return none
    with Path(local).open("rb") as fh:
        rules = pickle.load(fh)
    if symbol not in rules:
        return WindowRule(None, names, f"threshold: the pooled model has no rule of {symbol}")
    return WindowRule(rules[symbol], tuple(n for n in names if n != "symbol"),
                      f"fitted (pooled: {symbol})")


def load_window(client: MlflowClient, run_id: str) -> EvalWindow:
    """Download a run's evaluation window and read its backtest settings from the run params.

    Raises:
        FileNotFoundError: the run has no ``data/eval_window.parquet`` artifact.
    """
    run = client.get_run(run_id)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, WINDOW_ARTIFACT, tmp)
        except Exception as exc:  # MLflow raises different types per artifact store
            raise FileNotFoundError(f"run {run_id} has no {WINDOW_ARTIFACT}: {exc}") from exc
        frame = pd.read_parquet(Path(path))
    bt = backtest_config_from_params(run.data.params)
    tf = run.data.tags.get("timeframe", "1h")
    return EvalWindow(frame, bt, bars_per_year(tf), run_id, tf)


def window_from_features(frame: pd.DataFrame, n_bars: int, context_rows: int,
                         backtest: BacktestConfig, periods_per_year: float,
                         timeframe: str | None = None) -> EvalWindow:
    """The last ``n_bars`` rows of a feature frame (index = timestamp) as an evaluation window,
    with up to ``context_rows`` earlier rows as context (used by ``registry monitor``)."""
    if n_bars < 2:
        raise ValueError(f"the evaluation window needs at least 2 bars, got {n_bars}")
    start = max(0, len(frame) - n_bars - context_rows)
    out = frame.iloc[start:].reset_index()
    n_ctx = len(out) - min(n_bars, len(frame))
    out["split"] = np.where(np.arange(len(out)) < n_ctx, "context", "test")
    return EvalWindow(out, backtest, periods_per_year, run_id="", timeframe=timeframe)


def with_scored(window: EvalWindow, keep: np.ndarray) -> EvalWindow:
    """The window with only its scored bars where ``keep`` (bool per row of ``frame``) still
    scored; the others become context rows (available as sequence context, not scored)."""
    frame = window.frame.copy()
    frame.loc[(frame["split"] == "test").to_numpy() & ~np.asarray(keep, dtype=bool),
              "split"] = "context"
    return EvalWindow(frame, window.backtest, window.periods_per_year, window.run_id,
                      window.timeframe)


def restrict_window(window: EvalWindow, after: str | pd.Timestamp | None) -> EvalWindow:
    """The window with its scored bars at or before ``after`` turned into context rows (they stay
    available as sequence context, they are no longer scored); ``None`` keeps it as it is."""
    if after is None:
        return window
    ts = pd.to_datetime(window.frame["timestamp"], utc=True)
    return with_scored(window, (ts > to_utc(after)).to_numpy())


def only_regime(window: EvalWindow, regime: str) -> EvalWindow:
    """The window with only the bars of ``regime`` scored (its ``regime`` column; the others
    become context); a window without the column scores nothing."""
    frame = window.frame
    same = (frame["regime"].astype(str) == regime).to_numpy() if "regime" in frame else \
        np.zeros(len(frame), dtype=bool)
    return with_scored(window, same)


def scored_bars(window: EvalWindow) -> int:
    """Bars of the window that are scored (``split == "test"``)."""
    return int((window.frame["split"] == "test").sum())


def stored_forecasts(window: EvalWindow) -> pd.Series | None:
    """The out-of-sample forecasts a run kept in its window: ``prediction`` of its scored bars
    by bar open time (UTC), finite values only.

    Returns:
        the series, or ``None`` for a window logged before the ``prediction`` column existed
        (compatibility: such a run's versions are scored by their registered model only).
    """
    frame = window.frame
    if PREDICTION not in frame.columns:
        return None
    scored = (frame["split"] == "test").to_numpy()
    values = frame[PREDICTION].to_numpy(dtype=np.float64)
    keep = scored & np.isfinite(values)
    index = pd.DatetimeIndex(pd.to_datetime(frame["timestamp"], utc=True))[keep]
    return pd.Series(values[keep], index=index, name=PREDICTION)


def forecast_sources(timestamps: pd.DatetimeIndex | pd.Series, seen_until: str | None,
                     stored: pd.Series | None) -> np.ndarray:
    """Per bar, where a version's out-of-sample forecast of it comes from (pure).

    Rule: :data:`MODEL` (its registered model) when the bar opens strictly after ``seen_until``
    (the last bar the version's model saw in fitting or early stopping; ``None``, a manifest
    without ``train_end``/``val_end``, counts every bar as unseen); else :data:`STORED` when
    ``stored`` (:func:`stored_forecasts` of the version's own run) holds the bar; else
    :data:`NONE`.

    Args:
        timestamps: bar open times, shape ``(n,)`` (tz-aware or UTC-naive).
        seen_until: ISO timestamp, or ``None``.
        stored: forecasts by bar open time, or ``None`` (a window without ``prediction``).

    Returns:
        object array of ``"model"``, ``"stored"`` or ``""``, shape ``(n,)``.
    """
    ts = pd.DatetimeIndex(pd.to_datetime(timestamps, utc=True))
    out = np.full(len(ts), NONE, dtype=object)
    if stored is not None and len(stored):
        held = ts.isin(pd.DatetimeIndex(pd.to_datetime(stored.index, utc=True)))
        out[held] = STORED
    if seen_until is None:
        out[:] = MODEL
    else:
        out[np.asarray(ts > to_utc(seen_until))] = MODEL
    return out


def decision_rows(scored: np.ndarray, candidate: np.ndarray,
                  champion: np.ndarray | None) -> np.ndarray:
    """The gate's decision window (pure): scored bars the candidate AND the champion (when there
    is one) both have a forecast of (sources from :func:`forecast_sources`), bool ``(n,)``."""
    keep = np.asarray(scored, dtype=bool) & (np.asarray(candidate) != NONE)
    if champion is not None:
        keep &= np.asarray(champion) != NONE
    return keep


def model_forecasts(model_uri: str, window: EvalWindow) -> np.ndarray:
    """Load ``model_uri`` (pyfunc) and forecast every row of the window (context rows feed
    sequence models), shape ``(len(frame),)``.

    Raises:
        ValueError: the window lacks a feature column the model needs.
    """
    model = mlflow.pyfunc.load_model(model_uri)
    frame = window.frame
    schema = model.metadata.get_input_schema()
    names = schema.input_names() if schema is not None else []
    missing = [c for c in names if c not in frame.columns]
    if missing:
        raise ValueError(f"evaluation window lacks feature column(s) {missing} of {model_uri}")
    return np.asarray(model.predict(frame[names] if names else frame),
                      dtype=np.float64).reshape(-1)


def combine_forecasts(timestamps: pd.DatetimeIndex | pd.Series, sources: np.ndarray,
                      model: np.ndarray | None, stored: pd.Series | None) -> np.ndarray:
    """A version's forecast per bar from its sources (pure): ``model[i]`` where the source is
    :data:`MODEL`, ``stored`` at the bar's time where :data:`STORED`, NaN elsewhere.

    Raises:
        ValueError: a bar needs the model's forecasts and ``model`` is ``None``.
    """
    src = np.asarray(sources)
    out = np.full(len(src), np.nan)
    use_model = src == MODEL
    if use_model.any():
        if model is None:
            raise ValueError("bars need the registered model's forecasts, none given")
        out[use_model] = np.asarray(model, dtype=np.float64)[use_model]
    use_stored = src == STORED
    if use_stored.any() and stored is not None:
        ts = pd.DatetimeIndex(pd.to_datetime(timestamps, utc=True))
        by_time = pd.Series(stored.to_numpy(np.float64),
                            index=pd.DatetimeIndex(pd.to_datetime(stored.index, utc=True)))
        out[use_stored] = by_time.reindex(ts[use_stored]).to_numpy()
    return out


def rule_positions(window: EvalWindow, forecasts: np.ndarray, rule: WindowRule
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``(positions, exit_reasons)`` of a fitted rule on the window's scored bars (in time
    order; a NaN forecast reads as 0), from what the rule sees there: forecasts, prices, labels,
    gap flags (a bar not one ``timeframe`` after the previous scored bar starts a new segment) and
    the model's features (shapes ``(scored bars,)``)."""
    from huracan.evaluation.rules import RuleInput
    from huracan.features.build import NEXT_RETURN

    frame = window.frame
    test = (frame["split"] == "test").to_numpy()
    rows = frame[test]
    idx = pd.DatetimeIndex(pd.to_datetime(rows["timestamp"], utc=True))
    starts = np.ones(len(idx), dtype=bool)
    if len(idx) > 1:
        step = timeframe_to_timedelta(window.timeframe).value if window.timeframe else \
            int(np.median(np.diff(idx.asi8)))
        starts[1:] = np.diff(idx.asi8) != step
    fc = np.nan_to_num(np.asarray(forecasts, dtype=np.float64).reshape(-1)[test], nan=0.0)

    def col(name: str) -> np.ndarray | None:
        return rows[name].to_numpy(np.float64) if name in rows else None

    names = [c for c in rule.feature_names if c in rows.columns]
    next_return = col(NEXT_RETURN)
    ri = RuleInput(timestamps=idx, forecast=fc,
                   next_return=np.full(len(idx), np.nan) if next_return is None else next_return,
                   label=rows[LABEL].to_numpy(np.float64), close=col("bar_close"),
                   high=col("bar_high"), low=col("bar_low"), starts=starts,
                   features=rows[names].to_numpy(np.float64)
                   if names and len(names) == len(rule.feature_names) else None)
    rp = rule.rule.positions(ri)
    return (np.asarray(rp.positions, dtype=np.float64),
            np.asarray(rp.exit_reasons, dtype=object))


def backtest_forecasts(window: EvalWindow, forecasts: np.ndarray,
                       rule: WindowRule | None = None) -> BacktestResult:
    """Execute ``forecasts`` (one per row of ``frame``) on the window's scored bars with its
    backtest settings (the scored bars concatenated in time order; a NaN forecast is flat),
    through :func:`huracan.evaluation.execution.execute` on the window's market bars
    (:func:`~huracan.evaluation.execution.bars_from_frame`: the run's logged execution, or for a
    window logged before ``next_open`` the close fill with the fee only, noted in the result's
    ``execution``). Positions come from ``rule`` (the version's fitted rule,
    :func:`load_rule`) when it holds one, else from the default threshold rule
    (``backtest.threshold``)."""
    frame = window.frame
    test = (frame["split"] == "test").to_numpy()
    pred = np.asarray(forecasts, dtype=np.float64).reshape(-1)
    bt = window.backtest
    bars = bars_from_frame(frame, bt, window.periods_per_year).take(test)
    reasons = None
    if rule is not None and rule.rule is not None:
        positions, reasons = rule_positions(window, pred, rule)
    else:
        positions = positions_from_forecast(pred[test], bt.threshold, bt.long_only)
    return execute(positions, bars, window.periods_per_year, predictions=pred[test],
                   labels=frame.loc[test, LABEL].to_numpy(np.float64), exit_reasons=reasons)


def score_model(model_uri: str, window: EvalWindow,
                rule: WindowRule | None = None) -> BacktestResult:
    """Load ``model_uri`` (pyfunc) and backtest its forecasts on the window's scored bars with
    ``rule`` (default: the rule the model carries, :func:`load_rule`).

    Raises:
        ValueError: the window lacks a feature column the model needs.
    """
    if rule is None:
        rule = load_rule(model_uri)
    return backtest_forecasts(window, model_forecasts(model_uri, window), rule)
