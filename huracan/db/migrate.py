"""Run the brain store's Alembic migrations programmatically (``huracan db upgrade``).

The migration scripts ship inside the package (``huracan/db/migrations``) and keep their revision
in their own table, :data:`VERSION_TABLE`, so the brain store can share a database or schema with
MLflow or Optuna, which each keep an ``alembic_version`` table of their own (../shared/STACK.md).

A new revision goes in ``migrations/versions/`` (write Postgres-only DDL, such as partitioning,
behind ``op.get_bind().dialect.name`` as in 0001). To draft one from the models, run against a
database migrated to head::

    with make_engine(url).begin() as conn:
        command.revision(alembic_config(conn), "what changed", autogenerate=True)
"""

from __future__ import annotations

import re
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

#: Alembic's version table for the brain store (not the default ``alembic_version``).
VERSION_TABLE = "huracan_alembic_version"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: Tables that exist in the database but not in the models: the version table and the
#: liquidation partitions (Postgres), which the loader creates at run time.
_UNMODELLED_TABLE = re.compile(rf"^({VERSION_TABLE}|liquidations_(default|p\d{{6}}))$")


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic ``include_name`` hook: leave the version table and the partitions out of
    autogenerate comparisons (they are not models)."""
    if type_ == "table" and name is not None:
        return not _UNMODELLED_TABLE.match(name)
    return True


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic :class:`Config` pointing at the packaged scripts; ``connection`` (when given)
    is what ``env.py`` migrates, inside the caller's transaction. No URL goes into the config,
    so no password can reach Alembic's logs or its ``%``-interpolation."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database up to ``revision`` in one transaction. Idempotent: at ``head`` it
    changes nothing."""
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate down to ``revision`` (``base`` drops every brain-store table; data is lost)."""
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or ``None`` when it was never migrated."""
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return ctx.get_current_revision()


def head_revision() -> str:
    """The newest revision shipped with this version of the package."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships a revision
        raise RuntimeError(f"no migration scripts found in {MIGRATIONS_DIR}")
    return head


class SchemaNotCurrentError(RuntimeError):
    """The database schema is not at the head revision; run ``huracan db upgrade``."""


def require_current_schema(engine: Engine) -> None:
    """Raise :class:`SchemaNotCurrentError` unless the database is at :func:`head_revision`."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise SchemaNotCurrentError(
            f"database schema is at {current or 'no revision (empty database)'}, expected "
            f"{head}: run `huracan db upgrade`")


#: SQLSTATE of Postgres' undefined_table and undefined_column errors
_UNDEFINED_SQLSTATES = frozenset({"42P01", "42703"})


def is_missing_relation(exc: BaseException) -> bool:
    """Whether a failed statement says a table or column does not exist: SQLite's ``no such
    table`` / ``no such column`` (``OperationalError``), Postgres SQLSTATE 42P01 / 42703
    (``UndefinedTable`` / ``UndefinedColumn``, a ``ProgrammingError``; psycopg2's ``pgcode``
    or psycopg 3's ``sqlstate``)."""
    orig = getattr(exc, "orig", None) or exc
    code = getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None)
    if code in _UNDEFINED_SQLSTATES:
        return True
    return str(orig).strip().lower().startswith(("no such table", "no such column"))


def schema_behind(engine: Engine, exc: BaseException) -> SchemaNotCurrentError | None:
    """The reason a query failed when it is the schema's: ``exc`` names a missing table or
    column (:func:`is_missing_relation`) and the database is not at :func:`head_revision`. Then
    the :class:`SchemaNotCurrentError` saying which revision it is at and to run ``huracan db
    upgrade``; else ``None`` (also when the revision cannot be read), and the caller reports
    ``exc`` itself. Reads only: nothing is created or migrated."""
    from sqlalchemy.exc import SQLAlchemyError

    if not is_missing_relation(exc):
        return None
    try:
        require_current_schema(engine)
    except SchemaNotCurrentError as behind:
        return behind
    except SQLAlchemyError:
        return None
    return None
