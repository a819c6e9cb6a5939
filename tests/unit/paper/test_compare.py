"""``huracan.paper.compare`` on hand-built ledgers: each source alone, their precedence, the
carried position difference, and the sums (sources add up to the total difference)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from huracan.evaluation.execution import bar_components
from huracan.paper import compare as cmp

BAR = pd.Timedelta("1h")
T0 = pd.Timestamp("2024-01-01", tz="UTC")
N = 12


def ledger(targets, *, rets=None, fee=0.001, status=None, digests=None, closes=None,
           versions=None, available=None, skip_marks=()):
    """Orders and marks of one account: bar i decided at ``targets[i]`` (held when skipped),
    marked with ``bar_components`` (gap 0, hold ``rets[i]``, ``fee`` per unit turnover)."""
    rng = np.random.default_rng(7)
    rets = rng.normal(0, 0.01, N) if rets is None else np.asarray(rets, float)
    status = status or ["decided"] * N
    times = [T0 + i * BAR for i in range(N)]
    orders, marks, prev = [], [], 0.0
    for i, t in enumerate(times):
        dec = status[i] == "decided"
        pos = float(targets[i]) if dec else prev
        orders.append({
            "bar_time": t, "status": status[i], "reason": None if dec else "late bar",
            "decided_at": t + BAR,
            "bar_available_at": (available or {}).get(i, t + BAR),
            "model_version": (versions or ["1"] * N)[i], "run_id": "r",
            "prev_position": prev, "target_position": float(targets[i]) if dec else prev,
            "bar_close": (closes or [100.0 + i for i in range(N)])[i],
            "data_digest": (digests or [f"d{i}" for i in range(N)])[i]})
        if i in skip_marks:
            continue
        gross, cost, fund, borrow = bar_components(prev, pos, 0.0, rets[i], fee, 0.0, 0.0,
                                                   0.0, 0.0)
        marks.append({"bar_time": t, "prev_position": prev, "position": pos,
                      "asset_return": rets[i], "gross_return": gross, "cost": cost,
                      "funding_cost": fund, "borrow_cost": borrow,
                      "net_return": gross - cost - fund - borrow})
        prev = pos
    return pd.DataFrame(orders), pd.DataFrame(marks)


TARGETS = [1, 1, -1, -1, 1, 0, 0, 1, -1, 1, 1, -1]


def run(live, bt, **kw):
    return cmp.build_comparison(*live, *bt, account="paper-X-1h", backtest="bt", symbol="X",
                                timeframe="1h", bar=BAR, periods_per_year=8760, **kw)


def by_source(c):
    return c.sources.set_index("source")


def check_sums(c):
    assert c.sources["diff"].sum() == pytest.approx(c.total_diff, abs=1e-15)
    assert c.total_diff == pytest.approx(
        c.bars["live_net"].sum() - c.bars["backtest_net"].sum(), abs=1e-15)


def test_identical_ledgers_agree():
    c = run(ledger(TARGETS), ledger(TARGETS))
    assert c.agree and c.bars_compared == N and c.revision_point is None
    assert (c.sources["bars"] == 0).all() and (c.sources["diff"] == 0).all()
    assert c.equity_gap == 0.0 and c.live == c.backtest_totals
    assert "agree bar by bar" in c.lines()[-1]


def test_data_revision_from_its_bar_on():
    """Bar 5's close was revised after the fact: live saw other data at 5 and later (chain
    digests), its answer at 7 differed; the bar 4 mark (reads C_5) differs in return."""
    rets = np.random.default_rng(7).normal(0, 0.01, N)
    revised = rets.copy()
    revised[4] += 0.002
    revised[5] -= 0.002
    live_t = list(TARGETS)
    live_t[7] = -1
    digests = [f"d{i}" if i < 5 else f"x{i}" for i in range(N)]
    closes = [100.0 + i for i in range(N)]
    closes[5] = 99.0
    live = ledger(live_t, rets=rets, digests=digests, closes=closes)
    bt = ledger(TARGETS, rets=revised)
    c = run(live, bt)
    check_sums(c)
    assert c.revision_point == T0 + 5 * BAR
    src = by_source(c)
    attributed = c.bars.dropna(subset=["source"])
    assert set(attributed["source"]) == {cmp.DATA}
    # bar 4 (its return reads the revised C_5), 7 (position), 8 (previous position); bar 5
    # is flat in both, its revised return earns nothing
    assert {int((t - T0) / BAR) for t in attributed["bar_time"]} == {4, 7, 8}
    assert src.loc[cmp.DATA, "share"] == pytest.approx(1.0)
    assert src.loc[cmp.DATA, "diff_bps"] == pytest.approx(src.loc[cmp.DATA, "diff"] / 1e-4)


def test_skipped_bar_is_late_and_carries_to_the_next_mark():
    status = ["decided"] * N
    status[2] = "skipped"  # live held +1 where the backtest went -1
    c = run(ledger(TARGETS, status=status), ledger(TARGETS))
    check_sums(c)
    attributed = c.bars.dropna(subset=["source"])
    assert set(attributed["source"]) == {cmp.LATE}
    # bar 2 (position), bar 3 (previous position: the flip's cost and gap leg)
    assert {int((t - T0) / BAR) for t in attributed["bar_time"]} == {2, 3}
    assert by_source(c).loc[cmp.LATE, "bars"] == 2


def test_missing_live_mark_is_late():
    c = run(ledger(TARGETS, skip_marks=(6,)), ledger(TARGETS))
    row = c.bars[c.bars["bar_time"] == T0 + 6 * BAR].iloc[0]
    assert row["source"] == cmp.LATE and row["live_net"] == 0.0
    check_sums(c)


def test_late_decision_with_another_answer_is_late_not_model():
    live_t = list(TARGETS)
    live_t[4] = -1
    versions = ["1"] * N
    versions[4] = "2"
    live = ledger(live_t, versions=versions, available={4: T0 + 5 * BAR + pd.Timedelta("40min")})
    c = run(live, ledger(TARGETS))
    assert c.bars.set_index("bar_time").loc[T0 + 4 * BAR, "source"] == cmp.LATE
    # a quarter-hour late is tolerated by a 1 h late_after: then the version explains it
    c2 = run(live, ledger(TARGETS), late_after=pd.Timedelta("1h"))
    assert c2.bars.set_index("bar_time").loc[T0 + 4 * BAR, "source"] == cmp.MODEL


def test_model_version():
    live_t = list(TARGETS)
    live_t[9] = -1
    versions = ["1"] * 9 + ["2"] * 3
    c = run(ledger(live_t, versions=versions), ledger(TARGETS))
    attributed = c.bars.dropna(subset=["source"])
    assert set(attributed["source"]) == {cmp.MODEL}
    assert len(attributed) == 2  # bar 9 and its successor's previous position
    check_sums(c)


def test_fills_and_costs():
    c = run(ledger(TARGETS, fee=0.002), ledger(TARGETS, fee=0.001))
    src = by_source(c)
    turnover = np.abs(np.diff(np.r_[0.0, TARGETS]))
    assert src.loc[cmp.FILLS, "bars"] == int((turnover > 0).sum())
    assert src.loc[cmp.FILLS, "diff"] == pytest.approx(-0.001 * turnover.sum(), rel=1e-12)
    assert src.loc[cmp.FILLS, "share"] == pytest.approx(1.0)
    check_sums(c)


def test_unexplained():
    live_t = list(TARGETS)
    live_t[3] = 0.5  # same data, model, timing: another answer
    c = run(ledger(live_t), ledger(TARGETS))
    assert by_source(c).loc[cmp.UNEXPLAINED, "bars"] == 2
    check_sums(c)


def test_precedence_data_over_late_over_model():
    """One bar with every cause: revised data wins; without it, late wins over the version."""
    live_t = list(TARGETS)
    live_t[6] = -1
    versions = ["1"] * N
    versions[6] = "2"
    status = ["decided"] * N
    late = {6: T0 + 8 * BAR}
    digests = [f"d{i}" for i in range(N)]
    digests[6] = "revised"
    both = run(ledger(live_t, versions=versions, available=late, digests=digests),
               ledger(TARGETS))
    assert both.bars.set_index("bar_time").loc[T0 + 6 * BAR, "source"] == cmp.DATA
    no_data = run(ledger(live_t, versions=versions, available=late, status=status),
                  ledger(TARGETS))
    assert no_data.bars.set_index("bar_time").loc[T0 + 6 * BAR, "source"] == cmp.LATE


def test_digest_only_mismatch_after_a_missing_bar_is_the_missing_bar():
    """The live loop never decided bar 3 (no order, no mark): its request at bar 4 lacked bar
    3, so bar 4's digest differs with the same close: a missing bar, not a revision."""
    lo, lm = ledger(TARGETS)
    lo = lo[lo["bar_time"] != T0 + 3 * BAR].copy()
    lm = lm[lm["bar_time"] != T0 + 3 * BAR].copy()
    lo.loc[lo["bar_time"] == T0 + 4 * BAR, "data_digest"] = "without-bar-3"
    c = run((lo, lm), ledger(TARGETS))
    assert c.revision_point is None
    assert set(c.bars.dropna(subset=["source"])["source"]) == {cmp.LATE}


