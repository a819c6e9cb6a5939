"""Trading rules: the bridge from a forecast to a position, applied identically to validation,
test, walk-forward OOS and serving (the ``rule`` config group).

A rule is fitted on VALIDATION rows only (the primary model's predictions there and the bars'
prices and labels), never on test rows and never on rows the model was fitted on; then it turns
forecasts into one position per bar (``+1`` long, ``-1`` short, ``0`` flat, fractions for a sized
meta rule) and, per bar, the reason a trade ending there ended. A rule is scored on validation
through the execution model (:func:`huracan.evaluation.execution.execute` on the window's
:class:`~huracan.evaluation.execution.MarketBars`): fills, costs and trades as every backtest.

- :class:`ThresholdRule` (``rule=threshold``): long when the forecast exceeds ``+threshold``,
  short below ``-threshold``; the threshold is chosen on validation from ``grid`` (the candidate
  with the best validation ``metric`` among those trading at least ``min_trades`` times whose
  net returns beat cash, :func:`huracan.evaluation.evidence.beats_cash` at ``min_psr``; none
  does: the rule is FLAT, position 0 on every bar, and says why) or fixed, optionally in units
  of the forecast's rolling spread; positions are held at least ``min_holding`` bars.
- :class:`BarrierRule` (``rule=barrier``): enter on the thresholded signal, exit at the same
  profit-take / stop-loss / time barriers as the triple-barrier labels (Lopez de Prado 2018,
  AFML ch. 3; the outcomes come from :func:`huracan.labels.triple_barrier_labels` with the
  signal's side), one position at a time, flat at least over the exit bar (so consecutive trades
  pay their fees and count as trades). A touch is seen with the bar's high/low; the position is
  closed at that bar's close (orders at bar closes, no intrabar stop orders), so every bar's
  return stays close to close. A signal whose time barrier lies beyond the window is not taken.
- :class:`MetaRule` (``rule=meta``): meta-labelling (AFML 3.6): a secondary LightGBM classifier,
  trained on the validation-period signals of the primary rule, predicts whether acting on a
  signal pays after costs (the signal's triple-barrier outcome net of the round-trip cost of the
  execution model at that bar); positions are the primary's, filtered by (or sized with) its
  probability.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from huracan.config import build
from huracan.evaluation.backtest import BacktestConfig
from huracan.evaluation.evidence import CASH, beats_cash
from huracan.evaluation.execution import MarketBars, execute, round_trip_cost
from huracan.evaluation.selection import SelectionSettings
from huracan.labels import barrier_volatility, triple_barrier_labels


@dataclass
class RuleInput:
    """What a rule sees of a window: one row per bar, in time order.

    Attributes:
        timestamps: bar open times, ``(n,)``.
        forecast: the primary model's forecast per bar, ``(n,)``.
        next_return: the following bar's simple return (what a position held over it earns).
        label: the realised label (accuracy).
        close, high, low: bar prices (the barrier rule and meta-labels need them).
        starts: True where a row follows a data gap (barriers never span one).
        features: the model's input features (the meta classifier's inputs), ``(n, f)``.
        bars: the market of these bars (fills and costs a rule fitted here is scored with);
            None where the rule only turns forecasts into positions (serving).
    """

    timestamps: pd.DatetimeIndex
    forecast: np.ndarray
    next_return: np.ndarray
    label: np.ndarray
    close: np.ndarray | None = None
    high: np.ndarray | None = None
    low: np.ndarray | None = None
    starts: np.ndarray | None = None
    features: np.ndarray | None = None
    bars: MarketBars | None = None

    def __len__(self) -> int:
        return len(self.forecast)


@dataclass
class RulePositions:
    """A rule's output: ``positions`` (n,) and ``exit_reasons`` (n,), strings ("" = none)."""

    positions: np.ndarray
    exit_reasons: np.ndarray


