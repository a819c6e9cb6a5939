"""Helpers of the live paper-loop tests (tests/integration/test_paper_live.py) and of their
kill -9 worker (paper_live_worker.py): a simulated clock, offline exchanges answering from the
real BTC/USDT 1h candles of ../shared/data (tests/data/fake_exchanges.py: real ccxt objects,
HTTP stubbed), a Downloader on that clock, and a deterministic stand-in for production.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "data"))  # fake_exchanges, data_paths

from data_paths import SPOT_1H  # noqa: E402
from fake_exchanges import FakeExchangeServer, Series  # noqa: E402

from huracan.data.candle_request import OUTPUT_COLUMNS  # noqa: E402
from huracan.data.sources import Downloader, RetryPolicy, make_exchange  # noqa: E402

EXCHANGES = ("binance", "bybit", "okx")
#: the klines path of each exchange (a substring FakeExchangeServer.fail matches)
KLINES = {"binance": "klines", "bybit": "kline", "okx": "candles"}
#: first bar of the live tests: after the test model's training data (2019-01-01..05-01)
ANCHOR = pd.Timestamp("2019-05-02 00:00", tz="UTC")


def real_candles() -> pd.DataFrame:
    df = pd.read_parquet(SPOT_1H)
    df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
    return df[["timestamp", "open", "high", "low", "close", "volume"]].reset_index(drop=True)


class SimClock:
    """A simulated UTC clock: ``sleep`` advances it; ``hooks`` (time, fn) run once when it
    passes their time (to start or end an outage at a given moment)."""

    def __init__(self, start: pd.Timestamp) -> None:
        self.t = pd.Timestamp(start)
        self.slept: list[float] = []
        self.hooks: list[tuple[pd.Timestamp, Callable[[], None]]] = []

    def now(self) -> pd.Timestamp:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(float(seconds))
        self.t = (self.t + pd.Timedelta(seconds=float(seconds))).floor("us")
        due = [h for h in self.hooks if h[0] <= self.t]
        self.hooks = [h for h in self.hooks if h[0] > self.t]
        for _, fn in due:
            fn()

    def at(self, when: pd.Timestamp, fn: Callable[[], None]) -> None:
        self.hooks.append((pd.Timestamp(when), fn))


def make_servers(candles: pd.DataFrame) -> dict[str, FakeExchangeServer]:
    """binance, bybit and okx answering BTC/USDT spot 1h from ``candles``."""
    return {ex: FakeExchangeServer(ex, {"BTC/USDT": Series({"1h": candles})}, {})
            for ex in EXCHANGES}


def make_downloader(servers: dict[str, FakeExchangeServer], clock: SimClock, sink: Any = None,
                    retry: RetryPolicy | None = None) -> Downloader:
    """A Downloader over ``servers`` on the simulated clock (its retry waits advance it)."""

    def factory(exchange_id: str) -> Any:
        ex = make_exchange(exchange_id)
        ex.enableRateLimit = False
        return servers[exchange_id].attach(ex)

    return Downloader(EXCHANGES, factory=factory, retry=retry or RetryPolicy(),
                      sleep=clock.sleep, sink=sink, now=clock.now)


def outage(servers: dict[str, FakeExchangeServer], kind: str = "503") -> None:
    """Every exchange answers its klines endpoint with ``kind`` until :func:`recover`."""
    for ex, srv in servers.items():
        srv.fail(KLINES[ex], kind, times=10**6)


def recover(servers: dict[str, FakeExchangeServer]) -> None:
    for srv in servers.values():
        srv.failures.clear()


class MomentumProduction:
    """A deterministic production stand-in: position = sign of the 24-bar return, answered
    from the 25th bar of each request (so ``warmup_bars`` = 24); answers for a bar depend on
    earlier bars only (the serving prefix property). ``down`` calls fail first (unreachable)."""

    label = "test:momentum"
    warmup_bars = 24

    def __init__(self, down: int = 0) -> None:
        self.calls = 0
        self.down = down

    def answer(self, candles: pd.DataFrame) -> pd.DataFrame:
        from huracan.paper.http import ProductionUnavailableError

        self.calls += 1
        if self.down > 0:
            self.down -= 1
            raise ProductionUnavailableError("http://test/invocations: ConnectionError: refused")
        close = candles["close"].to_numpy(np.float64)
        ts = pd.to_datetime(candles["timestamp"], utc=True).reset_index(drop=True)
        rows = []
        for i in range(self.warmup_bars, len(close)):
            r = close[i] / close[i - self.warmup_bars] - 1.0
            pos = float(np.sign(r))
            rows.append({"timestamp": ts[i], "forecast": r, "regime": None, "position": pos,
                         "size": abs(pos), "leverage": 1.0, "sizer": None,
                         "registered_model": "huracan-BTCUSDT-1h", "model_version": "1",
                         "run_id": "momentum"})
        return pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS))


def account_spec(production: Any, anchor: pd.Timestamp = ANCHOR, account: str | None = None,
                 execution: dict[str, Any] | None = None) -> Any:
    from huracan.evaluation.backtest import BacktestConfig
    from huracan.paper.ledger import AccountSpec, account_name
    from huracan.paper.loop import execution_settings

    return AccountSpec(
        account=account or account_name("BTC/USDT", "1h"), symbol="BTC/USDT", timeframe="1h",
        mode="live", model_name="huracan-BTCUSDT-1h", production=production.label,
        anchor=anchor,
        execution=execution or execution_settings(
            BacktestConfig(half_spread="abdi_ranaldo"), "BTC/USDT", "1h"))
