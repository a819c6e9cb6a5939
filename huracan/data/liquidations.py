"""Collect liquidations from the exchanges' public streams; 1-minute buckets; events to the store.

Binance has no public REST history of liquidations (ccxt ``fetchLiquidations`` is False there);
its ``forceOrder`` websocket stream is the source. ccxt.pro exposes it as
``watch_liquidations_for_symbols`` (``!forceOrder@arr`` for every symbol when the list is empty;
also supported on Bybit, ``allLiquidation.<symbol>``), returning ccxt liquidation structures::

    {"symbol": "SOL/USDT:USDT", "side": "sell", "price": 184.22, "contracts": 0.04,
     "contractSize": 1.0, "baseValue": None, "quoteValue": None, "timestamp": 1761125802306, ...}

Side conventions differ by exchange (ccxt passes the raw side through, lower-cased):

- Binance ``forceOrder``: ``S`` is the side of the liquidation ORDER; ``sell`` means a long was
  force-sold (../shared/data/README.md), ``buy`` a short was force-bought.
- Bybit ``allLiquidation``: ``S`` is the side of the liquidated POSITION; ``buy`` means a long was
  liquidated (Bybit v5 docs, "When you receive a Buy update, this means that a long position has
  been liquidated").

Stored rows use the brain store's convention (:class:`huracan.db.tables.Liquidation`): ``side``
is the liquidated position (``long``/``short``), ``quantity`` in base units (contracts ×
contract size), ``size_usd`` = price × quantity (or the exchange's quote value).

:class:`LiquidationCollector` takes batches from any async iterator of ccxt liquidation lists
(the live one is :func:`watch_liquidations`; tests feed recorded events), keeps running 1-minute
buckets per symbol, and every ``flush_events`` events or ``flush_seconds`` validates the pending
events with the ``liquidations`` suite and writes them through :mod:`huracan.data.ingest` (row
rules, dedupe on the natural key, cascade tagging, one transaction with the quality-log rows).
Binance pushes at most one liquidation per symbol per second, so counts are a lower bound.

Cascade tagging uses the one rule of :mod:`huracan.data.cascades` (the ingest uses it too):
an event is ``cascade`` when its exchange and symbol saw at least ``min_events`` liquidations or
``min_usd`` of them in the ``window`` ending at it (default 20 or $250,000 in 5 minutes;
``cascade_rule=``, else the ``HURACAN_CASCADE_*`` variables). The label depends only on earlier
events, so the collector labels each event as it is flushed, counting the events of the
previous ``window`` it flushed before (kept in memory), and never has to revise a stored label.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import tenacity

from huracan.data.cascades import CascadeRule
from huracan.data.quality import QualitySink
from huracan.data.sources import RetryPolicy, is_transient
from huracan.data.validate import SuiteRunner, ValidationReport, validate_frame

log = logging.getLogger(__name__)

#: Per exchange: does the stream's side name the ORDER or the liquidated POSITION?
SIDE_CONVENTION: dict[str, str] = {"binance": "order", "bybit": "position"}
_POSITION = {"order": {"sell": "long", "buy": "short"},
             "position": {"buy": "long", "sell": "short"}}
EVENT_COLUMNS = ("timestamp", "exchange", "symbol", "side", "price", "quantity", "size_usd")
BUCKET_COLUMNS = ("exchange", "symbol", "timestamp", "long_count", "long_quantity", "long_usd",
                  "short_count", "short_quantity", "short_usd")
_QUOTES = ("FDUSD", "USDT", "USDC", "BUSD", "TUSD")


def _pair(symbol: str | None) -> str | None:
    """``SOL/USDT:USDT`` -> ``SOL/USDT``; ``SOLUSDT`` (markets not loaded) -> ``SOL/USDT``."""
    if not symbol:
        return None
    s = symbol.split(":", 1)[0]
    if "/" in s:
        return s
    for quote in _QUOTES:
        if s.upper().endswith(quote) and len(s) > len(quote):
            return f"{s[: -len(quote)]}/{quote}"
    return None


def event_row(liquidation: dict[str, Any], exchange: str) -> dict[str, Any]:
    """One ccxt liquidation structure as a ``liquidations`` row (see the module docstring).

    Values the exchange did not give stay ``None``/NaN so that validation reports them.

    Raises:
        KeyError: ``exchange`` has no known side convention.
    """
    convention = _POSITION[SIDE_CONVENTION[exchange]]
    raw_side = str(liquidation.get("side") or "").lower()
    contracts = liquidation.get("contracts")
    size = liquidation.get("contractSize") or 1.0
    quantity = float(contracts) * float(size) if contracts is not None else np.nan
    price = float(liquidation["price"]) if liquidation.get("price") is not None else np.nan
    quote_value = liquidation.get("quoteValue")
    return {
        "timestamp": liquidation.get("timestamp"),
        "exchange": exchange,
        "symbol": _pair(liquidation.get("symbol")),
        "side": convention.get(raw_side, raw_side or None),
        "price": price,
        "quantity": quantity,
        "size_usd": float(quote_value) if quote_value is not None else price * quantity,
    }


def events_frame(liquidations: Iterable[dict[str, Any]], exchange: str) -> pd.DataFrame:
    """ccxt liquidation structures -> a frame with :data:`EVENT_COLUMNS` (UTC timestamps)."""
    return _frame([event_row(liq, exchange) for liq in liquidations])


def _valid_rows(events: pd.DataFrame) -> np.ndarray:
    return (events["timestamp"].notna() & events["symbol"].notna()
            & events["side"].isin(["long", "short"]) & (events["price"] > 0)
            & (events["quantity"] > 0)).to_numpy()


def aggregate_minutes(events: pd.DataFrame) -> pd.DataFrame:
    """1-minute buckets of liquidation events, per exchange and symbol.

    Args:
        events: :data:`EVENT_COLUMNS` rows (invalid rows - unknown side, price or quantity <= 0,
            missing time/symbol - are left out).

    Returns:
        :data:`BUCKET_COLUMNS`: ``timestamp`` is the minute's open (UTC); per side the number
        of events, the base quantity and the USD size; minutes without events are absent.
    """
    ok = events.loc[_valid_rows(events)] if len(events) else events
    if ok.empty:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in BUCKET_COLUMNS}).astype(
            {"exchange": object, "symbol": object, "timestamp": "datetime64[ms, UTC]",
             "long_count": "int64", "short_count": "int64"})
    df = ok.assign(minute=ok["timestamp"].dt.floor("min"), n=1)
    wide = df.pivot_table(index=["exchange", "symbol", "minute"], columns="side",
                          values=["n", "quantity", "size_usd"], aggfunc="sum", fill_value=0)
    out = pd.DataFrame(index=wide.index)
    for side in ("long", "short"):
        for src, dst in (("n", "count"), ("quantity", "quantity"), ("size_usd", "usd")):
            out[f"{side}_{dst}"] = wide[(src, side)] if (src, side) in wide.columns else 0
    out = out.reset_index().rename(columns={"minute": "timestamp"})
    out = out.astype({"long_count": "int64", "short_count": "int64"})
    return (out.loc[:, list(BUCKET_COLUMNS)].sort_values(["timestamp", "exchange", "symbol"])
            .reset_index(drop=True))


@dataclass(frozen=True)
class FlushResult:
    """One write: ``events`` flushed, ``report`` of their validation, rows ``inserted``/
    ``updated`` in the store (``None`` without an engine), rows ``rejected`` before storing."""

    events: int
    report: ValidationReport | None
    inserted: int | None = None
    updated: int | None = None
    rejected: int = 0


class LiquidationCollector:
    """Aggregates a liquidation stream into 1-minute buckets and writes events to the store.

    Args:
        exchange: ccxt id of the stream's exchange (``binance``, ``bybit``).
        engine: the brain store (schema at head); ``None`` keeps events in memory only.
        sink: data-quality sink for validation findings (``DbQualitySink``).
        runner: a :class:`~huracan.data.validate.SuiteRunner` to reuse.
        flush_events: flush when this many events are pending.
        flush_seconds: flush when the last flush is this old (monotonic clock).
        clock: seconds, monotonic (tests may inject one).
        cascade_rule: the cascade rule (default :meth:`CascadeRule.from_env`).
    """

    def __init__(self, exchange: str = "binance", *, engine: Any = None,
                 sink: QualitySink | None = None, runner: SuiteRunner | None = None,
                 flush_events: int = 1000, flush_seconds: float = 60.0,
                 clock: Callable[[], float] = time.monotonic,
                 cascade_rule: CascadeRule | None = None) -> None:
        if exchange not in SIDE_CONVENTION:
            raise ValueError(f"no liquidation side convention known for {exchange!r}; "
                             f"expected one of {sorted(SIDE_CONVENTION)}")
        self.exchange = exchange
        self.engine = engine
        self.sink = sink
        self.runner = runner
        self.flush_events = flush_events
        self.flush_seconds = flush_seconds
        self.clock = clock
        self.cascade_rule = cascade_rule or CascadeRule.from_env()
        #: valid events already flushed within the cascade window of the newest one: they
        #: count in the cascade windows of the next flush
        self._recent = _frame([])
        self._pending: list[dict[str, Any]] = []
        self._buckets: dict[tuple[str, pd.Timestamp], np.ndarray] = {}
        self._last_flush = clock()
        self.received = 0
        self.flushes: list[FlushResult] = []

    @property
    def source(self) -> str:
        return f"{self.exchange}:liquidations:stream"

    def add(self, liquidations: Iterable[dict[str, Any]]) -> int:
        """Take a batch of ccxt liquidation structures; returns how many."""
        rows = [event_row(liq, self.exchange) for liq in liquidations]
        self._pending.extend(rows)
        self.received += len(rows)
        frame = _frame(rows)
        for rec in aggregate_minutes(frame).itertuples(index=False):
            key = (rec.symbol, rec.timestamp)
            add = np.array([rec.long_count, rec.long_quantity, rec.long_usd, rec.short_count,
                            rec.short_quantity, rec.short_usd], dtype="float64")
            self._buckets[key] = self._buckets.get(key, np.zeros(6)) + add
        return len(rows)

    def due(self) -> bool:
        """True when the pending events should be flushed."""
        return bool(self._pending) and (len(self._pending) >= self.flush_events
                                         or self.clock() - self._last_flush >= self.flush_seconds)

    def flush(self) -> FlushResult | None:
        """Validate the pending events (``liquidations`` suite, findings to ``sink``) and write
        the valid ones to the ``liquidations`` table; ``None`` when nothing was pending."""
        self._last_flush = self.clock()
        if not self._pending:
            return None
        frame = _frame(self._pending)
        self._pending = []
        report = validate_frame(frame, "liquidations", source=self.source, sink=self.sink,
                                runner=self.runner)
        ok = _valid_rows(frame)
        result = FlushResult(len(frame), report, rejected=int((~ok).sum()))
        if self.engine is not None and ok.any():
            from huracan.data.ingest import load_batch, prepare_frame

            prepared = prepare_frame("liquidations", frame.loc[ok].reset_index(drop=True),
                                     self.source, exchange=self.exchange,
                                     cascade_rule=self.cascade_rule,
                                     cascade_context=self._recent)
            loaded = load_batch(self.engine, prepared)
            self._remember(prepared.frame)
            result = FlushResult(len(frame), report, loaded.inserted, loaded.updated,
                                 result.rejected + loaded.rejected)
        self.flushes.append(result)
        log.info("%s: flushed %d event(s) (%d rejected)", self.source, result.events,
                 result.rejected)
        return result

    def _remember(self, stored: pd.DataFrame) -> None:
        """Keep the flushed events of the last cascade window as context for the next flush."""
        cols = ["timestamp", "exchange", "symbol", "size_usd"]
        recent = pd.concat([self._recent[cols], stored[cols].astype(
            {"exchange": object, "symbol": object})], ignore_index=True)
        if recent.empty:
            self._recent = recent
            return
        newest = recent["timestamp"].max()
        self._recent = recent.loc[recent["timestamp"] > newest - self.cascade_rule.window
                                  ].reset_index(drop=True)

    def buckets(self) -> pd.DataFrame:
        """The running 1-minute buckets (:data:`BUCKET_COLUMNS`), oldest first."""
        if not self._buckets:
            return aggregate_minutes(events_frame([], self.exchange))
        keys = list(self._buckets)
        vals = np.vstack([self._buckets[k] for k in keys])
        out = pd.DataFrame({"exchange": self.exchange, "symbol": [k[0] for k in keys],
                            "timestamp": [k[1] for k in keys]})
        for i, c in enumerate(BUCKET_COLUMNS[3:]):
            out[c] = vals[:, i]
        out = out.astype({"long_count": "int64", "short_count": "int64"})
        return out.sort_values(["timestamp", "exchange", "symbol"]).reset_index(drop=True)

    async def run(self, source: AsyncIterator[list[dict[str, Any]]], *,
                  max_batches: int | None = None) -> int:
        """Consume ``source`` (e.g. :func:`watch_liquidations`) until it ends, ``max_batches``
        batches were taken, or the task is cancelled; flushes as due and once at the end.

        Returns:
            The number of events received.
        """
        batches = 0
        try:
            async for liquidations in source:
                self.add(liquidations)
                batches += 1
                if self.due():
                    self.flush()
                if max_batches is not None and batches >= max_batches:
                    break
        finally:
            self.flush()
        return self.received


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(EVENT_COLUMNS))
    df["timestamp"] = pd.to_datetime(pd.to_numeric(df["timestamp"], errors="coerce"), unit="ms",
                                     utc=True)
    for c in ("price", "quantity", "size_usd"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    return df


def make_pro_exchange(exchange_id: str = "binance") -> Any:
    """A ccxt.pro exchange set up for the USDT-perpetual liquidation streams."""
    import ccxt.pro as ccxtpro

    cls = getattr(ccxtpro, exchange_id)
    return cls({"enableRateLimit": True,
                "options": {"defaultType": "swap", "defaultSubType": "linear"}})


async def watch_liquidations(
    exchange: Any, symbols: Sequence[str] = (), *, retry: RetryPolicy | None = None,
    sleep: Callable[[float], Any] = asyncio.sleep,
) -> AsyncIterator[list[dict[str, Any]]]:
    """Yield each batch of new liquidations from ``exchange.watch_liquidations_for_symbols``
    (all symbols when ``symbols`` is empty), reconnecting after transient errors with the
    backoff of ``retry``; a non-transient error, or ``retry.attempts`` transient ones in a row,
    ends the stream by raising."""
    policy = retry or RetryPolicy()
    while True:
        async for attempt in tenacity.AsyncRetrying(
                stop=tenacity.stop_after_attempt(policy.attempts), wait=policy.wait(),
                retry=tenacity.retry_if_exception(is_transient), sleep=sleep, reraise=True):
            with attempt:
                batch = await exchange.watch_liquidations_for_symbols(list(symbols))
        yield list(batch)


async def collect(collector: LiquidationCollector, symbols: Sequence[str] = (), *,
                  duration_s: float | None = None) -> int:
    """Run ``collector`` on the live stream of its exchange (opens a websocket) for
    ``duration_s`` seconds (forever when ``None``); pending events are flushed and the
    connection closed however it ends.

    Returns:
        Events received.

    Raises:
        ccxt.BaseError: the stream failed for good (non-transient error, or transient errors
            beyond the retry policy).
    """
    exchange = make_pro_exchange(collector.exchange)
    try:
        task = collector.run(watch_liquidations(exchange, symbols))
        if duration_s is None:
            await task
        else:
            with contextlib.suppress(TimeoutError):  # the collector flushed in its finally
                await asyncio.wait_for(task, duration_s)
    finally:
        await exchange.close()
    return collector.received