def test_window_and_json():
    status = ["decided"] * N
    status[2] = "skipped"
    c = run(ledger(TARGETS, status=status), ledger(TARGETS), start=T0 + 3 * BAR,
            end=T0 + 9 * BAR)
    assert c.bars_compared == 7 and c.start == T0 + 3 * BAR and c.end == T0 + 9 * BAR
    d = c.to_dict()
    assert d["bars_compared"] == 7 and [s["source"] for s in d["sources"]] == list(cmp.SOURCES)
    assert d["live"]["bars"] == 7
    import json

    json.dumps(d)  # JSON-ready


def test_empty():
    c = run((pd.DataFrame(), pd.DataFrame()), (pd.DataFrame(), pd.DataFrame()))
    assert c.bars_compared == 0 and c.agree and c.total_diff == 0.0


def test_scratch_store_holds_the_replay_tables(tmp_path):
    from sqlalchemy import inspect

    engine = cmp.scratch_engine(tmp_path)
    try:
        names = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"predictions", "paper_accounts", "paper_orders", "paper_fills",
            "paper_marks"} <= names


def _cli(*args):
    from typer.testing import CliRunner

    from huracan.cli.paper import paper_app

    return CliRunner().invoke(paper_app, ["compare", "BTC/USDT", *args])


def test_command_without_account_exits_1(tmp_path):
    from huracan.db import migrate
    from huracan.db.session import make_engine

    url = f"sqlite:///{tmp_path / 'brain.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    out = _cli("--db-url", url)
    assert out.exit_code == 1, out.output
    assert "no paper account 'paper-BTCUSDT-1h'" in out.output
    assert len(out.output.strip().splitlines()) == 1


