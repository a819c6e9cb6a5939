"""Model registry against a real MLflow SQLite store and the brain store on SQLite and Postgres:
promotion, rejection, rollback, monitoring, history, end-of-sweep selection, the two-process race
and crash safety. The models train on the shipped sample's bars with synthetic prices carrying a
real edge (``edge_sample_path``): the gate promotes only candidates that beat cash, and the
sample's own candidates do not (tests/integration/test_cash_gate.py)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from huracan.callbacks.gate import best_candidates
from huracan.cli import app
from huracan.db import migrate
from huracan.db.session import make_engine
from huracan.evaluation.evidence import CASH
from huracan.registry import events
from huracan.registry.cash import is_cash
from huracan.registry.evaluate import load_window, score_model
from huracan.registry.gate import decide
from huracan.registry.manifest import read_manifest
from huracan.registry.promotion import (
    PRODUCTION,
    STAGING,
    RegistryError,
    alias_version,
    build_manifest,
    gate_candidate,
    monitor,
    register_version,
    rollback,
)
from huracan.tracking.run import default_tracking_uri
from huracan.train import run_config

pytestmark = pytest.mark.slow
WORKER = str(Path(__file__).with_name("registry_worker.py"))
METRIC = "composite_score"


class Recorder:
    def __init__(self) -> None:
        self.alerts: list = []

    def notify(self, alert) -> None:
        self.alerts.append(alert)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, edge_sample_path):
    """Three real training runs (no gating) in one MLflow store: (run_id, model_uri) each."""
    from hydra import compose, initialize_config_dir

    from huracan.config import register_resolvers

    tmp = tmp_path_factory.mktemp("registry")
    register_resolvers()
    conf = str(Path(__file__).resolve().parents[2] / "conf")
    out = []
    for model in ("lightgbm", "xgboost", "lightgbm model.num_leaves=4 model.seed=3"):
        name, *extra = model.split()
        with initialize_config_dir(config_dir=conf, version_base="1.3"):
            cfg = compose("train", overrides=[
                f"model={name}", *extra, f"data.path={edge_sample_path}",
                f"tracking.store_dir={tmp / 'mlruns'}",
                "tracking.tracking_uri=null", "registry.enabled=false", "explain.max_rows=20",
                f"data.quality_log={tmp / 'dq.jsonl'}"])
        res = run_config(cfg)
        out.append((res.run_id, res.model_uri))
    uri = default_tracking_uri(tmp / "mlruns")
    mlflow.set_tracking_uri(uri)
    return uri, out


@pytest.fixture()
def reg(trained, engine):
    """A fresh registered model name whose versions 1..3 are the three trained runs."""
    uri, runs = trained
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    name = f"huracan-T{uuid.uuid4().hex[:8]}-1h"
    versions = [register_version(client, name, model_uri,
                                 build_manifest(client, run_id, METRIC)).version
                for run_id, model_uri in runs]
    return client, engine, name, [str(v) for v in versions], uri


def _score_on(client, name, version, window_run):
    window = load_window(client, window_run)
    return score_model(f"models:/{name}/{version}", window).metrics.as_dict()[METRIC]


def test_version_carries_manifest(reg):
    client, _, name, versions, _ = reg
    mv = client.get_model_version(name, versions[0])
    tags = mv.tags
    assert mv.status == "READY"
    # the tags: the few a reader filters by, each short; the rest in the manifest artifact
    assert len(tags) <= 16 and max(len(v) for v in tags.values()) <= 250, tags
    for key in ("symbol", "timeframe", "model_type", "split", "gate_metric", "val_score",
                "dataset_sha256", "code_version", "run_id", "manifest"):
        assert f"huracan.{key}" in tags, key
    manifest = read_manifest(client, mv)
    for key in ("model_type", "hyperparameters", "train_frame_sha256", "feature_list_sha256",
                "n_features", "code_version", "train_start", "test_end", "metrics",
                "val_score", "test_score"):
        assert key in manifest, key
    assert json.loads(manifest["hyperparameters"])["seed"] == "42"
    assert "test_composite_score" in json.loads(manifest["metrics"])
    assert "### metrics" in mv.description and "test_composite_score" in mv.description


def test_first_candidate_promoted_and_loadable(reg):
    client, engine, name, versions, _ = reg
    rec = Recorder()
    out = gate_candidate(client, engine, name, versions[0], notifier=rec)
    assert out.decision.promote and out.champion_version is None
    assert out.decision.reason.startswith("candidate beats cash") and out.evidence["cash"]["beats"]
    assert alias_version(client, name, PRODUCTION).version == int(versions[0])
    assert alias_version(client, name, STAGING).version == int(versions[0])
    assert rec.alerts == []
    [ev] = events.history(engine, name)
    assert (ev.event, ev.candidate_version, ev.champion_version) == ("promoted", versions[0], None)
    model = mlflow.pyfunc.load_model(f"models:/{name}@production")
    window = load_window(client, client.get_model_version(name, versions[0]).run_id)
    names = model.metadata.get_input_schema().input_names()
    pred = model.predict(window.frame[names])
    assert np.isfinite(pred).all() and len(pred) == len(window.frame)


def test_gate_scores_both_on_the_candidate_window_and_follows_the_rule(reg):
    client, engine, name, versions, _ = reg
    gate_candidate(client, engine, name, versions[0])
    rec = Recorder()
    out = gate_candidate(client, engine, name, versions[1], notifier=rec)
    cand_run = client.get_model_version(name, versions[1]).run_id
    # both scores recomputed independently on the candidate's test window
    champ = _score_on(client, name, versions[0], cand_run)
    cand = _score_on(client, name, versions[1], cand_run)
    assert out.decision.champion_score == pytest.approx(champ)
    assert out.decision.candidate_score == pytest.approx(cand)
    assert out.decision.promote == (out.evidence["cash"]["beats"]
                                    and cand >= champ - 0.05 * abs(champ))
    expected_prod = versions[1] if out.decision.promote else versions[0]
    assert str(alias_version(client, name, PRODUCTION).version) == expected_prod
    assert str(alias_version(client, name, STAGING).version) == versions[1]
    assert len(rec.alerts) == (0 if out.decision.promote else 1)
    last = events.history(engine, name)[-1]
    assert last.champion_version == versions[0] and last.tolerance == 0.05
    gate_tag = client.get_model_version(name, versions[1]).tags["huracan.gate"]
    assert gate_tag == ("promoted" if out.decision.promote else "rejected")


def test_a_cash_champion_counts_as_no_champion(reg):
    """Production held by a version tagged huracan.policy=cash (the registered cash policy after
    a rollback): the candidate is not compared with it, beating cash is the whole test, and the
    cash version is what a rollback returns to."""
    client, engine, name, versions, _ = reg
    cash_version = versions[2]
    client.set_model_version_tag(name, cash_version, "huracan.policy", "cash")
    client.set_registered_model_alias(name, PRODUCTION, cash_version)
    out = gate_candidate(client, engine, name, versions[0])
    assert str(out.champion_version) == cash_version and out.decision.champion_score is None
    assert out.evidence["champion_policy"] == "cash" and "champion" not in out.evidence
    assert out.decision.promote == out.evidence["cash"]["beats"] is True
    assert "no champion" in out.decision.reason
    assert str(alias_version(client, name, PRODUCTION).version) == versions[0]
    assert client.get_model_version(name, versions[0]).tags[
        "huracan.previous_production"] == cash_version


def test_rejection_leaves_production_and_alerts(reg):
    client, engine, name, versions, _ = reg
    # all three runs share one data file and split, so one window scores them all
    window_run = client.get_model_version(name, versions[2]).run_id
    scores = {v: _score_on(client, name, v, window_run) for v in versions}
    best, worst = max(scores, key=scores.get), min(scores, key=scores.get)
    assert scores[best] > scores[worst]  # the three models differ on this window
    gate_candidate(client, engine, name, best)
    rec = Recorder()
    out = gate_candidate(client, engine, name, worst, tolerance=0.0, notifier=rec)
    assert out.decision.candidate_score == pytest.approx(scores[worst])
    assert out.decision.champion_score == pytest.approx(scores[best])
    assert not out.decision.promote
    assert str(alias_version(client, name, PRODUCTION).version) == best
    assert str(alias_version(client, name, STAGING).version) == worst
    assert rec.alerts and "rejected" in rec.alerts[0].title
    assert events.history(engine, name)[-1].event == "rejected"


def test_rollback_then_cash_then_refusal(reg):
    client, engine, name, versions, _ = reg
    gate_candidate(client, engine, name, versions[0])
    gate_candidate(client, engine, name, versions[1], tolerance=1e9)  # promotes whatever
    assert str(alias_version(client, name, PRODUCTION).version) == versions[1]
    rec = Recorder()
    assert rollback(client, engine, name, notifier=rec) == (versions[1], versions[0])
    assert str(alias_version(client, name, PRODUCTION).version) == versions[0]
    assert rec.alerts[0].severity == "critical"
    ev = events.history(engine, name)[-1]
    assert (ev.event, ev.candidate_version, ev.champion_version) == (
        "rolled_back", versions[0], versions[1])
    # nothing earlier than versions[0]: production goes to cash, recorded and alerted
    assert rollback(client, engine, name, notifier=rec) == (versions[0], CASH)
    prod = alias_version(client, name, PRODUCTION)
    assert is_cash(prod) and "no earlier production version" in prod.tags["huracan.cash_reason"]
    ev = events.history(engine, name)[-1]
    assert (ev.event, ev.candidate_version, ev.champion_version) == (
        "rolled_back", str(prod.version), versions[0])
    assert ev.evidence["to"] == CASH
    assert rec.alerts[-1].severity == "critical" and "-> cash" in rec.alerts[-1].title
    with pytest.raises(RegistryError, match="already cash"):
        rollback(client, engine, name)


def test_cli_history_json_show_and_rollback_to_cash(reg, db_url):
    client, engine, name, versions, uri = reg
    gate_candidate(client, engine, name, versions[0])
    runner = CliRunner()
    res = runner.invoke(app, ["registry", "history", name, "--json", "--db-url", db_url])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert len(rows) == 1
    assert {"event", "model_name", "candidate_version", "champion_version", "candidate_score",
            "champion_score", "tolerance", "reason", "time"} <= set(rows[0])
    res = runner.invoke(app, ["registry", "show", name, "--tracking-uri", uri])
    shown = json.loads(res.output)
    assert str(shown["production"]["version"]) == versions[0]
    assert shown["production"]["manifest"]["model_type"]
    res = runner.invoke(app, ["registry", "rollback", name, "--tracking-uri", uri,
                              "--db-url", db_url])
    assert res.exit_code == 0, res.output
    assert f"production v{versions[0]} -> cash" in res.output
    assert "no earlier production version" in res.output
    res = runner.invoke(app, ["registry", "show", name, "--tracking-uri", uri])
    shown = json.loads(res.output)
    assert shown["production"]["policy"] == "cash"
    assert "no earlier production version" in shown["production"]["reason"]
    res = runner.invoke(app, ["registry", "rollback", name, "--tracking-uri", uri,
                              "--db-url", db_url])
    assert res.exit_code == 1 and "already cash" in res.output


def test_monitor_rolls_back_only_beyond_tolerance(reg):
    client, engine, name, versions, _ = reg
    gate_candidate(client, engine, name, versions[0])
    gate_candidate(client, engine, name, versions[1], tolerance=1e9)
    prod_run = client.get_model_version(name, versions[1]).run_id
    window = load_window(client, prod_run)
    now = score_model(f"models:/{name}/{versions[1]}", window).metrics.as_dict()[METRIC]
    # at promotion it scored exactly what it scores now: within tolerance
    client.set_model_version_tag(name, versions[1], "huracan.score_at_promotion", repr(now))
    res = monitor(client, engine, name, window)
    assert not res.degraded and res.rolled_back_to is None
    # pretend it once scored much better: now it has degraded by more than 5 %
    high = abs(now) * 2 + 1.0
    client.set_model_version_tag(name, versions[1], "huracan.score_at_promotion", repr(high))
    rec = Recorder()
    res = monitor(client, engine, name, window, notifier=rec)
    assert res.degraded and res.rolled_back_to == versions[0]
    assert str(alias_version(client, name, PRODUCTION).version) == versions[0]
    ev = events.history(engine, name)[-1]
    assert ev.event == "rolled_back" and "degraded" in ev.reason
    assert ev.champion_score == pytest.approx(now)


def test_monitor_degraded_with_nothing_earlier_goes_to_cash(reg):
    client, engine, name, versions, _ = reg
    # the first production (as the gate leaves it): nothing earlier to roll back to
    client.set_registered_model_alias(name, PRODUCTION, versions[0])
    window = load_window(client, client.get_model_version(name, versions[0]).run_id)
    now = score_model(f"models:/{name}/{versions[0]}", window).metrics.as_dict()[METRIC]
    client.set_model_version_tag(name, versions[0], "huracan.score_at_promotion",
                                 repr(abs(now) * 2 + 1.0))
    rec = Recorder()
    res = monitor(client, engine, name, window, notifier=rec)
    assert res.degraded and res.rolled_back_to == CASH
    prod = alias_version(client, name, PRODUCTION)
    assert is_cash(prod) and "degraded by more than 5 %" in prod.tags["huracan.cash_reason"]
    ev = events.history(engine, name)[-1]
    assert ev.event == "rolled_back" and ev.evidence["to"] == CASH
    assert ev.champion_version == versions[0] and ev.champion_score == pytest.approx(now)
    assert [a.severity for a in rec.alerts] == ["critical"]
    # monitoring a cash production: not scored, says why
    again = monitor(client, engine, name, window)
    assert not again.degraded and again.cash_reason == prod.tags["huracan.cash_reason"]
    assert math.isnan(again.current_score)


def test_best_candidate_of_a_sweep_is_by_its_selection_score_not_test():
    def res(model, version, selection, test):
        return {"registered_model": model, "version": version, "status": "ok",
                "objective": "val_x", "objective_value": selection,
                "metrics": {"val_x": selection, "test_x": test}}

    results = [res("m", "1", 0.5, 9.0), res("m", "2", 0.7, -1.0), res("m", "3", math.nan, 99.0),
               res("n", "1", -0.2, 0.0),
               {"registered_model": "n", "version": "2", "status": "failed"}]
    best = {r["registered_model"]: r["version"] for r in best_candidates(results)}
    assert best == {"m": "2", "n": "1"}


def test_two_sweeps_gate_once_each_with_the_rule(tmp_path, train_cli, edge_sample_path):
    from huracan.regime.registry import REGIME_MAP_TAG, current_map

    uri = default_tracking_uri(tmp_path / "mlruns")
    client = MlflowClient(tracking_uri=uri)
    gated = []  # the regime aliases each sweep's map sent to the gate (cash takes none)
    for _ in range(2):
        proc = train_cli(["model=lightgbm,xgboost", "explain.max_rows=20",
                          f"data.path={edge_sample_path}", "-m"], tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "registry: huracan-BTCUSDT-1h" in proc.stdout
        registered = client.get_registered_model("huracan-BTCUSDT-1h")
        assert registered.tags[REGIME_MAP_TAG].startswith("runs:/")  # a link, not the map
        assert max(len(v) for v in registered.tags.values()) <= 250
        regime_map = current_map(client, "huracan-BTCUSDT-1h")
        assert set(regime_map) == {"low", "normal", "high", "extreme"}
        gated += [f"regime-{r}" for r, e in regime_map.items() if e["decision"] != "cash"]
    engine = make_engine(f"sqlite:///{tmp_path / 'brain.db'}")
    every = events.history(engine, "huracan-BTCUSDT-1h")
    evs = [e for e in every if e.alias == "production"]
    assert len(evs) == 2  # one production decision per sweep, not per job
    # and one per regime alias of a model choice per sweep (regime=volatility is the default)
    assert sorted(e.alias for e in every if e.alias != "production") == sorted(gated)
    exp = client.get_experiment_by_name("huracan")
    # the experiment opens on its runs in the MLflow UI ("Model training", not GenAI)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    every_run = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
    runs = [r for r in every_run if r.data.tags.get("huracan.role") != "sweep"]
    parents = [r for r in every_run if r.data.tags.get("huracan.role") == "sweep"]
    assert len(runs) == 4 and len(parents) == 2
    for ev, parent in zip(evs, parents, strict=True):
        # one winner per sweep: the parent names the version the gate considered, with its
        # headline metrics
        tags = parent.data.tags
        assert tags["best_run_id"] == ev.run_id == tags["huracan.gate.candidate_run_id"]
        assert tags["huracan.gate.version"] == str(ev.candidate_version)
        best = client.get_run(ev.run_id).data.metrics
        assert parent.data.metrics["best/val_sharpe"] == pytest.approx(best["val_sharpe"])
        assert parent.data.metrics["best/test_sharpe"] == pytest.approx(best["test_sharpe"])
        assert parent.data.metrics["best/val_n_trades"] == best["val_n_trades"] >= 30
        if "top_ineligible_run_id" in tags:
            top = client.get_run(tags["top_ineligible_run_id"]).data.metrics
            assert top["val_n_trades"] < 30 and top[f"val_{METRIC}"] > best[f"val_{METRIC}"]
    for ev, sweep in zip(evs, (runs[:2], runs[2:]), strict=True):
        # the gated version is the sweep's best on validation among the candidates with enough
        # validation trades to be eligible (selection.min_trades = 30)
        eligible = [r for r in sweep if r.data.metrics["val_n_trades"] >= 30]
        best = max(eligible, key=lambda r: r.data.metrics[f"val_{METRIC}"])
        assert ev.run_id == best.info.run_id
        assert ev.candidate_score is not None
        # the rule: beat cash, then (with a champion) the 5 % rule
        promote = ev.evidence["cash"]["beats"] and (
            ev.champion_score is None
            or decide(ev.candidate_score, ev.champion_score, ev.tolerance).promote)
        assert (ev.event == "promoted") == promote
    assert evs[0].champion_score is None and evs[1].champion_score is not None
    assert evs[1].champion_version == evs[0].candidate_version
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model("models:/huracan-BTCUSDT-1h@production")
    assert model.metadata.get_input_schema().input_names()


def _spawn(args, env=None):
    return subprocess.Popen([sys.executable, WORKER, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def test_lock_serializes_two_processes(db_url, tmp_path):
    migrate.upgrade(make_engine(db_url))
    start = time.time() + 6.0
    outs = [tmp_path / f"hold{i}.json" for i in range(2)]
    procs = [_spawn(["hold", db_url, "huracan-LOCK-1h", str(start), "1.5", str(o)]) for o in outs]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()[-2000:]
    (a0, a1), (b0, b1) = sorted((json.loads(o.read_text())["t0"], json.loads(o.read_text())["t1"])
                                for o in outs)
    assert b0 >= a1 - 1e-3  # the second held the lock only after the first released it
    assert a1 - a0 >= 1.5 and b1 - b0 >= 1.5


def test_two_processes_finishing_at_once_never_share_a_champion(reg, db_url, tmp_path):
    client, engine, name, versions, uri = reg
    gate_candidate(client, engine, name, versions[0])
    start = time.time() + 8.0
    outs = [tmp_path / f"gate{v}.json" for v in versions[1:]]
    procs = [_spawn(["gate", uri, db_url, name, v, str(start), str(o)])
             for v, o in zip(versions[1:], outs, strict=True)]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()[-3000:]
    evs = events.history(engine, name)
    assert len(evs) == 3
    first, second = evs[1], evs[2]
    prod_after_first = first.candidate_version if first.event == "promoted" else \
        first.champion_version
    # the later decision compared against the outcome of the earlier one, not the old champion
    assert second.champion_version == prod_after_first
    results = [json.loads(o.read_text()) for o in outs]
    (a0, _), (b0, _) = sorted((r["t0"], r["t1"]) for r in results)
    assert abs(a0 - b0) < 2.0  # they really did start together


def test_killed_registration_never_leaves_production_incomplete(reg, db_url):
    client, _, name, versions, uri = reg
    run_id = client.get_model_version(name, versions[0]).run_id
    model_uri = client.get_model_version(name, versions[0]).source
    rng = np.random.default_rng(7)
    inside = 0
    for delay in rng.uniform(0.0, 1.5, size=3):
        proc = _spawn(["churn", uri, db_url, name, model_uri, run_id])
        # wait until the worker has finished one registration + gate (imports and start-up are
        # over), then kill it a random moment into the next one
        first, second = proc.stdout.readline(), proc.stdout.readline()
        if not (first.startswith("start") and second.startswith("done")):
            proc.kill()
            pytest.fail(f"worker did not complete an iteration: {first!r} {second!r}")
        time.sleep(float(delay))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        lines = [ln for ln in proc.stdout.read().splitlines() if ln]
        # the last line the worker printed says what it was doing when the kill landed
        if lines and lines[-1].startswith("start"):
            inside += 1
        prod = alias_version(client, name, PRODUCTION)
        assert prod is not None  # the first completed iteration promoted a version
        assert prod.status == "READY"
        assert prod.tags.get("huracan.run_id") == run_id  # the manifest is there
        assert read_manifest(client, prod)["run_id"] == run_id
        assert "huracan.score_at_promotion" in prod.tags
        model = mlflow.pyfunc.load_model(f"models:/{name}/{prod.version}")
        assert model.metadata.get_input_schema() is not None
    assert inside >= 2  # the kills landed during a registration or a gate, not between them
