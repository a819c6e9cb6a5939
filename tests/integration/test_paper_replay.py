"""The paper replay of a real production model (tests/integration/paper_model.py: LightGBM on
real BTC/USDT 1h candles of 2019-01..04) over bars it never saw (2019-05-01 .. 2019-07-01,
which holds the exchange's 11-hour gap of 2019-05-15): parity with the backtest of the same
answers bar by bar, a rerun writing nothing, a replay killed with SIGKILL mid-way and restarted
giving the ledger of an uninterrupted one, and the command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import paper_model as pm  # tests/integration/paper_model.py
import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from huracan.cli.paper import paper_app
from huracan.db import migrate
from huracan.db.session import make_engine
from huracan.paper import loop
from huracan.paper.ledger import AccountSpec, PaperLedger, account_name, paper_result
from huracan.paper.production import RegisteredProduction

START, END = pd.Timestamp("2019-05-01", tz="UTC"), pd.Timestamp("2019-07-01", tz="UTC")
GAP = pd.Timestamp("2019-05-15 03:00", tz="UTC")  # first missing bar (through 12:00)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> pm.ProductionModel:
    return pm.train_production(tmp_path_factory.mktemp("paper_model"))


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'paper.db'}")
    migrate.upgrade(eng)
    yield eng
    eng.dispose()


def spec_of(prod: RegisteredProduction, name: str | None = None) -> AccountSpec:
    ex = loop.execution_settings(prod.settings.backtest, pm.SYMBOL, pm.TIMEFRAME)
    return AccountSpec(account=name or account_name(pm.SYMBOL, "1h", "replay", START, END),
                       symbol=pm.SYMBOL, timeframe="1h", mode="replay", model_name=pm.NAME,
                       production=prod.label, anchor=START, execution=ex)


def counts(engine: Engine) -> dict[str, int]:
    out = {}
    with engine.connect() as conn:
        for t in (loop.ORDERS, loop.FILLS, loop.MARKS, loop.PREDICTIONS):
            out[t.name] = int(conn.execute(select(func.count()).select_from(t)).scalar() or 0)
    return out


def test_replay_parity_with_the_backtest_on_unseen_real_bars(model: pm.ProductionModel,
                                                             store: Engine) -> None:
    prod = RegisteredProduction(model.client, model.name)
    assert prod.version == model.version and prod.warmup_bars >= 24
    spec = spec_of(prod)
    assert not (model.candles.timestamp == GAP).any()  # the real gap is in the range
    res = loop.replay(store, prod, spec, model.candles, end=END, chunk=500)
    request = loop.request_candles(model.candles, START, prod.warmup_bars, "1h", END)
    bt = loop.backtest_answers(prod.answer(request), request, spec.execution, anchor=START,
                               end=END)
    ledger = PaperLedger(store)
    marks, ret = ledger.marks(spec.account), bt.returns
    assert len(marks) == len(ret) == res.marks > 1000
    assert (pd.DatetimeIndex(marks["bar_time"]) == pd.DatetimeIndex(ret["timestamp"])).all()
    np.testing.assert_array_equal(marks["position"], ret["position"])  # exactly
    diff = np.abs(marks["net_return"].to_numpy() - ret["strategy_return"].to_numpy())
    assert diff.max() <= 1e-12
    eq = np.cumprod(1.0 + ret["strategy_return"].to_numpy())
    np.testing.assert_allclose(marks["equity"], eq, rtol=1e-12)
    paper = paper_result(ledger, spec.account)
    assert len(paper.trades) == len(bt.trades) > 50
    assert paper.metrics.total_return == pytest.approx(bt.metrics.total_return, abs=1e-12)
    assert paper.metrics.sharpe == pytest.approx(bt.metrics.sharpe, abs=1e-9)
    orders = ledger.orders(spec.account)
    assert len(orders) == 61 * 24 and (orders["status"] == "skipped").sum() == res.skipped
    gap = orders.set_index("bar_time").loc[GAP]
    assert gap["status"] == "skipped" and gap["reason"] == loop.MISSING_BAR
    before = orders.set_index("bar_time").loc[GAP - pd.Timedelta("1h")]
    assert before["status"] == "decided"  # decided before the gap, never filled
    assert GAP - pd.Timedelta("1h") not in set(ledger.fills(spec.account)["bar_time"])
    decided = orders[orders.status == "decided"]
    assert decided["prediction_id"].notna().all()
    assert (decided["decided_at"] == decided["bar_time"] + pd.Timedelta("1h")).all()
    print(f"\nparity: {len(marks)} marked bars, max |diff| {diff.max():.3g}, positions equal, "
          f"{len(bt.trades)} trades, net {bt.metrics.total_return:+.4f}, replay "
          f"{res.seconds:.2f} s ({res.bars / res.seconds:.0f} bars/s)")
    before_counts = counts(store)
    again = loop.replay(store, prod, spec, model.candles, end=END, chunk=500)
    assert again.bars == 0 and counts(store) == before_counts


CHILD = textwrap.dedent("""
    import os, signal, sys
    import mlflow
    import pandas as pd
    from mlflow.tracking import MlflowClient
    sys.path.insert(0, {tests!r})
    import paper_model as pm
    from huracan.db.session import make_engine
    from huracan.paper import loop
    from huracan.paper.ledger import AccountSpec
    from huracan.paper.production import RegisteredProduction

    uri, db, account = sys.argv[1:4]
    mlflow.set_tracking_uri(uri)
    prod = RegisteredProduction(MlflowClient(tracking_uri=uri), pm.NAME)

    def die(n):
        if n == 3:
            os.kill(os.getpid(), signal.SIGKILL)

    loop._chunk_done = die
    ex = loop.execution_settings(prod.settings.backtest, pm.SYMBOL, pm.TIMEFRAME)
    spec = AccountSpec(account, pm.SYMBOL, "1h", "replay", pm.NAME, prod.label,
                       pd.Timestamp("2019-05-01", tz="UTC"), ex)
    loop.replay(make_engine(db), prod, spec, pm.real_candles(),
                end=pd.Timestamp("2019-07-01", tz="UTC"), chunk=200)
    print("not killed")
