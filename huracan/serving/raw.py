"""Forecast, regime and position per bar from RAW candles: what the served model answers.

The logged pyfunc (:class:`huracan.serving.pyfunc.ForecasterPyfunc`) carries a
:class:`ServingSpec` (artifact ``serving``: the run's feature and label config, the model's input
columns, the warm-up, the regime detector fitted on the last fold's train rows) and the trading
rule fitted on the last fold's validation predictions (artifact ``rule``). Given candles it

1. checks them (:func:`validate_candles`: the OHLCV rules training applies to its files,
   :func:`huracan.data.ohlcv.validate_ohlcv`, plus the request's own; every error is an
   :class:`InputRuleError`, one line naming the column, row and rule, as ``... [rule: <name>]``,
   which ``mlflow models serve`` answers with HTTP 400 and that line alone);
2. rebuilds the price features exactly as training does
   (:func:`huracan.features.build.build_features` with ``keep_unlabelled=True``, so the latest bar
   is forecast although its label is unknown), the higher-timeframe ``htf_<tf>_*`` columns
   included (resampled from the request's candles, :mod:`huracan.features.timeframes`), and the
   context ``ctx_<PAIR>_*`` columns from the request's ``ctx_<PAIR>_close`` columns
   (``ServingSpec.context_columns``, :mod:`huracan.features.context`); market-structure family
   features are NOT rebuilt
   from raw sources: the request carries them as extra per-bar columns (``ServingSpec.
   family_columns``, as :func:`huracan.features.families.build_family_features` makes them);
3. scales with the train-only scaler and forecasts (sequence models never window across a gap);
4. classifies the volatility regime of each bar with the saved detector (24h realised
   volatility against the train quantiles, or the HMM's filtered state;
   :mod:`huracan.regime.detection`), ``extreme`` on a liquidation cascade when the features
   include one;
5. turns the forecasts into positions with the fitted rule (:mod:`huracan.evaluation.rules`),
   starting flat at the first answered bar;
6. sizes them: when a production sizer ``huracan-sizer-<SYMBOL>-<tf>`` is given (looked up by
   the pyfunc), its chosen policy (PPO or a baseline) is replayed over the answered bars from a
   flat account at the first one (:func:`huracan.sizing.serve.replay`, the code of
   ``huracan size``; a liquidation in the replay opens a new flat account on the next bar) and
   gives ``size`` and ``leverage`` per bar; funding is taken as zero (the funding source is not
   part of the model); without a sizer ``size = |position|`` and ``leverage = 1``.

Every step reads bars ``<= t`` only for bar ``t`` (tested: appending bars never changes the
answer for earlier bars, sizer included), except the ``barrier`` rule, whose exits need later
prices: its ``position`` is NaN here. A rule fitted flat (no threshold of its grid beat cash on
validation, :mod:`huracan.evaluation.rules`) answers position 0 on every bar, barrier included;
so does a symbol under the cash floor (``trade=False``: a pooled model's symbol that did not clear
cash, :mod:`huracan.serving.pooled`), with size and leverage 0.

The request's contract (:data:`CANDLE_COLUMNS`, :data:`OUTPUT_COLUMNS`, :class:`ServingSpec`,
:func:`validate_candles`, :class:`InputRuleError`) lives in :mod:`huracan.data.candle_request`,
below the registry (the cash model reads it too), and is re-exported here.

Request: a DataFrame with columns ``timestamp`` (bar open time: ISO-8601 string, datetime, or
epoch milliseconds; UTC), ``open, high, low, close, volume`` (+ ``family_columns``), one row per
bar of the model's timeframe, strictly increasing (gaps allowed: features restart after one),
consistent as a training file's candles must be (low <= open, close <= high; prices > 0).
Answer: one row per bar from the first bar whose features and sequence window are complete
(``warmup_bars + lookback - 1`` bars after the start of each gap-free run), columns
:data:`OUTPUT_COLUMNS`.
"""

from __future__ import annotations

import math
from dataclasses import fields, replace
from typing import Any

import numpy as np
import pandas as pd

