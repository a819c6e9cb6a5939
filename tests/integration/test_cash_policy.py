"""The built-in ``cash`` policy in the registry, against a real MLflow SQLite store and the brain
store on SQLite and Postgres: registered at most once per model, rollback with nothing earlier and
``registry rollback --to-cash`` go to it (recorded, alerted), ``registry show`` / ``monitor`` say
so, its pyfunc answers raw candles with position 0 and the recorded reason (in-process and over
HTTP with ``mlflow models serve``), and the in-process readers of production answer flat."""

from __future__ import annotations

import json
import logging
import uuid

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from runners import candle_payload, post_json, served_model  # tests/integration/runners.py
from typer.testing import CliRunner

from huracan.cli import app
from huracan.evaluation.evidence import CASH
from huracan.registry import events
from huracan.registry.cash import ensure_cash_version, find_cash_version, is_cash
from huracan.registry.promotion import (
    PRODUCTION,
    RegistryError,
    alias_version,
    describe,
    register_version,
    rollback,
)
from huracan.serving.cash import CASH_OUTPUT_COLUMNS, REASON_TAG
from huracan.serving.raw import InputRuleError
from huracan.tracking.run import default_tracking_uri


class Recorder:
    def __init__(self) -> None:
        self.alerts: list = []

    def notify(self, alert) -> None:
        self.alerts.append(alert)


class Constant(mlflow.pyfunc.PythonModel):
    """A stand-in forecaster: the registry decisions tested here never load it."""

    def predict(self, context, model_input, params=None):
        return np.zeros(len(model_input))


@pytest.fixture(scope="module")
def mlstore(tmp_path_factory):
    """One MLflow store for the module and one logged stand-in model: ``(client, uri,
    model_uri)``."""
    uri = default_tracking_uri(tmp_path_factory.mktemp("cash") / "mlruns")
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("huracan")
    with mlflow.start_run(experiment_id=exp):
        info = mlflow.pyfunc.log_model(name="model", python_model=Constant())
    yield client, uri, info.model_uri
    mlflow.set_tracking_uri(None)


@pytest.fixture()
def store(mlstore):
    """A fresh symbol ``C<hex>/USDT`` whose registered model ``huracan-C<hex>USDT-1h`` has
    versions 1 and 2: ``(client, uri, symbol, name, [v1, v2])``."""
    client, uri, model_uri = mlstore
    mlflow.set_tracking_uri(uri)
    base = f"C{uuid.uuid4().hex[:8].upper()}"
    symbol, name = f"{base}/USDT", f"huracan-{base}USDT-1h"
    versions = [_new_version(client, name, model_uri, symbol) for _ in range(2)]
    return client, uri, symbol, name, versions


def _new_version(client, name: str, model_uri: str, symbol: str) -> str:
    """A new version of ``name`` (the stand-in model)."""
    mv = register_version(client, name, model_uri,
                          {"huracan.symbol": symbol, "huracan.timeframe": "1h"})
    return str(mv.version)


def _promote(client, engine, version, champion, name):
    """What the gate writes when it promotes: the event, the tags, the alias."""
    events.record(engine, event="promoted", model_name=name, candidate_version=version,
                  champion_version=champion, candidate_score=1.0, champion_score=None,
                  tolerance=0.05, metric="composite_score", reason="beats cash")
    if champion is not None:
        client.set_model_version_tag(name, version, "huracan.previous_production", champion)
    client.set_model_version_tag(name, version, "huracan.score_at_promotion", "1.0")
    client.set_registered_model_alias(name, PRODUCTION, version)


