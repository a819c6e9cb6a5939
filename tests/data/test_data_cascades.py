"""The one cascade rule (huracan.data.cascades): by hand, on the real 2025-10-22 Binance events
(labels from the ingest and from the collector, checked against a straightforward O(n^2)
implementation of the rule written here), the listing, and the configuration."""

from __future__ import annotations

import asyncio

import pandas as pd
import pytest
from test_data_liquidations import binance_pro, force_order, replay  # noqa: F401 (fixture)

from huracan.data.cascades import (
    DEFAULT_RULE,
    CascadeRule,
    find_cascades,
    label_cascades,
)
from huracan.data.ingest import prepare_frame
from huracan.data.liquidations import LiquidationCollector

T0 = pd.Timestamp("2024-01-01", tz="UTC")
RULES = [DEFAULT_RULE,  # on the sample: one symbol (KDA) reaches 20 events; no $250k window
         CascadeRule(min_events=10, min_usd=100_000),  # both legs fire on the sample
         CascadeRule(window="60s", min_events=3, min_usd=None),
         CascadeRule(window="2min", min_events=None, min_usd=20_000)]


def _events(rows: list[tuple[float, str, str, float]], exchange: str = "binance"
            ) -> pd.DataFrame:
    """(seconds after T0, symbol, side, USD) -> an events frame."""
    return pd.DataFrame({
        "timestamp": [T0 + pd.Timedelta(seconds=s) for s, *_ in rows],
        "exchange": exchange, "symbol": [r[1] for r in rows], "side": [r[2] for r in rows],
        "size_usd": [r[3] for r in rows]})


def expected_labels(events: pd.DataFrame, rule: CascadeRule) -> list[str]:
    """The rule, literally: for each event, the events of its exchange and symbol with a time in
    (t - window, t]; cascade when they are at least min_events or at least min_usd USD."""
    out = []
    for e in events.itertuples(index=False):
        same = events[(events.exchange == e.exchange) & (events.symbol == e.symbol)
                      & (events.timestamp > e.timestamp - rule.window)
                      & (events.timestamp <= e.timestamp)]
        hit = ((rule.min_events is not None and len(same) >= rule.min_events)
               or (rule.min_usd is not None and same.size_usd.sum() >= rule.min_usd))
        out.append("cascade" if hit else "single")
    return out


def expected_cascades(events: pd.DataFrame, rule: CascadeRule) -> list[tuple]:
    """Episodes, literally: every cascade event's window (as a set of events); windows sharing
    an event belong to one episode; start/end = first event of the episode / last cascade
    event, counted over every event of the symbol in between."""
    labels = expected_labels(events, rule)
    ev = events.assign(label=labels).reset_index(drop=True)
    episodes: list[tuple] = []
    for (exchange, symbol), grp in ev.groupby(["exchange", "symbol"], sort=True):
        grp = grp.sort_values("timestamp", kind="stable")
        current: tuple | None = None  # (first time, last cascade time, last window member time)
        for e in grp.itertuples():
            if e.label != "cascade":
                continue
            members = grp[(grp.timestamp > e.timestamp - rule.window)
                          & (grp.timestamp <= e.timestamp)]
            first, last_member = members.timestamp.min(), members.timestamp.max()
            if current is not None and first <= current[2]:
                current = (current[0], e.timestamp, max(current[2], last_member))
            else:
                if current is not None:
                    episodes.append((exchange, symbol, current[0], current[1]))
                current = (first, e.timestamp, last_member)
        if current is not None:
            episodes.append((exchange, symbol, current[0], current[1]))
    out = []
    for exchange, symbol, start, end in episodes:
        inside = ev[(ev.exchange == exchange) & (ev.symbol == symbol)
                    & (ev.timestamp >= start) & (ev.timestamp <= end)]
        longs = inside.loc[inside.side == "long", "size_usd"].sum()
        shorts = inside.loc[inside.side == "short", "size_usd"].sum()
        out.append((exchange, symbol, start, end, len(inside), pytest.approx(inside.size_usd.sum()),
                    "long" if longs >= shorts else "short"))
    return sorted(out, key=lambda r: (r[2], r[0], r[1]))


