"""Which model should trade SYMBOL right now, and how sure are we?

:func:`select` answers it from the registry and the newest data:

1. the regime at the last complete bar (at or before ``at``), classified by the detector saved
   with the registered model (``regime/detector.json`` of the run behind the regime map, so the
   thresholds / HMM parameters are those the per-regime choice was made with); for ``hmm`` with the
   filtered probability of the chosen state; a liquidation cascade at that bar (when the run's
   features include the liquidation family) forces ``extreme``;
2. the version holding the ``regime-<name>`` alias, with why (evidence in that regime, or the
   product's fallback mapping, from the registered model's map:
   :func:`~huracan.regime.registry.current_map`) and its exposure factor; when the alias is
   unset (its gate was skipped or rejected and no earlier holder exists),
   ``production`` at the regime's exposure; a regime the map sends to cash (no candidate beat
   cash on that regime's bars) answers ``cash``: position 0, with the map's reason; a holder
   that is the ``cash`` policy (:mod:`huracan.registry.cash`) answers exposure 0 and why
   (without a regime map and with a cash production there is no detector: regime ``unknown``,
   exposure 0);
3. with ``rank_by``, instead: the version with the best value of a logged metric (``max_drawdown``
   lowest, anything else highest unless told), read in the current regime
   (``regime/<name>/<window>_<metric>``; ``<window>_<metric>__regime_<name>`` on runs
   logged before issue 26) when the version's run has enough trades there
   (``min_trades``), else over its whole selection window.

The CLI is ``huracan select BTC/USDT --timeframe 1h [--at TIME] [--json] [--rank-by METRIC]``.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from huracan.evaluation.evidence import CASH
from huracan.regime.detection import (
    UNKNOWN,
    HMMRegime,
    VolatilityRegime,
    apply_cascades,
    realized_volatility_24h,
    regime_features,
    segment_starts,
)
from huracan.regime.registry import ALIAS_PREFIX, current_map
from huracan.regime.selection import LOWER_IS_BETTER
from huracan.registry.cash import cash_reason, is_cash
from huracan.settings import SelectionSettings
from huracan.tracking.names import read_metric, regime_metric

DETECTOR_ARTIFACT = "regime/detector.json"


class SelectionError(RuntimeError):
    """Nothing to select: no registered model, no production version, no detector, no data."""


@dataclass
class LiveSelection:
    """The answer of :func:`select`.

    Attributes:
        symbol, timeframe, registered_model: what was asked.
        regime: regime of the last complete bar (``low``/``normal``/``high``/``extreme`` or
            ``unknown`` during warm-up or after a gap).
        probability: ``hmm``: filtered probability of that state (0..1); None otherwise.
        detector: ``quantile`` (volatility thresholds) or ``hmm``.
        volatility: 24h realised volatility of that bar (per-bar fraction, not annualised).
        last_bar: open time of that bar (UTC); ``at``: the time asked for (None = now).
        version, model_type, run_id, alias: the chosen model version and the alias it holds
            (``regime-high``, ``production``; None when ranking by a metric); in a cash
            regime: version, run_id and alias None, model_type ``cash``.
        exposure: position multiplier in [0, 1] (``regime.extreme_exposure`` for the fallback in
            ``extreme``; 0 in a cash regime or under a cash holder).
        source: ``evidence``, ``fallback``, ``production`` (alias unset), ``rank`` or ``cash``
            (a cash regime, or the alias or production is the cash policy).
        reason: why, in words (for a cash regime: the candidate's net return and PSR on the
            regime's bars against ``registry.min_psr``).
        metric, metric_value: with ``rank_by``: the metric and the chosen version's value.
        position: 0.0 in a cash regime (hold nothing); None otherwise (the model's forecast
            decides the position).
    """

    symbol: str
    timeframe: str
    registered_model: str
    regime: str
    probability: float | None
    detector: str
    volatility: float | None
    last_bar: str
    at: str | None
    version: str | None
    model_type: str | None
    run_id: str | None
    alias: str | None
    exposure: float
    source: str
    reason: str
    metric: str | None = None
    metric_value: float | None = None
    position: float | None = None
    #: the candles the regime was classified from (the prediction log's inputs; not printed)
    inputs: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "inputs"}

    def describe(self) -> str:
        """A few human lines (the CLI's default output)."""
        prob = "" if self.probability is None else f" (p={self.probability:.2f})"
        vol = "" if self.volatility is None else f", 24h volatility {self.volatility:.4%}/bar"
        why = self.reason if self.reason.startswith(self.source) else \
            f"{self.source}: {self.reason}"
        model = (f"model: cash: position {self.position:g} (trade nothing)"
                 if self.source == CASH and self.position is not None else
                 f"model: v{self.version} {self.model_type or '?'}"
                 f"{'' if self.alias is None else f' [{self.alias}]'}, exposure {self.exposure:g}")
        lines = [f"{self.registered_model}: regime {self.regime}{prob} at bar {self.last_bar} "
                 f"({self.detector} detector{vol})", model, f"why: {why}"]
        if self.metric is not None:
            lines.append(f"{self.metric}: {self.metric_value}")
        return "\n".join(lines)


def _alias(client: Any, name: str, alias: str) -> Any | None:
    try:
        return client.get_model_version_by_alias(name, alias)
    except Exception:  # mlflow raises when the alias is unset
        return None


def _detector_run(client: Any, name: str, regime_map: dict[str, Any]) -> Any:
    """The version whose run's detector classifies: a regime-map version (all candidates of the
    sweep share the data and split, so the same detector), else ``production``."""
    for entry in regime_map.values():
        for key in ("version", "candidate_version"):
            if entry.get(key) is not None:
                return client.get_model_version(name, str(entry[key]))
    prod = _alias(client, name, "production")
    if prod is None:
        raise SelectionError(f"{name} has no regime map and no production version")
    return prod


def load_detector(client: Any, run_id: str) -> VolatilityRegime | HMMRegime:
    """The detector saved with ``run_id`` (``regime/detector.json``).

    Raises:
        SelectionError: the run logged no detector (trained with ``regime=none``).
    """
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, DETECTOR_ARTIFACT, tmp)
        except Exception:
            raise SelectionError(f"run {run_id} has no {DETECTOR_ARTIFACT}: trained with "
                                 "regime=none; retrain with regime=volatility or regime=hmm"
                                 ) from None
        state = json.loads(Path(path).read_text())
    if state.get("kind") == "hmm":
        return HMMRegime.from_dict(state)
    return VolatilityRegime.from_dict(state)


def classify_last(detector: VolatilityRegime | HMMRegime, close: pd.Series, timeframe: str,
                  cascade: pd.Series | None = None) -> tuple[str, float | None, float | None,
                                                             pd.Timestamp]:
    """Regime of the last bar of ``close`` (indexed by bar open time, UTC): ``(regime,
    probability or None, 24h volatility or None, bar open time)``; reads only these bars."""
    idx = pd.DatetimeIndex(close.index)
    starts = segment_starts(idx, timeframe)
    prob: float | None = None
    vol_series = realized_volatility_24h(close, timeframe, segment_start=starts)
    if isinstance(detector, HMMRegime):
        names, p = detector.classify(regime_features(close, timeframe, segment_start=starts))
        prob = None if not np.isfinite(p[-1]) else float(p[-1])
    else:
        names = detector.classify(vol_series.to_numpy())
    regime = str(names[-1])
    if cascade is not None and regime != UNKNOWN:
        flag = cascade.reindex(idx[-1:]).fillna(0.0).to_numpy(np.float64) > 0
        regime = str(apply_cascades(np.asarray([regime], dtype=object), flag)[0])
    vol = float(vol_series.iloc[-1])
    return regime, prob, (vol if math.isfinite(vol) else None), idx[-1]


def _metric_value(run: Any, metric: str, regime: str, min_trades: int) -> tuple[float, str]:
    """The run's ``metric`` in ``regime`` when it has ``min_trades`` trades there, else over its
    whole selection window; NaN when not logged."""
    m = run.data.metrics
    window = str(run.data.params.get("objective", run.data.tags.get("objective", "")))
    windows = [window.split("_", 1)[0]] if window else []
    windows += [w for w in ("oos", "val", "test") if w not in windows]
    for w in windows:
        key = regime_metric(w, metric, regime)
        value = read_metric(m, key)  # a past run: ``<w>_<metric>__regime_<regime>``
        trades = read_metric(m, regime_metric(w, "n_trades", regime), 0.0)
        if value is not None and trades is not None and trades >= min_trades:
            return value, key
    for w in windows:
        if f"{w}_{metric}" in m:
            return float(m[f"{w}_{metric}"]), f"{w}_{metric}"
    return math.nan, ""


def select(symbol: str, timeframe: str, at: str | pd.Timestamp | None = None, *, client: Any,
           engine: Any = None, data: str | Path | None = None, rank_by: str | None = None,
           lowest: bool | None = None,
           min_trades: int = SelectionSettings.min_trades) -> LiveSelection:
    """The model that should trade ``symbol`` at ``timeframe`` now (or at ``at``).

    Args:
        symbol, timeframe: e.g. ``BTC/USDT``, ``1h``; the registered model is
            ``huracan-<SYMBOL>-<timeframe>``.
        at: classify the last bar that closed at or before this time (UTC); None = the data's
            last bar.
        client: an ``mlflow.tracking.MlflowClient`` of the registry.
        engine: brain-store engine (liquidation / funding sources of a run trained with
            market-structure features); None: the run's own ``db_url``.
        data: OHLCV file with the newest candles (default: the file the run trained on).
        rank_by: a logged metric (``max_drawdown``, ``sharpe``...): pick the version with its
            best value instead of the regime alias.
        lowest: rank lowest first (default: True for ``max_drawdown``, else False).
        min_trades: trades a version needs in the regime for its per-regime value to count.

    Returns:
        :class:`LiveSelection`.

    Raises:
        SelectionError: no registered model / production version / detector, no bar at or before
            ``at``, or no version with ``rank_by`` logged.
        huracan.data.ohlcv.DataValidationError: the data file breaks a rule.
    """
    from huracan.registry.promotion import registered_model_name

    name = registered_model_name(symbol, timeframe)
    try:
        registered = client.get_registered_model(name)
    except Exception:
        raise SelectionError(f"no registered model {name}: train {symbol} {timeframe} first"
                             ) from None
    regime_map: dict[str, Any] = current_map(client, registered.name)
    prod = _alias(client, name, "production")
    if is_cash(prod) and rank_by is None and not regime_map:  # no detector to classify with
        return LiveSelection(
            symbol=symbol, timeframe=timeframe, registered_model=name, regime=UNKNOWN,
            probability=None, detector="none", volatility=None, last_bar="-",
            at=None if at is None else str(at), version=str(prod.version), model_type=CASH,
            run_id=prod.run_id, alias="production", exposure=0.0, source=CASH,
            reason=f"production is cash (position 0): {cash_reason(prod)}", position=0.0)
    ref = _detector_run(client, name, regime_map)
    detector = load_detector(client, ref.run_id)
    close, cascade, when, candles = _closes(client, ref.run_id, symbol, timeframe, at,
                                            engine=engine, data=data)
    out = _selected(client, name, detector, close, cascade, when, regime_map, rank_by=rank_by,
                    lowest=lowest, min_trades=min_trades,
                    base={"symbol": symbol, "timeframe": timeframe, "registered_model": name})
    out.inputs = candles[pd.DatetimeIndex(candles["timestamp"]) <= close.index[-1]]
    return out


def _selected(client: Any, name: str, detector: Any, close: pd.Series, cascade: Any,
              when: Any, regime_map: dict[str, Any], *, rank_by: str | None,
              lowest: bool | None, min_trades: int, base: dict[str, Any]) -> LiveSelection:
    """:func:`select`'s answer once the closes are read."""
    regime, prob, vol, last = classify_last(detector, close, base["timeframe"], cascade)
    entry = regime_map.get(regime, {})
    exposure = float(entry.get("exposure", 1.0))
    base = {
        **base, "regime": regime, "probability": prob,
        "detector": "hmm" if isinstance(detector, HMMRegime) else "quantile",
        "volatility": vol, "last_bar": str(last),
        "at": None if when is None else str(when)}
    if rank_by is not None:
        return _ranked(client, name, base, regime, rank_by, lowest, min_trades, exposure)
    if regime != UNKNOWN and entry.get("model") == CASH:
        return LiveSelection(**base, version=None, model_type=CASH, run_id=None, alias=None,
                             exposure=0.0, source=CASH,
                             reason=str(entry.get("reason") or f"regime {regime} maps to cash"),
                             position=0.0)
    return _alias_holder(client, name, base, regime, regime_map, exposure)


def _closes(client: Any, run_id: str, symbol: str, timeframe: str,
            at: str | pd.Timestamp | None, *, engine: Any, data: str | Path | None
            ) -> tuple[pd.Series, pd.Series | None, pd.Timestamp | None, pd.DataFrame]:
    """``(close, cascade, when, candles)``: closes (float64, indexed by bar open time, UTC) of
    the bars closed by ``when`` (``at`` in UTC; None: every bar), read with ``run_id``'s
    settings from ``data`` (default: the run's file); ``cascade``: the run's
    ``cascade_indicator`` feature when it builds feature families, else None; ``candles`` the
    OHLCV frame they came from.

    Raises:
        SelectionError: no bar closed at or before ``at``.
        huracan.data.ohlcv.DataValidationError: the data file breaks a rule.
    """
    from dataclasses import replace

    from huracan import stages
    from huracan.rebuild import rebuild_features, run_settings

    settings = run_settings(client, run_id)
    if engine is not None:
        settings = replace(settings, db_url=str(engine.url.render_as_string(hide_password=False)))
    if settings.features.families:
        fs, candles = rebuild_features(settings, data)
        cascade = fs.frame.get("cascade_indicator")
    else:
        files = settings.data if data is None else replace(settings.data, path=str(data))
        candles, cascade = stages.load_validated(files, log_quality=False), None
    close = pd.Series(candles["close"].to_numpy(np.float64),
                      index=pd.DatetimeIndex(candles["timestamp"]))
    when = None if at is None else pd.Timestamp(at)
    if when is not None:
        when = when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")
        step = pd.Timedelta(timeframe)
        close = close[close.index + step <= when]  # bars closed by `at`
        if close.empty:
            raise SelectionError(f"no {timeframe} bar of {symbol} closed at or before {when}")
    return close, cascade, when, candles


def _ranked(client: Any, name: str, base: dict[str, Any], regime: str, rank_by: str,
            lowest: bool | None, min_trades: int, exposure: float) -> LiveSelection:
    """The version of ``name`` with the best ``rank_by`` (:func:`_metric_value` in
    ``regime``; lowest first when ``lowest``, default for :data:`LOWER_IS_BETTER`; ties: the
    newest version); cash versions are left out.

    Raises:
        SelectionError: no version logged ``rank_by``.
    """
    low = rank_by in LOWER_IS_BETTER if lowest is None else lowest
    scored = []
    for mv in client.search_model_versions(f"name='{name}'"):
        if not mv.run_id or is_cash(mv):
            continue
        value, key = _metric_value(client.get_run(mv.run_id), rank_by, regime, min_trades)
        if math.isfinite(value):
            scored.append((value, int(mv.version), mv, key))
    if not scored:
        raise SelectionError(f"no version of {name} logged {rank_by!r}")
    scored.sort(key=lambda t: (t[0] if low else -t[0], -t[1]))
    value, _, mv, key = scored[0]
    run = client.get_run(mv.run_id)
    return LiveSelection(
        **base, version=str(mv.version), model_type=run.data.tags.get("model_type"),
        run_id=mv.run_id, alias=None, exposure=exposure, source="rank",
        reason=f"{'lowest' if low else 'highest'} {key} = {value:.4g} among "
               f"{len(scored)} version(s)", metric=rank_by, metric_value=value)


def _alias_holder(client: Any, name: str, base: dict[str, Any], regime: str,
                  regime_map: dict[str, Any], exposure: float) -> LiveSelection:
    """The holder of ``regime-<regime>`` with the map's source and reason, else ``production``
    (an unknown regime trades at most the ``extreme`` exposure, unless extreme maps to cash);
    a holder that is the cash policy answers position 0.

    Raises:
        SelectionError: neither alias is set.
    """
    entry = regime_map.get(regime, {})
    holder = None if regime == UNKNOWN else _alias(client, name, f"{ALIAS_PREFIX}{regime}")
    alias = f"{ALIAS_PREFIX}{regime}"
    if holder is not None:
        source = str(entry.get("source", "evidence"))
        reason = str(entry.get("reason", f"holds {alias}"))
    else:
        holder = _alias(client, name, "production")
        if holder is None:
            raise SelectionError(f"{name}: {alias} is unset and there is no production version")
        alias = "production"
        source = "production"
        reason = ("regime unknown (warm-up or a gap in the last 24h)" if regime == UNKNOWN else
                  f"{ALIAS_PREFIX}{regime} is unset"
                  + (f" (its gate: {entry['decision']}: {entry.get('gate_reason')})"
                     if entry.get("decision") else " (no regime map)"))
        extreme = regime_map.get("extreme", {})
        if regime == UNKNOWN and extreme.get("model") != CASH:
            exposure = min(exposure, float(extreme.get("exposure", 1.0)))
    if is_cash(holder):  # nothing beats cash here: flat, and why
        return LiveSelection(**base, version=str(holder.version), model_type=CASH,
                             run_id=holder.run_id, alias=alias, exposure=0.0, source=CASH,
                             reason=f"{alias} is cash (position 0): {cash_reason(holder)}"
                                    + ("" if alias == "production" else f"; {reason}"),
                             position=0.0)
    run = client.get_run(holder.run_id) if holder.run_id else None
    return LiveSelection(**base, version=str(holder.version),
                         model_type=None if run is None else run.data.tags.get("model_type"),
                         run_id=holder.run_id, alias=alias, exposure=exposure, source=source,
                         reason=reason)
