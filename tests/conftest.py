"""Shared fixtures: real candles from ../shared/data, the shipped sample, and brain-store databases.

Database fixtures: every store test runs on SQLite and on Postgres. Postgres is the real server
named by ``HURACAN_TEST_PG_URL`` (``.ci/run`` sets it); each test gets a freshly created database
that is dropped afterwards. Without the variable the Postgres variants are SKIPPED with the reason
(``-ra`` lists them); with the variable set and the server not answering they FAIL with the
reason, so a run whose Postgres is down never passes by skipping its Postgres tests.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL, make_url

from huracan.db import migrate
from huracan.db.session import make_engine
from huracan.secrets import mask_url

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SAMPLE = REPO / "huracan" / "datasets" / "binance-spot_BTCUSDT_5m_20240101-20240906.parquet"
PG_ENV = "HURACAN_TEST_PG_URL"
SPOT_1H = SHARED_DATA / "ohlcv" / "binance-spot_BTCUSDT_1h_20180101-20241231.parquet"


@pytest.fixture(scope="session")
def sample_path() -> Path:
    return SAMPLE


@pytest.fixture(scope="session")
def candles_1h() -> pd.DataFrame:
    """Real BTC/USDT 1h spot candles (2018-2024, with the exchange's gaps left in)."""
    if not SPOT_1H.exists():
        pytest.skip(f"{SPOT_1H} not found (../shared/data is expected beside the checkout)")
    return pd.read_parquet(SPOT_1H)


@pytest.fixture(scope="session")
def sample_1h() -> pd.DataFrame:
    """The shipped 5m sample resampled to complete 1h bars."""
    from huracan.data.ohlcv import load_ohlcv

    df, _ = load_ohlcv(SAMPLE, "1h")
    return df


@functools.cache
def _pg_admin() -> tuple[URL | None, str]:
    """The admin URL of the test server, or ``None`` and why not (password masked)."""
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
    except Exception as exc:  # any failure to reach the server: its first line, masked
        first = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""])[0]
        return None, (f"{PG_ENV} is set but Postgres at {url.render_as_string()} does not "
                      f"answer: {type(exc).__name__}: {mask_url(first)}")
    return url, ""


def require_pg_admin() -> URL:
    """The test server's admin URL. Skips the test when ``HURACAN_TEST_PG_URL`` is unset; FAILS
    it (no traceback, the reason) when the variable is set and the server does not answer."""
    admin, reason = _pg_admin()
    if admin is None:
        if os.environ.get(PG_ENV):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return admin


@pytest.fixture(scope="session")
def pg_admin() -> URL:
    """:func:`require_pg_admin` as a fixture."""
    return require_pg_admin()


@pytest.fixture()
def fresh_pg_url(pg_admin: URL) -> Iterator[str]:
    """A freshly created, empty Postgres database; dropped after the test."""
    admin = pg_admin
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
