"""One bar of paper trading (:func:`step`) and the offline replay (:func:`replay`), with the one
execution model (:mod:`huracan.evaluation.execution`): the same code as the backtest.

Timing (the execution model's): bar ``k`` opens at ``t_k``. At its close, in ONE transaction:

1. FILL the order of bar ``k-1`` when it was ``decided`` and bar ``k`` directly follows it
   (same gap-free run): ``paper_fills`` (fill at ``O_k`` for ``fill=next_open``, ``C_{k-1}``
   for ``fill=close``; cost :func:`~huracan.evaluation.execution.trade_cost`);
2. MARK bar ``k-1`` (the same condition: a decided bar with a next bar): ``paper_marks`` with
   the four parts of :func:`~huracan.evaluation.execution.bar_components` on the execution
   model's bars of row ``k-1`` and the equity compounded;
3. DECIDE bar ``k``: ``paper_orders`` ``decided`` (target = :func:`exposure` of production's
   answer) with its ``predictions`` row, or ``skipped`` with a one-line reason (missing bar,
   warm-up, stale, production unreachable: the position is kept).

A bar holding an order is never decided again (primary key), so re-running a committed step
writes nothing. A decided bar right before a gap is never filled nor marked; positions carry
across (the next mark's ``prev_position`` is the last marked position).

MARKET BARS (:func:`market_frame`, :func:`market_of`): the execution model's
:func:`~huracan.evaluation.execution.market_bars` over every row with a finite next return since
the request's first candle (trailing windows are causal: a prefix gives the same values), so a
live step, the replay and :func:`backtest_answers` charge bit-identical costs.

PARITY: :func:`backtest_answers` is the evaluation's own
:func:`~huracan.evaluation.execution.execute` on the MARKED rows (answered bars in
``[anchor, end)`` with a next bar); the replay's marks equal its ``returns`` bar by bar.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, Table, insert, select

from huracan.data.ohlcv import bars_per_year, timeframe_to_timedelta
from huracan.data.prediction_store import chain_digests
from huracan.db.tables import Prediction
from huracan.evaluation.backtest import BacktestConfig, BacktestResult
from huracan.evaluation.execution import MarketBars, bar_components, execute, market_bars
from huracan.paper.ledger import FILLS, MARKS, ORDERS, AccountSpec, PaperLedger
from huracan.timeutil import to_utc

PREDICTIONS: Table = Prediction.__table__  # type: ignore[assignment]
#: default bars per replay transaction
CHUNK = 2000
#: skip reasons (one line each)
MISSING_BAR = "missing bar: no candle for this bar in the data"
WARMUP = "warm-up: production answers no bar here (feature warm-up after the start or a gap)"


# ---------------------------------------------------------------------------- pure parts
def exposure(answers: pd.DataFrame) -> np.ndarray:
    """Signed exposure (units of equity) per answer row (:data:`huracan.serving.raw.
    OUTPUT_COLUMNS`): ``sign(forecast) * size * leverage`` where a sizer answered (``sizer``
    not null), else ``position``; NaN -> 0. Shape ``(len(answers),)``."""
    pos = answers["position"].to_numpy(np.float64)
    if "sizer" in answers.columns:
        sized = answers["sizer"].notna().to_numpy()
        if sized.any():
            f = answers["forecast"].to_numpy(np.float64)
            s = answers["size"].to_numpy(np.float64)
            lev = answers["leverage"].to_numpy(np.float64)
            pos = np.where(sized, np.sign(f) * s * lev, pos)
    return np.nan_to_num(pos, nan=0.0, posinf=0.0, neginf=0.0)


def market_frame(candles: pd.DataFrame, timeframe: str | None = None) -> pd.DataFrame:
    """Per candle (index ``timestamp``, UTC): ``bar_close``, ``bar_high``, ``bar_low``,
    ``bar_volume``, ``next_open`` (open of the next bar when it directly follows, else NaN) and
    ``next_return`` (``close_{t+1} / close_t - 1`` then, else NaN): the arithmetic of
    :func:`huracan.features.build.build_features` per gap-free segment.

    Args:
        candles: ``timestamp, open, high, low, close, volume``, strictly increasing.
        timeframe: bar size (inferred when None).

    Raises:
        ValueError: timestamps not strictly increasing.
    """
    from huracan.data.ohlcv import infer_timeframe

    ts = pd.DatetimeIndex(pd.to_datetime(candles["timestamp"], utc=True), name="timestamp")
    if len(ts) > 1 and not (np.diff(ts.asi8) > 0).all():
        raise ValueError("candle timestamps must be strictly increasing")
    tf = timeframe or (infer_timeframe(pd.Series(ts)) if len(ts) > 1 else "1h")
    step = timeframe_to_timedelta(tf).value
    close = candles["close"].to_numpy(np.float64)
    opens = candles["open"].to_numpy(np.float64)
    follows = np.zeros(len(ts), dtype=bool)
    if len(ts) > 1:
        follows[:-1] = np.diff(ts.as_unit("ns").asi8) == step
    nxt_close = np.append(close[1:], np.nan)
    nxt_open = np.append(opens[1:], np.nan)
    return pd.DataFrame({
        "bar_close": close, "bar_high": candles["high"].to_numpy(np.float64),
        "bar_low": candles["low"].to_numpy(np.float64),
        "bar_volume": candles["volume"].to_numpy(np.float64),
        "next_open": np.where(follows, nxt_open, np.nan),
        "next_return": np.where(follows, nxt_close / close - 1.0, np.nan)}, index=ts)


def execution_settings(backtest: BacktestConfig, symbol: str, timeframe: str) -> dict[str, Any]:
    """An account's ``execution`` dict: the ``backtest`` settings, ``market`` (``perp`` for a
    ccxt perpetual symbol ``BTC/USDT:USDT``, else ``spot``) and ``periods_per_year``."""
    from huracan.stages import is_perpetual

    return {**asdict(backtest), "market": "perp" if is_perpetual(symbol) else "spot",
            "periods_per_year": bars_per_year(timeframe)}


def execution_config(execution: dict[str, Any]) -> tuple[BacktestConfig, float, bool]:
    """``(BacktestConfig, periods_per_year, perpetual)`` of an account's execution dict.

    Raises:
        ValueError: ``fill=delay`` (the paper loop has no finer series live) or a bad setting.
    """
    names = {f.name for f in fields(BacktestConfig)}
    cfg = BacktestConfig(**{k: v for k, v in execution.items() if k in names})
    if cfg.fill == "delay":
        raise ValueError("backtest.fill=delay is not supported by the paper loop (no finer "
                         "series live): use a production trained with fill=next_open or close")
    return cfg, float(execution.get("periods_per_year", 8760.0)), \
        execution.get("market") == "perp"


def market_of(frame: pd.DataFrame, execution: dict[str, Any],
              funding: pd.DataFrame | None = None) -> MarketBars:
    """The execution model's bars of every row of ``frame`` (:func:`market_frame`) with a
    finite ``next_return`` (:func:`~huracan.evaluation.execution.market_bars`)."""
    cfg, ppy, perp = execution_config(execution)
    finite = frame[np.isfinite(frame["next_return"].to_numpy())]
    return market_bars(finite, cfg, ppy, perpetual=perp, funding=funding)


def load_funding(engine: Engine, execution: dict[str, Any], symbol: str, start: Any,
                 end: Any) -> pd.DataFrame | None:
    """Funding settlements (``timestamp, funding_rate``) of a perpetual account from the brain
    store when ``backtest.funding=auto`` (as the training run's backtest took them,
    :func:`huracan.stages.execution_inputs`), else None (spot, or ``funding`` not ``auto``)."""
    if execution.get("market") != "perp" or execution.get("funding") != "auto":
        return None
    from huracan.db.queries import funding_frame

    frame = funding_frame(engine, symbol.split(":")[0], to_utc(start), to_utc(end))
    if frame is None or len(frame) == 0:
        return None
    return frame[["timestamp", "funding_rate"]].drop_duplicates("timestamp")


def backtest_answers(answers: pd.DataFrame, candles: pd.DataFrame,
                     execution: dict[str, Any], *, anchor: Any = None, end: Any = None,
                     funding: pd.DataFrame | None = None,
                     timeframe: str | None = None) -> BacktestResult:
    """The parity reference: :func:`~huracan.evaluation.execution.execute` of
    :func:`exposure` on the MARKED rows (answered bars with ``anchor <= t < end`` and a next
    bar), with :func:`market_of` of ``candles`` (the request: from the request start).

    Raises:
        ValueError: no marked row, or ``fill=delay``.
    """
    frame = market_frame(candles, timeframe)
    bars = market_of(frame, execution, funding)
    _, ppy, _ = execution_config(execution)
    ts = pd.DatetimeIndex(pd.to_datetime(answers["timestamp"], utc=True))
    keep = np.ones(len(ts), dtype=bool)
    if anchor is not None:
        keep &= ts >= to_utc(anchor, "anchor")
    if end is not None:
        keep &= ts < to_utc(end, "end")
    rows = bars.timestamps.get_indexer(ts)
    keep &= rows >= 0
    if not keep.any():
        raise ValueError("no marked bar: production answered no bar with a next bar in range")
    return execute(exposure(answers)[keep], bars.take(rows[keep]), ppy)


# ---------------------------------------------------------------------------- state
@dataclass
class _State:
    """What the next bar needs: the last marked position and equity, the order of the newest
    decided-or-skipped bar (``pending``: ``(bar_time, status, target)`` or None)."""

    position: float = 0.0
    equity: float = 1.0
    pending: tuple[pd.Timestamp, str, float] | None = None


def _load_state(conn: Connection, account: str) -> _State:
    mark = conn.execute(select(MARKS.c.position, MARKS.c.equity)
                        .where(MARKS.c.account == account)
                        .order_by(MARKS.c.bar_time.desc()).limit(1)).first()
    order = conn.execute(select(ORDERS.c.bar_time, ORDERS.c.status, ORDERS.c.target_position)
                         .where(ORDERS.c.account == account)
                         .order_by(ORDERS.c.bar_time.desc()).limit(1)).first()
    state = _State()
    if mark is not None:
        state.position, state.equity = float(mark.position), float(mark.equity)
    if order is not None:
        state.pending = (to_utc(order.bar_time), str(order.status), float(order.target_position))
    return state


@dataclass
class _Bar:
    """One bar's inputs to :func:`_advance`."""

    time: pd.Timestamp
    now: datetime
    prev_row: tuple[float, ...] | None  # bars row of t - tf (gap, hold, ...) when it has one
    prev_fill_price: float
    prev_asset: float
    close: float | None
    digest: str | None
    rows: int
    answer: dict[str, Any] | None
    target: float
    reason: str | None
    available_at: datetime | None


