"""The logged POOLED model: one MLflow pyfunc answering raw candles for each of its symbols.

A pooled model (:class:`huracan.models.pooled.PooledModel`) is one estimator fitted on the rows
of several symbols; per symbol it has a train-only scaler (``scaler_for``), a Forecaster-like
view that appends the symbol's encoding (``estimator_for``), a :class:`ServingSpec` (the run's
feature config, warm-up, regime detector fitted on that symbol's rows) and a trading rule fitted
on that symbol's validation predictions; and a TRADE FLAG: whether the symbol cleared the cash
floor (the gate's rule, :mod:`huracan.registry.cash`, applied per symbol by the pooled job).

``mlflow.pyfunc.load_model(uri).predict(frame)`` takes the request of a single-symbol model
(:mod:`huracan.serving.pyfunc`) plus a ``symbol`` column naming which of the model's symbols
the bars are (``BTC/USDT``, or compact ``BTCUSDT``; one symbol per request, the same value on
every row):

- RAW CANDLES (``timestamp, open, high, low, close, volume`` + that symbol's family and context
  columns): the answer of :func:`huracan.serving.raw.predict_candles` with that symbol's spec,
  estimator view, scaler and rule, i.e. a DataFrame with
  :data:`huracan.data.candle_request.OUTPUT_COLUMNS` (``registered_model`` = the pool's,
  ``huracan-pool-<PAIR>-...-<tf>``); sized by the production sizer of that symbol
  (``huracan-sizer-<SYMBOL>-<tf>``) when there is one. A symbol whose trade flag is False answers
  its forecasts and regimes with ``position``, ``size`` and ``leverage`` 0 on every bar (the cash
  floor; ``sizer`` = ``cash_floor``). With ``HURACAN_PREDICTION_LOG`` on, the answer goes to the
  prediction log under that symbol, as the single-symbol model's does.
- FEATURES (every input column of the model, unscaled): that symbol's forecasts, a float64 array
  of shape ``(n,)``.

A request without the ``symbol`` column, with an empty or unknown symbol, or with more than one
symbol raises :class:`huracan.data.candle_request.InputRuleError` (one line naming the column
``symbol`` and the model's symbols; HTTP 400 under ``mlflow models serve``). Everything else is
checked as the single-symbol model checks it.

Artifacts: ``pooled`` (the directory of ``PooledModel.save``: the estimator in its library's
native format), ``serving`` (JSON: symbols, trade flags, one ServingSpec per symbol) and ``rules``
(the pickled fitted rules, by symbol). :func:`log_pooled_model` logs it.
"""

from __future__ import annotations

import json
import pickle
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from mlflow.pyfunc import PythonModel

from huracan.features.naming import SYMBOL_COLUMN, compact
from huracan.models.pooled import PooledModel
from huracan.serving.pyfunc import (
    answer_candles,
    predict_features,
    production_sizer,
    registered_version,
)
from huracan.serving.raw import ServingSpec, as_frame, input_error, is_raw_candles
from huracan.tracking.run import pinned_requirements


def request_symbol(frame: pd.DataFrame, symbols: list[str]) -> str:
    """The one symbol of a pooled request: the value of its ``symbol`` column, matched against
    ``symbols`` as written (``BTC/USDT``) or compact (``BTCUSDT``, case-insensitive).

    Raises:
        InputRuleError: rule ``symbol_column`` (no ``symbol`` column, or an empty/null value),
            ``one_symbol`` (several symbols in one request) or ``known_symbol`` (not one of
            ``symbols``); the message names the column ``symbol`` and the known symbols.
    """
    known = f"the model's symbols are {list(symbols)}"
    if SYMBOL_COLUMN not in frame.columns:
        raise input_error(f"input is missing column '{SYMBOL_COLUMN}': a pooled model answers "
                          f"one symbol per request; {known}", "symbol_column")
    sent = frame[SYMBOL_COLUMN].reset_index(drop=True)
    empty = sent.isna().to_numpy() | (sent.astype(str).str.strip() == "").to_numpy()
    if len(sent) == 0 or empty.any():
        row = int(np.flatnonzero(empty)[0]) if empty.any() else 0
        raise input_error(f"column '{SYMBOL_COLUMN}' row {row}: no symbol given; {known}",
                          "symbol_column")
    values = list(dict.fromkeys(str(v).strip() for v in sent))
    if len(values) > 1:
        raise input_error(f"column '{SYMBOL_COLUMN}': one symbol per request, got {values}; "
                          f"{known}", "one_symbol")
    by_compact = {compact(s): s for s in symbols}
    found = values[0] if values[0] in symbols else by_compact.get(compact(values[0]))
    if found is None:
        raise input_error(f"column '{SYMBOL_COLUMN}': {values[0]!r} is not a symbol of this "
                          f"model; {known}", "known_symbol")
    return found


