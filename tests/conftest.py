"""Shared fixtures: real candles from ../shared/data, the shipped sample, and brain-store databases.

Database fixtures: every store test runs on SQLite and on Postgres. Postgres is the real server
named by ``HURACAN_TEST_PG_URL`` (``.ci/run`` sets it); each test gets a freshly created database
that is dropped afterwards. Without the variable the Postgres variants are SKIPPED with the reason
(``-ra`` lists them); with the variable set and the server not answering they FAIL with the
reason, so a run whose Postgres is down never passes by skipping its Postgres tests.

Migrated databases come from a template migrated once per session (per xdist worker): SQLite
copies the template file, Postgres runs ``CREATE DATABASE x TEMPLATE t`` (the template refuses
connections once migrated, so none can stay open and block the copy). A test that asks for
``engine`` (directly or through another fixture) gets its ``db_url`` already at head.

Test tiers: ``make test`` runs the fast tier (``-m "not slow"``), ``make test-all`` everything.
With ``--check-imports`` (``make test`` passes it) the session fails unless every module of
``huracan/`` was imported by the tests it ran (:mod:`tier_imports`; the fast tier must touch every
module, tests/unit/test_fast_tier_coverage.py tests the check itself).
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
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
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tier_imports beside this file
SHARED_DATA = REPO.parent / "shared" / "data"
SAMPLE = REPO / "huracan" / "datasets" / "binance-spot_BTCUSDT_5m_20240101-20240906.parquet"
PG_ENV = "HURACAN_TEST_PG_URL"
SPOT_1H = SHARED_DATA / "ohlcv" / "binance-spot_BTCUSDT_1h_20180101-20241231.parquet"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--check-imports", action="store_true", default=False,
                     help="fail the session unless its tests imported every module of huracan/ "
                          "(make test: the fast tier touches every module)")


def pytest_configure(config: pytest.Config) -> None:
    import tier_imports

    config.pluginmanager.register(tier_imports.ImportCheck(config), "huracan-import-check")


#: pytest-timeout's limit for a test marked slow (its module fixture may train a sweep first)
SLOW_TIMEOUT_S = 1800


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow tests get :data:`SLOW_TIMEOUT_S` unless they carry a timeout of their own."""
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT_S))


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


def _create_pg_database(admin: URL, template: str | None = None) -> str:
    """Create a uniquely named database on the test server (a copy of ``template`` when given);
    its name."""
    name = f"huracan_test_{uuid.uuid4().hex[:12]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    eng = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with eng.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"{copy}')
    finally:
        eng.dispose()
    return name


def _drop_pg_database(admin: URL, name: str) -> None:
    eng = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with eng.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        eng.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite brain store migrated to head once per session; tests copy the file."""
    path = tmp_path_factory.mktemp("template") / "brain.db"
    eng = make_engine(f"sqlite:///{path}")
    migrate.upgrade(eng)
    eng.dispose()
    return path


@pytest.fixture(scope="session")
def pg_template(pg_admin: URL) -> Iterator[str]:
    """A Postgres database migrated to head once per session, then closed to connections
    (``ALLOW_CONNECTIONS false``) so that ``CREATE DATABASE ... TEMPLATE`` never finds it busy;
    its name. Dropped at session end."""
    name = _create_pg_database(pg_admin)
    eng = make_engine(pg_admin.set(database=name).render_as_string(hide_password=False))
    try:
        migrate.upgrade(eng)
    finally:
        eng.dispose()
    admin = create_engine(pg_admin, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
    admin.dispose()
    try:
        yield name
    finally:
        _drop_pg_database(pg_admin, name)


def _pg_database(admin: URL, template: str | None) -> Iterator[str]:
    name = _create_pg_database(admin, template)
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        _drop_pg_database(admin, name)


def _wants_migrated(request: pytest.FixtureRequest) -> bool:
    """Whether the test uses an ``engine``/``pg_engine`` (a database at head)."""
    return bool({"engine", "pg_engine"} & set(request.fixturenames))


@pytest.fixture()
def fresh_pg_url(request: pytest.FixtureRequest, pg_admin: URL) -> Iterator[str]:
    """A freshly created Postgres database, dropped after the test: empty, or a copy of the
    migrated template when the test uses ``engine``/``pg_engine``."""
    template = request.getfixturevalue("pg_template") if _wants_migrated(request) else None
    yield from _pg_database(pg_admin, template)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database URL: a new SQLite file, or a new Postgres database; empty, or at head
    (a copy of the session's template) when the test uses ``engine``."""
    if request.param == "sqlite":
        path = tmp_path / "brain.db"
        if _wants_migrated(request):
            shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
    else:
        yield request.getfixturevalue("fresh_pg_url")


@pytest.fixture()
def engine(db_url: str) -> Iterator[Engine]:
    """An Engine on a fresh database at head (a copy of the migrated template)."""
    eng = make_engine(db_url)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture()
def pg_engine(fresh_pg_url: str) -> Iterator[Engine]:
    """Postgres only: an Engine on a fresh database at head (a copy of the migrated template)."""
    eng = make_engine(fresh_pg_url)
    try:
        yield eng
    finally:
        eng.dispose()
