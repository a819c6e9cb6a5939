"""Which candidates a decision may pick: :class:`SelectionSettings` (the ``selection`` config
node), read by the evidence (:mod:`huracan.evaluation.evidence`), the rules' grid choice
(:mod:`huracan.evaluation.rules`) and the job's typed settings (:mod:`huracan.settings`, which
re-exports it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SelectionSettings:
    """Which candidates a decision may pick (``selection`` config node;
    :mod:`huracan.evaluation.evidence`): the one home of these defaults. The rules' grid choice
    (``rule.min_trades``) and the per-regime choice (``regime.min_trades``) interpolate
    ``${selection.min_trades}`` in the shipped configs and default to it in code.

    Attributes:
        min_trades: trades a candidate needs on its selection window (validation or
            walk-forward OOS) to be eligible (sweep, gate, tuning trials), >= 0 (0: no
            requirement).
        pbo_splits: CSCV blocks of the sweep's probability of backtest overfitting, >= 2
            (reduced to an even number that fits the common bars).

    Raises:
        ValueError: a value out of range.
    """

    min_trades: int = 30
    pbo_splits: int = 16

    def __post_init__(self) -> None:
        if int(self.min_trades) < 0:
            raise ValueError(f"selection.min_trades must be >= 0, got {self.min_trades}")
        if int(self.pbo_splits) < 2:
            raise ValueError(f"selection.pbo_splits must be >= 2, got {self.pbo_splits}")
        object.__setattr__(self, "min_trades", int(self.min_trades))
        object.__setattr__(self, "pbo_splits", int(self.pbo_splits))
