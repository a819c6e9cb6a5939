"""The prediction log's queue and background writer (huracan.serving.prediction_log) on a real
SQLite brain store: rows and inputs written, a real store outage (the database file's directory
moved away, then back) leaves submit() under 1 ms, counts rows pending, alerts, writes them once
the store is back, and drops (counted, alerted once) beyond the backlog bound; the env switch."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from huracan.data.candle_request import OUTPUT_COLUMNS, ServingSpec
from huracan.data.prediction_store import inputs_digest, read_predictions
from huracan.db.session import make_engine
from huracan.serving import prediction_log as pl
from huracan.serving.prediction_log import LOG_ENV, PredictionLog, log_url_from_env

T0 = pd.Timestamp("2024-03-01", tz="UTC")


class Recorder:
    """A Notifier that records alerts (optionally blocking until released)."""

    def __init__(self, block: threading.Event | None = None) -> None:
        self.alerts: list = []
        self.block = block

    def notify(self, alert) -> None:
        self.alerts.append(alert)
        if self.block is not None:
            self.block.wait(10)


def request(i: int, n: int = 40) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Candles of request ``i`` (n bars ending at bar i + n) and a 5-row answer."""
    rng = np.random.default_rng(i)
    ts = pd.date_range(T0 + pd.Timedelta(hours=i), periods=n, freq="1h", tz="UTC")
    close = 100 + np.cumsum(rng.normal(0, 1, n))
    frame = pd.DataFrame({"timestamp": ts.map(lambda t: t.isoformat()), "open": close,
                          "high": close + 1, "low": close - 1, "close": close,
                          "volume": rng.uniform(1, 2, n)})
    k = 5
    answer = pd.DataFrame({"timestamp": ts[-k:], "forecast": rng.normal(0, 0.01, k),
                           "regime": ["normal"] * k, "position": np.sign(rng.normal(0, 1, k)),
                           "size": np.ones(k), "leverage": np.ones(k), "sizer": [None] * k,
                           "registered_model": ["huracan-BTCUSDT-1h"] * k,
                           "model_version": ["2"] * k, "run_id": ["r1"] * k},
                          columns=list(OUTPUT_COLUMNS))
    return frame, answer


META = {"source": "serve", "symbol": "BTC/USDT", "timeframe": "1h", "latency_ms": 7.0,
        "execution": {"fee": 0.001, "fill": "next_open"}}


@pytest.fixture()
def store(tmp_path, sqlite_template) -> tuple[Path, str]:
    """A migrated SQLite brain store in its own directory (moved away to make an outage)."""
    d = tmp_path / "store"
    d.mkdir()
    shutil.copyfile(sqlite_template, d / "brain.db")
    return d, f"sqlite:///{d / 'brain.db'}"


def make_log(url: str, tmp_path: Path, notifier, **kw) -> PredictionLog:
    kw = {"backoff_s": 0.05, "max_backoff_s": 0.2, "register_atexit": False, **kw}
    return PredictionLog(url, tmp_path / "inputs", notifier=notifier, **kw)


def rows_of(url: str) -> pd.DataFrame:
    eng = make_engine(url)
    try:
        return read_predictions(eng)
    finally:
        eng.dispose()


def test_rows_and_inputs_are_written(store, tmp_path):
    _, url = store
    rec = Recorder()
    log = make_log(url, tmp_path, rec)
    sent = [request(i) for i in range(20)]
    for frame, answer in sent:
        assert log.submit(frame, answer, META)
    assert log.flush(10)
    st = log.close()
    assert st["written"] == 20 and st["pending"] == 0 and st["dropped"] == 0
    got = rows_of(url).sort_values("bar_time").reset_index(drop=True)
    assert len(got) == 20
    for (frame, answer), (_, row) in zip(sent, got.iterrows(), strict=True):
        last = answer.iloc[-1]
        assert row["bar_time"] == last["timestamp"] and row["forecast"] == last["forecast"]
        assert row["position"] == last["position"] and row["model_version"] == "2"
        assert row["source"] == "serve" and row["inputs_rows"] == 40 and row["latency_ms"] == 7
        assert row["execution"] == META["execution"] and row["run_id"] == "r1"
        assert row["inputs_digest"] == inputs_digest(frame)
        assert inputs_digest(pd.read_parquet(row["inputs_path"])) == row["inputs_digest"]
    assert rec.alerts == []


def test_store_outage_requests_unslowed_rows_pending_alerted_then_written(store, tmp_path):
    directory, url = store
    rec = Recorder()
    log = make_log(url, tmp_path, rec)
    log.submit(*request(0), META)
    assert log.flush(10) and log.written == 1
    away = directory.with_name("store-away")
    directory.rename(away)  # the store is gone: every connection fails
    times = []
    for i in range(1, 201):
        frame, answer = request(i)
        t0 = time.perf_counter()
        assert log.submit(frame, answer, META)
        times.append(time.perf_counter() - t0)
    assert max(times) < 1e-3, f"submit took {max(times) * 1e3:.2f} ms at worst"
    assert not log.flush(1.0)  # cannot be written now
    st = log.stats()
    assert st["pending"] == 200 and st["written"] == 1 and st["dropped"] == 0
    assert st["failed_attempts"] >= 1 and "unable to open database file" in st["last_error"]
    assert [a.severity for a in rec.alerts] == ["critical"]
    assert "unreachable" in rec.alerts[0].title and rec.alerts[0].details["store"] == url
    away.rename(directory)  # back
    assert log.flush(10)
    st = log.close()
    assert st["written"] == 201 and st["pending"] == 0 and st["dropped"] == 0
    assert len(rows_of(url)) == 201
    assert rec.alerts[-1].severity == "info" and "back" in rec.alerts[-1].title
    assert rec.alerts[-1].details["dropped_in_outage"] == 0


