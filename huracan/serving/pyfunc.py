"""The logged model: an MLflow pyfunc bundling the train-only scaler, the fitted estimator and,
for serving, the run's feature spec, regime detector and fitted trading rule.

``mlflow.pyfunc.load_model(uri).predict(frame)`` takes either

- FEATURES: a DataFrame with the feature columns (one row per bar, time order, unscaled) and
  returns the forecast forward return per row (fraction), a float64 array of shape ``(n,)``;
  sequence models pad the first ``lookback - 1`` rows of a request by repeating the first row, so
  pass at least ``lookback`` rows of history for faithful forecasts; or
- RAW CANDLES: a DataFrame with ``timestamp, open, high, low, close, volume`` (detected by its
  columns: some feature column is missing and a candle column is present; see
  :mod:`huracan.serving.raw`) and returns a DataFrame per bar: ``timestamp, forecast, regime,
  position, size, leverage, sizer, registered_model, model_version, run_id``; ``size`` and
  ``leverage`` come from the production sizer ``huracan-sizer-<SYMBOL>-<tf>`` when there is one
  (looked up once, at the first raw request; 0 and 0 when its production is the cash policy;
  a sizer serving ``flat``, because nothing beat cash on its unseen bars, answers size 0),
  else ``|position|`` and 1.

Bad input raises :class:`huracan.serving.raw.InputRuleError` (an ``MlflowException`` with
``INVALID_PARAMETER_VALUE``) naming the column, row and rule: HTTP 400 under ``mlflow models
serve``, whose body is that line alone (raw candles pass the OHLCV rules of training files,
:func:`huracan.data.ohlcv.validate_ohlcv`). The estimator is stored in its library's native
format (LightGBM text, XGBoost UBJSON, Keras ``.keras``) under the ``estimator`` artifact; the
scaler is a pickled scikit-learn StandardScaler; ``serving`` is a JSON
:class:`huracan.serving.raw.ServingSpec` and ``rule`` the pickled fitted rule (both absent in
models logged before raw-candle serving existed: those answer features only).

:func:`log_model` logs it (the training pipeline's model of each run). Models logged before
this module moved here pickled the class as ``huracan.tracking.pyfunc.ForecasterPyfunc``, an
alias that keeps resolving.
"""

from __future__ import annotations

import logging
import pickle
import tempfile
import time
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from mlflow.pyfunc import PythonModel

from huracan.models.base import Forecaster
from huracan.serving.prediction_log import process_log, serving_source
from huracan.serving.raw import ServingSpec, as_frame, input_error, is_raw_candles, predict_candles
from huracan.tracking.run import pinned_requirements

log = logging.getLogger(__name__)


class ForecasterPyfunc(PythonModel):
    """pyfunc wrapper: features -> scale with the train-only scaler, ``Forecaster.predict``;
    raw candles -> :func:`huracan.serving.raw.predict_candles`, and, when
    ``HURACAN_PREDICTION_LOG`` is on, the request's newest answered bar is queued to the
    prediction log (:mod:`huracan.serving.prediction_log`; source ``serve`` under ``mlflow models
    serve``, else ``in_process``; ``latency_ms`` = the time of ``predict_candles``)."""

    def load_context(self, context: Any) -> None:
        self.estimator = Forecaster.load(context.artifacts["estimator"])
        with Path(context.artifacts["scaler"]).open("rb") as fh:
            self.scaler = pickle.load(fh)
        self.spec: ServingSpec | None = None
        self.rule: Any = None
        if "serving" in context.artifacts:
            self.spec = ServingSpec.from_json(Path(context.artifacts["serving"]).read_text())
        if "rule" in context.artifacts:
            with Path(context.artifacts["rule"]).open("rb") as fh:
                self.rule = pickle.load(fh)
        self._version: tuple[str | None] | None = None  # looked up at the first raw request
        self._sizer: tuple[Any, str | None] | None = None  # likewise

    def version(self) -> str | None:
        """The registered version holding this model (:func:`registered_version`), looked up
        once."""
        if self._version is None:
            self._version = (registered_version(self.spec),)
        return self._version[0]

    def sizer(self) -> tuple[Any, str | None]:
        """``(policy, label)`` of the production sizer of this model's symbol and timeframe
        (:func:`production_sizer`), looked up once and cached."""
        if self._sizer is None:
            self._sizer = production_sizer(self.spec)
        return self._sizer

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        frame = as_frame(model_input)
        names = list(self.estimator.feature_names_)
        if is_raw_candles(frame, names):
            if self.spec is None:
                raise input_error("this model was logged without a serving spec: send its "
                                  f"feature columns {names}", "feature_input_only")
            policy, label = self.sizer()
            return answer_candles(frame, self.spec, self.estimator, self.scaler, self.rule,
                                  self.version(), sizer=policy, sizer_label=label)
        return predict_features(frame, self.estimator, self.scaler)


