"""Engines and sessions for the brain store, with credentials kept out of logs and errors.

There is no module-level engine: entry points call :func:`make_engine` once and pass the Engine
(or a Session from :func:`make_session_factory`) down explicitly.
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from huracan.secrets import mask_url

#: Environment variable naming the brain-store database.
DB_URL_ENV = "HURACAN_DB_URL"
#: The embedded default for a first run: a SQLite file in the working directory (git-ignored).
DEFAULT_DB_URL = "sqlite:///huracan.db"


class DatabaseURLError(ValueError):
    """The database URL cannot be parsed or used. The message never holds the password."""


def resolve_url(url: str | None = None) -> str:
    """``url`` if given, else ``$HURACAN_DB_URL``, else :data:`DEFAULT_DB_URL`."""
    return url or os.environ.get(DB_URL_ENV) or DEFAULT_DB_URL


def safe_url(url: str) -> str:
    """``url`` with its password replaced by ``***``: the only form to log, print or send to
    MLflow params. Works on unparseable strings too."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):  # e.g. a non-numeric port
        return mask_url(url)


def make_engine(url: str | None = None, **kwargs: Any) -> Engine:
    """Create an Engine for the brain store.

    Args:
        url: SQLAlchemy URL; defaults to :func:`resolve_url` (``HURACAN_DB_URL`` or
            ``sqlite:///huracan.db``). Postgres: ``postgresql+psycopg2://user:pw@host:5432/db``;
            add ``?options=-csearch_path%3Dhuracan`` to keep the tables in their own schema.
        **kwargs: passed to :func:`sqlalchemy.create_engine`.

    Raises:
        DatabaseURLError: the URL cannot be parsed or names an unknown driver (message masked).
    """
    raw = resolve_url(url)
    try:
        parsed = make_url(raw)
    except (ArgumentError, ValueError):  # ValueError: e.g. a non-numeric port
        raise DatabaseURLError(f"cannot parse database URL {mask_url(raw)!r}") from None
    if parsed.get_backend_name() == "sqlite":
        kwargs.setdefault("connect_args", {}).setdefault("timeout", 30)
    else:
        kwargs.setdefault("pool_pre_ping", True)
    try:
        engine = create_engine(parsed, **kwargs)
    except Exception as exc:  # unknown dialect/driver: the message may echo the URL
        raise DatabaseURLError(
            f"cannot create an engine for {safe_url(raw)!r}: {mask_url(str(exc))}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """A Session factory bound to ``engine`` (``expire_on_commit=False``, so rows stay readable
    after the transaction)."""
    return sessionmaker(engine, expire_on_commit=False)
