"""Serialize registry decisions per model name across processes.

Postgres brain store: a session-level advisory lock (``pg_advisory_lock``) keyed by the model name,
held on a dedicated connection for the whole read-champion / decide / move-alias / record sequence.
SQLite brain store: an exclusive file lock (the ``filelock`` library) beside the database file.
Either way two training processes finishing at once decide one after the other, the second seeing
the first one's outcome as its champion. Every gate decision takes it through
:func:`huracan.registry.decision.apply_decision` (the model gate and the sizer's gate); rollbacks
and the per-regime cash aliases take it directly. It is not re-entrant: a holder must not call
:func:`registry_lock` (or ``apply_decision``) for the same model again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock
from sqlalchemy import Engine, text


def lock_key(model_name: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock`` (first 8 bytes of sha256)."""
    return int.from_bytes(hashlib.sha256(model_name.encode()).digest()[:8], "big", signed=True)


def lock_path(engine: Engine, model_name: str) -> Path:
    """The lock file for ``model_name`` beside a SQLite database (cwd for in-memory)."""
    database = engine.url.database
    base = Path(database).resolve().parent if database and database != ":memory:" else Path.cwd()
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_name)
    return base / f".huracan-registry-{safe}.lock"


@contextmanager
def registry_lock(engine: Engine, model_name: str, timeout_s: float = 600.0) -> Iterator[None]:
    """Hold the registry lock of ``model_name`` for the duration of the ``with`` block.

    Raises:
        TimeoutError: the lock could not be taken within ``timeout_s`` seconds.
    """
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SET lock_timeout = :ms"), {"ms": f"{int(timeout_s * 1000)}"})
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": lock_key(model_name)})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock_key(model_name)})
                conn.commit()
    else:
        lock = FileLock(str(lock_path(engine, model_name)), timeout=timeout_s)
        try:
            lock.acquire()
        except TimeoutError as exc:
            raise TimeoutError(f"registry lock of {model_name} busy for {timeout_s} s") from exc
        try:
            yield
        finally:
            lock.release()
