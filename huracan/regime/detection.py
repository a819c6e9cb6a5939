"""Volatility regime detection, causal bar by bar: the regime of bar t uses bars <= t only.

Three detectors, all pure (numpy/pandas in, arrays out) and all fitted on TRAIN rows only; their
learned state is saved with the model (``to_dict``) and reused live (``from_dict``):

- :class:`VolatilityRegime`: quantile thresholds of the 24h realised volatility learned on the
  train rows (33 % / 66 % / 95 % by default) cut it into ``low / normal / high / extreme``.
- :class:`HMMRegime`: a Gaussian hidden Markov model (hmmlearn, Baum-Welch EM) on
  ``[ln volatility, return]``; bars are classified from the FILTERED state probabilities
  ``p(state_t | x_1..x_t)``, computed by our own forward recursion (Rabiner 1989; the Hamilton 1989
  filter of regime-switching models). hmmlearn's ``predict_proba``/``predict`` are NOT used: they
  are forward-backward smoothing / Viterbi decoding and look at later bars.
- :func:`apply_cascades`: a liquidation cascade detected at bar t forces ``extreme`` at bar t.

Conventions:

- Volatility is the per-bar standard deviation of 1-bar log returns (a fraction, NOT annualised;
  multiply by ``sqrt(bars_per_year)`` to annualise) over the bars covering the last 24 hours:
  24 bars at 1h, 288 at 5m, 6 at 4h (:func:`realized_volatility_24h`), the same quantity as
  ``rv_24`` of :mod:`huracan.features.technical` at 1h.
- A bar whose regime cannot be computed (warm-up, gap, NaN input) is :data:`UNKNOWN`
  (``"unknown"``); the switching backtest stays flat on it.
- Timing: the regime of bar t is known at the close of bar t, the moment the forecast of bar t is
  made, so it can select the model whose position is held over bar t+1.

Sources: L. R. Rabiner (1989), "A Tutorial on Hidden Markov Models and Selected Applications in
Speech Recognition", Proc. IEEE 77(2), 257-286 (forward algorithm, sec. III-A, and scaling,
sec. V-A); J. D. Hamilton (1989), "A New Approach to the Economic Analysis of Nonstationary Time
Series and the Business Cycle", Econometrica 57(2), 357-384 (the filter of regime probabilities);
hmmlearn 0.3 (``GaussianHMM``, https://hmmlearn.readthedocs.io) for the EM fit.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy.linalg import solve_triangular

from huracan.data.ohlcv import timeframe_to_timedelta
from huracan.models.base import NotFittedError

log = logging.getLogger(__name__)

#: regime names, from calm to violent
REGIMES: tuple[str, ...] = ("low", "normal", "high", "extreme")
#: regime of a bar that cannot be classified (warm-up, gap, NaN input)
UNKNOWN = "unknown"
#: floor of the per-bar volatility before the logarithm of the HMM features (a flat market)
VOL_FLOOR = 1e-8
#: HMM state names by number of states, states ordered by increasing mean volatility
HMM_STATE_NAMES: dict[int, tuple[str, ...]] = {
    2: ("low", "high"),
    3: ("low", "normal", "high"),
    4: REGIMES,
}


# --------------------------------------------------------------------------------------------
# volatility
# --------------------------------------------------------------------------------------------


def bars_per_24h(timeframe: str) -> int:
    """Number of bars covering 24 hours: 24 at ``1h``, 288 at ``5m``, 6 at ``4h``.

    Raises:
        ValueError: unknown timeframe; 24h is not a whole number of bars; fewer than 2 bars
            (a sample standard deviation needs two returns, so ``1d`` and longer are refused).
    """
    bar = timeframe_to_timedelta(timeframe)
    n = pd.Timedelta(hours=24) / bar
    if n != int(n) or n < 2:
        raise ValueError(f"24 hours is not a whole number >= 2 of {timeframe} bars ({n:g}); "
                         "the 24h realised volatility needs e.g. 5m, 15m, 1h or 4h bars")
    return int(n)


def segment_starts(timestamps: pd.DatetimeIndex | pd.Series, timeframe: str) -> np.ndarray:
    """Boolean mask, shape ``(n,)``: True at the first bar and at every bar that follows a gap.

    Pass it as ``segment_start`` to :func:`realized_volatility_24h` and :func:`regime_features`
    so no return and no rolling window spans missing bars.

    Raises:
        ValueError: timestamps not strictly increasing; unknown timeframe.
    """
    ts = pd.DatetimeIndex(timestamps)
    if len(ts) and (not ts.is_monotonic_increasing or ts.has_duplicates):
        raise ValueError("segment_starts needs strictly increasing timestamps")
    step = timeframe_to_timedelta(timeframe)
    out = np.zeros(len(ts), dtype=bool)
    if len(ts):
        out[0] = True
        out[1:] = (ts[1:] - ts[:-1]) > step
    return out


def _close_array(close: pd.Series | np.ndarray) -> np.ndarray:
    c = np.asarray(close, dtype=np.float64)
    if c.ndim != 1:
        raise ValueError(f"close must be one-dimensional, got shape {c.shape}")
    if (c[np.isfinite(c)] <= 0).any():
        raise ValueError("close must be > 0 (log returns)")
    return c


def _segment_mask(segment_start: np.ndarray | None, n: int) -> np.ndarray:
    if segment_start is None:
        return np.zeros(n, dtype=bool)
    s = np.asarray(segment_start)
    if s.shape != (n,) or s.dtype != bool:
        raise ValueError(f"segment_start must be a boolean array of shape ({n},), "
                         f"got {s.dtype} {s.shape}")
    return s


def _one_bar_log_returns(c: np.ndarray, starts: np.ndarray) -> np.ndarray:
    r = np.full(len(c), np.nan)
    if len(c) > 1:
        with np.errstate(invalid="ignore", divide="ignore"):
            r[1:] = np.diff(np.log(c))
    r[starts] = np.nan  # the return across a gap is not a 1-bar return
    return r


def realized_volatility_24h(
    close: pd.Series | np.ndarray, timeframe: str, segment_start: np.ndarray | None = None
) -> pd.Series:
    """24h realised volatility: rolling sample std (ddof=1) of 1-bar log returns.

    ``rv_t = std(ln(close_k / close_{k-1}) for k in t-n+1..t)``, ``n = bars_per_24h(timeframe)``.
    Causal: row t uses closes up to t. The first ``n`` rows of the series (and of every segment)
    are NaN (warm-up: ``n`` returns need ``n + 1`` closes); any NaN close makes the windows that
    contain its returns NaN.

    Gaps: a rolling window must not span missing bars. Either call this per gap-free segment, or
    pass ``segment_start`` (True at the first bar after each gap, see :func:`segment_starts`):
    the return into that bar is dropped and the warm-up restarts there.

    Args:
        close: close prices in time order, shape ``(n_bars,)``.
        timeframe: bar size (``1h``, ``5m``, ``4h``).
        segment_start: optional boolean mask, shape ``(n_bars,)``.

    Returns:
        per-bar volatility (fraction, not annualised), named ``rv_24h``, on the index of
        ``close`` (a RangeIndex for an array).

    Raises:
        ValueError: bad timeframe (:func:`bars_per_24h`), non-positive close, bad mask.
    """
    c = _close_array(close)
    n = bars_per_24h(timeframe)
    r = _one_bar_log_returns(c, _segment_mask(segment_start, len(c)))
    index = close.index if isinstance(close, pd.Series) else pd.RangeIndex(len(c))
    rv = pd.Series(r, index=index).rolling(n, min_periods=n).std(ddof=1)
    return rv.rename("rv_24h")


def regime_features(
    close: pd.Series | np.ndarray, timeframe: str, segment_start: np.ndarray | None = None
) -> np.ndarray:
    """The HMM inputs per bar, shape ``(n_bars, 2)``: ``[rv_24h, r_1]``.

    ``rv_24h`` from :func:`realized_volatility_24h` (per-bar fraction) and ``r_1 = ln(close_t /
    close_{t-1})`` (fraction, NaN at the first bar and at segment starts). Causal.

    Raises:
        ValueError: as :func:`realized_volatility_24h`.
    """
    c = _close_array(close)
    starts = _segment_mask(segment_start, len(c))
    vol = realized_volatility_24h(c, timeframe, starts).to_numpy()
    return np.column_stack([vol, _one_bar_log_returns(c, starts)])


def as_regimes(regimes: Any, name: str = "regimes") -> np.ndarray:
    """Regime names as an object array of shape ``(n,)``; None and NaN become ``unknown``.

    Raises:
        ValueError: not one-dimensional; a name outside :data:`REGIMES` and ``unknown``.
    """
    r = np.asarray(regimes, dtype=object)
    if r.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {r.shape}")
    out = np.array([UNKNOWN if (v is None or (isinstance(v, float) and np.isnan(v))) else v
                    for v in r], dtype=object)
    bad = sorted({str(v) for v in out} - set(REGIMES) - {UNKNOWN})
    if bad:
        raise ValueError(f"{name}: unknown regime names {bad}; expected {REGIMES} or {UNKNOWN!r}")
    return out


# --------------------------------------------------------------------------------------------
# quantile thresholds
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VolatilityRegime:
    """Regimes from quantile thresholds of the volatility, learned on TRAIN rows only.

    With thresholds ``t1 <= t2 <= t3`` (the train quantiles ``quantiles``, linear interpolation as
    ``np.quantile``): ``vol < t1`` low, ``t1 <= vol < t2`` normal, ``t2 <= vol < t3`` high,
    ``vol >= t3`` extreme; NaN volatility is :data:`UNKNOWN`. The rule reads one bar at a time, so
    it is causal whenever the volatility is.

    Immutable: :meth:`fit` returns a fitted copy (learned state ``thresholds_``, ``n_train_``).

    Attributes:
        quantiles: three increasing probabilities in (0, 1).
        thresholds_: the learned volatility thresholds (per-bar fraction), None before fit.
        n_train_: number of finite train values they were learned from.

    Raises:
        ValueError: quantiles not three increasing values in (0, 1); thresholds not three finite
            non-decreasing values >= 0.
    """

    quantiles: tuple[float, float, float] = (0.33, 0.66, 0.95)
    thresholds_: tuple[float, float, float] | None = None
    n_train_: int | None = None

    def __post_init__(self) -> None:
        q = tuple(float(v) for v in self.quantiles)
        if len(q) != 3 or not all(0.0 < v < 1.0 for v in q) or not q[0] < q[1] < q[2]:
            raise ValueError(f"quantiles must be three increasing values in (0, 1), got {q}")
        object.__setattr__(self, "quantiles", q)
        if self.thresholds_ is not None:
            t = tuple(float(v) for v in self.thresholds_)
            if (len(t) != 3 or not all(np.isfinite(t)) or min(t) < 0
                    or not t[0] <= t[1] <= t[2]):
                raise ValueError(f"thresholds_ must be three finite non-decreasing values >= 0, "
                                 f"got {t}")
            object.__setattr__(self, "thresholds_", t)

    @property
    def is_fitted(self) -> bool:
        return self.thresholds_ is not None

    def fit(self, vol_train: np.ndarray | pd.Series) -> VolatilityRegime:
        """Learn the thresholds from the TRAIN rows' volatility, shape ``(n_train,)``.

        NaN values (warm-up) are ignored. Pass the train split only: validation and test bars
        must not move the thresholds.

        Returns:
            a fitted copy.

        Raises:
            ValueError: fewer than 10 finite values; negative volatility.
        """
        v = np.asarray(vol_train, dtype=np.float64).reshape(-1)
        v = v[np.isfinite(v)]
        if len(v) < 10:
            raise ValueError(f"need at least 10 finite train volatilities, got {len(v)}")
        if (v < 0).any():
            raise ValueError("volatility must be >= 0")
        t = np.quantile(v, self.quantiles)
        return replace(self, thresholds_=(float(t[0]), float(t[1]), float(t[2])),
                       n_train_=len(v))

    def classify(self, vol: np.ndarray | pd.Series) -> np.ndarray:
        """Regime name per bar, object array of shape ``(n,)`` (NaN volatility -> ``unknown``).

        Raises:
            NotFittedError: before :meth:`fit` (a ``RuntimeError``, as the model zoo).
        """
        if self.thresholds_ is None:
            raise NotFittedError("VolatilityRegime is not fitted: call fit(vol_train) first")
        v = np.asarray(vol, dtype=np.float64).reshape(-1)
        idx = np.searchsorted(np.asarray(self.thresholds_), v, side="right")
        names = np.asarray(REGIMES, dtype=object)[np.minimum(idx, 3)]
        names[~np.isfinite(v)] = UNKNOWN
        return names

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state: ``kind``, ``quantiles``, ``thresholds``, ``n_train``.

        An unfitted detector saves ``thresholds=None`` (no error).
        """
        return {"kind": "quantile", "quantiles": list(self.quantiles),
                "thresholds": None if self.thresholds_ is None else list(self.thresholds_),
                "n_train": self.n_train_}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VolatilityRegime:
        """Rebuild from :meth:`to_dict` output.

        Raises:
            ValueError: wrong ``kind``; invalid quantiles or thresholds.
        """
        if data.get("kind") != "quantile":
            raise ValueError(f"not a VolatilityRegime state (kind={data.get('kind')!r})")
        t = data.get("thresholds")
        return cls(quantiles=tuple(data["quantiles"]),
                   thresholds_=None if t is None else tuple(t),
                   n_train_=data.get("n_train"))


