"""The liquidation collector on the real Binance forceOrder sample (../shared/data), parsed by
ccxt.pro's own stream handlers; no socket is opened."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import ccxt
import ccxt.pro as ccxtpro
import pandas as pd
import pytest
from fake_exchanges import FakeExchangeServer, Series
from sqlalchemy import func, select

from huracan.data.liquidations import (
    BUCKET_COLUMNS,
    LiquidationCollector,
    aggregate_minutes,
    event_row,
    events_frame,
    watch_liquidations,
)
from huracan.data.sources import RetryPolicy, make_exchange


class CapturingClient:
    """Stands in for ccxt.pro's websocket Client: keeps what the handler resolves."""

    def __init__(self) -> None:
        self.resolved: list[dict[str, Any]] = []

    def resolve(self, result: list[dict[str, Any]], message_hash: str) -> None:
        if message_hash == "liquidations":
            self.resolved.extend(result)


def force_order(row: Any) -> dict[str, Any]:
    """A Binance USDT-M ``forceOrder`` stream message for one sample row (price = average fill
    price, quantity = filled quantity, as the sample was recorded)."""
    ms = int(row.timestamp.value // 10**6)
    qty = repr(float(row.quantity))
    return {"e": "forceOrder", "E": ms + 3,
            "o": {"s": row.symbol, "S": row.side, "o": "LIMIT", "f": "IOC", "q": qty,
                  "p": repr(float(row.price)), "ap": repr(float(row.price)), "X": "FILLED",
                  "l": qty, "z": qty, "T": ms}}


@pytest.fixture
def binance_pro(liquidation_events):
    """ccxt.pro binance with the USDT-M markets of every sample symbol, parsed by ccxt from a
    stubbed ``/fapi/v1/exchangeInfo``."""
    pairs = {}
    for s in liquidation_events.symbol.unique():  # USDT- and USDC-margined perpetuals
        assert s[-4:] in ("USDT", "USDC")
        pairs[f"{s[:-4]}/{s[-4:]}"] = Series()
    rest = FakeExchangeServer("binance", perp=pairs).attach(make_exchange("binance"))
    rest.load_markets()
    pro = ccxtpro.binance({"options": {"defaultType": "swap", "defaultSubType": "linear"}})
    pro.set_markets(list(rest.markets.values()))
    return pro


async def replay(exchange: Any, messages: list[dict[str, Any]], per_batch: int
                 ) -> AsyncIterator[list[dict[str, Any]]]:
    """Feed raw stream messages through ``exchange.handle_liquidation`` and yield what it
    resolves, ``per_batch`` messages at a time (what ``watch_liquidations`` would return)."""
    client = CapturingClient()
    for i in range(0, len(messages), per_batch):
        for msg in messages[i:i + per_batch]:
            exchange.handle_liquidation(client, msg)
        batch, client.resolved = client.resolved, []
        yield batch
        await asyncio.sleep(0)


def test_collector_on_the_real_sample(liquidation_events, binance_pro, engine, runner, sink):
    from huracan.db.tables import Liquidation

    messages = [force_order(r) for r in liquidation_events.itertuples(index=False)]
    collector = LiquidationCollector("binance", engine=engine, sink=sink, runner=runner,
                                     flush_events=100)
    received = asyncio.run(collector.run(replay(binance_pro, messages, per_batch=25)))
    assert received == len(liquidation_events) == 234
    assert len(collector.flushes) == 3 and sum(f.events for f in collector.flushes) == 234
    assert all(f.report is not None and f.report.passed for f in collector.flushes)
    assert [i for i in sink.issues if i.severity == "critical"] == []

    # buckets = the sample grouped by minute; SELL (order side) = a long liquidated
    want = liquidation_events.assign(
        minute=liquidation_events.timestamp.dt.floor("min"),
        side=liquidation_events.side.map({"SELL": "long", "BUY": "short"}))
    got = collector.buckets()
    assert list(got.columns) == list(BUCKET_COLUMNS)
    assert got.long_count.sum() == 189 and got.short_count.sum() == 45
    for side in ("long", "short"):
        rows = want[want.side == side]
        assert got[f"{side}_usd"].sum() == pytest.approx(rows.usd_value.sum(), rel=1e-9)
        per_minute = rows.groupby("minute").quantity.sum()
        mine = got.groupby("timestamp")[f"{side}_quantity"].sum()
        assert mine[mine > 0].to_dict() == pytest.approx(per_minute.to_dict())
    assert set(got.symbol) == {f"{s[:-4]}/{s[-4:]}" for s in liquidation_events.symbol}
    # the same buckets from the pure function
    frame = events_frame([event_row(m, "binance") for m in []], "binance")
    assert frame.empty and aggregate_minutes(frame).empty

    # events are in the brain store, one row per natural key, position sides
    key = ["timestamp", "symbol", "side", "price", "quantity"]
    unique = liquidation_events.drop_duplicates(key)
    with engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(Liquidation)).scalar_one()
        sides = dict(conn.execute(select(Liquidation.side, func.count())
                                  .group_by(Liquidation.side)).all())
        sol = conn.execute(select(Liquidation).where(Liquidation.symbol == "SOL/USDT")
                           .order_by(Liquidation.timestamp)).first()
    assert n == len(unique)
    assert sides == {"long": int((unique.side == "SELL").sum()),
                     "short": int((unique.side == "BUY").sum())}
    first = liquidation_events.iloc[0]
    assert sol is not None and sol.exchange == "binance" and sol.side == "long"
    assert sol.price == pytest.approx(first.price) and sol.quantity == pytest.approx(
        first.quantity)
    assert sol.size_usd == pytest.approx(first.usd_value)