def test_rollback_with_nothing_earlier_goes_to_cash_recorded_and_alerted(store, engine,
                                                                        mlstore):
    client, _, symbol, name, (v1, v2) = store
    _promote(client, engine, v1, None, name)
    _promote(client, engine, v2, v1, name)
    rec = Recorder()
    assert rollback(client, engine, name, notifier=rec) == (v2, v1)  # an earlier one exists
    assert rollback(client, engine, name, reason="nightly check", notifier=rec) == (v1, CASH)
    prod = alias_version(client, name, PRODUCTION)
    assert is_cash(prod) and prod.version not in (int(v1), int(v2))
    assert prod.tags["huracan.policy"] == CASH
    assert prod.tags[REASON_TAG].startswith("nightly check; no earlier production version")
    run = client.get_run(prod.run_id)
    assert run.data.tags["huracan.role"] == CASH and run.info.status == "FINISHED"
    ev = events.history(engine, name)[-1]
    assert (ev.event, ev.candidate_version, ev.champion_version) == (
        "rolled_back", str(prod.version), v1)
    assert ev.evidence["to"] == CASH and ev.reason == prod.tags[REASON_TAG]
    assert [a.severity for a in rec.alerts] == ["critical", "critical"]
    assert rec.alerts[1].title == f"{name}: production rolled back v{v1} -> cash"
    shown = describe(client, name)["production"]
    assert shown["policy"] == CASH and shown["position"] == 0
    assert shown["reason"] == prod.tags[REASON_TAG]
    with pytest.raises(RegistryError, match="already cash"):
        rollback(client, engine, name)
    # a later model promoted over cash (no champion) and rolled back: the SAME cash version
    v3 = _new_version(client, name, mlstore[2], symbol)
    _promote(client, engine, v3, None, name)
    assert rollback(client, engine, name, reason="degraded") == (v3, CASH)
    again = alias_version(client, name, PRODUCTION)
    assert again.version == prod.version and again.tags[REASON_TAG].startswith("degraded;")
    cash = [mv for mv in client.search_model_versions(f"name='{name}'") if is_cash(mv)]
    assert len(cash) == 1
    assert ensure_cash_version(client, name).version == prod.version


def test_cash_pyfunc_answers_raw_candles_with_position_0_and_the_reason(store, engine,
                                                                       sample_1h):
    client, _, _, name, (v1, _) = store
    _promote(client, engine, v1, None, name)
    rollback(client, engine, name, reason="nothing beats cash", to_cash=True)
    cash = find_cash_version(client, name)
    assert cash is not None and cash.tags["huracan.timeframe"] == "1h"
    model = mlflow.pyfunc.load_model(f"models:/{name}@production")
    bars = sample_1h.iloc[-30:].reset_index(drop=True)
    out = model.predict(bars)
    assert list(out.columns) == list(CASH_OUTPUT_COLUMNS)
    assert len(out) == len(bars)  # no warm-up: every bar sent is answered
    assert (pd.DatetimeIndex(out["timestamp"]) == pd.DatetimeIndex(bars["timestamp"])).all()
    for col in ("forecast", "position", "size", "leverage"):
        assert (out[col] == 0.0).all(), col
    assert set(out["reason"]) == {"nothing beats cash"}
    assert set(out["model_version"]) == {str(cash.version)}
    assert set(out["registered_model"]) == {name} and set(out["run_id"]) == {cash.run_id}
    # a feature frame: forecasts 0
    feats = pd.DataFrame({"log_return_1": [0.1, -0.2, 0.3]})
    np.testing.assert_array_equal(model.predict(feats), np.zeros(3))
    # the forecaster's request rules
    with pytest.raises(InputRuleError, match=r"'close'.*\[rule: required_columns\]"):
        model.predict(bars.drop(columns=["close"]))
    bad = bars.copy()
    bad.loc[5, "high"] = bad.loc[5, "low"] * 0.5
    with pytest.raises(InputRuleError, match=r"row 5 .*\[rule: high_ge_low\]"):
        model.predict(bad)