def predict_features(frame: pd.DataFrame, estimator: Any, scaler: Any) -> np.ndarray:
    """The FEATURES answer: ``frame``'s ``estimator.feature_names_`` columns scaled with
    ``scaler`` and forecast, float array ``(n,)`` (forward return, fraction).

    Raises:
        InputRuleError: a feature column is missing (``required_columns``).
    """
    names = list(estimator.feature_names_)
    missing = [c for c in names if c not in frame.columns]
    if missing:
        raise input_error(f"input is missing feature column(s) {missing} (or send raw "
                          "candles: timestamp, open, high, low, close, volume)",
                          "required_columns")
    X = scaler.transform(frame[names].to_numpy(np.float64)).astype(np.float32)
    return np.asarray(estimator.predict(X))


def answer_candles(frame: pd.DataFrame, spec: ServingSpec, estimator: Any, scaler: Any,
                   rule: Any, version: str | None, *, sizer: Any = None,
                   sizer_label: str | None = None, trade: bool = True) -> pd.DataFrame:
    """:func:`huracan.serving.raw.predict_candles` (same arguments), timed, its answer handed
    to the prediction log (``latency_ms`` = the time of ``predict_candles``): the raw-candle
    path of every served forecaster (this module's and :mod:`huracan.serving.pooled`)."""
    t0 = time.perf_counter()
    answer = predict_candles(frame, spec, estimator, scaler, rule, version, sizer=sizer,
                             sizer_label=sizer_label, trade=trade)
    _log_answer(spec, frame, answer, (time.perf_counter() - t0) * 1e3)
    return answer


def registered_version(spec: ServingSpec | None) -> str | None:
    """The registered version holding the model of ``spec`` (``spec.registered_model`` versions
    whose run is ``spec.run_id``; the newest when several), looked up in the registry of
    ``MLFLOW_TRACKING_URI``; None when it cannot be told (no spec or run, no registry, not
    registered)."""
    if spec is None or not spec.run_id:
        return None
    try:
        from mlflow.tracking import MlflowClient

        versions = MlflowClient().search_model_versions(
            f"name='{spec.registered_model}' and run_id='{spec.run_id}'")
        if versions:
            return str(max(int(v.version) for v in versions))
    except Exception as exc:  # degrade: answer without the version
        log.warning("registered version of run %s not found: %s", spec.run_id, exc)
    return None


def production_sizer(spec: ServingSpec | None) -> tuple[Any, str | None]:
    """``(policy, label)`` of the production sizer of ``spec``'s symbol and timeframe
    (``huracan-sizer-<SYMBOL>-<tf>@production`` in the registry of ``MLFLOW_TRACKING_URI``):
    the :class:`huracan.sizing.serve.ReplayPolicy` its run chose to serve (tag
    ``serve_policy``: ``ppo`` or a baseline) and ``"<name>/<version>:<policy>"``;
    ``(None, None)`` without a spec, when there is none or the registry cannot be reached (the
    answer then falls back to ``size = |position|``, ``leverage = 1``)."""
    if spec is None:
        return None, None
    try:
        return _production_sizer(spec)
    except Exception as exc:  # degrade: answer without the sizer
        log.warning("production sizer of %s %s not loaded: %s", spec.symbol, spec.timeframe, exc)
    return None, None


def _log_answer(spec: ServingSpec, frame: pd.DataFrame, answer: pd.DataFrame,
                latency_ms: float) -> None:
    """Hand the answer to the prediction log when ``HURACAN_PREDICTION_LOG`` turns it on
    (:func:`huracan.serving.prediction_log.process_log`): queued, written by its background
    thread; never raises into the request."""
    try:
        plog = process_log()
        if plog is None or answer.empty:
            return
        plog.submit(frame.copy(), answer, {
            "source": serving_source(), "symbol": spec.symbol, "timeframe": spec.timeframe,
            "latency_ms": latency_ms})
    except Exception as exc:  # the log must never break serving
        log.warning("prediction log: answer not logged: %s", exc)


