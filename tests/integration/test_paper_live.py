"""The live paper loop (huracan.paper.live, huracan paper run) on a simulated clock over REAL
BTC/USDT 1h candles served by offline exchanges (ccxt stubbed at its HTTP layer,
tests/data/fake_exchanges.py): one order per bar, fills at the next open, marks equal to the
core's replay; an exchange outage gives no decision on stale data and the loop recovers;
production unreachable; restarts and kill -9 mid-step without double rows or missed bars; the
HTTP production (a fake session, and a real ``mlflow models serve`` in the slow tier); the
command itself."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from paper_live_support import (
    ANCHOR,
    MomentumProduction,
    SimClock,
    account_spec,
    make_downloader,
    make_servers,
    outage,
    real_candles,
    recover,
)
from sqlalchemy import func, select

from huracan.data.lake import CandleLake
from huracan.db.session import make_engine
from huracan.db.tables import PaperFill, PaperMark, PaperOrder, Prediction
from huracan.paper import live
from huracan.paper.http import (
    HttpProduction,
    ProductionRejectedError,
    ProductionUnavailableError,
    parse_answer,
    request_body,
)
from huracan.paper.ledger import PaperLedger

HOUR = pd.Timedelta("1h")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    path = REPO.parent / "shared" / "data" / "ohlcv" / \
        "binance-spot_BTCUSDT_1h_20180101-20241231.parquet"
    if not path.exists():
        pytest.skip(f"{path} not found (../shared/data beside the checkout)")
    return real_candles()


@pytest.fixture
def sqlite_engine(tmp_path, sqlite_template):
    shutil.copyfile(sqlite_template, tmp_path / "brain.db")
    eng = make_engine(f"sqlite:///{tmp_path / 'brain.db'}")
    yield eng
    eng.dispose()


def _rows(engine, table, account: str) -> pd.DataFrame:
    with engine.connect() as conn:
        q = select(table).where(table.account == account).order_by(table.bar_time)
        return pd.read_sql(q, conn)


def _run(engine, tmp_path, candles, clock, production, *, max_bars, servers=None, **kw):
    servers = servers or make_servers(candles)
    dl = make_downloader(servers, clock)
    res = live.run(engine, CandleLake(tmp_path / "lake"), dl, production,
                   account_spec(production, **kw.pop("spec", {})), now=clock.now,
                   sleep=clock.sleep, max_bars=max_bars, **kw)
    return res, servers, dl


def test_live_run_one_order_per_bar_fills_at_next_open_marks_equal_replay(
        engine, tmp_path, candles):
    random.seed(0)
    clock = SimClock(ANCHOR + pd.Timedelta("10min"))  # started during the anchor bar
    prod = MomentumProduction()
    res, _, _ = _run(engine, tmp_path, candles, clock, prod, max_bars=10)
    assert (res.bars, res.decided, res.skipped, res.stopped) == (10, 10, 0, "max_bars")
    assert res.wakes == 10 and len(res.lines) == 10 and all("decided" in x for x in res.lines)
    # the clock only moved from bar close to bar close (no busy loop): 10 bars + settle
    assert clock.t - ANCHOR < pd.Timedelta("10h 1min")
    account = res.account
    orders = _rows(engine, PaperOrder, account)
    bars = pd.date_range(ANCHOR, periods=10, freq=HOUR)
    assert list(pd.to_datetime(orders.bar_time, utc=True)) == list(bars)
    assert (orders.status == "decided").all() and orders.prediction_id.notna().all()
    # decided at the close + settle, never before the bar closed (no look-ahead)
    decided_at = pd.to_datetime(orders.decided_at, utc=True)
    assert ((decided_at - pd.to_datetime(orders.bar_time, utc=True)) >= HOUR).all()
    with engine.connect() as conn:
        preds = conn.execute(select(func.count()).select_from(Prediction)
                             .where(Prediction.account == account)).scalar_one()
    assert preds == 10
    with engine.connect() as conn:
        logged = pd.read_sql(select(Prediction).where(Prediction.account == account), conn)
    assert (logged.source == "paper").all() and logged.latency_ms.notna().all()
    assert set(logged.inputs_path) == {str(CandleLake(tmp_path / "lake").partition(
        "binance", "BTC/USDT", "1h"))}
    # fills: the order of bar k at the open of bar k+1 (9 of 10: the last needs bar 11)
    fills = _rows(engine, PaperFill, account)
    by_ts = candles.set_index("timestamp")
    assert len(fills) == 9
    fill_time = pd.to_datetime(fills.fill_time, utc=True)
    assert (fill_time == pd.to_datetime(fills.bar_time, utc=True) + HOUR).all()
    np.testing.assert_array_equal(fills.fill_price.to_numpy(),
                                  by_ts.loc[fill_time, "open"].to_numpy())
    np.testing.assert_array_equal(fills.position.to_numpy(),
                                  orders.target_position.to_numpy()[:9])
    # marks equal the core's replay of the same production over the same bars
    from huracan.paper.loop import replay

    marks = _rows(engine, PaperMark, account)
    assert len(marks) == 9
    spec = account_spec(prod, account="replay-check")
    window = candles[(candles.timestamp >= ANCHOR - 24 * HOUR)
                     & (candles.timestamp < ANCHOR + 10 * HOUR)].reset_index(drop=True)
    replay(engine, prod, spec, window)
    ref = _rows(engine, PaperMark, "replay-check")
    assert len(ref) == 9
    np.testing.assert_array_equal(marks.position.to_numpy(), ref.position.to_numpy())
    np.testing.assert_allclose(marks.net_return.to_numpy(), ref.net_return.to_numpy(),
                               rtol=0, atol=1e-12)
    assert PaperLedger(engine).account(account) is not None


def test_exchange_outage_gives_no_decision_on_stale_data_and_the_loop_recovers(
        sqlite_engine, tmp_path, candles):
    random.seed(0)
    servers = make_servers(candles)
    clock = SimClock(ANCHOR + pd.Timedelta("10min"))
    out_bar = ANCHOR + 3 * HOUR  # every exchange down from its close for 50 minutes
    clock.at(out_bar + HOUR, lambda: outage(servers))
    clock.at(out_bar + HOUR + pd.Timedelta("50min"), lambda: recover(servers))
    res, _, dl = _run(sqlite_engine, tmp_path, candles, clock, MomentumProduction(),
                      max_bars=6, servers=servers, compact_parts=2)
    orders = _rows(sqlite_engine, PaperOrder, res.account)
    assert list(pd.to_datetime(orders.bar_time, utc=True)) == list(
        pd.date_range(ANCHOR, periods=6, freq=HOUR))
    skipped = orders[orders.status == "skipped"]
    assert list(pd.to_datetime(skipped.bar_time, utc=True)) == [out_bar]
    reason = skipped.reason.iloc[0]
    assert reason.startswith("exchange outage: every exchange failed") and "\n" not in reason
    assert all(ex in reason for ex in ("binance", "bybit", "okx"))
    assert skipped.prediction_id.isna().all() and skipped.forecast.isna().all()
    # the position is held through the skipped bar; the bars after it are decided again
    held = orders.set_index(pd.to_datetime(orders.bar_time, utc=True))
    assert held.loc[out_bar, "target_position"] == held.loc[out_bar - HOUR, "target_position"]
    assert (orders.status == "decided").sum() == 5
    # the order before the outage was still filled at the outage bar's open (data came later)
    fills = _rows(sqlite_engine, PaperFill, res.account)
    f = fills.set_index(pd.to_datetime(fills.bar_time, utc=True))
    assert f.loc[out_bar - HOUR, "fill_price"] == candles.set_index("timestamp").loc[
        out_bar, "open"]
    assert res.outages >= 2 and res.retries >= 2
    assert dl.waits and max(dl.waits) <= 30.0  # the Downloader's own backoff ran first
    assert any("no decision: exchange outage" in line for line in res.lines)
    # one part file per bar, compacted past compact_parts; every bar kept once
    lake = CandleLake(tmp_path / "lake")
    assert len(lake.parts("binance", "BTC/USDT", "1h")) <= 3
    stored = lake.read("binance", "BTC/USDT", "1h")
    assert stored.timestamp.is_unique and stored.timestamp.iloc[-1] == ANCHOR + 5 * HOUR


def test_production_unreachable_skips_the_bar_with_reason_then_recovers(
        sqlite_engine, tmp_path, candles):
    clock = SimClock(ANCHOR + pd.Timedelta("10min"))
    prod = MomentumProduction(down=10**6)
    clock.at(ANCHOR + 2 * HOUR + pd.Timedelta("40min"), lambda: setattr(prod, "down", 0))
    res, _, _ = _run(sqlite_engine, tmp_path, candles, clock, prod, max_bars=4)
    orders = _rows(sqlite_engine, PaperOrder, res.account)
    assert list(orders.status) == ["skipped", "skipped", "decided", "decided"]
    assert orders.reason.iloc[0].startswith("production unreachable: ProductionUnavailableError")
    assert res.production_errors >= 4 and res.retries >= 4
    # the data was there: the skips are written at the freshness deadline (30 min)
    decided_at = pd.to_datetime(orders.decided_at, utc=True)
    closes = pd.to_datetime(orders.bar_time, utc=True) + HOUR
    assert ((decided_at - closes)[:2] >= pd.Timedelta("30min")).all()
    assert ((decided_at - closes)[2:] < pd.Timedelta("1min")).all()


def test_restart_catches_up_late_bars_without_deciding_them(engine, tmp_path, candles):
    clock = SimClock(ANCHOR + pd.Timedelta("10min"))
    prod = MomentumProduction()
    first, _, _ = _run(engine, tmp_path, candles, clock, prod, max_bars=3)
    assert first.decided == 3
    # down for 4 closes; restarted 10 minutes after the 4th
    clock2 = SimClock(ANCHOR + 7 * HOUR + pd.Timedelta("10min"))
    _run(engine, tmp_path, candles, clock2, prod, max_bars=5)
    orders = _rows(engine, PaperOrder, first.account)
    times = pd.to_datetime(orders.bar_time, utc=True)
    assert list(times) == list(pd.date_range(ANCHOR, periods=8, freq=HOUR))
    assert list(orders.status) == ["decided"] * 3 + ["skipped"] * 3 + ["decided"] * 2
    assert all(r.startswith("late: closed at") for r in orders.reason.iloc[3:6])
    # the last decision before the restart was filled at the next open, and marked
    fills = _rows(engine, PaperFill, first.account)
    marks = _rows(engine, PaperMark, first.account)
    assert ANCHOR + 2 * HOUR in set(pd.to_datetime(fills.bar_time, utc=True))
    for frame in (orders, fills, marks):
        assert not frame.bar_time.duplicated().any()
    # a third run writes nothing for bars that hold an order
    clock3 = SimClock(ANCHOR + 7 * HOUR + pd.Timedelta("20min"))
    third, _, _ = _run(engine, tmp_path, candles, clock3, prod, max_bars=1)
    assert len(_rows(engine, PaperOrder, first.account)) == 9
    newest = pd.to_datetime(_rows(engine, PaperOrder, first.account).bar_time, utc=True)
    assert third.bars == 1 and newest.iloc[-1] == ANCHOR + 8 * HOUR


def test_stop_event_ends_the_loop_between_bars(sqlite_engine, tmp_path, candles):
    clock = SimClock(ANCHOR + pd.Timedelta("10min"))
    stop = threading.Event()
    clock.at(ANCHOR + 2 * HOUR + pd.Timedelta("30min"), stop.set)
    res, _, _ = _run(sqlite_engine, tmp_path, candles, clock, MomentumProduction(),
                     max_bars=None, stop=stop)
    assert res.stopped == "signal" and res.bars == 2


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_stop_cleanly_between_bars(sqlite_engine, tmp_path, candles, sig):
    before = signal.getsignal(sig)
    clock = SimClock(ANCHOR + pd.Timedelta("10min"))
    clock.at(ANCHOR + 3 * HOUR + pd.Timedelta("20min"), lambda: os.kill(os.getpid(), sig))
    res, _, _ = _run(sqlite_engine, tmp_path, candles, clock, MomentumProduction(),
                     max_bars=None)
    assert res.stopped == "signal" and res.bars == 3
    assert len(_rows(sqlite_engine, PaperOrder, res.account)) == 3
    assert signal.getsignal(sig) is before  # the handlers are restored


# ---------------------------------------------------------------- kill -9 mid-step, restart

def _worker(tmp_path, start, max_bars, kill_after=None, account="paper-BTCUSDT-1h"):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), str(REPO / "tests" / "integration"), str(REPO / "tests" / "data")])}
    cmd = [sys.executable, str(REPO / "tests" / "integration" / "paper_live_worker.py"),
           "--db", str(tmp_path / "brain.db"), "--lake", str(tmp_path / "lake"),
           "--start", str(start), "--max-bars", str(max_bars), "--account", account]
    if kill_after is not None:
        cmd += ["--kill-at-order", str(kill_after)]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # two child processes (imports, real candles): about 30-60 s under load
def test_kill_9_mid_step_then_restart_no_double_rows_no_missed_bar(
        sqlite_engine, tmp_path, candles):
    sqlite_engine.dispose()
    # killed inside the transaction of the 4th bar's step (rows inserted, not committed)
    p = _worker(tmp_path, ANCHOR + pd.Timedelta("10min"), 6, kill_after=4)
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    eng = make_engine(f"sqlite:///{tmp_path / 'brain.db'}")
    account = "paper-BTCUSDT-1h"
    assert len(_rows(eng, PaperOrder, account)) == 3  # the 4th step was rolled back
    # restarted 5 minutes later: the killed bar is still fresh and gets decided
    p2 = _worker(tmp_path, ANCHOR + 4 * HOUR + pd.Timedelta("5min"), 3)
    assert p2.returncode == 0, p2.stderr[-2000:]
    summary = json.loads(p2.stdout.strip().splitlines()[-1])
    assert summary["bars"] == 3
    orders, fills, marks = (_rows(eng, t, account) for t in (PaperOrder, PaperFill, PaperMark))
    assert list(pd.to_datetime(orders.bar_time, utc=True)) == list(
        pd.date_range(ANCHOR, periods=6, freq=HOUR))
    assert (orders.status == "decided").all()
    for frame in (orders, fills, marks):
        assert not frame.bar_time.duplicated().any()
    assert len(fills) == len(marks) == 5
    # identical to an uninterrupted run of the same schedule
    clock = SimClock(ANCHOR + pd.Timedelta("10min"))
    _run(eng, tmp_path / "ref", candles, clock, MomentumProduction(), max_bars=6,
         spec={"account": "uninterrupted"})
    ref = _rows(eng, PaperMark, "uninterrupted")
    np.testing.assert_array_equal(marks.position.to_numpy(), ref.position.to_numpy())
    np.testing.assert_allclose(marks.equity.to_numpy(), ref.equity.to_numpy(), rtol=0,
                               atol=1e-12)
    eng.dispose()


# ---------------------------------------------------------------- HTTP production (no network)

class _Resp:
    def __init__(self, status, body):
        self.status_code, self._body = status, body
        self.text = body if isinstance(body, str) else json.dumps(body)

    def json(self):
        if isinstance(self._body, str):
            raise ValueError("not json")
        return self._body


class _Session:
    def __init__(self, answers):
        self.answers, self.posts = list(answers), []

    def post(self, url, json=None, timeout=None, headers=None):
        import requests

        self.posts.append((url, json))
        a = self.answers.pop(0)
        if isinstance(a, Exception):
            raise a
        if a == "refused":
            raise requests.ConnectionError("Connection refused")
        return _Resp(*a)


def test_http_production_probe_answer_errors_and_masked_label(candles):
    msg = ("request: 1 bar(s) given; the model needs at least 168 consecutive 1h bars (feature "
           "warm-up 167 + lookback 1) to answer one bar [rule: min_bars]")
    rows = [{"timestamp": "2019-05-02T00:00:00+00:00", "forecast": 0.001, "regime": "low",
             "position": 1.0, "size": 1.0, "leverage": 1.0, "sizer": None,
             "registered_model": "huracan-BTCUSDT-1h", "model_version": "3", "run_id": "abc"}]
    session = _Session([(400, {"error_code": "INVALID_PARAMETER_VALUE", "message": msg}),
                        (200, {"predictions": rows}), (503, "<html>503</html>"), "refused",
                        (400, {"message": "column 'high' row 2: high < low [rule: high_ge_low]"})])
    prod = HttpProduction("http://user:s3cret@127.0.0.1:5001/invocations", session=session)
    assert prod.label == "http://user:***@127.0.0.1:5001" and "s3cret" not in prod.label
    assert prod.warmup_bars == 167  # W + L - 1 from the min_bars line
    assert session.posts[0][1]["inputs"]["data"][0][0] == "2020-01-01T00:00:00Z"
    window = candles.iloc[1000:1003]
    ans = prod.answer(window)
    assert list(ans.columns)[:4] == ["timestamp", "forecast", "regime", "position"]
    assert ans.timestamp.iloc[0] == ANCHOR and ans.model_version.iloc[0] == "3"
    assert prod.version == "3" and prod.run_id == "abc"
    body = session.posts[1][1]["inputs"]
    assert body["columns"] == ["timestamp", "open", "high", "low", "close", "volume"]
    assert len(body["data"]) == 3 and body["data"][0][1] == window.open.iloc[0]
    with pytest.raises(ProductionUnavailableError, match="HTTP 503"):
        prod.answer(window)
    with pytest.raises(ProductionUnavailableError, match="ConnectionError") as err:
        prod.answer(window)
    assert "s3cret" not in str(err.value)
    with pytest.raises(ProductionRejectedError, match=r"\[rule: high_ge_low\]"):
        prod.answer(window)
    assert HttpProduction("http://h:1", warmup_bars=5).warmup_bars == 5
    with pytest.raises(ValueError, match="not an http"):
        HttpProduction("ftp://h")
    assert parse_answer({"predictions": []}).empty
    assert request_body(window)["inputs"]["data"][0][0].endswith("Z")


# ---------------------------------------------------------------- the command

def _cli():
    from typer.testing import CliRunner

    from huracan.cli.paper import paper_app

    return CliRunner(), paper_app


def test_command_refuses_bad_input_with_one_line(tmp_path, sqlite_template):
    shutil.copyfile(sqlite_template, tmp_path / "brain.db")
    runner, app = _cli()
    db = f"sqlite:///{tmp_path / 'brain.db'}"
    r = runner.invoke(app, ["run", "BTCUSDT", "--db-url", db, "--tracking-uri",
                            f"sqlite:///{tmp_path / 'mlflow.db'}"])
    assert r.exit_code == 2 and "is not BASE/QUOTE" in r.output
    assert len(r.output.strip().splitlines()) == 1
    r = runner.invoke(app, ["run", "BTC/USDT", "--timeframe", "7x", "--db-url", db])
    assert r.exit_code == 2 and r.output.startswith("error:")
    r = runner.invoke(app, ["run", "DOGE/USDT", "--db-url", db, "--tracking-uri",
                            f"sqlite:///{tmp_path / 'mlflow.db'}"])
    assert r.exit_code == 2, r.output
    errors = [x for x in r.output.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and "no registered model 'huracan-DOGEUSDT-1h'" in errors[0]


@pytest.fixture(scope="module")
def production_model(tmp_path_factory):
    from paper_model import train_production

    return train_production(tmp_path_factory.mktemp("paper-live-model"))


@pytest.mark.slow
def test_command_runs_bars_with_the_registered_model(production_model, tmp_path, monkeypatch,
                                                     candles):
    from huracan.data import sources

    pm = production_model
    servers = make_servers(candles)
    clock = SimClock(ANCHOR + pd.Timedelta("10min"))
    monkeypatch.setattr(sources, "make_downloader",
                        lambda sink: make_downloader(servers, clock, sink=sink))
    runner, app = _cli()
    args = ["run", "BTC/USDT", "--anchor", str(ANCHOR), "--max-bars", "3", "--lake",
            str(tmp_path / "lake"), "--db-url", pm.db_url, "--tracking-uri", pm.tracking_uri]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "paper-BTCUSDT-1h: 3 bar(s): 3 decided, 0 skipped" in r.output
    eng = make_engine(pm.db_url)
    orders = _rows(eng, PaperOrder, "paper-BTCUSDT-1h")
    assert len(orders) == 3 and (orders.model_version == pm.version).all()
    acct = PaperLedger(eng).account("paper-BTCUSDT-1h")
    assert acct.production == f"models:/{pm.name}@production"
    assert acct.execution["half_spread"] == "abdi_ranaldo"
    # a different anchor for the existing account is refused
    r = runner.invoke(app, [*args[:3], str(ANCHOR + HOUR), *args[4:]])
    assert r.exit_code == 2 and "differs" in r.output
    # no production alias: exit 1, one line
    pm.client.delete_registered_model_alias(pm.name, "production")
    try:
        r = runner.invoke(app, args)
        assert r.exit_code == 1 and "no production model for huracan-BTCUSDT-1h" in r.output
    finally:
        pm.client.set_registered_model_alias(pm.name, "production", pm.version)
    eng.dispose()


@pytest.mark.slow
def test_url_against_mlflow_models_serve_answers_like_the_registered_model(
        production_model, tmp_path, candles):
    import socket
    import time

    from runners import wait_for_ping

    from huracan.paper.production import RegisteredProduction

    pm = production_model
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MLFLOW_TRACKING_URI": pm.tracking_uri,
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    log = tmp_path / "serve.log"
    t0 = time.perf_counter()
    with log.open("wb") as out:
        srv = subprocess.Popen(
            [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m",
             f"models:/{pm.name}@production", "--env-manager", "local", "-h", "127.0.0.1",
             "-p", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_ping(srv, base, log, t0, timeout_s=180)
        http = HttpProduction(base)
        local = RegisteredProduction(pm.client, pm.name)
        assert http.warmup_bars == local.warmup_bars
        clock = SimClock(ANCHOR + pd.Timedelta("10min"))
        eng = make_engine(pm.db_url)
        res, _, _ = _run(eng, tmp_path, candles, clock, http, max_bars=4,
                         spec={"account": "paper-http"})
        assert res.decided == 4
        orders = _rows(eng, PaperOrder, "paper-http")
        assert (orders.model_version == pm.version).all()
        window = candles[(candles.timestamp >= ANCHOR - local.warmup_bars * HOUR)
                         & (candles.timestamp < ANCHOR + 4 * HOUR)].reset_index(drop=True)
        ref = local.answer(window).set_index("timestamp")
        from huracan.paper.loop import exposure

        expected = exposure(ref.reset_index()).astype(float)[-4:]
        np.testing.assert_array_equal(orders.target_position.to_numpy(), expected)
        eng.dispose()
    finally:
        os.killpg(srv.pid, signal.SIGTERM)
        srv.wait(timeout=30)