def _segments(starts: np.ndarray | None, n: int) -> list[tuple[int, int]]:
    if starts is None or n == 0:
        return [(0, n)]
    cut = [0, *[int(i) for i in np.flatnonzero(np.asarray(starts, bool)[1:]) + 1], n]
    return [(a, b) for a, b in itertools.pairwise(cut) if b > a]


def _bars(window: RuleInput) -> MarketBars:
    if window.bars is None:
        raise ValueError("fitting a rule on validation rows needs their market bars "
                         "(RuleInput.bars: huracan.stages.rule_input(..., bars=run_bars(...)))")
    return window.bars


def _score(rule_positions: RulePositions, window: RuleInput, bt: BacktestConfig,
           periods_per_year: float, metric: str) -> tuple[float, int, np.ndarray]:
    """``(metric value, trades, per-bar net returns)`` of positions executed on the window."""
    res = execute(rule_positions.positions, _bars(window), periods_per_year,
                  predictions=window.forecast, labels=window.label,
                  exit_reasons=rule_positions.exit_reasons)
    value = float(res.metrics.as_dict()[metric])
    return ((value if math.isfinite(value) else -math.inf), int(res.metrics.n_trades),
            res.returns["strategy_return"].to_numpy(np.float64))


#: what a fitted rule that trades nothing reports as its choice (``chosen``)
FLAT = "flat"


def _flat_positions(window: RuleInput) -> RulePositions:
    n = len(window)
    return RulePositions(np.zeros(n), np.full(n, "", dtype=object))


