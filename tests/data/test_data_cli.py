"""``huracan download`` and ``huracan quality report`` end to end (exchanges stubbed), and the
daily summary built from ``data_quality_logs``."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

import huracan.cli.data as data_cli
from huracan.alerts import Alert
from huracan.data.lake import CandleLake
from huracan.data.quality import QualityIssue
from huracan.data.quality_report import build_report, parse_since, send
from huracan.data.sources import RetryPolicy, download_ohlcv


@pytest.fixture(autouse=True)
def _seeded():
    random.seed(7)


@pytest.fixture
def cli_env(monkeypatch, make_downloader, engine, tmp_path):
    """The CLI's downloader replaced by one on the stubbed exchanges; its DB and lake in tmp."""
    monkeypatch.setattr(data_cli, "make_downloader",
                        lambda sink: make_downloader(sink=sink)[0])
    return {"db": str(engine.url), "lake": str(tmp_path / "lake")}


def invoke(app, *args: str):
    return CliRunner().invoke(app, list(args))


def test_download_ohlcv_then_rerun(cli_env):
    args = ["ohlcv", "--symbol", "BTC/USDT", "--timeframe", "1h", "--since", "2024-01-01",
            "--until", "2024-01-03", "--lake", cli_env["lake"], "--db-url", cli_env["db"]]
    first = invoke(data_cli.download_app, *args)
    assert first.exit_code == 0, first.output
    assert "fetched 48 row(s)" in first.output and "stored 48 new" in first.output
    assert "0 gap(s)" in first.output and "[OK]" in first.output
    assert len(CandleLake(cli_env["lake"]).read("binance", "BTC/USDT", "1h")) == 48
    again = invoke(data_cli.download_app, *args)
    assert again.exit_code == 0 and "fetched 0 row(s) in 0 request(s)" in again.output


def test_download_reports_fallback_and_degraded(cli_env, servers):
    servers["binance"].fail("/api/v3/klines", "timeout", times=5)
    args = ["ohlcv", "--symbol", "BTC/USDT", "--since", "2024-01-01", "--until", "2024-01-02",
            "--lake", cli_env["lake"], "--db-url", cli_env["db"]]
    ok = invoke(data_cli.download_app, *args)
    assert ok.exit_code == 0, ok.output
    assert "from bybit" in ok.output and "4 retries" in ok.output
    assert "fell back from binance" in ok.output
    for name, path in (("binance", "klines"), ("bybit", "kline"), ("okx", "candles")):
        servers[name].fail(path, "503", times=100)
    bad = invoke(data_cli.download_app, "ohlcv", "--symbol", "BTC/USDT", "--since",
                 "2024-02-01", "--until", "2024-02-02", "--lake", cli_env["lake"], "--db-url",
                 cli_env["db"], "--exchange", "okx", "--no-fallback")
    assert bad.exit_code == 1 and "[DEGRADED]" in bad.output and "NO EXCHANGE" in bad.output


def test_download_funding_and_open_interest(cli_env, engine):
    res = invoke(data_cli.download_app, "funding", "--symbol", "BTC/USDT", "--since",
                 "2024-01-01", "--until", "2024-02-01", "--db-url", cli_env["db"])
    assert res.exit_code == 0, res.output
    oi = invoke(data_cli.download_app, "open-interest", "--symbol", "BTC/USDT", "--timeframe",
                "1d", "--since", "2024-01-01", "--until", "2024-02-01", "--db-url",
                cli_env["db"])
    assert oi.exit_code == 0, oi.output
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM funding_rates")).scalar_one() == 93
        assert conn.execute(text("SELECT count(*) FROM open_interest")).scalar_one() == 31


def test_download_needs_a_migrated_store(monkeypatch, make_downloader, tmp_path):
    monkeypatch.setattr(data_cli, "make_downloader", lambda sink: make_downloader(sink=sink)[0])
    res = invoke(data_cli.download_app, "ohlcv", "--symbol", "BTC/USDT", "--since",
                 "2024-01-01", "--db-url", f"sqlite:///{tmp_path / 'empty.db'}")
    assert res.exit_code == 1 and "huracan db upgrade" in res.output
    bad_tf = invoke(data_cli.download_app, "ohlcv", "--symbol", "BTC/USDT", "--since",
                    "2024-01-01", "--timeframe", "7x")
    assert bad_tf.exit_code == 2 and "unknown timeframe" in bad_tf.output


# ---- the daily summary -----------------------------------------------------------------------