class PooledPyfunc(PythonModel):
    """pyfunc of a pooled model (see the module docstring). Built by MLflow from the logged
    artifacts (:meth:`load_context`) or in process from the fitted parts (:meth:`of`)."""

    def load_context(self, context: Any) -> None:
        model = PooledModel.load(context.artifacts["pooled"])
        state = json.loads(Path(context.artifacts["serving"]).read_text())
        with Path(context.artifacts["rules"]).open("rb") as fh:
            rules = pickle.load(fh)
        specs = {s: ServingSpec.from_json(json.dumps(v)) for s, v in state["specs"].items()}
        self._set(model, specs, rules, {s: bool(v) for s, v in state["trade"].items()})

    @classmethod
    def of(cls, model: Any, specs: Mapping[str, ServingSpec], rules: Mapping[str, Any],
           trade: Mapping[str, bool]) -> PooledPyfunc:
        """The pyfunc of fitted parts, in process (what :meth:`load_context` rebuilds).

        Raises:
            ValueError: ``specs``, ``rules`` or ``trade`` do not cover exactly
                ``model.symbols``.
        """
        out = cls()
        out._set(model, specs, rules, trade)
        return out

    def _set(self, model: Any, specs: Mapping[str, ServingSpec], rules: Mapping[str, Any],
             trade: Mapping[str, bool]) -> None:
        self.symbols: list[str] = [str(s) for s in model.symbols]
        for what, given in (("serving specs", specs), ("rules", rules), ("trade flags", trade)):
            if set(given) != set(self.symbols):
                raise ValueError(f"{what} are for {sorted(given)}, the pooled model's symbols "
                                 f"are {self.symbols}")
        self.model = model
        self.specs = {s: specs[s] for s in self.symbols}
        self.rules = {s: rules[s] for s in self.symbols}
        self.trade = {s: bool(trade[s]) for s in self.symbols}
        self._views: dict[str, tuple[Any, Any]] = {}
        self._version: tuple[str | None] | None = None  # looked up at the first raw request
        self._sizers: dict[str, tuple[Any, str | None]] = {}  # likewise, per symbol

    def parts(self, symbol: str) -> tuple[Any, Any]:
        """``(estimator view, scaler)`` of ``symbol`` (made once)."""
        if symbol not in self._views:
            self._views[symbol] = (self.model.estimator_for(symbol),
                                   self.model.scaler_for(symbol))
        return self._views[symbol]

    def version(self) -> str | None:
        """The registered version holding this model (one for all its symbols), looked up once
        (:func:`huracan.serving.pyfunc.registered_version`)."""
        if self._version is None:
            self._version = (registered_version(self.specs[self.symbols[0]]),)
        return self._version[0]

    def sizer(self, symbol: str) -> tuple[Any, str | None]:
        """The production sizer of ``symbol`` (:func:`huracan.serving.pyfunc.production_sizer`),
        looked up once per symbol."""
        if symbol not in self._sizers:
            self._sizers[symbol] = production_sizer(self.specs[symbol])
        return self._sizers[symbol]

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        frame = as_frame(model_input)
        symbol = request_symbol(frame, self.symbols)
        bars = frame.drop(columns=[SYMBOL_COLUMN])
        estimator, scaler = self.parts(symbol)
        if not is_raw_candles(bars, list(estimator.feature_names_)):
            return predict_features(bars, estimator, scaler)
        trade = self.trade[symbol]
        policy, label = self.sizer(symbol) if trade else (None, None)
        return answer_candles(bars, self.specs[symbol], estimator, scaler, self.rules[symbol],
                              self.version(), sizer=policy, sizer_label=label, trade=trade)


