"""The IC family against numbers computed by hand (arithmetic in the comments) and scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from huracan.evaluation import signal as s


def test_ic_and_rank_ic_hand_computed():
    f, y = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 3.0, 2.0, 4.0])
    # centred: f [-1.5, -0.5, 0.5, 1.5], y [-1.5, 0.5, -0.5, 1.5]
    # dot = 2.25 - 0.25 - 0.25 + 2.25 = 4; |f|^2 = |y|^2 = 5 -> 4 / 5
    assert s.information_coefficient(f, y) == (pytest.approx(0.8), 4)
    assert s.rank_ic(f, y) == (pytest.approx(0.8), 4)  # both are their own ranks


def test_rank_ic_sees_a_monotone_relation_that_pearson_discounts():
    f, y = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 3.0, 100.0])
    # y centred on 26.5: [-25.5, -24.5, -23.5, 73.5]; dot with f's = 149; |y|^2 = 7205
    assert s.information_coefficient(f, y).value == pytest.approx(149 / math.sqrt(5 * 7205))
    assert s.rank_ic(f, y).value == pytest.approx(1.0)


def test_rank_ic_gives_ties_their_mean_rank():
    # ranks of f: [1.5, 1.5, 3, 4], centred [-1, -1, 0.5, 1.5]; y ranks centred
    # [-1.5, -0.5, 0.5, 1.5]: dot 4.5, norms^2 4.5 and 5 -> 4.5 / sqrt(22.5)
    f, y = np.array([1.0, 1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0, 4.0])
    assert s.rank_ic(f, y).value == pytest.approx(4.5 / math.sqrt(22.5))


def test_non_finite_pairs_are_dropped_and_counted():
    f = np.array([1.0, 2.0, np.nan, 3.0, 4.0, 5.0])
    y = np.array([1.0, 3.0, 7.0, 2.0, 4.0, np.inf])
    # pairs left: (1,1), (2,3), (3,2), (4,4): the hand-computed 0.8 above
    assert s.information_coefficient(f, y) == (pytest.approx(0.8), 4)
    assert s.rank_ic(f, y) == (pytest.approx(0.8), 4)


def test_undefined_correlations_are_nan_not_zero():
    for one in (s.information_coefficient, s.rank_ic):
        value, pairs = one(np.array([1.0, 1.0, 1.0]), np.array([1.0, 2.0, 3.0]))
        assert math.isnan(value) and pairs == 3  # a constant forecast ranks nothing
        value, pairs = one(np.array([1.0, np.nan]), np.array([1.0, 2.0]))
        assert math.isnan(value) and pairs == 1
    with pytest.raises(ValueError, match="forecast has 3 values and label 2"):
        s.information_coefficient(np.ones(3), np.ones(2))


def test_ics_agree_with_scipy_on_a_noisy_forecast():
    rng = np.random.default_rng(7)
    y = rng.normal(size=500)
    f = 0.1 * y + rng.normal(size=500)
    f[::50] = np.round(f[::50], 1)  # a few ties
    assert s.information_coefficient(f, y).value == pytest.approx(
        stats.pearsonr(f, y).statistic, rel=1e-12)
    assert s.rank_ic(f, y).value == pytest.approx(stats.spearmanr(f, y).statistic, rel=1e-12)


def test_icir_is_mean_over_sample_std_of_the_finite_fold_ics():
    # [0.1, 0.3, 0.2]: mean 0.2, sample sd sqrt((0.01 + 0.01 + 0) / 2) = 0.1 -> ICIR 2
    out = s.information_ratio_of_ics([0.1, 0.3, float("nan"), 0.2])
    assert out.mean == pytest.approx(0.2) and out.icir == pytest.approx(2.0) and out.folds == 3
    one = s.information_ratio_of_ics([0.4, float("nan")])
    assert one.mean == pytest.approx(0.4) and math.isnan(one.icir) and one.folds == 1
    assert math.isnan(s.information_ratio_of_ics([0.2, 0.2]).icir)  # no dispersion
    assert s.information_ratio_of_ics([]).folds == 0


def test_fold_ics_score_each_fold_on_its_own_bars():
    f = np.array([1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0])
    y = np.array([1.0, 3.0, 2.0, 4.0, 3.0, 2.0, 1.0])
    folds = np.array([2, 2, 2, 2, 5, 5, 5])
    out = s.fold_ics(f, y, folds)
    assert list(out) == [2, 5]
    assert out[2] == (pytest.approx(0.8), 4) and out[5] == (pytest.approx(-1.0), 3)
    assert s.fold_ics(f, y, folds, rank=True)[5].value == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="one value per bar"):
        s.fold_ics(f, y, folds[:3])