@pytest.fixture(scope="module")
def sample(liquidation_events) -> pd.DataFrame:
    """The raw 2025-10-22 file as events (no code under test involved): exchange binance,
    ``SOLUSDT`` written ``SOL/USDT``, SELL (order side) = a long liquidated, USD = the file's
    usd_value."""
    return pd.DataFrame({
        "timestamp": liquidation_events.timestamp, "exchange": "binance",
        "symbol": liquidation_events.symbol.str.replace(r"(USDT|USDC)$", r"/\1", regex=True),
        "side": liquidation_events.side.map({"SELL": "long", "BUY": "short"}),
        "size_usd": liquidation_events.usd_value})


def test_rule_by_hand():
    ev = _events([
        (0, "BTC/USDT", "long", 100.0), (10, "BTC/USDT", "short", 100.0),
        (20, "BTC/USDT", "long", 100.0),  # 3rd BTC event within 60 s: both sides count
        (80, "BTC/USDT", "long", 100.0),  # window (20 s, 80 s]: 20 s and 80 s only -> single
        (20, "ETH/USDT", "long", 100.0), (20, "ETH/USDT", "long", 50.0),  # same instant
        (21, "ETH/USDT", "short", 1.0),  # ETH's 3rd event
        (300, "SOL/USDT", "long", 2_000.0), (360, "SOL/USDT", "long", 2_000.0),
        (420, "SOL/USDT", "long", 2_000.0),  # 60 s apart exactly: the window excludes t - 60 s
    ])
    rule = CascadeRule(window="60s", min_events=3, min_usd=None)
    assert label_cascades(ev, rule).tolist() == [
        "single", "single", "cascade", "single", "single", "single", "cascade",
        "single", "single", "single"]
    # the USD leg: $3,000 within 3 minutes
    usd = CascadeRule(window="3min", min_events=None, min_usd=3_000)
    assert label_cascades(ev, usd).tolist() == ["single"] * 8 + ["cascade", "cascade"]
    # events at one instant share their window: both ETH events at 20 s are the 2nd and 3rd
    two = CascadeRule(window="60s", min_events=2, min_usd=None)
    assert label_cascades(ev, two).tolist()[4:7] == ["cascade", "cascade", "cascade"]
    # exchanges are separate streams
    other = pd.concat([ev.iloc[:2], _events([(20, "BTC/USDT", "long", 100.0)], "bybit")],
                      ignore_index=True)
    assert label_cascades(other, rule).tolist() == ["single"] * 3
    # context: earlier events count but are not labelled
    assert label_cascades(ev.iloc[2:3], rule, context=ev.iloc[:2]).tolist() == ["cascade"]
    assert label_cascades(ev.iloc[2:3], rule).tolist() == ["single"]


def test_listing_by_hand():
    ev = _events([(0, "BTC/USDT", "long", 500.0), (10, "BTC/USDT", "short", 100.0),
                  (20, "BTC/USDT", "long", 400.0), (30, "BTC/USDT", "long", 100.0),
                  (200, "BTC/USDT", "short", 50.0), (400, "BTC/USDT", "short", 10.0),
                  (410, "BTC/USDT", "short", 10.0), (420, "BTC/USDT", "long", 1.0)])
    found = find_cascades(ev, CascadeRule(window="60s", min_events=3, min_usd=None))
    assert found[["start", "end", "events", "usd", "dominant_side"]].values.tolist() == [
        [T0, T0 + pd.Timedelta(seconds=30), 4, 1100.0, "long"],
        [T0 + pd.Timedelta(seconds=400), T0 + pd.Timedelta(seconds=420), 3, 21.0, "short"]]
    assert found.dominant_share.tolist() == pytest.approx([1000 / 1100, 20 / 21])
    assert find_cascades(ev.iloc[:0]).empty
    assert find_cascades(ev, CascadeRule(min_events=50, min_usd=None)).empty


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.describe())
def test_ingest_labels_the_real_sample_by_the_rule(sample, liquidation_events, rule):
    batch = prepare_frame("liquidations", liquidation_events, "sample", exchange="binance",
                          cascade_rule=rule)
    got = batch.frame.sort_values(["timestamp", "symbol", "price", "quantity"],
                                  ignore_index=True)
    want = sample.assign(label=expected_labels(sample, rule), price=liquidation_events.price,
                         quantity=liquidation_events.quantity).sort_values(
        ["timestamp", "symbol", "price", "quantity"], ignore_index=True)
    assert len(got) == len(want) == 234
    assert got.liquidation_type.astype(str).tolist() == want.label.tolist()
    if rule == DEFAULT_RULE:  # KDA's 20th to 29th liquidation of the 5 minutes
        cascades = got[got.liquidation_type == "cascade"]
        assert len(cascades) == 10 and set(cascades.symbol) == {"KDA/USDT"}
    if rule == RULES[1]:  # the USD leg fires too: FET and ETH have < 10 events but > $100k
        assert {"FET/USDT", "ETH/USDT", "KDA/USDT"} <= set(
            got.loc[got.liquidation_type == "cascade", "symbol"])