def _production_sizer(spec: Any) -> tuple[Any, str | None]:
    """The production sizer of ``spec``'s symbol and timeframe (see
    :meth:`ForecasterPyfunc.sizer`); ``(None, None)`` when the registry has no such model or
    alias; ``("cash", "<name>/<version>:cash")`` when its production is the cash policy
    (:mod:`huracan.registry.cash`: the answer's size and leverage are then 0).

    Raises:
        mlflow.exceptions.MlflowException: the registry cannot be reached (or fails otherwise).
        ValueError: a baseline is served but the model has no training run to read its fee from.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from huracan.evaluation.evidence import CASH
    from huracan.registry.cash import is_cash
    from huracan.registry.promotion import PRODUCTION
    from huracan.sizing.data import registered_sizer_name
    from huracan.sizing.serve import load_policy

    client = MlflowClient()
    name = registered_sizer_name(spec.symbol, spec.timeframe)
    try:
        prod = client.get_model_version_by_alias(name, PRODUCTION)
    except MlflowException as exc:  # no such model or alias: no sizer; anything else raises
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        prod = None
    if prod is None or not prod.run_id:
        log.info("no production sizer %s: size = |position|, leverage = 1", name)
        return None, None
    if is_cash(prod):  # the sizer's production is the cash policy: size 0
        log.info("production sizer %s is cash: size 0, leverage 0", name)
        return CASH, f"{name}/{prod.version}:{CASH}"
    run = client.get_run(prod.run_id)
    chosen = run.data.tags.get("serve_policy", "ppo")
    fee, threshold = 0.0, 0.0
    if chosen == "flat":  # nothing beat cash on the sizer's unseen bars: size 0
        policy = load_policy(client, run, chosen, fee=fee, threshold=threshold,
                             timeframe=spec.timeframe)
        label = f"{name}/{prod.version}:flat"
        log.info("production sizer %s: %s", label, run.data.tags.get("serve_reason", ""))
        return policy, label
    if chosen != "ppo":  # the baselines trade at the forecaster's fee and rule threshold
        from huracan.rebuild import run_settings

        if not spec.run_id:
            raise ValueError("the model has no training run to read its fee from")
        settings = run_settings(client, spec.run_id)
        fee, threshold = settings.backtest.fee, settings.backtest.threshold
    policy = load_policy(client, run, chosen, fee=fee, threshold=threshold,
                         timeframe=spec.timeframe)
    label = f"{name}/{prod.version}:{chosen}"
    log.info("production sizer %s", label)
    return policy, label


def save_bundle(estimator: Forecaster, scaler: Any, directory: Path,
                spec: Any = None, rule: Any = None) -> dict[str, str]:
    """Write the estimator and scaler (and the serving spec, a
    :class:`huracan.serving.raw.ServingSpec`, and the fitted rule, when given) under
    ``directory``; returns pyfunc ``artifacts`` paths."""
    est_dir = estimator.save(directory / "estimator")
    scaler_path = directory / "scaler.pkl"
    with scaler_path.open("wb") as fh:
        pickle.dump(scaler, fh)
    out = {"estimator": str(est_dir), "scaler": str(scaler_path)}
    if spec is not None:
        spec_path = directory / "serving.json"
        spec_path.write_text(spec.to_json())
        out["serving"] = str(spec_path)
    if rule is not None:
        rule_path = directory / "rule.pkl"
        with rule_path.open("wb") as fh:
            pickle.dump(rule, fh)
        out["rule"] = str(rule_path)
    return out


def log_model(estimator: Forecaster, scaler: Any, example: pd.DataFrame,
              serving: tuple[Any, Any] | None = None) -> str:
    """Log the scaler + estimator as a pyfunc model named ``model`` with a signature (inferred
    from ``example`` and its prediction, made here); returns the model URI (``models:/m-...``).

    ``serving`` = ``(spec, fitted rule)`` (:func:`huracan.serving.bundle.serving_bundle`) makes
    the model answer raw candles too (:mod:`huracan.serving.raw`). The input schema still names
    the feature columns (registry evaluation reads them), but it is marked as not enforced by
    MLflow (``is_signature_from_type_hint``): the model checks its input itself, either form,
    and MLflow's column enforcement would otherwise drop the candle columns. Consequence for
    ``mlflow models serve``: requests wrap the table in ``{"inputs": ...}`` (see README).

    No ``input_example`` is stored: MLflow would reload the model to validate it as a serving
    input (0.5-0.7 s per Keras run), which the prediction above already checks; the signature
    still names and types every input column."""
    import warnings

    spec, rule = serving if serving is not None else (None, None)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*An input example was not provided")
        artifacts = save_bundle(estimator, scaler, Path(tmp), spec, rule)
        X = scaler.transform(example[estimator.feature_names_].to_numpy(np.float64))
        prediction = estimator.predict(X.astype(np.float32))
        signature = infer_signature(example, prediction)
        if spec is not None:
            signature._is_signature_from_type_hint = True  # the model validates its input
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=ForecasterPyfunc(),
            artifacts=artifacts,
            signature=signature,
            pip_requirements=pinned_requirements(estimator.requirements),
        )
    return str(info.model_uri)