from huracan.data.candle_request import (  # the request's contract, re-exported here
    CANDLE_COLUMNS,
    OUTPUT_COLUMNS,
    InputRuleError,
    ServingSpec,
    as_frame,
    input_error,
    is_raw_candles,
    too_few_bars,
    validate_candles,
)

__all__ = ["CANDLE_COLUMNS", "OUTPUT_COLUMNS", "InputRuleError", "ServingSpec", "as_frame",
           "context_of", "input_error", "is_raw_candles", "measure_warmup", "predict_candles",
           "price_config", "validate_candles"]

#: bars of the synthetic series the feature warm-up is measured on
_WARMUP_PROBE_BARS = 3000
#: the ``sizer`` column of an answer under the cash floor (``predict_candles(trade=False)``)
CASH_FLOOR = "cash_floor"


def price_config(features: dict[str, Any]) -> Any:
    """The run's :class:`FeatureConfig` without families (the price part rebuilt here: the own
    and higher-timeframe features from the request's candles; the context features from its
    ``ctx_<PAIR>_close`` columns when :func:`predict_candles` passes them)."""
    from huracan.features.build import FeatureConfig

    names = {f.name for f in fields(FeatureConfig)}
    cfg = FeatureConfig(**{k: v for k, v in features.items() if k in names})
    return replace(cfg, families=[], family_params={})


def context_of(candles: pd.DataFrame, spec: ServingSpec) -> dict[str, pd.DataFrame]:
    """Context symbol -> its closes (``timestamp, close``; bars with a null close left out,
    i.e. missing) from the request's ``ctx_<PAIR>_close`` columns (``spec.context_columns``)."""
    from huracan.features.naming import context_prefix

    out = {}
    for symbol in spec.features.get("context") or []:
        col = f"{context_prefix(symbol)}close"
        if col in spec.context_columns:
            close = candles[col].to_numpy(np.float64)
            keep = ~np.isnan(close)
            out[symbol] = pd.DataFrame({"timestamp": candles["timestamp"].to_numpy()[keep],
                                        "close": close[keep]})
    return out


def measure_warmup(features: dict[str, Any], timeframe: str, seed: int = 0) -> int:
    """Bars before the first complete price-feature row (own and higher-timeframe columns; the
    context columns are left out), measured by building the features on a seeded synthetic
    random walk of gap-free candles starting at a UTC midnight (the longest window decides it,
    e.g. 168 with the default volume z-score, about 34 days with ``timeframes=[1d]``).

    Raises:
        ValueError: the warm-up exceeds the probe (3,000 bars).
    """
    from huracan.data.ohlcv import timeframe_to_timedelta
    from huracan.features.build import build_features

    rng = np.random.default_rng(seed)
    n = _WARMUP_PROBE_BARS
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    spread = np.abs(rng.normal(0.0, 0.005, n)) * close
    ts = pd.date_range("2020-01-01", periods=n, freq=timeframe_to_timedelta(timeframe), tz="UTC")
    candles = pd.DataFrame({"timestamp": ts, "open": open_,
                            "high": np.maximum(open_, close) + spread,
                            "low": np.minimum(open_, close) - spread, "close": close,
                            "volume": rng.uniform(10.0, 100.0, n)})
    fs = build_features(candles, timeframe, replace(price_config(features), context=[],
                                                     context_paths={}), keep_unlabelled=True)
    complete = fs.frame[fs.feature_names].notna().all(axis=1).to_numpy()
    if not complete.any():
        raise ValueError(f"the feature warm-up exceeds the {n}-bar probe")
    return int(ts.get_loc(pd.DatetimeIndex(fs.frame.index)[int(np.argmax(complete))]))


