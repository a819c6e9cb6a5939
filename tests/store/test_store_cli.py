"""The `huracan` console script: db upgrade/current/downgrade and ingest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import inspect
from typer.testing import CliRunner

from huracan.cli import app
from huracan.db import migrate
from huracan.db.session import make_engine

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-Pa55"


def _run(*args: str, url: str):
    return runner.invoke(app, list(args), env={"HURACAN_DB_URL": url})


def test_db_upgrade_twice_current_and_downgrade(db_url):
    head = migrate.head_revision()  # the newest migration shipped
    first = _run("db", "upgrade", url=db_url)
    assert first.exit_code == 0, first.output
    assert f"empty -> {head}" in first.stdout
    again = _run("db", "upgrade", url=db_url)
    assert again.exit_code == 0 and f"already at {head}" in again.stdout
    current = _run("db", "current", url=db_url)
    assert current.exit_code == 0 and f"{head} (head {head})" in current.stdout
    down = _run("db", "downgrade", "base", url=db_url)
    assert down.exit_code == 0 and "base" in down.stdout
    assert "none" in _run("db", "current", url=db_url).stdout


def test_ingest_prints_counts_and_rejections(db_url, shared, tmp_path):
    assert _run("db", "upgrade", url=db_url).exit_code == 0
    path = str(shared.xrp_funding)
    first = _run("ingest", "funding", path, "--exchange", "binance", "--symbol", "XRP/USDT",
                 url=db_url)
    assert first.exit_code == 0, first.output
    assert "read 91, inserted 91, updated 0, unchanged 0, rejected 0" in first.stdout
    second = _run("ingest", "funding", path, "--exchange", "binance", url=db_url)
    assert "read 91, inserted 0, updated 0, unchanged 91, rejected 0" in second.stdout

    bad = tmp_path / "liq.csv"
    pd.DataFrame({"timestamp": ["2024-01-01T00:00:00Z", "2024-01-01T00:00:01Z"],
                  "symbol": ["BTCUSDT", "BTCUSDT"], "side": ["SELL", "SIDEWAYS"],
                  "price": [42000.0, 42000.0], "quantity": [0.1, 0.1]}).to_csv(bad, index=False)
    res = _run("ingest", "liquidations", str(bad), "--exchange", "binance", url=db_url)
    assert res.exit_code == 0, res.output
    assert "inserted 1" in res.stdout and "rejected 1" in res.stdout
    assert "rejected row 1: column 'side' value 'SIDEWAYS'" in res.stderr
    assert "[rule: unknown_side]" in res.stderr


def test_bad_input_exits_non_zero_with_one_line(db_url, tmp_path):
    assert _run("db", "upgrade", url=db_url).exit_code == 0
    missing = _run("ingest", "funding", str(tmp_path / "nope.parquet"), "--exchange", "binance",
                   "--symbol", "BTC/USDT", url=db_url)
    assert missing.exit_code == 2
    assert missing.stderr.strip().count("\n") == 0
    assert "nope.parquet: file not found [rule: file_exists]" in missing.stderr
    bad = tmp_path / "f.csv"
    pd.DataFrame({"timestamp": ["2024-01-01T00:00:00Z"], "rate": [0.1]}).to_csv(bad, index=False)
    res = _run("ingest", "funding", str(bad), "--exchange", "binance", "--symbol", "BTC/USDT",
               url=db_url)
    assert res.exit_code == 2 and "[rule: missing_column]" in res.stderr


def test_ingest_refuses_an_unmigrated_database(db_url, shared):
    res = _run("ingest", "funding", str(shared.xrp_funding), url=db_url)
    assert res.exit_code == 1
    assert "run `huracan db upgrade`" in res.stderr


def _tables(url: str) -> list[str]:
    engine = make_engine(url)
    try:
        return inspect(engine).get_table_names()
    finally:
        engine.dispose()


@pytest.mark.slow  # a command: a subprocess
def test_features_top_on_an_unmigrated_store_says_to_run_db_upgrade(db_url):
    """As a command: one line naming the command to run, no driver error (SQLite's ``no such
    table``, psycopg2's ``UndefinedTable``), and nothing created in the database."""
    proc = subprocess.run([sys.executable, "-m", "huracan.cli", "features", "top", "BTC/USDT",
                           "--db-url", db_url], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={k: v for k, v in os.environ.items()
                                            if k != "HURACAN_DB_URL"})
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"error: database schema is at no revision (empty database), expected "
        f"{migrate.head_revision()}: run `huracan db upgrade`"]
    assert proc.stdout == ""
    assert _tables(db_url) == []


#: every command reading the brain store (their Typer apps, in process)
STORE_READERS = [["features", "top", "BTC/USDT"], ["features", "trend", "BTC/USDT"],
                 ["registry", "history", "huracan-BTCUSDT-1h"], ["nightly", "status"],
                 ["nightly", "list"], ["quality", "report"], ["drift", "history", "BTC/USDT"],
                 ["drift", "requests"], ["liquidations", "cascades", "BTC/USDT"]]


@pytest.mark.parametrize("args", STORE_READERS, ids=lambda a: " ".join(a[:2]))
def test_every_store_reader_says_to_upgrade_an_unmigrated_store(db_url, args):
    res = _run(*args, url=db_url)
    assert res.exit_code == 1, res.output
    assert res.stderr.splitlines() == [
        f"error: database schema is at no revision (empty database), expected "
        f"{migrate.head_revision()}: run `huracan db upgrade`"]
    assert _tables(db_url) == []


def test_a_store_behind_head_names_its_revision(db_url):
    # registry_events gained its evidence columns in 0002: a 0001 store lacks them
    assert _run("db", "upgrade", "--revision", "0001", url=db_url).exit_code == 0
    res = _run("registry", "history", "huracan-BTCUSDT-1h", url=db_url)
    assert res.exit_code == 1
    assert res.stderr.splitlines() == [
        f"error: database schema is at 0001, expected {migrate.head_revision()}: run "
        "`huracan db upgrade`"]
    engine = make_engine(db_url)
    assert migrate.current_revision(engine) == "0001"  # left as it was
    engine.dispose()


def test_printed_urls_and_errors_are_masked():
    url = f"postgresql+psycopg2://postgres:{SECRET}@127.0.0.1:1/nope"
    res = _run("db", "current", url=url)
    assert res.exit_code == 1
    assert SECRET not in res.output and "postgres:***@127.0.0.1:1/nope" in res.stderr
    res = runner.invoke(app, ["db", "current", "--db-url", f"nosuch://u:{SECRET}@h/db"])
    assert res.exit_code == 2 and SECRET not in res.output


@pytest.mark.slow  # a command: a subprocess
def test_console_script_runs(tmp_path):
    script = Path(sys.executable).parent / "huracan"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "huracan.cli"]
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    out = subprocess.run([*cmd, "db", "upgrade", "--db-url", url], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert migrate.head_revision() in out.stdout
