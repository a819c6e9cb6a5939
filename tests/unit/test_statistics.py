"""huracan.evaluation.statistics against hand computations, published examples and properties.

Hand computations use scipy.stats.norm directly, never the function under test. Every random
generator is seeded.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from huracan.evaluation import metrics
from huracan.evaluation import statistics as st

R = np.array([0.01, -0.02, 0.03, 0.0])  # the same four bars as tests/unit/test_metrics.py


# --------------------------------------------------------------------------- per-bar Sharpe


def test_per_bar_sharpe_matches_metrics_with_one_bar_a_year():
    # mean 0.005, sample sd 0.0208167 (see test_metrics) -> 0.240192
    assert st.per_bar_sharpe(R) == pytest.approx(0.240192, abs=1e-6)
    assert st.per_bar_sharpe(R) == pytest.approx(metrics.sharpe_ratio(R, 1))
    m = np.column_stack([R, -R, np.zeros(4)])
    np.testing.assert_allclose(st.per_bar_sharpe_columns(m), [0.240192, -0.240192, 0.0], atol=1e-6)
    assert st.per_bar_sharpe(np.zeros(5)) == 0.0
    assert st.per_bar_sharpe([0.01]) == 0.0


# --------------------------------------------------------------------------- PSR


def test_psr_hand_computed_small_series():
    # R = [0.01, -0.02, 0.03, 0]: SR = 0.005 / sqrt(4.3333e-4), SR^2 = 2.5e-5 / 4.3333e-4 = 3/52.
    # Deviations 0.005, -0.025, 0.025, -0.005 (biased moments, 1/n):
    #   m2 = 1.3e-3 / 4 = 3.25e-4, m3 = 0 -> skew 0,
    #   m4 = (2 * 6.25e-10 + 2 * 3.90625e-7) / 4 = 1.95625e-7 -> kurt = m4 / m2^2 = 313/169.
    # Radicand = 1 - 0 + (313/169 - 1) / 4 * 3/52 = 1 + 27/2197 = 2224/2197.
    # z = sqrt(3/52) * sqrt(n - 1 = 3) / sqrt(2224/2197).
    z = math.sqrt(3 / 52) * math.sqrt(3) / math.sqrt(2224 / 2197)
    assert z == pytest.approx(0.413492, abs=1e-6)
    assert st.probabilistic_sharpe_ratio(R) == pytest.approx(norm.cdf(z), abs=1e-12)
    # against a benchmark of 0.1 per bar
    z_b = (math.sqrt(3 / 52) - 0.1) * math.sqrt(3) / math.sqrt(2224 / 2197)
    assert st.probabilistic_sharpe_ratio(R, benchmark_sr=0.1) == pytest.approx(norm.cdf(z_b))


def test_psr_from_moments_normal_case_by_hand():
    # SR 0.1 per bar, n = 101, normal: z = 0.1 * 10 / sqrt(1 + 0.01 / 2) = 0.997509
    assert st.psr_from_moments(0.1, 101, 0.0, 3.0) == pytest.approx(norm.cdf(0.997509), abs=1e-6)


def test_psr_published_example_sharpe_efficient_frontier():
    """Bailey & López de Prado (2012), "The Sharpe Ratio Efficient Frontier", J. of Risk 15(2).

    The paper's hedge-fund example: 24 monthly returns (n = 24), annualised SR 1.585 (per bar
    1.585 / sqrt(12) = 0.45755), skewness -2.448, kurtosis 10.164 -> PSR(0) = 0.913. The inputs
    are those of the paper as quoted by the test suite of the open-source pypbo package
    (esvhd/pypbo, tests/pbo_tests.py, "Example from The Sharpe Ratio Efficient Frontier", value
    0.91323430688486018); the paper body itself could not be read from this machine.
    By hand: radicand = 1 + 2.448 * 0.45755 + 9.164 / 4 * 0.20935 = 2.5997,
    z = 0.45755 * sqrt(23) / sqrt(2.5997) = 1.3609, Phi(z) = 0.9132.
    """
    sr = 1.585 / math.sqrt(12)
    assert st.psr_from_moments(sr, 24, -2.448, 10.164) == pytest.approx(0.913234, abs=1e-6)
    # the same number through the standard error: PSR = Phi(SR / sigma(SR))
    se = st.sharpe_standard_error(sr, 24, -2.448, 10.164)
    assert norm.cdf(sr / se) == pytest.approx(0.913234, abs=1e-6)


def test_psr_is_one_half_at_its_own_sharpe():
    rng = np.random.default_rng(7)
    r = rng.normal(0.001, 0.01, size=300)
    assert st.probabilistic_sharpe_ratio(r, benchmark_sr=st.per_bar_sharpe(r)) == pytest.approx(0.5)
    assert st.psr_from_moments(0.3, 50, -1.0, 7.0, benchmark_sr=0.3) == pytest.approx(0.5)


def test_psr_increases_with_track_record_when_above_benchmark():
    values = [st.psr_from_moments(0.05, n, -0.5, 5.0) for n in (10, 100, 1_000, 10_000)]
    assert values == sorted(values)
    assert values[0] < values[-1]
    below = [st.psr_from_moments(-0.05, n, 0.0, 3.0) for n in (10, 100, 1_000)]
    assert below == sorted(below, reverse=True)


def test_psr_symmetry_and_moment_penalties():
    # Flipping the sign of SR, SR* and skew mirrors the probability.
    p = st.psr_from_moments(0.2, 60, -1.0, 6.0, benchmark_sr=0.05)
    q = st.psr_from_moments(-0.2, 60, 1.0, 6.0, benchmark_sr=-0.05)
    assert p + q == pytest.approx(1.0)
    # negative skew and fat tails lower the confidence in a positive Sharpe
    normal = st.psr_from_moments(0.2, 60, 0.0, 3.0)
    assert st.psr_from_moments(0.2, 60, -1.0, 3.0) < normal
    assert st.psr_from_moments(0.2, 60, 0.0, 9.0) < normal


def test_psr_degenerate_series_are_no_evidence():
    assert st.probabilistic_sharpe_ratio(np.zeros(100)) == 0.0  # never trades
    assert st.probabilistic_sharpe_ratio(np.full(100, 0.001)) == 0.0  # zero variance
    assert st.per_bar_sharpe(np.full(100, 0.001)) == 0.0  # not 1e16 via a 1e-19 rounding "sd"
    assert st.probabilistic_sharpe_ratio([0.01]) == 0.0
    assert st.probabilistic_sharpe_ratio([]) == 0.0
    assert st.psr_from_moments(0.5, 1, 0.0, 3.0) == 0.0
    with pytest.raises(ValueError, match="NaN"):
        st.probabilistic_sharpe_ratio([0.01, np.nan])


def test_psr_negative_radicand_is_clipped_with_a_warning():
    # kurtosis 0 (an EXCESS kurtosis passed by mistake): 1 + (0 - 1) / 4 * 3^2 = -1.25 < 0
    with pytest.warns(RuntimeWarning, match="excess kurtosis"):
        assert st.psr_from_moments(3.0, 10, 0.0, 0.0) == 1.0
    with pytest.warns(RuntimeWarning):
        assert st.psr_from_moments(-3.0, 10, 0.0, 0.0) == 0.0


# --------------------------------------------------------------------------- SE and MinTRL


def test_sharpe_standard_error_by_hand():
    # normal: sqrt((1 + 0.1^2 / 2) / (101 - 1)) = sqrt(1.005 / 100) = 0.1002497
    assert st.sharpe_standard_error(0.1, 101) == pytest.approx(0.1002497, abs=1e-7)
    # skew -1, kurtosis 6, SR 0.2, n 51: (1 + 0.2 + 5/4 * 0.04) / 50 = 1.25 / 50 = 0.025
    assert st.sharpe_standard_error(0.2, 51, -1.0, 6.0) == pytest.approx(math.sqrt(0.025))
    with pytest.raises(ValueError, match="n >= 2"):
        st.sharpe_standard_error(0.1, 1)


def test_minimum_track_record_length_by_hand_and_as_inverse_of_psr():
    # normal, SR 0.2 per bar vs 0, 95%: 1 + (1 + 0.04 / 2) * (z_0.95 / 0.2)^2 = 69.9914
    z = norm.ppf(0.95)
    expected = 1 + 1.02 * (z / 0.2) ** 2
    assert expected == pytest.approx(69.9914, abs=1e-4)
    assert st.minimum_track_record_length(0.2, 0.0) == pytest.approx(expected)
    # at exactly MinTRL bars, the PSR equals the confidence
    n_star = st.minimum_track_record_length(0.15, 0.05, -1.5, 8.0, confidence=0.9)
    assert st.psr_from_moments(0.15, n_star, -1.5, 8.0, 0.05) == pytest.approx(0.9)  # type: ignore[arg-type]
    # negative skew / fat tails need a longer record
    assert n_star > st.minimum_track_record_length(0.15, 0.05, 0.0, 3.0, confidence=0.9)


def test_minimum_track_record_length_reference_values():
    """Cross-check against an independent implementation (not a figure read in the paper).

    Inputs and values from pypbo's tests (esvhd/pypbo, tests/pbo_tests.py, test_minTRL, which
    attributes the cases to figure 8 of Bailey & López de Prado 2012): annualised SR 2 vs 1 on
    daily bars (250 a year), normal, 95% -> 2.7312 years; SR 3 vs 2.5 on monthly bars, skew
    -0.72, kurtosis 5.78 -> 27.353 years.
    """
    daily = st.minimum_track_record_length(2 / math.sqrt(250), 1 / math.sqrt(250)) / 250
    assert daily == pytest.approx(2.7311878, abs=1e-6)
    monthly = (
        st.minimum_track_record_length(
            3 / math.sqrt(12), 2.5 / math.sqrt(12), -0.72, 5.78, confidence=0.95
        )
        / 12
    )
    assert monthly == pytest.approx(27.3529202, abs=1e-6)


def test_minimum_track_record_length_edge_cases():
    assert st.minimum_track_record_length(0.1, 0.1) == math.inf
    assert st.minimum_track_record_length(-0.1, 0.0) == math.inf
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="confidence"):
            st.minimum_track_record_length(0.2, 0.0, confidence=bad)


# --------------------------------------------------------------------------- expected max SR


def test_expected_max_sharpe_by_hand():
    # N = 100, V = 1: 0.42278 * Phi^-1(0.99) + 0.57722 * Phi^-1(1 - 1 / (100 e))
    gamma = 0.5772156649015329
    hand = (1 - gamma) * norm.ppf(0.99) + gamma * norm.ppf(1 - 1 / (100 * math.e))
    assert hand == pytest.approx(2.530603, abs=1e-6)
    assert st.expected_max_sharpe(100, 1.0) == pytest.approx(hand)
    # scales with sqrt(V)
    assert st.expected_max_sharpe(100, 0.04) == pytest.approx(0.2 * hand)


def test_expected_max_sharpe_single_trial_and_monotonicity():
    assert st.expected_max_sharpe(1, 0.5) == 0.0
    assert st.expected_max_sharpe(50, 0.0) == 0.0
    values = [st.expected_max_sharpe(n, 0.01) for n in (2, 5, 10, 100, 1_000, 10_000)]
    assert (np.diff(values) > 0).all()
    assert values[0] > 0.0
    for bad_n in (0, -3, 2.5):
        with pytest.raises(ValueError, match="n_trials"):
            st.expected_max_sharpe(bad_n, 0.01)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sr_variance"):
        st.expected_max_sharpe(10, -0.1)


@pytest.mark.parametrize("n_trials", [10, 100, 1_000])
def test_expected_max_sharpe_approximates_the_simulated_maximum(n_trials):
    # The paper's formula is an extreme-value approximation: within 3% of a seeded simulation
    # of E[max of N standard normals] (exact values: 1.5388, 2.5076, 3.2414).
    rng = np.random.default_rng(2014)
    simulated = rng.standard_normal((4_000, n_trials)).max(axis=1).mean()
    assert st.expected_max_sharpe(n_trials, 1.0) == pytest.approx(simulated, rel=0.03)


# --------------------------------------------------------------------------- DSR


def test_dsr_published_example():
    """Bailey & López de Prado (2014), "The Deflated Sharpe Ratio", J. Portfolio Mgmt 40(5).

    The paper's numerical example: N = 100 trials, variance of the trials' annualised Sharpe
    ratios 1/2, best annualised SR 2.5 over T = 1,250 daily returns (5 years of 250 days),
    skewness -3, kurtosis 10 -> DSR = 0.9004. Per bar: SR = 2.5 / sqrt(250) = 0.158114,
    V = 0.5 / 250 = 0.002; the expected maximum (SR_0) is sqrt(0.002) * 2.530603 = 0.113172.
    (pypbo's tests reproduce the same example at 0.90039683444939034.)
    """
    sr0 = st.expected_max_sharpe(100, 0.5 / 250)
    assert sr0 == pytest.approx(math.sqrt(0.002) * 2.530603, abs=1e-6)
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    dsr = st.psr_from_moments(2.5 / math.sqrt(250), 1250, -3.0, 10.0, benchmark_sr=sr0)
    assert dsr == pytest.approx(0.9004, abs=5e-5)
    assert dsr == pytest.approx(0.900397, abs=1e-6)


def _candidates(seed: int = 3, t: int = 500, n: int = 20) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.01, size=(t, n))


def test_dsr_from_returns_matches_hand_assembly():
    m = _candidates()
    trial = st.per_bar_sharpe_columns(m)
    best = m[:, int(np.argmax(trial))]
    res = st.deflated_sharpe_ratio(best, trial_sharpes=trial)

    # assembled by hand with scipy: biased moments, variance of the trials with ddof=1
    from scipy import stats as sps

    sr = best.mean() / best.std(ddof=1)
    g3, g4 = sps.skew(best), sps.kurtosis(best, fisher=False)
    v = trial.var(ddof=1)
    gamma = 0.5772156649015329
    sr0 = math.sqrt(v) * (
        (1 - gamma) * norm.ppf(1 - 1 / 20) + gamma * norm.ppf(1 - 1 / (20 * math.e))
    )
    rad = 1 - g3 * sr + (g4 - 1) / 4 * sr**2
    assert res.benchmark_sr == pytest.approx(sr0)
    assert res.dsr == pytest.approx(norm.cdf((sr - sr0) * math.sqrt(499) / math.sqrt(rad)))
    assert res.psr == pytest.approx(norm.cdf(sr * math.sqrt(499) / math.sqrt(rad)))
    assert (res.n_trials, res.n_obs) == (20, 500)
    assert res.sr_variance == pytest.approx(v)
    assert res.sharpe == pytest.approx(sr)
    # The best of 20 pure-noise candidates looks significant (PSR 0.984 with this seed) but
    # deflation brings it back to about a coin flip (0.528).
    assert res.psr > 0.95
    assert res.dsr < 0.6


def test_dsr_given_n_and_v_equals_trial_sharpes_path():
    m = _candidates(seed=11)
    trial = st.per_bar_sharpe_columns(m)
    best = m[:, int(np.argmax(trial))]
    a = st.deflated_sharpe_ratio(best, trial_sharpes=trial)
    b = st.deflated_sharpe_ratio(best, n_trials=20, sr_variance=float(trial.var(ddof=1)))
    assert a == b


def test_dsr_at_most_psr_and_equal_for_one_trial():
    rng = np.random.default_rng(5)
    r = rng.normal(0.002, 0.01, size=400)
    one = st.deflated_sharpe_ratio(r, trial_sharpes=[st.per_bar_sharpe(r)])
    assert one.n_trials == 1 and one.sr_variance == 0.0 and one.benchmark_sr == 0.0
    assert one.dsr == pytest.approx(one.psr)
    assert one.psr == pytest.approx(st.probabilistic_sharpe_ratio(r))
    for n in (2, 10, 100, 1000):
        res = st.deflated_sharpe_ratio(r, n_trials=n, sr_variance=0.002)
        assert res.dsr <= res.psr
    more = [st.deflated_sharpe_ratio(r, n_trials=n, sr_variance=0.002).dsr for n in (2, 10, 100)]
    assert more == sorted(more, reverse=True)


def test_dsr_degenerate_and_argument_errors():
    flat = st.deflated_sharpe_ratio(np.zeros(50), n_trials=10, sr_variance=0.01)
    assert flat.dsr == 0.0 and flat.psr == 0.0 and flat.n_obs == 50
    r = _candidates()[:, 0]
    with pytest.raises(ValueError, match="not both"):
        st.deflated_sharpe_ratio(r, trial_sharpes=[0.1, 0.2], n_trials=2)
    with pytest.raises(ValueError, match="both n_trials and sr_variance"):
        st.deflated_sharpe_ratio(r, n_trials=5)
    with pytest.raises(ValueError, match="both n_trials and sr_variance"):
        st.deflated_sharpe_ratio(r)
    with pytest.raises(ValueError, match="empty"):
        st.deflated_sharpe_ratio(r, trial_sharpes=[])
    with pytest.raises(ValueError, match="NaN"):
        st.deflated_sharpe_ratio(r, trial_sharpes=[0.1, np.nan])


# --------------------------------------------------------------------------- PBO


def _column_mean(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=0)


def test_pbo_hand_enumerated_s4_with_ties():
    # One bar per block (T = S = 4), N = 3 candidates A, B, C, metric = mean.
    m = np.array(
        [
            [3.0, 1.0, 2.0],  # block 0
            [1.0, 2.0, 3.0],  # block 1
            [2.0, 3.0, 1.0],  # block 2
            [4.0, 0.0, 2.0],  # block 3
        ]
    )
    # Sums (mean = sum / 2) over the IS blocks -> IS best; OOS sums -> rank of that one (1..3):
    # IS {0,1}: A4 B3 C5 -> C; OOS {2,3}: A6 B3 C3, C tied with B -> rank 1.5, w = 1.5/4
    # IS {0,2}: A5 B4 C3 -> A; OOS {1,3}: A5 B2 C5, A tied with C -> rank 2.5, w = 2.5/4
    # IS {0,3}: A7 B1 C4 -> A; OOS {1,2}: A3 B5 C4 -> rank 1, w = 1/4
    # IS {1,2}: A3 B5 C4 -> B; OOS {0,3}: A7 B1 C4 -> rank 1, w = 1/4
    # IS {1,3}: A5 B2 C5 -> A (tie with C, lowest index); OOS {0,2}: A5 B4 C3 -> rank 3, w = 3/4
    # IS {2,3}: A6 B3 C3 -> A; OOS {0,1}: A4 B3 C5 -> rank 2, w = 2/4 -> logit 0 (counts)
    w = np.array([1.5, 2.5, 1, 1, 3, 2]) / 4
    res = st.probability_of_backtest_overfitting(m, n_splits=4, metric=_column_mean)
    assert res.n_combinations == 6 and res.n_splits == 4
    np.testing.assert_allclose(res.logits, np.log(w / (1 - w)))
    assert res.pbo == pytest.approx(4 / 6)  # combos 1, 3, 4, 6 have logit <= 0
    np.testing.assert_allclose(res.is_best, [2.5, 2.5, 3.5, 2.5, 2.5, 3.0])
    np.testing.assert_allclose(res.oos_of_best, [1.5, 2.5, 1.5, 0.5, 2.5, 2.0])
    assert res.prob_oos_loss == 0.0
    assert not res.logits.flags.writeable


def test_pbo_hand_computed_s2_with_sharpe():
    # Two blocks of two bars, N = 2. Sharpe of two bars [x, y] = ((x+y)/2) / (|x-y| / sqrt 2).
    # A: block 0 [0.01, 0.03] -> 0.02 / 0.014142 = sqrt 2;  block 1 [0.03, -0.01] -> sqrt 2 / 4
    # B: block 0 [0.00, 0.02] -> 1 / sqrt 2;                block 1 [0.02, 0.00]  -> 1 / sqrt 2
    # IS {0}: A best (1.414 > 0.707), OOS {1}: A 0.354 < B 0.707 -> rank 1, w = 1/3
    # IS {1}: B best (0.707 > 0.354), OOS {0}: B 0.707 < A 1.414 -> rank 1, w = 1/3
    m = np.array([[0.01, 0.00], [0.03, 0.02], [0.03, 0.02], [-0.01, 0.00]])
    res = st.probability_of_backtest_overfitting(m, n_splits=2)
    assert res.n_combinations == 2
    np.testing.assert_allclose(res.logits, [math.log(0.5), math.log(0.5)])
    assert res.pbo == 1.0
    np.testing.assert_allclose(res.is_best, [math.sqrt(2), 1 / math.sqrt(2)])
    np.testing.assert_allclose(res.oos_of_best, [math.sqrt(2) / 4, 1 / math.sqrt(2)])


def test_pbo_dominant_candidate_is_not_overfit():
    m = np.random.default_rng(21).normal(0.0, 0.01, size=(800, 10))
    m[:, 4] += 0.004  # Sharpe ~0.4 a bar against ~0 for the others, in every block
    res = st.probability_of_backtest_overfitting(m, n_splits=8)
    assert res.n_combinations == 70
    assert res.pbo == 0.0
    np.testing.assert_allclose(res.logits, math.log(10))  # ranked best OOS: w = 10/11
    assert res.prob_oos_loss == 0.0


def test_pbo_pure_noise_is_near_one_half():
    m = np.random.default_rng(1).normal(0.0, 0.01, size=(1000, 20))
    res = st.probability_of_backtest_overfitting(m, n_splits=10)
    assert res.n_combinations == 252
    assert 0.3 < res.pbo < 0.7  # 0.556 with this seed; seeds 0-5 give 0.40-0.57


def test_pbo_default_path_matches_generic_metric_path():
    # The default Sharpe is computed from block sums; a wrapper takes the per-combination path.
    m = np.random.default_rng(9).normal(0.0003, 0.01, size=(203, 6))  # 203 = 8 * 25 + 3
    m[:, 2] = 0.0  # never trades
    m[:100, 3] = 0.001  # flat in the early blocks
    fast = st.probability_of_backtest_overfitting(m, n_splits=8)
    slow = st.probability_of_backtest_overfitting(
        m, n_splits=8, metric=lambda x: st.per_bar_sharpe_columns(x)
    )
    assert fast.pbo == slow.pbo
    np.testing.assert_allclose(fast.logits, slow.logits)
    np.testing.assert_allclose(fast.is_best, slow.is_best, atol=1e-12)
    np.testing.assert_allclose(fast.oos_of_best, slow.oos_of_best, atol=1e-12)
    # the 3 oldest rows are dropped: the same result as without them
    trimmed = st.probability_of_backtest_overfitting(m[3:], n_splits=8)
    np.testing.assert_allclose(trimmed.logits, fast.logits)


def test_pbo_all_tied_candidates_count_as_overfit():
    res = st.probability_of_backtest_overfitting(np.zeros((8, 3)), n_splits=4)
    assert res.pbo == 1.0
    np.testing.assert_allclose(res.logits, 0.0)


@pytest.mark.parametrize(
    ("shape", "n_splits", "match"),
    [
        ((100, 1), 4, "at least 2 candidate"),
        ((100, 3), 5, "even integer"),
        ((100, 3), 0, "even integer"),
        ((100, 3), 1, "even integer"),
        ((7, 3), 8, "fewer than n_splits"),
    ],
)
def test_pbo_rejects_bad_input(shape, n_splits, match):
    with pytest.raises(ValueError, match=match):
        st.probability_of_backtest_overfitting(np.ones(shape), n_splits=n_splits)


def test_pbo_rejects_bad_matrix_and_metric():
    with pytest.raises(ValueError, match="2-D"):
        st.probability_of_backtest_overfitting(np.ones(10), n_splits=2)
    with pytest.raises(ValueError, match="NaN"):
        st.probability_of_backtest_overfitting(np.full((4, 2), np.nan), n_splits=2)
    with pytest.raises(ValueError, match="metric must return 2 values"):
        st.probability_of_backtest_overfitting(
            np.ones((4, 2)), n_splits=2, metric=lambda x: np.array([x.mean()])
        )


# --------------------------------------------------------------------------- bootstrap


def _pair(seed: int = 0, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.normal(0.0005, 0.01, size=n)
    b = 0.6 * a + rng.normal(0.0, 0.008, size=n)
    return a, b


def test_bootstrap_reproducible_and_contains_estimate():
    a, b = _pair()
    one = st.paired_bootstrap_interval(a, b, st.per_bar_sharpe, n_resamples=300, seed=42)
    two = st.paired_bootstrap_interval(a, b, st.per_bar_sharpe, n_resamples=300, seed=42)
    assert one == two
    other = st.paired_bootstrap_interval(a, b, st.per_bar_sharpe, n_resamples=300, seed=43)
    assert (other.low, other.high) != (one.low, one.high)
    assert one.estimate == pytest.approx(st.per_bar_sharpe(a) - st.per_bar_sharpe(b))
    assert one.low <= one.estimate <= one.high
    assert (one.confidence, one.n_resamples) == (0.9, 300)
    assert one.block_length >= 1
    wider = st.paired_bootstrap_interval(
        a, b, st.per_bar_sharpe, n_resamples=300, confidence=0.99, seed=42
    )
    assert wider.low <= one.low and wider.high >= one.high


def test_bootstrap_identical_series_gives_zero_interval():
    a, _ = _pair(seed=1)
    res = st.paired_bootstrap_interval(
        a, a.copy(), lambda r: metrics.sharpe_ratio(r, 8760), n_resamples=200
    )
    assert (res.estimate, res.low, res.high) == (0.0, 0.0, 0.0)


def test_bootstrap_shifted_series_excludes_zero():
    a, _ = _pair(seed=2)
    # B earns 0.005 less than A on every bar: resampled on the same bars, A's Sharpe is higher
    # on every resample, so the whole interval lies above 0.
    res = st.paired_bootstrap_interval(a, a - 0.005, st.per_bar_sharpe, n_resamples=200, seed=3)
    assert res.low > 0.0
    # and the other way round
    neg = st.paired_bootstrap_interval(a - 0.005, a, st.per_bar_sharpe, n_resamples=200, seed=3)
    assert neg.high < 0.0


def test_bootstrap_block_length_automatic_and_explicit():
    rng = np.random.default_rng(4)
    e = rng.normal(0.0, 0.01, size=600)
    ar = np.empty_like(e)
    ar[0] = e[0]
    for i in range(1, len(e)):  # strongly autocorrelated AR(1), phi = 0.9
        ar[i] = 0.9 * ar[i - 1] + e[i]
    auto = st.paired_bootstrap_interval(ar, e, np.mean, n_resamples=100, seed=0)
    white = st.paired_bootstrap_interval(e, e[::-1].copy(), np.mean, n_resamples=100, seed=0)
    assert auto.block_length > white.block_length >= 1
    fixed = st.paired_bootstrap_interval(ar, e, np.mean, n_resamples=100, expected_block=7)
    assert fixed.block_length == 7
    flat = st.paired_bootstrap_interval(np.zeros(50), np.zeros(50), np.mean, n_resamples=50)
    assert flat.block_length == 1 and (flat.low, flat.high) == (0.0, 0.0)


def test_bootstrap_rejects_bad_input():
    a, b = _pair(n=50)
    with pytest.raises(ValueError, match="same length"):
        st.paired_bootstrap_interval(a, b[:-1], np.mean)
    with pytest.raises(ValueError, match="confidence"):
        st.paired_bootstrap_interval(a, b, np.mean, confidence=1.0)
    with pytest.raises(ValueError, match="expected_block"):
        st.paired_bootstrap_interval(a, b, np.mean, expected_block=0)
    with pytest.raises(ValueError, match="expected_block"):
        st.paired_bootstrap_interval(a, b, np.mean, expected_block=51)
    with pytest.raises(ValueError, match="n_resamples"):
        st.paired_bootstrap_interval(a, b, np.mean, n_resamples=0)
    with pytest.raises(ValueError, match="at least 2 bars"):
        st.paired_bootstrap_interval(a[:1], b[:1], np.mean)
    with pytest.raises(ValueError, match="NaN"):
        st.paired_bootstrap_interval(np.full(5, np.nan), np.zeros(5), np.mean)