def _regimes(spec: ServingSpec, candles: pd.DataFrame, rows: pd.DatetimeIndex,
             cascade: np.ndarray | None) -> np.ndarray:
    from huracan.regime.detection import (
        UNKNOWN,
        HMMRegime,
        VolatilityRegime,
        apply_cascades,
        realized_volatility_24h,
        regime_features,
        segment_starts,
    )

    state = spec.regime_detector
    if not state or state.get("kind") in (None, "none"):
        return np.full(len(rows), None, dtype=object)
    close = pd.Series(candles["close"].to_numpy(np.float64),
                      index=pd.DatetimeIndex(candles["timestamp"]))
    seg = segment_starts(close.index, spec.timeframe)
    if state.get("kind") == "hmm":
        hmm = HMMRegime.from_dict(state)
        labels = hmm.classify(regime_features(close, spec.timeframe, segment_start=seg))[0]
    else:
        det = VolatilityRegime.from_dict(state)
        labels = det.classify(realized_volatility_24h(close, spec.timeframe, segment_start=seg))
    out = pd.Series(np.asarray(labels, dtype=object), index=close.index).reindex(rows)
    regimes = out.fillna(UNKNOWN).to_numpy(dtype=object)
    if cascade is not None:
        known = regimes != UNKNOWN
        regimes = np.where(known, apply_cascades(regimes, np.nan_to_num(cascade) > 0), regimes)
    return regimes


