"""Gate arithmetic by hand, including negative scores, and the cash floor in front of it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from huracan.registry.gate import decide, decide_with_floor, degraded, threshold


def test_no_champion_promotes():
    d = decide(0.3, None)
    assert d.promote and d.threshold is None and "no champion" in d.reason


@pytest.mark.parametrize(
    ("candidate", "champion", "promote"),
    [
        (1.00, 1.00, True),     # equal
        (0.95, 1.00, True),     # exactly at the bar: 1.0 - 0.05 * 1.0 = 0.95
        (0.9499, 1.00, False),  # just below
        (2.50, 1.00, True),     # better
        (-1.05, -1.00, True),   # negative champion: bar = -1.0 - 0.05 * 1.0 = -1.05
        (-1.06, -1.00, False),
        (-0.5, -1.00, True),
        (0.0, 0.0, True),       # zero champion: bar 0
        (-0.0001, 0.0, False),
    ],
)
def test_promote_iff_candidate_reaches_bar(candidate, champion, promote):
    d = decide(candidate, champion, tolerance=0.05)
    assert d.promote is promote
    assert d.threshold == pytest.approx(champion - 0.05 * abs(champion))
    assert ("promoted" if promote else "rejected") in d.reason


def test_tolerance_is_configurable():
    assert threshold(2.0, 0.10) == pytest.approx(1.8)
    assert decide(1.85, 2.0, tolerance=0.10).promote
    assert not decide(1.85, 2.0, tolerance=0.05).promote


def test_bad_inputs():
    with pytest.raises(ValueError, match="tolerance"):
        decide(1.0, 1.0, tolerance=-0.1)
    with pytest.raises(ValueError, match="not finite"):
        decide(math.nan, 1.0)
    assert decide(1.0, math.nan).promote  # an unscorable champion does not block


def test_degradation_more_than_tolerance():
    assert not degraded(0.96, 1.0)   # 4 % worse
    assert not degraded(0.95, 1.0)   # exactly 5 %
    assert degraded(0.94, 1.0)       # 6 % worse
    assert degraded(-1.2, -1.0)      # negative: bar -1.05
    assert not degraded(-1.04, -1.0)
    assert degraded(math.nan, 1.0)


# ----------------------------------------------------------------------------- the cash floor
def _cash(returns, trades=20, min_psr=0.9):
    from huracan.evaluation.evidence import beats_cash

    return beats_cash(np.asarray(returns, dtype=np.float64), trades, min_psr=min_psr)


def _series(mean: float, n: int = 500, seed: int = 0) -> np.ndarray:
    """Net per-bar returns with a given mean and 1 % noise (seeded)."""
    return mean + np.random.default_rng(seed).normal(0.0, 0.01, n)


def test_no_champion_and_a_losing_candidate_is_rejected_naming_cash():
    cash = _cash(_series(-0.001))
    assert not cash.beats
    d = decide_with_floor(cash, 0.4, None)
    assert not d.promote and d.threshold is None
    assert "does not beat cash" in d.reason and "rejected (cash is the floor)" in d.reason


def test_no_champion_and_a_candidate_beating_cash_is_promoted():
    cash = _cash(_series(0.003))
    assert cash.beats and cash.psr >= 0.9
    d = decide_with_floor(cash, 0.4, None)
    assert d.promote and "beats cash" in d.reason and "no champion" in d.reason


def test_a_negative_champion_no_longer_lets_a_losing_candidate_through():
    # within 5 % of a negative champion: decide alone promotes, the floor refuses
    assert decide(-1.04, -1.0).promote
    d = decide_with_floor(_cash(_series(-0.002)), -1.04, -1.0)
    assert not d.promote and "cash" in d.reason and d.champion_score == -1.0


def test_beating_cash_is_not_enough_against_a_better_champion():
    cash = _cash(_series(0.003))
    worse = decide_with_floor(cash, 0.5, 1.0)
    assert not worse.promote and worse.threshold == pytest.approx(0.95)
    assert worse.reason.startswith("candidate beats cash") and "rejected" in worse.reason
    assert decide_with_floor(cash, 0.96, 1.0).promote


def test_min_psr_is_the_floor_not_a_constant():
    r = np.tile([0.011, -0.0098], 150)  # positive, weak evidence (PSR about 0.84)
    loose, strict = _cash(r, min_psr=0.0), _cash(r, min_psr=0.99)
    assert loose.total_return > 0 and 0.5 < strict.psr < 0.99
    assert decide_with_floor(loose, 0.1, None).promote
    assert not decide_with_floor(strict, 0.1, None).promote


def test_a_flat_candidate_is_cash_and_never_promoted():
    d = decide_with_floor(_cash(np.zeros(400), trades=0), 0.249, None)
    assert not d.promote and "it is cash" in d.reason


def test_floor_bad_inputs():
    with pytest.raises(ValueError, match="not finite"):
        decide_with_floor(_cash(_series(0.003)), math.nan, None)
    with pytest.raises(ValueError, match="tolerance"):
        decide_with_floor(_cash(_series(0.003)), 1.0, 1.0, tolerance=-1)
