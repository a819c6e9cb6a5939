"""A raw-candle request to a served model: its columns, its rules, its one-line error.

What every served Huracan model (the forecaster, :class:`huracan.serving.pyfunc.ForecasterPyfunc`,
and the ``cash`` policy, :class:`huracan.registry.cash_model.CashPyfunc`) reads before it
answers: the request as a table (:func:`as_frame`), raw candles or not (:func:`is_raw_candles`),
the candles checked (:func:`validate_candles`: the OHLCV rules training applies to its files,
:func:`huracan.data.ohlcv.validate_ohlcv`, plus the request's own), every broken rule an
:class:`InputRuleError` (HTTP 400 under ``mlflow models serve``, the line alone), and the model's
:class:`ServingSpec`. It sits below the registry, which registers the cash model, and below
:mod:`huracan.serving.raw` (which re-exports it and answers the request).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

#: the candle columns of a raw request, in order
CANDLE_COLUMNS: tuple[str, ...] = ("timestamp", "open", "high", "low", "close", "volume")


#: the answer's columns, in order
OUTPUT_COLUMNS: tuple[str, ...] = ("timestamp", "forecast", "regime", "position", "size",
                                   "leverage", "sizer", "registered_model", "model_version",
                                   "run_id")


class InputRuleError(MlflowException):
    """A request that breaks ``rule``: ``INVALID_PARAMETER_VALUE``, answered by
    ``mlflow models serve`` with HTTP 400 whose JSON body carries the one-line message alone.

    MLflow's scoring server (``mlflow/pyfunc/scoring_server/__init__.py``, ``invocations``)
    catches an ``MlflowException`` raised by ``predict``, REWRITES its ``message`` to ``"Failed to
    predict data '<the whole parsed request>'. Error: <message>"`` and answers
    ``serialize_as_json()`` with :meth:`get_http_status_code` (400 for
    ``INVALID_PARAMETER_VALUE``); any other exception becomes a 400 with a generic message and the
    stack trace. Neither can be switched off (MLflow 3.17), so this error serializes the message
    it was raised with: the body never echoes the request (a 300-bar request got a 24 KB body)
    and holds no stack trace. In-process callers see the same ``message``.

    Attributes:
        rule: the rule's name (``high_ge_low``, ``min_bars``...).
        rule_message: ``"<what, where> [rule: <name>]"`` on one line.
    """

    def __init__(self, message: str, rule: str) -> None:
        line = " ".join(f"{message} [rule: {rule}]".split())  # one line, whatever was quoted
        super().__init__(line, error_code=INVALID_PARAMETER_VALUE)
        self.rule = rule
        self.rule_message = line

    def serialize_as_json(self) -> str:
        """The HTTP error body: MLflow's fields with ``message`` = :attr:`rule_message` (not the
        server's rewrite) and ``rule``."""
        body = json.loads(super().serialize_as_json())
        body["message"] = self.rule_message
        body["rule"] = self.rule
        return json.dumps(body)


def input_error(message: str, rule: str) -> InputRuleError:
    """An :class:`InputRuleError` (HTTP 400 when served, the message alone) naming ``rule``."""
    return InputRuleError(message, rule)


@dataclass
class ServingSpec:
    """What the model needs, besides the estimator, scaler and rule, to answer raw candles.

    Attributes:
        symbol, timeframe: of the run (``BTC/USDT``, ``1h``).
        registered_model: ``huracan-<SYMBOL>-<tf>``, the registry name its versions get.
        run_id: the training run that logged the model.
        features: :class:`huracan.features.build.FeatureConfig` fields of the run.
        feature_names: the estimator's input columns, in order.
        family_columns: input columns that are market-structure family features: the request
            carries them per bar (empty for price-only models).
        context_columns: ``ctx_<PAIR>_close`` request columns, one per context symbol of the
            model (``features.context``): the close of that market's bar with the same open
            time, NaN (or null) when it is missing; the ``ctx_<PAIR>_*`` features are rebuilt
            from them (:mod:`huracan.features.context`). Empty for a model without context
            (specs logged before this field load with it empty).
        warmup_bars: bars before the first complete feature row of a gap-free run.
        lookback: the estimator's window (1 for tree models).
        rule_kind: ``threshold``, ``barrier`` or ``meta``.
        regime_detector: the saved detector state (``regime/detector.json``) or None
            (trained with ``regime=none``).
    """

    symbol: str
    timeframe: str
    registered_model: str
    run_id: str | None
    features: dict[str, Any]
    feature_names: list[str]
    family_columns: list[str] = field(default_factory=list)
    warmup_bars: int = 0
    lookback: int = 1
    rule_kind: str = "threshold"
    regime_detector: dict[str, Any] | None = None
    context_columns: list[str] = field(default_factory=list)

    @property
    def min_bars(self) -> int:
        """Bars a request needs for one answered bar: warm-up plus the model's window."""
        return int(self.warmup_bars) + int(self.lookback)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, default=str)

    @classmethod
    def from_json(cls, text: str) -> ServingSpec:
        data = json.loads(text)
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def as_frame(model_input: Any) -> pd.DataFrame:
    """The request as a DataFrame: a DataFrame, ``{"columns": [...], "data": [[...]]}`` (the
    ``dataframe_split`` layout), ``{column: [values]}`` or a list of records."""
    if isinstance(model_input, pd.DataFrame):
        return model_input
    try:
        if isinstance(model_input, dict) and "data" in model_input:
            return pd.DataFrame(model_input["data"], columns=model_input.get("columns"),
                                index=model_input.get("index"))
        return pd.DataFrame(model_input)
    except (ValueError, TypeError) as exc:
        raise input_error(f"the request is not a table of bars ({exc})", "table_input") from None


