"""What a training job ships inside its logged model for raw-candle serving: the
:class:`~huracan.serving.raw.ServingSpec` and the trading rule fitted as the job fitted it."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from huracan.serving.raw import ServingSpec, measure_warmup, price_config


def fit_rule(settings: Any, fs: Any, outcome: Any, bars: Any = None) -> Any:
    """The job's rule fitted on the last fold's validation predictions, as
    :func:`huracan.stages.evaluate_forward` / ``evaluate_walk_forward`` fit it (same inputs and
    market ``bars``, :func:`huracan.stages.run_bars`; seeded, so the same threshold /
    classifier); unfitted when the fold predicted no validation rows (a walk-forward rule
    without a grid)."""
    from huracan import stages
    from huracan.data.ohlcv import bars_per_year

    rule = settings.make_rule()
    val = outcome.predictions.get("val")
    if val is None:
        return rule
    tf = settings.data.timeframe
    if bars is None:
        bars = stages.run_bars(fs, settings.backtest, tf)
    return rule.fit(stages.rule_input(fs, outcome.fold.val, val, tf, bars), settings.backtest,
                    bars_per_year(tf))


def serving_bundle(settings: Any, fs: Any, outcome: Any, reports: dict[str, Any],
                   estimator: Any, run_id: str | None, bars: Any = None
                   ) -> tuple[ServingSpec, Any]:
    """``(spec, fitted rule)`` of a finished job.

    Args:
        settings: the job's :class:`huracan.settings.JobSettings`.
        fs: its feature set; outcome: the last fold's :class:`huracan.stages.FoldOutcome`.
        reports: the evaluation's reports (``regime/detector.json`` when regimes were detected).
        estimator: the fitted forecaster (its ``feature_names_`` and ``lookback``).
        run_id: the MLflow run logging the model.
        bars: the job's market bars (:func:`huracan.stages.run_bars`) the rule was fitted on.
    """
    from huracan.features.naming import context_prefix, feature_family
    from huracan.registry.promotion import registered_model_name

    features = asdict(settings.features)
    tf = settings.data.timeframe
    warmup = measure_warmup(features, tf)
    price = set(_price_names(features, tf))
    names = list(estimator.feature_names_)
    rebuilt = ("context", "higher_timeframe")  # from the request's candles and ctx closes
    context = [f"{context_prefix(s)}close" for s in settings.features.context
               if s != settings.data.symbol
               and any(c.startswith(context_prefix(s)) for c in names)]
    detector = reports.get("regime/detector.json")
    spec = ServingSpec(
        symbol=settings.data.symbol, timeframe=tf,
        registered_model=registered_model_name(settings.data.symbol, tf), run_id=run_id,
        features=features, feature_names=names,
        family_columns=[c for c in names if c not in price and feature_family(c) not in rebuilt],
        context_columns=context, warmup_bars=warmup,
        lookback=int(getattr(estimator, "lookback", 1)),
        rule_kind=str(settings.make_rule().kind),
        regime_detector=None if detector is None else
        {k: v for k, v in detector.items() if k != "shares"})
    return spec, fit_rule(settings, fs, outcome, bars)


def _price_names(features: dict[str, Any], timeframe: str) -> list[str]:
    """The price feature columns the run's config builds (names only)."""
    import numpy as np
    import pandas as pd

    from huracan.data.ohlcv import timeframe_to_timedelta
    from huracan.features.build import compute_features

    n = 400
    ts = pd.date_range("2020-01-01", periods=n, freq=timeframe_to_timedelta(timeframe), tz="UTC")
    c = np.linspace(100.0, 110.0, n)
    bars = pd.DataFrame({"open": c, "high": c * 1.01, "low": c * 0.99, "close": c,
                         "volume": np.linspace(1.0, 2.0, n)}, index=ts)
    return [str(x) for x in compute_features(bars, price_config(features)).columns]