def test_ccxt_parses_binance_order_side_and_bybit_position_side(binance_pro):
    client = CapturingClient()
    binance_pro.handle_liquidation(client, force_order(pd.Series({
        "timestamp": pd.Timestamp("2025-10-22 09:36:42.306", tz="UTC"), "symbol": "SOLUSDT",
        "side": "SELL", "price": 184.22, "quantity": 0.04})))
    (liq,) = client.resolved
    assert liq["symbol"] == "SOL/USDT:USDT" and liq["side"] == "sell"
    assert event_row(liq, "binance")["side"] == "long"

    bybit = ccxtpro.bybit()
    client = CapturingClient()
    bybit.handle_liquidation(client, {
        "topic": "allLiquidation.ROSEUSDT", "type": "snapshot", "ts": 1739502303204,
        "data": [{"T": 1739502302929, "s": "ROSEUSDT", "S": "Buy", "v": "20000",
                  "p": "0.04499"}]})
    (liq,) = client.resolved
    row = event_row(liq, "bybit")
    assert row["side"] == "long"  # Bybit names the liquidated POSITION: Buy = a long
    assert row["symbol"] == "ROSE/USDT" and row["quantity"] == 20000
    assert row["size_usd"] == pytest.approx(20000 * 0.04499)


def test_bad_events_are_rejected_and_logged(engine, runner, sink):
    events = [
        {"symbol": "BTC/USDT:USDT", "side": "sell", "price": 60000.0, "contracts": 0.01,
         "contractSize": 1.0, "timestamp": 1_729_000_000_000},
        {"symbol": "BTC/USDT:USDT", "side": "sell", "price": 60000.0, "contracts": 0.0,
         "contractSize": 1.0, "timestamp": 1_729_000_001_000},
        {"symbol": "BTC/USDT:USDT", "side": "sideways", "price": 60000.0, "contracts": 0.02,
         "contractSize": 1.0, "timestamp": 1_729_000_002_000},
    ]
    collector = LiquidationCollector("binance", engine=engine, sink=sink, runner=runner)
    collector.add(events)
    result = collector.flush()
    assert result is not None and result.events == 3 and result.rejected == 2
    assert result.inserted == 1
    assert set(result.report.failed_rules) == {"positive_quantity", "side_in_set"}
    assert {"positive_quantity", "side_in_set"} <= set(sink.types())
    assert collector.buckets().long_count.sum() == 1  # invalid events stay out of the buckets


def test_watch_reconnects_with_backoff_and_stops_on_a_non_transient_error(runner):
    liq = {"symbol": "BTC/USDT:USDT", "side": "buy", "price": 60000.0, "contracts": 0.5,
           "contractSize": 1.0, "timestamp": 1_729_000_000_000}
    script: list[Any] = [ccxt.NetworkError("socket closed"), ccxt.RequestTimeout("ping"), [liq],
                         [dict(liq, timestamp=1_729_000_061_000)], ccxt.BadSymbol("delisted")]
    waits: list[float] = []

    class Stream:
        async def watch_liquidations_for_symbols(self, symbols):
            assert symbols == []  # all symbols: Binance's !forceOrder@arr
            item = script.pop(0)
            if isinstance(item, Exception):
                raise item
            return item

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    collector = LiquidationCollector("binance", runner=runner)
    source = watch_liquidations(Stream(), retry=RetryPolicy(initial_s=1, jitter_s=0.5),
                                sleep=sleep)
    with pytest.raises(ccxt.BadSymbol):
        asyncio.run(collector.run(source))
    assert len(waits) == 2 and 1 <= waits[0] <= 1.5 and 2 <= waits[1] <= 2.5
    assert collector.received == 2 and len(collector.buckets()) == 2  # two different minutes
    assert collector.flushes and collector.flushes[-1].events == 2  # flushed on the way out
    assert collector.buckets().short_count.tolist() == [1, 1]


def test_cli_collects_from_the_stream(monkeypatch, liquidation_events, binance_pro, engine):
    """``huracan download liquidations``: the ccxt.pro exchange is replaced by one whose
    ``watch_liquidations_for_symbols`` replays the real sample through ccxt's own handler."""
    from typer.testing import CliRunner

    import huracan.data.liquidations as liq_mod
    from huracan.cli.data import download_app

    messages = [force_order(r) for r in liquidation_events.itertuples(index=False)]
    batches = replay(binance_pro, messages, per_batch=50)

    class Replayed:
        closed = False

        async def watch_liquidations_for_symbols(self, symbols):
            try:
                return await batches.__anext__()
            except StopAsyncIteration:
                raise ccxt.ExchangeClosedByUser("replay finished") from None

        async def close(self):
            Replayed.closed = True

    monkeypatch.setattr(liq_mod, "make_pro_exchange", lambda exchange_id: Replayed())
    res = CliRunner().invoke(download_app, ["liquidations", "--db-url", str(engine.url),
                                            "--duration", "30"])
    assert res.exit_code == 1 and "stream ended: ExchangeClosedByUser" in res.output
    assert "received 234 event(s)" in res.output and "stored 234 new" in res.output
    assert Replayed.closed
    from sqlalchemy import text

    with engine.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM liquidations")).scalar_one()
    assert n == len(liquidation_events.drop_duplicates(
        ["timestamp", "symbol", "side", "price", "quantity"]))