@pytest.mark.parametrize("rule", RULES[:2], ids=lambda r: r.describe())
def test_listing_of_the_real_sample(sample, rule):
    found = find_cascades(sample, rule)
    got = [(r.exchange, r.symbol, r.start, r.end, r.events, r.usd, r.dominant_side)
           for r in found.itertuples()]
    assert got == expected_cascades(sample, rule)
    assert len(got) == (1 if rule == DEFAULT_RULE else 7)


def test_collector_labels_across_flushes_like_the_whole_stream(
        sample, liquidation_events, binance_pro, engine, runner, sink):  # noqa: F811
    """The collector flushes every 40 events; events of the previous 5 minutes count in the
    next flush's windows, so its labels equal the rule applied to the whole stream."""
    from sqlalchemy import select

    from huracan.db.tables import Liquidation

    rule = CascadeRule(min_events=10, min_usd=100_000)
    messages = [force_order(r) for r in liquidation_events.itertuples(index=False)]
    collector = LiquidationCollector("binance", engine=engine, sink=sink, runner=runner,
                                     flush_events=40, cascade_rule=rule)
    asyncio.run(collector.run(replay(binance_pro, messages, per_batch=20)))
    assert len(collector.flushes) == 6
    with engine.connect() as conn:
        stored = pd.DataFrame(conn.execute(select(
            Liquidation.timestamp, Liquidation.symbol, Liquidation.price, Liquidation.quantity,
            Liquidation.liquidation_type)).all())
    key = ["timestamp", "symbol", "price", "quantity"]
    want = sample.assign(label=expected_labels(sample, rule), price=liquidation_events.price,
                         quantity=liquidation_events.quantity)
    merged = want.merge(stored, on=key, validate="one_to_one")
    assert len(merged) == 234
    assert merged.liquidation_type.tolist() == merged.label.tolist()
    # flushed alone, the later batches would have missed their first cascade events
    alone = pd.concat([label_cascades(part, rule) for part in
                       (want.iloc[i:i + 40] for i in range(0, 234, 40))])
    assert (alone == "cascade").sum() < (merged.label == "cascade").sum()


def test_rule_configuration(monkeypatch):
    assert CascadeRule(pd.Timedelta(minutes=5), 20, 250_000.0) == DEFAULT_RULE
    assert "20 liquidations or >= $250,000 of one symbol within 5 min" in DEFAULT_RULE.describe()
    cfg = {"cascade_window": "2min", "cascade_min_events": 7, "cascade_min_usd": None}
    assert CascadeRule.from_mapping(cfg) == CascadeRule(pd.Timedelta(minutes=2), 7, None)
    assert CascadeRule.from_mapping({"window": 90}).window == pd.Timedelta(seconds=90)
    assert CascadeRule.from_mapping(None) == DEFAULT_RULE
    monkeypatch.setenv("HURACAN_CASCADE_WINDOW", "300s")
    monkeypatch.setenv("HURACAN_CASCADE_MIN_EVENTS", "none")
    monkeypatch.setenv("HURACAN_CASCADE_MIN_USD", "1e6")
    assert CascadeRule.from_env() == CascadeRule(pd.Timedelta(minutes=5), None, 1e6)
    assert CascadeRule.from_env({}) == DEFAULT_RULE
    assert DEFAULT_RULE.replace(min_usd=5.0) == CascadeRule(min_usd=5.0)
    for bad in ({"window": "0s"}, {"min_events": 0}, {"min_usd": -1.0},
                {"min_events": None, "min_usd": None}):
        with pytest.raises(ValueError):
            CascadeRule.from_mapping(bad)
