"""The promotion gate: a pure decision on the candidate's net returns and two scores measured on
the same evaluation window.

Rule (:func:`decide_with_floor`, what the registry gate applies): cash is the floor, then the
champion/challenger rule with a relative tolerance::

    promote  iff  beats_cash(candidate)                      (no champion, or a cash champion)
    promote  iff  beats_cash(candidate)
                  and candidate >= champion - tolerance * |champion|       (a model champion)

``beats_cash`` (:func:`huracan.evaluation.evidence.beats_cash`) holds when the candidate's
compounded net return on the window is positive with a probabilistic Sharpe ratio of at least
``registry.min_psr`` (Bailey & Lopez de Prado 2012). With no champion, beating cash is the whole
test; a negative champion can no longer let a losing candidate through its tolerance.

:func:`decide` is the champion comparison alone (``|champion|`` keeps it meaningful for negative
scores: a champion at -1.0 with tolerance 0.05 admits candidates down to -1.05; with no champion
it admits anything, so it is never used without the floor by the registry). The same rule, read
the other way, is the rollback trigger: a production model whose current score fell below
``score_at_promotion - tolerance * |score_at_promotion|`` has degraded by more than the tolerance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from huracan.evaluation.evidence import CashVerdict


@dataclass(frozen=True)
class GateDecision:
    """Outcome of :func:`decide`: ``promote``, the ``threshold`` the candidate had to reach, and a
    one-line ``reason``."""

    promote: bool
    candidate_score: float
    champion_score: float | None
    tolerance: float
    threshold: float | None
    reason: str


def threshold(reference: float, tolerance: float) -> float:
    """Lowest acceptable score: ``reference - tolerance * |reference|``."""
    return reference - tolerance * abs(reference)


def decide(candidate: float, champion: float | None, tolerance: float = 0.05,
           metric: str = "composite_score") -> GateDecision:
    """The champion comparison alone: does ``candidate`` reach ``champion - tolerance x
    |champion|`` (both scores of ``metric``, higher is better, measured on the same window)?
    With no champion (or a non-finite one) it promotes; the registry gate never calls it
    without the cash floor: see :func:`decide_with_floor`.

    Raises:
        ValueError: negative ``tolerance``, or a NaN/infinite candidate score (a candidate that
            cannot be scored is never promoted silently: the caller records a rejection).
    """
    if tolerance < 0 or not math.isfinite(tolerance):
        raise ValueError(f"tolerance must be a finite fraction >= 0, got {tolerance}")
    if not math.isfinite(candidate):
        raise ValueError(f"candidate {metric} is not finite ({candidate})")
    if champion is None or not math.isfinite(champion):
        why = "no champion" if champion is None else f"champion {metric} is not finite"
        return GateDecision(True, candidate, champion, tolerance, None,
                            f"{why}: candidate promoted with {metric} {candidate:.4f}")
    bar = threshold(champion, tolerance)
    ok = candidate >= bar
    verb = "promoted" if ok else "rejected"
    cmp = ">=" if ok else "<"
    return GateDecision(
        ok, candidate, champion, tolerance, bar,
        f"candidate {metric} {candidate:.4f} {cmp} {bar:.4f} = champion {champion:.4f} - "
        f"{tolerance:g} x |{champion:.4f}|: {verb}")


def decide_with_floor(cash: CashVerdict, candidate: float, champion: float | None,
                      tolerance: float = 0.05,
                      metric: str = "composite_score") -> GateDecision:
    """The registry gate's rule: the candidate must beat cash, then (when there is a champion)
    pass :func:`decide`.

    Args:
        cash: the candidate's :func:`huracan.evaluation.evidence.beats_cash` verdict on the
            decision window (net returns after every cost, ``min_psr`` = ``registry.min_psr``).
        candidate: the candidate's ``metric`` on the window.
        champion: the champion's ``metric`` on the same bars; ``None`` when there is no champion
            or the champion is the ``cash`` policy (then beating cash is the whole test).
        tolerance: the relative tolerance of :func:`decide`, fraction >= 0.

    Returns:
        the decision; its ``reason`` starts with the cash verdict's reason (names cash).

    Raises:
        ValueError: as :func:`decide` (negative tolerance, non-finite candidate score).
    """
    if tolerance < 0 or not math.isfinite(tolerance):
        raise ValueError(f"tolerance must be a finite fraction >= 0, got {tolerance}")
    if not math.isfinite(candidate):
        raise ValueError(f"candidate {metric} is not finite ({candidate})")
    if not cash.beats:
        return GateDecision(False, candidate, champion, tolerance, None,
                            f"{cash.reason}: rejected (cash is the floor)")
    if champion is None:
        return GateDecision(True, candidate, None, tolerance, None,
                            f"{cash.reason}; no champion: candidate promoted with {metric} "
                            f"{candidate:.4f}")
    d = decide(candidate, champion, tolerance, metric)
    return GateDecision(d.promote, d.candidate_score, d.champion_score, d.tolerance,
                        d.threshold, f"{cash.reason}; {d.reason}")


def unseen_start(seen_until: list[str | None]) -> str | None:
    """The latest of the models' last seen bars (ISO timestamps of their last train or validation
    bar; ``None`` entries ignored): the evaluation window must start strictly after it."""
    times = [s for s in seen_until if s]
    if not times:
        return None
    import pandas as pd

    return max(pd.Timestamp(t) for t in times).isoformat()


def degraded(current: float, at_promotion: float, tolerance: float = 0.05) -> bool:
    """True when ``current`` fell below ``at_promotion - tolerance * |at_promotion|`` (a degradation
    of more than ``tolerance``); NaN ``current`` counts as degraded."""
    if not math.isfinite(current):
        return True
    return current < threshold(at_promotion, tolerance)
