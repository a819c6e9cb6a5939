"""``huracan liquidations cascades`` against a brain store built here (SQLite and Postgres), and the
cascade options of ``huracan ingest liquidations``."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from huracan.cli.db import ingest_app
from huracan.cli.liquidations import liquidations_app
from huracan.data.ingest import ingest_file
from huracan.db import migrate
from huracan.db.session import make_engine
from huracan.db.tables import Liquidation

runner = CliRunner()


def _url(engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _cascades(engine, *args: str):
    return runner.invoke(liquidations_app, ["cascades", *args, "--db-url", _url(engine)])


def _t(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


@pytest.fixture
def btc_file(tmp_path):
    """BTC/USDT liquidations with two cascades under the default rule (20 events or $250k in
    5 minutes) and a bybit burst that only counts if exchanges were mixed:

    - binance, 2024-03-01 10:00:00 + 4 s x i (i < 25): 20 longs of $10k, 5 shorts of $1k; the
      20th event (10:01:16) reaches 20 -> a cascade from 10:00:00 to 10:01:36, $205k;
    - binance, 2024-03-02 12:00:00/20/40: three shorts of $100k -> the 3rd reaches $300k;
    - bybit, 2024-03-01 09:58:00 + 5 s x i (i < 15): 15 longs of $1k (a cascade only with
      --min-events 10);
    - binance, 2024-02-20: two single liquidations.
    """
    rows = []
    for i in range(25):
        long = i % 5 != 4
        rows.append((_t("2024-03-01 10:00") + pd.Timedelta(seconds=4 * i), "binance",
                     "SELL" if long else "BUY", 50_000.0, 0.2 if long else 0.02))
    for i in range(3):
        rows.append((_t("2024-03-02 12:00") + pd.Timedelta(seconds=20 * i), "binance", "BUY",
                     50_000.0, 2.0))
    for i in range(15):
        rows.append((_t("2024-03-01 09:58") + pd.Timedelta(seconds=5 * i), "bybit", "SELL",
                     50_000.0, 0.02))
    rows += [(_t("2024-02-20 08:00"), "binance", "SELL", 51_000.0, 0.1),
             (_t("2024-02-20 08:00:30"), "binance", "BUY", 51_000.0, 0.1)]
    path = tmp_path / "liquidations.csv"
    pd.DataFrame(rows, columns=["timestamp", "exchange", "side", "price", "quantity"]).assign(
        symbol="BTCUSDT", timestamp=lambda d: d.timestamp.map(lambda t: t.isoformat())
    ).to_csv(path, index=False)
    return path


@pytest.fixture
def store(engine, btc_file, shared):
    ingest_file(engine, "liquidations", btc_file)
    ingest_file(engine, "liquidations", shared.liquidation_events, exchange="binance")
    return engine


def test_lists_the_cascades_of_a_symbol(store):
    res = _cascades(store, "BTC/USDT", "--since", "2024-03-01", "--until", "2024-03-05")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].startswith("BTC/USDT: 2 cascade(s) from 2024-03-01 00:00:00.000 to "
                               "2024-03-05 00:00:00.000 UTC")
    assert ">= 20 liquidations or >= $250,000 of one symbol within 5 min" in lines[0]
    assert lines[2].split() == ["2024-03-01", "10:00:00.000", "2024-03-01", "10:01:36.000",
                                "binance", "25", "205,000", "long", "(98%)"]
    assert lines[3].split() == ["2024-03-02", "12:00:00.000", "2024-03-02", "12:00:40.000",
                                "binance", "3", "300,000", "short", "(100%)"]


def test_json_output_and_options(store):
    res = _cascades(store, "BTCUSDT", "--since", "2024-02-01", "--until", "2024-03-05",
                    "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["symbol"] == "BTC/USDT"
    assert doc["rule"] == {"window_seconds": 300.0, "min_events": 20, "min_usd": 250_000.0}
    assert doc["cascades"] == [
        {"exchange": "binance", "start": "2024-03-01T10:00:00+00:00",
         "end": "2024-03-01T10:01:36+00:00", "events": 25, "usd": 205_000.0,
         "long_usd": 200_000.0, "short_usd": 5_000.0, "dominant_side": "long",
         "dominant_share": round(200 / 205, 4)},
        {"exchange": "binance", "start": "2024-03-02T12:00:00+00:00",
         "end": "2024-03-02T12:00:40+00:00", "events": 3, "usd": 300_000.0,
         "long_usd": 0.0, "short_usd": 300_000.0, "dominant_side": "short",
         "dominant_share": 1.0}]

    def starts(*args: str) -> list[str]:
        out = _cascades(store, "BTC/USDT", "--until", "2024-03-05", "--json", *args)
        assert out.exit_code == 0, out.output
        return [c["start"] for c in json.loads(out.stdout)["cascades"]]

    # a cascade is listed when it ends at or after --since
    assert starts("--since", "2024-03-01T10:01:36Z") == ["2024-03-01T10:00:00+00:00",
                                                          "2024-03-02T12:00:00+00:00"]
    assert starts("--since", "2024-03-01T10:01:37Z") == ["2024-03-02T12:00:00+00:00"]
    # exchanges are separate streams: bybit's burst is no cascade by default ...
    assert starts("--since", "2024-03-01", "--exchange", "bybit") == []
    # ... and is one with 10 events in 5 minutes (its 10th event at 09:58:45 triggers it)
    assert starts("--since", "2024-03-01", "--exchange", "bybit", "--min-events", "10") == [
        "2024-03-01T09:58:00+00:00"]
    # the USD leg alone, lowered: the $10k longs make a cascade from their first event
    assert starts("--since", "2024-03-01", "--exchange", "binance", "--min-events", "1000",
                  "--min-usd", "50000") == ["2024-03-01T10:00:00+00:00",
                                            "2024-03-02T12:00:00+00:00"]


def test_real_events(store, shared):
    """KDA/USDT in the 2025-10-22 file: the listing equals the rule applied by hand."""
    raw = pd.read_parquet(shared.liquidation_events)
    kda = raw[raw.symbol == "KDAUSDT"].sort_values("timestamp").reset_index(drop=True)
    window = pd.Timedelta(minutes=5)
    firsts, flagged = [], []
    for t in kda.timestamp:
        members = kda[(kda.timestamp > t - window) & (kda.timestamp <= t)]
        if len(members) >= 20 or members.usd_value.sum() >= 250_000:
            flagged.append(t)
            firsts.append(members.timestamp.min())
    assert flagged, "the sample holds a KDA cascade under the default rule"
    start, end = min(firsts), max(flagged)
    inside = kda[(kda.timestamp >= start) & (kda.timestamp <= end)]
    res = _cascades(store, "KDAUSDT", "--since", "2025-10-22", "--until", "2025-10-23",
                    "--json")
    assert res.exit_code == 0, res.output
    [cascade] = json.loads(res.stdout)["cascades"]
    assert pd.Timestamp(cascade["start"]) == start and pd.Timestamp(cascade["end"]) == end
    assert cascade["events"] == len(inside)
    assert cascade["usd"] == pytest.approx(inside.usd_value.sum(), abs=0.01)
    sells = inside.loc[inside.side == "SELL", "usd_value"].sum()  # SELL: a long liquidated
    assert cascade["dominant_side"] == ("long" if sells >= inside.usd_value.sum() / 2
                                        else "short")
    none = _cascades(store, "BTC/USDT", "--since", "7d")
    assert none.exit_code == 0 and "BTC/USDT: 0 cascade(s)" in none.stdout


def test_bad_input_and_unmigrated_store(store, tmp_path):
    bad_symbol = _cascades(store, "ALL", "--since", "7d")
    assert bad_symbol.exit_code == 2 and "is not BASE/QUOTE" in bad_symbol.stderr
    bad_since = _cascades(store, "BTC/USDT", "--since", "last tuesday")
    assert bad_since.exit_code == 2 and "--since" in bad_since.stderr
    bad_rule = _cascades(store, "BTC/USDT", "--min-events", "0")
    assert bad_rule.exit_code == 2 and "cascade rule" in bad_rule.stderr
    empty = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        res = _cascades(empty, "BTC/USDT")
    finally:
        empty.dispose()
    assert res.exit_code == 1 and "huracan db upgrade" in res.stderr


def test_ingest_cascade_options(engine, btc_file):
    assert migrate.current_revision(engine) is not None
    res = runner.invoke(ingest_app, ["liquidations", str(btc_file), "--db-url", _url(engine),
                                     "--cascade-window", "60s", "--cascade-min-events", "3",
                                     "--cascade-min-usd", "1e9"])
    assert res.exit_code == 0, res.output
    with engine.connect() as conn:
        rows = conn.execute(select(Liquidation.exchange, Liquidation.timestamp,
                                   Liquidation.liquidation_type)
                            .order_by(Liquidation.exchange, Liquidation.timestamp)).all()
    kinds = pd.DataFrame(rows, columns=["exchange", "timestamp", "kind"])
    binance = kinds[kinds.exchange == "binance"].kind.tolist()
    # 2 February singles; the 25-event burst: 3rd event onwards; the three $100k shorts 20 s
    # apart: the 3rd; bybit's 15 events 5 s apart: 3rd onwards
    assert binance == ["single"] * 2 + ["single"] * 2 + ["cascade"] * 23 + ["single"] * 2 + [
        "cascade"]
    assert kinds[kinds.exchange == "bybit"].kind.tolist() == ["single"] * 2 + ["cascade"] * 13
    bad = runner.invoke(ingest_app, ["liquidations", str(btc_file), "--db-url", _url(engine),
                                     "--cascade-window", "-5min"])
    assert bad.exit_code == 2 and "cascade rule" in bad.stderr