def is_raw_candles(frame: pd.DataFrame, feature_names: list[str]) -> bool:
    """True when ``frame`` is a raw-candle request: it lacks some feature column and carries at
    least one candle column (``timestamp, open, high, low, close, volume``). A frame with every
    feature column is a feature request, whatever else it carries."""
    cols = set(map(str, frame.columns))
    if all(c in cols for c in feature_names):
        return False
    return bool(cols & set(CANDLE_COLUMNS))


def _timestamps(raw: pd.Series) -> pd.DatetimeIndex:
    try:
        if pd.api.types.is_numeric_dtype(raw):
            return pd.DatetimeIndex(pd.to_datetime(raw, unit="ms", utc=True))
        return pd.DatetimeIndex(pd.to_datetime(raw, utc=True, format="ISO8601"))
    except (ValueError, TypeError) as exc:
        raise input_error(f"column 'timestamp': cannot read bar open times ({exc}); send "
                          "ISO-8601 strings or epoch milliseconds", "timestamp_format") from None


def validate_candles(frame: pd.DataFrame, spec: ServingSpec) -> pd.DataFrame:
    """Check a raw-candle request and return it normalised (UTC timestamps, float prices).

    The request's own rules first: ``required_columns`` (every candle column, family column
    and context column present), ``timestamp_format`` (ISO-8601 text, naive read as UTC,
    datetimes or epoch milliseconds), ``numeric_values`` (numbers; no infinity in a candle
    column; a context close is a positive finite price or null/NaN, a missing bar of that
    market). Then the SAME
    rules training applies to a candle file (:func:`huracan.data.ohlcv.validate_ohlcv`, the first
    broken one reported): ``not_null``, ``unique_timestamp``, ``increasing_timestamp``,
    ``positive_price``, ``non_negative_volume``, ``high_ge_low``, ``high_ge_open_close``,
    ``low_le_open_close``, ``on_timeframe_grid``. Last ``min_bars`` (at least ``spec.min_bars``
    bars). Rows are counted from 0 in the order sent.

    Raises:
        InputRuleError: ``INVALID_PARAMETER_VALUE``, one line naming the column, row and rule
            (``... [rule: <name>]``).
    """
    from huracan.data.ohlcv import DataValidationError, validate_ohlcv

    needed = [*CANDLE_COLUMNS, *spec.family_columns, *spec.context_columns]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise input_error(f"input is missing column(s) {missing}: raw candles need "
                          f"{list(needed)}", "required_columns")
    columns: dict[str, Any] = {"timestamp": _timestamps(frame["timestamp"].reset_index(drop=True))}
    for col in (*CANDLE_COLUMNS[1:], *spec.family_columns, *spec.context_columns):
        sent = frame[col].reset_index(drop=True)
        values = pd.to_numeric(sent, errors="coerce").to_numpy(np.float64)
        bad = np.isnan(values) & sent.notna().to_numpy()
        if col in CANDLE_COLUMNS:
            bad |= np.isinf(values)
        elif col in spec.context_columns:
            bad |= np.isinf(values) | (values <= 0)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            value = sent.iloc[row]
            value = value.item() if isinstance(value, np.generic) else value
            what = "a positive finite price (null for a missing bar)" \
                if col in spec.context_columns else "a finite number"
            raise input_error(f"column '{col}' row {row}: {value!r} is not {what}",
                              "numeric_values")
        columns[col] = values
    try:
        checked = validate_ohlcv(pd.DataFrame({c: columns[c] for c in CANDLE_COLUMNS}),
                                 "request", spec.timeframe)
    except DataValidationError as err:
        raise input_error(str(err).removesuffix(f" [rule: {err.rule}]"), err.rule) from None
    for col in (*spec.family_columns, *spec.context_columns):
        checked[col] = columns[col]
    if len(checked) < spec.min_bars:
        raise input_error(too_few_bars(len(checked), spec), "min_bars")
    return checked


def too_few_bars(n: int, spec: ServingSpec) -> str:
    """The ``min_bars`` rule's message: ``n`` bars given, how many the model needs and why."""
    return (f"{n} bar(s) given; the model needs at least {spec.min_bars} consecutive "
            f"{spec.timeframe} bars (feature warm-up {spec.warmup_bars} + lookback "
            f"{spec.lookback}) to answer one bar")
