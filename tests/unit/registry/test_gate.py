"""Gate arithmetic by hand, including negative scores."""

from __future__ import annotations

import math

import pytest

from huracan.registry.gate import decide, degraded, threshold


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
