"""Ingest real files twice, update changed values, reject bad rows, roll back failed loads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from huracan.data.ingest import PreparedBatch, ingest_file, load_batch, prepare_file
from huracan.data.ohlcv import DataValidationError, load_ohlcv
from huracan.data.quality_db import DbQualitySink
from huracan.db.tables import DataQualityLog, FundingRate, Liquidation


def _count(engine, model) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar_one()


def _logs(engine) -> list[DataQualityLog]:
    with engine.connect() as conn:
        return list(conn.execute(select(DataQualityLog).order_by(DataQualityLog.id)).all())


def test_real_funding_files_twice_leave_one_row_per_key(engine, shared):
    expected = 0
    for path in shared.funding_files:
        report = ingest_file(engine, "funding", path, exchange="binance")
        rows = len(pd.read_parquet(path))
        assert (report.rows_read, report.inserted, report.updated, report.rejected) == (
            rows, rows, 0, 0)
        expected += rows
    for path in shared.funding_files:
        again = ingest_file(engine, "funding", path, exchange="binance")
        assert (again.inserted, again.updated, again.unchanged) == (0, 0, again.rows_read)
    with engine.connect() as conn:
        keys = conn.execute(text(
            "SELECT count(*) FROM (SELECT DISTINCT exchange, symbol, timestamp "
            "FROM funding_rates) k")).scalar_one()
        symbols = {r[0] for r in conn.execute(select(FundingRate.symbol).distinct())}
        xrp = [r[0] for r in conn.execute(
            select(FundingRate.timestamp).where(FundingRate.symbol == "XRP/USDT"))]
    assert _count(engine, FundingRate) == keys == expected
    assert symbols == {"BTC/USDT", "ETH/USDT", "LTC/USDT", "XRP/USDT"}
    # the XRP file carries 1-20 ms of exchange jitter: stored on the whole minute
    assert all(t.second == 0 and t.microsecond == 0 for t in xrp)


def test_liquidation_event_sample_loads_with_side_and_size(engine, shared):
    raw = pd.read_parquet(shared.liquidation_events)
    report = ingest_file(engine, "liquidations", shared.liquidation_events, exchange="binance")
    assert (report.inserted, report.rejected) == (len(raw), 0)
    with engine.connect() as conn:
        stored = pd.DataFrame(conn.execute(select(
            Liquidation.timestamp, Liquidation.symbol, Liquidation.side, Liquidation.price,
            Liquidation.quantity, Liquidation.size_usd, Liquidation.liquidation_type)).all())
    sides = stored.side.value_counts().to_dict()
    # SELL forced orders liquidate longs, BUY ones shorts
    assert sides == {"long": int((raw.side == "SELL").sum()),
                     "short": int((raw.side == "BUY").sum())}
    assert {"SOL/USDT", "XRP/USDC", "1000PEPE/USDT", "币安人生/USDT"} <= set(stored.symbol)
    pairs = raw.symbol.str.replace(r"(USDT|USDC)$", r"/\1", regex=True)
    merged = raw.assign(symbol=pairs).merge(stored, on=["symbol", "price", "quantity"],
                                            suffixes=("_raw", ""))
    assert len(merged) == len(raw)
    assert np.allclose(merged.size_usd, merged.usd_value, rtol=0, atol=1e-9)
    assert (merged.timestamp == merged.timestamp_raw).all()
    assert set(stored.liquidation_type) == {"single", "cascade"}
    again = ingest_file(engine, "liquidations", shared.liquidation_events, exchange="binance")
    assert (again.inserted, again.updated) == (0, 0)


def test_changed_value_is_updated_and_counted(engine, shared, tmp_path):
    ingest_file(engine, "funding", shared.xrp_funding, exchange="binance")
    df = pd.read_parquet(shared.xrp_funding)
    df.loc[[3, 40], "funding_rate"] = [0.00077, -0.00033]
    changed = tmp_path / shared.xrp_funding.name
    df.to_parquet(changed)
    report = ingest_file(engine, "funding", changed, exchange="binance")
    assert (report.inserted, report.updated, report.unchanged) == (0, 2, len(df) - 2)
    with engine.connect() as conn:
        rates = dict(conn.execute(select(FundingRate.timestamp, FundingRate.funding_rate)).all())
    assert rates[df.timestamp[3].round("min").to_pydatetime()] == 0.00077
    assert rates[df.timestamp[40].round("min").to_pydatetime()] == -0.00033
    assert _count(engine, FundingRate) == len(df)


def test_failed_load_leaves_the_table_as_it_was(engine, shared):
    """The database refuses the last row (CHECK quantity > 0) after the others were sent:
    no row of the batch, no update and no quality-log entry may remain."""
    ingest_file(engine, "liquidations", shared.liquidation_events, exchange="binance")
    before = _count(engine, Liquidation)
    batch = prepare_file("liquidations", shared.liquidation_events, exchange="binance")
    frame = batch.frame.copy()
    frame["size_usd"] = frame["size_usd"] * 2  # would update every existing row
    extra = frame.iloc[:5].assign(timestamp=frame.timestamp.iloc[:5] + pd.Timedelta("1s"))
    extra.loc[extra.index[-1], "quantity"] = -1.0  # bypasses validation: the DB refuses it
    bad = PreparedBatch("liquidations", "liquidations", "bad-batch", pd.concat(
        [frame, extra], ignore_index=True), len(frame) + 5, batch.rejections)
    logs_before = len(_logs(engine))
    with pytest.raises(IntegrityError):
        load_batch(engine, bad)
    assert _count(engine, Liquidation) == before
    with engine.connect() as conn:
        total = conn.execute(select(func.sum(Liquidation.size_usd))).scalar_one()
    assert total == pytest.approx(float(batch.frame.size_usd.sum()))
    assert len(_logs(engine)) == logs_before


def test_bad_rows_are_rejected_logged_and_good_rows_load(engine, tmp_path):
    path = tmp_path / "binance-usdm_ALL_liquidation-events_20240101-20240101.csv"
    pd.DataFrame({
        "timestamp": ["2024-01-01T00:00:00.100Z", "2024-01-01T00:00:01Z", "2024-01-01T00:00:02Z",
                      "2024-01-01T00:00:03Z", "not a time", "2024-01-01T00:00:05Z"],
        "symbol": ["BTCUSDT", "BTCUSDT", "ETHUSDT", "ETHUSDT", "ETHUSDT", "ALL"],
        "side": ["SELL", "BUY", "HOLD", "SELL", "SELL", "SELL"],
        "price": [42000.0, 42001.0, 2300.0, 2301.0, 2302.0, 1.0],
        "quantity": [0.5, -0.1, 1.0, 2.0, 1.0, 1.0],
    }).to_csv(path, index=False)
    report = ingest_file(engine, "liquidations", path)
    assert (report.rows_read, report.inserted, report.rejected) == (6, 2, 4)
    rules = {r.row: r.rule for r in report.rejections}
    assert rules == {1: "negative_quantity", 2: "unknown_side", 4: "bad_timestamp",
                     5: "unknown_symbol"}
    logs = _logs(engine)
    assert {(log.issue_type, log.severity) for log in logs} == {
        (rule, "critical") for rule in rules.values()}
    neg = next(log for log in logs if log.issue_type == "negative_quantity")
    assert neg.details["file"] == str(path) and neg.details["row"] == 1
    assert neg.details["column"] == "quantity" and neg.details["value"] == -0.1
    assert neg.symbol == "BTC/USDT"
    with engine.connect() as conn:
        loaded = conn.execute(select(Liquidation.symbol, Liquidation.side, Liquidation.size_usd)
                              .order_by(Liquidation.timestamp)).all()
    assert [tuple(r) for r in loaded] == [("BTC/USDT", "long", 21000.0),
                                          ("ETH/USDT", "long", 4602.0)]


def test_nan_funding_rate_is_rejected(engine, shared, tmp_path):
    df = pd.read_parquet(shared.xrp_funding)
    df.loc[7, "funding_rate"] = np.nan
    df.loc[8, "funding_rate"] = 1.5  # a percent mistaken for a fraction
    path = tmp_path / shared.xrp_funding.name
    df.to_parquet(path)
    report = ingest_file(engine, "funding", path)
    assert (report.inserted, report.rejected) == (len(df) - 2, 2)
    assert [(r.row, r.rule) for r in report.rejections] == [(7, "nan_rate"),
                                                            (8, "rate_out_of_range")]
    nan_log = next(log for log in _logs(engine) if log.issue_type == "nan_rate")
    assert nan_log.details["value"] == "nan" and nan_log.symbol == "XRP/USDT"


def test_unusable_file_raises_one_line_error_and_stores_nothing(engine, shared, tmp_path):
    ingest_file(engine, "funding", shared.xrp_funding)
    before = _count(engine, FundingRate)
    path = tmp_path / "binance-usdm_XRPUSDT_funding_x.parquet"
    pd.read_parquet(shared.xrp_funding).rename(columns={"funding_rate": "rate"}).to_parquet(path)
    with pytest.raises(DataValidationError) as err:
        ingest_file(engine, "funding", path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    assert "funding_rate" in message and "[rule: missing_column]" in message
    assert _count(engine, FundingRate) == before
    assert [log.issue_type for log in _logs(engine)] == ["missing_column"]


def test_naive_timestamps_are_refused(engine, tmp_path):
    path = tmp_path / "sentiment.csv"
    pd.DataFrame({"timestamp": ["2024-01-01 00:00:00"], "symbol": ["BTC"], "source": ["x"],
                  "score": [0.1], "n_items": [3]}).to_csv(path, index=False)
    with pytest.raises(DataValidationError, match="timestamp_timezone"):
        ingest_file(engine, "sentiment", path)


def test_sentiment_and_open_interest_files(engine, shared, tmp_path):
    path = tmp_path / "sentiment.csv"
    pd.DataFrame({
        "timestamp": ["2024-03-01T00:00:00Z", "2024-03-01T01:00:00Z", "2024-03-01T01:00:00Z",
                      "2024-03-01T02:00:00Z"],
        "symbol": ["BTC/USDT", "BTC/USDT", "ETHUSDT", "BTC/USDT"],
        "source": ["reddit", "reddit", "reddit", "news"],
        "score": [0.25, -0.5, 1.5, 0.0],
        "n_items": [120, 80, 10, 7],
    }).to_csv(path, index=False)
    report = ingest_file(engine, "sentiment", path)
    assert (report.inserted, report.rejected) == (3, 1)
    assert report.rejections[0].rule == "score_out_of_range"
    oi = ingest_file(engine, "open-interest", shared.open_interest, exchange="aggregate",
                     symbol="BTC/USDT")
    assert (oi.inserted, oi.rejected) == (len(pd.read_parquet(shared.open_interest)), 0)


def test_duplicate_keys_in_a_file_keep_the_last_row(engine, tmp_path):
    path = tmp_path / "binance-usdm_BTCUSDT_funding_dup.csv"
    pd.DataFrame({"timestamp": ["2024-01-01T00:00:00.012Z", "2024-01-01T00:00:00Z",
                                "2024-01-01T08:00:00Z"],
                  "funding_rate": [0.0001, 0.0002, 0.0003]}).to_csv(path, index=False)
    report = ingest_file(engine, "funding", path)
    assert (report.inserted, report.duplicates) == (2, 1)
    with engine.connect() as conn:
        first = conn.execute(select(FundingRate.funding_rate).order_by(FundingRate.timestamp)
                             ).scalars().first()
    assert first == 0.0002
    assert [(log.issue_type, log.severity) for log in _logs(engine)] == [
        ("duplicate_key", "warning")]


def test_db_quality_sink_takes_ohlcv_findings(engine, tmp_path):
    path = tmp_path / "candles.csv"
    pd.DataFrame({"timestamp": ["2024-01-01T00:00:00Z", "2024-01-01T00:05:00Z"],
                  "open": [1.0, 1.0], "high": [1.0, 0.5], "low": [1.0, 1.0],
                  "close": [1.0, 1.0], "volume": [1.0, 1.0]}).to_csv(path, index=False)
    with pytest.raises(DataValidationError):
        load_ohlcv(path, symbol="BTC/USDT", sink=DbQualitySink(engine))
    [log] = _logs(engine)
    assert (log.issue_type, log.severity, log.symbol) == ("high_ge_low", "critical", "BTC/USDT")
    assert log.details["row"] == 1


def test_executemany_path_counts_like_the_bulk_path(engine, shared):
    """The portable path (SQLite's, and Postgres without psycopg2) reports the same counts."""
    from huracan.db.upsert import executemany_upsert, upsert_frame

    frame = prepare_file("liquidations", shared.liquidation_events).frame
    changed = frame.copy()
    changed.loc[:9, "size_usd"] += 1.0
    with engine.begin() as conn:
        assert executemany_upsert(conn, "liquidations", frame) == (len(frame), 0)
    with engine.begin() as conn:
        assert executemany_upsert(conn, "liquidations", changed) == (0, 10)
    with engine.begin() as conn:  # the dialect's default path sees nothing left to change
        assert upsert_frame(conn, "liquidations", changed) == (0, 0)
