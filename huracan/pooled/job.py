"""The pooled training job: one model per fold trained on the rows of several markets
(``data.symbols``), each market scored on its own, the equal-weight portfolio of them as the run's
headline metrics, one registered model serving them all.

:func:`run_pooled_job` (dispatched to by :func:`huracan.pipeline.run_job` when ``data.symbols``
lists two or more markets) composes the steps a single-market job uses (:mod:`huracan.job`):

1. per symbol (``data.symbol`` is the primary market: its ``data.path`` locates the others
   through :func:`huracan.stages.symbol_data` unless ``data.paths`` names their files): load and
   validate its candles, build its features, its market bars;
2. folds cut once on the union of the symbols' bar times
   (:func:`huracan.pooled.fit.pooled_folds`) and one model fitted per fold on every symbol's
   train rows (:func:`huracan.pooled.fit.fit_predict_pooled`);
3. per symbol, the evaluator of the split scheme on its own rows and market (execution model,
   trading rule, buy & hold), its metrics logged as ``<PAIR>/<metric>`` (``BTCUSDT/oos_sharpe``)
   and its artifacts under ``<PAIR>/``;
4. the equal-weight portfolio of the symbols' net returns as the run's headline metrics
   (``oos_sharpe``, ``oos_composite_score``...; :mod:`huracan.pooled.portfolio`), so sweeps,
   selection and the gate read the run as any other;
5. the per-symbol cash floor (:func:`huracan.pooled.portfolio.cash_floor`: the gate's rule on
   each symbol's own scored window): run tags ``cash_floor`` (JSON per symbol: decision and
   evidence) and ``trade_symbols``, copied into the version manifest;
6. SHAP of the last fold per symbol, the model (:func:`huracan.serving.pooled.log_pooled_model`)
   registered as ``huracan-pool-<PAIR>-<PAIR>-...-<tf>``
   (:func:`huracan.registry.promotion.pooled_model_name`).

The run's ``data/eval_window.parquet`` (what the registry gate re-scores) is the primary symbol's
window with a ``symbol`` column; every symbol's window is at ``<PAIR>/data/eval_window.parquet``.
Not supported in a pooled job (refused with one line): ``features.top_n`` (a per-symbol
selection would give the symbols different columns), a ``features.context`` symbol that is also
in the pool (each symbol skips itself as context: different columns again) and regimes
(``regime.kind`` other than ``none``). Context symbols outside the pool and higher timeframes
work as in a single-market job (every symbol gets the same ``ctx_*`` / ``htf_*`` columns).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pandas as pd

from huracan import job as steps
from huracan import stages
from huracan.analysis.families import ARTIFACT as FAMILIES_ARTIFACT
from huracan.analysis.families import family_metrics, shap_families
from huracan.data.ohlcv import bars_per_year
from huracan.features.naming import SYMBOL_COLUMN, compact
from huracan.job import JobContext, Prepared, TrainResult
from huracan.pooled.fit import PooledOutcome, fit_predict_pooled, pooled_folds
from huracan.pooled.portfolio import cash_floor, portfolio_metrics
from huracan.registry.evaluate import WINDOW_ARTIFACT
from huracan.registry.promotion import pooled_model_name
from huracan.settings import JobSettings
from huracan.stages import Evaluation
from huracan.tracking import run as tracking
from huracan.tracking.names import labels_metric

log = logging.getLogger(__name__)


def check_pooled(settings: JobSettings) -> None:
    """Refuse what a pooled job does not support, one line each.

    Raises:
        ValueError: fewer than two ``data.symbols``, ``features.top_n`` set, regimes on, or a
            ``features.context`` symbol inside the pool.
    """
    if not settings.data.pooled:
        raise ValueError(f"a pooled job needs two or more data.symbols, got "
                         f"{settings.data.symbols}")
    if settings.top_n:
        raise ValueError("features.top_n is not supported by a pooled job (data.symbols): "
                         "every symbol must have the same columns")
    if settings.regime.kind != "none":
        raise ValueError(f"regime.kind={settings.regime.kind} is not supported by a pooled job "
                         "(data.symbols): use regime=none")
    inside = [c for c in settings.features.context if c in settings.data.symbols]
    if inside:
        raise ValueError(f"features.context {inside} lists symbol(s) of the pool "
                         f"{settings.data.symbols}: each skips itself, so the symbols would get "
                         "different columns; give context symbols outside the pool")


def market_settings(settings: JobSettings, symbol: str) -> JobSettings:
    """The job's settings for one of its markets: ``data`` swapped for ``symbol``'s candle file
    (:func:`huracan.stages.symbol_data`) and single-market (no ``symbols``).

    Raises:
        ValueError: as :func:`huracan.stages.symbol_data` (no candle file for the symbol).
    """
    data = stages.symbol_data(settings.data, symbol, settings.data.paths)
    return replace(settings, data=replace(data, symbols=[], paths={}))


def run_pooled_job(settings: JobSettings, *, resolved: Mapping[str, Any] | None = None,
                   parent_run_id: str | None = None) -> TrainResult:
    """Run one pooled training job (module docstring); returns its :class:`TrainResult`
    (``symbol`` = the primary market, ``metrics`` = the portfolio's headline metrics and every
    ``<PAIR>/<metric>``, ``registered_model`` = the pool's).

    Raises:
        ValueError: see :func:`check_pooled`; a symbol without a candle file; inconsistent
            split settings (no fold fits).
        DataValidationError, DegradedDataError: a symbol's candles break a rule.
    """
    check_pooled(settings)
    data = settings.data
    symbols, timeframe = list(data.symbols), data.timeframe
    job, experiment_id, tags = steps.start(
        settings, f"pool-{'-'.join(compact(s) for s in symbols)}-{timeframe}")
    tags |= {"symbols": ",".join(symbols), "pooled": "true"}
    with steps.job_run(job, experiment_id, tags, parent_run_id, resolved) as run_id:
        markets, folds = _prepare_pool(job, symbols)
        pooled = _fit_pool(job, markets, folds)
        evaluations = {s: steps.evaluate(job, markets[s], pooled.outcomes[s],
                                         f"{job.run_name} {s}") for s in symbols}
        metrics, evidence, portfolio = portfolio_metrics(
            evaluations, {s: m.bars for s, m in markets.items()},
            {s: pd.DatetimeIndex(m.fs.frame.index) for s, m in markets.items()},
            bars_per_year(timeframe))
        if "oos_n_folds" in metrics:  # the pool's folds (a symbol may be scored in fewer)
            metrics["oos_n_folds"] = float(len(folds))
        floor = cash_floor(evaluations, float(settings.registry.min_psr),
                           int(settings.registry.min_eval_bars))
        _tag_pool(job, markets, evaluations, floor)
        for s, ev in evaluations.items():
            metrics |= {f"{compact(s)}/{k}": v for k, v in ev.metrics.items()}
        model_uri = _explain_and_log(job, markets, pooled, evaluations, metrics,
                                     (portfolio, floor), run_id)
        registered, version = steps.register(job, model_uri, run_id,
                                             pooled_model_name(symbols, timeframe))
    for s, ev in evaluations.items():
        steps.log_summary(f"{job.run_name} {s}", ev)
    log.info("%s: equal-weight portfolio of %d symbols: %s %.2f; trading: %s", job.run_name,
             len(symbols), job.objective, metrics[job.objective],
             ", ".join(s for s in symbols if floor[s]["trade"]) or "none (all cash)")
    return TrainResult(run_id=run_id, model_type=job.prototype.model_type, symbol=data.symbol,
                       timeframe=timeframe, scheme=settings.split.scheme, metrics=metrics,
                       objective=job.objective, objective_value=float(metrics[job.objective]),
                       timings=dict(job.timer.seconds), evidence=evidence,
                       n_folds=len(folds), model_uri=model_uri,
                       registered_model=registered,
                       version=None if version is None else str(version),
                       parent_run_id=parent_run_id)


def _prepare_pool(job: JobContext, symbols: list[str]
                  ) -> tuple[dict[str, Prepared], list[dict[str, Any]]]:
    """Per symbol: candles, features and market bars (:func:`huracan.job.market_features`,
    :func:`huracan.job.market_bars`), then the folds cut once on the union of their bar times
    (:func:`huracan.pooled.fit.pooled_folds`, ``features``), mapped to each symbol's rows;
    returns the markets (their ``folds`` set by :func:`_fit_pool`: the folds the symbol is
    scored in) and the pooled folds."""
    settings = job.settings
    timeframe = settings.data.timeframe
    loaded = {}
    for s in symbols:
        data = market_settings(settings, s).data
        candles, fs, _ = steps.market_features(job, data)
        loaded[s] = (candles, fs, steps.market_bars(job, data, candles, fs))
    horizon = max(fs.horizon for _, fs, _ in loaded.values())
    with job.timer("features"):
        folds = pooled_folds(settings.split, {s: v[1] for s, v in loaded.items()}, timeframe,
                             horizon)
    for s, (candles, fs, _) in loaded.items():
        last = folds[-1][s]
        log.info("%s: %d candles -> %d feature rows x %d features; %d pooled fold(s), last "
                 "fold train/val/test = %d/%d/%d rows", s, len(candles), len(fs.frame),
                 len(fs.feature_names), len(folds), len(last.train), len(last.val),
                 len(last.test))
    return {s: Prepared(c, fs, [], bars, "") for s, (c, fs, bars) in loaded.items()}, folds


def _fit_pool(job: JobContext, markets: dict[str, Prepared],
              folds: list[dict[str, Any]]) -> PooledOutcome:
    """One model per fold on every symbol's train rows (``folds``, of which ``fit`` and
    ``predict``); each market's ``folds`` become the folds it is scored in.

    Raises:
        ValueError: a symbol without scored rows in the last fold (its model is the last
            fold's).
    """
    settings = job.settings
    sets = {s: p.fs for s, p in markets.items()}
    labels = {s: stages.LabelTimes.of(p.fs, settings.label.weights == "uniqueness",
                                      settings.train.row_weights(p.fs.frame))
              for s, p in markets.items()}
    log.info("fitting %r pooled over %s on %d fold(s)", job.prototype, ", ".join(markets),
             len(folds))
    with job.timer("folds"):
        pooled = fit_predict_pooled(job.prototype, sets, folds, steps.fold_parts(job),
                                    timeframe=settings.data.timeframe, labels=labels)
    for s, p in markets.items():
        outs = pooled.outcomes[s]
        if not outs or outs[-1].model is None:
            raise ValueError(f"{s} has no rows to score in the last pooled fold: a pooled "
                             "model serves only symbols it is scored on")
        p.folds = [o.fold for o in outs]
    # each symbol's fit_seconds is its share of the pooled fit: the sums are the loop's totals
    job.timer.add("fit", sum(o.fit_seconds for outs in pooled.outcomes.values() for o in outs))
    job.timer.add("predict", sum(o.predict_seconds for outs in pooled.outcomes.values()
                                 for o in outs))
    return pooled


def _tag_pool(job: JobContext, markets: dict[str, Prepared],
              evaluations: dict[str, Evaluation], floor: dict[str, dict[str, Any]]) -> None:
    """The run's tags: the primary symbol's fold ranges, with ``train_end`` / ``val_end`` the
    latest over the symbols (what the pooled model saw: the gate's ``seen_until``); per symbol
    its data fingerprint, fold ranges and rule choice under ``<PAIR>/``; the cash floor
    (``cash_floor`` JSON, ``trade_symbols``); the ``labels/<PAIR>/dropped_<reason>`` metrics per
    symbol."""
    import mlflow

    settings = job.settings
    primary = markets[settings.data.symbol]
    tags = {**stages.describe_folds(primary.fs, primary.folds),
            "code_version": stages.code_version(), "objective": job.objective,
            "feature_list_sha256": stages.feature_list_fingerprint(primary.fs.feature_names),
            "n_features": str(len(primary.fs.feature_names)),
            "feature_families": ",".join(settings.features.families) or "price",
            "cash_floor": _floor_tag(floor),
            "trade_symbols": ",".join(s for s, f in floor.items() if f["trade"])}
    dropped: dict[str, float] = {}
    for s, p in markets.items():
        pair = compact(s)
        folds = stages.describe_folds(p.fs, p.folds)
        for key in ("train_end", "val_end"):
            tags[key] = max(tags[key], folds[key])
        tags |= {f"{pair}/{k}": v for k, v in folds.items()}
        tags[f"{pair}/dataset_sha256"] = stages.frame_fingerprint(p.candles)
        tags |= {f"{pair}/{k}": v for k, v in evaluations[s].tags.items()}
        tags[f"{pair}/cash_floor"] = "trade" if floor[s]["trade"] else "cash"
        dropped |= {labels_metric(k, pair): float(v) for k, v in p.fs.unlabelled.items()}
    tags["dataset_sha256"] = tags[f"{compact(settings.data.symbol)}/dataset_sha256"]
    with job.timer("log_tags"):
        mlflow.set_tags(tags)
    with job.timer("log_metrics"):
        mlflow.log_metrics(dropped)


def _floor_tag(floor: dict[str, dict[str, Any]], limit: int = 5000) -> str:
    """The ``cash_floor`` tag: JSON per symbol of its decision and evidence (``trade``, ``bars``,
    ``trades``, ``psr``, ``total_return``, ``reason``...); without the reasons when that exceeds
    ``limit`` characters (a tag value's bound), so it always parses."""
    full = json.dumps(floor, default=float)
    if len(full) <= limit:
        return full
    keep = ("trade", "bars", "trades", "psr", "total_return")
    return json.dumps({s: {k: f[k] for k in keep} for s, f in floor.items()}, default=float)


def _explain_and_log(job: JobContext, markets: dict[str, Prepared], pooled: PooledOutcome,
                     evaluations: dict[str, Evaluation], metrics: dict[str, float],
                     extra: tuple[dict[str, pd.DataFrame], dict[str, Any]],
                     run_id: str) -> str | None:
    """SHAP of the last fold per symbol (``shap``; its shares per feature family as
    ``importance/<PAIR>/family_<family>_shap`` and ``<PAIR>/importance/families.json``,
    :mod:`huracan.analysis.families`), every symbol's evaluation artifacts under
    ``<PAIR>/``, the primary's evaluation window at the gate's path, the portfolio series
    (``portfolio/<window>_returns.parquet``) and the cash floor (``portfolio/cash_floor.json``)
    (``logging``), the model (``log_model``), then every metric in one batch (logged even when
    a step here raises); returns the model URI (or ``None``)."""
    import mlflow

    from huracan.evaluation import plots

    settings, timer = job.settings, job.timer
    portfolio, floor = extra
    primary = settings.data.symbol
    model_uri: str | None = None
    try:
        fitted = {s: stages.fitted_fold(p.fs, pooled.outcomes[s][-1], settings.data.timeframe)
                  for s, p in markets.items()}
        part = settings.split.selection_part
        with timer("shap"):
            shap = {s: stages.explain(f, int(settings.explain.max_rows), part)
                    for s, f in fitted.items()}
        with timer("logging"):
            for s, ev in evaluations.items():
                steps.log_evaluation_artifacts(ev, f"{compact(s)}/", timer)
                mlflow.log_text(shap[s].importance.to_csv(index=False),
                                f"{compact(s)}/shap/mean_abs_shap.csv")
                families = shap_families(shap[s].values, markets[s].fs.feature_names)
                mlflow.log_dict(families, f"{compact(s)}/{FAMILIES_ARTIFACT}")
                metrics.update(family_metrics(families, compact(s)))
            window = evaluations[primary].eval_window
            with timer("log_artifacts"):
                if window is not None:
                    tracking.log_frame(window.assign(**{SYMBOL_COLUMN: primary}),
                                       WINDOW_ARTIFACT)
                for name, frame in portfolio.items():
                    tracking.log_frame(frame, f"portfolio/{name}_returns.parquet")
                mlflow.log_dict(floor, "portfolio/cash_floor.json")
                mlflow.log_text("\n".join(markets[primary].fs.feature_names) + "\n",
                                "features/feature_list.txt")
            with timer("log_plots"):
                tracking.log_figure(plots.shap_summary_figure(
                    shap[primary].values, shap[primary].X,
                    list(markets[primary].fs.feature_names),
                    f"SHAP {job.run_name} {primary} (last fold)", settings.seed),
                    "shap/summary.png")
            model_uri = _log_model(job, markets, pooled, evaluations, floor, run_id)
    finally:
        with timer("log_metrics"):
            mlflow.log_metrics(metrics)
    return model_uri


def _log_model(job: JobContext, markets: dict[str, Prepared], pooled: PooledOutcome,
               evaluations: dict[str, Evaluation], floor: dict[str, dict[str, Any]],
               run_id: str) -> str | None:
    """The pooled model with every symbol's serving spec and fitted rule
    (:func:`huracan.serving.bundle.serving_bundle` of its last fold) and its cash-floor trade
    flag, logged by :func:`huracan.serving.pooled.log_pooled_model` (``log_model``); ``None``
    with ``tracking.log_model=false``."""
    settings = job.settings
    if not settings.tracking.log_model:
        return None
    from huracan.serving.bundle import serving_bundle
    from huracan.serving.pooled import log_pooled_model

    with job.timer("log_model"):
        bundles = {}
        for s, p in markets.items():
            last = pooled.outcomes[s][-1]
            bundles[s] = serving_bundle(market_settings(settings, s), p.fs, last,
                                        evaluations[s].reports, last.model, run_id,
                                        bars=evaluations[s].bars)
        primary = markets[settings.data.symbol]
        te = primary.folds[-1].test
        example = primary.fs.frame.iloc[te.start : te.stop][list(primary.fs.feature_names)]
        return log_pooled_model(
            pooled.model, bundles, {s: bool(f["trade"]) for s, f in floor.items()},
            example.head(5).assign(**{SYMBOL_COLUMN: settings.data.symbol}),
            registered_model=pooled_model_name(list(markets), settings.data.timeframe))