def _advance(state: _State, bar: _Bar, spec: AccountSpec, step: pd.Timedelta,
             out: dict[str, list[dict[str, Any]]]) -> None:
    """The per-bar logic (fill, mark, decide) on ``state``, appending the rows to write to
    ``out`` (keys ``fills``, ``marks``, ``orders``, ``predictions``)."""
    t, pending = bar.time, state.pending
    if pending is not None and pending[0] >= t:
        raise ValueError(f"bar {t} is not after the account's newest order ({pending[0]})")
    if (pending is not None and pending[1] == "decided" and pending[0] == t - step
            and bar.prev_row is not None):
        prev, pos = state.position, pending[2]
        gross, cost, funding, borrow = bar_components(prev, pos, *bar.prev_row)
        net = gross - cost - funding - borrow
        equity = state.equity * (1.0 + net)
        out["fills"].append(dict(account=spec.account, bar_time=pending[0], fill_time=t,
                                 fill_price=bar.prev_fill_price, prev_position=prev,
                                 position=pos, turnover=abs(pos - prev), cost=cost,
                                 filled_at=bar.now))
        out["marks"].append(dict(account=spec.account, bar_time=pending[0], prev_position=prev,
                                 position=pos, asset_return=bar.prev_asset, gross_return=gross,
                                 cost=cost, funding_cost=funding, borrow_cost=borrow,
                                 net_return=net, equity=equity, marked_at=bar.now))
        state.position, state.equity = pos, equity
    a = bar.answer
    decided = a is not None and bar.reason is None
    target = bar.target if decided else state.position
    order = dict(account=spec.account, bar_time=t, status="decided" if decided else "skipped",
                 reason=None if decided else bar.reason, decided_at=bar.now,
                 bar_available_at=bar.available_at, model_name=spec.model_name,
                 model_version=_text(a, "model_version"), run_id=_text(a, "run_id"),
                 forecast=_num(a, "forecast"), prev_position=state.position,
                 target_position=target, bar_close=bar.close, data_digest=bar.digest,
                 prediction_id=None)
    out["orders"].append(order)
    if decided and a is not None:
        out["predictions"].append(dict(
            served_at=bar.now, source="replay" if spec.mode == "replay" else "paper",
            model_name=a.get("registered_model") or spec.model_name,
            model_version=_text(a, "model_version"), run_id=_text(a, "run_id"),
            symbol=spec.symbol, timeframe=spec.timeframe, bar_time=t,
            forecast=_num(a, "forecast"), regime=_text(a, "regime"),
            position=_num(a, "position"), size=_num(a, "size"), leverage=_num(a, "leverage"),
            sizer=_text(a, "sizer"), execution=spec.execution, inputs_digest=bar.digest or "",
            inputs_rows=bar.rows, inputs_path=a.get("_inputs_path"), account=spec.account,
            latency_ms=a.get("_latency_ms")))
    state.pending = (t, order["status"], target)


