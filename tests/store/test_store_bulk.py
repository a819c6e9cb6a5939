"""The Postgres bulk path (huracan.db.upsert.copy_upsert through load_batch): psycopg 3 binary
COPY on a connection made from the psycopg2 engine's URL, straight into the table or through a
staging table; one transaction; unchanged rows not rewritten; concurrent loads serialised."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import IntegrityError, OperationalError

from huracan.data.ingest import PreparedBatch, ingest_file, load_batch, prepare_file, prepare_frame
from huracan.db import migrate
from huracan.db.session import make_engine
from huracan.db.tables import DataQualityLog, Liquidation, OpenInterest
from huracan.db.upsert import loader_engine, upsert_frame

SECRET = "s3cr3t-Pa55"


def _count(engine, model) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar_one()


def _versions(engine) -> dict[tuple, int]:
    """Row key -> xmin (the transaction that last wrote the row)."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT symbol, timestamp, side, price, quantity, xmin::text::bigint "
            "FROM liquidations")).all()
    return {tuple(r[:5]): r[5] for r in rows}


def _paths(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "huracan.db.upsert"]


def test_loader_engine_is_psycopg3_on_the_same_url():
    url = (f"postgresql+psycopg2://huracan:{SECRET}@db.internal:5433/brain"
           "?options=-csearch_path%3Dhuracan")
    engine = create_engine(url)
    loader = loader_engine(engine)
    assert loader.dialect.driver == "psycopg" and loader_engine(engine) is loader
    assert loader.url.set(drivername="postgresql+psycopg2") == engine.url
    assert loader.url.password == SECRET  # handed to libpq ...
    assert SECRET not in repr(loader) and SECRET not in str(loader.url)  # ... never shown
    lite = create_engine("sqlite://")
    assert loader_engine(lite) is lite


def test_load_errors_hold_no_password(caplog):
    engine = make_engine(f"postgresql+psycopg2://postgres:{SECRET}@127.0.0.1:1/nope")
    frame = pd.DataFrame({"timestamp": [pd.Timestamp("2024-01-01", tz="UTC")],
                          "exchange": ["binance"], "symbol": ["BTC/USDT"],
                          "funding_rate": [0.0001]})
    with caplog.at_level(logging.DEBUG), pytest.raises(OperationalError) as err:
        load_batch(engine, PreparedBatch("funding", "funding_rates", "x", frame, 1))
    assert SECRET not in str(err.value) and SECRET not in caplog.text


@pytest.mark.postgres
def test_copy_into_the_table_then_staging_updates_only_changes(pg_engine, shared, caplog):
    caplog.set_level(logging.DEBUG, logger="huracan.db.upsert")
    first = ingest_file(pg_engine, "liquidations", shared.liquidation_events, exchange="binance")
    assert (first.inserted, first.updated, first.unchanged) == (234, 0, 0)
    assert "(COPY into the table)" in _paths(caplog)[-1]
    before = _versions(pg_engine)
    again = ingest_file(pg_engine, "liquidations", shared.liquidation_events, exchange="binance")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 234)
    assert "(COPY into staging, UPDATE + INSERT)" in _paths(caplog)[-1]
    assert _versions(pg_engine) == before  # not one row rewritten

    batch = prepare_file("liquidations", shared.liquidation_events, exchange="binance")
    frame = batch.frame.copy()
    frame.loc[:9, "size_usd"] += 1.0
    new = frame.iloc[20:25].assign(quantity=frame.quantity.iloc[20:25] * 3)  # new keys
    mixed = PreparedBatch("liquidations", "liquidations", "mixed",
                          pd.concat([frame, new], ignore_index=True), len(frame) + 5)
    report = load_batch(pg_engine, mixed)
    assert (report.inserted, report.updated, report.unchanged) == (5, 10, 224)
    after = _versions(pg_engine)
    changed = {k for k in before if after[k] != before[k]}
    keys = {(r.symbol, r.timestamp.to_pydatetime(), r.side, r.price, r.quantity)
            for r in frame.iloc[:10].itertuples()}
    assert changed == keys and len(after) == 239
    with pg_engine.connect() as conn:
        total = conn.execute(select(func.sum(Liquidation.size_usd))).scalar_one()
    assert total == pytest.approx(float(frame.size_usd.sum() + new.size_usd.sum()))


