"""Whom the paper loop asks: :class:`Production` (the protocol) and
:class:`RegisteredProduction` (the registered model, in process). The HTTP endpoint
(``--url``) is :mod:`huracan.paper.http`.

:class:`RegisteredProduction` loads the pyfunc of ``models:/<name>@<alias>`` (or a fixed
version) and answers raw candles through its python model's own path
(:func:`huracan.serving.raw.predict_candles` with the model's estimator, scaler, rule, spec and
production sizer), NOT through ``pyfunc.predict`` (which carries the prediction-log hook: the
paper loop writes its own prediction rows, in the transaction of the order). Before each answer
it re-resolves the alias (one registry call, at most every ``recheck_s`` seconds) and reloads
the model when the alias moved.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, runtime_checkable

import pandas as pd

from huracan.registry.promotion import PRODUCTION


@runtime_checkable
class Production(Protocol):
    """What the paper loop asks.

    Attributes:
        label: who answers (``models:/huracan-BTCUSDT-1h@production``, or a masked URL).
        warmup_bars: bars a request needs before its first answered bar (feature warm-up plus
            the model's window minus one, in bars of the timeframe).
    """

    label: str
    warmup_bars: int

    def answer(self, candles: pd.DataFrame) -> pd.DataFrame:
        """Rows of :data:`huracan.serving.raw.OUTPUT_COLUMNS`, one per answered bar of the
        request (raw candles, :data:`huracan.serving.raw.CANDLE_COLUMNS`)."""
        ...


def refuse_context(spec: Any, label: str) -> None:
    """Refuse a model that reads other markets' closes (``spec.context_columns``,
    :mod:`huracan.features.context`): the paper loop sends one market's OHLCV only.

    Raises:
        ValueError: one line naming the model and the columns it would need.
    """
    columns = list(getattr(spec, "context_columns", None) or [])
    if columns:
        raise ValueError(f"{label} reads context symbols (request columns {columns}); the paper "
                         "loop sends one market's OHLCV only and cannot run a context model")


@contextmanager
def _tracking(uri: str | None) -> Iterator[None]:
    """``MLFLOW_TRACKING_URI`` set to ``uri`` for the block (the pyfunc's sizer and version
    look-ups read the global one)."""
    import mlflow

    if not uri:
        yield
        return
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)


class RegisteredProduction:
    """The registered model ``name`` at ``alias`` (default ``production``) or a fixed
    ``version``, answering in process.

    Args:
        client: an ``MlflowClient`` of the tracking/registry store.
        name: the registered model (``huracan-BTCUSDT-1h``).
        alias: the alias followed (ignored with ``version``).
        version: a fixed version (no alias following).
        recheck_s: seconds between two alias look-ups (0: before every answer).
        clock: the clock of ``recheck_s`` (injectable for tests).

    Raises:
        LookupError: the alias or version does not exist (one line naming it).
        ValueError: the model answers features only (logged without a serving spec), or it
            reads context symbols (:func:`refuse_context`).
    """

    def __init__(self, client: Any, name: str, alias: str = PRODUCTION,
                 version: str | int | None = None, *, recheck_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.name = name
        self.alias = alias
        self.fixed = None if version is None else str(version)
        self.recheck_s = float(recheck_s)
        self._clock = clock
        self._checked = -float("inf")
        self.version: str = ""
        self.run_id: str = ""
        self._model: Any = None
        self._settings: Any = None
        self.warmup_bars = 0
        self._load(self._resolve())

    @property
    def label(self) -> str:
        """``models:/<name>@<alias>`` or ``models:/<name>/<version>``."""
        return (f"models:/{self.name}/{self.fixed}" if self.fixed
                else f"models:/{self.name}@{self.alias}")

    def _resolve(self) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            if self.fixed:
                return self.client.get_model_version(self.name, self.fixed)
            return self.client.get_model_version_by_alias(self.name, self.alias)
        except MlflowException as exc:
            what = f"version {self.fixed}" if self.fixed else f"alias @{self.alias}"
            raise LookupError(f"registered model {self.name} has no {what} ("
                              f"{str(exc).splitlines()[0] if str(exc) else exc.error_code})"
                              ) from None

    def _load(self, mv: Any) -> None:
        import mlflow

        from huracan.serving.raw import measure_warmup

        with _tracking(self.client.tracking_uri):
            model = mlflow.pyfunc.load_model(f"models:/{self.name}/{mv.version}")
            wrapper = model.unwrap_python_model()
            spec = getattr(wrapper, "spec", None)
            if spec is None:
                raise ValueError(f"{self.name} v{mv.version} was logged without a serving spec:"
                                 " it answers feature columns, not raw candles")
            refuse_context(spec, f"{self.name} v{mv.version}")
            wrapper.sizer()  # look the production sizer up once, in this registry
        measured = measure_warmup(spec.features, spec.timeframe)
        self.warmup_bars = max(int(spec.warmup_bars), measured) + int(spec.lookback) - 1
        self._model = wrapper
        self.version, self.run_id = str(mv.version), str(mv.run_id or "")
        self._settings = None
        self._checked = self._clock()

    def refresh(self) -> bool:
        """Re-resolve the alias (at most every ``recheck_s``); reload when it moved. Returns
        True when a new version was loaded."""
        if self.fixed or self._clock() - self._checked < self.recheck_s:
            return False
        mv = self._resolve()
        self._checked = self._clock()
        if str(mv.version) == self.version:
            return False
        self._load(mv)
        return True

    @property
    def spec(self) -> Any:
        """The model's :class:`huracan.serving.raw.ServingSpec`."""
        return self._model.spec

    @property
    def settings(self) -> Any:
        """The typed settings of the version's training run
        (:func:`huracan.rebuild.run_settings`), read once per loaded version."""
        if self._settings is None:
            from huracan.rebuild import run_settings

            self._settings = run_settings(self.client, self.run_id)
        return self._settings

    def answer(self, candles: pd.DataFrame) -> pd.DataFrame:
        """Answer raw candles (:func:`huracan.serving.raw.predict_candles`) with the current
        version (the alias re-resolved first).

        Raises:
            huracan.serving.raw.InputRuleError: candles breaking a request rule.
        """
        from huracan.serving.raw import predict_candles

        self.refresh()
        w = self._model
        with _tracking(self.client.tracking_uri):
            policy, label = w.sizer()
        return predict_candles(candles, w.spec, w.estimator, w.scaler, w.rule, self.version,
                               sizer=policy, sizer_label=label)