def _text(a: dict[str, Any] | None, key: str) -> str | None:
    v = None if a is None else a.get(key)
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def _num(a: dict[str, Any] | None, key: str) -> float | None:
    v = None if a is None else a.get(key)
    if v is None:
        return None
    f = float(v)
    return None if math.isnan(f) else f


def _write(conn: Connection, out: dict[str, list[dict[str, Any]]]) -> None:
    """Insert one transaction's rows; prediction ids are linked to their orders."""
    preds = out["predictions"]
    if preds:
        ids = conn.execute(insert(PREDICTIONS).returning(PREDICTIONS.c.id,
                                                         sort_by_parameter_order=True),
                           preds).scalars().all()
        by_bar = {p["bar_time"]: i for p, i in zip(preds, ids, strict=True)}
        for o in out["orders"]:
            o["prediction_id"] = by_bar.get(o["bar_time"])
    for table, key in ((FILLS, "fills"), (MARKS, "marks"), (ORDERS, "orders")):
        if out[key]:
            conn.execute(insert(table), out[key])


def _empty_out() -> dict[str, list[dict[str, Any]]]:
    return {"fills": [], "marks": [], "orders": [], "predictions": []}


# ---------------------------------------------------------------------------- step
@dataclass(frozen=True)
class StepOutcome:
    """What :func:`step` did for one bar.

    Attributes:
        account, bar_time: the account and the bar decided (open time, UTC).
        status: ``decided``, ``skipped`` or ``exists`` (the bar already held an order: nothing
            written).
        reason: the skip reason (None when decided).
        target_position: the order's target (the kept position when skipped).
        filled: the previous bar's order was filled and marked in this step.
        net_return, equity: that mark's (None without a mark).
        written: rows were written.
    """

    account: str
    bar_time: pd.Timestamp
    status: str
    reason: str | None = None
    target_position: float | None = None
    filled: bool = False
    net_return: float | None = None
    equity: float | None = None
    written: bool = False


