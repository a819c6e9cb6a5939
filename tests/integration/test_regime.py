"""Regimes end to end on the shipped sample: a sweep logs per-regime evidence, the switching
comparison and the regime map (a gated ``regime-*`` alias where a model beats cash on the
regime's bars, else cash); ``huracan select`` answers from that store. On a random walk, every
regime is cash and ``select`` answers position 0 with the reason."""

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
from huracan.evaluation.evidence import beats_cash
from huracan.regime import select
from huracan.regime.detection import REGIMES, VolatilityRegime, realized_volatility_24h
from huracan.regime.registry import REGIME_MAP_TAG, current_map
from huracan.registry import events
from huracan.tracking.run import default_tracking_uri

pytestmark = pytest.mark.slow
NAME = "huracan-BTCUSDT-1h"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, train_cli):
    tmp = tmp_path_factory.mktemp("regime")
    proc = train_cli(["model=lightgbm,xgboost", "model.n_estimators=60", "explain.max_rows=20",
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
        per = {r: m.get(f"regime/{r}/val_bars", 0.0) for r in REGIMES}
        assert sum(per.values()) == m["val_bars"]  # every validation bar has one regime
        assert any(f"regime/{r}/test_sharpe" in m for r in REGIMES)
        assert not [k for k in m if "__regime_" in k]  # grouped under regime/ (issue 26)
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
        assert {f"switching/{s}_{k}" for k in ("sharpe", "max_drawdown", "n_trades")} <= set(m)
    assert m["switching/bars"] == children[0].data.metrics["test_bars"]  # chosen on val
    assert m["switching/buy_hold_n_trades"] == 1 and m["sweep/jobs"] == len(children)
    report = _json(client.download_artifacts(
        parent.info.run_id, "regime/switching.json", str(tmp)))
    assert report["choices"][0]["fold"] == 1
    assert set(report["choices"][0]["regimes"]) == set(REGIMES)
    assert "regime switching vs single best vs buy & hold" in stdout


def _floor_by_hand(client, tmp, version: str, regime: str):
    """The cash verdict of a version's run on its validation bars of ``regime``, from its
    logged per-bar returns and trades entered there (what the selection must have seen)."""
    run_id = client.get_model_version(NAME, version).run_id
    val = pd.read_parquet(client.download_artifacts(run_id, "backtest/val_returns.parquet",
                                                    str(tmp)))
    net = val.loc[val["regime"] == regime, "strategy_return"].to_numpy()
    trades = client.get_run(run_id).data.metrics.get(f"regime/{regime}/val_n_trades", 0.0)
    return net, int(trades)


def test_regime_map_is_a_model_only_where_it_beats_cash(sweep):
    tmp, _, client, _, _, _ = sweep
    mapping = current_map(client, NAME)
    assert set(mapping) == set(REGIMES)
    history = events.history(make_engine(f"sqlite:///{tmp / 'brain.db'}"), NAME)
    by_alias = {e.alias: e for e in history}
    assert "production" in by_alias
    for regime, entry in mapping.items():
        net, trades = _floor_by_hand(client, tmp, entry["candidate_version"], regime)
        verdict = beats_cash(net, trades, 0.9)
        alias = f"regime-{regime}"
        if entry["model"] == "cash":
            # the candidate considered does not beat cash on the regime's validation bars:
            # no gate, no alias, the verdict's figures in the reason
            assert not verdict.beats
            assert (entry["source"], entry["decision"], entry["exposure"], entry["version"]) \
                == ("cash", "cash", 0.0, None)
            assert verdict.reason.split(": ", 1)[-1] in entry["reason"]
            assert alias not in by_alias
            with pytest.raises(Exception, match="alias"):
                client.get_model_version_by_alias(NAME, alias)
        else:
            # a model choice beat cash there and went through the gate
            assert verdict.beats and entry["source"] in ("evidence", "fallback")
            event = by_alias[alias]
            assert entry["decision"] == event.event, entry["gate_reason"]
            if event.event == "promoted":
                holder = client.get_model_version_by_alias(NAME, alias)
                assert str(holder.version) == entry["version"] == entry["candidate_version"]


def test_select_answers_from_the_map_with_the_saved_thresholds(sweep, sample_path):
    tmp, uri, client, _, _, _ = sweep
    res = _cli(tmp, uri, "--json")
    assert res.exit_code == 0, res.output
    ans = json.loads(res.output)
    candles, _ = load_ohlcv(sample_path, "1h")  # complete 1h bars of the 5m sample
    mapping = current_map(client, NAME)
    # the regime by hand: the saved thresholds (of the run behind the map) on the 24h
    # volatility of the 1h bars
    first = next(e["candidate_version"] for e in mapping.values())
    det = _json(client.download_artifacts(client.get_model_version(NAME, first).run_id,
                                           "regime/detector.json", str(tmp)))
    close = candles.set_index("timestamp")["close"]
    vol = realized_volatility_24h(close, "1h")
    assert ans["last_bar"] == str(close.index[-1])
    assert ans["volatility"] == pytest.approx(float(vol.iloc[-1]), rel=1e-9)
    assert ans["regime"] == VolatilityRegime.from_dict(det).classify(vol.to_numpy())[-1]
    entry = mapping[ans["regime"]]
    assert ans["exposure"] == entry["exposure"]
    if entry["model"] == "cash":  # nothing beat cash in this regime: position 0, why
        assert (ans["source"], ans["position"], ans["version"]) == ("cash", 0.0, None)
        assert ans["reason"] == entry["reason"]
    else:
        holder = client.get_model_version_by_alias(NAME, ans["alias"])
        assert ans["version"] == str(holder.version) and ans["position"] is None
    # --at: the last bar that had closed by then
    at = _cli(tmp, uri, "--json", "--at", str(close.index[3000] + pd.Timedelta("30min")))
    assert at.exit_code == 0, at.output
    assert json.loads(at.output)["last_bar"] == str(close.index[2999])
    # human output names the regime and why
    text = _cli(tmp, uri)
    assert text.exit_code == 0 and f"regime {ans['regime']}" in text.output
    assert "why:" in text.output


def test_select_records_its_answer_in_the_prediction_log_only_when_on(sweep, monkeypatch):
    """The command, not the helper under it: with HURACAN_PREDICTION_LOG pointing at the brain
    store, ``huracan select`` writes one ``select`` row for the bar it answered, with its
    candles stored and digested; with the variable unset it writes nothing."""
    from huracan.data.prediction_store import inputs_digest, read_predictions

    tmp, uri, _, _, _, _ = sweep
    url = f"sqlite:///{tmp / 'brain.db'}"
    monkeypatch.setenv("HURACAN_PREDICTION_INPUTS", str(tmp / "inputs"))
    monkeypatch.delenv("HURACAN_PREDICTION_LOG", raising=False)
    engine = make_engine(url)
    try:
        before = len(read_predictions(engine, source="select"))
        assert _cli(tmp, uri, "--json").exit_code == 0
        assert len(read_predictions(engine, source="select")) == before  # off by default
        monkeypatch.setenv("HURACAN_PREDICTION_LOG", url)
        res = _cli(tmp, uri, "--json")
        assert res.exit_code == 0, res.output
        ans = json.loads(res.output)
        rows = read_predictions(engine, source="select")
        assert len(rows) == before + 1
        row = rows.iloc[-1]
        assert row["symbol"] == "BTC/USDT" and row["timeframe"] == "1h"
        assert str(pd.Timestamp(row["bar_time"])) == ans["last_bar"]
        stored = pd.read_parquet(row["inputs_path"])
        assert len(stored) == row["inputs_rows"] > 24
        assert inputs_digest(stored) == row["inputs_digest"]
    finally:
        engine.dispose()


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
    raw = client.get_registered_model(NAME).tags[REGIME_MAP_TAG]
    alias = f"regime-{regime}"
    holder = _alias_or_none(client, alias)
    prod = _alias_or_none(client, "production")
    # the state under test: the regime's choice is a model whose gate left the alias unset
    assert raw.startswith("runs:/")  # the tag links the map's artifact
    mapping = current_map(client, NAME)
    first = mapping[regime]["candidate_version"]
    mapping[regime] = {**mapping[regime], "model": "lightgbm", "source": "evidence",
                       "exposure": 1.0, "version": None, "decision": "rejected",
                       "gate_reason": "test"}
    # the state is written the old way (the whole map as the tag's JSON): it still reads
    client.set_registered_model_tag(NAME, REGIME_MAP_TAG, json.dumps(mapping))
    if holder is not None:
        client.delete_registered_model_alias(NAME, alias)
    client.set_registered_model_alias(NAME, "production", first)
    try:
        ans = select("BTC/USDT", "1h", client=client)
        assert (ans.alias, ans.source, ans.version, ans.position) == (
            "production", "production", str(first), None)
        assert f"regime-{regime} is unset (its gate: rejected: test)" in ans.reason
        assert np.isfinite(ans.exposure)
    finally:
        client.set_registered_model_tag(NAME, REGIME_MAP_TAG, raw)
        if holder is not None:
            client.set_registered_model_alias(NAME, alias, holder.version)
        if prod is not None:
            client.set_registered_model_alias(NAME, "production", prod.version)
        else:
            client.delete_registered_model_alias(NAME, "production")


def _alias_or_none(client, alias: str):
    try:
        return client.get_model_version_by_alias(NAME, alias)
    except Exception:  # unset
        return None


def test_select_errors_are_one_line_with_exit_codes(sweep):
    tmp, uri, _, _, _, _ = sweep
    none = CliRunner().invoke(app, ["select", "DOGE/USDT", "--tracking-uri", uri])
    assert none.exit_code == 1 and "no registered model huracan-DOGEUSDT-1h" in none.output
    bad = _cli(tmp, uri, "--at", "yesterday-ish")
    assert bad.exit_code == 2 and "is not a time" in bad.output
    early = _cli(tmp, uri, "--at", "2000-01-01")
    assert early.exit_code == 1 and "closed at or before" in early.output


# -- random forecasts: every regime is cash ---------------------------------------------------

RANDOM = "huracan-RNDUSDT-1h"


def _random_walk_candles(path: Path, n: int = 3000, seed: int = 5) -> None:
    """Hourly candles of a seeded random walk (no forecastable part: any model's forecast of
    it is a random forecast), with volatility blocks of 8, 16 and 32 bps a bar so that every
    regime occurs and the default costs (6 bps a unit of turnover) are of the order of a bar's
    move, as on a liquid market in calm hours; open = the previous close.

    What the test can claim: a forecast without edge passes a regime's floor only by chance,
    with probability up to ``1 - registry.min_psr`` (10 %) per regime when it pays no costs,
    less as its costs show. On this series the considered candidates' PSRs over data seeds 5-8
    (16 regime checks) ranged 0.00-0.89 and none beat cash; with volatility about twice as
    large (the costs more hidden in the noise), 2 of 16 checks passed by chance."""
    rng = np.random.default_rng(seed)
    vol = np.array([0.0008, 0.0016, 0.0032])[(np.arange(n) // 150) % 3]
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, vol)))
    open_ = np.r_[100.0, close[:-1]]
    wick = np.abs(rng.normal(0.0, 0.5 * vol, (2, n)))
    pd.DataFrame({
        "timestamp": pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC"),
        "open": open_, "high": np.maximum(open_, close) * (1 + wick[0]),
        "low": np.minimum(open_, close) * (1 - wick[1]), "close": close,
        "volume": rng.lognormal(3.0, 0.5, n)}).to_parquet(path)


@pytest.fixture(scope="module")
def random_sweep(tmp_path_factory, train_cli):
    tmp = tmp_path_factory.mktemp("random")
    data = tmp / "rnd_1h.parquet"
    _random_walk_candles(data)
    # threshold 0: every forecast trades, so the floor judges strategies that trade a lot
    proc = train_cli([f"data.path={data}", "data.symbol=RND/USDT", "backtest.threshold=0",
                      "model=lightgbm,xgboost", "model.n_estimators=30", "explain.max_rows=20",
                      "importance.enabled=false", "selection.min_trades=10", "-m"], tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    uri = default_tracking_uri(tmp / "mlruns")
    return tmp, uri, MlflowClient(tracking_uri=uri), proc.stdout


def test_random_forecasts_map_every_regime_to_cash(random_sweep):
    tmp, _, client, stdout = random_sweep
    mapping = current_map(client, RANDOM)
    assert set(mapping) == set(REGIMES)
    runs = {r.info.run_id: r for r in client.search_runs(
        [client.get_experiment_by_name("huracan").experiment_id])}
    for regime, entry in mapping.items():
        assert (entry["model"], entry["source"], entry["decision"], entry["exposure"],
                entry["version"]) == ("cash", "cash", "cash", 0.0, None), entry
        assert entry["reason"].startswith("cash: ")
        assert "does not beat cash" in entry["reason"] or "never trades" in entry["reason"]
        # no version holds the regime's alias
        with pytest.raises(Exception, match="alias"):
            client.get_model_version_by_alias(RANDOM, f"regime-{regime}")
        assert f"{RANDOM} regime-{regime} <- CASH (position 0)" in stdout
        # the considered candidate traded in the regime on its validation bars: the floor
        # judged a strategy, not an empty one
        version = client.get_model_version(RANDOM, entry["candidate_version"])
        trades = runs[version.run_id].data.metrics.get(f"regime/{regime}/val_n_trades", 0.0)
        assert trades >= 1, (regime, entry["reason"])
    history = events.history(make_engine(f"sqlite:///{tmp / 'brain.db'}"), RANDOM)
    assert not [e for e in history if e.alias.startswith("regime-")]  # no gate for cash


def test_select_answers_position_zero_with_the_reason_in_a_cash_regime(random_sweep):
    tmp, uri, client, _ = random_sweep
    res = CliRunner().invoke(app, ["select", "RND/USDT", "--tracking-uri", uri, "--db-url",
                                   f"sqlite:///{tmp / 'brain.db'}", "--json"])
    assert res.exit_code == 0, res.output
    ans = json.loads(res.output)
    mapping = current_map(client, RANDOM)
    assert ans["regime"] in REGIMES
    assert (ans["position"], ans["exposure"], ans["source"], ans["model_type"]) == (
        0.0, 0.0, "cash", "cash")
    assert ans["version"] is None and ans["alias"] is None
    assert ans["reason"] == mapping[ans["regime"]]["reason"]
    text = CliRunner().invoke(app, ["select", "RND/USDT", "--tracking-uri", uri, "--db-url",
                                    f"sqlite:///{tmp / 'brain.db'}"])
    assert text.exit_code == 0, text.output
    assert "model: cash: position 0 (trade nothing)" in text.output
    assert f"why: cash: {mapping[ans['regime']]['reason'].removeprefix('cash: ')}" in text.output
