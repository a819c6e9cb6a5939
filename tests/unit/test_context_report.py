"""benchmarks/context_report.py: its pure helpers (the cash floor read off the job's metrics, a
pooled symbol's row from its prefixed metrics, the run order, the table and the cost lines)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import context_report as cr  # noqa: E402

TIMING = {"wall_s": 60.0, "folds_s": 40.0, "started": "2026-12-06 20:00:00 UTC",
          "load_before": [2.0, 2.0, 2.0], "load_after": [2.1, 2.0, 2.0], "n_folds": 23,
          "features_s": 1.0}


def metrics(prefix: str = "", total: float = 0.1, psr: float = 0.95, trades: float = 10.0
            ) -> dict[str, float]:
    return {f"{prefix}oos_sharpe": 1.25, f"{prefix}oos_rank_ic": 0.05, f"{prefix}oos_ic": 0.03,
            f"{prefix}oos_breakeven_bps": 2.5, f"{prefix}oos_n_trades": trades,
            f"{prefix}oos_total_return": total, f"{prefix}oos_psr": psr,
            f"{prefix}oos_buy_hold_sharpe": 0.9, f"{prefix}oos_bars": 1000.0}


def test_clears_cash_is_the_gate_rule():
    assert cr.clears_cash(metrics(), 0.9)
    assert not cr.clears_cash(metrics(total=-0.01), 0.9)  # PSR alone is not enough
    assert not cr.clears_cash(metrics(psr=0.89), 0.9)
    assert not cr.clears_cash(metrics(trades=0.0), 0.9)  # never traded: it is cash
    assert cr.clears_cash(metrics("ETHUSDT/"), 0.9, prefix="ETHUSDT/")


def test_pooled_row_reads_its_symbol_prefix():
    m = {**metrics(total=-0.5), **metrics("LTCUSDT/", psr=0.99)}
    m["LTCUSDT/oos_sharpe"] = 2.0
    row = cr.row_of("LTC", "pooled", m, {"importance/family_own_shap": 0.8,
                                         "importance/family_symbol_shap": 0.2,
                                         "importance/LTCUSDT/family_own_shap": 0.7}, 0.9,
                    TIMING, prefix="LTCUSDT/")
    assert row["symbol"] == "LTC/USDT" and row["sharpe"] == 2.0 and row["clears_cash"]
    assert row["shap_shares"]["own"] == 0.7 and row["shap_shares"]["symbol"] == 0.2
    assert math.isnan(row["shap_shares"]["context"])
    # a run logged before issue 26 (importance_family_<family>_shap) reads the same
    old = cr.row_of("LTC", "pooled", m, {"importance_family_own_shap": 0.8,
                                         "LTCUSDT/importance_family_own_shap": 0.7}, 0.9,
                    TIMING, prefix="LTCUSDT/")
    assert old["shap_shares"]["own"] == 0.7 and math.isnan(old["shap_shares"]["symbol"])


def test_run_plan_puts_the_cost_pair_back_to_back():
    plan = cr.run_plan(["BTC", "ETH"], list(cr.VARIANTS))
    assert plan[:4] == [("warmup", "BTC"), ("own", "BTC"), "pooled", "features"]
    assert cr.run_plan(["BTC", "ETH"], ["own", "pooled"], pairs=2)[:6] == [
        ("warmup", "BTC"), ("own", "BTC"), "pooled", ("own", "BTC"), "pooled", ("own", "ETH")]
    assert plan[4:] == [("context", "BTC"), ("context_htf", "BTC"), ("own", "ETH"),
                        ("context", "ETH"), ("context_htf", "ETH")]
    assert "features" not in cr.run_plan(["BTC"], ["own"])


def test_table_and_cost_lines():
    rows = [cr.row_of("BTC", "context", metrics(), {"importance/family_own_shap": 0.6,
                                                    "importance/family_context_shap": 0.4},
                      0.9, TIMING),
            cr.row_of("BTC", "own", metrics(total=-0.2), {}, 0.9, TIMING)]
    pool = {**TIMING, "wall_s": 150.0, "folds_s": 100.0, "symbols": 3}
    one = {**TIMING, "symbol": "BTC/USDT"}
    text = cr.markdown(rows, {"pairs": [{"single": one, "pooled": pool},
                                        {"single": one, "pooled": {**pool, "wall_s": 90.0}},
                                        {"single": one}]})  # an unfinished pair: left out
    lines = text.splitlines()
    assert lines[2].startswith("| BTC/USDT | own | 1.25 | 0.0500 | 2.5 | 10 | -20.0 % | 0.950 | "
                               "no | 0.90 | n/a |")
    assert lines[3].endswith("| yes | 0.90 | 60 % / 40 % / 0 % |")
    assert "Rows that clear cash: 1 of 2." in text
    assert "- pair 2: single-symbol walk-forward (BTC/USDT own, 23 folds) 60.0 s wall" in text
    assert "pair 3" not in text
    assert ("pooled / single, median of 2 pair(s): 2.00x wall, 2.50x fold loop (target: within "
            "3x)") in text


@pytest.mark.parametrize("value,expected", [(True, "yes"), (math.nan, "n/a"), (1.234, "1.23")])
def test_fmt(value, expected):
    assert cr._fmt(value) == expected


def test_a_pooled_part_runs_the_own_job_for_the_cost_pair_only(monkeypatch):
    assert cr.run_plan(["BTC", "ETH"], ["pooled"]) == [("warmup", "BTC"), ("own", "BTC"),
                                                       "pooled"]
    monkeypatch.setattr(cr, "single", lambda v, s, extra: cr.row_of(s, v, metrics(), {}, 0.9,
                                                                     TIMING))
    monkeypatch.setattr(cr, "pooled", lambda symbols, extra: [
        cr.row_of(s, "pooled", metrics(), {}, 0.9, TIMING) for s in symbols])
    old = cr.row_of("BTC", "pooled", metrics(total=-1.0), {}, 0.9, TIMING)
    payload = {"rows": [old], "cost": {}}
    for step in cr.run_plan(["BTC", "ETH"], ["pooled"], pairs=2):
        cr.execute_step(step, ["BTC", "ETH"], ["pooled"], [], payload)
    assert [(r["symbol"], r["variant"]) for r in payload["rows"]] == [
        ("BTC/USDT", "pooled"), ("ETH/USDT", "pooled")]  # replaced, no own row added
    assert payload["rows"][0]["total_return"] == 0.1
    pairs = payload["cost"]["pairs"]
    assert len(pairs) == 2 and pairs[1]["single"]["symbol"] == "BTC/USDT"
    assert pairs[1]["pooled"]["symbols"] == 2