def _answer_of(answers: pd.DataFrame | None, t: pd.Timestamp) -> tuple[dict[str, Any] | None,
                                                                       float]:
    if answers is None or len(answers) == 0:
        return None, 0.0
    ts = pd.DatetimeIndex(pd.to_datetime(answers["timestamp"], utc=True))
    hit = np.flatnonzero(ts == t)
    if len(hit) == 0:
        return None, 0.0
    row = answers.iloc[[int(hit[-1])]]
    return row.iloc[0].to_dict(), float(exposure(row)[0])


def _bar_of_step(spec: AccountSpec, candles: pd.DataFrame, answers: pd.DataFrame | None,
                 t: pd.Timestamp, now: datetime, available_at: datetime | None,
                 skip_reason: str | None, funding: pd.DataFrame | None) -> _Bar:
    """The :class:`_Bar` of bar ``t`` from the request ``candles`` (first row = request
    start) and production's answers."""
    step_ = timeframe_to_timedelta(spec.timeframe)
    cfg, _, _ = execution_config(spec.execution)
    ts = pd.DatetimeIndex(pd.to_datetime(candles["timestamp"], utc=True))
    upto = candles.iloc[: int(ts.searchsorted(t, "right"))]
    frame = market_frame(upto, spec.timeframe)
    inside = len(frame) > 0 and frame.index[-1] == t
    prev_row, price, asset = None, math.nan, math.nan
    p = t - step_
    if inside and len(frame) > 1 and frame.index[-2] == p:
        bars = market_of(frame, spec.execution, funding)
        j = int(bars.timestamps.get_loc(p))
        prev_row = tuple(float(a[j]) for a in bars.arrays())
        asset = float(bars.next_return[j])
        col = "bar_close" if cfg.fill == "close" else "next_open"
        price = float(frame[col].iloc[-2])
    answer, target = _answer_of(answers, t) if inside else (None, 0.0)
    reason = skip_reason or (None if inside else MISSING_BAR) or \
        (None if answer is not None else WARMUP)
    digest = chain_digests(upto)[-1] if inside else None
    return _Bar(time=t, now=now, prev_row=prev_row, prev_fill_price=price, prev_asset=asset,
                close=float(frame["bar_close"].iloc[-1]) if inside else None, digest=digest,
                rows=len(upto), answer=answer, target=target, reason=reason,
                available_at=available_at)


