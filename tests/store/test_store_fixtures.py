"""The Postgres test fixtures themselves: a set ``HURACAN_TEST_PG_URL`` whose server does not
answer FAILS the Postgres variants (a CI whose database died must not pass by skipping them);
without the variable they are skipped with the reason. Run as pytest subprocesses on one store
test (its SQLite variant passes either way)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ONE_TEST = ("tests/store/test_store_migrations.py::"
            "test_upgrade_creates_schema_and_twice_changes_nothing")


def _pytest(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                           "-rs", ONE_TEST], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


def test_an_unreachable_server_fails_the_postgres_tests_and_an_unset_url_skips_them():
    with socket.socket() as s:  # a loopback port nobody listens on: connections are refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = {k: v for k, v in os.environ.items() if k != "HURACAN_TEST_PG_URL"}
    url = f"postgresql+psycopg2://postgres:pw@127.0.0.1:{port}/test"
    down = _pytest({**base, "HURACAN_TEST_PG_URL": url})
    assert down.returncode == 1, down.stdout[-3000:]
    assert "1 passed, 1 error" in down.stdout  # SQLite passed, Postgres failed at setup
    assert (f"HURACAN_TEST_PG_URL is set but Postgres at postgresql+psycopg2://postgres:***@"
            f"127.0.0.1:{port}/test does not answer: OperationalError: connection to server at "
            f'"127.0.0.1", port {port} failed: Connection refused') in down.stdout
    assert ":pw@" not in down.stdout
    unset = _pytest(base)
    assert unset.returncode == 0, unset.stdout[-3000:]
    assert "1 passed, 1 skipped" in unset.stdout
    assert "HURACAN_TEST_PG_URL is not set (.ci/run sets it; see README)" in unset.stdout
