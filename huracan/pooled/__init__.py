"""One model pooled across symbols: time-aligned folds over several symbols' feature rows and the
fold loop fitting one :class:`huracan.models.pooled.PooledModel` per fold
(:mod:`huracan.pooled.fit`)."""

from huracan.pooled.fit import PooledOutcome, fit_predict_pooled, pooled_folds

__all__ = ["PooledOutcome", "fit_predict_pooled", "pooled_folds"]