def step(ledger: PaperLedger, spec: AccountSpec, candles: pd.DataFrame,
         answers: pd.DataFrame | None, *, now: datetime | None = None,
         bar_time: Any = None, available_at: datetime | None = None,
         skip_reason: str | None = None, funding: pd.DataFrame | None = None) -> StepOutcome:
    """ONE transaction for the newest bar of ``candles`` (or ``bar_time``): fill and mark the
    previous bar's order, then decide this bar (module docstring). Idempotent: a bar already
    holding an order writes nothing (``status='exists'``), also when another process wrote it
    concurrently.

    Args:
        ledger: the brain store's paper ledger (the account must be open).
        spec: the account.
        candles: the request's candles (``timestamp, open, high, low, close, volume``) from the
            request start (``anchor - warmup_bars``) up to the bar: the execution model's bars
            and the chain digest are computed over them.
        answers: production's answer rows for the request (:data:`huracan.serving.raw.
            OUTPUT_COLUMNS`; may hold only the bar's row); None when production was not asked.
            Optional extra keys ``_inputs_path`` / ``_latency_ms`` go to the prediction row.
        now: the step's time (decided_at, filled_at, marked_at): default the bar's close for a
            replay account, the wall clock for a live one.
        bar_time: the bar decided (default: the newest candle); a bar absent from ``candles``
            is recorded as skipped (missing bar).
        available_at: when the bar was first seen (``bar_available_at``).
        skip_reason: record a skipped order with this one-line reason instead of deciding.
        funding: funding settlements of a perpetual (:func:`load_funding`).

    Raises:
        ValueError: no bar to step, a bar before the anchor or not after the newest order,
            ``fill=delay``.
    """
    from sqlalchemy.exc import IntegrityError

    if bar_time is None:
        if len(candles) == 0:
            raise ValueError("no candles and no bar_time: nothing to step")
        bar_time = pd.to_datetime(candles["timestamp"], utc=True).iloc[-1]
    t = to_utc(bar_time, "bar_time")
    if t < spec.anchor:
        raise ValueError(f"bar {t} is before the account's anchor {spec.anchor}")
    close_time = (t + timeframe_to_timedelta(spec.timeframe)).to_pydatetime()
    if now is None:
        now = close_time if spec.mode == "replay" else datetime.now(UTC)
    bar = _bar_of_step(spec, candles, answers, t, now, available_at, skip_reason, funding)
    step_ = timeframe_to_timedelta(spec.timeframe)
    try:
        with ledger.engine.begin() as conn:
            if conn.execute(select(ORDERS.c.status).where(
                    (ORDERS.c.account == spec.account)
                    & (ORDERS.c.bar_time == t.to_pydatetime()))).first() is not None:
                return StepOutcome(spec.account, t, "exists")
            state = _load_state(conn, spec.account)
            out = _empty_out()
            _advance(state, bar, spec, step_, out)
            _write(conn, out)
    except IntegrityError:  # another process wrote this bar first
        return StepOutcome(spec.account, t, "exists")
    order, mark = out["orders"][0], (out["marks"][0] if out["marks"] else None)
    return StepOutcome(spec.account, t, order["status"], order["reason"],
                       order["target_position"], mark is not None,
                       None if mark is None else mark["net_return"],
                       None if mark is None else mark["equity"], True)


