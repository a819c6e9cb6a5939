"""Postgres only: liquidations are routed to monthly partitions created on demand."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest
from sqlalchemy import insert, text

from huracan.data.ingest import ingest_file
from huracan.db.partitions import ensure_liquidation_partitions, existing_partitions
from huracan.db.queries import liquidation_frame
from huracan.db.tables import Liquidation

pytestmark = pytest.mark.postgres


def _where(engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT tableoid::regclass::text, count(*) FROM liquidations GROUP BY 1")).all()
    return {name: n for name, n in rows}


def test_events_land_in_their_monthly_partition(pg_engine, shared):
    report = ingest_file(pg_engine, "liquidations", shared.liquidation_events)
    assert report.partitions_created == ("liquidations_p202510",)
    assert _where(pg_engine) == {"liquidations_p202510": report.inserted}
    again = ingest_file(pg_engine, "liquidations", shared.liquidation_events)
    assert again.partitions_created == ()
    with pg_engine.connect() as conn:
        plan = "\n".join(r[0] for r in conn.execute(text(
            "EXPLAIN SELECT * FROM liquidations WHERE symbol = 'SOL/USDT' "
            "AND timestamp >= '2025-10-01Z' AND timestamp < '2025-11-01Z'")))
    assert "liquidations_p202510" in plan and "liquidations_default" not in plan


def test_rows_in_the_default_partition_move_when_their_month_is_created(pg_engine, tmp_path):
    jan = datetime(2024, 1, 15, tzinfo=UTC)
    with pg_engine.begin() as conn:  # written without creating a partition first
        conn.execute(insert(Liquidation), [{
            "timestamp": jan, "exchange": "binance", "symbol": "BTC/USDT", "side": "long",
            "price": 42000.0, "quantity": 0.1, "size_usd": 4200.0}])
    assert _where(pg_engine) == {"liquidations_default": 1}

    path = tmp_path / "binance-usdm_ALL_liquidation-events_x.csv"
    pd.DataFrame({"timestamp": ["2024-01-20T00:00:00Z", "2024-03-02T00:00:00Z"],
                  "symbol": ["BTCUSDT", "ETHUSDT"], "side": ["BUY", "SELL"],
                  "price": [43000.0, 3400.0], "quantity": [0.2, 1.0]}).to_csv(path, index=False)
    report = ingest_file(pg_engine, "liquidations", path)
    assert report.partitions_created == ("liquidations_p202401", "liquidations_p202403")
    assert _where(pg_engine) == {"liquidations_p202401": 2, "liquidations_p202403": 1}
    january = liquidation_frame(pg_engine, "BTC/USDT", "2024-01-01T00:00Z", "2024-02-01T00:00Z")
    assert len(january) == 2


def test_ensure_partitions_is_idempotent(pg_engine):
    stamps = pd.to_datetime(["2023-12-31 23:59:59.999", "2024-01-01 00:00:00.000"], utc=True)
    with pg_engine.begin() as conn:
        assert ensure_liquidation_partitions(conn, stamps) == [
            "liquidations_p202312", "liquidations_p202401"]
        assert ensure_liquidation_partitions(conn, stamps) == []
        assert existing_partitions(conn) == [
            "liquidations_default", "liquidations_p202312", "liquidations_p202401"]
