"""Statistics for evidence-based decisions about trading strategies.

Pure functions: NumPy arrays in, floats / NumPy arrays / small frozen dataclasses out. No I/O, no
MLflow, every random generator seeded.

Units
-----
Every Sharpe ratio taken or returned here is PER BAR (``mean / std`` of the per-bar returns, sample
standard deviation ``ddof=1``, risk-free rate 0), never annualised: the formulas of Bailey & López
de Prado are stated in the sampling frequency of the returns. Convert with::

    SR_annual = SR_bar * sqrt(bars_per_year)     # e.g. 8,760 bars a year for 1h crypto bars
    SR_bar    = SR_annual / sqrt(bars_per_year)
    V_bar     = V_annual / bars_per_year          # a variance of Sharpe ratios

Track-record lengths (``n``, ``n_obs``, :func:`minimum_track_record_length`) are numbers of bars;
divide by ``bars_per_year`` for years.

Moments
-------
Skewness and kurtosis of a return series are the plain (biased, ``1/n``) sample moments of
``scipy.stats.skew`` and ``scipy.stats.kurtosis(fisher=False)`` (scipy's defaults). Kurtosis
is NOT the excess kurtosis: a normal distribution has kurtosis 3.

Degenerate input
----------------
A series with fewer than 2 returns or zero variance (a strategy that never trades) carries no
evidence of skill: its Sharpe ratio is 0.0 (as in :mod:`huracan.evaluation.metrics`; "zero
variance" means all returns exactly equal) and its PSR / DSR is 0.0, not NaN. 0.0 fails every
"probability of skill >= threshold" gate and, unlike NaN, does not poison averages or
comparisons (``NaN < 0.5`` and ``NaN >= 0.95`` are both False).

References
----------
- D. H. Bailey & M. López de Prado (2012), "The Sharpe Ratio Efficient Frontier", Journal of
  Risk 15(2): PSR, the standard error of the Sharpe ratio, the minimum track record length.
- D. H. Bailey & M. López de Prado (2014), "The Deflated Sharpe Ratio: Correcting for Selection
  Bias, Backtest Overfitting and Non-Normality", Journal of Portfolio Management 40(5): DSR and
  the expected maximum Sharpe ratio of N trials.
- D. H. Bailey, J. M. Borwein, M. López de Prado & Q. J. Zhu (2015/2017), "The Probability of
  Backtest Overfitting", Journal of Computational Finance 20(4): CSCV and PBO.
- D. N. Politis & J. P. Romano (1994), "The Stationary Bootstrap", Journal of the American
  Statistical Association 89(428): 1303-1313.
- D. N. Politis & H. White (2004), "Automatic Block-Length Selection for the Dependent
  Bootstrap", Econometric Reviews 23(1): 53-70, and the correction by A. Patton, D. N. Politis &
  H. White (2009), Econometric Reviews 28(4): 372-375.
- A. W. Lo (2002), "The Statistics of Sharpe Ratios", Financial Analysts Journal 58(4);
  E. Mertens (2002), "Comments on variance of the IID estimator in Lo (2002)", working paper.

Equation numbers are not cited (they were not checked against the journal versions): the
docstrings below name the section and write each formula out in full.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

#: Euler-Mascheroni constant (gamma in Bailey & López de Prado 2014)
EULER_GAMMA = 0.5772156649015329

#: floor of the Sharpe-variance radicand ``1 - g3 SR + (g4 - 1) / 4 SR^2`` (see ``_radicand``)
_MIN_RADICAND = float(np.finfo(np.float64).eps)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _as_returns(returns: npt.ArrayLike, name: str = "returns") -> np.ndarray:
    r = np.asarray(returns, dtype=np.float64).reshape(-1)
    if not np.isfinite(r).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    return r


def _degenerate(r: np.ndarray) -> bool:
    """Fewer than 2 returns, or all equal (zero variance).

    Tested as ``max == min``, exactly: ``std`` of a constant series such as ``[0.001] * 100`` is
    about 1e-19, not 0, through the rounding of its mean, and would give a Sharpe of 1e16.
    """
    return len(r) < 2 or bool(r.max() == r.min())


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")


def _radicand(sr: float, skew: float, kurtosis: float) -> float:
    """``1 - g3 SR + (g4 - 1) / 4 SR^2``, the asymptotic variance of the Sharpe estimator × n.

    For moments of any real distribution (kurtosis >= 1 + skew², Pearson's inequality, which the
    sample moments used here always satisfy) this quadratic in SR has a non-positive discriminant,
    so it is never negative. A negative value therefore means inconsistent moments were passed,
    typically the EXCESS kurtosis instead of the kurtosis: a RuntimeWarning is emitted. Negative
    and zero values are clipped to machine epsilon, so that a zero standard error sends the PSR to
    1.0 (SR above the benchmark), 0.0 (below) or 0.5 (equal) instead of a division by zero.
    """
    value = 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr**2
    if value < 0.0:
        warnings.warn(
            f"negative Sharpe-variance radicand {value:.6g} (sr={sr}, skew={skew}, "
            f"kurtosis={kurtosis}): inconsistent moments, was the excess kurtosis passed? "
            "Clipped to machine epsilon.",
            RuntimeWarning,
            stacklevel=3,
        )
    return max(value, _MIN_RADICAND)


def per_bar_sharpe(returns: npt.ArrayLike) -> float:
    """Per-bar Sharpe ratio ``mean(r) / std(r, ddof=1)`` of a 1-D series of per-bar returns.

    Same convention as :func:`huracan.evaluation.metrics.sharpe_ratio` with
    ``periods_per_year=1``: fewer than 2 returns or zero variance give 0.0. One difference: zero
    variance is tested exactly (all returns equal), so a constant non-zero series such as
    ``[0.001] * 100`` gives 0.0 here, where a rounding-level ``std`` of about 1e-19 makes
    ``metrics.sharpe_ratio`` return about 1e16. Annualise with ``SR_bar * sqrt(bars_per_year)``.

    Raises:
        ValueError: NaN or infinite returns.
    """
    r = _as_returns(returns)
    if _degenerate(r):
        return 0.0
    return float(r.mean()) / float(r.std(ddof=1))


def per_bar_sharpe_columns(returns_matrix: npt.ArrayLike) -> np.ndarray:
    """Per-bar Sharpe of every column of a ``(T, N)`` matrix, shape ``(N,)``.

    Column-wise :func:`per_bar_sharpe` (0.0 for a zero-variance column or T < 2); the default
    metric of :func:`probability_of_backtest_overfitting`.

    Raises:
        ValueError: not 2-D, or NaN / infinite values.
    """
    m = np.asarray(returns_matrix, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"returns_matrix must be 2-D (T bars, N strategies), got shape {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError("returns_matrix contains NaN or infinite values")
    if m.shape[0] < 2:
        return np.zeros(m.shape[1])
    out = np.zeros(m.shape[1])
    ok = m.max(axis=0) != m.min(axis=0)  # exact zero-variance test, see _degenerate
    out[ok] = m[:, ok].mean(axis=0) / m[:, ok].std(axis=0, ddof=1)
    return out


def _moments(r: np.ndarray) -> tuple[float, float]:
    """(skewness, kurtosis) with the biased 1/n estimators; kurtosis is NOT excess."""
    return float(stats.skew(r)), float(stats.kurtosis(r, fisher=False))


# ---------------------------------------------------------------------------------------------
# PSR, standard error, minimum track record length
# ---------------------------------------------------------------------------------------------


def sharpe_standard_error(sr: float, n: int, skew: float = 0.0, kurtosis: float = 3.0) -> float:
    """Standard error of an estimated PER-BAR Sharpe ratio under non-normal IID returns.

    ``sigma(SR) = sqrt((1 - g3 SR + (g4 - 1) / 4 SR^2) / (n - 1))``: the asymptotic variance of
    Lo (2002, "The Statistics of Sharpe Ratios", Financial Analysts Journal 58(4)) for normal
    returns, ``(1 + SR^2 / 2) / n``, generalised to skewness ``g3`` and kurtosis ``g4`` by
    Mertens (2002), in the ``n - 1`` form used by Bailey & López de Prado (2012, "The Sharpe Ratio
    Efficient Frontier", J. of Risk 15(2), section 2). With the defaults (normal returns) it is
    ``sqrt((1 + SR^2 / 2) / (n - 1))``.

    Args:
        sr: per-bar Sharpe ratio (``SR_annual / sqrt(bars_per_year)``).
        n: number of returns (bars).
        skew: skewness of the returns (0 for normal).
        kurtosis: kurtosis of the returns, NOT excess (3 for normal).

    Returns:
        The standard error, in per-bar Sharpe units (multiply by ``sqrt(bars_per_year)`` for
        annualised units). A negative radicand (inconsistent moments) is clipped as documented
        in the module.

    Raises:
        ValueError: ``n < 2`` or a non-finite input.
    """
    if n < 2:
        raise ValueError(f"the standard error of a Sharpe ratio needs n >= 2 returns, got {n}")
    if not all(math.isfinite(x) for x in (sr, skew, kurtosis)):
        raise ValueError("sr, skew and kurtosis must be finite")
    return math.sqrt(_radicand(sr, skew, kurtosis) / (n - 1))


def psr_from_moments(
    sr: float,
    n: int,
    skew: float,
    kurtosis: float,
    benchmark_sr: float = 0.0,
) -> float:
    """Probabilistic Sharpe Ratio from the moments of a return series.

    Bailey & López de Prado (2012), "The Sharpe Ratio Efficient Frontier", J. of Risk 15(2),
    section 3 ("Probabilistic Sharpe Ratio")::

        PSR(SR*) = Phi( (SR - SR*) sqrt(n - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2) )

    the probability that the true Sharpe ratio exceeds the benchmark ``SR*``, given an observed
    Sharpe ``SR`` on ``n`` IID returns with skewness ``g3`` and kurtosis ``g4``.

    Args:
        sr: observed PER-BAR Sharpe ratio (``SR_annual / sqrt(bars_per_year)``).
        n: number of returns (bars).
        skew: skewness of the returns.
        kurtosis: kurtosis of the returns, NOT excess (3 for normal).
        benchmark_sr: ``SR*``, PER BAR.

    Returns:
        A probability in [0, 1]. ``n < 2`` returns 0.0 (no evidence, see the module docstring).
        A negative radicand (inconsistent moments) is clipped to machine epsilon with a
        RuntimeWarning.

    Raises:
        ValueError: a non-finite input.
    """
    if not all(math.isfinite(x) for x in (sr, skew, kurtosis, benchmark_sr)):
        raise ValueError("sr, skew, kurtosis and benchmark_sr must be finite")
    if n < 2:
        return 0.0
    z = (sr - benchmark_sr) * math.sqrt(n - 1) / math.sqrt(_radicand(sr, skew, kurtosis))
    return float(stats.norm.cdf(z))


def probabilistic_sharpe_ratio(returns: npt.ArrayLike, benchmark_sr: float = 0.0) -> float:
    """Probabilistic Sharpe Ratio of a series of per-bar returns.

    Bailey & López de Prado (2012), "The Sharpe Ratio Efficient Frontier", J. of Risk 15(2),
    section 3: ``PSR(SR*) = Phi((SR - SR*) sqrt(n - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2))``
    with SR the per-bar Sharpe (``mean / std``, ``ddof=1``), g3 / g4 the skewness / kurtosis
    (biased sample moments, kurtosis not excess) and n the number of returns. See
    :func:`psr_from_moments`.

    Args:
        returns: shape ``(n,)``, per-bar simple returns (fractions).
        benchmark_sr: ``SR*``, PER BAR (``SR*_annual / sqrt(bars_per_year)``).

    Returns:
        A probability in [0, 1]; 0.0 for fewer than 2 returns or a zero-variance series (a
        strategy that never trades has no evidence of skill; see the module docstring).

    Raises:
        ValueError: NaN or infinite returns, or a non-finite benchmark.
    """
    r = _as_returns(returns)
    if not math.isfinite(benchmark_sr):
        raise ValueError("benchmark_sr must be finite")
    if _degenerate(r):
        return 0.0
    skew, kurt = _moments(r)
    return psr_from_moments(per_bar_sharpe(r), len(r), skew, kurt, benchmark_sr)


def minimum_track_record_length(
    sr: float,
    benchmark_sr: float,
    skew: float = 0.0,
    kurtosis: float = 3.0,
    confidence: float = 0.95,
) -> float:
    """Minimum Track Record Length: bars needed for PSR(benchmark_sr) to reach ``confidence``.

    Bailey & López de Prado (2012), "The Sharpe Ratio Efficient Frontier", J. of Risk 15(2),
    section 4 ("Track record length")::

        MinTRL = 1 + (1 - g3 SR + (g4 - 1) / 4 SR^2) (Z_alpha / (SR - SR*))^2

    with ``Z_alpha = Phi^{-1}(confidence)``. It is the inverse of :func:`psr_from_moments` in n:
    ``psr_from_moments(sr, MinTRL, skew, kurtosis, benchmark_sr) == confidence``.

    Args:
        sr: observed PER-BAR Sharpe ratio.
        benchmark_sr: ``SR*``, PER BAR.
        skew: skewness of the returns (0 for normal).
        kurtosis: kurtosis, NOT excess (3 for normal).
        confidence: in (0, 1), e.g. 0.95.

    Returns:
        A number of bars (real-valued; round up for a count, divide by ``bars_per_year`` for
        years). ``inf`` when ``sr <= benchmark_sr``: no track record, however long, makes an SR
        at or below the benchmark significantly above it. A negative radicand is clipped.

    Raises:
        ValueError: ``confidence`` outside (0, 1) or a non-finite input.
    """
    _check_confidence(confidence)
    if not all(math.isfinite(x) for x in (sr, benchmark_sr, skew, kurtosis)):
        raise ValueError("sr, benchmark_sr, skew and kurtosis must be finite")
    if sr <= benchmark_sr:
        return math.inf
    z = float(stats.norm.ppf(confidence))
    return 1.0 + _radicand(sr, skew, kurtosis) * (z / (sr - benchmark_sr)) ** 2


# ---------------------------------------------------------------------------------------------
# DSR
# ---------------------------------------------------------------------------------------------


def expected_max_sharpe(n_trials: int, sr_variance: float) -> float:
    """Expected maximum of ``n_trials`` independent Sharpe estimates whose true value is 0.

    Bailey & López de Prado (2014), "The Deflated Sharpe Ratio", J. of Portfolio Management
    40(5), section "The deflated Sharpe ratio" (the false-strategy benchmark ``SR_0``)::

        E[max SR_n] = sqrt(V) ((1 - gamma) Z^{-1}(1 - 1/N) + gamma Z^{-1}(1 - 1/(N e)))

    with gamma the Euler-Mascheroni constant, Z^{-1} the standard normal quantile and V the
    variance of the trial Sharpe ratios. N = 1 gives 0.0 by definition (no selection took place;
    the formula itself would give -inf).

    Args:
        n_trials: N >= 1, the number of (independent) candidates compared.
        sr_variance: V >= 0, the variance across the trials' Sharpe ratios, in PER-BAR units
            (``V_annual / bars_per_year``).

    Returns:
        The expected maximum Sharpe, PER BAR.

    Raises:
        ValueError: ``n_trials < 1``, a negative or non-finite ``sr_variance``.
    """
    if int(n_trials) != n_trials or n_trials < 1:
        raise ValueError(f"n_trials must be an integer >= 1, got {n_trials}")
    if not math.isfinite(sr_variance) or sr_variance < 0.0:
        raise ValueError(f"sr_variance must be finite and >= 0, got {sr_variance}")
    if n_trials == 1 or sr_variance == 0.0:
        return 0.0
    n = float(n_trials)
    q1 = float(stats.norm.ppf(1.0 - 1.0 / n))
    q2 = float(stats.norm.ppf(1.0 - 1.0 / (n * math.e)))
    return math.sqrt(sr_variance) * ((1.0 - EULER_GAMMA) * q1 + EULER_GAMMA * q2)


@dataclass(frozen=True)
class DeflatedSharpeResult:
    """Outcome of :func:`deflated_sharpe_ratio`; every Sharpe here is PER BAR.

    Attributes:
        dsr: PSR against ``benchmark_sr`` (the deflated Sharpe ratio), a probability.
        psr: PSR against 0 (not deflated), for comparison; ``dsr <= psr`` whenever
            ``benchmark_sr >= 0``.
        benchmark_sr: ``expected_max_sharpe(n_trials, sr_variance)``.
        n_trials: N, the number of candidates compared.
        sr_variance: V, the variance of the trial Sharpe ratios.
        n_obs: number of returns of the selected strategy.
        sharpe: its per-bar Sharpe ratio.
        skew: its skewness.
        kurtosis: its kurtosis (not excess).
    """

    dsr: float
    psr: float
    benchmark_sr: float
    n_trials: int
    sr_variance: float
    n_obs: int
    sharpe: float
    skew: float
    kurtosis: float


def deflated_sharpe_ratio(
    returns: npt.ArrayLike,
    trial_sharpes: npt.ArrayLike | None = None,
    n_trials: int | None = None,
    sr_variance: float | None = None,
) -> DeflatedSharpeResult:
    """Deflated Sharpe Ratio of the selected strategy's per-bar returns.

    Bailey & López de Prado (2014), "The Deflated Sharpe Ratio: Correcting for Selection Bias,
    Backtest Overfitting and Non-Normality", J. of Portfolio Management 40(5)::

        DSR = PSR(SR_0),   SR_0 = expected_max_sharpe(N, V[SR_trials])

    i.e. the probabilistic Sharpe ratio (Bailey & López de Prado 2012) with the benchmark raised
    to the Sharpe the best of N skill-less candidates would show by luck.

    Give EITHER ``trial_sharpes`` (the per-bar Sharpe of each of the N candidates actually
    compared, the selected one included; N = its length, V = its variance with ``ddof=1``, and
    V = 0 when N = 1) OR both ``n_trials`` and ``sr_variance``.

    Args:
        returns: shape ``(n_obs,)``, per-bar returns of the selected strategy.
        trial_sharpes: shape ``(N,)``, PER-BAR Sharpe ratios of all candidates.
        n_trials: N >= 1.
        sr_variance: V >= 0, PER BAR (``V_annual / bars_per_year``).

    Returns:
        A :class:`DeflatedSharpeResult`. A degenerate series (fewer than 2 returns or zero
        variance) gets ``dsr = psr = 0.0`` (no evidence).

    Raises:
        ValueError: neither or both ways of giving the trials, only one of ``n_trials`` /
            ``sr_variance``, empty or non-finite ``trial_sharpes``, NaN / infinite returns, or
            an invalid N / V (see :func:`expected_max_sharpe`).
    """
    r = _as_returns(returns)
    if trial_sharpes is not None:
        if n_trials is not None or sr_variance is not None:
            raise ValueError("give either trial_sharpes or (n_trials, sr_variance), not both")
        ts = np.asarray(trial_sharpes, dtype=np.float64).reshape(-1)
        if len(ts) == 0:
            raise ValueError("trial_sharpes is empty")
        if not np.isfinite(ts).all():
            raise ValueError("trial_sharpes contain NaN or infinite values")
        n = len(ts)
        v = float(ts.var(ddof=1)) if n > 1 else 0.0
    else:
        if n_trials is None or sr_variance is None:
            raise ValueError("give trial_sharpes, or both n_trials and sr_variance")
        n, v = n_trials, float(sr_variance)
    benchmark = expected_max_sharpe(n, v)

    sharpe = per_bar_sharpe(r)
    if _degenerate(r):
        skew, kurt = 0.0, 3.0
        dsr = psr = 0.0
    else:
        skew, kurt = _moments(r)
        dsr = psr_from_moments(sharpe, len(r), skew, kurt, benchmark)
        psr = psr_from_moments(sharpe, len(r), skew, kurt, 0.0)
    return DeflatedSharpeResult(
        dsr=dsr,
        psr=psr,
        benchmark_sr=benchmark,
        n_trials=int(n),
        sr_variance=v,
        n_obs=len(r),
        sharpe=sharpe,
        skew=skew,
        kurtosis=kurt,
    )


# ---------------------------------------------------------------------------------------------
# PBO (CSCV)
# ---------------------------------------------------------------------------------------------


#: combinations scored at once by the vectorised Sharpe path of the PBO
_PBO_CHUNK = 512


def _sharpe_from_sums(s1: np.ndarray, s2: np.ndarray, n: int, col_mean: np.ndarray) -> np.ndarray:
    """Per-bar Sharpe ``(k, N)`` of n rows from sums ``s1`` and sums of squares ``s2``.

    The sums are of returns centred by their full-sample column mean ``col_mean`` ``(N,)``,
    which restores the mean. Variances within 64 ulps of zero relative to the mean square (a
    constant column, e.g. a strategy out of the market) count as zero and give Sharpe 0.0, as
    in :func:`per_bar_sharpe_columns`.
    """
    if n < 2:
        return np.zeros_like(s1)
    mean = s1 / n + col_mean
    var = (s2 - s1**2 / n) / (n - 1)
    flat = var <= 64.0 * np.finfo(np.float64).eps * (s2 / n)
    out = np.zeros_like(s1)
    ok = ~flat
    out[ok] = mean[ok] / np.sqrt(var[ok])
    return out


def _cscv_outcomes(
    is_scores: np.ndarray, oos_scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(logits, IS metric of the IS-best, its OOS metric) of ``(k, N)`` score matrices."""
    k, n_strats = is_scores.shape
    best = np.argmax(is_scores, axis=1)  # first (lowest-index) maximum on ties
    ranks = stats.rankdata(oos_scores, method="average", axis=1)
    idx = np.arange(k)
    omega = ranks[idx, best] / (n_strats + 1)
    return np.log(omega / (1.0 - omega)), is_scores[idx, best], oos_scores[idx, best]


def _pbo_returns(returns_matrix: npt.ArrayLike, n_splits: int) -> np.ndarray:
    """``returns_matrix`` as a ``(T, N)`` float64 array, checked for the PBO.

    Raises:
        ValueError: as :func:`probability_of_backtest_overfitting` (not 2-D, N < 2, S odd or
            < 2, T < S, NaN / infinite returns).
    """
    m = np.asarray(returns_matrix, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"returns_matrix must be 2-D (T bars, N strategies), got shape {m.shape}")
    t_rows, n_strats = m.shape
    if n_strats < 2:
        raise ValueError(f"PBO needs at least 2 candidate strategies (columns), got {n_strats}")
    if int(n_splits) != n_splits or n_splits < 2 or n_splits % 2 != 0:
        raise ValueError(f"n_splits must be an even integer >= 2, got {n_splits}")
    if t_rows < n_splits:
        raise ValueError(
            f"returns_matrix has {t_rows} rows (bars), fewer than n_splits={n_splits} blocks"
        )
    if not np.isfinite(m).all():
        raise ValueError("returns_matrix contains NaN or infinite values")
    return m


#: per chunk of combinations: (logits, IS metric of the IS-best, its OOS metric)
_CSCVParts = tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]


