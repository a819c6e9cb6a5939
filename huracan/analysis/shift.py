"""Feature-importance shift: has the ranking of features moved sharply since the last analysis?

:func:`compare_rankings` is pure: Spearman's rank correlation (Spearman 1904) of the two rankings
over the union of their top-N features, and which features entered and left the top N.
:func:`detect_shift` reads the new and previous ``aggregate`` rankings from the brain store and,
when the correlation falls below a threshold, writes a ``data_quality_logs`` row (issue type
``feature_importance_shift``, severity ``warning``) and alerts through the notifier.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sqlalchemy import Engine

from huracan.alerts import Alert, LogNotifier, Notifier
from huracan.analysis.importance_store import previous_run, run_ranking
from huracan.data.quality import QualityIssue, QualitySink, record
from huracan.evaluation.importance import AGGREGATE

log = logging.getLogger(__name__)

ISSUE_TYPE = "feature_importance_shift"


@dataclass(frozen=True)
class ShiftReport:
    """How a feature ranking moved between two analyses.

    Attributes:
        rho: Spearman rank correlation in ``[-1, 1]`` of the two rankings over ``union`` (1 = same
            order); NaN when the rankings share no feature.
        top_n: size of the compared top sets.
        entries: features in the current top N but not the previous one, by current rank.
        exits: features in the previous top N but not the current one, by previous rank.
        union: the compared features (previous top N then the entries).
        not_shared: features ranked by only one of the two analyses (e.g. one model was trained on
            a top-N subset), left out of the comparison.
        previous_run_id, current_run_id: the analyses compared (filled by :func:`detect_shift`).
        threshold: the alert threshold on ``rho`` (filled by :func:`detect_shift`).
        alerted: whether an alert and a ``data_quality_logs`` row were written.
    """

    rho: float
    top_n: int
    entries: list[str] = field(default_factory=list)
    exits: list[str] = field(default_factory=list)
    union: list[str] = field(default_factory=list)
    not_shared: list[str] = field(default_factory=list)
    previous_run_id: str | None = None
    current_run_id: str | None = None
    threshold: float | None = None
    alerted: bool = False

    def shifted(self, threshold: float) -> bool:
        """``rho < threshold`` (never for a NaN ``rho``)."""
        return self.rho < threshold

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rerank(ranks: pd.Series, keep: list[str]) -> pd.Series:
    """``ranks`` restricted to ``keep`` and renumbered 1..k in the same order (ties stable)."""
    kept = ranks[ranks.index.isin(keep)].sort_values(kind="stable")
    return pd.Series(np.arange(1, len(kept) + 1), index=kept.index)


def compare_rankings(previous: pd.Series, current: pd.Series, top_n: int) -> ShiftReport:
    """Compare two rankings of (possibly different sets of) features.

    Only the features both rankings hold are compared, each ranking renumbered over them in its
    own order: a model trained on a top-N subset cannot rank the other features, and their absence
    is a choice of inputs, not a shift of importance (they are listed in ``not_shared``).

    Args:
        previous, current: rank per feature (1 = most important), indexed by feature name.
        top_n: how many top features of each ranking to compare (>= 1).

    Returns:
        :class:`ShiftReport`. ``rho`` is Spearman's rho (``scipy.stats.spearmanr``) of the two rank
        vectors over the union of both top-``top_n`` sets (of the shared features). A one-feature
        union (``top_n = 1``, same top) gives ``rho = 1``; no shared feature gives NaN.

    Raises:
        ValueError: ``top_n < 1``, an empty ranking, or duplicate feature names.
    """
    if top_n < 1:
        raise ValueError(f"top_n must be >= 1, got {top_n}")
    for name, s in (("previous", previous), ("current", current)):
        if s.empty:
            raise ValueError(f"{name} ranking is empty")
        if s.index.has_duplicates:
            raise ValueError(f"{name} ranking has duplicate features")
    previous = previous.set_axis(previous.index.astype(str))
    current = current.set_axis(current.index.astype(str))
    in_current = set(current.index)
    shared = [f for f in previous.index if f in in_current]
    not_shared = [f for f in previous.index if f not in in_current] + [
        f for f in current.index if f not in set(shared)]
    prev, cur = _rerank(previous, shared), _rerank(current, shared)
    prev_top, cur_top = prev.index[:top_n].tolist(), cur.index[:top_n].tolist()
    entries = [f for f in cur_top if f not in prev_top]
    exits = [f for f in prev_top if f not in cur_top]
    union = prev_top + entries
    if not union:
        rho = float("nan")
    elif len(union) == 1:  # top_n = 1 and the same top
        rho = 1.0
    else:
        rho = float(spearmanr(prev[union].to_numpy(), cur[union].to_numpy()).statistic)
    return ShiftReport(rho=rho, top_n=top_n, entries=entries, exits=exits, union=union,
                       not_shared=not_shared)


def detect_shift(
    engine: Engine,
    symbol: str,
    timeframe: str,
    run_id: str,
    threshold: float,
    top_n: int,
    notifier: Notifier | None = None,
    sink: QualitySink | None = None,
    *,
    same_model_type: bool = True,
) -> ShiftReport | None:
    """Compare the stored ``aggregate`` ranking of ``run_id`` with the previous analysis; alert
    when Spearman's rho over the top features falls below ``threshold``.

    The previous analysis is the latest other run with an ``aggregate`` ranking for
    ``symbol``/``timeframe``, analysed no later than ``run_id``, and (by default) of the same model
    type: in a zoo, LightGBM's and the LSTM's rankings legitimately differ, and comparing them would
    alert on every sweep.

    Args:
        engine: the brain store.
        symbol, timeframe: the market analysed.
        run_id: the new analysis (its ``aggregate`` ranking must be stored).
        threshold: alert when ``rho < threshold`` (e.g. 0.5).
        top_n: size of the compared top sets.
        notifier: receives one ``warning`` :class:`~huracan.alerts.Alert` on a shift; default a
            :class:`~huracan.alerts.LogNotifier`.
        sink: receives the :class:`~huracan.data.quality.QualityIssue`; default a
            :class:`~huracan.data.quality_db.DbQualitySink` on ``engine`` (``data_quality_logs``).
        same_model_type: compare only with analyses of the same model type.

    Returns:
        The :class:`ShiftReport` (``alerted`` tells whether the alert fired), or ``None`` when
        there is no previous analysis to compare with.

    Raises:
        LookupError: ``run_id`` has no stored ``aggregate`` ranking.
    """
    current = run_ranking(engine, run_id, AGGREGATE)
    if current.empty:
        raise LookupError(f"run {run_id} has no stored {AGGREGATE!r} feature ranking")
    model_type = str(current["model_type"].iloc[0])
    prev_id = previous_run(engine, symbol, timeframe, run_id,
                           model_type=model_type if same_model_type else None)
    if prev_id is None:
        log.info("feature importance of %s %s (%s): no previous analysis to compare with",
                 symbol, timeframe, model_type)
        return None
    previous = run_ranking(engine, prev_id, AGGREGATE)
    report = compare_rankings(previous.set_index("feature")["rank"],
                              current.set_index("feature")["rank"], top_n)
    report = replace(report, previous_run_id=prev_id, current_run_id=run_id,
                     threshold=threshold)
    log.info("feature ranking %s %s (%s) vs run %s: rho %.3f over top %d, entries %s, exits %s",
             symbol, timeframe, model_type, prev_id, report.rho, top_n, report.entries,
             report.exits)
    if not report.shifted(threshold):
        return report
    details: dict[str, Any] = {
        "rho": round(report.rho, 4), "threshold": threshold, "top_n": top_n,
        "entries": report.entries, "exits": report.exits, "model_type": model_type,
        "timeframe": timeframe, "run_id": run_id, "previous_run_id": prev_id,
        "not_shared": report.not_shared,
    }
    if sink is None:
        from huracan.data.quality_db import DbQualitySink

        sink = DbQualitySink(engine)
    record(QualityIssue(source=f"runs:/{run_id}", issue_type=ISSUE_TYPE, severity="warning",
                        details=details, symbol=symbol), sink)
    title = (f"feature importance shift {symbol} {timeframe} ({model_type}): rank correlation "
             f"{report.rho:.2f} < {threshold:g} over the top {top_n}")
    (notifier or LogNotifier()).notify(Alert(title, "warning", details))
    return replace(report, alerted=True)