def test_registry_rollback_to_cash_show_monitor_history_as_commands(store, engine, db_url,
                                                                    caplog):
    client, uri, _, name, (v1, v2) = store
    _promote(client, engine, v1, None, name)
    _promote(client, engine, v2, v1, name)
    runner = CliRunner()
    common = ["--tracking-uri", uri]
    with caplog.at_level(logging.WARNING, logger="huracan.alerts"):
        res = runner.invoke(app, ["registry", "rollback", name, "--to-cash", "--reason",
                                  "exchange outage", *common, "--db-url", db_url])
    assert res.exit_code == 0, res.output
    assert f"{name}: production v{v2} -> cash (position 0): exchange outage" in res.output
    crit = [r for r in caplog.records if r.name == "huracan.alerts"]
    assert crit and crit[-1].levelno == logging.ERROR and "-> cash" in crit[-1].getMessage()
    prod = alias_version(client, name, PRODUCTION)
    assert is_cash(prod)  # although v1 was there to go back to
    res = runner.invoke(app, ["registry", "show", name, *common])
    assert res.exit_code == 0, res.output
    shown = json.loads(res.output)
    assert shown["production"]["policy"] == CASH
    assert shown["production"]["reason"] == "exchange outage"
    assert str(shown["production"]["version"]) == str(prod.version)
    res = runner.invoke(app, ["registry", "monitor", name, *common, "--db-url", db_url])
    assert res.exit_code == 0, res.output
    assert "production is cash" in res.output and "exchange outage" in res.output
    res = runner.invoke(app, ["registry", "history", name, "--json", "--db-url", db_url])
    last = json.loads(res.output)[-1]
    assert last["event"] == "rolled_back" and last["evidence"]["requested"] == "to_cash"
    res = runner.invoke(app, ["registry", "history", name, "--db-url", db_url])
    assert res.exit_code == 0 and f"cash/{prod.version}" in res.output.splitlines()[-1]
    res = runner.invoke(app, ["registry", "rollback", name, *common, "--db-url", db_url])
    assert res.exit_code == 1 and "already cash" in res.output


def test_in_process_readers_of_a_cash_production_answer_flat(store, engine):
    from huracan.analysis.drift import resolve_version
    from huracan.regime.live import select
    from huracan.serving.pyfunc import _production_sizer
    from huracan.serving.raw import ServingSpec
    from huracan.sizing.job import SizerError, SizerSettings, forecaster_run
    from huracan.sizing.serve import suggest

    client, _, symbol, name, (v1, _) = store
    _promote(client, engine, v1, None, name)
    rollback(client, engine, name, reason="no model beats cash", to_cash=True)
    answer = suggest(symbol, "1h", client=client)
    assert (answer.position, answer.size, answer.policy) == (0.0, 0.0, CASH)
    assert "no model beats cash" in answer.reason
    picked = select(symbol, "1h", client=client)
    assert (picked.exposure, picked.source, picked.model_type) == (0.0, CASH, CASH)
    assert "no model beats cash" in picked.reason
    with pytest.raises(LookupError, match="is cash"):
        resolve_version(client, name)
    with pytest.raises(SizerError, match="is cash"):
        forecaster_run(client, symbol, "1h", SizerSettings())
    # a sizer model whose production is the cash policy: size 0 in the served answer
    sizer_name = name.replace("huracan-", "huracan-sizer-")
    sized = ensure_cash_version(client, sizer_name, reason="PPO lost to cash")
    client.set_registered_model_alias(sizer_name, PRODUCTION, sized.version)
    spec = ServingSpec(symbol=symbol, timeframe="1h", registered_model=name, run_id=None,
                       features={}, feature_names=[])
    assert _production_sizer(spec) == (CASH, f"{sizer_name}/{sized.version}:{CASH}")


@pytest.mark.slow
def test_mlflow_models_serve_of_a_cash_production_answers_position_0(store, engine, sample_1h,
                                                                   tmp_path):
    client, uri, _, name, (v1, _) = store
    _promote(client, engine, v1, None, name)
    rollback(client, engine, name, reason="nothing beats cash on BTC", to_cash=True)
    cash = alias_version(client, name, PRODUCTION)
    with served_model(f"models:/{name}@production", uri, tmp_path) as (base, _):
        bars = sample_1h.iloc[-10:]
        code, answer = post_json(f"{base}/invocations", candle_payload(bars))
        assert code == 200
        rows = answer["predictions"]
        assert len(rows) == 10 and set(rows[0]) == set(CASH_OUTPUT_COLUMNS)
        assert all(r["position"] == 0.0 and r["size"] == 0.0 for r in rows)
        assert {r["reason"] for r in rows} == {"nothing beats cash on BTC"}
        assert {r["model_version"] for r in rows} == {str(cash.version)}
        code, err = post_json(f"{base}/invocations",
                              candle_payload(bars.rename(columns={"close": "closing"})))
        assert code == 400 and err["rule"] == "required_columns"
