"""The promotion gate: a pure decision on two scores measured on the same evaluation window.

Rule (champion/challenger with a relative tolerance): the candidate replaces the champion unless
it is worse by more than ``tolerance`` of the champion's magnitude::

    promote  iff  candidate >= champion - tolerance * |champion|

``|champion|`` keeps the rule meaningful for negative scores (a champion at -1.0 with tolerance
0.05 admits candidates down to -1.05). With no champion the candidate is promoted. The same rule,
read the other way, is the rollback trigger: a production model whose current score fell below
``score_at_promotion - tolerance * |score_at_promotion|`` has degraded by more than the tolerance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


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
    """Decide whether ``candidate`` replaces ``champion`` (both scores of ``metric``, higher is
    better, measured on the same window).

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
