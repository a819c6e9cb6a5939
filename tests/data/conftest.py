"""Fixtures for the data-download tests: real files from ../shared/data, offline exchanges, a
migrated SQLite brain store, one shared GX runner (importing GX takes seconds)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
from data_paths import FUNDING, LIQUIDATIONS, NOW, OPEN_INTEREST, PERP_1H, SPOT_1H
from fake_exchanges import FakeExchangeServer, Series
from sqlalchemy import Engine

from huracan.data.sources import Downloader, RetryPolicy, make_exchange


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Every test here runs offline: an attempt to open a network connection fails loudly."""

    def refuse(self: socket.socket, address: object, *args: object) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise RuntimeError(f"test tried to reach the network: {address!r}")
        return original(self, address, *args)

    original = socket.socket.connect
    monkeypatch.setattr(socket.socket, "connect", refuse)


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not found (../shared/data is expected beside the checkout)")
    return path


@pytest.fixture(scope="session")
def spot_1h() -> pd.DataFrame:
    """Real Binance spot BTC/USDT 1h candles, 2018-2024, exchange gaps left in."""
    return pd.read_parquet(_need(SPOT_1H))


@pytest.fixture(scope="session")
def perp_1h() -> pd.DataFrame:
    return pd.read_parquet(_need(PERP_1H))


@pytest.fixture(scope="session")
def funding() -> pd.DataFrame:
    return pd.read_parquet(_need(FUNDING))


@pytest.fixture(scope="session")
def open_interest(spot_1h: pd.DataFrame) -> pd.DataFrame:
    """The real daily BTC open interest (USD) with contracts derived at the day's spot open
    (the file gives USD only; Binance's openInterestHist returns both)."""
    oi = pd.read_parquet(_need(OPEN_INTEREST))
    px = spot_1h.set_index("timestamp")["open"]
    price = px.reindex(oi["timestamp"]).to_numpy()
    return oi.assign(open_interest=oi["open_interest_usd"] / price).dropna().reset_index(
        drop=True)


@pytest.fixture(scope="session")
def liquidation_events() -> pd.DataFrame:
    return pd.read_parquet(_need(LIQUIDATIONS))


@pytest.fixture(scope="session")
def runner():
    from huracan.data.validate import SuiteRunner

    return SuiteRunner()


@pytest.fixture
def servers(spot_1h, perp_1h, funding, open_interest) -> dict[str, FakeExchangeServer]:
    """binance, bybit and okx answering from the same real candles (BTC/USDT spot and perp;
    ETH/USDT listed only on bybit's spot market, to exercise BadSymbol fallback)."""
    spot = {"BTC/USDT": Series({"1h": spot_1h})}
    perp = {"BTC/USDT": Series({"1h": perp_1h}, funding=funding,
                               open_interest=open_interest)}
    out = {ex: FakeExchangeServer(ex, dict(spot), dict(perp)) for ex in ("binance", "okx")}
    bybit_spot = dict(spot)
    bybit_spot["ETH/USDT"] = Series({"1h": spot_1h})  # prices do not matter for listing tests
    out["bybit"] = FakeExchangeServer("bybit", bybit_spot, dict(perp))
    return out


class SleepRecorder:
    """Stands in for ``time.sleep``: records the backoff waits instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def make_downloader(servers) -> Callable[..., tuple[Downloader, SleepRecorder]]:
    """A Downloader whose exchanges are REAL ccxt objects (``make_exchange``) with their HTTP
    stubbed by ``servers``; waits recorded, not slept."""

    def build(exchanges=("binance", "bybit", "okx"), *, sink=None, retry=None,
              now=NOW) -> tuple[Downloader, SleepRecorder]:
        def factory(exchange_id: str):
            ex = make_exchange(exchange_id)
            ex.enableRateLimit = False  # ccxt's throttle would sleep between stubbed calls
            return servers[exchange_id].attach(ex)

        sleep = SleepRecorder()
        dl = Downloader(exchanges, factory=factory, retry=retry or RetryPolicy(), sleep=sleep,
                        sink=sink, now=lambda: now)
        return dl, sleep

    return build


@pytest.fixture
def engine(tmp_path, sqlite_template) -> Iterator[Engine]:
    """A fresh SQLite brain store at the head revision (a copy of the session's migrated
    template, tests/conftest.py)."""
    import shutil

    from huracan.db.session import make_engine

    shutil.copyfile(sqlite_template, tmp_path / "brain.db")
    eng = make_engine(f"sqlite:///{tmp_path / 'brain.db'}")
    yield eng
    eng.dispose()


class ListSink:
    """A QualitySink keeping issues in memory."""

    def __init__(self) -> None:
        self.issues: list = []

    def write(self, issue) -> None:
        self.issues.append(issue)

    def types(self) -> list[str]:
        return [i.issue_type for i in self.issues]


@pytest.fixture
def sink() -> ListSink:
    return ListSink()