def _cscv_sharpe(m: np.ndarray, in_sample: np.ndarray, block: int) -> _CSCVParts:
    """CSCV outcomes of the per-bar Sharpe for every row of ``in_sample`` ``(C, S)`` (True =
    the block is in sample) on ``m`` ``(S * block, N)``: logits, IS metric of the IS-best and
    its OOS metric, one array each per chunk of :data:`_PBO_CHUNK` combinations.

    Fast path, same numbers as :func:`per_bar_sharpe_columns`: the Sharpe of a union of blocks
    follows from per-block sums and sums of squares (columns centred first, for numerical
    stability).
    """
    n_splits = in_sample.shape[1]
    n_strats = m.shape[1]
    logits: list[np.ndarray] = []
    is_best: list[np.ndarray] = []
    oos_best: list[np.ndarray] = []
    col_mean = m.mean(axis=0)
    centred = m - col_mean
    sums = centred.reshape(n_splits, block, n_strats).sum(axis=1)
    squares = (centred**2).reshape(n_splits, block, n_strats).sum(axis=1)
    half = block * (n_splits // 2)
    for lo in range(0, len(in_sample), _PBO_CHUNK):
        ind = in_sample[lo : lo + _PBO_CHUNK].astype(np.float64)
        is_s1, is_s2 = ind @ sums, ind @ squares
        oos_s1, oos_s2 = sums.sum(axis=0) - is_s1, squares.sum(axis=0) - is_s2
        for out, part in zip(
            (logits, is_best, oos_best),
            _cscv_outcomes(
                _sharpe_from_sums(is_s1, is_s2, half, col_mean),
                _sharpe_from_sums(oos_s1, oos_s2, half, col_mean),
            ),
            strict=True,
        ):
            out.append(part)
    return logits, is_best, oos_best


def _cscv_metric(
    m: np.ndarray,
    in_sample: np.ndarray,
    block: int,
    metric: Callable[[np.ndarray], np.ndarray],
) -> _CSCVParts:
    """CSCV outcomes as :func:`_cscv_sharpe` for any ``metric``, called on the in-sample and
    on the out-of-sample rows of each combination (one array each per combination).

    Raises:
        ValueError: the metric does not return ``N`` values, or returns NaN.
    """
    n_splits = in_sample.shape[1]
    n_strats = m.shape[1]
    logits: list[np.ndarray] = []
    is_best: list[np.ndarray] = []
    oos_best: list[np.ndarray] = []
    rows = np.arange(block * n_splits).reshape(n_splits, block)

    def score(mask: np.ndarray) -> np.ndarray:
        s = np.asarray(metric(m[rows[mask].reshape(-1)]), dtype=np.float64).reshape(-1)
        if s.shape != (n_strats,):
            raise ValueError(f"metric must return {n_strats} values, got shape {s.shape}")
        if np.isnan(s).any():
            raise ValueError("metric returned NaN")
        return s

    for mask in in_sample:
        for out, part in zip(
            (logits, is_best, oos_best),
            _cscv_outcomes(score(mask)[None, :], score(~mask)[None, :]),
            strict=True,
        ):
            out.append(part)
    return logits, is_best, oos_best


@dataclass(frozen=True)
class PBOResult:
    """Outcome of :func:`probability_of_backtest_overfitting` (arrays are read-only).

    Attributes:
        pbo: share of the combinations whose logit is <= 0, in [0, 1].
        logits: shape ``(n_combinations,)``, ``lambda_c = ln(omega_c / (1 - omega_c))``.
        n_combinations: ``C(n_splits, n_splits / 2)``.
        n_splits: S, the number of row blocks.
        is_best: shape ``(n_combinations,)``, in-sample metric of the IS-best candidate.
        oos_of_best: shape ``(n_combinations,)``, out-of-sample metric of that same candidate;
            ``(is_best, oos_of_best)`` are the performance-degradation pairs of the paper.
        prob_oos_loss: share of the combinations where ``oos_of_best < 0`` (the paper's
            "probability of loss"; meaningful for metrics whose sign matters, as Sharpe).
    """

    pbo: float
    logits: np.ndarray
    n_combinations: int
    n_splits: int
    is_best: np.ndarray
    oos_of_best: np.ndarray
    prob_oos_loss: float


def probability_of_backtest_overfitting(
    returns_matrix: npt.ArrayLike,
    n_splits: int,
    metric: Callable[[np.ndarray], np.ndarray] = per_bar_sharpe_columns,
) -> PBOResult:
    """Probability of Backtest Overfitting by Combinatorially Symmetric Cross-Validation (CSCV).

    Bailey, Borwein, López de Prado & Zhu (2015/2017), "The Probability of Backtest
    Overfitting", J. of Computational Finance 20(4), section "The CSCV procedure":

    1. Split the ``T`` rows into ``S`` contiguous blocks of equal size. When ``S`` does not
       divide ``T`` the oldest ``T mod S`` rows are dropped (the paper requires equal blocks).
    2. For each of the ``C(S, S/2)`` combinations (``itertools.combinations`` order) of ``S/2``
       blocks forming the in-sample set J (rows kept in time order) and the other blocks the
       out-of-sample set: compute the metric of every candidate on J and on the complement.
    3. ``n*`` = the IS-best candidate; ``omega`` = its OOS rank / (N + 1), rank 1 = worst and
       N = best, so omega lies in (0, 1); logit ``lambda = ln(omega / (1 - omega))``.
    4. ``PBO = #{lambda <= 0} / C(S, S/2)``: how often the IS winner is at or below the OOS
       median.

    Ties, deterministically: several IS-best candidates -> the lowest column index
    (``np.argmax``); tied OOS values -> average ranks (``scipy.stats.rankdata``), so a
    candidate tied with every other one gets omega = 0.5, lambda = 0, and counts as overfit
    (no evidence the IS choice was better than a coin flip).

    Args:
        returns_matrix: shape ``(T, N)``: T bars (rows, oldest first) of per-bar returns of N
            candidate strategies (columns) on the SAME bars.
        n_splits: S, even and >= 2 (16 in the paper: 12,870 combinations; the cost grows as
            ``C(S, S/2)`` metric evaluations on ``T/2`` rows).
        metric: maps a ``(t, N)`` block of returns to the ``(N,)`` scores of the candidates,
            higher is better; defaults to the per-bar Sharpe of each column
            (:func:`per_bar_sharpe_columns`; annualising would not change any rank). The
            default is computed for all combinations at once from per-block sums and sums of
            squares (same numbers to rounding, about 100 times faster); any other callable,
            even a wrapper of the default, is called twice per combination.

    Returns:
        A :class:`PBOResult`.

    Raises:
        ValueError: not 2-D, N < 2, S odd or < 2, T < S, NaN / infinite returns, or a metric
            that does not return N values or returns NaN.
    """
    m = _pbo_returns(returns_matrix, n_splits)
    t_rows = m.shape[0]
    block = t_rows // n_splits
    m = m[t_rows - block * n_splits :]
    combos = np.array(list(itertools.combinations(range(n_splits), n_splits // 2)), dtype=np.int64)
    in_sample = np.zeros((len(combos), n_splits), dtype=bool)
    np.put_along_axis(in_sample, combos, True, axis=1)

    if metric is per_bar_sharpe_columns:
        logits, is_best, oos_best = _cscv_sharpe(m, in_sample, block)
    else:
        logits, is_best, oos_best = _cscv_metric(m, in_sample, block, metric)

    lam = np.concatenate(logits)
    is_arr = np.concatenate(is_best)
    oos_arr = np.concatenate(oos_best)
    for a in (lam, is_arr, oos_arr):
        a.setflags(write=False)
    return PBOResult(
        pbo=float(np.mean(lam <= 0.0)),
        logits=lam,
        n_combinations=len(lam),
        n_splits=int(n_splits),
        is_best=is_arr,
        oos_of_best=oos_arr,
        prob_oos_loss=float(np.mean(oos_arr < 0.0)),
    )


# ---------------------------------------------------------------------------------------------
# paired stationary bootstrap
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BootstrapInterval:
    """Outcome of :func:`paired_bootstrap_interval`.

    Attributes:
        estimate: ``statistic(returns_a) - statistic(returns_b)`` on the original bars.
        low: lower bound of the percentile interval.
        high: upper bound.
        confidence: two-sided coverage, e.g. 0.9.
        n_resamples: number of bootstrap resamples.
        block_length: expected (mean) block length of the stationary bootstrap, in bars.
    """

    estimate: float
    low: float
    high: float
    confidence: float
    n_resamples: int
    block_length: int


def _auto_block_length(a: np.ndarray, b: np.ndarray) -> int:
    """Politis & White (2004) stationary-bootstrap block length, the larger over a and b.

    Uses ``arch.bootstrap.optimal_block_length`` (with the Patton, Politis & White 2009
    correction), rounded up, at least 1 and at most n. Zero-variance series are skipped (the
    estimator divides by their variance); if both are flat the length is 1.
    """
    from arch.bootstrap import optimal_block_length

    cols = [x for x in (a, b) if not _degenerate(x)]
    if not cols:
        return 1
    with np.errstate(divide="ignore", invalid="ignore"):
        lengths = optimal_block_length(np.column_stack(cols))["stationary"].to_numpy()
    lengths = lengths[np.isfinite(lengths)]
    if len(lengths) == 0:
        return 1
    return int(min(max(math.ceil(float(lengths.max())), 1), len(a)))


def auto_block_length(returns_a: npt.ArrayLike, returns_b: npt.ArrayLike) -> int:
    """The automatic expected block length of :func:`paired_bootstrap_interval` (Politis & White
    2004 with the 2009 correction, the larger over the two series), in bars."""
    return _auto_block_length(_as_returns(returns_a, "returns_a"),
                              _as_returns(returns_b, "returns_b"))


def paired_bootstrap_interval(
    returns_a: npt.ArrayLike,
    returns_b: npt.ArrayLike,
    statistic: Callable[[np.ndarray], float],
    n_resamples: int = 1000,
    confidence: float = 0.9,
    expected_block: int | None = None,
    seed: int = 0,
) -> BootstrapInterval:
    """Paired stationary-bootstrap interval of ``statistic(a) - statistic(b)`` on the same bars.

    Politis & Romano (1994), "The Stationary Bootstrap", JASA 89(428): blocks of consecutive bars
    with geometrically distributed lengths of mean ``expected_block``, wrapping around the end,
    preserve the serial dependence of the returns. The SAME resampled bar indices are applied to
    both series (they are passed together to ``arch.bootstrap.StationaryBootstrap``), so the
    interval reflects the paired difference, not two independent noises. The interval is the
    percentile interval of ``arch``'s ``conf_int(method="percentile")``.

    Default ``expected_block``: the automatic selection of Politis & White (2004), "Automatic
    Block-Length Selection for the Dependent Bootstrap", Econometric Reviews 23(1), with the
    Patton-Politis-White (2009) correction (``arch.bootstrap.optimal_block_length``), taking the
    larger of the two series' estimates (the longer block keeps more dependence), rounded up,
    clipped to [1, n]. Pass it explicitly to reproduce an earlier choice.

    Args:
        returns_a: shape ``(n,)``, per-bar returns of strategy A.
        returns_b: shape ``(n,)``, per-bar returns of strategy B on the same n bars.
        statistic: maps a 1-D series of per-bar returns to a float score, e.g.
            ``lambda r: metrics.sharpe_ratio(r, 8760)`` (annualised) or :func:`per_bar_sharpe`.
        n_resamples: number of bootstrap resamples, >= 1.
        confidence: two-sided coverage in (0, 1).
        expected_block: mean block length in bars, 1 <= it <= n, or None for the automatic one.
        seed: seed of the NumPy generator of the bootstrap; the same seed gives the same result.

    Returns:
        A :class:`BootstrapInterval`. Identical series give exactly ``[0, 0]``.

    Raises:
        ValueError: different lengths, fewer than 2 bars, NaN / infinite returns,
            ``n_resamples < 1``, ``confidence`` outside (0, 1), ``expected_block`` outside
            [1, n], or a statistic returning a non-finite value on the original bars.
        ImportError: the ``arch`` package is not installed.
    """
    from arch.bootstrap import StationaryBootstrap

    a = _as_returns(returns_a, "returns_a")
    b = _as_returns(returns_b, "returns_b")
    if len(a) != len(b):
        raise ValueError(f"paired series must have the same length, got {len(a)} and {len(b)}")
    if len(a) < 2:
        raise ValueError(f"a bootstrap needs at least 2 bars, got {len(a)}")
    if int(n_resamples) != n_resamples or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples}")
    _check_confidence(confidence)
    if expected_block is None:
        block_length = _auto_block_length(a, b)
    else:
        if int(expected_block) != expected_block or not 1 <= expected_block <= len(a):
            raise ValueError(
                f"expected_block must be an integer in [1, {len(a)}], got {expected_block}"
            )
        block_length = int(expected_block)

    def diff(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.array([float(statistic(x)) - float(statistic(y))])

    estimate = float(diff(a, b)[0])
    if not math.isfinite(estimate):
        raise ValueError(f"statistic gave a non-finite difference on the original bars: {estimate}")
    bs = StationaryBootstrap(block_length, a, b, seed=int(seed))
    ci = bs.conf_int(diff, reps=int(n_resamples), method="percentile", size=confidence)
    return BootstrapInterval(
        estimate=estimate,
        low=float(ci[0, 0]),
        high=float(ci[1, 0]),
        confidence=float(confidence),
        n_resamples=int(n_resamples),
        block_length=block_length,
    )