def _spread(forecast: np.ndarray, window: int) -> np.ndarray:
    """Rolling standard deviation of the forecast over the last ``window`` bars (causal)."""
    return pd.Series(forecast).rolling(window, min_periods=max(2, window // 4)).std().to_numpy()


def _hold(signal: np.ndarray, min_holding: int, starts: np.ndarray | None) -> np.ndarray:
    """Positions that follow ``signal`` but keep each new non-zero position at least
    ``min_holding`` bars (a flip or an exit is delayed, never advanced; reset after a gap)."""
    if min_holding <= 1:
        return signal.astype(np.float64)
    out = np.zeros(len(signal))
    pos, held = 0.0, 0
    gap = np.zeros(len(signal), bool) if starts is None else np.asarray(starts, bool)
    for i, s in enumerate(signal):
        if gap[i]:
            pos, held = 0.0, 0
        if pos != 0.0 and held < min_holding:
            held += 1
        elif s != pos:
            pos, held = float(s), 1
        else:
            held += 1
        out[i] = pos
    return out


@dataclass
class _ChosenThreshold:
    """What the threshold and barrier rules share: an entry threshold, fixed or chosen on
    validation from ``grid``, with "flat" (never trade, the ``cash`` policy) as a candidate.

    The choice (:meth:`fit`): every grid threshold is executed on the validation bars; a
    candidate is eligible when it trades at least ``min_trades`` times AND its net returns beat
    cash (:func:`huracan.evaluation.evidence.beats_cash`: compounded net return > 0 with a PSR
    of at least ``min_psr``); the eligible one with the best validation ``metric`` is chosen.
    None eligible: the fitted rule is flat (``flat_``, ``chosen == "flat"``; position 0 on every
    bar) and ``flat_reason_`` says why (the best candidate's figures). Subclasses define
    ``_apply(window, threshold)``.
    """

    threshold: float = 0.0
    grid: Sequence[float] = ()
    spread_window: int | None = None
    min_trades: int = SelectionSettings.min_trades
    metric: str = "composite_score"
    long_only: bool = False
    min_psr: float = 0.9
    chosen_: float | None = field(default=None, repr=False)
    flat_: bool = field(default=False, repr=False)
    flat_reason_: str = field(default="", repr=False)
    fit_report_: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.min_psr) <= 1.0:
            raise ValueError(f"rule.min_psr must be in [0, 1], got {self.min_psr}")

    @property
    def needs_validation(self) -> bool:
        """Whether :meth:`fit` reads validation predictions (a grid to choose from)."""
        return bool(self.grid)

    @property
    def chosen(self) -> str:
        """``"flat"`` for a rule fitted flat, else ``"threshold=<value>"`` (fitted or fixed)."""
        if self.flat_:
            return FLAT
        thr = self.threshold if self.chosen_ is None else self.chosen_
        return f"threshold={float(thr):g}"

    def _apply(self, window: RuleInput, threshold: float) -> RulePositions:
        raise NotImplementedError

    def fit(self, val: RuleInput, bt: BacktestConfig, periods_per_year: float) -> Any:
        """Choose the threshold, or flat, on validation rows (a fitted copy; see the class
        docstring); no grid: keep ``threshold`` (never flat)."""
        if not self.grid:
            return replace(self, chosen_=float(self.threshold), flat_=False, flat_reason_="",
                           fit_report_={"threshold": float(self.threshold), "chosen_on": "fixed",
                                        "chosen": self.chosen})
        scored, verdicts = [], []
        for thr in self.grid:
            value, trades, net = _score(self._apply(val, float(thr)), val, bt, periods_per_year,
                                        self.metric)
            scored.append((float(thr), value, trades))
            verdicts.append(beats_cash(net, trades, float(self.min_psr),
                                       what=f"threshold {float(thr):g}"))
        enough = [i for i, s in enumerate(scored) if s[2] >= self.min_trades]
        eligible = [i for i in enough if verdicts[i].beats]
        cash = [{"threshold": scored[i][0], "beats": verdicts[i].beats, "psr": verdicts[i].psr,
                 "net_return": verdicts[i].total_return} for i in range(len(scored))]
        report: dict[str, Any] = {"chosen_on": "validation", "eligible": bool(eligible),
                                  "min_psr": float(self.min_psr),
                                  "grid": [list(s) for s in scored], "cash": cash}
        if not eligible:
            best = max(enough or range(len(scored)), key=lambda i: (scored[i][1], scored[i][2]))
            if not enough:
                why = (f"no threshold trades >= {self.min_trades} times on validation (most: "
                       f"{max(s[2] for s in scored)})")
            else:
                why = (f"no threshold with >= {self.min_trades} validation trades beats "
                       f"{CASH}; best {self.metric}: {verdicts[best].reason}")
            reason = f"flat: {why}"
            return replace(self, chosen_=None, flat_=True, flat_reason_=reason, fit_report_={
                **report, "threshold": None, "chosen": FLAT, "flat_reason": reason,
                f"val_{self.metric}": 0.0, "val_trades": 0})
        best = max(eligible, key=lambda i: scored[i][1])
        fitted = replace(self, chosen_=scored[best][0], flat_=False, flat_reason_="")
        return replace(fitted, fit_report_={
            **report, "threshold": scored[best][0], "chosen": fitted.chosen,
            f"val_{self.metric}": scored[best][1], "val_trades": scored[best][2],
            "val_psr": verdicts[best].psr, "val_net_return": verdicts[best].total_return})

    def positions(self, window: RuleInput) -> RulePositions:
        """Positions for ``window`` with the fitted (or fixed) threshold; all 0 when fitted
        flat."""
        if self.flat_:
            return _flat_positions(window)
        thr = self.threshold if self.chosen_ is None else self.chosen_
        return self._apply(window, float(thr))


@dataclass
class ThresholdRule(_ChosenThreshold):
    """Sign of the forecast beyond a threshold (see the module docstring).

    Attributes:
        threshold: the fixed threshold (forecast units: a return, fraction; or spreads when
            ``spread_window`` is set); used when ``grid`` is empty.
        grid: candidate thresholds chosen from on validation (same units).
        spread_window: measure the threshold in units of the forecast's rolling standard deviation
            over this many bars (causal); ``None``: in forecast units.
        min_holding: bars a new position is held at least (>= 1).
        min_trades: validation trades a grid candidate needs to be chosen.
        metric: the validation metric maximised (``composite_score``).
        long_only: map shorts to flat.
        min_psr: the PSR a grid candidate's validation net returns must reach to beat cash
            (``${registry.min_psr}`` in the shipped configs, default 0.9); none does: flat.
    """

    kind: ClassVar[str] = "threshold"
    threshold: float = 0.0008
    min_holding: int = 1

    def _signal(self, window: RuleInput, threshold: float) -> np.ndarray:
        f = np.asarray(window.forecast, dtype=np.float64)
        scale = _spread(f, self.spread_window) if self.spread_window else 1.0
        with np.errstate(invalid="ignore"):
            z = f / scale
        z = np.nan_to_num(z, nan=0.0)
        sig = np.where(z > threshold, 1.0, np.where(z < -threshold, -1.0, 0.0))
        return np.maximum(sig, 0.0) if self.long_only else sig

    def _apply(self, window: RuleInput, threshold: float) -> RulePositions:
        pos = _hold(self._signal(window, threshold), self.min_holding, window.starts)
        reasons = np.full(len(pos), "", dtype=object)
        return RulePositions(pos, reasons)

@dataclass
class BarrierRule(_ChosenThreshold):
    """Enter on the thresholded forecast, exit at profit-take / stop-loss / time barriers.

    Attributes:
        threshold: minimum |forecast| to enter (forecast units, or rolling spreads with
            ``spread_window``); ``grid`` chooses it on validation like :class:`ThresholdRule`.
        pt_mult, sl_mult: barrier widths in units of the rolling volatility (see
            :func:`huracan.labels.barrier_volatility`), > 0.
        max_holding: the time barrier, bars (>= 1).
        vol_window: bars of the rolling volatility.
    """

    kind: ClassVar[str] = "barrier"
    threshold: float = 0.0
    pt_mult: float = 2.0
    sl_mult: float = 1.0
    max_holding: int = 24
    vol_window: int = 24

    def _apply(self, window: RuleInput, threshold: float) -> RulePositions:
        if window.close is None:
            raise ValueError("the barrier rule needs bar closes (and highs/lows)")
        n = len(window)
        side = ThresholdRule(spread_window=self.spread_window,
                             long_only=self.long_only)._signal(window, threshold).astype(int)
        pos = np.zeros(n)
        reasons = np.full(n, "", dtype=object)
        for a, b in _segments(window.starts, n):
            if b - a < 2 or not side[a:b].any():
                continue
            idx = pd.RangeIndex(a, b)
            close = pd.Series(window.close[a:b], index=idx)
            high = None if window.high is None else pd.Series(window.high[a:b], index=idx)
            low = None if window.low is None else pd.Series(window.low[a:b], index=idx)
            vol = barrier_volatility(close, self.vol_window, self.max_holding)
            s = pd.Series(side[a:b], index=idx)
            outcomes = triple_barrier_labels(close, high, low, idx[side[a:b] != 0],
                                             volatility=vol, pt_mult=self.pt_mult,
                                             sl_mult=self.sl_mult,
                                             max_holding=self.max_holding, side=s)
            free = a  # one position at a time; flat at least over the exit bar
            for t0, end, barrier in zip(outcomes.index, outcomes["end_time"],
                                        outcomes["barrier"], strict=True):
                i, j = int(t0), int(end)
                if i < free:
                    continue
                pos[i:j] = float(side[i])
                reasons[j - 1] = "time" if barrier == "vertical" else str(barrier)
                free = j + 1
        return RulePositions(pos, reasons)


@dataclass
class MetaRule:
    """Meta-labelling of a primary rule (Lopez de Prado 2018, AFML section 3.6).

    The secondary classifier (LightGBM, seeded) is trained on the validation bars where the
    primary rule signals: its inputs are the model features and the primary forecast; its label
    is 1 when the signal's triple-barrier outcome (``pt_mult``/``sl_mult``/``max_holding``, oriented
    by the signal's side) beats the round-trip cost of the fill. Positions: the primary's, kept
    where the probability exceeds ``min_probability`` (``size=false``) or scaled by it
    (``size=true``).

    Attributes:
        primary: ``threshold`` or ``barrier``, with its settings (``primary_params``).
    """

    kind: ClassVar[str] = "meta"
    primary: str = "threshold"
    primary_params: dict[str, Any] = field(default_factory=dict)
    pt_mult: float = 2.0
    sl_mult: float = 1.0
    max_holding: int = 24
    vol_window: int = 24
    min_probability: float = 0.5
    size: bool = False
    n_estimators: int = 200
    learning_rate: float = 0.05
    num_leaves: int = 7
    min_child_samples: int = 20
    seed: int = 42
    primary_: Any = field(default=None, repr=False)
    classifier_: Any = field(default=None, repr=False)
    fit_report_: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def needs_validation(self) -> bool:
        """The classifier always trains on validation signals."""
        return True

    @property
    def flat_(self) -> bool:
        """Whether the fitted primary rule is flat (no grid threshold beat cash on
        validation): then the meta rule never trades either."""
        return bool(getattr(self.primary_, "flat_", False))

    @property
    def flat_reason_(self) -> str:
        """Why the fitted primary is flat (``""`` when it is not)."""
        return str(getattr(self.primary_, "flat_reason_", ""))

    @property
    def chosen(self) -> str:
        """The fitted primary's choice: ``"flat"`` or ``"threshold=<value>"``."""
        primary = self.primary_ if self.primary_ is not None else self._primary()
        return str(primary.chosen)

    def _primary(self) -> ThresholdRule | BarrierRule:
        cls = {"threshold": ThresholdRule, "barrier": BarrierRule}[self.primary]
        return cls(**dict(self.primary_params))

    @staticmethod
    def _inputs(window: RuleInput) -> np.ndarray:
        f = np.asarray(window.forecast, dtype=np.float64)[:, None]
        if window.features is None:
            return f
        return np.hstack([np.asarray(window.features, dtype=np.float64), f])

    def meta_labels(self, window: RuleInput, side: np.ndarray,
                    cost: np.ndarray | float) -> pd.DataFrame:
        """Per signalled bar: ``label`` 1 when acting on the side paid more than ``cost`` (per
        bar, the round-trip cost of a unit position at that bar's fill:
        :func:`huracan.evaluation.execution.round_trip_cost`), from the triple-barrier outcome
        oriented by the side (bars of one gap-free run)."""
        if window.close is None:
            raise ValueError("meta-labels need bar closes (and highs/lows)")
        out = []
        for a, b in _segments(window.starts, len(window)):
            s = side[a:b]
            if b - a <= self.max_holding or not s.any():
                continue
            idx = pd.RangeIndex(a, b)
            close = pd.Series(window.close[a:b], index=idx)
            high = None if window.high is None else pd.Series(window.high[a:b], index=idx)
            low = None if window.low is None else pd.Series(window.low[a:b], index=idx)
            vol = barrier_volatility(close, self.vol_window, self.max_holding)
            events = idx[s != 0]
            lab = triple_barrier_labels(close, high, low, events, volatility=vol,
                                        pt_mult=self.pt_mult, sl_mult=self.sl_mult,
                                        max_holding=self.max_holding,
                                        side=pd.Series(s, index=idx))
            paid = np.broadcast_to(np.asarray(cost, dtype=np.float64), (len(window),))
            lab["label"] = (lab["ret"].to_numpy() > paid[lab.index.to_numpy()]).astype(int)
            out.append(lab)
        if not out:
            return pd.DataFrame(columns=["label", "ret"])
        return pd.concat(out)

    def fit(self, val: RuleInput, bt: BacktestConfig, periods_per_year: float) -> MetaRule:
        """Fit the primary rule, then the classifier, on validation rows (a fitted copy)."""
        from lightgbm import LGBMClassifier

        primary = self._primary().fit(val, bt, periods_per_year)
        side = np.sign(primary.positions(val).positions).astype(int)
        labels = self.meta_labels(val, side, round_trip_cost(_bars(val)))
        report: dict[str, Any] = {"primary": primary.fit_report_, "meta_rows": len(labels),
                                  "chosen": primary.chosen}
        if primary.flat_:
            report["flat_reason"] = primary.flat_reason_
        clf = None
        if len(labels) >= 20 and labels["label"].nunique() == 2:
            rows = labels.index.to_numpy(dtype=np.int64)
            X = self._inputs(val)[rows]
            clf = LGBMClassifier(n_estimators=self.n_estimators,
                                 learning_rate=self.learning_rate, num_leaves=self.num_leaves,
                                 min_child_samples=self.min_child_samples,
                                 random_state=self.seed, deterministic=True,
                                 force_row_wise=True, n_jobs=1, verbose=-1)
            clf.fit(X, labels["label"].to_numpy())
            report["meta_positive_share"] = float(labels["label"].mean())
        else:
            report["meta_skipped"] = "fewer than 20 labelled signals or one class only: " \
                                     "the primary's positions pass unfiltered"
        return replace(self, primary_=primary, classifier_=clf, fit_report_=report)

    def positions(self, window: RuleInput) -> RulePositions:
        """The primary's positions, filtered or sized by the classifier's probability at each
        entry (held for the whole trade)."""
        primary = self.primary_ if self.primary_ is not None else self._primary()
        base = primary.positions(window)
        if self.classifier_ is None:
            return base
        prob = self.classifier_.predict_proba(self._inputs(window))[:, 1]
        pos = base.positions.copy()
        n = len(pos)
        i = 0
        while i < n:
            if pos[i] == 0:
                i += 1
                continue
            j = i
            while j + 1 < n and base.positions[j + 1] == base.positions[i]:
                j += 1
            p = float(prob[i])  # decided at entry, held for the trade
            if self.size:
                pos[i : j + 1] = base.positions[i] * p
            elif p < self.min_probability:
                pos[i : j + 1] = 0.0
            i = j + 1
        return RulePositions(pos, base.exit_reasons)


Rule = ThresholdRule | BarrierRule | MetaRule


def make_rule(node: dict[str, Any] | None, group: str = "rule") -> Rule:
    """The rule named by ``node["kind"]`` (default: today's fixed threshold).

    Raises:
        ValueError: an unknown ``kind`` (or a meta rule's unknown ``primary``).
        huracan.settings.UnknownKeyError: a key the rule of that kind does not take, in
            ``node`` or in a meta rule's ``primary_params`` (``group`` names the node).
    """
    node = dict(node or {})
    kind = str(node.pop("kind", "threshold"))
    classes: dict[str, type[Rule]] = {"threshold": ThresholdRule, "barrier": BarrierRule,
                                      "meta": MetaRule}
    cls = classes.get(kind)
    if cls is None:
        raise ValueError(f"{group}.kind {kind!r} is not one of threshold, barrier, meta")
    if node.get("grid") is not None:
        node["grid"] = tuple(node["grid"])
    rule: Rule = build(cls, node, group, extra=("kind",), kind=f"kind {kind}")
    if isinstance(rule, MetaRule):
        primary = {"threshold": ThresholdRule, "barrier": BarrierRule}.get(rule.primary)
        if primary is None:
            raise ValueError(f"{group}.primary must be threshold or barrier, got "
                             f"{rule.primary!r}")
        build(primary, dict(rule.primary_params), f"{group}.primary_params",
              kind=f"primary {rule.primary}")
    return rule
