"""The paper ledger: accounts, orders, fills and marks of paper trading in the brain store
(tables ``paper_accounts``, ``paper_orders``, ``paper_fills``, ``paper_marks``,
:mod:`huracan.db.tables`, migration 0007), read and written through SQLAlchemy Core on an
Engine the caller passes (no module-level engine; SQLite and Postgres).

- :class:`AccountSpec`: one account (symbol, timeframe, live/replay, whom it asks, the anchor
  bar, the execution settings).
- :func:`account_name`: ``paper-<KEY>-<tf>`` (live) or ``replay-<KEY>-<tf>-<start>-<end>``.
- :class:`PaperLedger`: open an account, read its orders/fills/marks as frames, the last decided
  bar, the heartbeat.
- :func:`paper_result`: the marks as a :class:`~huracan.evaluation.backtest.BacktestResult`
  (trades by :func:`huracan.evaluation.execution.extract_trades`, metrics by
  :func:`huracan.evaluation.metrics.compute_metrics`: no arithmetic of its own).

The per-bar writes (fill, mark, decide) live in :mod:`huracan.paper.loop`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, Table, insert, select, update

from huracan.db.tables import PAPER_MODES, PaperAccount, PaperFill, PaperMark, PaperOrder
from huracan.evaluation.backtest import BacktestResult
from huracan.evaluation.execution import exit_legs, extract_trades
from huracan.evaluation.metrics import compute_metrics
from huracan.timeutil import to_utc

ACCOUNTS: Table = PaperAccount.__table__  # type: ignore[assignment]
ORDERS: Table = PaperOrder.__table__  # type: ignore[assignment]
FILLS: Table = PaperFill.__table__  # type: ignore[assignment]
MARKS: Table = PaperMark.__table__  # type: ignore[assignment]
#: time columns of each table (UTC-aware pandas columns in the frames)
_TIME_COLUMNS = ("bar_time", "decided_at", "bar_available_at", "fill_time", "filled_at",
                 "marked_at")


class UnknownAccountError(LookupError):
    """No paper account of that name in the brain store (one line naming it)."""


@dataclass(frozen=True)
class AccountSpec:
    """One paper account.

    Attributes:
        account: its name (:func:`account_name`), the primary key.
        symbol: ccxt symbol (``BTC/USDT``; ``BTC/USDT:USDT`` a perpetual).
        timeframe: bar size (``1h``).
        mode: ``live`` or ``replay``.
        model_name: the registered model asked (``huracan-BTCUSDT-1h``).
        production: whom the loop asks (``models:/<name>@production`` or a masked URL).
        anchor: the first bar the account decides (open time, UTC); requests start at
            ``anchor - warmup_bars``.
        execution: the production run's ``backtest`` settings as a dict plus ``market``
            (``spot``/``perp``) and ``periods_per_year`` (8,760 for 1h).
    """

    account: str
    symbol: str
    timeframe: str
    mode: str
    model_name: str
    production: str
    anchor: pd.Timestamp
    execution: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in PAPER_MODES:
            raise ValueError(f"paper account mode must be one of {PAPER_MODES}, got {self.mode!r}")
        object.__setattr__(self, "anchor", to_utc(self.anchor, "anchor"))


def _key(symbol: str) -> str:
    """``BTC/USDT`` -> ``BTCUSDT`` (the registered model names' key)."""
    return symbol.replace("/", "").replace(":", "")


def account_name(symbol: str, timeframe: str, mode: str = "live", start: Any = None,
                 end: Any = None) -> str:
    """The default account of a symbol: live ``paper-BTCUSDT-1h``; replay
    ``replay-BTCUSDT-1h-2019050100-2019070100`` (``start``/``end`` as ``%Y%m%d%H`` UTC).

    Raises:
        ValueError: an unknown mode, or a replay without ``start`` and ``end``.
    """
    if mode == "live":
        return f"paper-{_key(symbol)}-{timeframe}"
    if mode != "replay":
        raise ValueError(f"paper account mode must be one of {PAPER_MODES}, got {mode!r}")
    if start is None or end is None:
        raise ValueError("a replay account name needs start and end")
    a, b = (to_utc(x).strftime("%Y%m%d%H") for x in (start, end))
    return f"replay-{_key(symbol)}-{timeframe}-{a}-{b}"


def _frame(rows: Sequence[Any], table: Table) -> pd.DataFrame:
    columns = [c.name for c in table.columns]
    out = pd.DataFrame([tuple(r) for r in rows], columns=columns)
    for c in columns:
        if c in _TIME_COLUMNS:
            out[c] = pd.to_datetime(out[c], utc=True)
    return out


class PaperLedger:
    """The paper tables of the brain store behind ``engine`` (migrated to 0007 or later).

    Every method runs its own short transaction; :mod:`huracan.paper.loop` writes a bar's rows in
    one transaction of its own.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def open(self, spec: AccountSpec, now: datetime | None = None) -> AccountSpec:
        """Create the account when absent (``created_at = now``, default the wall clock) and
        return the STORED spec (an existing account keeps its anchor and execution)."""
        with self.engine.begin() as conn:
            row = conn.execute(select(ACCOUNTS).where(ACCOUNTS.c.account == spec.account)).first()
            if row is None:
                conn.execute(insert(ACCOUNTS).values(
                    account=spec.account, symbol=spec.symbol, timeframe=spec.timeframe,
                    mode=spec.mode, model_name=spec.model_name, production=spec.production,
                    anchor=spec.anchor.to_pydatetime(), execution=dict(spec.execution),
                    created_at=now or datetime.now(UTC), heartbeat_at=None, detail=None))
                return spec
        return _spec(row)

    def account(self, name: str) -> AccountSpec | None:
        """The stored account ``name``, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(ACCOUNTS).where(ACCOUNTS.c.account == name)).first()
        return None if row is None else _spec(row)

    def require(self, name: str) -> AccountSpec:
        """:meth:`account`, raising :class:`UnknownAccountError` when absent."""
        spec = self.account(name)
        if spec is None:
            raise UnknownAccountError(f"no paper account {name!r} in the brain store")
        return spec

    def _rows(self, table: Table, name: str, start: Any, end: Any) -> pd.DataFrame:
        stmt = select(table).where(table.c.account == name)
        if start is not None:
            stmt = stmt.where(table.c.bar_time >= to_utc(start, "start").to_pydatetime())
        if end is not None:
            stmt = stmt.where(table.c.bar_time < to_utc(end, "end").to_pydatetime())
        with self.engine.connect() as conn:
            rows = conn.execute(stmt.order_by(table.c.bar_time)).all()
        return _frame(rows, table)

    def orders(self, name: str, start: Any = None, end: Any = None) -> pd.DataFrame:
        """Orders of ``name`` with ``start <= bar_time < end``, by bar; columns = PaperOrder's."""
        return self._rows(ORDERS, name, start, end)

    def fills(self, name: str, start: Any = None, end: Any = None) -> pd.DataFrame:
        """Fills of ``name`` (by decided bar ``bar_time``); columns = PaperFill's."""
        return self._rows(FILLS, name, start, end)

    def marks(self, name: str, start: Any = None, end: Any = None) -> pd.DataFrame:
        """Marks of ``name`` with ``start <= bar_time < end``; columns = PaperMark's."""
        return self._rows(MARKS, name, start, end)

    def last_order_time(self, name: str) -> pd.Timestamp | None:
        """Open time of the newest bar holding an order (decided or skipped), or None."""
        from sqlalchemy import func

        with self.engine.connect() as conn:
            value = conn.execute(select(func.max(ORDERS.c.bar_time))
                                 .where(ORDERS.c.account == name)).scalar()
        if value is None:
            return None
        if isinstance(value, str):  # SQLite's max() bypasses the column type
            value = pd.Timestamp(value)
        return to_utc(value)

    def heartbeat(self, name: str, now: datetime) -> None:
        """Record that the loop of ``name`` is alive at ``now`` (UTC-aware).

        Raises:
            UnknownAccountError: no such account.
        """
        with self.engine.begin() as conn:
            done = conn.execute(update(ACCOUNTS).where(ACCOUNTS.c.account == name)
                                .values(heartbeat_at=to_utc(now, "now").to_pydatetime()))
        if done.rowcount == 0:
            raise UnknownAccountError(f"no paper account {name!r} in the brain store")


