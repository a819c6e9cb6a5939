"""Registry decisions in the brain store's ``registry_events`` table, in the registry's terms.

Each event names a *candidate* (the version production moves to, or was refused to move to) and
a *champion* (the version holding production when the decision was taken):

| event         | table ``event_type`` | ``from_version`` | ``to_version`` |
|---------------|----------------------|------------------|----------------|
| ``promoted``  | ``promotion``        | champion         | candidate      |
| ``rejected``  | ``rejection``        | champion         | candidate      |
| ``rolled_back`` | ``rollback``       | champion (the version taken out) | candidate (restored) |
| ``skipped``   | ``skipped``          | champion         | candidate (or none)  |

For ``rolled_back`` the champion score is its score on the monitoring window when the rollback
was automatic. A rollback with no earlier version to return to (or ``registry rollback
--to-cash``) goes to cash: ``to_version`` is the registered ``cash`` policy's version
(:mod:`huracan.registry.cash`) and the evidence is ``{"to": "cash", "cash_version": ...}``.
``skipped`` is a decision not taken for lack of evidence (no eligible candidate,
fewer than ``min_eval_bars`` bars both models forecast out of sample): production stays. Every
event can carry ``eval_bars`` and an ``evidence`` document (the window, how many bars each side
took from stored forecasts and from its registered model, each model's trades, PSR and DSR, the
bootstrap interval).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from huracan.db import queries, records
from huracan.db.records import Bind

TO_TABLE = {"promoted": "promotion", "rejected": "rejection", "rolled_back": "rollback",
            "skipped": "skipped", "drift": "drift"}
FROM_TABLE = {v: k for k, v in TO_TABLE.items()}


@dataclass(frozen=True)
class RegistryEventView:
    """One decision as ``registry history --json`` prints it."""

    event: str
    model_name: str
    candidate_version: str | None
    champion_version: str | None
    candidate_score: float | None
    champion_score: float | None
    tolerance: float | None
    reason: str
    time: str
    metric: str | None = None
    run_id: str | None = None
    eval_bars: int | None = None
    evidence: dict[str, Any] | None = None
    #: the alias decided on: ``production`` or ``regime-<name>``
    alias: str = "production"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def record(bind: Bind, *, event: str, model_name: str, candidate_version: str | int | None,
           champion_version: str | int | None, candidate_score: float | None,
           champion_score: float | None, tolerance: float | None, metric: str | None,
           reason: str, run_id: str | None = None, eval_bars: int | None = None,
           evidence: dict[str, Any] | None = None, alias: str = "production") -> None:
    """Append one decision to ``registry_events``.

    Raises:
        ValueError: unknown ``event`` (``promoted``, ``rejected``, ``rolled_back``, ``skipped``,
            ``drift``: a drift check over threshold, ``run_id`` its monitoring run).
    """
    if event not in TO_TABLE:
        raise ValueError(f"unknown registry event {event!r}; expected one of {list(TO_TABLE)}")
    records.record_registry_event(
        bind, model_name=model_name, event_type=TO_TABLE[event], reason=reason,
        from_version=champion_version, to_version=candidate_version, alias=alias,
        metric=metric, champion_score=champion_score, challenger_score=candidate_score,
        tolerance=tolerance, run_id=run_id, eval_bars=eval_bars, evidence=evidence)


def history(bind: Bind, model_name: str) -> list[RegistryEventView]:
    """Every decision about ``model_name``, oldest first."""
    rows = queries.registry_history(bind, model_name)
    out = [
        RegistryEventView(
            event=FROM_TABLE[r.event_type], model_name=r.model_name,
            candidate_version=None if r.to_version is None else str(r.to_version),
            champion_version=None if r.from_version is None else str(r.from_version),
            candidate_score=r.challenger_score, champion_score=r.champion_score,
            tolerance=r.tolerance, reason=r.reason, time=r.timestamp.isoformat(),
            metric=r.metric, run_id=r.run_id, eval_bars=r.eval_bars, evidence=r.evidence,
            alias=r.alias or "production")
        for r in rows
    ]
    return out[::-1]


def previous_production(bind: Bind, model_name: str, version: str | int) -> str | None:
    """The version that held production before ``version`` was promoted, or ``None``."""
    prev = queries.previous_production(bind, model_name, version)
    return None if prev is None else str(prev)
