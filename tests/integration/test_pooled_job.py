"""A pooled job (``data.symbols``) as a member of a multirun sweep, run as a user runs it:
``python -m huracan.train experiment=pooled_1h_wf ... -m`` with a single-market job beside it.

One sweep of two jobs on real BTC/ETH/LTC 1h candles (two quarterly walk-forward folds, 20-tree
LightGBM, one thread): the pooled job and the preset's BTC job with ``data.symbols=[]``. Checked:
the pooled run's per-symbol metrics (``<PAIR>/<metric>``) recomputed from each symbol's logged
OOS returns, its headline metrics from the logged equal-weight portfolio, the cash floor per
symbol in the run's tags and in the registered version's manifest (which lists the symbols), the
sweep's parent run and the registry gate deciding on both registered models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from runners import run_module  # tests/integration/runners.py

from huracan.evaluation.metrics import sharpe_ratio
from huracan.registry.manifest import read_manifest
from huracan.tracking.run import default_tracking_uri

pytestmark = pytest.mark.slow

POOL = "huracan-pool-BTCUSDT-ETHUSDT-LTCUSDT-1h"
PAIRS = ("BTCUSDT", "ETHUSDT", "LTCUSDT")
PPY = 8760.0
THREADS = {"HURACAN_N_JOBS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pooled")
    proc = run_module("huracan.train", [
        "experiment=pooled_1h_wf", "model.n_estimators=20", "model.log_period=0",
        "split.oos_start=2024-04-01", "split.oos_end=2024-08-30",
        "data.symbols=[BTC/USDT,ETH/USDT,LTC/USDT],[]",
        "explain.max_rows=10", "importance.n_repeats=1", "importance.max_rows=50",
        f"data.quality_log={tmp / 'dq.jsonl'}", f"hydra.sweep.dir={tmp / 'multirun'}", "-m"],
        tmp, timeout=1800, env=THREADS)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    results = [json.loads(p.read_text()) for p in sorted((tmp / "multirun").glob("*/result.json"))]
    client = MlflowClient(tracking_uri=default_tracking_uri(tmp / "mlruns"))
    return tmp, proc, results, client


def _frame(client: MlflowClient, run_id: str, path: str, tmp: Path) -> pd.DataFrame:
    return pd.read_parquet(client.download_artifacts(run_id, path, str(tmp)))


def test_the_pooled_job_is_a_member_of_the_sweep(sweep):
    tmp, _, results, client = sweep
    assert sorted(r["registered_model"] for r in results) == sorted([POOL, "huracan-BTCUSDT-1h"])
    assert all(r["status"] == "ok" and r["version"] for r in results), results
    pooled = next(r for r in results if r["registered_model"] == POOL)
    assert pooled["objective"] == "oos_composite_score" and pooled["n_folds"] == 2
    assert np.isfinite(pooled["objective_value"])
    assert pooled["evidence"]["oos"]["bars"] == pooled["metrics"]["oos_bars"]
    parent_id = json.loads((tmp / "multirun" / "sweep.json").read_text())["run_id"]
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    for r in results:
        run = client.get_run(r["run_id"])
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent_id


def test_per_symbol_and_portfolio_metrics_come_from_the_logged_returns(sweep):
    tmp, _, results, client = sweep
    pooled = next(r for r in results if r["registered_model"] == POOL)
    run = client.get_run(pooled["run_id"])
    m, tags = run.data.metrics, run.data.tags
    assert tags["pooled"] == "true" and tags["symbols"] == "BTC/USDT,ETH/USDT,LTC/USDT"
    assert tags["symbol"] == "BTC/USDT"
    nets = {}
    for pair in PAIRS:
        ret = _frame(client, run.info.run_id, f"{pair}/backtest/oos_returns.parquet", tmp)
        nets[pair] = ret.set_index("timestamp")["strategy_return"]
        assert m[f"{pair}/oos_sharpe"] == pytest.approx(sharpe_ratio(nets[pair].to_numpy(), PPY))
        assert f"{pair}/oos_buy_hold_sharpe" in m and f"{pair}/oos_ic" in m
        assert m[f"{pair}/oos_n_folds"] == 2.0
    port = _frame(client, run.info.run_id, "portfolio/oos_returns.parquet", tmp)
    union = nets["BTCUSDT"].index.union(nets["ETHUSDT"].index).union(nets["LTCUSDT"].index)
    by_hand = sum(n.reindex(union).fillna(0.0) for n in nets.values()) / 3
    np.testing.assert_allclose(port["strategy_return"].to_numpy(), by_hand.to_numpy())
    assert m["oos_sharpe"] == pytest.approx(sharpe_ratio(by_hand.to_numpy(), PPY))
    assert m["oos_n_trades"] == sum(m[f"{p}/oos_n_trades"] for p in PAIRS)
    assert m["oos_bars"] == len(union) and m["oos_n_symbols"] == 3.0
    # the single-market job of the sweep is unchanged: no per-symbol or pooled keys
    single = client.get_run(next(r for r in results if r["registered_model"] != POOL)["run_id"])
    assert "pooled" not in single.data.tags  # and no per-symbol metrics (<PAIR>/...)
    assert not [k for k in single.data.metrics if set(k.split("/")) & set(PAIRS)]


def test_the_manifest_lists_the_symbols_and_their_cash_decisions(sweep):
    _, _, results, client = sweep
    pooled = next(r for r in results if r["registered_model"] == POOL)
    mv = client.get_model_version(POOL, pooled["version"])
    assert max(len(v) for v in mv.tags.values()) <= 250  # the evidence is not in the tags
    assert "huracan.cash_floor" not in mv.tags and "BTC/USDT" in mv.description
    tags = {f"huracan.{k}": v for k, v in read_manifest(client, mv).items()}
    assert tags["huracan.symbols"] == "BTC/USDT,ETH/USDT,LTC/USDT"
    assert tags["huracan.pooled"] == "true"
    floor = json.loads(tags["huracan.cash_floor"])
    assert set(floor) == {"BTC/USDT", "ETH/USDT", "LTC/USDT"}
    metrics = client.get_run(pooled["run_id"]).data.metrics
    for sym, d in floor.items():
        # the gate's rule: net return > 0 and PSR >= registry.min_psr over >= min_eval_bars bars
        assert d["trade"] == (d["total_return"] > 0 and d["psr"] >= 0.9 and d["bars"] >= 168)
        assert d["bars"] == metrics[f"{sym.replace('/', '')}/oos_bars"]
        assert d["trades"] == metrics[f"{sym.replace('/', '')}/oos_n_trades"]
        assert d["reason"].startswith(sym)
    assert tags["huracan.trade_symbols"] == ",".join(s for s, d in floor.items() if d["trade"])


def test_the_gate_decides_on_both_registered_models(sweep):
    tmp, proc, _, client = sweep
    decisions = json.loads((tmp / "multirun" / "gate.json").read_text())["decisions"]
    by_model = {d["model"]: d for d in decisions}
    assert set(by_model) == {POOL, "huracan-BTCUSDT-1h"}
    for d in decisions:
        assert d["decision"] in ("promoted", "rejected", "skipped"), d
    pool = by_model[POOL]
    assert pool["candidate_run_id"], pool  # the portfolio trades: an eligible candidate
    assert f"registry: {POOL} v" in proc.stdout
    parent_id = json.loads((tmp / "multirun" / "sweep.json").read_text())["run_id"]
    assert client.get_run(parent_id).data.tags[f"huracan.gate.{POOL}.decision"] == \
        pool["decision"]
    from huracan.db.session import make_engine
    from huracan.registry import events

    engine = make_engine(f"sqlite:///{tmp / 'brain.db'}")
    try:
        (event,) = [e for e in events.history(engine, POOL) if e.alias == "production"]
    finally:
        engine.dispose()
    # the primary's window (its last OOS step, >= min_eval_bars): decided, not skipped,
    # re-scored by the registered pooled model with the primary's own fitted rule
    assert event.event == pool["decision"] in ("promoted", "rejected")
    cand = event.evidence["forecasts"]["candidate"]
    assert cand["rule"]["source"] == "fitted (pooled: BTC/USDT)", cand
    assert cand["bars_from_model"] == event.eval_bars > 0


def test_each_symbol_says_which_kind_of_information_the_pool_uses(sweep):
    """SHAP of the pool's last fold summed per feature family, per symbol (own price features
    only here: all of it is the own family); the single-market job's importance loop logs the
    same shares without a prefix."""
    tmp, _, results, client = sweep
    pooled = next(r for r in results if r["registered_model"] == POOL)
    m = client.get_run(pooled["run_id"]).data.metrics
    for pair in PAIRS:
        assert m[f"importance/{pair}/family_own_shap"] == pytest.approx(1.0)
        families = json.loads(Path(client.download_artifacts(
            pooled["run_id"], f"{pair}/importance/families.json", str(tmp))).read_text())
        assert families["features"] == {"own": 21}
        assert families["summary"].startswith("uses mostly its own candles")
    single = client.get_run(next(r for r in results if r["registered_model"] != POOL)["run_id"])
    assert single.data.metrics["importance/family_own_shap"] == pytest.approx(1.0)
