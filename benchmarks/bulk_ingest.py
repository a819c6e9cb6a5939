"""Bulk ingest benchmark: 1,000,000 liquidation rows into Postgres, COPY path vs executemany.

    .venv/bin/python benchmarks/bulk_ingest.py [--rows 1000000] [--executemany-rows 100000]
        [--pg-url postgresql+psycopg2://postgres@127.0.0.1:5432/postgres] [--repeats 3]
        [--skip-old]

Data: seeded (numpy PCG64, ``--seed``), time-ordered liquidation events over two months for 300
symbols with Zipf-like activity, log-normal prices and sizes, 70 % longs; ``liquidation_type``
from the ingest's cascade rule. The frame is validated once, outside the timings.

Paths timed (each load on a freshly created database migrated to head; the median of
``--repeats`` runs is reported, the new and the old bulk path alternating within each run):

- **bulk**: :func:`huracan.data.ingest.load_batch`, the production path, end to end, on a psycopg
  3 connection: monthly partitions in a short transaction; then in the load's transaction a
  ``SHARE ROW EXCLUSIVE`` lock, the existence check of the batch's time range, and psycopg 3
  binary COPY (``set_types``/``write_row``) straight into the table (the range is empty), counts
  included; commit. Where the time goes (median): prepare (sort), lock_check, copy (Python
  conversion + ``write_row`` + server-side insert; the Python conversion alone is timed apart,
  nothing sent), rest (connection, partitions, quality log, commit). All ``--rows`` rows.
- **bulk, re-load**: the same rows again (every key exists, nothing changes): COPY into a
  temporary staging table, ``UPDATE ... FROM`` (0 rows) and ``INSERT ... WHERE NOT EXISTS``.
- **old bulk** (``--skip-old`` leaves it out): the previous path, kept in
  ``benchmarks/legacy_copy_upsert.py``: hand-written binary COPY encoder through psycopg2 into a
  temporary table, one ``INSERT ... ON CONFLICT DO UPDATE``; first load and re-load.
- **executemany**: psycopg2 ``cursor.executemany`` of the same ``INSERT ... ON CONFLICT``, one
  transaction. Timed on ``--executemany-rows`` rows and extrapolated (rows/s), because it is
  slow: the output says so.
- **sqlalchemy executemany**: :func:`huracan.db.upsert.executemany_upsert` (SQLAlchemy batches
  psycopg2 executemany into multi-row VALUES), for reference.

Prints rows/s for each path, the bulk/executemany ratio and the machine; writes JSON to
``benchmarks/results/bulk_ingest.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from huracan.data.ingest import PreparedBatch, load_batch, prepare_frame
from huracan.db import migrate
from huracan.db.partitions import ensure_liquidation_partitions
from huracan.db.session import make_engine, safe_url
from huracan.db.upsert import executemany_upsert

sys.path.insert(0, str(Path(__file__).resolve().parent))
from legacy_copy_upsert import legacy_copy_upsert

DEFAULT_PG = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
RESULTS = Path(__file__).resolve().parent / "results" / "bulk_ingest.json"
COLUMNS = ["timestamp", "exchange", "symbol", "side", "price", "quantity", "size_usd",
           "liquidation_type"]


def generate(n: int, seed: int) -> pd.DataFrame:
    """``n`` realistic Binance forceOrder events in the raw file format (``timestamp, symbol,
    side, price, quantity, usd_value``; ``side`` is the ORDER side, BUY/SELL)."""
    rng = np.random.default_rng(seed)
    n_symbols = 300
    weights = 1.0 / np.arange(1, n_symbols + 1) ** 1.1  # a few symbols dominate
    sym_idx = rng.choice(n_symbols, size=n, p=weights / weights.sum())
    symbols = np.array([f"SYM{i:03d}USDT" for i in range(n_symbols)])
    symbols[:3] = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    base_price = np.exp(rng.uniform(np.log(0.001), np.log(60_000), n_symbols))
    base_price[:3] = [60_000.0, 3_000.0, 150.0]
    start = pd.Timestamp("2024-03-01", tz="UTC").value // 1_000_000  # ms
    span_ms = 61 * 24 * 3600 * 1000  # March and April: two monthly partitions
    ts_ms = np.sort(rng.integers(start, start + span_ms, size=n))
    price = np.round(base_price[sym_idx] * np.exp(rng.normal(0, 0.05, n)), 6)
    size_usd_target = np.exp(rng.normal(np.log(2_000), 1.5, n))
    quantity = np.round(size_usd_target / price, 3)
    quantity = np.where(quantity <= 0, 0.001, quantity)
    return pd.DataFrame({
        "timestamp": pd.to_datetime(ts_ms, unit="ms", utc=True),
        "symbol": symbols[sym_idx],
        "side": np.where(rng.random(n) < 0.7, "SELL", "BUY"),  # SELL: a long liquidated
        "price": price,
        "quantity": quantity,
        "usd_value": price * quantity,
    })


@contextmanager
def fresh_database(admin_url: str) -> Iterator[Engine]:
    """A new database on the server of ``admin_url``, migrated to head; dropped afterwards."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"huracan_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine = make_engine(make_url(admin_url).set(database=name).render_as_string(
        hide_password=False))
    try:
        migrate.upgrade(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def checkpoint(engine: Engine) -> None:
    """Flush the WAL of earlier runs before timing (needs superuser; skipped otherwise), so that
    one path does not pay for the checkpoint another one caused."""
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("CHECKPOINT")
    except Exception:  # not a superuser: time without it
        pass


def batch_of(frame: pd.DataFrame) -> PreparedBatch:
    return PreparedBatch("liquidations", "liquidations", "benchmark", frame, len(frame))


class TimingLog(logging.Handler):
    """Collects the step timings :func:`huracan.db.upsert.copy_upsert` logs (DEBUG)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.timings: list[dict[str, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        timings = getattr(record, "huracan_timings", None)
        if timings:
            self.timings.append(dict(timings))


def _legacy_load(engine: Engine, frame: pd.DataFrame) -> tuple[int, int]:
    """What ``load_batch`` did before: partitions from every timestamp, then the old upsert."""
    with engine.begin() as conn:
        ensure_liquidation_partitions(conn, frame["timestamp"])
    with engine.begin() as conn:
        return legacy_copy_upsert(conn, "liquidations", frame)


def time_bulk(admin_url: str, frame: pd.DataFrame, *, old: bool = False
              ) -> tuple[float, float, dict[str, float]]:
    """Seconds for the first load and for the idempotent re-load of ``frame`` (the new path, or
    the ``old`` one), and where the new path's first load spent its time."""
    timings = TimingLog()
    logger = logging.getLogger("huracan.db.upsert")
    logger.addHandler(timings)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        with fresh_database(admin_url) as engine:
            checkpoint(engine)
            t0 = time.perf_counter()
            if old:
                first = _legacy_load(engine, frame)
            else:
                report = load_batch(engine, batch_of(frame))
                first = (report.inserted, report.updated)
            t1 = time.perf_counter()
            if old:
                again = _legacy_load(engine, frame)
            else:
                report = load_batch(engine, batch_of(frame))
                again = (report.inserted, report.updated)
            t2 = time.perf_counter()
            assert first == (len(frame), 0), first
            assert again == (0, 0), again
            with engine.connect() as conn:
                assert conn.execute(text("SELECT count(*) FROM liquidations")
                                    ).scalar_one() == len(frame)
    finally:
        logger.removeHandler(timings)
        logger.setLevel(level)
    split: dict[str, float] = {}
    if timings.timings:
        split = dict(timings.timings[0])
        split["rest_s"] = (t1 - t0) - sum(split.values())
    return t1 - t0, t2 - t1, split


def time_conversion(frame: pd.DataFrame) -> float:
    """Seconds the new path spends on the Python side of the COPY: sorting and turning the
    columns into the row tuples ``write_row`` takes (nothing sent)."""
    from huracan.db.tables import Base
    from huracan.db.upsert import _rows, _sort_order, _wire_type, categorical_text

    table = Base.metadata.tables["liquidations"]
    t0 = time.perf_counter()
    f = categorical_text(frame)
    order = _sort_order(f, ["symbol", "timestamp"])
    for _ in _rows(f, [_wire_type(table.c[c].type) for c in f.columns], order):
        pass
    return time.perf_counter() - t0


def time_plain_executemany(admin_url: str, frame: pd.DataFrame) -> float:
    """Seconds for psycopg2 ``cursor.executemany`` of the upsert, one transaction."""
    sql = (
        "INSERT INTO liquidations (\"timestamp\", exchange, symbol, side, price, quantity, "
        "size_usd, liquidation_type) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (symbol, \"timestamp\", exchange, side, price, quantity) DO UPDATE SET "
        "size_usd = EXCLUDED.size_usd, liquidation_type = EXCLUDED.liquidation_type WHERE "
        "ROW(liquidations.size_usd, liquidations.liquidation_type) IS DISTINCT FROM "
        "ROW(EXCLUDED.size_usd, EXCLUDED.liquidation_type)")
    with fresh_database(admin_url) as engine:
        with engine.begin() as conn:
            ensure_liquidation_partitions(conn, frame["timestamp"])
        checkpoint(engine)
        raw = engine.raw_connection()
        try:
            t0 = time.perf_counter()
            stamps = [t.to_pydatetime() for t in frame["timestamp"]]
            rows = list(zip(stamps, *(frame[c].tolist() for c in COLUMNS[1:]), strict=True))
            with raw.cursor() as cur:
                cur.executemany(sql, rows)
            raw.commit()
            return time.perf_counter() - t0
        finally:
            raw.close()


def time_sqlalchemy_executemany(admin_url: str, frame: pd.DataFrame) -> float:
    with fresh_database(admin_url) as engine:
        with engine.begin() as conn:
            ensure_liquidation_partitions(conn, frame["timestamp"])
        checkpoint(engine)
        t0 = time.perf_counter()
        with engine.begin() as conn:
            inserted, _ = executemany_upsert(conn, "liquidations", frame)
        elapsed = time.perf_counter() - t0
        assert inserted == len(frame)
        return elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--executemany-rows", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3, help="bulk runs (median reported)")
    ap.add_argument("--seed", type=int, default=20251122)
    ap.add_argument("--pg-url", default=os.environ.get("HURACAN_TEST_PG_URL", DEFAULT_PG),
                    help="a Postgres server where databases may be created")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--skip-old", action="store_true",
                    help="do not time the previous bulk path (benchmarks/legacy_copy_upsert.py)")
    args = ap.parse_args(argv)

    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, Python "
          f"{platform.python_version()}, load average {os.getloadavg()[0]:.2f} (1 min)")
    eng = create_engine(args.pg_url)
    with eng.connect() as conn:
        server = conn.execute(text("SELECT version()")).scalar_one().split(" on ")[0]
    eng.dispose()
    print(f"server: {server} at {safe_url(args.pg_url)}")

    t0 = time.perf_counter()
    raw = generate(args.rows, args.seed)
    t1 = time.perf_counter()
    batch = prepare_frame("liquidations", raw, "benchmark", exchange="binance")
    frame = batch.frame
    validate_s = time.perf_counter() - t1
    print(f"generated {len(raw):,} raw liquidation events (seed {args.seed}, "
          f"{raw.symbol.nunique()} symbols, {raw.timestamp.min():%Y-%m-%d} .. "
          f"{raw.timestamp.max():%Y-%m-%d}) in {t1 - t0:.1f} s; validated in {validate_s:.1f} s "
          f"(not in the load timings): {len(frame):,} rows, {len(batch.rejections)} rejected, "
          f"{len(batch.duplicates)} duplicates, "
          f"{int((frame.liquidation_type == 'cascade').sum()):,} in cascades")

    firsts, reloads, splits, loads = [], [], [], []
    old_firsts, old_reloads = [], []
    for i in range(args.repeats):
        # alternate which path goes first, so that neither always meets the other's WAL
        order = [False, True] if i % 2 == 0 else [True, False]
        for old in order:
            if old and args.skip_old:
                continue
            load_avg = os.getloadavg()[0]
            first, again, split = time_bulk(args.pg_url, frame, old=old)
            name = "old bulk" if old else "bulk"
            print(f"  run {i + 1} {name:8s}: load {first:.2f} s ({len(frame) / first:,.0f} "
                  f"rows/s), re-load {again:.2f} s ({len(frame) / again:,.0f} rows/s)"
                  + ("" if old else "  [" + ", ".join(f"{k[:-2]} {v:.2f} s"
                                                       for k, v in split.items()) + "]")
                  + f"  (load average {load_avg:.2f})")
            if old:
                old_firsts.append(first)
                old_reloads.append(again)
            else:
                firsts.append(first)
                reloads.append(again)
                splits.append(split)
                loads.append(load_avg)
    bulk_s = statistics.median(firsts)
    reload_s = statistics.median(reloads)
    bulk_rate = len(frame) / bulk_s
    reload_rate = len(frame) / reload_s
    breakdown = {k: statistics.median(s[k] for s in splits) for k in splits[0]} if splits[0] \
        else {}
    convert_s = statistics.median(time_conversion(frame) for _ in range(3))

    subset = frame.iloc[: args.executemany_rows]
    em_s = time_plain_executemany(args.pg_url, subset)
    em_rate = len(subset) / em_s
    sa_s = time_sqlalchemy_executemany(args.pg_url, subset)
    sa_rate = len(subset) / sa_s

    ratio = bulk_rate / em_rate
    print()
    print(f"bulk (locked psycopg 3 COPY), {len(frame):,} rows, median of {args.repeats}: "
          f"{bulk_s:.2f} s = {bulk_rate:,.0f} rows/s  (median split: "
          + ", ".join(f"{k[:-2]} {v:.2f} s" for k, v in breakdown.items())
          + f"; Python-side conversion alone {convert_s:.2f} s)")
    print(f"bulk re-load (all keys exist, unchanged):        {reload_s:.2f} s = "
          f"{reload_rate:,.0f} rows/s")
    old_rate = old_reload_rate = None
    if old_firsts:
        old_rate = len(frame) / statistics.median(old_firsts)
        old_reload_rate = len(frame) / statistics.median(old_reloads)
        print(f"old bulk (own encoder + INSERT ON CONFLICT), median of {len(old_firsts)}: "
              f"{statistics.median(old_firsts):.2f} s = {old_rate:,.0f} rows/s; re-load "
              f"{old_reload_rate:,.0f} rows/s; new / old: {bulk_rate / old_rate:.2f}x")
    print(f"plain executemany (psycopg2), timed on {len(subset):,} rows, extrapolated: "
          f"{em_s:.2f} s = {em_rate:,.0f} rows/s (1M rows ~ {args.rows / em_rate:,.0f} s)")
    print(f"sqlalchemy executemany (multi-row VALUES), {len(subset):,} rows: {sa_s:.2f} s = "
          f"{sa_rate:,.0f} rows/s")
    print(f"bulk / plain executemany: {ratio:.1f}x  (targets: >= 10x and >= 300,000 rows/s "
          f"end to end: {'met' if ratio >= 10 and bulk_rate >= 300_000 else 'NOT met'})")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "rows": len(frame), "seed": args.seed, "repeats": args.repeats,
        "validate_seconds": validate_s,
        "bulk_seconds": firsts, "bulk_rows_per_s": bulk_rate,
        "bulk_breakdown_seconds": breakdown, "python_conversion_seconds": convert_s,
        "bulk_load_averages": loads,
        "reload_seconds": reloads, "reload_rows_per_s": reload_rate,
        "old_bulk_seconds": old_firsts, "old_bulk_rows_per_s": old_rate,
        "old_reload_seconds": old_reloads, "old_reload_rows_per_s": old_reload_rate,
        "executemany_rows": len(subset), "executemany_seconds": em_s,
        "executemany_rows_per_s": em_rate, "sqlalchemy_executemany_seconds": sa_s,
        "sqlalchemy_executemany_rows_per_s": sa_rate, "ratio": ratio,
        "cpu_count": os.cpu_count(), "server": server,
    }, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