def _spec(row: Any) -> AccountSpec:
    m = row._mapping
    return AccountSpec(account=m["account"], symbol=m["symbol"], timeframe=m["timeframe"],
                       mode=m["mode"], model_name=m["model_name"], production=m["production"],
                       anchor=pd.Timestamp(m["anchor"]), execution=dict(m["execution"] or {}))


def paper_result(ledger: PaperLedger, name: str, start: Any = None, end: Any = None
                 ) -> BacktestResult:
    """The marks of account ``name`` (``start <= bar_time < end``) scored like a backtest.

    ``returns`` has the columns of :func:`huracan.evaluation.execution.execute` that the ledger
    holds (``timestamp``, ``prediction`` = position, ``position``, ``asset_return``,
    ``turnover``, ``gross_return``, ``cost``, ``funding_cost``, ``borrow_cost``,
    ``strategy_return`` = ``net_return``, ``exit_leg``, ``label`` = ``asset_return``, plus
    ``equity``); the exit legs use the fills' gap leg ``fill_price / bar_close - 1`` (the
    gap-leg funding is not stored: taken as 0 in the trades' attribution only). ``metrics`` by
    :func:`~huracan.evaluation.metrics.compute_metrics` with the account's ``periods_per_year``.

    Raises:
        UnknownAccountError: no such account.
        ValueError: the account has no marks in the window.
    """
    spec = ledger.require(name)
    marks = ledger.marks(name, start, end)
    if marks.empty:
        raise ValueError(f"paper account {name!r} has no marks"
                         + (f" in [{start}, {end})" if start is not None or end is not None
                            else ""))
    orders = ledger.orders(name, start, end).set_index("bar_time")
    fills = ledger.fills(name, start, end).set_index("bar_time")
    ts = pd.DatetimeIndex(marks["bar_time"])
    price = fills["fill_price"].reindex(ts).to_numpy(np.float64)
    close = orders["bar_close"].reindex(ts).to_numpy(np.float64)
    gap = np.nan_to_num(price / close - 1.0)
    prev = marks["prev_position"].to_numpy(np.float64)
    pos = marks["position"].to_numpy(np.float64)
    net = marks["net_return"].to_numpy(np.float64)
    cost = marks["cost"].to_numpy(np.float64)
    asset = marks["asset_return"].to_numpy(np.float64)
    leg = exit_legs(prev, pos, gap, np.zeros(len(pos)), cost)
    trades = extract_trades(ts, pos, net, leg)
    ppy = float(spec.execution.get("periods_per_year", 8760.0))
    metrics = compute_metrics(net, trades["return"].to_numpy(np.float64), pos, asset, ppy)
    returns = pd.DataFrame({
        "timestamp": ts, "prediction": pos, "position": pos, "asset_return": asset,
        "turnover": np.abs(pos - prev), "gross_return": marks["gross_return"].to_numpy(),
        "cost": cost, "funding_cost": marks["funding_cost"].to_numpy(),
        "borrow_cost": marks["borrow_cost"].to_numpy(), "strategy_return": net,
        "exit_leg": leg, "label": asset, "equity": marks["equity"].to_numpy()})
    return BacktestResult(returns=returns, trades=trades, metrics=metrics,
                          execution={"source": "paper", "account": name,
                                     **{k: v for k, v in spec.execution.items()}})