""")


@pytest.mark.slow
def test_replay_killed_mid_way_and_restarted(model: pm.ProductionModel, store: Engine,
                                             tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=str(Path(__file__).parent)))
    db = str(store.url.render_as_string(hide_password=False))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(script), model.tracking_uri, db, "cut"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == -9, proc.stderr[-2000:]
    ledger = PaperLedger(store)
    assert len(ledger.orders("cut")) == 600  # 3 chunks of 200 committed, nothing after
    prod = RegisteredProduction(model.client, model.name)
    rest = loop.replay(store, prod, spec_of(prod, "cut"), model.candles, end=END, chunk=200)
    assert rest.resumed_after == START + 599 * pd.Timedelta("1h")
    loop.replay(store, prod, spec_of(prod, "whole"), model.candles, end=END, chunk=200)
    for table in ("orders", "fills", "marks"):
        a, b = (getattr(ledger, table)(n).drop(columns=["account"]) for n in ("whole", "cut"))
        a, b = (x.drop(columns=["prediction_id"], errors="ignore") for x in (a, b))
        pd.testing.assert_frame_equal(a, b)
    with store.connect() as conn:
        for name in ("cut", "whole"):
            n = conn.execute(select(func.count()).select_from(loop.PREDICTIONS)
                             .where(loop.PREDICTIONS.c.account == name)).scalar()
            assert n == (ledger.orders(name)["status"] == "decided").sum()


def test_replay_command(model: pm.ProductionModel, tmp_path: Path) -> None:
    data = tmp_path / "binance-spot_BTCUSDT_1h_2019.parquet"
    c = model.candles
    c[(c.timestamp >= "2019-04-01") & (c.timestamp < "2019-06-01")].to_parquet(data)
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    args = ["replay", "BTC/USDT", "--start", "2019-05-01", "--end", "2019-05-20", "--data",
            str(data), "--tracking-uri", model.tracking_uri, "--db-url", db]
    runner = CliRunner()
    out = runner.invoke(paper_app, [*args, "--json"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output[out.output.index("{"):])
    assert summary["account"] == "replay-BTCUSDT-1h-2019050100-2019052000"
    assert summary["bars"] == 19 * 24 and summary["decided"] + summary["skipped"] == 19 * 24
    assert summary["trades"] > 0 and summary["sharpe"] is not None
    again = runner.invoke(paper_app, args)
    assert again.exit_code == 0 and "0 bar(s) stepped" in again.output
    late = runner.invoke(paper_app, ["replay", "BTC/USDT", "--start", "2019-04-02", "--end",
                                     "2019-04-10", "--data", str(data), "--tracking-uri",
                                     model.tracking_uri, "--db-url", db])
    assert late.exit_code == 2
    lines = [x for x in late.output.splitlines() if x.startswith("error: ")]
    assert len(lines) == 1 and "after the request start" in lines[0]
    missing = runner.invoke(paper_app, [*args[:6], "--data", str(tmp_path / "nope.parquet"),
                                        *args[8:]])
    assert missing.exit_code == 2 and "file not found" in missing.output
    unknown = runner.invoke(paper_app, [*args, "--version", "9"])
    assert unknown.exit_code == 1 and "no version 9" in unknown.output
