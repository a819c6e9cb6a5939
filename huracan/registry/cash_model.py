"""The built-in ``cash`` policy as a served model: position 0 on every bar, and why.

A registered model ``huracan-<SYMBOL>-<tf>`` holds at most one version whose model is
:class:`CashPyfunc` (tag ``huracan.policy=cash``, :mod:`huracan.registry.cash` registers it).
``production`` points at it when nothing beats cash or a rollback had nothing to return to, so
``mlflow models serve -m models:/huracan-X-1h@production`` keeps answering, flat.

``mlflow.pyfunc.load_model(uri).predict(frame)`` takes either

- RAW CANDLES (the frame carries at least one of ``open, high, low, close, volume``): the same
  request and input rules as the forecaster (:func:`huracan.data.candle_request.validate_candles`,
  ``InputRuleError`` / HTTP 400 naming the rule), and answers one row per bar SENT (no feature
  warm-up) with :data:`CASH_OUTPUT_COLUMNS`: the forecaster's columns
  (:data:`huracan.data.candle_request.OUTPUT_COLUMNS`) with ``forecast``, ``position``, ``size`` and
  ``leverage`` 0, ``regime`` and ``sizer`` None, plus ``reason``: why production is cash (the
  version's ``huracan.cash_reason`` tag, the reason recorded when production last moved to it,
  read from the registry of ``MLFLOW_TRACKING_URI`` at most every :data:`REASON_TTL_S` seconds;
  :data:`DEFAULT_REASON` when the registry cannot be read); or
- anything else (a feature frame): forecasts 0.0, a float64 array of shape ``(n,)``.

It imports numpy, pandas and MLflow only (the estimator libraries are never loaded). It lives
in the registry, which registers it (:func:`huracan.registry.cash.ensure_cash_version`); cash
versions registered before it moved here pickled it as ``huracan.serving.cash.CashPyfunc``, an
alias that keeps resolving.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from huracan.data.candle_request import (
    CANDLE_COLUMNS,
    OUTPUT_COLUMNS,
    ServingSpec,
    as_frame,
    validate_candles,
)

log = logging.getLogger(__name__)

#: the version tag saying a registered version is a built-in policy (value ``cash``)
POLICY_TAG = "huracan.policy"
#: the version tag holding why production (last) went to cash
REASON_TAG = "huracan.cash_reason"
#: the raw-candle answer's columns, in order
CASH_OUTPUT_COLUMNS: tuple[str, ...] = (*OUTPUT_COLUMNS, "reason")
DEFAULT_REASON = "production is cash: no model beats cash"
#: seconds a looked-up reason is reused before the registry is asked again
REASON_TTL_S = 30.0


def is_candle_request(frame: pd.DataFrame) -> bool:
    """True when ``frame`` carries at least one of ``open, high, low, close, volume`` (no feature
    column of a Huracan model has these names)."""
    return bool(set(map(str, frame.columns)) & set(CANDLE_COLUMNS[1:]))


def cash_answer(frame: pd.DataFrame, *, registered_model: str, timeframe: str,
                version: str | None, run_id: str | None, reason: str) -> pd.DataFrame:
    """The cash policy's answer to a raw-candle request: one row per bar sent.

    Args:
        frame: ``timestamp, open, high, low, close, volume`` per bar of ``timeframe``.
        registered_model, version, run_id: what the answer names (the cash version and its run).
        reason: why production is cash.

    Returns:
        DataFrame with :data:`CASH_OUTPUT_COLUMNS`: ``timestamp`` (UTC), ``forecast``,
        ``position``, ``size``, ``leverage`` 0.0, ``regime`` and ``sizer`` None, the names, and
        ``reason``.

    Raises:
        huracan.data.candle_request.InputRuleError: the request breaks a candle rule (the
            forecaster's :func:`~huracan.data.candle_request.validate_candles`; at least 1 bar).
    """
    spec = ServingSpec(symbol="", timeframe=timeframe, registered_model=registered_model,
                       run_id=run_id, features={}, feature_names=[], warmup_bars=0, lookback=1)
    candles = validate_candles(frame, spec)
    n = len(candles)
    zero = np.zeros(n, dtype=np.float64)
    none = np.full(n, None, dtype=object)
    return pd.DataFrame({
        "timestamp": pd.DatetimeIndex(candles["timestamp"]),
        "forecast": zero, "regime": none, "position": zero.copy(), "size": zero.copy(),
        "leverage": zero.copy(), "sizer": none.copy(),
        "registered_model": np.full(n, registered_model, dtype=object),
        "model_version": np.full(n, version, dtype=object),
        "run_id": np.full(n, run_id, dtype=object),
        "reason": np.full(n, reason, dtype=object),
    }, columns=list(CASH_OUTPUT_COLUMNS)).reset_index(drop=True)


class CashPyfunc(PythonModel):
    """pyfunc of the ``cash`` policy (see the module docstring). Its ``model_config`` names the
    ``registered_model``, ``timeframe`` and ``run_id`` (the cash run)."""

    def load_context(self, context: Any) -> None:
        cfg = dict(context.model_config or {})
        self.registered_model = str(cfg.get("registered_model", ""))
        self.timeframe = str(cfg.get("timeframe", "1h"))
        self.run_id: str | None = cfg.get("run_id")
        self._looked_up: tuple[float, str | None, str] | None = None

    def lookup(self) -> tuple[str | None, str]:
        """``(version, reason)``: this model's registered version (the newest of
        ``registered_model`` whose run is ``run_id``) and its ``huracan.cash_reason`` tag, read
        from the registry of ``MLFLOW_TRACKING_URI`` at most every :data:`REASON_TTL_S` s;
        ``(None, DEFAULT_REASON)`` when it cannot be read."""
        now = time.monotonic()
        if self._looked_up is not None and now - self._looked_up[0] < REASON_TTL_S:
            return self._looked_up[1], self._looked_up[2]
        version, reason = None, DEFAULT_REASON
        try:
            from mlflow.tracking import MlflowClient

            found = MlflowClient().search_model_versions(
                f"name='{self.registered_model}' and run_id='{self.run_id}'")
            if found:
                mv = max(found, key=lambda v: int(v.version))
                version, reason = str(mv.version), str(mv.tags.get(REASON_TAG) or DEFAULT_REASON)
        except Exception as exc:  # degrade: answer cash with the default reason
            log.warning("cash reason of %s not read: %s", self.registered_model, exc)
        self._looked_up = (now, version, reason)
        return version, reason

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        frame = as_frame(model_input)
        if not is_candle_request(frame):
            return np.zeros(len(frame), dtype=np.float64)
        version, reason = self.lookup()
        return cash_answer(frame, registered_model=self.registered_model,
                           timeframe=self.timeframe, version=version, run_id=self.run_id,
                           reason=reason)