@pytest.fixture
def logged_day(make_downloader, servers, engine, tmp_path, runner):
    """A day of real activity in data_quality_logs: BTC/USDT served by bybit after binance timed
    out (the window holds a real 2-hour outage, 2019-11-13 02:00-03:00); ETH/USDT degraded; SOL/USDT
    downloaded the day before but not today."""
    from huracan.data.quality_db import DbQualitySink

    sink = DbQualitySink(engine)
    earlier = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    for sym in ("BTC/USDT", "ETH/USDT", "SOL/USDT"):
        sink.write(QualityIssue(f"binance:{sym}:ohlcv:1h", "download_batch", "info",
                                {"rows": 24}, sym, timestamp=earlier))
    servers["binance"].fail("/api/v3/klines", "timeout", times=3)
    dl, _ = make_downloader(sink=sink, retry=RetryPolicy(attempts=3))
    lake = CandleLake(tmp_path / "lake")
    btc = download_ohlcv(dl, lake, "BTC/USDT", "1h", "2019-11-12", "2019-11-14", runner=runner)
    assert btc.ok and btc.batch.exchange == "bybit" and btc.bars_missing == 2
    servers["bybit"].fail("/v5/market/kline", "503", times=10)
    eth = download_ohlcv(dl, lake, "ETH/USDT", "1h", "2019-11-12", "2019-11-14", runner=runner)
    assert eth.batch.degraded
    return engine


def test_quality_report_summarises_the_day(logged_day):
    report = build_report(logged_day, parse_since("1d"))
    assert report.batches == 1 and report.symbols == ["BTC/USDT"]
    assert report.missing_symbols == ["ETH/USDT", "SOL/USDT"]
    (gaps,) = report.gaps
    assert (gaps.symbol, gaps.timeframe, gaps.gaps, gaps.bars_missing) == ("BTC/USDT", "1h", 1,
                                                                           2)
    lines = report.lines()
    assert any(line.startswith("BTC/USDT missing 2 hours of data (1h: 2 bar(s) in 1 gap(s): "
                               "2019-11-13 02:00:00+00:00 -> 2019-11-13 03:00:00+00:00")
               for line in lines), lines
    assert [r["symbol"] for r in report.retry_failures] == ["BTC/USDT", "ETH/USDT"]
    assert len(report.degraded) == 1 and report.degraded[0]["symbol"] == "ETH/USDT"
    assert report.severity == "critical"
    assert any(line.startswith("MISSING SOL/USDT") for line in lines)
    assert any(line.startswith("DEGRADED: ETH/USDT ohlcv 1h") for line in lines)
    expected = build_report(logged_day, parse_since("1d"), expected_symbols=["BTC/USDT"])
    assert expected.missing_symbols == ["ETH/USDT"]  # degraded counts as missing


def test_quality_report_is_sent_through_the_notifier(logged_day):
    sent: list[Alert] = []

    class Recorder:
        def notify(self, alert: Alert) -> None:
            sent.append(alert)

    report = build_report(logged_day, parse_since("1d"))
    alert = send(report, Recorder())
    assert sent == [alert] and alert.severity == "critical"
    assert alert.details["missing_symbols"] == "ETH/USDT,SOL/USDT"
    assert alert.details["gaps"] == "BTC/USDT:2hours" and alert.details["degraded"] == 1


def test_quality_report_cli(logged_day):
    res = invoke(data_cli.quality_app, "report", "--since", "1d", "--db-url",
                 str(logged_day.url), "--notify")
    assert res.exit_code == 0, res.output
    assert "BTC/USDT missing 2 hours of data" in res.output
    assert "MISSING SOL/USDT" in res.output and "sent: [critical] Data quality" in res.output
    clean = invoke(data_cli.quality_app, "report", "--since", "2020-01-01", "--until",
                   "2020-01-02", "--db-url", str(logged_day.url))
    assert clean.exit_code == 0 and "0 batch(es)" in clean.output and "sent:" not in clean.output
    bad = invoke(data_cli.quality_app, "report", "--since", "yesterday-ish",
                 "--db-url", str(logged_day.url))
    assert bad.exit_code == 2


def test_parse_since():
    now = pd.Timestamp("2025-01-02 12:00", tz="UTC")
    assert parse_since("1d", now) == pd.Timestamp("2025-01-01 12:00", tz="UTC")
    assert parse_since("90m", now) == pd.Timestamp("2025-01-02 10:30", tz="UTC")
    assert parse_since("2024-06-01", now) == pd.Timestamp("2024-06-01", tz="UTC")
    with pytest.raises(ValueError):
        parse_since("soon", now)
