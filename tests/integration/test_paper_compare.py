"""``huracan paper compare`` on a real production model (:mod:`paper_model`: LightGBM on real
BTC/USDT 1h candles of 2019-01..04) paper-traded over unseen bars of May-June 2019.

The "live" account is the core's replay (:func:`huracan.paper.loop.replay`) of production over
the ORIGINAL candles; then (a) one candle is revised after the fact (today's data), (b) one
live bar's decision is skipped as late, (c) nothing changes; compare must attribute (a) to
``data revised`` from the revised bar on, (b) to ``late or missing bar``, and (c) to nothing.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

pytestmark = pytest.mark.slow

ANCHOR = pd.Timestamp("2019-05-25", tz="UTC")  # gap-free from 2019-05-15 13:00 on
END = pd.Timestamp("2019-06-15", tz="UTC")  # bars opening before END
REVISED = pd.Timestamp("2019-06-03 12:00", tz="UTC")
LATE = pd.Timestamp("2019-06-08 09:00", tz="UTC")
MISSING = pd.Timestamp("2019-06-02 05:00", tz="UTC")  # a bar the live loop never got


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The production model, its brain store, the live account (replay of the original
    candles), a second live account with LATE's decision skipped and a third that never got
    the candle of MISSING."""
    from paper_model import SYMBOL, TIMEFRAME, train_production

    from huracan.db.session import make_engine
    from huracan.paper.ledger import AccountSpec, PaperLedger, account_name
    from huracan.paper.loop import execution_settings, replay, request_candles, step
    from huracan.paper.production import RegisteredProduction

    tmp = tmp_path_factory.mktemp("compare")
    pm = train_production(tmp)
    production = RegisteredProduction(pm.client, pm.name)
    engine = make_engine(pm.db_url)
    candles = pm.candles[pm.candles.timestamp < END].reset_index(drop=True)
    execution = execution_settings(production.settings.backtest, SYMBOL, TIMEFRAME)
    live = AccountSpec(account_name(SYMBOL, TIMEFRAME), SYMBOL, TIMEFRAME, "live", pm.name,
                       production.label, ANCHOR, execution)
    replay(engine, production, live, candles)
    late = AccountSpec("paper-late", SYMBOL, TIMEFRAME, "live", pm.name, production.label,
                       ANCHOR, execution)
    replay(engine, production, late, candles, end=LATE)
    upto = request_candles(candles, ANCHOR, production.warmup_bars, TIMEFRAME,
                           end=LATE + pd.Timedelta("1h"))
    out = step(PaperLedger(engine), late, upto, None, bar_time=LATE,
               skip_reason="late bar: seen 2 h after its close")
    assert out.status == "skipped"
    replay(engine, production, late, candles)
    missing = AccountSpec("paper-missing", SYMBOL, TIMEFRAME, "live", pm.name,
                          production.label, ANCHOR, execution)
    replay(engine, production, missing, candles[candles.timestamp != MISSING])
    data = tmp / "today.parquet"
    candles.to_parquet(data)
    yield {"pm": pm, "production": production, "engine": engine, "candles": candles,
           "live": live.account, "data": data, "tmp": tmp}
    engine.dispose()


def revised_candles(candles: pd.DataFrame) -> pd.DataFrame:
    """Today's data: REVISED's close 1.5 % higher (its high raised to cover it)."""
    out = candles.copy()
    i = out.index[out.timestamp == REVISED][0]
    out.loc[i, "close"] *= 1.015
    out.loc[i, "high"] = max(out.loc[i, "high"], out.loc[i, "close"])
    return out


def check_sums(c):
    assert c.sources["diff"].sum() == pytest.approx(c.total_diff, abs=1e-12)
    assert c.total_diff == pytest.approx(c.bars["live_net"].sum() - c.bars["backtest_net"].sum(),
                                         abs=1e-12)