def test_backlog_bound_drops_counted_and_alerted_once(store, tmp_path):
    directory, url = store
    rec = Recorder()
    log = make_log(url, tmp_path, rec, max_backlog=5)
    away = directory.with_name("store-away")
    directory.rename(away)
    for i in range(12):
        log.submit(*request(i), META)
    deadline = time.monotonic() + 10
    while log.stats()["pending"] + log.stats()["dropped"] != 12 or log.stats()["dropped"] < 7:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    for i in range(12, 15):
        log.submit(*request(i), META)
    time.sleep(0.3)
    st = log.stats()
    assert st["pending"] == 5 and st["dropped"] == 10
    titles = [a.title for a in rec.alerts]
    assert titles.count("prediction log: rows dropped") == 1  # once per outage
    assert rec.alerts[1].details["dropped"] >= 7
    away.rename(directory)
    assert log.flush(10)
    st = log.close()
    assert st["written"] == 5 and st["dropped"] == 10
    assert rec.alerts[-1].details["dropped_in_outage"] == 10
    assert len(rows_of(url)) == 5


def test_full_queue_drops_without_blocking(store, tmp_path):
    """A writer stuck on a slow alert channel: the queue fills, submit() still returns at
    once and counts the drops."""
    directory, url = store
    release = threading.Event()
    rec = Recorder(block=release)
    log = make_log(url, tmp_path, rec, queue_size=3)
    directory.rename(directory.with_name("store-away"))
    log.submit(*request(0), META)
    deadline = time.monotonic() + 10
    while not rec.alerts:  # the writer is now blocked in notify()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    results, times = [], []
    for i in range(1, 11):
        frame, answer = request(i)
        t0 = time.perf_counter()
        results.append(log.submit(frame, answer, META))
        times.append(time.perf_counter() - t0)
    assert results == [True] * 3 + [False] * 7 and max(times) < 1e-3
    assert log.stats()["dropped"] == 7
    release.set()
    directory.with_name("store-away").rename(directory)
    assert log.flush(10)
    assert log.close()["written"] == 4


def test_env_switch_off_by_default(monkeypatch, tmp_path):
    monkeypatch.delenv(LOG_ENV, raising=False)
    assert log_url_from_env() is None and PredictionLog.from_env() is None
    for off in ("off", "0", "OFF", " "):
        assert log_url_from_env({LOG_ENV: off}) is None
    monkeypatch.setenv("HURACAN_DB_URL", "sqlite:///x.db")
    assert log_url_from_env({LOG_ENV: "on"}) == "sqlite:///x.db"
    assert log_url_from_env({LOG_ENV: "1"}) == "sqlite:///x.db"
    assert log_url_from_env({LOG_ENV: "postgresql://u@h/db"}) == "postgresql://u@h/db"
    pl.reset_process_log()
    assert pl.process_log() is None
    pl.reset_process_log()


def test_pyfunc_hook_logs_in_process(monkeypatch, store, tmp_path):
    """The served model's hook (huracan.serving.pyfunc._log_answer): on via the env var, one
    row per request, source in_process outside mlflow models serve; a broken answer never
    raises."""
    from huracan.serving.pyfunc import _log_answer

    _, url = store
    monkeypatch.setenv(LOG_ENV, url)
    monkeypatch.setenv("HURACAN_PREDICTION_INPUTS", str(tmp_path / "inputs"))
    monkeypatch.delenv("_MLFLOW_IS_IN_SERVING_ENVIRONMENT", raising=False)
    pl.reset_process_log()
    spec = ServingSpec(symbol="BTC/USDT", timeframe="1h", registered_model="huracan-BTCUSDT-1h",
                       run_id=None, features={}, feature_names=[])
    frame, answer = request(3)
    _log_answer(spec, frame, answer, 4.2)
    _log_answer(spec, frame, answer.drop(columns=["registered_model"]), 1.0)  # not logged
    plog = pl.process_log()
    assert plog is not None and plog.inputs_root == tmp_path / "inputs"
    assert plog.flush(10)
    pl.reset_process_log()
    got = rows_of(url)
    assert len(got) == 1 and got["source"].iloc[0] == "in_process"
    assert got["latency_ms"].iloc[0] == pytest.approx(4.2) and got["execution"].iloc[0] is None
    monkeypatch.setenv("_MLFLOW_IS_IN_SERVING_ENVIRONMENT", "true")
    assert pl.serving_source() == "serve"