# ---------------------------------------------------------------------------- replay
@dataclass(frozen=True)
class ReplayResult:
    """What :func:`replay` wrote.

    Attributes:
        account: the account.
        bars: bars stepped by this call (grid bars from the anchor, or after the newest stored
            order when resuming).
        decided, skipped, marks, fills: rows written by this call.
        seconds: wall time of the call; answer_seconds: of production's one answer.
        resumed_after: the newest stored order before this call (None: a fresh account).
    """

    account: str
    bars: int
    decided: int
    skipped: int
    marks: int
    fills: int
    seconds: float
    answer_seconds: float
    resumed_after: pd.Timestamp | None = None


def _chunk_done(n: int) -> None:
    """Called after each committed replay chunk (``n`` = chunks committed so far): a no-op.
    The crash tests replace it in a child process to be SIGKILLed there."""


def request_candles(candles: pd.DataFrame, anchor: pd.Timestamp, warmup_bars: int,
                    timeframe: str, end: Any = None) -> pd.DataFrame:
    """The candles of the replay's request: from ``anchor - warmup_bars`` bars to ``end``
    (exclusive), sorted.

    Raises:
        ValueError: the candles start after the request start or hold no bar at or after the
            anchor before ``end`` (one line).
    """
    start = anchor - warmup_bars * timeframe_to_timedelta(timeframe)
    c = candles.copy()
    c["timestamp"] = pd.to_datetime(c["timestamp"], utc=True)
    c = c.sort_values("timestamp", kind="stable").reset_index(drop=True)
    if len(c) == 0 or c["timestamp"].iloc[0] > start:
        first = "none" if len(c) == 0 else str(c["timestamp"].iloc[0])
        raise ValueError(f"candles start at {first}, after the request start {start} (anchor "
                         f"{anchor} minus the model's {warmup_bars} warm-up bars): give earlier "
                         "candles")
    keep = c["timestamp"] >= start
    if end is not None:
        keep &= c["timestamp"] < to_utc(end, "end")
    c = c[keep].reset_index(drop=True)
    if not (c["timestamp"] >= anchor).any():
        raise ValueError(f"candles hold no bar from the anchor {anchor}"
                         + (f" before {to_utc(end)}" if end is not None else ""))
    return c


@dataclass
class _Tape:
    """Everything the replay's per-bar logic reads, computed once over the whole request."""

    times: dict[pd.Timestamp, int]  # candle row of each bar open time
    frame: pd.DataFrame
    bar_row: np.ndarray  # per candle row: its row in the bars (-1: no next bar)
    lists: tuple[list[float], ...]
    next_return: list[float]
    price: list[float]  # fill price of a decision at each candle row
    digests: list[str]
    answers: dict[pd.Timestamp, tuple[dict[str, Any], float]]


def _tape(spec: AccountSpec, candles: pd.DataFrame, answers: pd.DataFrame,
          funding: pd.DataFrame | None, inputs_path: str | None = None) -> _Tape:
    cfg, _, _ = execution_config(spec.execution)
    frame = market_frame(candles, spec.timeframe)
    bars = market_of(frame, spec.execution, funding)
    ts = pd.DatetimeIndex(pd.to_datetime(answers["timestamp"], utc=True))
    records = answers.to_dict("records")
    if inputs_path is not None:
        for r in records:
            r["_inputs_path"] = inputs_path
    expo = exposure(answers)
    col = "bar_close" if cfg.fill == "close" else "next_open"
    return _Tape(times={t: i for i, t in enumerate(frame.index)}, frame=frame,
                 bar_row=bars.timestamps.get_indexer(frame.index), lists=bars.step_lists(),
                 next_return=bars.next_return.tolist(),
                 price=frame[col].to_numpy(np.float64).tolist(),
                 digests=chain_digests(candles),
                 answers={t: (r, float(e)) for t, r, e in zip(ts, records, expo, strict=True)})


