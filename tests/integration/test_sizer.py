"""The sizer end to end on the shipped sample's bars (synthetic prices with a real edge,
``edge_sample_path``: the forecaster beats cash and its gate promotes it): a walk-forward
forecaster,
``python -m huracan.sizer`` (PPO with early stopping, the baselines and flat on the same unseen
bars of the execution model, one MLflow run, the cash floor and the registry gate), the
registered pyfunc, ``huracan size``, and random forecasts leaving the sizer on cash."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from runners import run_module  # tests/integration/runners.py
from typer.testing import CliRunner

from huracan.cli import app
from huracan.db.session import make_engine
from huracan.registry import events
from huracan.registry.manifest import cut
from huracan.sizing.data import sizing_frame
from huracan.sizing.env import SizingEnv
from huracan.sizing.job import POLICIES, SizingData
from huracan.sizing.ppo import load_sizer
from huracan.tracking.run import default_tracking_uri

pytestmark = pytest.mark.slow
SIZER = "huracan-sizer-BTCUSDT-1h"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, edge_sample_path):
    tmp = tmp_path_factory.mktemp("sizer")
    fc = run_module("huracan.train", ["experiment=walkforward_btc_1h", "model=xgboost",
                                f"data.path={edge_sample_path}",
                                "importance.enabled=false", "explain.max_rows=20",
                                f"data.quality_log={tmp / 'dq.jsonl'}",
                                f"hydra.run.dir={tmp / 'fc'}"], tmp)
    assert fc.returncode == 0, fc.stderr[-3000:]
    run_id = json.loads((tmp / "fc" / "result.json").read_text())["run_id"]
    proc = run_module("huracan.sizer", ["sizer.total_timesteps=6144", "sizer.eval_every=2048",
                                  "sizer.ppo.n_steps=1024", f"sizer.forecaster_run={run_id}",
                                  f"hydra.run.dir={tmp / 'sz'}"], tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    uri = default_tracking_uri(tmp / "mlruns")
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("huracan")
    sizer_run = next(r for r in client.search_runs([exp.experiment_id])
                     if r.data.tags.get("huracan.role") == "sizer")
    return tmp, uri, client, run_id, sizer_run, proc.stdout


def test_the_run_logs_every_policy_on_the_same_unseen_bars(trained):
    tmp, _, client, fc_run, run, stdout = trained
    m, tags = run.data.metrics, run.data.tags
    for policy in POLICIES:
        for metric in ("sharpe", "sortino", "max_drawdown", "calmar", "psr"):
            assert f"test_{policy}_{metric}" in m
        assert f"val_{policy}_composite_score" in m
    assert tags["forecaster_run_id"] == fc_run
    # time order: PPO's training part, then validation, then the unseen part
    t = {k: pd.Timestamp(tags[f"sizer_{k}"]) for k in
         ("train_start", "train_end", "val_start", "val_end", "test_start", "test_end")}
    assert t["train_end"] < t["val_start"] <= t["val_end"] < t["test_start"] <= t["test_end"]
    assert m["train_bars"] > 2 * 720 and m["test_bars"] >= 50
    assert tags["serve_policy"] in (*POLICIES, "flat")
    # the served policy beat cash on the unseen bars, or the sizer serves flat; the reason says
    beaten = m["cash_beaten"] == 1.0
    assert (tags["serve_policy"] != "flat") == beaten
    assert ("does not beat cash" in tags["serve_reason"]) == (not beaten)
    assert 0.0 <= m["cash_psr"] <= 1.0 and m["cash_min_psr"] == 0.9
    history = client.get_metric_history(run.info.run_id, "val_reward")
    assert len(history) >= 1
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "sizer")}
    assert {"sizer/policy.zip", "sizer/test_comparison.csv", "sizer/learning_curve.csv"} <= arts
    assert "plots/sizing.png" in {a.path for a in client.list_artifacts(run.info.run_id,
                                                                          "plots")}
    assert "sizing on the unseen part" in stdout
    # the unseen bars every policy was scored on are the same bars
    ret = pd.read_parquet(client.download_artifacts(run.info.run_id,
                                                    "sizer/test_returns.parquet", str(tmp)))
    stamps = {p: tuple(g["timestamp"]) for p, g in ret.groupby("policy")}
    assert len(set(stamps.values())) == 1 and set(stamps) == {*POLICIES, "flat"}
    assert min(stamps["ppo"]) == t["test_start"]
    # flat earns nothing; every other policy pays the execution model's costs when it trades
    cash = ret[ret.policy == "flat"]
    assert (cash["strategy_return"] == 0).all() and (cash["position"] == 0).all()
    fixed = ret[ret.policy == "fixed"]
    assert (fixed["cost"] > 0).any()
    # fills at the next open: the costs are more than the fee (half-spread and slippage too)
    first = fixed[fixed["turnover"] > 0].iloc[0]
    assert first["cost"] > 0.0004 * first["turnover"]
    params = run.data.params
    assert params["backtest.fill"] == "next_open"
    assert float(params["backtest.slippage_bps"]) > 0


def test_the_sizer_version_went_through_the_gate(trained):
    tmp, _, client, _, run, _ = trained
    versions = client.search_model_versions(f"name='{SIZER}'")
    assert len(versions) == 1 and versions[0].run_id is not None
    v = versions[0]
    evs = events.history(make_engine(f"sqlite:///{tmp / 'brain.db'}"), SIZER)
    assert len(evs) == 1 and evs[0].candidate_version == str(v.version)
    assert evs[0].candidate_score == pytest.approx(run.data.metrics["test_ppo_composite_score"])
    assert v.tags["huracan.gate"] == evs[0].event
    assert v.tags["huracan.serve_policy"] == run.data.tags["serve_policy"]
    # the model gate's write path (huracan.registry.decision.apply_decision): staging marks the
    # candidate, and a promotion carries what rollback and monitor read
    assert client.get_model_version_by_alias(SIZER, "staging").version == v.version
    assert v.tags["huracan.gate_reason"] == cut(evs[0].reason)  # <= 250 chars; whole below
    assert evs[0].reason in v.description
    if evs[0].event == "promoted":
        assert float(v.tags["huracan.score_at_promotion"]) == pytest.approx(
            evs[0].candidate_score, nan_ok=True)
        assert v.tags["huracan.promoted_window_end"] == evs[0].evidence["eval_end"]
        assert client.get_model_version_by_alias(SIZER, "production").version == v.version
    assert set(evs[0].evidence["baselines"]) == set(POLICIES) - {"ppo"}
    m = run.data.metrics
    best_base = max(m[f"test_{p}_composite_score"] for p in POLICIES if p != "ppo")
    if run.data.tags["serve_policy"] == "flat":
        # nothing served beat cash on the unseen bars: production serves flat (no champion)
        assert evs[0].event == "promoted" and "serves flat" in evs[0].reason
    elif evs[0].event == "promoted":  # PPO beat cash and every baseline there
        assert "beats cash" in evs[0].evidence["ppo_cash"]
        assert m["test_ppo_composite_score"] >= best_base
    else:
        assert "rejected" in evs[0].reason


def test_the_registered_pyfunc_acts_as_the_policy(trained):
    tmp, uri, client, _, run, _ = trained
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(f"models:/{SIZER}/1")
    sizer = load_sizer(client.download_artifacts(run.info.run_id, "sizer/policy.zip",
                                                 str(tmp)))
    rng = np.random.default_rng(0)
    n = 300
    frame = pd.DataFrame({"timestamp": pd.date_range("2024", periods=n, freq="1h", tz="UTC"),
                          "prediction": rng.normal(0, 1e-3, n),
                          "asset_return": rng.normal(0, 5e-3, n), "regime": "normal"})
    env = SizingEnv(SizingData.from_frame(sizing_frame(frame, None, "1h", None)),
                    sizer.eval_config())
    obs, _ = env.reset(options={"start": 0})
    for _ in range(200):
        obs, *_ = env.step(np.array([0.5, 2.0]))
    got = model.predict(pd.DataFrame([obs], columns=list(env.observation_names)))
    a = np.clip(sizer.act(obs), -1, 1)
    assert got["size"].iloc[0] == pytest.approx((a[0] + 1) / 2, abs=1e-6)
    assert got["leverage"].iloc[0] == pytest.approx(1 + (a[1] + 1) / 2 * 4, abs=1e-5)


def test_huracan_size_suggests_for_the_latest_bar(trained, edge_sample_path):
    tmp, uri, client, fc_run, _, _ = trained
    # the walk-forward forecaster (weekly steps: a 75-bar last step) was promoted by its gate,
    # on 168 out-of-sample bars, not by hand
    prod = client.get_model_version_by_alias("huracan-BTCUSDT-1h", "production")
    assert prod.run_id == fc_run
    [ev] = [e for e in events.history(make_engine(f"sqlite:///{tmp / 'brain.db'}"),
                                      "huracan-BTCUSDT-1h") if e.alias == "production"]
    assert ev.event == "promoted" and ev.eval_bars == 168
    runner = CliRunner()
    fixed = runner.invoke(app, ["size", "BTC/USDT", "--json", "--policy", "fixed",
                                "--tracking-uri", uri])
    assert fixed.exit_code == 0, fixed.output
    f = json.loads(fixed.output)
    from huracan.data.ohlcv import load_ohlcv

    candles, _ = load_ohlcv(edge_sample_path, "1h")
    assert f["last_bar"] == str(candles["timestamp"].iloc[-1])  # the unlabelled latest bar
    assert (f["size"], f["leverage"]) == (1.0, 1.0)
    assert f["position"] == np.sign(f["forecast"])
    ppo = json.loads(runner.invoke(app, ["size", "BTC/USDT", "--json", "--policy", "ppo",
                                         "--tracking-uri", uri]).output)
    assert 0.0 <= ppo["size"] <= 1.0 and 1.0 <= ppo["leverage"] <= 5.0
    assert ppo["forecast"] == f["forecast"] and ppo["policy"] == "ppo"
    auto = runner.invoke(app, ["size", "BTC/USDT", "--tracking-uri", uri])
    assert auto.exit_code == 0 and "policy " in auto.output
    bad = runner.invoke(app, ["size", "BTC/USDT", "--policy", "martingale",
                              "--tracking-uri", uri])
    assert bad.exit_code == 2 and "unknown policy" in bad.output
    none = runner.invoke(app, ["size", "DOGE/USDT", "--tracking-uri", uri])
    assert none.exit_code == 1 and "no production forecaster" in none.output


def test_the_sizer_without_a_forecaster_fails_in_one_line(tmp_path):
    proc = run_module("huracan.sizer", [f"hydra.run.dir={tmp_path / 'sz'}"], tmp_path)
    assert proc.returncode == 1
    assert "no production version of huracan-BTCUSDT-1h" in proc.stderr


def test_several_symbols_share_one_account_with_weights_within_capital(trained):
    tmp, _uri, client, btc_run, _, _ = trained
    fc = run_module("huracan.train", ["experiment=walkforward_btc_1h", "data=eth_sample",
                                "model=xgboost", "importance.enabled=false",
                                "explain.max_rows=20", "registry.enabled=false",
                                f"data.quality_log={tmp / 'dq.jsonl'}",
                                f"hydra.run.dir={tmp / 'fc_eth'}"], tmp)
    assert fc.returncode == 0, fc.stderr[-3000:]
    eth_run = json.loads((tmp / "fc_eth" / "result.json").read_text())["run_id"]
    proc = run_module("huracan.sizer", ["sizer.symbols=[BTC/USDT,ETH/USDT]",
                                  f"sizer.forecaster_runs=[{btc_run},{eth_run}]",
                                  "sizer.total_timesteps=2048", "sizer.eval_every=1024",
                                  "sizer.ppo.n_steps=512", f"hydra.run.dir={tmp / 'pf'}"], tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "PPO mean allocation on the unseen part: BTC/USDT" in proc.stdout
    exp = client.get_experiment_by_name("huracan")
    run = next(r for r in client.search_runs([exp.experiment_id])
               if r.data.tags.get("symbol") == "BTC/USDT,ETH/USDT")
    m = run.data.metrics
    for policy in ("ppo", "equal_weight", "inverse_volatility"):
        assert f"test_{policy}_sharpe" in m and f"val_{policy}_composite_score" in m
    assert run.data.tags["forecaster_run_id"] == f"{btc_run},{eth_run}"
    frame = pd.read_parquet(client.download_artifacts(run.info.run_id,
                                                      "sizer/test_returns.parquet", str(tmp)))
    ppo = frame[frame.policy == "ppo"]
    w = ppo[["weight:BTC/USDT", "weight:ETH/USDT"]].to_numpy()
    assert len(ppo) == m["test_bars"] and (w >= 0).all() and (w.sum(axis=1) <= 1 + 1e-9).all()
    # a portfolio run is logged, not registered: only the single-symbol sizer is in the registry
    sizers = [r.name for r in client.search_registered_models() if "sizer" in r.name]
    assert sizers == [SIZER]


def test_random_forecasts_leave_the_sizer_on_cash(trained, tmp_path):
    """A forecaster run whose OOS forecasts are noise: whatever the sizer would serve does not
    beat cash on the unseen bars, so the job serves flat, says why, production answers size 0."""
    tmp, uri, client, fc_run, _, _ = trained
    oos = pd.read_parquet(client.download_artifacts(fc_run, "backtest/oos_returns.parquet",
                                                    str(tmp_path)))
    rng = np.random.default_rng(0)
    oos["prediction"] = rng.normal(0.0, float(oos["prediction"].std()), len(oos))
    exp = client.get_experiment_by_name("huracan")
    noise = client.create_run(exp.experiment_id, tags={"mlflow.runName": "random-forecasts"})
    rid = noise.info.run_id
    client.log_artifact(rid, client.download_artifacts(fc_run, "config/resolved.yaml",
                                                       str(tmp_path)), "config")
    path = tmp_path / "oos_returns.parquet"
    oos.to_parquet(path, index=False)
    client.log_artifact(rid, str(path), "backtest")
    client.set_terminated(rid)
    before = {v.version for v in client.search_model_versions(f"name='{SIZER}'")}
    proc = run_module("huracan.sizer", ["sizer.total_timesteps=1024", "sizer.eval_every=512",
                                        "sizer.ppo.n_steps=256", f"sizer.forecaster_run={rid}",
                                        f"hydra.run.dir={tmp / 'sz_noise'}"], tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "served policy: flat" in proc.stdout and "serves flat" in proc.stdout
    run = next(r for r in client.search_runs([exp.experiment_id])
               if r.data.tags.get("forecaster_run_id") == rid)
    assert run.data.tags["serve_policy"] == "flat"
    assert "does not beat cash" in run.data.tags["serve_reason"]
    assert run.data.metrics["cash_beaten"] == 0.0
    (new,) = [v for v in client.search_model_versions(f"name='{SIZER}'")
              if v.version not in before]
    prod = client.get_model_version_by_alias(SIZER, "production")
    evs = events.history(make_engine(f"sqlite:///{tmp / 'brain.db'}"), SIZER)
    if prod.version == new.version:  # flat went to production
        assert evs[-1].event == "promoted" and "serves flat" in evs[-1].reason
        answer = CliRunner().invoke(app, ["size", "BTC/USDT", "--json", "--tracking-uri", uri])
        assert answer.exit_code == 0, answer.output
        got = json.loads(answer.output)
        assert got["policy"] == "flat" and got["size"] == 0.0 and got["position"] == 0.0
        assert "does not beat cash" in got["reason"]
    else:  # a production PPO that still beats cash on these bars stays
        assert evs[-1].event == "rejected" and "stays" in evs[-1].reason
