"""Score a registered model version on an evaluation window (the candidate's test bars).

The window is the ``data/eval_window.parquet`` artifact every training run logs: the test bars plus
up to 256 preceding rows (unscaled features, ``label``, ``next_return``, ``split``). Any version,
whatever its model type or feature list, is scored on exactly the same bars: its pyfunc model
reads the feature columns it was trained on, sequence models get the preceding rows as context,
and only the ``test`` rows are backtested with the candidate run's backtest settings.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from huracan.data.ohlcv import bars_per_year
from huracan.evaluation.backtest import BacktestConfig, BacktestResult, run_backtest
from huracan.features.build import LABEL, NEXT_RETURN

WINDOW_ARTIFACT = "data/eval_window.parquet"


@dataclass(frozen=True)
class EvalWindow:
    """Rows to score (``frame``, with ``split`` = ``context``/``test``), backtest settings and
    annualisation (bars per year) of the run that produced them."""

    frame: pd.DataFrame
    backtest: BacktestConfig
    periods_per_year: float
    run_id: str


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
    p = run.data.params
    bt = BacktestConfig(threshold=float(p.get("backtest.threshold", 0.0)),
                        fee=float(p.get("backtest.fee", BacktestConfig.fee)),
                        long_only=p.get("backtest.long_only", "False") == "True")
    return EvalWindow(frame, bt, bars_per_year(run.data.tags.get("timeframe", "1h")), run_id)


def window_from_features(frame: pd.DataFrame, n_bars: int, context_rows: int,
                         backtest: BacktestConfig, periods_per_year: float) -> EvalWindow:
    """The last ``n_bars`` rows of a feature frame (index = timestamp) as an evaluation window,
    with up to ``context_rows`` earlier rows as context (used by ``registry monitor``)."""
    if n_bars < 2:
        raise ValueError(f"the evaluation window needs at least 2 bars, got {n_bars}")
    start = max(0, len(frame) - n_bars - context_rows)
    out = frame.iloc[start:].reset_index()
    n_ctx = len(out) - min(n_bars, len(frame))
    out["split"] = np.where(np.arange(len(out)) < n_ctx, "context", "test")
    return EvalWindow(out, backtest, periods_per_year, run_id="")


def restrict_window(window: EvalWindow, after: str | pd.Timestamp | None) -> EvalWindow:
    """The window with its scored bars at or before ``after`` turned into context rows (they stay
    available as sequence context, they are no longer scored); ``None`` keeps it as it is."""
    if after is None:
        return window
    frame = window.frame.copy()
    early = (frame["split"] == "test") & (pd.to_datetime(frame["timestamp"], utc=True)
                                          <= pd.Timestamp(after))
    frame.loc[early, "split"] = "context"
    return EvalWindow(frame, window.backtest, window.periods_per_year, window.run_id)


def only_regime(window: EvalWindow, regime: str) -> EvalWindow:
    """The window with only the bars of ``regime`` scored (its ``regime`` column; the others
    become context); a window without the column scores nothing."""
    frame = window.frame.copy()
    other = frame["regime"].astype(str) != regime if "regime" in frame else \
        pd.Series(True, index=frame.index)
    frame.loc[(frame["split"] == "test") & other, "split"] = "context"
    return EvalWindow(frame, window.backtest, window.periods_per_year, window.run_id)


def scored_bars(window: EvalWindow) -> int:
    """Bars of the window that are scored (``split == "test"``)."""
    return int((window.frame["split"] == "test").sum())


def score_model(model_uri: str, window: EvalWindow) -> BacktestResult:
    """Load ``model_uri`` (pyfunc) and backtest its forecasts on the window's test bars.

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
    pred = np.asarray(model.predict(frame[names] if names else frame),
                      dtype=np.float64).reshape(-1)
    test = (frame["split"] == "test").to_numpy()
    rows = frame[test]
    return run_backtest(pd.DatetimeIndex(rows["timestamp"]), pred[test],
                        rows[NEXT_RETURN].to_numpy(), rows[LABEL].to_numpy(), window.backtest,
                        window.periods_per_year)