def _tape_bar(tape: _Tape, t: pd.Timestamp, step_: pd.Timedelta) -> _Bar:
    """The :class:`_Bar` of grid bar ``t`` of a replay (times = the bar's close)."""
    close_time = (t + step_).to_pydatetime()
    i = tape.times.get(t)
    if i is None:
        return _Bar(t, close_time, None, math.nan, math.nan, None, None, 0, None, 0.0,
                    MISSING_BAR, close_time)
    p = tape.times.get(t - step_)
    prev_row, price, asset = None, math.nan, math.nan
    if p is not None and tape.bar_row[p] >= 0:
        j = int(tape.bar_row[p])
        prev_row = tuple(col[j] for col in tape.lists)
        price, asset = tape.price[p], tape.next_return[j]
    hit = tape.answers.get(t)
    answer, target = hit if hit is not None else (None, 0.0)
    return _Bar(t, close_time, prev_row, price, asset, float(tape.frame["bar_close"].iat[i]),
                tape.digests[i], i + 1, answer, target, None if hit is not None else WARMUP,
                close_time)


def replay(engine: Engine, production: Any, spec: AccountSpec, candles: pd.DataFrame, *,
           chunk: int = CHUNK, end: Any = None, funding: pd.DataFrame | None = None,
           inputs_path: str | None = None) -> ReplayResult:
    """Replay ``production`` over stored ``candles`` bar by bar into account ``spec``: ONE
    answer over the whole request (``anchor - warmup_bars`` to ``end``; by the serving prefix
    property each bar's answer equals the answer of its own growing request), then the per-bar
    logic of :func:`step` on every grid bar from the anchor to the last candle (missing candles
    recorded as skipped), ``chunk`` bars per transaction. Deterministic (times = bar closes).
    Resumable: bars already holding an order are not stepped again, so a replay interrupted
    (even by kill -9) and rerun continues where the last committed chunk stopped and writes no
    duplicate.

    Args:
        engine: the brain store (migrated).
        production: a :class:`huracan.paper.production.Production`.
        spec: the account (opened here; an existing account keeps its stored spec).
        candles: OHLCV candles covering ``anchor - warmup_bars`` to ``end``.
        chunk: bars per transaction (>= 1).
        end: bars opening before ``end`` only (default: every candle).
        funding: funding settlements of a perpetual (:func:`load_funding`).
        inputs_path: where the candles live (the lake partition directory), for the
            prediction rows' ``inputs_path``.

    Raises:
        ValueError: ``fill=delay``, candles not covering the request (one line), chunk < 1.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    began = time.perf_counter()
    execution_config(spec.execution)  # fill=delay: refused before any work
    ledger = PaperLedger(engine)
    spec = ledger.open(spec)
    step_ = timeframe_to_timedelta(spec.timeframe)
    request = request_candles(candles, spec.anchor, int(production.warmup_bars), spec.timeframe,
                              end)
    last = ledger.last_order_time(spec.account)
    grid = pd.date_range(spec.anchor, request["timestamp"].iloc[-1], freq=step_)
    if last is not None:
        grid = grid[grid > last]
    if len(grid) == 0:
        return ReplayResult(spec.account, 0, 0, 0, 0, 0, time.perf_counter() - began, 0.0, last)
    t0 = time.perf_counter()
    answers = production.answer(request)
    answer_s = time.perf_counter() - t0
    tape = _tape(spec, request, answers, funding, inputs_path)
    with engine.connect() as conn:
        state = _load_state(conn, spec.account)
    counts = dict(decided=0, skipped=0, marks=0, fills=0)
    for n, lo in enumerate(range(0, len(grid), chunk), start=1):
        out = _empty_out()
        for t in grid[lo: lo + chunk]:
            _advance(state, _tape_bar(tape, t, step_), spec, step_, out)
        with engine.begin() as conn:
            _write(conn, out)
        decided = sum(o["status"] == "decided" for o in out["orders"])
        counts["decided"] += decided
        counts["skipped"] += len(out["orders"]) - decided
        counts["marks"] += len(out["marks"])
        counts["fills"] += len(out["fills"])
        _chunk_done(n)
    return ReplayResult(spec.account, len(grid), seconds=time.perf_counter() - began,
                        answer_seconds=answer_s, resumed_after=last, **counts)
