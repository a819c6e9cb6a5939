"""ccxt downloads through the exchanges' real parsing code, HTTP stubbed with real candles:
pagination, retry with backoff and jitter (or the 429's Retry-After), fallback, the degraded
path, lake and store writes."""

from __future__ import annotations

import logging
import random

import ccxt
import pandas as pd
import pytest
import tenacity
from data_paths import NOW
from sqlalchemy import select

from huracan.data.lake import CandleLake
from huracan.data.ohlcv import Gap
from huracan.data.sources import (
    RetryPolicy,
    download_derivatives,
    download_ohlcv,
    is_transient,
    market_symbol,
    retry_after_seconds,
)

UTC = "UTC"


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz=UTC)


def between(df: pd.DataFrame, start: str, end: str) -> pd.DataFrame:
    return df[(df.timestamp >= ts(start)) & (df.timestamp < ts(end))].reset_index(drop=True)


def assert_same_candles(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert len(got) == len(want) > 0
    assert (got.timestamp.to_numpy() == want.timestamp.to_numpy()).all()
    for col in ("open", "high", "low", "close", "volume"):
        assert got[col].to_numpy() == pytest.approx(want[col].to_numpy(), rel=1e-9), col


@pytest.fixture(autouse=True)
def _seeded():
    random.seed(1234)  # tenacity's jitter draws from `random`


@pytest.mark.parametrize("exchange", ["binance", "bybit", "okx"])
@pytest.mark.parametrize("market", ["spot", "perp"])
def test_each_exchange_parses_into_the_real_candles(exchange, market, make_downloader, servers,
                                                    spot_1h, perp_1h):
    dl, sleep = make_downloader([exchange])
    start, end = ("2018-02-01", "2018-02-15") if market == "spot" else ("2024-03-01",
                                                                        "2024-03-12")
    batch = dl.fetch_ohlcv("BTC/USDT", "1h", start, end, market=market)
    assert batch.exchange == exchange and not batch.degraded and sleep.waits == []
    assert batch.market_symbol == ("BTC/USDT" if market == "spot" else "BTC/USDT:USDT")
    assert_same_candles(batch.frame, between(spot_1h if market == "spot" else perp_1h, start,
                                             end))
    pages = [p for path, p in servers[exchange].calls if "kline" in path or "candles" in path]
    assert len(pages) == batch.requests - 1  # + load_markets
    # every page names both ends: Bybit and OKX return the NEWEST bars given a start alone
    first = pages[0]
    if exchange == "binance":
        assert int(first["startTime"]) == int(ts(start).value // 10**6) and "endTime" in first
    elif exchange == "bybit":
        assert "start" in first and "end" in first
    else:
        assert "before" in first and "after" in first
        assert len(pages) >= len(batch.frame) / 100  # OKX serves 100 bars per page


def test_the_2018_outage_comes_back_as_the_exact_gap(make_downloader, tmp_path, runner):
    dl, _ = make_downloader(["binance"])
    result = download_ohlcv(dl, CandleLake(tmp_path), "BTC/USDT", "1h", "2018-02-07",
                            "2018-02-11", runner=runner)
    (report,) = result.reports
    assert report.gaps == [Gap(ts("2018-02-08 01:00"), ts("2018-02-09 09:00"), 33)]
    assert report.expected_bars == 96 and report.coverage == pytest.approx(63 / 96)
    # low coverage: the bars are stored, the batch is flagged degraded
    assert result.stored == 63 and result.degraded and report.failed_rules == ["coverage"]
    assert "1 gap(s), 33 bar(s) missing" in result.summary()


def test_forming_bar_is_never_fetched(make_downloader):
    dl, _ = make_downloader(["binance"], now=ts("2024-06-01 10:30"))
    batch = dl.fetch_ohlcv("BTC/USDT", "1h", "2024-06-01")
    assert batch.frame.timestamp.iloc[-1] == ts("2024-06-01 09:00") and len(batch.frame) == 10


def test_transient_errors_are_retried_with_exponential_backoff_and_jitter(
        make_downloader, servers, caplog, sink):
    server = servers["binance"]
    server.fail("/api/v3/klines", "timeout")
    server.fail("/api/v3/klines", "429")
    server.fail("/api/v3/klines", "503")
    dl, sleep = make_downloader(["binance"], sink=sink)
    with caplog.at_level(logging.WARNING, logger="huracan.data.sources"):
        batch = dl.fetch_ohlcv("BTC/USDT", "1h", "2024-01-01", "2024-01-02")
    assert batch.exchange == "binance" and batch.retries == 3 and len(batch.frame) == 24
    # waits of retry k: initial_s * 2^(k-1) + U(0, jitter_s), seconds
    assert len(sleep.waits) == 3
    for k, wait in enumerate(sleep.waits):
        assert 2**k <= wait <= 2**k + 1.0
    assert len(set(sleep.waits)) == 3 and sleep.waits == dl.waits
    # ccxt mapped each HTTP failure to its transient error class
    assert "RequestTimeout" in caplog.text
    assert "binance: DDoSProtection: binance 429 Too Many Requests" in caplog.text  # ccxt's 429
    assert "ExchangeNotAvailable" in caplog.text
    assert sink.types() == ["download_batch"]


def test_retry_policy_is_exponential_with_jitter():
    wait = RetryPolicy().wait()
    assert isinstance(wait, tenacity.wait_exponential_jitter)
    assert (wait.multiplier, wait.max, wait.exp_base, wait.jitter) == (1.0, 30.0, 2.0, 1.0)
    custom = RetryPolicy(attempts=3, initial_s=0.5, max_s=4, exp_base=3, jitter_s=0.1).wait()
    assert (custom.multiplier, custom.max, custom.exp_base, custom.jitter) == (0.5, 4, 3, 0.1)
    for err in (ccxt.RequestTimeout("x"), ccxt.RateLimitExceeded("x"), ccxt.DDoSProtection("x"),
                ccxt.ExchangeNotAvailable("x"), ccxt.NetworkError("x"),
                ccxt.OperationFailed("busy")):
        assert is_transient(err)
    for err in (ccxt.BadSymbol("x"), ccxt.AuthenticationError("x"), ccxt.NotSupported("x"),
                ccxt.BadRequest("x"), ccxt.BadResponse("x")):
        assert not is_transient(err)


def test_exhausted_retries_fall_back_to_the_next_exchange(make_downloader, servers, sink,
                                                          spot_1h):
    servers["binance"].fail("/api/v3/klines", "timeout", times=5)
    dl, sleep = make_downloader(sink=sink)
    batch = dl.fetch_ohlcv("BTC/USDT", "1h", "2024-01-01", "2024-01-03")
    assert batch.exchange == "bybit" and len(sleep.waits) == 4  # 5 tries = 4 waits
    assert [a.exchange for a in batch.attempts] == ["binance", "bybit"]
    assert batch.attempts[0].transient and "RequestTimeout" in batch.attempts[0].error
    assert_same_candles(batch.frame, between(spot_1h, "2024-01-01", "2024-01-03"))
    assert sink.types() == ["retry_exhausted", "download_batch"]
    assert sink.issues[1].details["fallback_from"] == ["binance"]
    assert sink.issues[0].severity == "warning" and sink.issues[0].symbol == "BTC/USDT"


def test_every_exchange_failing_marks_the_batch_degraded(make_downloader, servers, sink,
                                                         tmp_path):
    for server, path in ((servers["binance"], "/api/v3/klines"),
                         (servers["bybit"], "/v5/market/kline"),
                         (servers["okx"], "candles")):
        server.fail(path, "502", times=100)
    dl, sleep = make_downloader(sink=sink, retry=RetryPolicy(attempts=2))
    lake = CandleLake(tmp_path)
    result = download_ohlcv(dl, lake, "BTC/USDT", "1h", "2024-01-01", "2024-01-02")
    assert result.batch.degraded and result.degraded and result.stored == 0
    assert result.reports == [] and lake.series() == []
    assert sink.types() == ["retry_exhausted"] * 3 + ["degraded_batch"]
    degraded = sink.issues[-1]
    assert degraded.severity == "critical" and "every exchange failed" in degraded.details[
        "message"]
    assert len(sleep.waits) == 3 and "[DEGRADED]" in result.summary()


def test_bad_symbol_is_not_retried(make_downloader, servers, sink):
    # ETH/USDT is listed on bybit's spot market only (see conftest)
    dl, sleep = make_downloader(["binance", "bybit"], sink=sink)
    batch = dl.fetch_ohlcv("ETH/USDT", "1h", "2024-01-01", "2024-01-02")
    assert batch.exchange == "bybit" and sleep.waits == []
    first = batch.attempts[0]
    assert not first.transient and first.error.startswith("BadSymbol") and first.retries == 0
    assert [p for p, _ in servers["binance"].calls] == ["/api/v3/exchangeInfo",
                                                        "/fapi/v1/exchangeInfo"]
    assert sink.issues[0].issue_type == "exchange_error"
    assert sink.issues[0].details["error_type"] == "BadSymbol"


def test_authentication_error_is_not_retried(make_downloader, servers, sink):
    servers["binance"].fail("/api/v3/klines", "401")
    dl, sleep = make_downloader(["binance", "okx"], sink=sink)
    batch = dl.fetch_ohlcv("BTC/USDT", "1h", "2024-01-01", "2024-01-02")
    assert batch.exchange == "okx" and sleep.waits == []
    assert batch.attempts[0].error.startswith("AuthenticationError")
    assert sink.issues[0].details["error_type"] == "AuthenticationError"


def test_rerun_downloads_only_what_is_missing(make_downloader, servers, tmp_path, runner):
    lake = CandleLake(tmp_path)
    dl, _ = make_downloader(["binance"])
    first = download_ohlcv(dl, lake, "BTC/USDT", "1h", "2024-01-01", "2024-01-10", runner=runner)
    assert first.ok and first.stored == 216
    calls = len(servers["binance"].calls)
    again = download_ohlcv(dl, lake, "BTC/USDT", "1h", "2024-01-01", "2024-01-10", runner=runner)
    assert again.stored == 0 and len(servers["binance"].calls) == calls  # no request at all
    later = download_ohlcv(dl, lake, "BTC/USDT", "1h", "2024-01-01", "2024-01-12",
                           runner=runner)
    assert later.ok and later.stored == 48
    new_pages = [p for path, p in servers["binance"].calls[calls:] if path == "/api/v3/klines"]
    assert int(new_pages[0]["startTime"]) == int(ts("2024-01-10").value // 10**6)
    assert len(lake.read("binance", "BTC/USDT", "1h")) == 264
    # backfill before the first stored bar
    early = download_ohlcv(dl, lake, "BTC/USDT", "1h", "2023-12-31", "2024-01-12",
                           runner=runner)
    assert early.stored == 24 and early.batch.ranges == [(ts("2023-12-31"), ts("2024-01-01"))]


def test_funding_history_into_the_brain_store(make_downloader, servers, engine, funding,
                                              runner):
    from huracan.db.tables import FundingRate

    dl, _ = make_downloader()
    result = download_derivatives(dl, engine, "funding", "BTC/USDT", "2024-01-01", "2024-03-01",
                                  runner=runner)
    want = between(funding, "2024-01-01", "2024-03-01")
    assert result.ok and result.stored == len(want) == 180
    with engine.connect() as conn:
        rows = conn.execute(select(FundingRate.timestamp, FundingRate.funding_rate,
                                   FundingRate.exchange, FundingRate.symbol)
                            .order_by(FundingRate.timestamp)).all()
    assert [r.funding_rate for r in rows] == pytest.approx(want.funding_rate.tolist())
    assert {(r.exchange, r.symbol) for r in rows} == {("binance", "BTC/USDT")}
    calls = len(servers["binance"].calls)
    more = download_derivatives(dl, engine, "funding", "BTC/USDT", "2024-01-01", "2024-03-05",
                                runner=runner)
    assert more.stored == 12  # only the settlements after the newest stored one are asked for
    page = [p for path, p in servers["binance"].calls[calls:] if path == "/fapi/v1/fundingRate"]
    assert len(page) == 1
    assert int(page[0]["startTime"]) == int(want.timestamp.iloc[-1].value // 10**6) + 1


def test_open_interest_with_fallback_into_the_brain_store(make_downloader, servers, engine,
                                                          open_interest, runner, sink):
    from huracan.db.tables import OpenInterest

    servers["binance"].fail("/futures/data/openInterestHist", "401")
    dl, _ = make_downloader(["binance", "bybit"], sink=sink)
    result = download_derivatives(dl, engine, "open_interest", "BTC/USDT", "2024-01-01",
                                  "2024-02-01", timeframe="1d", runner=runner)
    assert result.batch.exchange == "bybit" and result.ok and result.stored == 31
    with engine.connect() as conn:
        rows = conn.execute(select(OpenInterest).order_by(OpenInterest.timestamp)).all()
    want = between(open_interest, "2024-01-01", "2024-02-01")
    assert [r.open_interest for r in rows] == pytest.approx(want.open_interest.tolist())
    assert all(r.open_interest_usd is None for r in rows)  # Bybit gives contracts only
    dl2, _ = make_downloader(["binance"])
    servers["binance"].failures.clear()
    res2 = download_derivatives(dl2, engine, "open_interest", "BTC/USDT", "2024-01-01",
                                "2024-01-05", timeframe="1d", runner=runner)
    assert res2.batch.exchange == "binance" and res2.stored == 4
    with engine.connect() as conn:
        usd = conn.execute(select(OpenInterest.open_interest_usd).where(
            OpenInterest.exchange == "binance")).scalars().all()
    assert usd == pytest.approx(between(open_interest, "2024-01-01", "2024-01-05")
                                .open_interest_usd.tolist())


def test_market_symbols():
    assert market_symbol("BTC/USDT") == "BTC/USDT"
    assert market_symbol("BTC/USDT", "perp") == "BTC/USDT:USDT"
    assert market_symbol("BTC/USDT:USDT", "spot") == "BTC/USDT:USDT"
    with pytest.raises(ValueError):
        market_symbol("BTCUSDT")
    assert NOW.tzinfo is not None


# ---- Retry-After on 429/418 -----------------------------------------------------------------

@pytest.mark.parametrize("exchange, path", [("binance", "/api/v3/klines"),
                                            ("bybit", "/v5/market/kline"),
                                            ("okx", "candles")])
def test_429_with_retry_after_waits_what_it_asks(make_downloader, servers, exchange, path,
                                                 caplog):
    servers[exchange].fail(path, "429", retry_after="2")
    dl, sleep = make_downloader([exchange])
    with caplog.at_level(logging.WARNING, logger="huracan.data.sources"):
        batch = dl.fetch_ohlcv("BTC/USDT", "1h", "2024-01-01", "2024-01-02")
    assert batch.exchange == exchange and batch.retries == 1 and len(batch.frame) == 24
    assert sleep.waits == [2.0]  # exactly the header, no backoff, no jitter
    assert "retrying in 2.00 s" in caplog.text


def test_429_without_retry_after_uses_the_backoff(make_downloader, servers):
    servers["binance"].fail("/api/v3/klines", "429", times=2)
    dl, sleep = make_downloader(["binance"])
    batch = dl.fetch_ohlcv("BTC/USDT", "1h", "2024-01-01", "2024-01-02")
    assert batch.retries == 2 and len(sleep.waits) == 2
    assert 1.0 <= sleep.waits[0] <= 2.0 and 2.0 <= sleep.waits[1] <= 3.0  # 2^(k-1) + U(0, 1)


def test_retry_after_is_capped_and_read_as_an_http_date(make_downloader, servers):
    # 418 (Binance's IP ban) asking for an hour: waited only up to the cap, then retried
    servers["binance"].fail("/api/v3/klines", "418", retry_after="3600")
    # an HTTP-date 30 s after the wall clock (whole seconds, as the format has)
    when = pd.Timestamp.now(tz=UTC).ceil("s") + pd.Timedelta(seconds=30)
    servers["binance"].fail("/api/v3/klines", "429",
                            retry_after=when.strftime("%a, %d %b %Y %H:%M:%S GMT"))
    servers["binance"].fail("/api/v3/klines", "429", retry_after="soon")  # unusable: backoff
    dl, sleep = make_downloader(["binance"])
    assert dl.retry.retry_after_max_s == 60.0
    batch = dl.fetch_ohlcv("BTC/USDT", "1h", "2024-01-01", "2024-01-02")
    assert batch.retries == 3 and len(batch.frame) == 24
    assert sleep.waits[0] == 60.0
    assert 29.0 <= sleep.waits[1] <= 31.0
    assert 4.0 <= sleep.waits[2] <= 5.0  # third retry's backoff: 2^2 + U(0, 1)


def test_retry_after_values():
    now = pd.Timestamp("2015-10-21 07:27:00", tz=UTC).timestamp()
    assert retry_after_seconds("2", now) == 2.0
    assert retry_after_seconds(" 1.5 ", now) == 1.5
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now) == 60.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:00:00 GMT", now) == 0.0  # in the past
    assert retry_after_seconds("-3", now) == 0.0
    for bad in (None, "", "soon", "inf", "nan"):
        assert retry_after_seconds(bad, now) is None