def test_identical_live_and_backtest_agree(world):
    from huracan.paper.compare import compare

    c = compare(world["engine"], world["production"], world["live"], world["candles"])
    assert c.agree and c.revision_point is None
    assert c.bars_compared > 400
    assert (c.sources["bars"] == 0).all() and (c.sources["diff"] == 0).all()
    assert c.live["trades"] == c.backtest_totals["trades"] > 10
    assert c.equity_gap == 0.0
    assert (c.bars["live_position"] == c.bars["backtest_position"]).all()


def test_planted_revision_is_data_revised(world):
    from huracan.paper.compare import DATA, compare

    today = revised_candles(world["candles"])
    c = compare(world["engine"], world["production"], world["live"], today)
    print("\n" + "\n".join(c.lines()))
    check_sums(c)
    assert c.revision_point == REVISED
    hit = c.bars.dropna(subset=["source"])
    assert set(hit["source"]) == {DATA}
    # the mark before REVISED reads its close; nothing earlier differs
    assert hit["bar_time"].min() == REVISED - pd.Timedelta("1h")
    src = c.sources.set_index("source")
    assert src.loc[DATA, "bars"] == len(hit) >= 2
    assert src.loc[DATA, "share"] == pytest.approx(1.0)
    assert abs(c.total_diff) > 1e-4
    # answers changed at some bars after the revision: all of them are attributed to it
    moved = c.bars[c.bars["live_position"] != c.bars["backtest_position"]]
    assert len(moved) >= 1 and (moved["bar_time"] >= REVISED).all()
    assert (moved["source"] == DATA).all()


def test_planted_late_bar_is_late_or_missing(world):
    from huracan.paper.compare import LATE as LATE_SOURCE
    from huracan.paper.compare import compare

    c = compare(world["engine"], world["production"], "paper-late", world["candles"])
    print("\n" + "\n".join(c.lines()))
    check_sums(c)
    assert c.revision_point is None
    hit = c.bars.dropna(subset=["source"])
    assert set(hit["source"]) <= {LATE_SOURCE}
    row = c.bars.set_index("bar_time").loc[LATE]
    if row["live_position"] != row["backtest_position"]:  # held where the backtest moved
        assert row["source"] == LATE_SOURCE
        assert c.sources.set_index("source").loc[LATE_SOURCE, "bars"] >= 1
        assert set(hit["bar_time"]) <= {LATE, LATE + pd.Timedelta("1h")}
    else:  # the held position happened to be the backtest's: nothing differs
        assert c.agree


def test_missing_bar_is_late_or_missing_not_a_revision(world):
    """The live loop never got MISSING's candle: it skipped that bar, then the model's warm-up
    after the gap, then decided on requests lacking it (their digests differ from today's,
    their closes do not): every difference is the missing bar's."""
    from huracan.paper.compare import LATE as LATE_SOURCE
    from huracan.paper.compare import compare
    from huracan.paper.ledger import PaperLedger

    orders = PaperLedger(world["engine"]).orders("paper-missing").set_index("bar_time")
    assert orders.loc[MISSING, "status"] == "skipped"
    after = orders[(orders.index > MISSING) & (orders["status"] == "decided")]
    assert len(after) > 50  # decided again after the warm-up, on requests lacking MISSING
    c = compare(world["engine"], world["production"], "paper-missing", world["candles"])
    print("\n" + "\n".join(c.lines()))
    check_sums(c)
    assert c.revision_point is None
    hit = c.bars.dropna(subset=["source"])
    assert set(hit["source"]) == {LATE_SOURCE} and len(hit) > 50
    assert hit["bar_time"].min() >= MISSING - pd.Timedelta("1h")


def test_late_bar_that_changed_the_position(world):
    """The skipped bar was chosen so that the live loop held another position than the
    backtest's (checked here, so the late-bar test above attributes a real difference)."""
    from huracan.paper.ledger import PaperLedger

    orders = PaperLedger(world["engine"]).orders(world["live"]).set_index("bar_time")
    assert orders.loc[LATE, "target_position"] != orders.loc[LATE, "prev_position"]


