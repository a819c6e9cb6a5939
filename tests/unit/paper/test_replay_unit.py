"""The replay on real candles with a stand-in production (a causal rule on the last return,
no model): parity with the backtest of its answers, resumption after an interruption, and the
command's input errors (exit 2, one line)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from huracan.cli.paper import paper_app
from huracan.data.candle_request import OUTPUT_COLUMNS
from huracan.evaluation.backtest import BacktestConfig
from huracan.paper import loop
from huracan.paper.ledger import AccountSpec, PaperLedger

BTC_1H = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "ohlcv" / \
    "binance-spot_BTCUSDT_1h_20180101-20241231.parquet"
ANCHOR = pd.Timestamp("2019-05-10", tz="UTC")
END = pd.Timestamp("2019-05-25", tz="UTC")  # the exchange's gap of 2019-05-15 02:00-13:00


class SignOfLastReturn:
    """A causal stand-in: long after an up bar, short after a down bar, from the 5th bar of
    each gap-free run (a warm-up, like a real model's)."""

    label = "stand-in"
    warmup_bars = 4

    def answer(self, candles: pd.DataFrame) -> pd.DataFrame:
        c = candles.reset_index(drop=True)
        ts = pd.DatetimeIndex(pd.to_datetime(c["timestamp"], utc=True))
        run = np.concatenate([[True], np.diff(ts.as_unit("ns").asi8) != 3_600_000_000_000]).cumsum()
        pos_in_run = c.groupby(run).cumcount().to_numpy()
        r = c["close"].pct_change().to_numpy()
        keep = pos_in_run >= self.warmup_bars
        n = int(keep.sum())
        return pd.DataFrame({"timestamp": ts[keep], "forecast": r[keep],
                             "regime": None, "position": np.sign(r[keep]),
                             "size": np.abs(np.sign(r[keep])), "leverage": 1.0,
                             "sizer": None, "registered_model": "stand-in",
                             "model_version": "1", "run_id": None},
                            columns=list(OUTPUT_COLUMNS)).iloc[:n]


def candles() -> pd.DataFrame:
    df = pd.read_parquet(BTC_1H)
    df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
    df = df[(df.timestamp >= "2019-05-01") & (df.timestamp < "2019-06-01")]
    return df[["timestamp", "open", "high", "low", "close", "volume"]].reset_index(drop=True)


def spec(name: str) -> AccountSpec:
    cfg = BacktestConfig(half_spread="abdi_ranaldo", spread_window=24)
    return AccountSpec(account=name, symbol="BTC/USDT", timeframe="1h", mode="replay",
                       model_name="stand-in", production="stand-in", anchor=ANCHOR,
                       execution=loop.execution_settings(cfg, "BTC/USDT", "1h"))


def test_replay_equals_backtest_and_resumes(engine: Engine, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    prod, c = SignOfLastReturn(), candles()
    whole = loop.replay(engine, prod, spec("whole"), c, end=END, chunk=50)
    assert whole.bars == 15 * 24 and whole.skipped == 10 + 4  # missing bars + warm-up
    request = loop.request_candles(c, ANCHOR, prod.warmup_bars, "1h", END)
    bt = loop.backtest_answers(prod.answer(request), request, spec("x").execution,
                               anchor=ANCHOR, end=END)
    marks = PaperLedger(engine).marks("whole")
    assert len(marks) == len(bt.returns) == whole.marks
    np.testing.assert_array_equal(marks["position"], bt.returns["position"])
    assert np.max(np.abs(marks["net_return"] - bt.returns["strategy_return"])) <= 1e-12

    def boom(n: int) -> None:
        if n == 3:
            raise KeyboardInterrupt  # an interruption after 3 committed chunks

    monkeypatch.setattr(loop, "_chunk_done", boom)
    with pytest.raises(KeyboardInterrupt):
        loop.replay(engine, prod, spec("cut"), c, end=END, chunk=50)
    monkeypatch.undo()
    assert len(PaperLedger(engine).orders("cut")) == 150
    rest = loop.replay(engine, prod, spec("cut"), c, end=END, chunk=50)
    assert rest.resumed_after == ANCHOR + 149 * pd.Timedelta("1h") and rest.bars == 210
    ledger = PaperLedger(engine)
    for table in ("orders", "fills", "marks"):
        a, b = (getattr(ledger, table)(n).drop(columns=["account"]) for n in ("whole", "cut"))
        a, b = (x.drop(columns=["prediction_id"], errors="ignore") for x in (a, b))
        pd.testing.assert_frame_equal(a, b)
    again = loop.replay(engine, prod, spec("cut"), c, end=END, chunk=50)
    assert again.bars == 0 and again.decided == 0


@pytest.mark.parametrize("args, message", [
    (["--start", "2019-06-01", "--end", "2019-05-01"], "must be after --start"),
    (["--start", "yesterday-ish", "--end", "2019-05-01"], "cannot read --start"),
])
def test_replay_command_bad_input_exit_2(args: list[str], message: str) -> None:
    out = CliRunner().invoke(paper_app, ["replay", "BTC/USDT", *args])
    assert out.exit_code == 2, out.output
    lines = [x for x in out.output.splitlines() if x.strip()]
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("error: ")