@pytest.mark.postgres
@pytest.mark.parametrize("existing", [False, True], ids=["into-table", "through-staging"])
def test_refused_rows_leave_the_store_as_it_was(pg_engine, shared, existing):
    batch = prepare_file("liquidations", shared.liquidation_events, exchange="binance")
    if existing:
        load_batch(pg_engine, batch)
    before = _versions(pg_engine)
    logs = _count(pg_engine, DataQualityLog)
    for column, value in (("quantity", -1.0), ("size_usd", np.nan)):  # CHECK; NaN -> NULL
        frame = batch.frame.assign(size_usd=batch.frame.size_usd * 2)  # would update all
        frame.loc[frame.index[-1], column] = value
        bad = PreparedBatch("liquidations", "liquidations", "bad", frame, len(frame),
                            batch.rejections, batch.duplicates)
        with pytest.raises(IntegrityError):
            load_batch(pg_engine, bad)
        assert _versions(pg_engine) == before
        assert _count(pg_engine, DataQualityLog) == logs


@pytest.mark.postgres
def test_nan_in_a_nullable_column_is_stored_as_null(pg_engine):
    raw = pd.DataFrame({"timestamp": pd.date_range("2024-03-01", periods=4, freq="1D", tz="UTC"),
                        "open_interest": [1.0, np.nan, 3.0, np.nan],
                        "open_interest_usd": [np.nan, 20.0, 30.0, 40.0]})
    batch = prepare_frame("open-interest", raw, "oi", exchange="binance", symbol="BTC/USDT")
    assert load_batch(pg_engine, batch).inserted == 4
    changed = raw.assign(open_interest=[1.0, 2.0, np.nan, np.nan])  # two changes, via staging
    report = load_batch(pg_engine, prepare_frame("open-interest", changed, "oi",
                                                 exchange="binance", symbol="BTC/USDT"))
    assert (report.inserted, report.updated, report.unchanged) == (0, 2, 2)
    with pg_engine.connect() as conn:
        stored = conn.execute(select(OpenInterest.open_interest, OpenInterest.open_interest_usd)
                              .order_by(OpenInterest.timestamp)).all()
    assert [tuple(r) for r in stored] == [(1.0, None), (2.0, 20.0), (None, 30.0), (None, 40.0)]


@pytest.mark.postgres
def test_concurrent_loads_of_overlapping_batches(pg_engine, shared):
    """Two loaders at once, sharing 100 keys: the lock serialises them, the second sees the
    first's rows; no key error, no duplicate, every row inserted once."""
    frame = prepare_file("liquidations", shared.liquidation_events, exchange="binance").frame
    parts = [frame.iloc[:150], frame.iloc[50:]]
    start = threading.Barrier(2)
    reports, errors = [], []

    def load(part: pd.DataFrame) -> None:
        start.wait()
        try:
            reports.append(load_batch(pg_engine, PreparedBatch(
                "liquidations", "liquidations", "thread", part.reset_index(drop=True),
                len(part))))
        except Exception as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(p,)) for p in parts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(r.inserted for r in reports) in ([84, 150], [50, 184])  # who first
    assert sum(r.unchanged for r in reports) == 100
    assert _count(pg_engine, Liquidation) == 234


@pytest.mark.postgres
def test_a_psycopg2_connection_falls_back_to_executemany(pg_engine, shared, caplog):
    frame = prepare_file("liquidations", shared.liquidation_events, exchange="binance").frame
    with caplog.at_level(logging.WARNING), pg_engine.begin() as conn:
        assert upsert_frame(conn, "liquidations", frame) == (234, 0)
    assert "bulk COPY path not used (driver 'psycopg2'" in caplog.text


@pytest.mark.postgres
def test_schema_from_the_url_options(fresh_pg_url, shared):
    """``?options=-csearch_path=huracan`` reaches the psycopg 3 connection too."""
    admin = make_engine(fresh_pg_url)
    with admin.begin() as conn:
        conn.exec_driver_sql("CREATE SCHEMA huracan")
    admin.dispose()
    engine = make_engine(fresh_pg_url + "?options=-csearch_path%3Dhuracan")
    try:
        migrate.upgrade(engine)
        report = ingest_file(engine, "liquidations", shared.liquidation_events,
                             exchange="binance")
        assert report.inserted == 234
        with engine.connect() as conn:
            n = conn.exec_driver_sql("SELECT count(*) FROM huracan.liquidations").scalar_one()
            public = conn.execute(text(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename LIKE :name"), {"name": "liquidations%"}).scalar_one()
        assert (n, public) == (234, 0)
    finally:
        engine.dispose()