def test_window_restricts_the_bars(world):
    from huracan.paper.compare import compare

    today = revised_candles(world["candles"])
    c = compare(world["engine"], world["production"], world["live"], today,
                start=REVISED + pd.Timedelta("2d"), end=REVISED + pd.Timedelta("4d"))
    assert c.start >= REVISED + pd.Timedelta("2d") and c.end <= REVISED + pd.Timedelta("4d")
    assert c.bars_compared <= 49


def _run(world, *args: str):
    from huracan.cli.paper import paper_app

    pm = world["pm"]
    return CliRunner().invoke(paper_app, [
        "compare", "BTC/USDT", "--tracking-uri", pm.tracking_uri, "--db-url", pm.db_url,
        *args])


def test_command_table_json_and_exit_codes(world):
    ok = _run(world, "--data", str(world["data"]))
    assert ok.exit_code == 0, ok.output
    assert "agree bar by bar" in ok.output and "data revised" in ok.output
    revised = world["tmp"] / "revised.parquet"
    revised_candles(world["candles"]).to_parquet(revised)
    js = _run(world, "--data", str(revised), "--json")
    assert js.exit_code == 0, js.output
    doc = json.loads(js.output)
    assert doc["revision_point"].startswith("2019-06-03T12:00")
    assert doc["sources"][0]["source"] == "data revised" and doc["sources"][0]["bars"] >= 2
    assert not doc["agree"]
    assert np.isclose(sum(s["diff"] for s in doc["sources"]), doc["total_diff"], atol=1e-12)
    nothing = _run(world, "--data", str(world["data"]), "--account", "paper-nobody")
    assert nothing.exit_code == 1 and "nothing to compare" in nothing.output
    bad = _run(world, "--data", str(world["tmp"] / "missing.parquet"))
    assert bad.exit_code == 2 and "error:" in bad.output
    late = _run(world, "--data", str(world["data"]), "--late-after", "soon")
    assert late.exit_code == 2
    short = world["tmp"] / "short.parquet"
    world["candles"][world["candles"].timestamp >= ANCHOR].to_parquet(short)
    assert _run(world, "--data", str(short)).exit_code == 2  # no warm-up history


def test_model_version_change_is_model_version(world):
    """Production moved to v2 (another model, same features and settings) after the live
    account traded with v1: the backtest asks v2, so the bars where v2 answers otherwise are
    ``model version``. Runs last: it promotes v2, then puts v1 back."""
    from paper_model import train_production

    from huracan.paper.compare import MODEL, compare
    from huracan.paper.production import RegisteredProduction

    pm = world["pm"]
    train_production(world["tmp"], "model.learning_rate=0.2", "model.num_leaves=7")
    try:
        v2 = RegisteredProduction(pm.client, pm.name)
        assert v2.version != pm.version
        assert v2.warmup_bars == world["production"].warmup_bars
        c = compare(world["engine"], v2, world["live"], world["candles"])
        print("\n" + "\n".join(c.lines()))
        check_sums(c)
        assert c.revision_point is None
        src = c.sources.set_index("source")
        assert set(c.bars.dropna(subset=["source"])["source"]) == {MODEL}
        assert src.loc[MODEL, "bars"] >= 1 and src.loc[MODEL, "share"] == pytest.approx(1.0)
        assert "the backtest asks" not in " ".join(c.notes)  # same label: the alias moved
    finally:
        pm.client.set_registered_model_alias(pm.name, "production", pm.version)


def test_command_unknown_model_exits_1(world):
    out = _run(world, "--data", str(world["data"]), "--model", "huracan-NOPE-1h@production")
    assert out.exit_code == 1 and out.output.startswith("error:")
    assert len(out.output.strip().splitlines()) == 1