def predict_candles(frame: pd.DataFrame, spec: ServingSpec, estimator: Any, scaler: Any,
                    rule: Any, version: str | None = None, sizer: Any = None,
                    sizer_label: str | None = None, trade: bool = True) -> pd.DataFrame:
    """Answer a raw-candle request (see the module docstring).

    Args:
        frame: the request (columns :data:`CANDLE_COLUMNS` + ``spec.family_columns`` +
            ``spec.context_columns``).
        spec: the model's :class:`ServingSpec`.
        estimator, scaler: the fitted forecaster and its train-only scaler.
        rule: the fitted trading rule (None: positions NaN).
        version: the registered version of this model (None when unknown).
        sizer: the production sizer's policy (:class:`huracan.sizing.serve.ReplayPolicy`),
            ``"cash"`` (its production is the cash policy: ``size = leverage = 0``), or None:
            ``size = |position|``, ``leverage = 1``.
        sizer_label: what the ``sizer`` column says, e.g. ``huracan-sizer-BTCUSDT-1h/2:ppo``
            (None without a sizer).
        trade: False = the cash floor (the model did not clear cash for this symbol, e.g. a
            pooled model's symbol, :mod:`huracan.serving.pooled`): ``position``, ``size`` and
            ``leverage`` 0 on every bar (no exposure; ``rule`` and ``sizer`` are not used, the
            ``sizer`` column says ``cash_floor``), forecasts and regimes as usual.

    Returns:
        DataFrame with :data:`OUTPUT_COLUMNS`: ``timestamp`` (bar open time, UTC), ``forecast``
        (forward return over the label horizon, fraction, float64), ``regime`` (str, ``unknown``
        in the 24h warm-up; None without a detector), ``position`` (the rule's, +1 long / -1
        short / 0 flat / fraction for a sized meta rule; NaN for the barrier rule), ``size``
        (fraction of capital in [0, 1]) and ``leverage`` (in [1, max_leverage]) of the sizer,
        for the side of the forecast (its exposure is ``sign(forecast) x size x leverage``, units
        of equity), or without a sizer ``|position|`` and 1.0 (NaN with a NaN position),
        ``sizer`` (``sizer_label``), ``registered_model``, ``model_version`` (str or None),
        ``run_id``.

    Raises:
        MlflowException: ``INVALID_PARAMETER_VALUE`` for a request breaking a rule
            (:func:`validate_candles`), or too few complete bars after a gap.
    """
    from huracan.evaluation.rules import RuleInput
    from huracan.features.build import build_features
    from huracan.stages import gap_starts

    candles = validate_candles(frame, spec)
    try:
        fs = build_features(candles[list(CANDLE_COLUMNS)], spec.timeframe,
                            price_config(spec.features), keep_unlabelled=True,
                            context=context_of(candles, spec))
    except ValueError:
        raise input_error(too_few_bars(len(candles), spec) + " (no gap-free run is long enough)",
                          "min_bars") from None
    rows = fs.frame
    if spec.family_columns:
        extra = candles.set_index("timestamp")[list(spec.family_columns)]
        rows = rows.join(extra, how="left")
    names = list(spec.feature_names)
    idx = pd.DatetimeIndex(rows.index)
    starts = gap_starts(idx, spec.timeframe)
    X = np.asarray(scaler.transform(rows[names].to_numpy(np.float64)), dtype=np.float32)
    forecast = np.asarray(estimator.predict(X, starts=starts), dtype=np.float64).reshape(-1)
    # rows whose sequence window is complete: at least lookback-1 rows of the same run before
    run_pos = np.arange(len(idx)) - np.maximum.accumulate(np.where(starts, np.arange(len(idx)), 0))
    keep = run_pos >= int(spec.lookback) - 1
    if not keep.any():
        raise input_error(too_few_bars(len(candles), spec) + " (no gap-free run is long enough)",
                          "min_bars")
    rows, idx, forecast = rows[keep], idx[keep], forecast[keep]
    kept_starts = gap_starts(idx, spec.timeframe)
    if not trade:  # the cash floor: no exposure, whatever the rule and sizer say
        sizer, sizer_label = "cash", CASH_FLOOR
        position = np.zeros(len(idx))
    elif rule is not None and getattr(rule, "flat_", False):
        position = np.zeros(len(idx))  # fitted flat: nothing beat cash on validation
    elif rule is None or spec.rule_kind == "barrier":
        position = np.full(len(idx), np.nan)
    else:
        nan = np.full(len(idx), np.nan)
        window = RuleInput(timestamps=idx, forecast=forecast, next_return=nan, label=nan,
                           close=rows["bar_close"].to_numpy(np.float64),
                           high=rows["bar_high"].to_numpy(np.float64),
                           low=rows["bar_low"].to_numpy(np.float64), starts=kept_starts,
                           features=rows[names].to_numpy(np.float64))
        position = np.asarray(rule.positions(window).positions, dtype=np.float64)
    cascade = rows["cascade_indicator"].to_numpy(np.float64) \
        if "cascade_indicator" in rows else None
    regimes = _regimes(spec, candles, idx, cascade)
    n = len(idx)
    if sizer is None:
        size = np.abs(position)
        leverage = np.where(np.isnan(position), math.nan, 1.0)
    elif isinstance(sizer, str) and sizer == "cash":  # the production sizer is cash: no exposure
        size, leverage = np.zeros(len(idx)), np.zeros(len(idx))
    else:
        size, leverage = _sized(sizer, idx, forecast, rows, candles, spec.timeframe, regimes)
    return pd.DataFrame({
        "timestamp": idx,
        "forecast": forecast,
        "regime": regimes,
        "position": position,
        "size": size,
        "leverage": leverage,
        "sizer": np.full(n, sizer_label if sizer is not None else None, dtype=object),
        "registered_model": np.full(n, spec.registered_model, dtype=object),
        "model_version": np.full(n, version, dtype=object),
        "run_id": np.full(n, spec.run_id, dtype=object),
    }, columns=list(OUTPUT_COLUMNS)).reset_index(drop=True)


def _sized(policy: Any, idx: pd.DatetimeIndex, forecast: np.ndarray, rows: pd.DataFrame,
           candles: pd.DataFrame, timeframe: str,
           regimes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(size, leverage)`` per answered bar: ``policy`` replayed over them from a flat account
    (:func:`huracan.sizing.serve.replay`, restarting after a liquidation) on the execution
    model's bars of the sizer run (:meth:`huracan.sizing.serve.ReplayPolicy.market`), the
    latest bar's and each pre-gap bar's next return unknown (0), no funding; a ``flat`` policy
    answers size 0."""
    from huracan.sizing.serve import replay, sizing_inputs

    data = sizing_inputs(idx, forecast, rows["next_return"].to_numpy(np.float64), candles,
                         timeframe, regimes=regimes if policy.needs_regime else None,
                         bars=policy.market(idx, candles))
    out = replay(policy, data, restart_after_liquidation=True)
    return (out["size"].to_numpy(np.float64).copy(),
            out["leverage"].to_numpy(np.float64).copy())
