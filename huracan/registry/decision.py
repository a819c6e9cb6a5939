"""Apply a gate's decision to the registry: the one write path of the model gate
(:func:`huracan.registry.promotion.gate_candidate`) and the sizer's gate
(:func:`huracan.sizing.job.register_sizer`).

Under the per-model :func:`~huracan.registry.lock.registry_lock`, :func:`apply_decision`

1. reads the candidate version (a version without a source run cannot be decided on) and, for
   the ``production`` alias, moves ``staging`` to it (the latest candidate);
2. reads the champion, the current holder of the alias (``None`` when there is none or it is the
   candidate itself), and calls the gate's ``decide(candidate, champion)``: the read, the
   decision and the writes are one critical section, so two processes deciding on the same
   registered model at once decide one after the other, the second seeing the first one's
   outcome as its champion;
3. tags the candidate with the outcome (``huracan.gate``, ``huracan.gate_reason``, the gate's
   own tags, each cut to 250 characters; the whole reason is appended to the version's
   description: :mod:`huracan.registry.manifest`) and, on promotion, with what a rollback
   and the monitor need
   (``huracan.previous_production``, ``huracan.score_at_promotion``,
   ``huracan.promoted_window_end``) *before* the alias moves, so a process killed between the
   alias move and the event row leaves a version that still names its predecessor;
4. moves the alias (promotion only: a rejected or skipped candidate leaves the champion in
   place);
5. rewrites the registered model's description (every alias, its version and meaning) and
   appends the ``registry_events`` row (:func:`huracan.registry.events.record`).

After the lock is released it logs the reason and alerts (a ``warning``) on a rejection, a skip,
or a promotion the gate flags with a ``note`` (the sizer going flat).

Tags of an alias other than ``production`` (``regime-<name>``) are namespaced
``huracan.<alias>.`` and fewer (the decision and, promoted, the score); ``production`` keeps its
historical tag names.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from sqlalchemy import Engine

from huracan.alerts import Alert, Notifier
from huracan.registry import events
from huracan.registry.gate import GateDecision
from huracan.registry.lock import registry_lock
from huracan.registry.manifest import note_decision, refresh_model_description, set_version_tag
from huracan.registry.versions import TAG_PREFIX, RegistryError

log = logging.getLogger(__name__)

PRODUCTION = "production"
STAGING = "staging"
#: the outcomes a gate records (``registry_events`` ``promotion``, ``rejection``, ``skipped``)
GATE_EVENTS = ("promoted", "rejected", "skipped")


def alias_version(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version holding ``alias``, or ``None``."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


@dataclass(frozen=True)
class Decision:
    """What a gate decided about one candidate version, everything :func:`apply_decision` writes.

    Attributes:
        verdict: the decision (``promote``, the scores of ``metric`` on the decision window,
            the relative ``tolerance``, the one-line ``reason``).
        event: ``promoted``, ``rejected`` or ``skipped`` (no decision for lack of evidence; its
            scores are not recorded).
        metric: the score's name (``composite_score``...).
        eval_bars: bars of the decision window.
        evidence: the document stored with the event (window, each side's figures...).
        window_end: the decision window's last bar (ISO UTC), tagged
            ``promoted_window_end`` on promotion.
        tags: further tags of the candidate, unprefixed names (the sizer: ``serve_policy``).
        note: appended to the alert title; a promotion with a note alerts too.
    """

    verdict: GateDecision
    event: str
    metric: str
    eval_bars: int | None
    evidence: dict[str, Any]
    window_end: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    note: str = ""

    def __post_init__(self) -> None:
        if self.event not in GATE_EVENTS:
            raise ValueError(f"unknown gate event {self.event!r}; expected one of {GATE_EVENTS}")
        if (self.event == "promoted") != self.verdict.promote:
            raise ValueError(f"event {self.event!r} contradicts promote={self.verdict.promote}")

    @property
    def promote(self) -> bool:
        return self.verdict.promote

    @property
    def reason(self) -> str:
        return self.verdict.reason


@dataclass(frozen=True)
class Applied:
    """A decision as applied: the candidate version and the alias's holder when it was taken
    (``None``: no champion)."""

    decision: Decision
    candidate: ModelVersion
    champion_version: str | None


#: ``decide(candidate, champion)``: the gate's rule, called with the lock held
Decide = Callable[[ModelVersion, ModelVersion | None], Decision]


def apply_decision(client: MlflowClient, engine: Engine, name: str, version: str | int,
                   decide: Decide, *, alias: str = PRODUCTION,
                   notifier: Notifier | None = None) -> Applied:
    """Decide on ``version`` of ``name`` for ``alias`` and apply the decision, under the lock
    (steps in the module docstring).

    Args:
        decide: the gate's rule, ``(candidate, champion) -> Decision``; ``champion`` is the
            holder of ``alias`` (``None`` when there is none or it is the candidate). It runs
            with the lock held: it may read and score but must not move aliases itself.
        alias: ``production``, or ``regime-<name>`` for a per-regime choice; only
            ``production`` moves ``staging``.
        notifier: where rejections, skips and noted promotions are announced.

    Raises:
        RegistryError: the candidate version has no source run.
        TimeoutError: the registry lock stayed busy (:func:`registry_lock`).
    """
    with registry_lock(engine, name):
        cand = client.get_model_version(name, str(version))
        if not cand.run_id:
            raise RegistryError(f"{name} v{version} has no source run to evaluate")
        if alias == PRODUCTION:
            client.set_registered_model_alias(name, STAGING, cand.version)
        champ = alias_version(client, name, alias)
        if champ is not None and champ.version == cand.version:
            champ = None
        champ_version = None if champ is None else champ.version
        decision = decide(cand, champ)
        _write(client, engine, name, cand, decision, alias, champ_version)
    _announce(name, str(cand.version), decision, alias, notifier)
    return Applied(decision, cand, champ_version)


def tag_namespace(alias: str) -> str:
    """The tag prefix of decisions about ``alias``: ``huracan.`` for ``production``,
    ``huracan.<alias>.`` otherwise."""
    return TAG_PREFIX if alias == PRODUCTION else f"{TAG_PREFIX}{alias}."


def _write(client: MlflowClient, engine: Engine, name: str, cand: ModelVersion,
           decision: Decision, alias: str, champion_version: str | None) -> None:
    """Tags, alias move (promotion only, after the tags) and the event row; lock held.

    A ``production`` decision tags ``gate``, ``gate_reason`` (cut), the gate's own tags and on
    promotion ``previous_production``, ``score_at_promotion``, ``promoted_window_end`` (what
    rollback and monitor read); a ``regime-<name>`` decision only ``huracan.<alias>.gate`` (and
    ``score_at_promotion`` on promotion), so a version gated for four regimes keeps a page
    that fits a screen: the reasons are in its description and ``registry_events``."""
    ns = tag_namespace(alias)
    v = cand.version
    tags = {"gate": decision.event} | ({"gate_reason": decision.reason} | decision.tags
                                       if alias == PRODUCTION else {})
    for key, value in tags.items():
        set_version_tag(client, name, v, f"{ns}{key}", value)  # cut to MAX_TAG_CHARS
    note_decision(client, name, v, alias, decision.event, decision.reason)  # the whole reason
    verdict = decision.verdict
    if decision.promote:
        if alias == PRODUCTION:
            if champion_version is not None:
                client.set_model_version_tag(name, v, f"{TAG_PREFIX}previous_production",
                                             champion_version)
            client.set_model_version_tag(name, v, f"{ns}promoted_window_end",
                                         str(decision.window_end))
        client.set_model_version_tag(name, v, f"{ns}score_at_promotion",
                                     repr(verdict.candidate_score))
        client.set_registered_model_alias(name, alias, v)
    refresh_model_description(client, name)  # staging (moved above) and the alias
    skipped = decision.event == "skipped"
    events.record(engine, event=decision.event, model_name=name, candidate_version=v,
                  champion_version=champion_version,
                  candidate_score=None if skipped else verdict.candidate_score,
                  champion_score=None if skipped else verdict.champion_score,
                  tolerance=verdict.tolerance, metric=decision.metric, reason=decision.reason,
                  run_id=cand.run_id, eval_bars=decision.eval_bars,
                  evidence=decision.evidence, alias=alias)


def _announce(name: str, version: str, decision: Decision, alias: str,
              notifier: Notifier | None) -> None:
    log.info("%s v%s: %s", name, version, decision.reason)
    if notifier is None or (decision.promote and not decision.note):
        return
    what = "" if alias == PRODUCTION else f" for {alias}"
    notifier.notify(Alert(f"{name}: candidate v{version}{what} {decision.event}{decision.note}",
                          "warning", {"reason": decision.reason}))
