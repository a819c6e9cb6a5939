"""The cash floor (:func:`huracan.evaluation.evidence.beats_cash`): the rule every decision uses."""

from __future__ import annotations

import numpy as np
import pytest

from huracan.evaluation.evidence import beats_cash, window_evidence


def test_a_steady_positive_edge_beats_cash_and_says_why():
    r = np.random.default_rng(0).normal(0.001, 0.01, 500)
    v = beats_cash(r, 20)
    assert v.beats
    assert v.psr == pytest.approx(window_evidence(r, 20).psr)
    assert v.total_return == pytest.approx(np.prod(1 + r) - 1)
    assert "beats cash" in v.reason and "500 bars" in v.reason and "20 trades" in v.reason


def test_a_losing_strategy_and_a_flat_one_do_not_beat_cash():
    r = np.random.default_rng(1).normal(-0.0005, 0.01, 500)
    assert not beats_cash(r, 30).beats
    flat = beats_cash(np.zeros(200), 0)
    assert not flat.beats and flat.psr == 0.0 and "it is cash" in flat.reason


def test_a_positive_return_without_enough_evidence_stays_cash():
    # a few lucky bars: positive total, PSR far from 0.9
    r = np.zeros(300)
    r[[10, 200]] = [0.02, -0.015]
    v = beats_cash(r, 1)
    assert v.total_return > 0 and v.psr < 0.9 and not v.beats
    assert "< min_psr 0.9" in v.reason
    assert beats_cash(r, 1, min_psr=0.0).beats  # the bar is the setting's, not a constant


def test_min_psr_outside_zero_one_is_refused():
    with pytest.raises(ValueError, match="min_psr must be in"):
        beats_cash(np.ones(10) * 0.01, 1, min_psr=1.5)
