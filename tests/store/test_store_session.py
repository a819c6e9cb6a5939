"""Passwords never reach logs, errors or printed URLs."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy.exc import OperationalError

from huracan.db.session import (
    DEFAULT_DB_URL,
    DatabaseURLError,
    make_engine,
    resolve_url,
    safe_url,
)

SECRET = "s3cr3t-Pa55"


def test_safe_url_masks_the_password():
    url = f"postgresql+psycopg2://huracan:{SECRET}@db.internal:5432/brain"
    assert safe_url(url) == "postgresql+psycopg2://huracan:***@db.internal:5432/brain"
    assert SECRET not in repr(make_engine(url))


def test_url_resolution(monkeypatch):
    monkeypatch.delenv("HURACAN_DB_URL", raising=False)
    assert resolve_url() == DEFAULT_DB_URL == "sqlite:///huracan.db"
    monkeypatch.setenv("HURACAN_DB_URL", "sqlite:///other.db")
    assert resolve_url() == "sqlite:///other.db"
    assert resolve_url("sqlite://") == "sqlite://"


def test_unparseable_or_unknown_urls_fail_masked():
    for bad in (f"postgresql+psycopg2://u:{SECRET}@host:notaport/db",
                f"nosuchdb+driver://u:{SECRET}@host/db"):
        with pytest.raises(DatabaseURLError) as err:
            make_engine(bad)
        assert SECRET not in str(err.value) and "***" in str(err.value)


def test_connection_errors_and_logs_hold_no_password(caplog):
    engine = make_engine(f"postgresql+psycopg2://postgres:{SECRET}@127.0.0.1:1/nope",
                         pool_pre_ping=False)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(OperationalError) as err:
        engine.connect()
    assert SECRET not in str(err.value)
    assert SECRET not in caplog.text
