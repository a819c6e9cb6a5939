"""Fixtures for the brain-store tests: every store test runs on SQLite and on Postgres.

Postgres is the real server named by ``HURACAN_TEST_PG_URL`` (``.ci/run`` sets it); each test
gets a freshly created database that is dropped afterwards. Without the variable, or when the
server does not answer, the Postgres variants are SKIPPED with the reason (``-ra`` lists them).
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL, make_url

from huracan.db import migrate
from huracan.db.session import make_engine

PG_ENV = "HURACAN_TEST_PG_URL"
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
FUNDING_FILES = sorted(SHARED_DATA.glob("derivatives/**/binance-usdm_*_funding_*.parquet"))
LIQUIDATION_EVENTS = (SHARED_DATA / "liquidations"
                      / "binance-usdm_ALL_liquidation-events_20251022-20251022.parquet")
OPEN_INTEREST = (SHARED_DATA / "derivatives"
                 / "unknown-agg_BTC_open-interest-1d_20190330-20241120.parquet")
XRP_FUNDING = (SHARED_DATA / "derivatives" / "freqtrade_testdata"
               / "binance-usdm_XRPUSDT_funding_20211118-20211218.parquet")


@functools.cache
def _pg_admin() -> tuple[URL | None, str]:
    """The admin URL of the test server, or ``None`` and why not."""
    raw = os.environ.get(PG_ENV)
    if not raw:
        return None, f"{PG_ENV} is not set (.ci/run sets it; see README)"
    url = make_url(raw)
    try:
        eng = create_engine(url, isolation_level="AUTOCOMMIT",
                            connect_args={"connect_timeout": 5})
        with eng.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        eng.dispose()
    except Exception as exc:  # any failure to reach the server means: skip, with the reason
        return None, f"Postgres at {url.render_as_string()} unreachable: {type(exc).__name__}"
    return url, ""


class SharedData:
    """Paths of the real files in ../shared/data used by the store tests."""

    funding_files = FUNDING_FILES
    liquidation_events = LIQUIDATION_EVENTS
    open_interest = OPEN_INTEREST
    xrp_funding = XRP_FUNDING


@pytest.fixture(scope="session")
def shared() -> type[SharedData]:
    """The real data files; the test is skipped when ../shared/data is not beside the checkout."""
    missing = [p for p in (LIQUIDATION_EVENTS, OPEN_INTEREST, XRP_FUNDING) if not p.exists()]
    if missing or len(FUNDING_FILES) < 4:
        pytest.skip(f"{SHARED_DATA} not found (../shared/data is expected beside the checkout)")
    return SharedData


@pytest.fixture()
def fresh_pg_url() -> Iterator[str]:
    """A freshly created, empty Postgres database; dropped after the test."""
    admin, reason = _pg_admin()
    if admin is None:
        pytest.skip(reason)
    name = f"huracan_test_{uuid.uuid4().hex[:12]}"
    eng = create_engine(admin, isolation_level="AUTOCOMMIT")
    with eng.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with eng.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        eng.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL: a new SQLite file, or a new Postgres database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'brain.db'}"
    else:
        yield request.getfixturevalue("fresh_pg_url")


@pytest.fixture()
def engine(db_url: str) -> Iterator[Engine]:
    """An Engine on a fresh database migrated to head."""
    eng = make_engine(db_url)
    migrate.upgrade(eng)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture()
def pg_engine(fresh_pg_url: str) -> Iterator[Engine]:
    """Postgres only: an Engine on a fresh database migrated to head."""
    eng = make_engine(fresh_pg_url)
    migrate.upgrade(eng)
    try:
        yield eng
    finally:
        eng.dispose()
