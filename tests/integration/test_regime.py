"""Regimes end to end on the shipped sample's bars (with synthetic prices carrying a real edge,
``edge_sample_path``: an alias is promoted only when its candidate beats cash on the regime's
bars): a sweep logs per-regime evidence, the switching comparison and gated ``regime-*`` aliases;
``huracan select`` answers from that store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from huracan.cli import app
from huracan.data.ohlcv import load_ohlcv
from huracan.db.session import make_engine
from huracan.regime import select
from huracan.regime.detection import REGIMES, VolatilityRegime, realized_volatility_24h
from huracan.regime.registry import REGIME_MAP_TAG
from huracan.registry import events
from huracan.tracking.run import default_tracking_uri

pytestmark = pytest.mark.slow
NAME = "huracan-BTCUSDT-1h"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, train_cli, edge_sample_path):
    tmp = tmp_path_factory.mktemp("regime")
    proc = train_cli(["model=lightgbm,xgboost", "model.n_estimators=60", "explain.max_rows=20",
                      f"data.path={edge_sample_path}",
                      "importance.enabled=false", "selection.min_trades=10", "-m"], tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    uri = default_tracking_uri(tmp / "mlruns")
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("huracan").experiment_id])
    parent = next(r for r in runs if r.data.tags.get("huracan.role") == "sweep")
    children = [r for r in runs if r is not parent]
    return tmp, uri, client, parent, children, proc.stdout


def _json(path: str):
    return json.loads(Path(path).read_text())


def _cli(tmp, uri, *args):
    return CliRunner().invoke(app, ["select", "BTC/USDT", "--tracking-uri", uri,
                                    "--db-url", f"sqlite:///{tmp / 'brain.db'}", *args])


def test_runs_log_per_regime_evidence_and_the_detector(sweep):
    tmp, _, client, _, children, _ = sweep
    for run in children:
        m = run.data.metrics
        assert run.data.tags["regime_kind"] == "volatility"
        per = {r: m.get(f"val_bars__regime_{r}", 0.0) for r in REGIMES}
        assert sum(per.values()) == m["val_bars"]  # every validation bar has one regime
        assert any(f"test_sharpe__regime_{r}" in m for r in REGIMES)
        arts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
        assert "plots/regime_timeline.png" in arts
        det = _json(client.download_artifacts(
            run.info.run_id, "regime/detector.json", str(tmp)))
        assert det["kind"] == "quantile" and len(det["thresholds"]) == 3
        assert sum(det["shares"].values()) == pytest.approx(1.0)


def test_the_sweep_compares_switching_single_best_and_buy_hold(sweep):
    tmp, _, client, parent, children, stdout = sweep
    m = parent.data.metrics
    for s in ("switching", "single_best", "buy_hold"):
        assert f"{s}_sharpe" in m and f"{s}_max_drawdown" in m and f"{s}_n_trades" in m
    assert m["switching_bars"] == children[0].data.metrics["test_bars"]  # chosen on val
    assert m["buy_hold_n_trades"] == 1
    report = _json(client.download_artifacts(
        parent.info.run_id, "regime/switching.json", str(tmp)))
    assert report["choices"][0]["fold"] == 1
    assert set(report["choices"][0]["regimes"]) == set(REGIMES)
    assert "regime switching vs single best vs buy & hold" in stdout


def test_regime_aliases_go_through_the_gate_and_are_tagged(sweep):
    tmp, _, client, _, _, _ = sweep
    mapping = json.loads(client.get_registered_model(NAME).tags[REGIME_MAP_TAG])
    assert set(mapping) == set(REGIMES)
    # this seeded sweep: low, normal and high have >= 10 trades of one candidate (evidence);
    # extreme has none, so the product's fallback: the lowest drawdown at exposure 0.25
    assert {r: (e["source"], e["exposure"]) for r, e in mapping.items()} == {
        "low": ("evidence", 1.0), "normal": ("evidence", 1.0), "high": ("evidence", 1.0),
        "extreme": ("fallback", 0.25)}
    assert "most conservative (lowest max drawdown" in mapping["extreme"]["reason"]
    history = events.history(make_engine(f"sqlite:///{tmp / 'brain.db'}"), NAME)
    by_alias = {e.alias: e for e in history}
    for regime, entry in mapping.items():
        event = by_alias[f"regime-{regime}"]  # every choice left a gate decision
        # no earlier holder of any alias: a choice is promoted iff it beats cash on the regime's
        # bars, and then holds its alias
        assert entry["decision"] == event.event, entry["gate_reason"]
        if event.event == "promoted":
            assert event.evidence["cash"]["beats"] and "beats cash" in entry["gate_reason"]
            holder = client.get_model_version_by_alias(NAME, f"regime-{regime}")
            assert str(holder.version) == entry["version"] == entry["candidate_version"]
        elif event.event == "rejected":
            assert "cash" in entry["gate_reason"] and entry["version"] is None
        else:  # fewer than regime.min_eval_bars bars of the regime: no decision
            assert event.event == "skipped" and "regime.min_eval_bars" in entry["gate_reason"]
            assert entry["version"] is None
    assert "production" in by_alias


def test_select_answers_with_the_alias_holder_and_the_saved_thresholds(sweep,
                                                                        edge_sample_path):
    tmp, uri, client, _, _, _ = sweep
    res = _cli(tmp, uri, "--json")
    assert res.exit_code == 0, res.output
    ans = json.loads(res.output)
    candles, _ = load_ohlcv(edge_sample_path, "1h")  # complete 1h bars of the 5m series
    # the regime by hand: the saved thresholds on the 24h volatility of the 1h bars
    holder_or_prod = client.get_model_version_by_alias(NAME, ans["alias"])
    assert ans["version"] == str(holder_or_prod.version)
    det = _json(client.download_artifacts(
        holder_or_prod.run_id, "regime/detector.json", str(tmp)))
    close = candles.set_index("timestamp")["close"]
    vol = realized_volatility_24h(close, "1h")
    assert ans["last_bar"] == str(close.index[-1])
    assert ans["volatility"] == pytest.approx(float(vol.iloc[-1]), rel=1e-9)
    assert ans["regime"] == VolatilityRegime.from_dict(det).classify(vol.to_numpy())[-1]
    mapping = json.loads(client.get_registered_model(NAME).tags[REGIME_MAP_TAG])
    assert ans["exposure"] == mapping[ans["regime"]]["exposure"]
    # --at: the last bar that had closed by then
    at = _cli(tmp, uri, "--json", "--at", str(close.index[3000] + pd.Timedelta("30min")))
    assert at.exit_code == 0, at.output
    assert json.loads(at.output)["last_bar"] == str(close.index[2999])
    # human output names the regime, version and why
    text = _cli(tmp, uri)
    assert text.exit_code == 0 and f"regime {ans['regime']}" in text.output
    assert "why:" in text.output and f"v{ans['version']}" in text.output


def test_select_ranks_by_a_logged_metric(sweep):
    tmp, uri, _, _, children, _ = sweep
    res = _cli(tmp, uri, "--json", "--rank-by", "max_drawdown")
    assert res.exit_code == 0, res.output
    ans = json.loads(res.output)
    assert ans["source"] == "rank" and ans["metric"] == "max_drawdown"
    values = [float(ans["metric_value"])]
    for run in children:  # no version has a lower value of the metric it was read on
        key = ans["reason"].split()[1]
        if key in run.data.metrics:
            values.append(run.data.metrics[key])
    assert ans["metric_value"] == min(values)
    high = json.loads(_cli(tmp, uri, "--json", "--rank-by", "max_drawdown",
                           "--highest").output)
    assert high["metric_value"] >= ans["metric_value"]


def test_select_falls_back_to_production_without_a_regime_alias(sweep):
    _, _, client, _, _, _ = sweep
    regime = select("BTC/USDT", "1h", client=client).regime
    holder = client.get_model_version_by_alias(NAME, f"regime-{regime}")
    client.delete_registered_model_alias(NAME, f"regime-{regime}")
    try:
        ans = select("BTC/USDT", "1h", client=client)
        prod = client.get_model_version_by_alias(NAME, "production")
        assert (ans.alias, ans.source, ans.version) == ("production", "production",
                                                       str(prod.version))
        assert f"regime-{regime} is unset" in ans.reason
    finally:
        client.set_registered_model_alias(NAME, f"regime-{regime}", holder.version)
    assert np.isfinite(select("BTC/USDT", "1h", client=client).exposure)


def test_select_errors_are_one_line_with_exit_codes(sweep):
    tmp, uri, _, _, _, _ = sweep
    none = CliRunner().invoke(app, ["select", "DOGE/USDT", "--tracking-uri", uri])
    assert none.exit_code == 1 and "no registered model huracan-DOGEUSDT-1h" in none.output
    bad = _cli(tmp, uri, "--at", "yesterday-ish")
    assert bad.exit_code == 2 and "is not a time" in bad.output
    early = _cli(tmp, uri, "--at", "2000-01-01")
    assert early.exit_code == 1 and "closed at or before" in early.output
