"""Live paper trading against the backtest of the same bars: by how much they differ and why
(``huracan paper compare``).

The backtest is the core's replay (:func:`huracan.paper.loop.replay`) of the same production,
with the live account's anchor and execution settings, over TODAY's candles, into a scratch
replay account (a temporary SQLite store unless an engine is given). Both sides are then in the
ledger's shapes (:class:`~huracan.db.tables.PaperOrder` and :class:`~huracan.db.tables.PaperMark`
columns) and are aligned bar by bar on ``bar_time``.

Every bar whose net return differs (``|live - backtest| > tol``) or whose position differs gets
exactly ONE source, the first that applies in this order:

1. ``data revised``: the candles the live loop saw differ from today's: the live order's
   ``data_digest`` (the chain digest of its request's candles,
   :func:`huracan.data.prediction_store.chain_digests`) or ``bar_close`` differs from the
   backtest's at that bar (for a mark, at the bar or the next one, whose open and close it
   reads). The first such bar is the revision point. A bar counts here when its position
   differs because of an order decided on revised data, or when its positions agree and its
   market (close, fill price, cost window) differs on revised data.
2. ``late or missing bar``: the live loop did not decide the bar (no order: outage, missing
   bar; or a ``skipped`` order: stale, late, missing) or saw it late (``bar_available_at`` more
   than ``late_after`` after the bar's close) while the backtest decided it; the digest-only
   mismatches of the requests that followed a bar the live loop lacked, while they lacked it,
   count here too (their candles miss that bar; none is revised).
3. ``model version``: the live order's ``model_version``/``run_id`` differs from the backtest's.
4. ``fills and costs``: the same positions on the same data, a different return (cost,
   funding, fill price, execution settings).
5. ``unexplained``: what is left (the same data, model and timing gave another answer); should
   be 0 and is reported.

A difference in position carries: a mark whose previous position differs inherits the source
of the bar that made it differ (the gap leg and the fill cost of the next bar are its
consequence). Per source: bars affected, the sum of the per-bar net-return differences
(fractions and bps) and its share of the total ``sum |difference|``; the sources' sums add up
to the total difference exactly (bars within ``tol`` and with equal positions are not
attributed, their noise is under ``tol`` each).
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from huracan.data.ohlcv import timeframe_to_timedelta
from huracan.evaluation.execution import BPS, extract_trades
from huracan.evaluation.metrics import sharpe_ratio, total_return
from huracan.timeutil import to_utc

DATA, LATE, MODEL, FILLS, UNEXPLAINED = SOURCES = (
    "data revised", "late or missing bar", "model version", "fills and costs", "unexplained")
#: per-bar tolerance on the net return (fraction) below which live and backtest agree
TOLERANCE = 1e-12
#: the per-bar alignment's columns (:attr:`Comparison.bars`)
BAR_COLUMNS = ["bar_time", "live_net", "backtest_net", "diff", "live_position",
               "backtest_position", "live_prev", "backtest_prev", "source"]
SOURCE_COLUMNS = ["source", "bars", "diff", "diff_bps", "share"]


def _by_bar(frame: pd.DataFrame | None) -> pd.DataFrame:
    """A ledger frame indexed by UTC ``bar_time`` (empty frame for None)."""
    if frame is None or len(frame) == 0:
        return pd.DataFrame(index=pd.DatetimeIndex([], tz="UTC", name="bar_time"))
    out = frame.copy()
    out["bar_time"] = pd.to_datetime(out["bar_time"], utc=True)
    return out.set_index("bar_time").sort_index()


def _records(frame: pd.DataFrame | None) -> dict[pd.Timestamp, dict[str, Any]]:
    """A ledger frame as ``{bar_time: row dict}`` (fast per-bar look-ups)."""
    by = _by_bar(frame)
    return {pd.Timestamp(t): r for t, r in zip(by.index, by.to_dict("records"), strict=True)}


def _get(row: dict[str, Any] | None, name: str) -> Any:
    if row is None:
        return None
    value = row.get(name)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def _differs(a: Any, b: Any, rtol: float = 1e-12) -> bool:
    """Both known and different (floats: beyond ``rtol``)."""
    if a is None or b is None:
        return False
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return not math.isclose(float(a), float(b), rel_tol=rtol, abs_tol=0.0)
    return str(a) != str(b)


def order_causes(live_orders: pd.DataFrame | None, backtest_orders: pd.DataFrame | None, *,
                 bar: pd.Timedelta, late_after: pd.Timedelta | None = None) -> pd.DataFrame:
    """Per decided bar (union of both sides' ``bar_time``), why the two decisions may differ.

    Args:
        live_orders, backtest_orders: ``paper_orders`` rows (:class:`PaperOrder` columns; at
            least ``bar_time, status, target_position``; ``data_digest, bar_close,
            bar_available_at, model_version, run_id`` when known).
        bar: the bar size (a bar opening at ``t`` closes at ``t + bar``).
        late_after: how long after the close ``bar_available_at`` may be before the bar counts
            as seen late (default a quarter of the bar).

    Returns:
        frame indexed by ``bar_time``: ``data_changed`` (bool: digest or close differs, or the
        bar the live loop saw is gone today), ``live_decided``, ``backtest_decided`` (bool),
        ``live_target``, ``backtest_target`` (NaN when not decided) and ``cause`` (a source,
        or None when nothing tells the two decisions apart).
    """
    live, bt = _records(live_orders), _records(backtest_orders)
    late_after = bar / 4 if late_after is None else late_after
    index = sorted(set(live) | set(bt))
    rows: list[dict[str, Any]] = []
    for t in index:
        lo, bo = live.get(t), bt.get(t)
        l_dec = _get(lo, "status") == "decided"
        b_dec = _get(bo, "status") == "decided"
        # the live loop saw a bar (its close) that today's candles lack: changed too
        changed = (_differs(_get(lo, "data_digest"), _get(bo, "data_digest"))
                   or _differs(_get(lo, "bar_close"), _get(bo, "bar_close"))
                   or (_get(bo, "bar_close") is None and _get(lo, "bar_close") is not None))
        seen = _get(lo, "bar_available_at")
        late = seen is not None and pd.Timestamp(seen) - (t + bar) > late_after
        if changed:
            cause: str | None = DATA
        elif lo is None or not l_dec or late:
            cause = LATE
        elif (_differs(_get(lo, "model_version"), _get(bo, "model_version"))
              or _differs(_get(lo, "run_id"), _get(bo, "run_id"))):
            cause = MODEL
        elif not b_dec or _differs(_get(lo, "target_position"), _get(bo, "target_position"),
                                   rtol=0.0):
            cause = UNEXPLAINED
        else:
            cause = None
        rows.append({"data_changed": changed, "live_decided": l_dec,
                     "backtest_decided": b_dec,
                     "live_target": _get(lo, "target_position") if l_dec else np.nan,
                     "backtest_target": _get(bo, "target_position") if b_dec else np.nan,
                     "digest_only": _differs(_get(lo, "data_digest"), _get(bo, "data_digest"))
                     and not _differs(_get(lo, "bar_close"), _get(bo, "bar_close")),
                     "lacked": _get(lo, "bar_close") is None and _get(bo, "bar_close") is not None,
                     "cause": cause})
    out = pd.DataFrame(rows, columns=["data_changed", "live_decided", "backtest_decided",
                                      "live_target", "backtest_target", "digest_only",
                                      "lacked", "cause"],
                       index=pd.DatetimeIndex(index, name="bar_time") if index else
                       pd.DatetimeIndex([], tz="UTC", name="bar_time"))
    _missing_stretches(out, bar)
    return out.drop(columns=["digest_only", "lacked"])


def _missing_stretches(causes: pd.DataFrame, bar: pd.Timedelta) -> None:
    """In place: the live requests after a bar the live loop lacked (no candle; today has it)
    differ from today's by their digest only, as long as the bar stays absent from them: that
    stretch is the missing bar (``late or missing bar``), not a revision. It starts at the
    bar right after the lacked one and ends at the first bar whose digest matches again or
    whose close differs (a revision)."""
    lacked = dict(zip(causes.index, causes["lacked"].astype(bool), strict=True))
    digest_only = causes["digest_only"].to_numpy(bool)
    in_stretch = np.zeros(len(causes), dtype=bool)
    on = False
    for i, t in enumerate(causes.index):
        on = bool(digest_only[i] and (on or lacked.get(t - bar, False)))
        in_stretch[i] = on
    causes.loc[in_stretch, "cause"] = LATE
    causes.loc[in_stretch, "data_changed"] = False


def _first(*causes: str | None) -> str | None:
    """The cause of highest precedence among ``causes`` (None when all are None)."""
    ranked = [SOURCES.index(c) for c in causes if c is not None]
    return SOURCES[min(ranked)] if ranked else None


def _market_differs(lm: dict[str, Any], bm: dict[str, Any], tol: float) -> bool:
    return any(abs(float(lm[c]) - float(bm[c])) > tol
               for c in ("asset_return", "gross_return", "cost", "funding_cost", "borrow_cost",
                         "net_return") if c in lm and c in bm)


def attribute(live_orders: pd.DataFrame | None, live_marks: pd.DataFrame | None,
              backtest_orders: pd.DataFrame | None, backtest_marks: pd.DataFrame | None, *,
              bar: pd.Timedelta, late_after: pd.Timedelta | None = None,
              tol: float = TOLERANCE, causes: pd.DataFrame | None = None) -> pd.DataFrame:
    """Align live and backtest marks bar by bar and give each differing bar one source
    (module docstring).

    Args:
        live_orders, backtest_orders: ``paper_orders`` frames (see :func:`order_causes`).
        live_marks, backtest_marks: ``paper_marks`` frames (``bar_time, prev_position,
            position, net_return`` and the return parts).
        bar: the bar size; late_after: see :func:`order_causes`.
        tol: per-bar tolerance on the net return (fraction).
        causes: :func:`order_causes` of the two order frames, when already computed.

    Returns:
        frame with :data:`BAR_COLUMNS`, one row per bar marked on either side, in time order;
        a side without a mark there counts 0 net return (NaN positions); ``diff`` = live -
        backtest; ``source`` None where the two agree.
    """
    if causes is None:
        causes = order_causes(live_orders, backtest_orders, bar=bar, late_after=late_after)
    changed = dict(zip(causes.index, causes["data_changed"].astype(bool), strict=True))
    cause_of = dict(zip(causes.index, causes["cause"], strict=True))
    live, bt = _records(live_marks), _records(backtest_marks)
    rows: list[dict[str, Any]] = []
    carried: str | None = None  # the source of the current position difference
    for t in sorted(set(live) | set(bt)):
        lm, bm = live.get(t), bt.get(t)
        order_cause = cause_of.get(t)
        l_net = float(lm["net_return"]) if lm is not None else 0.0
        b_net = float(bm["net_return"]) if bm is not None else 0.0
        l_pos = float(lm["position"]) if lm is not None else np.nan
        b_pos = float(bm["position"]) if bm is not None else np.nan
        l_prev = float(lm["prev_position"]) if lm is not None else np.nan
        b_prev = float(bm["prev_position"]) if bm is not None else np.nan
        diff = l_net - b_net
        pos_differs = lm is None or bm is None or l_pos != b_pos
        prev_differs = lm is not None and bm is not None and l_prev != b_prev
        prev_cause = carried if prev_differs else None
        if pos_differs:
            carried = order_cause or (DATA if lm is not None and bm is None else None) \
                or (LATE if lm is None else None) or carried or UNEXPLAINED
        else:
            carried = None
        data_here = changed.get(t, False) or changed.get(t + bar, False)
        market = None
        if lm is not None and bm is not None and (abs(diff) > tol or _market_differs(lm, bm, tol)):
            # fills and costs only with the same positions; revised data whatever they are
            market = DATA if data_here else (None if pos_differs or prev_differs else FILLS)
        source = None
        if pos_differs or prev_differs or abs(diff) > tol:
            source = _first(carried if pos_differs else None, prev_cause, market) or UNEXPLAINED
        rows.append({"bar_time": t, "live_net": l_net, "backtest_net": b_net, "diff": diff,
                     "live_position": l_pos, "backtest_position": b_pos, "live_prev": l_prev,
                     "backtest_prev": b_prev, "source": source})
    return pd.DataFrame(rows, columns=BAR_COLUMNS)


def source_table(bars: pd.DataFrame) -> pd.DataFrame:
    """Per source (all of :data:`SOURCES`, in order): ``bars`` affected, ``diff`` (sum of the
    per-bar net-return differences, fraction), ``diff_bps`` and ``share`` (its bars' ``sum
    |diff|`` over every bar's; 0 when nothing differs)."""
    total_abs = float(bars["diff"].abs().sum()) if len(bars) else 0.0
    rows = []
    for s in SOURCES:
        sel = bars[bars["source"] == s] if len(bars) else bars
        d = float(sel["diff"].sum()) if len(sel) else 0.0
        share = float(sel["diff"].abs().sum()) / total_abs if total_abs > 0 else 0.0
        rows.append({"source": s, "bars": len(sel), "diff": d, "diff_bps": d / BPS,
                     "share": share})
    return pd.DataFrame(rows, columns=SOURCE_COLUMNS)


def side_totals(net: np.ndarray, position: np.ndarray, timestamps: pd.DatetimeIndex,
                periods_per_year: float) -> dict[str, float | int]:
    """Net return (compounded), Sharpe, trades and final equity of one side's marks."""
    net = np.asarray(net, np.float64)
    pos = np.nan_to_num(np.asarray(position, np.float64))
    trades = extract_trades(timestamps, pos, net) if len(net) else pd.DataFrame()
    return {"net_return": float(total_return(net)) if len(net) else 0.0,
            "sharpe": float(sharpe_ratio(net, periods_per_year)) if len(net) > 1 else 0.0,
            "trades": len(trades), "equity": float(np.prod(1.0 + net)),
            "bars": len(net)}


@dataclass(frozen=True)
class Comparison:
    """Live against backtest over the compared bars (module docstring).

    Attributes:
        account: the live account; backtest: what the backtest was (its label).
        symbol, timeframe: the market.
        start, end: first and last compared bar (UTC open times; None when none).
        bars: the per-bar alignment (:data:`BAR_COLUMNS`).
        sources: per source (:data:`SOURCE_COLUMNS`).
        live, backtest_totals: ``net_return, sharpe, trades, equity, bars`` of each side.
        revision_point: the first bar decided on data that differs from today's (None).
        tol: per-bar tolerance.
        notes: what the comparison had to assume.
    """

    account: str
    backtest: str
    symbol: str
    timeframe: str
    start: pd.Timestamp | None
    end: pd.Timestamp | None
    bars: pd.DataFrame
    sources: pd.DataFrame
    live: dict[str, Any]
    backtest_totals: dict[str, Any]
    revision_point: pd.Timestamp | None
    tol: float = TOLERANCE
    notes: tuple[str, ...] = field(default=())

    @property
    def bars_compared(self) -> int:
        return len(self.bars)

    @property
    def total_diff(self) -> float:
        """Sum of the per-bar net-return differences (live - backtest), fraction."""
        return float(self.bars["diff"].sum()) if len(self.bars) else 0.0

    @property
    def equity_gap(self) -> float:
        """Live final equity minus the backtest's (both from 1.0 at the first compared bar)."""
        return float(self.live["equity"]) - float(self.backtest_totals["equity"])

    @property
    def agree(self) -> bool:
        """No bar attributed to any source."""
        return bool(self.bars["source"].isna().all()) if len(self.bars) else True

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no per-bar rows but the attributed ones' times per source)."""
        def ts(x: pd.Timestamp | None) -> str | None:
            return None if x is None else pd.Timestamp(x).isoformat()

        return {
            "account": self.account, "backtest": self.backtest, "symbol": self.symbol,
            "timeframe": self.timeframe, "start": ts(self.start), "end": ts(self.end),
            "bars_compared": self.bars_compared, "agree": self.agree,
            "total_diff": self.total_diff, "total_diff_bps": self.total_diff / BPS,
            "equity_gap": self.equity_gap, "revision_point": ts(self.revision_point),
            "live": self.live, "backtest_totals": self.backtest_totals,
            "sources": self.sources.to_dict(orient="records"), "tol": self.tol,
            "notes": list(self.notes),
        }

    def lines(self) -> list[str]:
        """The printed table: totals, then one line per source."""
        lv, bt = self.live, self.backtest_totals
        out = [f"{self.account} vs {self.backtest}: {self.bars_compared} bars "
               f"{ts_text(self.start)} .. {ts_text(self.end)}",
               f"{'':10}{'net return':>12}{'sharpe':>9}{'trades':>8}{'equity':>10}",
               f"{'live':10}{lv['net_return']:>12.4%}{lv['sharpe']:>9.2f}{lv['trades']:>8d}"
               f"{lv['equity']:>10.4f}",
               f"{'backtest':10}{bt['net_return']:>12.4%}{bt['sharpe']:>9.2f}"
               f"{bt['trades']:>8d}{bt['equity']:>10.4f}",
               f"difference (sum of per-bar net): {self.total_diff:+.6g} "
               f"({self.total_diff / BPS:+.2f} bps); equity gap {self.equity_gap:+.6g}"]
        if self.revision_point is not None:
            out.append(f"revision point: {ts_text(self.revision_point)}")
        out.append(f"{'source':22}{'bars':>6}{'diff':>14}{'bps':>10}{'share':>8}")
        for r in self.sources.itertuples(index=False):
            out.append(f"{r.source:22}{r.bars:>6d}{r.diff:>+14.6g}{r.diff_bps:>+10.2f}"
                       f"{r.share:>8.1%}")
        out.extend(f"note: {n}" for n in self.notes)
        out.append("live and backtest agree bar by bar" if self.agree else
                   f"live and backtest differ on {int(self.bars['source'].notna().sum())} "
                   "bar(s)")
        return out


def ts_text(x: pd.Timestamp | None) -> str:
    return "-" if x is None else f"{pd.Timestamp(x):%Y-%m-%d %H:%M}"


def revision_point(causes: pd.DataFrame) -> pd.Timestamp | None:
    """The first bar whose decision saw data that differs from today's (None)."""
    hit = causes.index[causes["data_changed"].to_numpy(bool)]
    return pd.Timestamp(hit[0]) if len(hit) else None


def build_comparison(live_orders: pd.DataFrame, live_marks: pd.DataFrame,
                     backtest_orders: pd.DataFrame, backtest_marks: pd.DataFrame, *,
                     account: str, backtest: str, symbol: str, timeframe: str,
                     bar: pd.Timedelta, periods_per_year: float,
                     start: pd.Timestamp | None = None, end: pd.Timestamp | None = None,
                     late_after: pd.Timedelta | None = None, tol: float = TOLERANCE,
                     notes: tuple[str, ...] = ()) -> Comparison:
    """:class:`Comparison` of two ledgers' frames (the pure part of :func:`compare`): aligned,
    attributed, restricted to bars in ``[start, end]``, with each side's totals."""
    causes = order_causes(live_orders, backtest_orders, bar=bar, late_after=late_after)
    bars = attribute(live_orders, live_marks, backtest_orders, backtest_marks, bar=bar,
                     late_after=late_after, tol=tol, causes=causes)
    if start is not None:
        bars = bars[bars["bar_time"] >= start]
    if end is not None:
        bars = bars[bars["bar_time"] <= end]
    bars = bars.reset_index(drop=True)
    if start is not None:
        causes = causes[causes.index >= start]
    if end is not None:
        causes = causes[causes.index <= end]
    ts = pd.DatetimeIndex(bars["bar_time"])
    lv, bv = _marked(live_marks, ts), _marked(backtest_marks, ts)
    return Comparison(
        account=account, backtest=backtest, symbol=symbol, timeframe=timeframe,
        start=pd.Timestamp(ts[0]) if len(ts) else None,
        end=pd.Timestamp(ts[-1]) if len(ts) else None, bars=bars, sources=source_table(bars),
        live=side_totals(*lv, periods_per_year),
        backtest_totals=side_totals(*bv, periods_per_year),
        revision_point=revision_point(causes), tol=tol, notes=notes)


def _marked(marks: pd.DataFrame | None, ts: pd.DatetimeIndex
            ) -> tuple[np.ndarray, np.ndarray, pd.DatetimeIndex]:
    """One side's ``(net, position, timestamps)`` over its own marks among ``ts``."""
    m = _by_bar(marks)
    m = m[m.index.isin(ts)] if len(m) else m
    if not len(m):
        return np.zeros(0), np.zeros(0), pd.DatetimeIndex([], tz="UTC")
    return (m["net_return"].to_numpy(np.float64), m["position"].to_numpy(np.float64),
            pd.DatetimeIndex(m.index))


class NothingToCompareError(LookupError):
    """No live account of that name, or it has no marks yet (one line); the command exits 1."""


def scratch_engine(directory: str | Path) -> Engine:
    """A throw-away SQLite brain store in ``directory`` holding the tables a replay writes
    (``predictions`` and the paper tables), for the backtest side of :func:`compare`."""
    from huracan.db.session import make_engine
    from huracan.db.tables import (
        PaperAccount,
        PaperFill,
        PaperMark,
        PaperOrder,
        Prediction,
    )

    engine = make_engine(f"sqlite:///{Path(directory) / 'compare.db'}")
    tables = [m.__table__ for m in (Prediction, PaperAccount, PaperOrder, PaperFill, PaperMark)]
    Prediction.metadata.create_all(engine, tables=tables)  # type: ignore[arg-type]
    return engine


def backtest_ledger(production: Any, spec: Any, candles: pd.DataFrame, *, end: pd.Timestamp,
                    funding: pd.DataFrame | None = None, engine: Engine | None = None
                    ) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """The backtest side: the core's replay (:func:`huracan.paper.loop.replay`) of
    ``production`` with the live account's anchor and execution settings over ``candles``
    (today's) up to ``end`` (exclusive), into a scratch replay account ``compare-<account>``
    (in ``engine``, default a temporary SQLite store deleted afterwards).

    Returns:
        ``(orders, marks, account)`` of the scratch account (ledger frames).
    """
    from huracan.paper.ledger import PaperLedger
    from huracan.paper.loop import replay

    bt = replace(spec, account=f"compare-{spec.account}"[:128], mode="replay")

    def run(eng: Engine) -> tuple[pd.DataFrame, pd.DataFrame, str]:
        ledger = PaperLedger(eng)
        replay(eng, production, bt, candles, end=end, funding=funding)
        return ledger.orders(bt.account), ledger.marks(bt.account), bt.account

    if engine is not None:
        return run(engine)
    with tempfile.TemporaryDirectory(prefix="huracan-compare-") as tmp:
        eng = scratch_engine(tmp)
        try:
            return run(eng)
        finally:
            eng.dispose()


def _window(frame: pd.DataFrame, last: pd.Timestamp) -> pd.DataFrame:
    if len(frame) == 0:
        return frame
    return frame[pd.to_datetime(frame["bar_time"], utc=True) <= last].reset_index(drop=True)


def compare(engine: Engine, production: Any, live_account: str, candles: pd.DataFrame, *,
            start: Any = None, end: Any = None, late_after: pd.Timedelta | None = None,
            tol: float = TOLERANCE, scratch: Engine | None = None) -> Comparison:
    """Live account ``live_account`` against the backtest of its bars (module docstring).

    Args:
        engine: the brain store holding the live account (read only).
        production: the production the backtest asks (a :class:`huracan.paper.production.
            Production`; normally the live account's own, e.g. ``RegisteredProduction``).
        live_account: the live account's name (``paper-BTCUSDT-1h``).
        candles: TODAY's candles (``timestamp, open, high, low, close, volume``) from at least
            the request start (anchor minus the model's warm-up) to the bars compared.
        start, end: compare bars opening in ``[start, end]`` only (UTC; default all); the
            backtest still runs from the anchor (stateful rules and sizers).
        late_after: see :func:`order_causes` (default a quarter of the bar).
        tol: per-bar tolerance on the net return (fraction).
        scratch: where the scratch replay account goes (default a temporary SQLite store).

    Returns:
        :class:`Comparison` over the bars both the live ledger and today's candles reach.

    Raises:
        NothingToCompareError: no such account, or no marks in the window.
        ValueError: candles that do not cover the request (one line), ``fill=delay``.
    """
    from huracan.paper.ledger import PaperLedger
    from huracan.paper.loop import execution_config, load_funding

    ledger = PaperLedger(engine)
    spec = ledger.account(live_account)
    if spec is None:
        raise NothingToCompareError(f"no paper account {live_account!r} in the brain store")
    start = None if start is None else to_utc(start, "start")
    end = None if end is None else to_utc(end, "end")
    orders, marks = ledger.orders(live_account), ledger.marks(live_account)
    window = marks if len(marks) == 0 else marks[_in_window(marks["bar_time"], start, end)]
    if len(window) == 0:
        raise NothingToCompareError(f"paper account {live_account} has no marks"
                               + (" in the window" if start is not None or end is not None
                                  else " yet"))
    bar = timeframe_to_timedelta(spec.timeframe)
    _, ppy, _ = execution_config(spec.execution)
    ts = pd.to_datetime(candles["timestamp"], utc=True)
    last = min(pd.Timestamp(orders["bar_time"].max()), pd.Timestamp(ts.max()))
    notes: list[str] = []
    if last < pd.Timestamp(orders["bar_time"].max()):
        notes.append(f"today's candles end at {ts_text(last)}: later live bars not compared")
    label = getattr(production, "label", None)
    if label and label != spec.production:
        notes.append(f"the backtest asks {label}, the live account {spec.production}")
    funding = load_funding(engine, spec.execution, spec.symbol, spec.anchor, last + bar)
    bt_orders, bt_marks, bt_name = backtest_ledger(production, spec, candles, end=last + bar,
                                                   funding=funding, engine=scratch)
    return build_comparison(
        _window(orders, last), _window(marks, last), bt_orders, bt_marks, account=live_account,
        backtest=f"replay of {label or spec.production} ({bt_name})", symbol=spec.symbol,
        timeframe=spec.timeframe, bar=bar, periods_per_year=ppy, start=start, end=end,
        late_after=late_after, tol=tol, notes=tuple(notes))


def _in_window(times: pd.Series, start: pd.Timestamp | None, end: pd.Timestamp | None
               ) -> pd.Series:
    t = pd.to_datetime(times, utc=True)
    keep = pd.Series(True, index=times.index)
    if start is not None:
        keep &= t >= start
    if end is not None:
        keep &= t <= end
    return keep
