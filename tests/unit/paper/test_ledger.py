"""The paper ledger and one bar's step with hand-computed numbers (fill, mark, skip, gap,
idempotence), on SQLite and Postgres (``engine`` fixture: the Postgres variant skips without
HURACAN_TEST_PG_URL)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine, func, select

from huracan.data.candle_request import OUTPUT_COLUMNS
from huracan.data.prediction_store import chain_digests
from huracan.evaluation.backtest import BacktestConfig
from huracan.paper import loop, production
from huracan.paper.ledger import (
    AccountSpec,
    PaperLedger,
    UnknownAccountError,
    account_name,
    paper_result,
)
from huracan.paper.loop import PREDICTIONS, exposure, market_frame, step

T0 = pd.Timestamp("2024-01-01", tz="UTC")
H = pd.Timedelta("1h")
FEE = 0.001
#: bars t0..t4, t5 missing (a gap), t6, t7; the open of t2 differs from t1's close (gap leg)
TIMES = [T0 + i * H for i in (0, 1, 2, 3, 4, 6, 7)]
CLOSE = [100.0, 110.0, 121.0, 110.0, 100.0, 100.0, 105.0]
OPEN = [100.0, 100.0, 111.0, 121.0, 110.0, 99.0, 100.0]


def candles() -> pd.DataFrame:
    return pd.DataFrame({"timestamp": TIMES, "open": OPEN,
                         "high": np.maximum(OPEN, CLOSE) + 1.0,
                         "low": np.minimum(OPEN, CLOSE) - 1.0, "close": CLOSE,
                         "volume": 10.0})


def execution() -> dict[str, object]:
    cfg = BacktestConfig(fee=FEE, half_spread=0.0, slippage_bps=0.0, borrow_rate=0.0)
    return loop.execution_settings(cfg, "BTC/USDT", "1h")


def answers(positions: dict[pd.Timestamp, float]) -> pd.DataFrame:
    rows = [{"timestamp": t, "forecast": p * 0.01, "regime": None, "position": p,
             "size": abs(p), "leverage": 1.0, "sizer": None, "registered_model": "huracan-X-1h",
             "model_version": "3", "run_id": "r1"} for t, p in positions.items()]
    return pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS))


def spec(mode: str = "replay", name: str = "acct") -> AccountSpec:
    return AccountSpec(account=name, symbol="BTC/USDT", timeframe="1h", mode=mode,
                       model_name="huracan-BTCUSDT-1h", production="models:/x@production",
                       anchor=T0, execution=execution())


def upto(t: pd.Timestamp) -> pd.DataFrame:
    c = candles()
    return c[c.timestamp <= t].reset_index(drop=True)


def test_account_names_and_modules_import() -> None:
    assert account_name("BTC/USDT", "1h") == "paper-BTCUSDT-1h"
    assert account_name("BTC/USDT:USDT", "4h", "replay", "2019-05-01", "2019-07-01") == \
        "replay-BTCUSDTUSDT-4h-2019050100-2019070100"
    with pytest.raises(ValueError, match="start and end"):
        account_name("BTC/USDT", "1h", "replay")
    assert production.Production is not None


def test_exposure_and_market_frame() -> None:
    a = answers({T0: 1.0, T0 + H: float("nan")})
    np.testing.assert_array_equal(exposure(a), [1.0, 0.0])
    a["sizer"] = "huracan-sizer-X-1h/1:ppo"
    a["forecast"] = [-0.02, 0.01]
    a["size"], a["leverage"] = [0.5, 0.25], [2.0, 1.0]
    np.testing.assert_array_equal(exposure(a), [-1.0, 0.25])
    f = market_frame(candles(), "1h")
    assert f["next_open"].iloc[1] == 111.0
    assert f["next_return"].iloc[1] == 121.0 / 110.0 - 1.0
    assert np.isnan(f["next_return"].iloc[4]) and np.isnan(f["next_open"].iloc[4])  # gap
    assert np.isnan(f["next_return"].iloc[-1])


def test_fill_delay_is_refused() -> None:
    bad = {**execution(), "fill": "delay"}
    with pytest.raises(ValueError, match="fill=delay is not supported"):
        loop.execution_config(bad)


def test_step_fill_mark_skip_gap_by_hand(engine: Engine) -> None:
    ledger = PaperLedger(engine)
    s = ledger.open(spec())
    pos = {TIMES[0]: 1.0, TIMES[1]: -1.0, TIMES[2]: 0.5, TIMES[4]: 1.0, TIMES[5]: -1.0,
           TIMES[6]: 0.0}
    a = answers(pos)
    out = step(ledger, s, upto(TIMES[0]), a)
    assert (out.status, out.filled, out.target_position) == ("decided", False, 1.0)
    out = step(ledger, s, upto(TIMES[1]), a)
    # order t0 filled at O_1 = 100: gap 0, hold 110/100 - 1, cost fee * 1
    assert out.filled and out.net_return == pytest.approx(0.1 - FEE, abs=1e-15)
    out = step(ledger, s, upto(TIMES[2]), a)
    # order t1 (-1) filled at O_2 = 111 from +1: gross = (111/110)(1 - (121/111 - 1)) - 1
    gross = (1 + (111 / 110 - 1)) * (1 - (121 / 111 - 1)) - 1
    assert out.net_return == pytest.approx(gross - 2 * FEE, abs=1e-15)
    assert out.equity == pytest.approx((1.1 - FEE) * (1 + gross - 2 * FEE), abs=1e-15)
    again = step(ledger, s, upto(TIMES[2]), a)  # idempotent
    assert (again.status, again.written) == ("exists", False)
    out = step(ledger, s, upto(TIMES[3]), a, skip_reason="stale bar: test")
    assert out.status == "skipped" and out.target_position == 0.5 and out.filled
    out = step(ledger, s, upto(TIMES[4]), a)  # t3 was skipped: nothing to fill
    assert out.status == "decided" and not out.filled
    out = step(ledger, s, upto(TIMES[4]), a, bar_time=TIMES[4] + H)  # t5 missing
    assert out.status == "skipped" and out.reason == loop.MISSING_BAR and not out.filled
    step(ledger, s, upto(TIMES[5]), a)
    out = step(ledger, s, upto(TIMES[6]), a)
    assert out.filled  # t6 filled at O_7 = 100 from the last marked position 0.5
    fills, marks, orders = ledger.fills("acct"), ledger.marks("acct"), ledger.orders("acct")
    assert list(fills["bar_time"]) == [TIMES[0], TIMES[1], TIMES[2], TIMES[5]]
    assert list(marks["bar_time"]) == list(fills["bar_time"])  # t4 (before the gap): never
    assert list(fills["fill_price"]) == [100.0, 111.0, 121.0, 100.0]
    assert list(marks["prev_position"]) == [0.0, 1.0, -1.0, 0.5]
    last = marks.iloc[-1]
    r = 105.0 / 100.0 - 1.0
    assert last["gross_return"] == pytest.approx(0.5 * (100 / 100 - 1) + (-1.0) * r, abs=1e-15)
    assert last["cost"] == pytest.approx(1.5 * FEE, abs=1e-15)
    eq = np.cumprod(1.0 + marks["net_return"].to_numpy())
    np.testing.assert_allclose(marks["equity"], eq, rtol=0, atol=1e-15)
    assert list(orders["status"]) == ["decided", "decided", "decided", "skipped", "decided",
                                      "skipped", "decided", "decided"]
    assert orders["decided_at"].iloc[0] == TIMES[0] + H  # replay: the bar's close
    assert ledger.last_order_time("acct") == TIMES[6]
    with engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(PREDICTIONS)).scalar()
        digest = conn.execute(select(PREDICTIONS.c.inputs_digest)
                              .where(PREDICTIONS.c.bar_time == TIMES[2])).scalar()
    assert n == 6 and digest == chain_digests(upto(TIMES[2]))[-1]
    assert orders["prediction_id"].notna().sum() == 6
    res = paper_result(ledger, "acct")
    np.testing.assert_array_equal(res.returns["strategy_return"], marks["net_return"])
    assert res.metrics.total_return == pytest.approx(eq[-1] - 1.0, abs=1e-12)
    with pytest.raises(ValueError, match="before the account's anchor"):
        step(ledger, s, upto(TIMES[1]), a, bar_time=T0 - H)


def test_ledger_accounts_heartbeat_and_errors(engine: Engine) -> None:
    ledger = PaperLedger(engine)
    assert ledger.account("nope") is None
    with pytest.raises(UnknownAccountError, match="no paper account 'nope'"):
        ledger.heartbeat("nope", datetime.now(UTC))
    s = ledger.open(spec("live", "paper-BTCUSDT-1h"))
    other = AccountSpec(**{**asdict(s), "anchor": T0 + H})
    assert ledger.open(other).anchor == T0  # the stored account wins
    ledger.heartbeat(s.account, datetime(2024, 1, 2, tzinfo=UTC))
    assert ledger.last_order_time(s.account) is None
    with pytest.raises(ValueError, match="no marks"):
        paper_result(ledger, s.account)
    assert ledger.account(s.account) == s