def log_pooled_model(model: PooledModel, bundles: Mapping[str, tuple[ServingSpec, Any]],
                     trade: Mapping[str, bool], example: pd.DataFrame, *,
                     registered_model: str | None = None) -> str:
    """Log a pooled model as a pyfunc named ``model`` (:class:`PooledPyfunc`) in the active
    MLflow run; returns the model URI (``models:/m-...``).

    Args:
        model: the fitted :class:`huracan.models.pooled.PooledModel` (``symbols``,
            ``estimator_for``, ``scaler_for``, ``save``).
        bundles: per symbol, ``(ServingSpec, fitted rule)`` as
            :func:`huracan.serving.bundle.serving_bundle` makes them for that symbol's feature
            set, last fold and market bars (each spec's ``symbol`` is set to its key).
        trade: per symbol, whether it trades (False: the cash floor, position 0 on every bar).
        example: some unscaled feature rows (the model's ``feature_names`` columns; a
            ``symbol`` column, else the first symbol's), for the signature: its input schema
            names the feature columns and ``symbol`` (not enforced by MLflow: the model checks
            its input itself, features or raw candles, as
            :func:`huracan.serving.pyfunc.log_model` explains).
        registered_model: the pool's registered name (``huracan-pool-...``) written into every
            spec (the answer's ``registered_model``, the version lookup); None keeps the specs'.

    Raises:
        ValueError: ``bundles`` or ``trade`` do not cover exactly ``model.symbols``; the specs
            name different registered models or runs.
    """
    symbols = [str(s) for s in model.symbols]
    specs = {s: replace(spec, symbol=s, registered_model=registered_model or
                        spec.registered_model) for s, (spec, _) in bundles.items()}
    rules = {s: rule for s, (_, rule) in bundles.items()}
    named = sorted({(spec.registered_model, str(spec.run_id)) for spec in specs.values()})
    if len(named) > 1:
        raise ValueError(f"the serving specs name several registered models / runs {named}: a "
                         "pooled model is one registered model of one run (give "
                         "registered_model)")
    pyfunc = PooledPyfunc.of(model, specs, rules, trade)  # checks the symbols
    rows = example.copy()
    if SYMBOL_COLUMN not in rows.columns:
        rows[SYMBOL_COLUMN] = symbols[0]
    prediction = np.concatenate([
        np.asarray(pyfunc.predict(None, part), dtype=np.float64).reshape(-1)
        for _, part in rows.groupby(SYMBOL_COLUMN, sort=False)])
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*An input example was not provided")
        root = Path(tmp)
        model.save(root / "pooled")
        (root / "serving.json").write_text(json.dumps({
            "symbols": symbols, "trade": pyfunc.trade,
            "specs": {s: asdict(specs[s]) for s in symbols}}, indent=1, default=str))
        with (root / "rules.pkl").open("wb") as fh:
            pickle.dump(pyfunc.rules, fh)
        signature = infer_signature(rows, prediction)
        signature._is_signature_from_type_hint = True  # the model validates its input
        info = mlflow.pyfunc.log_model(
            name="model", python_model=PooledPyfunc(),
            artifacts={"pooled": str(root / "pooled"), "serving": str(root / "serving.json"),
                       "rules": str(root / "rules.pkl")},
            signature=signature,
            pip_requirements=pinned_requirements(model.base_.requirements))
    return str(info.model_uri)