# --------------------------------------------------------------------------------------------
# Gaussian HMM, filtered forward
# --------------------------------------------------------------------------------------------


def _check_features(X: np.ndarray) -> np.ndarray:
    Z = np.asarray(X, dtype=np.float64)
    if Z.ndim != 2 or Z.shape[1] != 2:
        raise ValueError(f"X must have shape (n_bars, 2) = [volatility, return], got {Z.shape}")
    if (Z[:, 0][np.isfinite(Z[:, 0])] < 0).any():
        raise ValueError("volatility (column 0 of X) must be >= 0")
    return Z


def _finite_runs(mask: np.ndarray) -> np.ndarray:
    """Lengths of the runs of True in ``mask`` (the sequences hmmlearn fits)."""
    m = np.concatenate([[False], mask, [False]]).astype(np.int8)
    d = np.diff(m)
    return np.flatnonzero(d == -1) - np.flatnonzero(d == 1)


class HMMRegime:
    """Gaussian HMM regimes on ``[volatility, return]``, classified from FILTERED probabilities.

    Features: ``X`` of shape ``(n_bars, 2)`` = ``[rv_24h, r_1]`` (:func:`regime_features`: per-bar
    volatility and 1-bar log return, fractions). Internally the model sees
    ``z = ([ln max(vol, VOL_FLOOR), r_1] - mean) / std``, mean and std (ddof=0) of the train rows
    (the log makes the heavy-tailed volatility closer to Gaussian; the z-score puts both columns
    on one scale). Rows with a NaN are missing observations: left out of the fit (the train rows
    are split into gap-free sequences, hmmlearn ``lengths``) and a prediction-only step in the
    filter.

    State mapping: after the EM fit the states are reordered by increasing mean of the volatility
    feature, so state ``k`` is the k-th calmest, and named by :data:`HMM_STATE_NAMES`: 2 states
    low/high, 3 states (default) low/normal/high, 4 states low/normal/high/extreme. ``extreme``
    also comes from the volatility threshold: with ``extreme_quantile`` set (default 0.95), a bar
    whose volatility is >= that quantile of the TRAIN volatility (``extreme_threshold_``) is
    ``extreme`` whatever the HMM says (and :func:`apply_cascades` adds liquidation cascades).

    Filtering: ``filtered_probabilities`` runs the forward recursion (Rabiner 1989, Hamilton 1989)
    in log space with the fitted ``startprob_``, ``transmat_`` and the per-state Gaussian
    log-densities, so row t depends on rows <= t only. Never use hmmlearn's ``predict_proba``
    (forward-backward, smoothed: it looks ahead) or ``predict`` (Viterbi, also whole-sequence)
    for trading.

    Initialisation (``init``): ``"quantile"`` (default, deterministic) starts EM from the train
    rows cut into ``n_components`` equal-count bins of the volatility feature (bin means and
    covariances, uniform start, 0.95 persistence); ``"kmeans"`` is hmmlearn's k-means start seeded
    by ``random_state``. Volatility is persistent, so EM creeps for hundreds of iterations from
    k-means; the quantile start begins near the volatility-ordered solution and converges in far
    fewer iterations to the same likelihood (BTC 1h, 3 states: 2018, 96 vs 200-221 iterations;
    the first 50,000 bars, 16 vs 65).

    Convergence: hmmlearn's ``monitor_.converged`` is also True when EM merely ran out of
    iterations; ``converged_`` is True only when the log-likelihood gain fell below ``tol``
    (EM stopped before ``n_iter``, or met ``tol`` exactly at iteration ``n_iter``). A fit that did
    not converge logs a warning; the model is still usable.

    Args:
        n_components: number of hidden states, 2 to 4.
        covariance_type: ``"full"`` or ``"diag"`` (hmmlearn); saved as full matrices either way.
        n_iter: maximum EM iterations.
        tol: EM stops when the log-likelihood gain is below this.
        random_state: seed of hmmlearn (k-means start; unused by the quantile start).
        init: ``"quantile"`` or ``"kmeans"`` (see above).
        extreme_quantile: train quantile of volatility above which a bar is ``extreme``; None
            disables the override.
        min_covar: floor on the covariance diagonal (hmmlearn), in z-score units squared.

    Learned (after :meth:`fit` or :meth:`from_dict`): ``feature_mean_``, ``feature_std_`` (2,),
    ``startprob_`` (k,), ``transmat_`` (k, k), ``means_`` (k, 2), ``covars_`` (k, 2, 2) in z units,
    ``state_names_``, ``state_volatility_`` (k,) (per-state geometric-mean volatility, per-bar
    fraction), ``extreme_threshold_``, ``converged_``, ``n_iter_``, ``log_likelihood_``.

    Raises:
        ValueError: (at construction) n_components not 2-4; unknown covariance_type; n_iter < 1;
            tol <= 0; extreme_quantile outside (0, 1).
    """

    def __init__(
        self,
        n_components: int = 3,
        covariance_type: str = "full",
        n_iter: int = 500,
        tol: float = 1e-2,
        random_state: int = 0,
        extreme_quantile: float | None = 0.95,
        min_covar: float = 1e-3,
        init: str = "quantile",
    ) -> None:
        if n_components not in HMM_STATE_NAMES:
            raise ValueError(f"n_components must be 2, 3 or 4, got {n_components}")
        if covariance_type not in ("full", "diag"):
            raise ValueError(f"covariance_type must be 'full' or 'diag', got {covariance_type!r}")
        if n_iter < 1 or tol <= 0:
            raise ValueError(f"n_iter must be >= 1 and tol > 0, got {n_iter}, {tol}")
        if extreme_quantile is not None and not 0.0 < extreme_quantile < 1.0:
            raise ValueError(f"extreme_quantile must be in (0, 1) or None, got {extreme_quantile}")
        if init not in ("quantile", "kmeans"):
            raise ValueError(f"init must be 'quantile' or 'kmeans', got {init!r}")
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.n_iter = n_iter
        self.tol = tol
        self.random_state = random_state
        self.extreme_quantile = extreme_quantile
        self.min_covar = min_covar
        self.init = init

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments (scikit-learn manners)."""
        return {"n_components": self.n_components, "covariance_type": self.covariance_type,
                "n_iter": self.n_iter, "tol": self.tol, "random_state": self.random_state,
                "extreme_quantile": self.extreme_quantile, "min_covar": self.min_covar,
                "init": self.init}

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "transmat_")

    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError("HMMRegime is not fitted: call fit(X_train) or from_dict first")

    # -- features ----------------------------------------------------------------------------

    @staticmethod
    def _raw(Z: np.ndarray) -> np.ndarray:
        return np.column_stack([np.log(np.maximum(Z[:, 0], VOL_FLOOR)), Z[:, 1]])

    def transform(self, X: np.ndarray) -> np.ndarray:
        """The model's input ``z``, shape ``(n, 2)``: ``[ln vol, r_1]`` standardised with the
        train mean and std. NaN rows stay NaN.

        Raises:
            NotFittedError: before fit. ValueError: X not ``(n, 2)``; negative volatility.
        """
        self._require_fitted()
        Z = _check_features(X)
        return (self._raw(Z) - self.feature_mean_) / self.feature_std_

    # -- fit ---------------------------------------------------------------------------------

    def fit(self, X_train: np.ndarray) -> HMMRegime:
        """EM fit (hmmlearn ``GaussianHMM``) on the TRAIN rows ``X_train``, shape ``(n, 2)``.

        Rows with a NaN are dropped and the remaining rows split into gap-free sequences.

        Returns:
            self.

        Raises:
            ValueError: X not ``(n, 2)``; negative volatility; fewer than ``50 * n_components``
                finite rows; a constant feature; a state never left nor entered (zero row of
                the transition matrix).
        """
        from hmmlearn.hmm import GaussianHMM  # deferred: only this detector needs hmmlearn

        Z = _check_features(X_train)
        ok = np.isfinite(Z).all(axis=1)
        k = self.n_components
        if ok.sum() < 50 * k:
            raise ValueError(f"need at least {50 * k} finite train rows for {k} states, "
                             f"got {int(ok.sum())}")
        raw = self._raw(Z[ok])
        mean, std = raw.mean(axis=0), raw.std(axis=0)
        if (std == 0).any():
            raise ValueError("a feature is constant on the train rows; cannot standardise")
        z = (raw - mean) / std
        model = GaussianHMM(n_components=k, covariance_type=self.covariance_type,
                            min_covar=self.min_covar, n_iter=self.n_iter, tol=self.tol,
                            random_state=self.random_state, params="stmc",
                            init_params="stmc" if self.init == "kmeans" else "")
        if self.init == "quantile":
            self._quantile_start(model, z)
        model.fit(z, lengths=_finite_runs(ok))
        order = np.argsort(model.means_[:, 0], kind="stable")
        self.feature_mean_ = mean
        self.feature_std_ = std
        self.startprob_ = np.asarray(model.startprob_)[order]
        self.transmat_ = np.asarray(model.transmat_)[np.ix_(order, order)]
        self.means_ = np.asarray(model.means_)[order]
        self.covars_ = np.asarray(model.covars_)[order]  # full (k, 2, 2) for every type
        self.state_names_ = HMM_STATE_NAMES[k]
        mon = model.monitor_
        hist = list(mon.history)
        self.n_iter_ = int(mon.iter)
        self.log_likelihood_ = float(hist[-1])
        self.converged_ = bool(mon.iter < self.n_iter
                               or (len(hist) >= 2 and hist[-1] - hist[-2] < self.tol))
        vol = Z[ok, 0]
        self.extreme_threshold_ = (None if self.extreme_quantile is None
                                   else float(np.quantile(vol, self.extreme_quantile)))
        self._finish()
        if not self.converged_:
            log.warning("HMMRegime: EM did not converge in %d iterations (tol %g); "
                        "raise n_iter or tol", self.n_iter, self.tol)
        return self

    def _quantile_start(self, model: Any, z: np.ndarray) -> None:
        """EM start from equal-count bins of the (standardised) volatility feature."""
        k = self.n_components
        edges = np.quantile(z[:, 0], np.linspace(0.0, 1.0, k + 1))
        b = np.clip(np.searchsorted(edges, z[:, 0], side="right") - 1, 0, k - 1)
        if np.bincount(b, minlength=k).min() < 3:
            raise ValueError("the volatility feature has too many ties to start "
                             f"{k} states from its quantiles; use init='kmeans'")
        cov = np.array([np.cov(z[b == j].T) + self.min_covar * np.eye(2) for j in range(k)])
        model.startprob_ = np.full(k, 1.0 / k)
        A = np.full((k, k), 0.05 / (k - 1))
        np.fill_diagonal(A, 0.95)
        model.transmat_ = A
        model.means_ = np.array([z[b == j].mean(axis=0) for j in range(k)])
        model.covars_ = cov if self.covariance_type == "full" else np.array(
            [np.diag(c) for c in cov])

    def _finish(self) -> None:
        """Check the learned parameters and cache what the filter needs."""
        k = self.n_components
        shapes = {"startprob_": (k,), "transmat_": (k, k), "means_": (k, 2),
                  "covars_": (k, 2, 2), "feature_mean_": (2,), "feature_std_": (2,)}
        for name, shape in shapes.items():
            if np.shape(getattr(self, name)) != shape:
                raise ValueError(f"{name} must have shape {shape}, got "
                                 f"{np.shape(getattr(self, name))}")
        if not np.isclose(self.startprob_.sum(), 1.0) or not np.allclose(
                self.transmat_.sum(axis=1), 1.0):
            raise ValueError("startprob_ and every row of transmat_ must sum to 1 (a state "
                             "was never visited in training: lower n_components)")
        try:
            self._chol = np.linalg.cholesky(self.covars_)
        except np.linalg.LinAlgError as exc:
            raise ValueError("a state covariance is not positive definite") from exc
        self.state_volatility_ = np.exp(self.means_[:, 0] * self.feature_std_[0]
                                        + self.feature_mean_[0])

    # -- filter ------------------------------------------------------------------------------

    def log_emission(self, X: np.ndarray) -> np.ndarray:
        """Per-state Gaussian log-density ``ln N(z_t; mu_k, Sigma_k)``, shape ``(n, k)``.

        Rows with a NaN (missing observation) get 0 (likelihood 1: the filter only predicts).
        Equal to hmmlearn's per-state log-likelihood of the same parameters.

        Raises:
            NotFittedError: before fit. ValueError: bad X.
        """
        z = self.transform(X)
        ok = np.isfinite(z).all(axis=1)
        out = np.zeros((len(z), self.n_components))
        zf = z[ok]
        for j in range(self.n_components):
            L = self._chol[j]
            y = solve_triangular(L, (zf - self.means_[j]).T, lower=True)
            logdet = 2.0 * np.log(np.diag(L)).sum()
            out[ok, j] = -0.5 * (2 * np.log(2 * np.pi) + logdet + (y**2).sum(axis=0))
        return out

    def _forward(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Log filtered probabilities (n, k) and log normalisers ``ln p(x_t | x_<t)`` (n,)."""
        ll = self.log_emission(X)
        n, k = ll.shape
        A = self.transmat_
        with np.errstate(divide="ignore"):
            log_pi = np.log(self.startprob_)
        out = np.empty((n, k))
        norm = np.empty(n)
        prev = np.zeros(k)
        for t in range(n):
            if t == 0:
                a = log_pi + ll[0]
            else:
                # predict: ln sum_i p(i | x_<t) A_ij, stable since max(prev) is factored out
                m = prev.max()
                with np.errstate(divide="ignore"):
                    a = m + np.log(np.exp(prev - m) @ A) + ll[t]
            c = a.max()
            lse = c + np.log(np.exp(a - c).sum())
            out[t] = prev = a - lse
            norm[t] = lse
        return out, norm

    def filtered_probabilities(self, X: np.ndarray) -> np.ndarray:
        """Forward (filtered) state probabilities ``p(state_t = k | x_1..x_t)``, shape ``(n, k)``.

        Columns follow the state order (calm to violent, names ``state_names_``); rows sum to 1.
        Recursion (Rabiner 1989 eq. 19-20, Hamilton 1989 eq. 4.5), normalised at every step in
        log space: ``ln a_1 = ln pi + ln b(x_1)``; ``ln a_t = ln sum_i exp(ln f_{t-1,i}) A_ij +
        ln b_j(x_t)``; ``ln f_t = ln a_t - logsumexp(ln a_t)``. Row t uses rows <= t only (a
        prefix of ``X`` gives the prefix of the output). A row with a NaN is a prediction-only
        step, so its probabilities are ``p(state_t | earlier observed rows)``.

        Raises:
            NotFittedError: before fit. ValueError: bad X.
        """
        self._require_fitted()
        return np.exp(self._forward(X)[0])

    def forward_log_likelihood(self, X: np.ndarray) -> float:
        """``ln p(x_1..x_n)`` of the standardised features, the sum of the forward normalisers
        (equals hmmlearn's ``score`` on the same parameters and rows).

        Raises:
            NotFittedError: before fit. ValueError: bad X.
        """
        self._require_fitted()
        return float(self._forward(X)[1].sum())

    def classify(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Regime per bar from the filtered probabilities.

        The state of bar t is ``argmax_k p(state_t = k | x_1..x_t)``, named by ``state_names_``;
        then the volatility override: ``vol_t >= extreme_threshold_`` gives ``extreme``. A row
        with a NaN feature is ``unknown``.

        Returns:
            ``(names, probability)``: object array ``(n,)`` of regime names, and float array
            ``(n,)`` with the filtered probability of the chosen state (NaN on ``unknown`` rows;
            on rows forced to ``extreme`` by the threshold it stays the HMM's confidence in its
            own argmax state).

        Raises:
            NotFittedError: before fit. ValueError: bad X.
        """
        self._require_fitted()
        Z = _check_features(X)
        probs = np.exp(self._forward(Z)[0])
        idx = probs.argmax(axis=1)
        names = np.asarray(self.state_names_, dtype=object)[idx]
        p = probs[np.arange(len(idx)), idx]
        if self.extreme_threshold_ is not None:
            with np.errstate(invalid="ignore"):
                names[Z[:, 0] >= self.extreme_threshold_] = "extreme"
        missing = ~np.isfinite(Z).all(axis=1)
        names[missing] = UNKNOWN
        p[missing] = np.nan
        return names, p

    # -- persistence -------------------------------------------------------------------------

    def to_hmmlearn(self) -> Any:
        """An hmmlearn ``GaussianHMM`` with these (reordered) parameters, full covariances.

        For offline analysis and cross-checks; its ``predict``/``predict_proba`` look ahead.
        """
        from hmmlearn.hmm import GaussianHMM

        self._require_fitted()
        m = GaussianHMM(n_components=self.n_components, covariance_type="full",
                        init_params="", params="")
        m.n_features = 2
        m.startprob_ = self.startprob_.copy()
        m.transmat_ = self.transmat_.copy()
        m.means_ = self.means_.copy()
        m.covars_ = self.covars_.copy()
        return m

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state: the constructor arguments and every learned array (as lists).

        Raises:
            NotFittedError: before fit.
        """
        self._require_fitted()
        return {
            "kind": "hmm",
            "params": self.get_params(),
            "feature_mean": self.feature_mean_.tolist(),
            "feature_std": self.feature_std_.tolist(),
            "startprob": self.startprob_.tolist(),
            "transmat": self.transmat_.tolist(),
            "means": self.means_.tolist(),
            "covars": self.covars_.tolist(),
            "state_names": list(self.state_names_),
            "extreme_threshold": self.extreme_threshold_,
            "converged": self.converged_,
            "n_iter": self.n_iter_,
            "log_likelihood": self.log_likelihood_,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HMMRegime:
        """Rebuild a fitted detector from :meth:`to_dict` output (no refit, no hmmlearn call).

        Raises:
            ValueError: wrong ``kind``; arrays of the wrong shape; probabilities not summing to
                1; a covariance not positive definite; state names not those of
                :data:`HMM_STATE_NAMES`.
        """
        if data.get("kind") != "hmm":
            raise ValueError(f"not an HMMRegime state (kind={data.get('kind')!r})")
        obj = cls(**data["params"])
        obj.feature_mean_ = np.asarray(data["feature_mean"], dtype=np.float64)
        obj.feature_std_ = np.asarray(data["feature_std"], dtype=np.float64)
        obj.startprob_ = np.asarray(data["startprob"], dtype=np.float64)
        obj.transmat_ = np.asarray(data["transmat"], dtype=np.float64)
        obj.means_ = np.asarray(data["means"], dtype=np.float64)
        obj.covars_ = np.asarray(data["covars"], dtype=np.float64)
        names = tuple(data["state_names"])
        if names != HMM_STATE_NAMES[obj.n_components]:
            raise ValueError(f"state_names {names} do not match {obj.n_components} states")
        obj.state_names_ = names
        thr = data.get("extreme_threshold")
        obj.extreme_threshold_ = None if thr is None else float(thr)
        obj.converged_ = bool(data["converged"])
        obj.n_iter_ = int(data["n_iter"])
        obj.log_likelihood_ = float(data["log_likelihood"])
        obj._finish()
        return obj


# --------------------------------------------------------------------------------------------
# cascades
# --------------------------------------------------------------------------------------------


def apply_cascades(regimes: Any, cascade_flags: Any) -> np.ndarray:
    """Force ``extreme`` on every bar flagged with a liquidation cascade.

    A flagged bar becomes ``extreme`` whatever its detected regime, ``unknown`` included (a
    cascade is direct evidence of an extreme market). The flags must be causal: bar t may be
    flagged only from liquidations known by the close of bar t, e.g. "some event of the bar's
    symbol labelled ``cascade`` by a rule that reads earlier events only (as
    ``huracan.data.cascades``) has its time in ``[open_t, open_t + bar)``". A label decided on a
    whole batch (a run's size known only at its end) would flag the first bars of a burst with
    knowledge of later liquidations.

    Args:
        regimes: regime names per bar, shape ``(n,)`` (None/NaN read as ``unknown``).
        cascade_flags: booleans per bar, shape ``(n,)``.

    Returns:
        a new object array ``(n,)``.

    Raises:
        ValueError: shapes differ; flags not boolean; unknown regime names.
    """
    r = as_regimes(regimes)
    f = np.asarray(cascade_flags)
    if f.shape != r.shape:
        raise ValueError(f"cascade_flags {f.shape} and regimes {r.shape} differ in shape")
    if f.dtype != bool:
        raise ValueError(f"cascade_flags must be booleans, got dtype {f.dtype}")
    out = r.copy()
    out[f] = "extreme"
    return out
