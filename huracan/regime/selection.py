"""Per-regime model selection and the regime-switching backtest (pure: no MLflow, no database).

1. :func:`per_regime_metrics` scores one model's backtest separately on the bars of each regime.
2. :func:`select_per_regime` picks, per regime, the best model with enough trades there, or
   falls back to the product's default mapping (:data:`DEFAULT_FALLBACK`), and keeps it only
   when it beats cash on that regime's bars
   (:func:`huracan.evaluation.evidence.beats_cash`); otherwise the regime maps to
   :data:`~huracan.evaluation.evidence.CASH` (position 0). Each choice says why.
3. :func:`switching_backtest` trades, bar by bar, the model chosen for the regime detected at that
   bar, at the regime's exposure; a cash regime is flat. Returns and costs come from the one
   execution model (:func:`huracan.evaluation.execution.execute`); this module holds no cost
   arithmetic.

Attribution conventions (per-regime metrics):

- Bar t belongs to the regime detected at bar t (known at the close of bar t, when the position
  held over bar t+1 is decided); its net return as the execution model charged it
  (:func:`huracan.evaluation.execution.execute`: the gap leg of the previous position, the new
  position's hold leg, the fill's costs and the carry) counts in that regime. Per-bar metrics
  (Sharpe, Sortino, drawdown, returns, accuracy) run on the regime's bars concatenated in time
  order, as if the strategy traded only in that regime; annualisation uses the same
  ``periods_per_year`` (a regime's Sharpe is "per-bar quality, annualised", comparable across
  regimes).
- Trades are cut on the FULL series (:func:`huracan.evaluation.execution.extract_trades`: a
  trade is a contiguous run of bars on one side, a same-side resize such as 1.0 -> 0.25 when the
  regime switches stays inside it and pays exactly its turnover) and each trade counts, whole,
  in the regime of its ENTRY bar, even if it runs into another regime (profit factor, hit ratio,
  number of trades).
- Bars of unknown regime (warm-up, gaps) get their own ``unknown`` row and are in ``all``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from huracan.evaluation.backtest import BacktestResult, positions_from_forecast
from huracan.evaluation.evidence import CASH, beats_cash
from huracan.evaluation.execution import MarketBars, execute, trades_of
from huracan.evaluation.metrics import METRIC_NAMES, compute_metrics
from huracan.regime.detection import REGIMES, UNKNOWN, as_regimes
from huracan.settings import SelectionSettings

#: row of :func:`per_regime_metrics` computed over every bar
ALL = "all"
#: fallback token: the best candidate over all bars by the selection metric
BEST_OVERALL = "best_overall"
#: fallback token: the candidate with the lowest maximum drawdown over all bars
MOST_CONSERVATIVE = "most_conservative"
#: product default when no candidate has enough trades in a regime
DEFAULT_FALLBACK: Mapping[str, str] = {
    "low": "xgboost",
    "normal": BEST_OVERALL,
    "high": "lstm",
    "extreme": MOST_CONSERVATIVE,
}
#: metrics where lower is better (all the others: higher is better)
LOWER_IS_BETTER = frozenset({"max_drawdown"})

_FRAME_COLUMNS = ("timestamp", "position", "strategy_return", "exit_leg", "prediction", "label")


# --------------------------------------------------------------------------------------------
# per-regime metrics
# --------------------------------------------------------------------------------------------


def per_regime_metrics(
    returns_frame: pd.DataFrame,
    regimes: Any,
    periods_per_year: float,
    min_bars: int = 50,
) -> pd.DataFrame:
    """One model's trading metrics on the bars of each regime (attribution: module docstring).

    Args:
        returns_frame: ``BacktestResult.returns`` of one model from
            :func:`huracan.evaluation.execution.execute` (columns ``timestamp, position,
            strategy_return, exit_leg, prediction, label``: the costs as executed, never
            inferred), one row per bar in time order, shape ``(n,)``.
        regimes: regime name per bar, shape ``(n,)`` (None/NaN read as ``unknown``).
        periods_per_year: bars per year for annualisation (8,760 at 1h).
        min_bars: a regime with fewer bars gets NaN metrics (``bars`` and ``n_trades`` are still
            counted).

    Returns:
        a frame indexed by ``low, normal, high, extreme, unknown, all`` with columns ``bars``
        and :data:`huracan.evaluation.metrics.METRIC_NAMES` (``n_trades`` = trades entered in
        the regime; ``all`` = every bar, as the model's overall metrics).

    Raises:
        ValueError: a missing column; length mismatch; unknown regime names; non-unique
            timestamps; ``min_bars < 2``.
    """
    missing = [c for c in _FRAME_COLUMNS if c not in returns_frame.columns]
    if missing:
        raise ValueError(f"returns_frame lacks columns {missing}")
    reg = as_regimes(regimes)
    n = len(returns_frame)
    if len(reg) != n:
        raise ValueError(f"regimes ({len(reg)}) and returns_frame ({n}) differ in length")
    if min_bars < 2:
        raise ValueError(f"min_bars must be >= 2, got {min_bars}")
    ts = pd.DatetimeIndex(returns_frame["timestamp"])
    if ts.has_duplicates:
        raise ValueError("returns_frame timestamps must be unique")
    net = returns_frame["strategy_return"].to_numpy(dtype=np.float64)
    pred = returns_frame["prediction"].to_numpy(dtype=np.float64)
    label = returns_frame["label"].to_numpy(dtype=np.float64)
    trades = trades_of(returns_frame)
    entry = ts.get_indexer(pd.DatetimeIndex(trades["entry_time"]))
    trade_regime = reg[entry] if len(entry) else np.array([], dtype=object)
    trade_ret = trades["return"].to_numpy(dtype=np.float64)

    rows: dict[str, dict[str, float]] = {}
    for name in (*REGIMES, UNKNOWN, ALL):
        mask = np.ones(n, dtype=bool) if name == ALL else reg == name
        tr = trade_ret if name == ALL else trade_ret[trade_regime == name]
        bars = int(mask.sum())
        if bars >= min_bars:
            row = compute_metrics(net[mask], tr, pred[mask], label[mask],
                                  periods_per_year).as_dict()
        else:
            row = dict.fromkeys(METRIC_NAMES, float("nan"))
            row["n_trades"] = float(len(tr))
        rows[name] = {"bars": float(bars), **row}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out[["bars", "n_trades"]] = out[["bars", "n_trades"]].astype("int64")
    return out


# --------------------------------------------------------------------------------------------
# selection
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegimeChoice:
    """The model traded in one regime, or cash.

    Attributes:
        regime: regime name.
        model: candidate name (a key of the candidates), or :data:`CASH` (position 0).
        exposure: position scale factor in (0, 1] (1 = full size); 0 for cash.
        source: ``"evidence"`` (best eligible candidate), ``"fallback"`` (default mapping) or
            ``"cash"`` (the candidate either gave did not beat cash on the regime's bars).
        reason: why, with the numbers (the cash verdict's figures included).
        metric: selection metric name.
        value: the candidate's metric in the regime (evidence) or over all bars (fallback).
        n_trades: the candidate's trades entered in the regime.
        candidate: the model checked against cash (``model`` unless cash; None in a choice
            made before the cash floor existed).
        cash: the cash verdict of ``candidate`` on the regime's bars
            (:meth:`huracan.evaluation.evidence.CashVerdict.as_dict`), None before the floor.
    """

    regime: str
    model: str
    exposure: float
    source: str
    reason: str
    metric: str
    value: float
    n_trades: int
    candidate: str | None = None
    cash: dict[str, Any] | None = None

    @property
    def is_cash(self) -> bool:
        """True when the regime trades nothing (position 0)."""
        return self.model == CASH

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RegimeChoice:
        """Rebuild from :meth:`to_dict` output."""
        return cls(**dict(data))


def _better(a: float, b: float, metric: str) -> bool:
    return a < b if metric in LOWER_IS_BETTER else a > b


def _rank(names: list[str], values: dict[str, float], metric: str) -> list[str]:
    """Names sorted best first (NaN last, ties by name)."""
    sign = 1.0 if metric in LOWER_IS_BETTER else -1.0
    return sorted(names, key=lambda m: (not np.isfinite(values[m]),
                                        sign * values[m] if np.isfinite(values[m]) else 0.0, m))


def _match(token: str, names: list[str]) -> list[str]:
    """Candidates named ``token`` (case-insensitive), else those whose name contains it."""
    t = token.lower()
    exact = [m for m in names if m.lower() == t]
    return exact or [m for m in names if t in m.lower()]


def _with_every_regime(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a row for every name of :data:`REGIMES`: an absent regime gets ``bars`` 0,
    ``n_trades`` 0 and NaN metrics (no evidence); a frame without ``bars`` gets NaN bars."""
    out = frame if "bars" in frame.columns else frame.assign(bars=np.nan)
    missing = [r for r in REGIMES if r not in out.index]
    if not missing:
        return out
    out = out.reindex([*out.index, *missing])
    out.loc[missing, ["bars", "n_trades"]] = 0
    return out


def select_per_regime(
    candidates: Mapping[str, pd.DataFrame],
    metric: str = "composite_score",
    min_trades: int = SelectionSettings.min_trades,
    fallback: Mapping[str, str] = DEFAULT_FALLBACK,
    extreme_exposure: float = 0.25,
    *,
    returns: Mapping[str, pd.DataFrame],
    min_psr: float = 0.9,
) -> dict[str, RegimeChoice]:
    """Per regime, the best candidate with enough evidence there, else the default mapping; and
    cash when that candidate does not beat cash on the regime's bars.

    Evidence: a candidate is eligible in a regime when it entered ``>= min_trades`` trades there
    and its metric is finite (enough bars, see ``min_bars`` of :func:`per_regime_metrics`); the
    best eligible one by ``metric`` is chosen at exposure 1.0 (ties: name order). A regime row
    absent from a candidate's frame (its scored bars never were in that regime, e.g. no
    ``extreme`` bar in ten days of candles) is no evidence for that regime: 0 bars, 0 trades, NaN
    metric; when no candidate has a bar there, the fallback's reason says ``no scored bars in
    regime <name>``.

    Fallback (no eligible candidate), ``fallback[regime]`` is a model name or a token:
    low -> ``xgboost``, normal -> :data:`BEST_OVERALL` (best ``metric`` over all bars), high ->
    ``lstm``, extreme -> :data:`MOST_CONSERVATIVE` (lowest max drawdown over all bars) at
    ``extreme_exposure``; the other fallbacks trade at exposure 1.0. A model name matches a
    candidate by equal name (case-insensitive), else by containment (``xgboost`` matches
    ``XGBoostForecaster``; several matches: the best overall among them); when nothing
    matches, the best overall candidate is used and the reason says so.

    Cash floor (Huracan convention 18): the candidate chosen either way (evidence or fallback)
    is kept only when :func:`huracan.evaluation.evidence.beats_cash` says its net returns on
    the regime's bars (``returns[model]`` rows whose ``regime`` is that regime, as the
    execution model charged them) beat cash with its trades entered there at ``min_psr``: a
    positive compounded net return and a PSR of at least ``min_psr``. Otherwise the regime maps
    to :data:`~huracan.evaluation.evidence.CASH` (``model="cash"``, exposure 0, source
    ``cash``) and the reason gives the verdict's figures and the candidate that failed; a
    candidate without per-bar returns, or without bars in the regime, cannot beat cash. Only
    the chosen candidate is checked (checking runner-ups until one passes would be a search
    for a lucky PSR).

    Args:
        candidates: model name -> :func:`per_regime_metrics` frame.
        metric: one of :data:`huracan.evaluation.metrics.METRIC_NAMES`; higher is better except
            :data:`LOWER_IS_BETTER`.
        min_trades: trades a candidate needs in a regime to be chosen on evidence.
        fallback: regime -> model name or token, for every regime.
        extreme_exposure: exposure of the ``extreme`` fallback, in (0, 1].
        returns: model name -> the per-bar frame its metrics were computed from (an
            :func:`~huracan.evaluation.execution.execute` returns frame on the selection window
            with a ``regime`` column; only ``strategy_return`` and ``regime`` are read).
        min_psr: the cash floor's PSR (``registry.min_psr``), in [0, 1].

    Returns:
        regime -> :class:`RegimeChoice`, for every name of :data:`REGIMES`.

    Raises:
        ValueError: no candidates; unknown metric; a malformed frame (no ``all`` row, or
            without the columns ``n_trades``, ``max_drawdown`` and ``metric``); a returns frame
            without ``strategy_return`` or ``regime``; a fallback missing a regime;
            ``min_trades < 1``; ``extreme_exposure`` outside (0, 1]; ``min_psr`` outside
            [0, 1].
    """
    _check_selection_inputs(candidates, metric, min_trades, fallback, extreme_exposure,
                            returns, min_psr)
    candidates = {name: _with_every_regime(frame) for name, frame in candidates.items()}

    names = sorted(candidates)
    overall = {m: float(candidates[m].loc[ALL, metric]) for m in names}
    overall_mdd = {m: float(candidates[m].loc[ALL, "max_drawdown"]) for m in names}

    out: dict[str, RegimeChoice] = {}
    for regime in REGIMES:
        value = {m: float(candidates[m].loc[regime, metric]) for m in names}
        trades = {m: int(candidates[m].loc[regime, "n_trades"]) for m in names}
        eligible = [m for m in names if trades[m] >= min_trades and np.isfinite(value[m])]
        if eligible:
            choice = _evidence_choice(regime, eligible, len(names), value, trades, candidates,
                                      metric, min_trades)
        else:
            choice = _fallback_choice(regime, names, trades, candidates, overall, overall_mdd,
                                      metric, min_trades, fallback[regime], extreme_exposure)
        out[regime] = _cash_floor(choice, returns, min_psr)
    return out


def _check_selection_inputs(candidates: Mapping[str, pd.DataFrame], metric: str,
                            min_trades: int, fallback: Mapping[str, str],
                            extreme_exposure: float, returns: Mapping[str, pd.DataFrame],
                            min_psr: float) -> None:
    """Raise the ``ValueError`` of :func:`select_per_regime` for bad inputs."""
    if not candidates:
        raise ValueError("no candidate models to select from")
    if metric not in METRIC_NAMES:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRIC_NAMES}")
    if min_trades < 1:
        raise ValueError(f"min_trades must be >= 1, got {min_trades}")
    if not 0.0 < extreme_exposure <= 1.0:
        raise ValueError(f"extreme_exposure must be in (0, 1], got {extreme_exposure}")
    if not 0.0 <= float(min_psr) <= 1.0:
        raise ValueError(f"min_psr must be in [0, 1], got {min_psr}")
    for name, frame in returns.items():
        cols = [c for c in ("strategy_return", "regime") if c not in frame.columns]
        if cols:
            raise ValueError(f"returns of candidate {name!r} lack columns {cols} (an executed "
                             "returns frame with a regime column)")
    lacking = [r for r in REGIMES if r not in fallback]
    if lacking:
        raise ValueError(f"fallback has no entry for regimes {lacking}")
    for name, frame in candidates.items():
        rows = [] if ALL in frame.index else [ALL]
        cols = [c for c in {"n_trades", "max_drawdown", metric} if c not in frame.columns]
        if rows or cols:
            raise ValueError(f"candidate {name!r}: per-regime frame lacks rows {rows} / "
                             f"columns {sorted(cols)} (use per_regime_metrics)")


def _evidence_choice(regime: str, eligible: list[str], n_candidates: int,
                     value: dict[str, float], trades: dict[str, int],
                     candidates: Mapping[str, pd.DataFrame], metric: str,
                     min_trades: int) -> RegimeChoice:
    """The best of the ``eligible`` candidates by ``metric`` in ``regime`` (``value`` and
    ``trades``: each candidate's metric and trades there), at exposure 1.0, with why (before the
    cash floor)."""
    ranked = _rank(eligible, value, metric)
    best = ranked[0]
    runner = (f"; runner-up {ranked[1]} {value[ranked[1]]:.4f}" if len(ranked) > 1
              else "; the only eligible candidate")
    reason = (f"evidence: {best} has the best {metric} in regime {regime} "
              f"({value[best]:.4f} over {candidates[best].loc[regime, 'bars']:.0f} bars "
              f"and {trades[best]} trades >= {min_trades}){runner}; "
              f"{len(eligible)} of {n_candidates} candidates eligible")
    return RegimeChoice(regime, best, 1.0, "evidence", reason, metric, value[best], trades[best])


def _fallback_choice(regime: str, names: list[str], trades: dict[str, int],
                     candidates: Mapping[str, pd.DataFrame], overall: dict[str, float],
                     overall_mdd: dict[str, float], metric: str, min_trades: int, token: str,
                     extreme_exposure: float) -> RegimeChoice:
    """The default mapping's choice for ``regime`` (``token``: a model name,
    :data:`BEST_OVERALL` or :data:`MOST_CONSERVATIVE`), when no candidate is eligible there;
    ``overall``/``overall_mdd``: each candidate's metric and max drawdown over all bars. Its
    reason says why there was no evidence and how the default resolved (before the cash
    floor)."""
    best_overall = _rank(names, overall, metric)[0]
    counts = ", ".join(f"{m} {trades[m]}" for m in names)
    empty = [m for m in names if candidates[m].loc[regime, "bars"] == 0]
    if len(empty) == len(names):
        why = (f"fallback: no scored bars in regime {regime} (no candidate has evidence "
               "there)")
    else:
        why = (f"fallback: no candidate has >= {min_trades} trades with a finite {metric} "
               f"in regime {regime} (trades: {counts})")
        if empty:
            why += f"; no scored bars in regime {regime} for {', '.join(empty)}"
    exposure = extreme_exposure if regime == "extreme" else 1.0
    if token == BEST_OVERALL:
        model = best_overall
        how = f"default {regime} -> best overall by {metric}: {model} ({overall[model]:.4f})"
    elif token == MOST_CONSERVATIVE:
        model = sorted(names, key=lambda m: (
            not np.isfinite(overall_mdd[m]),
            overall_mdd[m] if np.isfinite(overall_mdd[m]) else 0.0,
            _rank(names, overall, metric).index(m)))[0]
        how = (f"default {regime} -> most conservative (lowest max drawdown over all bars): "
               f"{model} ({overall_mdd[model]:.4f})")
    else:
        matched = _match(token, names)
        if matched:
            model = _rank(matched, overall, metric)[0]
            how = f"default {regime} -> {token}: {model}"
        else:
            model = best_overall
            how = (f"default {regime} -> {token}, but {token!r} is not among the candidates "
                   f"{names}; using the best overall by {metric}: {model} "
                   f"({overall[model]:.4f})")
    if exposure != 1.0:
        how += f", at exposure {exposure:g}"
    return RegimeChoice(regime, model, exposure, "fallback", f"{why}; {how}", metric,
                        overall[model], trades[model])


def _cash_floor(choice: RegimeChoice, returns: Mapping[str, pd.DataFrame],
                min_psr: float) -> RegimeChoice:
    """``choice`` when its model beats cash on the regime's bars of ``returns[model]``
    (:func:`~huracan.evaluation.evidence.beats_cash`, its trades entered in the regime), with
    the verdict in its reason; else the cash choice for the regime, saying why."""
    what = f"{choice.model} in regime {choice.regime}"
    frame = returns.get(choice.model)
    if frame is None:
        why = f"no per-bar net returns of {choice.model} to check against cash"
        verdict = None
    else:
        mask = as_regimes(frame["regime"]) == choice.regime
        net = frame["strategy_return"].to_numpy(np.float64)[mask]
        v = beats_cash(net, choice.n_trades, min_psr, what=what)
        if v.beats:
            return replace(choice, reason=f"{choice.reason}; {v.reason}",
                           candidate=choice.model, cash=v.as_dict())
        why, verdict = v.reason, v.as_dict()
    return RegimeChoice(choice.regime, CASH, 0.0, CASH,
                        f"cash: {why} (the {choice.source} choice was {choice.model}: "
                        f"{choice.reason})", choice.metric, choice.value, choice.n_trades,
                        candidate=choice.model, cash=verdict)


# --------------------------------------------------------------------------------------------
# switching backtest
# --------------------------------------------------------------------------------------------


def switching_backtest(
    predictions: Mapping[str, np.ndarray],
    regimes: Any,
    selection: Mapping[str, RegimeChoice],
    bars: MarketBars,
    label: np.ndarray,
    threshold: float = 0.0,
    long_only: bool = False,
    periods_per_year: float = 8760.0,
) -> BacktestResult:
    """Backtest one strategy that trades, at each bar, the model chosen for that bar's regime.

    At bar t (regime ``r_t`` detected at the close of bar t, causal) the position held over bar
    t+1 is ``exposure(r_t) * positions_from_forecast(predictions[model(r_t)][t], threshold,
    long_only)``; bars of ``unknown`` regime and of a cash regime (:attr:`RegimeChoice.is_cash`)
    are flat. The positions are executed on ``bars``
    by :func:`huracan.evaluation.execution.execute` (fills, costs per unit of turnover, fractional
    sizes included, from a flat start; a same-side resize stays in its trade).

    Args:
        predictions: model name -> forecast forward return per bar, fraction, shape ``(n,)``
            (a NaN forecast means flat).
        regimes: regime name per bar, shape ``(n,)`` (None/NaN read as ``unknown``).
        selection: regime -> :class:`RegimeChoice` (from :func:`select_per_regime`).
        bars: the market of the ``n`` bars (:class:`~huracan.evaluation.execution.MarketBars`).
        label: realised label for directional accuracy, shape ``(n,)``.
        threshold, long_only: as :class:`huracan.evaluation.backtest.BacktestConfig`.
        periods_per_year: bars per year for annualisation.

    Returns:
        a :class:`BacktestResult` whose ``returns`` has execute's columns (``prediction`` = the
        traded model's forecast, 0 on unknown and cash bars) plus ``regime``, ``model`` (None
        when flat for an unknown regime, ``cash`` in a cash regime) and ``exposure`` (0 when
        flat).

    Raises:
        ValueError: length mismatch; unknown regime names; a regime present in ``regimes``
            without a selection; a selected model without predictions; exposure outside
            (0, 1]; a negative threshold.
    """
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    reg = as_regimes(regimes)
    n = len(reg)
    lab = np.asarray(label, dtype=np.float64).reshape(-1)
    if not (len(bars) == len(lab) == n):
        raise ValueError(f"regimes ({n}), bars ({len(bars)}) and label ({len(lab)}) differ in "
                         "length")
    preds: dict[str, np.ndarray] = {}
    for name, p in predictions.items():
        arr = np.asarray(p, dtype=np.float64).reshape(-1)
        if len(arr) != n:
            raise ValueError(f"predictions[{name!r}] has {len(arr)} rows, expected {n}")
        preds[name] = arr

    pos = np.zeros(n)
    pred = np.zeros(n)
    exposure = np.zeros(n)
    model = np.full(n, None, dtype=object)
    for regime in sorted(set(reg) - {UNKNOWN}):
        if regime not in selection:
            raise ValueError(f"regime {regime!r} occurs but has no selection")
        choice = selection[regime]
        m = reg == regime
        if choice.is_cash:
            model[m] = CASH  # flat: position, forecast and exposure stay 0
            continue
        if choice.model not in preds:
            raise ValueError(f"regime {regime!r} selects {choice.model!r}, which has no "
                             f"predictions (have {sorted(preds)})")
        if not 0.0 < choice.exposure <= 1.0:
            raise ValueError(f"exposure of regime {regime!r} must be in (0, 1], "
                             f"got {choice.exposure}")
        p = preds[choice.model][m]
        pos[m] = choice.exposure * positions_from_forecast(p, threshold, long_only)
        pred[m] = p
        exposure[m] = choice.exposure
        model[m] = choice.model

    result = execute(pos, bars, periods_per_year, predictions=pred, labels=lab)
    result.returns["regime"] = reg
    result.returns["model"] = model
    result.returns["exposure"] = exposure
    return result
