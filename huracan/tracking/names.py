"""MLflow metric names grouped by ``/`` prefix, and the reading of past runs' names (issue 26).

MLflow's UI groups a run's charts (and Compare's metric lists) into sections by the prefix before
``/``, the metrics without a prefix ("Model metrics") first. The trading metrics of the scored
windows (``val_*``, ``test_*``, ``oos_*``, a pooled job's ``<PAIR>/oos_*``) stay top-level;
bookkeeping goes under a prefix:

==========================================  ================================================
before (runs logged until issue 26)          now
==========================================  ================================================
``time_<step>_s``                            ``time/<step>_s``
``importance_time_<method>_s``               ``time/importance_<method>_s``
``<window>_<metric>__regime_<regime>``       ``regime/<regime>/<window>_<metric>``
``labels_dropped_<reason>``                  ``labels/dropped_<reason>``
``<PAIR>/labels_dropped_<reason>``           ``labels/<PAIR>/dropped_<reason>``
``importance_<name>``                        ``importance/<name>``
``<PAIR>/importance_<name>``                 ``importance/<PAIR>/<name>``
``switching_<metric>``, ``single_best_*``,   ``switching/switching_<metric>``,
``buy_hold_*`` (sweep parent)                ``switching/single_best_*``, ``switching/buy_hold_*``
``switching_bars``, ``switching_candidates``  ``switching/bars``, ``switching/candidates``
``sweep_jobs``, ``sweep_failed_jobs``        ``sweep/jobs``, ``sweep/failed_jobs``
``drift_score.<col>`` (drift run)            ``drift_score/<col>``
``scale_shift.<f>``, ``scale_ratio.<f>``,    ``scale_shift/<f>``, ``scale_ratio/<f>``,
``mean_shift.<f>`` (drift / rescale runs)    ``mean_shift/<f>``
==========================================  ================================================

(the same table is in ``docs/reference/metric-names.md``). Code reading metrics of past runs goes
through :func:`read_metric` (new name, else the old one) or :func:`modern_names` (a run's whole
metric dict under today's names).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

TIME = "time/"
REGIME = "regime/"
LABELS = "labels/"
IMPORTANCE = "importance/"
SWITCHING = "switching/"
SWEEP = "sweep/"


def time_metric(step: str) -> str:
    """``time/<step>_s``: the wall seconds of one job step."""
    return f"{TIME}{step}_s"


def regime_metric(window: str, metric: str, regime: str) -> str:
    """``regime/<regime>/<window>_<metric>``: one scored window's metric on the bars of one
    regime (e.g. ``regime/high/oos_sharpe``)."""
    return f"{REGIME}{regime}/{window}_{metric}"


def labels_metric(reason: str, pair: str | None = None) -> str:
    """``labels/dropped_<reason>`` (``labels/<PAIR>/dropped_<reason>`` for one symbol of a pool):
    rows dropped because their label is unknown."""
    return f"{LABELS}{pair}/dropped_{reason}" if pair else f"{LABELS}dropped_{reason}"


def importance_metric(name: str, pair: str | None = None) -> str:
    """``importance/<name>`` (``importance/<PAIR>/<name>`` for one symbol of a pool):
    ``baseline_loss``, ``shift_rho``, ``family_<family>_<method>``."""
    return f"{IMPORTANCE}{pair}/{name}" if pair else f"{IMPORTANCE}{name}"


def switching_metric(name: str) -> str:
    """``switching/<name>``: the sweep parent's regime-switching comparison
    (``switching/switching_sharpe``, ``switching/single_best_sharpe``, ``switching/bars``...)."""
    return f"{SWITCHING}{name}"


def parse_regime_metric(name: str) -> tuple[str, str] | None:
    """``(<window>_<metric>, <regime>)`` of a per-regime metric name, today's
    (``regime/high/oos_sharpe``) or a past run's (``oos_sharpe__regime_high``); ``None`` for
    any other name."""
    if name.startswith(REGIME):
        parts = name[len(REGIME):].split("/")
        return (parts[1], parts[0]) if len(parts) == 2 and all(parts) else None
    head, sep, regime = name.partition("__regime_")
    return (head, regime) if sep and head and regime else None


#: one row per rename: (today's name pattern, the old name it had, the old name pattern, today's
#: name); tried in order, the first match wins
_RENAMES: tuple[tuple[str, str, str, str], ...] = (
    (r"^time/importance_(.+)_s$", r"importance_time_\1_s",
     r"^importance_time_(.+)_s$", r"time/importance_\1_s"),
    (r"^time/(.+)_s$", r"time_\1_s", r"^time_(.+)_s$", r"time/\1_s"),
    (r"^regime/([^/]+)/([^/]+)$", r"\2__regime_\1", r"^(.+)__regime_(.+)$", r"regime/\2/\1"),
    (r"^labels/([^/]+)/dropped_(.+)$", r"\1/labels_dropped_\2",
     r"^([^/]+)/labels_dropped_(.+)$", r"labels/\1/dropped_\2"),
    (r"^labels/dropped_(.+)$", r"labels_dropped_\1",
     r"^labels_dropped_(.+)$", r"labels/dropped_\1"),
    (r"^importance/([^/]+)/(.+)$", r"\1/importance_\2",
     r"^([^/]+)/importance_(.+)$", r"importance/\1/\2"),
    (r"^importance/(.+)$", r"importance_\1", r"^importance_(.+)$", r"importance/\1"),
    (r"^switching/(bars|candidates)$", r"switching_\1",
     r"^switching_(bars|candidates)$", r"switching/\1"),
    (r"^switching/(.+)$", r"\1",
     r"^((?:switching|single_best|buy_hold)_.+)$", r"switching/\1"),
    (r"^sweep/(.+)$", r"sweep_\1", r"^sweep_(jobs|failed_jobs)$", r"sweep/\1"),
    (r"^(drift_score|scale_shift|scale_ratio|mean_shift)/(.+)$", r"\1.\2",
     r"^(drift_score|scale_shift|scale_ratio|mean_shift)\.(.+)$", r"\1/\2"),
)
_LEGACY = tuple((re.compile(new), old) for new, old, _, _ in _RENAMES)
_MODERN = tuple((re.compile(old), new) for _, _, old, new in _RENAMES)


def legacy_name(name: str) -> str | None:
    """The name a run logged before issue 26 for today's metric ``name``; ``None`` when the
    name did not change (e.g. ``val_sharpe``)."""
    for pattern, repl in _LEGACY:
        if pattern.match(name):
            return pattern.sub(repl, name)
    return None


def modern_name(name: str) -> str:
    """Today's name of a metric ``name`` a run may have logged before issue 26 (unchanged when
    it is already today's name or was never renamed)."""
    if "/" in name and name.split("/", 1)[0] in ("time", "regime", "labels", "importance",
                                                  "switching", "sweep"):
        return name
    for pattern, repl in _MODERN:
        if pattern.match(name):
            return pattern.sub(repl, name)
    return name


def read_metric(metrics: Mapping[str, float], name: str,
                default: float | None = None) -> float | None:
    """``metrics[name]`` (today's name), else the value a past run logged under the old name
    (:func:`legacy_name`), else ``default``."""
    if name in metrics:
        return float(metrics[name])
    old = legacy_name(name)
    if old is not None and old in metrics:
        return float(metrics[old])
    return default


def modern_names(metrics: Mapping[str, float]) -> dict[str, float]:
    """A run's metrics under today's names (a past run's old names renamed; where a run has
    both, today's wins)."""
    out = {modern_name(k): float(v) for k, v in metrics.items() if modern_name(k) != k}
    out.update({k: float(v) for k, v in metrics.items() if modern_name(k) == k})
    return out


__all__ = ["IMPORTANCE", "LABELS", "REGIME", "SWEEP", "SWITCHING", "TIME", "importance_metric",
           "labels_metric", "legacy_name", "modern_name", "modern_names", "parse_regime_metric",
           "read_metric", "regime_metric", "switching_metric", "time_metric"]
