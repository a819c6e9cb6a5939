"""The nightly's online download step against the stubbed exchanges (real ccxt objects, HTTP
answered from real recorded data): candles into the lake, funding and open interest into the
store, incremental on a rerun."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import text

from huracan.data import sources
from huracan.data.lake import CandleLake
from huracan.orchestration.steps import NightSettings, step_download


def _settings(tmp_path, engine, **kw) -> NightSettings:
    base = dict(
        run_id="n1", timeframe="1h", offline=False, lake=str(tmp_path / "lake"),
        exchange="binance", source_timeframe="1h", since="2024-01-01", until="2024-01-03",
        history_days=None, imports={}, derivatives=("funding", "open_interest"),
        allow_degraded=False, models=("lightgbm",), train_overrides=(), launcher="basic",
        launcher_jobs=2, threads=None, monitor=False, monitor_window="30d", drift_share=0.5,
        weekly_rescale=False, sizer=False, sizer_every_days=7.0, sizer_overrides=(),
        work_dir=str(tmp_path / "work"), cwd=str(tmp_path), db_url=str(engine.url),
        tracking_uri=None, store_dir=str(tmp_path / "mlruns"), experiment_name="huracan")
    base.update(kw)
    return NightSettings(**base)  # type: ignore[arg-type]


@pytest.fixture
def stubbed(monkeypatch, make_downloader):
    monkeypatch.setattr(sources, "make_downloader", lambda sink: make_downloader(sink=sink)[0])


def test_online_download_fills_lake_and_store_then_only_what_is_new(stubbed, engine, tmp_path):
    s = _settings(tmp_path, engine)
    detail, runs = step_download(s, "BTC/USDT")
    assert runs == []
    assert "fetched 48 row(s)" in detail and "funding:" in detail and "open_interest:" in detail
    assert "liquidations: 0 event(s)" in detail
    assert len(CandleLake(s.lake).read("binance", "BTC/USDT", "1h")) == 48
    with engine.connect() as conn:
        funding = conn.execute(text("SELECT count(*) FROM funding_rates")).scalar_one()
    assert funding > 0
    # the next night asks only for the bars closed since
    later = replace(s, run_id="n2", until="2024-01-04")
    detail2, _ = step_download(later, "BTC/USDT")
    assert "fetched 24 row(s)" in detail2
    assert len(CandleLake(s.lake).read("binance", "BTC/USDT", "1h")) == 72


def test_offline_download_never_touches_the_network_and_needs_the_lake(engine, tmp_path):
    s = _settings(tmp_path, engine, offline=True)
    with pytest.raises(FileNotFoundError, match="huracan lake import"):
        step_download(s, "BTC/USDT")
