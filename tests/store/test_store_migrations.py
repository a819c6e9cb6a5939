"""Alembic migrations: create, re-run, downgrade and re-create the schema on SQLite and Postgres."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from huracan.db import migrate
from huracan.db.session import make_engine
from huracan.db.tables import Base

TABLES = {"liquidations", "funding_rates", "open_interest", "sentiment_scores",
          "feature_importance", "data_quality_logs", "registry_events"}


def _tables(engine) -> set[str]:
    with engine.connect() as conn:
        return set(inspect(conn).get_table_names())


def test_upgrade_creates_schema_and_twice_changes_nothing(db_url):
    engine = make_engine(db_url)
    assert migrate.current_revision(engine) is None
    migrate.upgrade(engine)
    first = _tables(engine)
    assert first >= TABLES
    assert migrate.VERSION_TABLE in first and "alembic_version" not in first
    migrate.upgrade(engine)
    assert _tables(engine) == first
    assert migrate.current_revision(engine) == migrate.head_revision()
    engine.dispose()


def test_downgrade_to_base_and_upgrade_again(db_url):
    engine = make_engine(db_url)
    migrate.upgrade(engine)
    migrate.downgrade(engine, "base")
    assert not (TABLES & _tables(engine))
    assert migrate.current_revision(engine) is None
    migrate.upgrade(engine)
    assert _tables(engine) >= TABLES
    assert migrate.current_revision(engine) == migrate.head_revision()
    engine.dispose()


def test_models_and_migrations_agree(engine):
    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_name": migrate.include_name})
        assert compare_metadata(ctx, Base.metadata) == []


def test_shares_a_database_with_another_alembic_user(db_url):
    """MLflow/Optuna keep `alembic_version`; ours lives in `huracan_alembic_version`."""
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
        conn.execute(text("INSERT INTO alembic_version VALUES ('mlflow_rev_1')"))
    migrate.upgrade(engine)
    migrate.downgrade(engine, "base")
    migrate.upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).all() == [
            ("mlflow_rev_1",)]
    engine.dispose()


def test_require_current_schema(db_url):
    engine = make_engine(db_url)
    with pytest.raises(migrate.SchemaNotCurrentError, match="huracan db upgrade"):
        migrate.require_current_schema(engine)
    migrate.upgrade(engine)
    migrate.require_current_schema(engine)
    engine.dispose()


@pytest.mark.postgres
def test_liquidations_is_range_partitioned_by_time_on_postgres(pg_engine):
    with pg_engine.connect() as conn:
        strategy = conn.execute(text(
            "SELECT p.partstrat, a.attname FROM pg_partitioned_table p "
            "JOIN pg_class c ON c.oid = p.partrelid "
            "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = p.partattrs[0] "
            "WHERE c.relname = 'liquidations'")).one()
        assert tuple(strategy) == ("r", "timestamp")
        default = conn.execute(text(
            "SELECT c.relname FROM pg_partitioned_table p JOIN pg_class c "
            "ON c.oid = p.partdefid")).scalar_one()
        assert default == "liquidations_default"