def test_command_unusable_input_exits_2(tmp_path):
    out = _cli("--late-after", "soon", "--db-url", f"sqlite:///{tmp_path / 'x.db'}")
    assert out.exit_code == 2 and "--late-after" in out.output
    out = _cli("--db-url", "nosuchdriver://x")
    assert out.exit_code == 2 and out.output.startswith("error:")


def test_missing_bar_stretch_lasts_while_the_requests_lack_it():
    """Bar 3 never reached the live loop (a skipped order without a close); its requests at
    4..6 lacked it (digest only), from 7 on they held it again: no revision anywhere. A close
    that differs inside such a stretch is a revision again."""
    status = ["decided"] * N
    status[3] = "skipped"
    closes = [100.0 + i for i in range(N)]
    closes[3] = None
    digests = [f"d{i}" for i in range(N)]
    for i in (4, 5, 6):
        digests[i] = f"lacking-3-{i}"
    live_t = list(TARGETS)
    live_t[5] = 0.25  # an answer changed by the missing bar's absence
    c = run(ledger(live_t, status=status, closes=closes, digests=digests), ledger(TARGETS))
    assert c.revision_point is None
    assert set(c.bars.dropna(subset=["source"])["source"]) == {cmp.LATE}
    check_sums(c)
    closes[5] = 90.0
    c = run(ledger(live_t, status=status, closes=closes, digests=digests), ledger(TARGETS))
    assert c.revision_point == T0 + 5 * BAR
    assert c.bars.set_index("bar_time").loc[T0 + 5 * BAR, "source"] == cmp.DATA
