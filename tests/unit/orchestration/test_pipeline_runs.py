"""The pipeline_runs ledger on SQLite and the real Postgres server: claim, finish, resume."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from huracan.db.tables import PipelineRun
from huracan.orchestration.runs import PipelineRunStore, StepBusyError


@pytest.fixture()
def store(engine) -> PipelineRunStore:
    return PipelineRunStore(engine)


def test_claim_finish_and_rerun_skips_finished(store):
    t0 = datetime.now(UTC)
    rec = store.claim("n1", "BTC/USDT", "train")
    t1 = datetime.now(UTC)
    assert rec is not None and rec.status == "running" and rec.attempts == 1
    assert rec.pid == os.getpid()
    assert rec.ended_at is None and rec.seconds is None  # no wall time while running
    store.finish("n1", "BTC/USDT", "train", "done", detail="2 models", mlflow_run_ids=["a", "b"])
    t2 = datetime.now(UTC)
    assert store.claim("n1", "BTC/USDT", "train") is None  # finished: a rerun skips it
    done = store.get("n1", "BTC/USDT", "train")
    assert done is not None and done.status == "done" and done.mlflow_run_ids == ["a", "b"]
    # the clock read at the claim and at the finish, stored as UTC (times compared, not timed)
    assert done.started_at == rec.started_at and t0 <= done.started_at <= t1
    assert done.ended_at is not None and t1 <= done.ended_at <= t2
    assert done.seconds == (done.ended_at - done.started_at).total_seconds()
    # another night, or another symbol, is its own step
    assert store.claim("n2", "BTC/USDT", "train") is not None
    assert store.claim("n1", "ETH/USDT", "train") is not None


def test_failed_and_skipped_steps(store):
    store.claim("n1", "BTC/USDT", "monitor")
    store.finish("n1", "BTC/USDT", "monitor", "skipped", detail="no unseen data")
    assert store.claim("n1", "BTC/USDT", "monitor") is None  # skipped counts as finished
    store.claim("n1", "BTC/USDT", "gate")
    store.finish("n1", "BTC/USDT", "gate", "failed", detail="boom")
    again = store.claim("n1", "BTC/USDT", "gate")  # a failed step runs again
    assert again is not None and again.attempts == 2 and again.status == "running"
    with pytest.raises(ValueError, match="done, skipped or failed"):
        store.finish("n1", "BTC/USDT", "gate", "running")


def test_interrupted_step_is_resumed_but_a_live_one_is_refused(store, engine):
    # a step left `running` by a process that is gone (killed) is claimed again
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    store.claim("n1", "BTC/USDT", "train")
    with engine.begin() as conn:
        conn.execute(update(PipelineRun).values(pid=int(dead.stdout)))
    rec = store.claim("n1", "BTC/USDT", "train")
    assert rec is not None and rec.attempts == 2 and rec.pid == os.getpid()
    assert "resumed" in (rec.detail or "")
    # a step `running` in a live process of this host is refused
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with engine.begin() as conn:
            conn.execute(update(PipelineRun).values(pid=live.pid))
        with pytest.raises(StepBusyError, match=f"pid {live.pid}"):
            store.claim("n1", "BTC/USDT", "train")
    finally:
        live.kill()
        live.wait()


def test_last_finished_across_nights(store, engine):
    for night, age in (("n1", 9), ("n2", 2)):
        store.claim(night, "BTC/USDT", "sizer")
        store.finish(night, "BTC/USDT", "sizer", "done")
        with engine.begin() as conn:
            conn.execute(update(PipelineRun).where(PipelineRun.run_id == night)
                         .values(ended_at=datetime.now(UTC) - timedelta(days=age)))
    store.claim("n3", "BTC/USDT", "sizer")
    store.finish("n3", "BTC/USDT", "sizer", "failed")
    last = store.last_finished("BTC/USDT", "sizer")
    assert last is not None and last.run_id == "n2"
    assert store.last_finished("ETH/USDT", "sizer") is None
    assert [r.step for r in store.steps("n1")] == ["sizer"]


def test_status_and_list_commands(store, engine):
    from typer.testing import CliRunner

    from huracan.cli.nightly import nightly_app

    runner = CliRunner()
    url = str(engine.url)
    empty = runner.invoke(nightly_app, ["status", "--db-url", url])
    assert empty.exit_code == 1 and "no nightly run recorded" in empty.output
    for step, status in (("download", "done"), ("validate", "done"), ("train", "failed")):
        store.claim("2026-11-30-1h", "BTC/USDT", step)
        store.finish("2026-11-30-1h", "BTC/USDT", step, status, detail=f"{step} detail")
    store.claim("2026-11-30-1h", "*", "summary")
    store.finish("2026-11-30-1h", "*", "summary", "done")
    out = runner.invoke(nightly_app, ["status", "--db-url", url])  # the latest night
    assert out.exit_code == 1, out.output  # a step failed
    assert "night 2026-11-30-1h" in out.output and "train detail" in out.output
    as_json = runner.invoke(nightly_app, ["status", "2026-11-30-1h", "--json", "--db-url", url])
    assert '"status": "failed"' in as_json.output
    store.claim("2026-11-30-1h", "BTC/USDT", "train")
    store.finish("2026-11-30-1h", "BTC/USDT", "train", "done")
    assert runner.invoke(nightly_app, ["status", "--db-url", url]).exit_code == 0
    listed = runner.invoke(nightly_app, ["list", "--db-url", url])
    assert listed.exit_code == 0
    line = next(ln for ln in listed.output.splitlines() if ln.startswith("2026-11-30-1h"))
    assert line.split()[-5:] == ["1", "4", "0", "0", "0"]  # 1 symbol; 4 done, 0 skip/fail/run
