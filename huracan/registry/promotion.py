"""Versions, aliases and decisions in the MLflow Model Registry, with a history in the brain store.

One registered model per symbol and timeframe (:func:`registered_model_name`). Every trained run
registers a version with its manifest (:mod:`huracan.registry.manifest`: a few filter tags, the
whole manifest as the run's ``registry/manifest.json`` and the version's description).
Aliases play the old stages' roles: ``staging`` marks the latest candidate, ``production``
the champion. Aliases keep no history, so every decision is also a ``registry_events`` row
(and a tag on the version).

Crash safety: a version is created with its filter tags in one registry call (its whole manifest
already logged as its run's artifact), after its model artifact is logged, and waited on until
READY (its Markdown description follows; a process killed in between leaves a version without
one, its manifest intact); ``production`` moves in one alias call, after the
decision, inside the per-model lock. A process killed at any point therefore leaves
``production`` either where it was or on a complete version. The version to fall back to is
written on the new version (tag ``huracan.previous_production``) before the alias moves, so a
rollback still finds it if the process dies between the alias move and the event row.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient
from sqlalchemy import Engine

from huracan.alerts import Alert, Notifier
from huracan.evaluation.backtest import BacktestResult
from huracan.evaluation.evidence import (
    CASH,
    beats_cash,
    score_difference_interval,
    window_evidence,
)
from huracan.registry import events
from huracan.registry.cash import cash_reason, describe_cash, ensure_cash_version, is_cash
from huracan.registry.decision import (
    PRODUCTION,
    STAGING,
    Decision,
    alias_version,
    apply_decision,
)
from huracan.registry.evaluate import (
    MODEL,
    STORED,
    EvalWindow,
    WindowRule,
    backtest_forecasts,
    combine_forecasts,
    decision_rows,
    forecast_sources,
    load_rule,
    load_window,
    model_forecasts,
    only_regime,
    score_model,
    scored_bars,
    stored_forecasts,
    with_scored,
)
from huracan.registry.gate import GateDecision, decide_with_floor, degraded, unseen_start
from huracan.registry.lock import registry_lock
from huracan.registry.manifest import (  # build_manifest re-exported
    build_manifest,  # noqa: F401
    manifest_value,
    read_manifest,
    refresh_model_description,
    set_version_tag,
)
from huracan.registry.versions import (  # re-exported: registering sits below the gate
    TAG_PREFIX,
    RegistryError,
    register_version,  # noqa: F401
)

log = logging.getLogger(__name__)

#: ``registry monitor``'s default score source: production re-scored on the newest bars
BACKTEST_SOURCE = "backtest re-score"

def registered_model_name(symbol: str, timeframe: str) -> str:
    """``huracan-<SYMBOL without slash>-<timeframe>``, e.g. ``huracan-BTCUSDT-1h``."""
    return f"huracan-{symbol.replace('/', '').replace(':', '')}-{timeframe}"


def pooled_model_name(symbols: list[str], timeframe: str) -> str:
    """The registered model of a pooled job (one model serving several markets):
    ``huracan-pool-<SYMBOL>-<SYMBOL>-...-<timeframe>`` in the pool's (encoding) order, e.g.
    ``huracan-pool-BTCUSDT-ETHUSDT-LTCUSDT-1h``.

    Raises:
        ValueError: fewer than two symbols (a single market's model is
            :func:`registered_model_name`'s).
    """
    if len(symbols) < 2:
        raise ValueError(f"a pooled model serves two or more symbols, got {list(symbols)}")
    pairs = "-".join(s.replace("/", "").replace(":", "") for s in symbols)
    return f"huracan-pool-{pairs}-{timeframe}"


def version_uri(name: str, version: str | int) -> str:
    return f"models:/{name}/{version}"


@dataclass(frozen=True)
class Outcome:
    """A gate decision and the versions involved; ``event`` is ``promoted``, ``rejected`` or
    ``skipped`` (no window unseen by both models, production unchanged), with its evidence."""

    decision: GateDecision
    candidate_version: str
    champion_version: str | None
    event: str = ""
    evidence: dict[str, Any] | None = None


def seen_until(mv: ModelVersion, client: MlflowClient | None = None) -> str | None:
    """The last bar a version's model saw in fitting or early stopping (the later of its
    manifest's ``train_end`` and ``val_end``, :func:`~huracan.registry.manifest.
    manifest_value`), ISO UTC; ``None`` when the manifest lacks them."""
    client = client or MlflowClient()
    ends = [manifest_value(client, mv, k) for k in ("train_end", "val_end")]
    return unseen_start([e for e in ends if e])


def _window_evidence(result: BacktestResult) -> dict[str, Any]:
    ev = window_evidence(result.returns["strategy_return"].to_numpy(), result.metrics.n_trades)
    return {"trades": ev.trades, "psr": ev.psr, "sharpe": float(result.metrics.sharpe),
            "execution": result.execution}


@dataclass(frozen=True)
class _Side:
    """One version's forecasts of the window's bars: where each comes from and the values."""

    version: ModelVersion
    seen_until: str | None
    stored: pd.Series | None
    sources: np.ndarray
    rule: WindowRule

    def forecasts(self, name: str, window: EvalWindow, rows: np.ndarray) -> np.ndarray:
        """Forecast per row of ``window.frame``; the pyfunc is loaded only when a bar of
        ``rows`` needs it."""
        needs_model = bool(((self.sources == MODEL) & rows).any())
        model = model_forecasts(version_uri(name, self.version.version), window) \
            if needs_model else None
        return combine_forecasts(window.frame["timestamp"],
                                 np.where(rows, self.sources, ""), model, self.stored)

    def counts(self, rows: np.ndarray) -> dict[str, Any]:
        return {"version": str(self.version.version), "seen_until": self.seen_until,
                "stored_forecasts": self.stored is not None,
                "bars_from_stored": int(((self.sources == STORED) & rows).sum()),
                "bars_from_model": int(((self.sources == MODEL) & rows).sum()),
                "rule": self.rule.describe()}


def _side(client: MlflowClient, mv: ModelVersion, timestamps: pd.Series,
          own: EvalWindow | None = None) -> _Side:
    """A version's forecast sources on ``timestamps``: its registered model after its
    ``seen_until``, else its own run's stored out-of-sample forecasts (``own``: the window
    already loaded when it is the candidate's), and the rule its model fitted
    (:func:`~huracan.registry.evaluate.load_rule`)."""
    if own is None and mv.run_id:
        try:
            own = load_window(client, mv.run_id)
        except FileNotFoundError:  # a run that logged no window: registered model only
            own = None
    stored = None if own is None else stored_forecasts(own)
    until = seen_until(mv, client)
    return _Side(mv, until, stored, forecast_sources(timestamps, until, stored),
                 load_rule(version_uri(mv.name, mv.version),
                           manifest_value(client, mv, "symbol")))


def gate_candidate(
    client: MlflowClient,
    engine: Engine,
    name: str,
    candidate_version: str,
    *,
    metric: str = "composite_score",
    tolerance: float = 0.05,
    notifier: Notifier | None = None,
    min_eval_bars: int = 200,
    min_dsr: float | None = None,
    min_psr: float = 0.9,
    selection: dict[str, Any] | None = None,
    bootstrap_resamples: int = 500,
    seed: int = 0,
    alias: str = PRODUCTION,
    regime: str | None = None,
) -> Outcome:
    """Put ``candidate_version`` through the gate against the current holder of ``alias``.

    Under the per-model lock: ``staging`` moves to the candidate (``production`` gate only). The
    bars are the candidate run's scored bars (``data/eval_window.parquet``: its test bars, or its
    last ``max(registry.min_eval_bars, last OOS step)`` walk-forward out-of-sample bars), of
    ``regime`` only when given. Each version's forecast of a bar comes from its registered model
    when the bar is after the version's ``seen_until`` (manifest ``train_end``/``val_end``), else
    from the out-of-sample ``prediction`` its own run stored in its window, else it has none
    (:func:`huracan.registry.evaluate.forecast_sources`); a run logged before windows carried
    ``prediction`` is scored by its registered model only. The decision window is the bars both
    the candidate and the champion have a forecast of, so every bar is predicted by a model
    fitted before it, on both sides. With fewer than ``min_eval_bars`` such bars the decision is
    ``skipped`` (the alias stays). Otherwise both are backtested on it with the candidate run's
    backtest settings, each with the rule its run fitted (the model's ``rule`` artifact, what
    serving applies; the default threshold rule for a model logged without one, noted in the
    evidence), and the pure :func:`~huracan.registry.gate.decide_with_floor` rule picks: the
    candidate must beat cash on the window
    (:func:`huracan.evaluation.evidence.beats_cash`: net return > 0 with PSR >= ``min_psr``)
    and, when there is a champion, reach champion - tolerance x |champion|. A champion that is
    the registered ``cash`` policy (version tag ``huracan.policy=cash``) counts as no champion:
    beating cash is then the whole test. A candidate whose deflated Sharpe ratio on its
    selection window is below ``min_dsr`` is refused first. The alias moves on promotion; the
    decision is tagged on the version and written to ``registry_events`` with its evidence (the
    window, how many bars each side scored from stored forecasts and from its registered model
    and with which rule, the cash verdict, each model's trades and PSR, the candidate's DSR, a
    paired stationary-bootstrap interval of the score difference); a rejection or a skip
    alerts.

    Args:
        selection: what the selection knew of the candidate (``dsr``, ``n_candidates``,
            ``n_trials``, ``selected_on``...), recorded with the evidence.
        min_psr: the PSR of the candidate's net returns on the decision window the cash floor
            demands (``registry.min_psr``), in [0, 1].
        alias: the alias the candidate may take (``production``, or ``regime-<name>`` for the
            per-regime choice); the champion is its current holder. Only ``production`` moves
            ``staging``.
        regime: score only the window's bars of this regime (its ``regime`` column): the same
            rule on the same window, restricted.

    Raises:
        RegistryError: the candidate version has no source run.
        ValueError: ``min_psr`` outside [0, 1].
    """
    if not (0.0 <= float(min_psr) <= 1.0):
        raise ValueError(f"min_psr must be in [0, 1], got {min_psr}")
    rule = _GateRule(metric, tolerance, int(min_eval_bars), min_dsr, float(min_psr),
                     dict(selection or {}), bootstrap_resamples, seed, alias, regime)
    applied = apply_decision(
        client, engine, name, candidate_version,
        lambda cand, champ: _decide(client, name, cand, champ, rule),
        alias=alias, notifier=notifier)
    d = applied.decision
    return Outcome(d.verdict, applied.candidate.version, applied.champion_version, d.event,
                   d.evidence)


@dataclass(frozen=True)
class _GateRule:
    """The settings of one :func:`gate_candidate` call (its arguments, same meanings)."""

    metric: str
    tolerance: float
    min_eval_bars: int
    min_dsr: float | None
    min_psr: float
    selection: dict[str, Any]
    bootstrap_resamples: int
    seed: int
    alias: str
    regime: str | None


def _decide(client: MlflowClient, name: str, cand: ModelVersion, champ: ModelVersion | None,
            rule: _GateRule) -> Decision:
    """The model gate's rule on ``cand`` against ``champ`` (the alias's holder; a ``cash``
    policy counts as none), called by :func:`~huracan.registry.decision.apply_decision` with
    the lock held: the decision window, then ``skipped`` (too few bars) or :func:`_judge`."""
    champ_is_cash = is_cash(champ)
    if champ_is_cash:  # the cash policy holds the alias: beating cash is the whole test
        champ = None
    window = load_window(client, str(cand.run_id))  # never empty here (apply_decision)
    if rule.regime is not None:
        window = only_regime(window, rule.regime)
    stamps = window.frame["timestamp"]
    cand_side = _side(client, cand, stamps, own=window)
    champ_side = _side(client, champ, stamps) if champ is not None else None
    scored = (window.frame["split"] == "test").to_numpy()
    rows = decision_rows(scored, cand_side.sources,
                         None if champ_side is None else champ_side.sources)
    window = with_scored(window, rows)
    bars = scored_bars(window)
    test = window.frame[rows]
    evidence: dict[str, Any] = {
        "window_start": None if test.empty else str(test["timestamp"].iloc[0]),
        "window_end": None if test.empty else str(test["timestamp"].iloc[-1]),
        "eval_bars": bars, "candidate_window_bars": int(scored.sum()),
        "min_eval_bars": rule.min_eval_bars,
        "forecasts": {"candidate": cand_side.counts(rows)}
        | ({} if champ_side is None else {"champion": champ_side.counts(rows)}),
        "selection": rule.selection, "alias": rule.alias, "regime": rule.regime,
    }
    if champ_is_cash:
        evidence["champion_policy"] = CASH
    if bars < rule.min_eval_bars:
        reason = _skip_reason(bars, int(scored.sum()), cand_side, champ_side, rule)
        verdict = GateDecision(False, math.nan, None, rule.tolerance, None, reason)
        event = "skipped"
    else:
        verdict = _judge(name, window, rows, cand_side, champ_side, evidence, rule)
        event = "promoted" if verdict.promote else "rejected"
    return Decision(verdict, event, rule.metric, bars, evidence,
                    window_end=evidence["window_end"])


def _skip_reason(bars: int, scored: int, cand_side: _Side, champ_side: _Side | None,
                 rule: _GateRule) -> str:
    """Why a decision with fewer than ``min_eval_bars`` bars both sides forecast is skipped."""
    seen = ", ".join(f"{who} {side.seen_until}" for who, side in
                     (("candidate", cand_side), ("champion", champ_side))
                     if side is not None)
    key = "registry" if rule.alias == PRODUCTION else "regime"
    regime = rule.regime
    return (f"only {bars} bar(s){'' if regime is None else f' of regime {regime}'} "
            "forecast out of sample by "
            f"{'both models' if champ_side is not None else 'the candidate'} (of the "
            f"candidate's {scored} scored; seen until: {seen}); "
            f"{key}.min_eval_bars={rule.min_eval_bars}: decision skipped, {rule.alias} "
            "unchanged")


def _judge(name: str, window: EvalWindow, rows: np.ndarray, cand_side: _Side,
           champ_side: _Side | None, evidence: dict[str, Any], rule: _GateRule) -> GateDecision:
    """Backtest both sides on the decision window and apply the rule: a non-finite candidate
    score or a DSR below ``min_dsr`` is rejected, else :func:`decide_with_floor`. Adds each
    side's figures, the cash verdict and the bootstrap interval to ``evidence``."""
    metric, tolerance, selection = rule.metric, rule.tolerance, rule.selection
    cand_res = backtest_forecasts(window, cand_side.forecasts(name, window, rows),
                                  cand_side.rule)
    cand_score = float(cand_res.metrics.as_dict()[metric])
    evidence["candidate"] = _window_evidence(cand_res) | {metric: cand_score}
    cash = beats_cash(cand_res.returns["strategy_return"].to_numpy(np.float64),
                      int(cand_res.metrics.n_trades), min_psr=rule.min_psr)
    evidence["cash"] = cash.as_dict()
    champ_score = None
    if champ_side is not None:
        champ_res = backtest_forecasts(window, champ_side.forecasts(name, window, rows),
                                       champ_side.rule)
        champ_score = float(champ_res.metrics.as_dict()[metric])
        evidence["champion"] = _window_evidence(champ_res) | {metric: champ_score}
        if metric == "composite_score":
            evidence["score_difference"] = score_difference_interval(
                cand_res.returns, champ_res.returns,
                window.periods_per_year, n_resamples=rule.bootstrap_resamples, seed=rule.seed)
    dsr, min_dsr = selection.get("dsr"), rule.min_dsr
    if not math.isfinite(cand_score):
        return GateDecision(False, cand_score, champ_score, tolerance, None,
                            f"candidate {metric} is not finite: rejected")
    if min_dsr is not None and (dsr is None or float(dsr) < float(min_dsr)):
        return GateDecision(
            False, cand_score, champ_score, tolerance, None,
            f"candidate deflated Sharpe ratio {dsr} < registry.min_dsr={min_dsr} "
            f"({selection.get('n_candidates', '?')} candidates, "
            f"{selection.get('n_trials', '?')} trials): rejected")
    return decide_with_floor(cash, cand_score, champ_score, tolerance, metric)


def record_no_candidate(engine: Engine, name: str, reason: str, metric: str,
                        evidence: dict[str, Any], notifier: Notifier | None = None) -> None:
    """Record a ``skipped`` decision for ``name`` when a sweep had no eligible candidate
    (production unchanged) and alert."""
    events.record(engine, event="skipped", model_name=name, candidate_version=None,
                  champion_version=None, candidate_score=None, champion_score=None,
                  tolerance=None, metric=metric, reason=reason, evidence=evidence)
    log.info("%s: %s", name, reason)
    if notifier is not None:
        notifier.notify(Alert(f"{name}: no candidate promoted", "warning", {"reason": reason}))


def _score(model_uri: str, window: EvalWindow, metric: str) -> float:
    result = score_model(model_uri, window)
    return float(result.metrics.as_dict()[metric])


def rollback(client: MlflowClient, engine: Engine, name: str, *, reason: str = "manual rollback",
             notifier: Notifier | None = None, metric: str | None = None,
             current_score: float | None = None, tolerance: float | None = None,
             to_cash: bool = False, evidence: dict[str, Any] | None = None
             ) -> tuple[str, str]:
    """Move ``production`` back to the version that held it before the current one, or to cash.

    The previous version comes from the promotion event of the current production version in
    ``registry_events`` (falling back to its ``huracan.previous_production`` tag). When there is
    none (or ``to_cash``), production goes to the registered ``cash`` policy
    (:func:`huracan.registry.cash.ensure_cash_version`, registered on first use): its
    ``huracan.cash_reason`` tag is set to the reason before the alias moves. Either way the
    version taken out is tagged ``huracan.rolled_back``, a ``rolled_back`` event is recorded
    (``to_version`` the version now serving; moving to cash, its evidence says ``{"to": "cash",
    ...}``) and a critical alert is sent.

    Returns:
        ``(from_version, to)``: ``to`` is the restored version, or ``"cash"``.

    Raises:
        RegistryError: no production version, or production is already cash.
    """
    with registry_lock(engine, name):
        current = alias_version(client, name, PRODUCTION)
        if current is None:
            raise RegistryError(f"{name} has no production version: nothing to roll back")
        if is_cash(current):
            raise RegistryError(f"{name}: production is already cash (v{current.version}: "
                                f"{cash_reason(current)}): nothing to roll back")
        previous = None
        if not to_cash:
            previous = events.previous_production(engine, name, current.version)
            if previous is None:
                previous = current.tags.get(f"{TAG_PREFIX}previous_production")
        target = None
        if previous is not None:
            target = client.get_model_version(name, previous)  # raises if it was deleted
        extra = dict(evidence or {})
        evidence = None
        if target is None or is_cash(target):
            why = reason if to_cash else (
                f"{reason}; no earlier production version to roll back to: production goes "
                "to cash (position 0)")
            target = ensure_cash_version(client, name, reason=why)
            set_version_tag(client, name, target.version, "cash_reason", why)
            evidence = {"to": CASH, "cash_version": str(target.version),
                        "requested": "to_cash" if to_cash else "rollback"}
            reason = why
        client.set_registered_model_alias(name, PRODUCTION, target.version)
        refresh_model_description(client, name)
        set_version_tag(client, name, current.version, "rolled_back", reason)
        events.record(engine, event="rolled_back", model_name=name,
                      candidate_version=target.version, champion_version=current.version,
                      candidate_score=None, champion_score=current_score,
                      tolerance=tolerance, metric=metric, reason=reason, run_id=current.run_id,
                      evidence=None if evidence is None and not extra
                      else (evidence or {}) | extra)
    to = CASH if evidence is not None else str(target.version)
    if notifier is not None:
        shown = CASH if evidence is not None else f"v{to}"
        notifier.notify(Alert(f"{name}: production rolled back v{current.version} -> {shown}",
                              "critical", {"reason": reason}))
    log.warning("%s: production v%s -> %s: %s", name, current.version, to, reason)
    return str(current.version), to


@dataclass(frozen=True)
class MonitorResult:
    """What ``registry monitor`` found: the production version, its score now and at promotion,
    and whether it rolled back (``rolled_back_to``: a version, ``"cash"`` or None). A cash
    production is not scored: ``cash_reason`` says why it is cash and the scores are NaN.
    ``source`` says where the current score came from (``backtest re-score`` or ``paper ledger
    (ACCOUNT, N bars)``)."""

    version: str
    current_score: float
    score_at_promotion: float
    degraded: bool
    rolled_back_to: str | None
    cash_reason: str | None = None
    source: str = BACKTEST_SOURCE


def monitor(client: MlflowClient, engine: Engine, name: str, window: EvalWindow | None, *,
            metric: str = "composite_score", tolerance: float = 0.05,
            notifier: Notifier | None = None, result: BacktestResult | None = None,
            source: str = BACKTEST_SOURCE, evidence: dict[str, Any] | None = None
            ) -> MonitorResult:
    """Score ``production`` and roll back when it degraded by more than ``tolerance`` relative
    to its score at promotion (to the previous version, or to cash when there is none:
    :func:`rollback`). A cash production is not scored.

    The score is production re-scored on ``window`` (the default, ``source`` "backtest
    re-score"), or, when ``result`` is given, ``result``'s ``metric`` (a precomputed result,
    e.g. the paper ledger's realised returns; ``source`` names it, e.g. "paper ledger
    (paper-BTC-USDT-1h, 720 bars)"). The source is part of the rollback reason, and with
    ``evidence`` (``{"source": ..., ...}``) in the rollback event's evidence.

    Raises:
        RegistryError: no production version, or no recorded score at promotion.
        ValueError: neither ``window`` nor ``result``.
    """
    if window is None and result is None:
        raise ValueError("monitor needs a window to re-score or a precomputed result")
    current = alias_version(client, name, PRODUCTION)
    if current is None:
        raise RegistryError(f"{name} has no production version to monitor")
    if is_cash(current):
        return MonitorResult(str(current.version), math.nan, math.nan, False, None,
                             cash_reason(current), source)
    at_promo = current.tags.get(f"{TAG_PREFIX}score_at_promotion")
    if at_promo is None:
        raise RegistryError(f"{name} v{current.version} has no recorded score at promotion")
    baseline = float(at_promo)
    if result is not None:
        now = float(result.metrics.as_dict()[metric])
    else:
        assert window is not None
        now = _score(version_uri(name, current.version), window, metric)
    bad = degraded(now, baseline, tolerance)
    to = None
    if bad:
        reason = (f"{metric} {now:.4f} fell below {baseline:.4f} - {tolerance:g} x "
                  f"|{baseline:.4f}| (score at promotion): degraded by more than "
                  f"{100 * tolerance:g} %; source: {source}")
        _, to = rollback(client, engine, name, reason=reason, notifier=notifier, metric=metric,
                         current_score=now, tolerance=tolerance,
                         evidence={"source": source} | dict(evidence or {}))
    return MonitorResult(str(current.version), now, baseline, bad, to, source=source)


def describe(client: MlflowClient, name: str) -> dict[str, Any]:
    """``production`` and ``staging`` versions with their manifests (for ``registry show``); a
    version that is the ``cash`` policy also says ``"policy": "cash"``, ``"position": 0`` and
    ``"reason"`` (why production went to cash)."""
    out: dict[str, Any] = {"model_name": name}
    for alias in (PRODUCTION, STAGING):
        mv = alias_version(client, name, alias)
        out[alias] = None if mv is None else {
            "version": mv.version, "run_id": mv.run_id, "source": mv.source,
            "status": mv.status,
            "manifest": dict(sorted(read_manifest(client, mv).items())),
        }
        if is_cash(mv):
            out[alias] |= describe_cash(mv)
    return out
