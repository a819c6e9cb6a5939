"""apply_decision, the one write path of the model gate and the sizer's gate: what it writes
(tags before the alias, the event row, alerts) and that two decisions on one registered model
are serialized by the registry lock, the second seeing the first one's outcome as champion.

An in-memory stand-in for the MLflow client; the brain store is a migrated SQLite file."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from mlflow.exceptions import MlflowException

from huracan.db import migrate
from huracan.db.session import make_engine
from huracan.registry import events
from huracan.registry.decision import (
    PRODUCTION,
    STAGING,
    Decision,
    RegistryError,
    apply_decision,
)
from huracan.registry.gate import GateDecision

NAME = "huracan-TEST-1h"


class FakeClient:
    """The registry calls apply_decision makes, in memory; ``calls`` logs the writes in order."""

    def __init__(self, versions: dict[str, str | None]) -> None:
        self.versions = {v: SimpleNamespace(name=NAME, version=v, run_id=run, tags={},
                                            description="")
                         for v, run in versions.items()}
        self.aliases: dict[str, str] = {}
        self.description = ""
        self.calls: list[tuple[str, ...]] = []
        self.guard = threading.Lock()

    def get_model_version(self, name: str, version: str) -> Any:
        return self.versions[str(version)]

    def get_model_version_by_alias(self, name: str, alias: str) -> Any:
        if alias not in self.aliases:
            raise MlflowException(f"alias {alias} not found")
        return self.versions[self.aliases[alias]]

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        with self.guard:
            self.aliases[alias] = str(version)
            self.calls.append(("alias", alias, str(version)))

    def update_model_version(self, name: str, version: str, description: str) -> None:
        self.versions[str(version)].description = description

    def get_registered_model(self, name: str) -> Any:
        return SimpleNamespace(name=name, aliases=dict(self.aliases), tags={},
                               description=self.description)

    def update_registered_model(self, name: str, description: str) -> None:
        self.description = description

    def set_model_version_tag(self, name: str, version: str, key: str, value: Any) -> None:
        with self.guard:
            self.versions[str(version)].tags[key] = str(value)
            self.calls.append(("tag", str(version), key))


class Recorder:
    def __init__(self) -> None:
        self.alerts: list[Any] = []

    def notify(self, alert: Any) -> None:
        self.alerts.append(alert)


@pytest.fixture()
def brain(tmp_path: Path) -> Any:
    engine = make_engine(f"sqlite:///{tmp_path / 'brain.db'}")
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


def _decision(promote: bool, score: float = 1.0, champion: float | None = None, *,
              event: str | None = None, **kw: Any) -> Decision:
    verdict = GateDecision(promote, score, champion, 0.05, None,
                           f"{'promoted' if promote else 'rejected'} by hand")
    return Decision(verdict, event or ("promoted" if promote else "rejected"),
                    "composite_score", 300, {"eval_bars": 300}, **kw)


def test_promotion_tags_before_the_alias_moves_and_records_the_event(brain):
    client = FakeClient({"1": "run1", "2": "run2"})
    apply_decision(client, brain, NAME, "1", lambda c, ch: _decision(True, 0.5,
                                                                     window_end="2024-06-01"))
    rec = Recorder()
    seen: list[Any] = []

    def decide(cand: Any, champ: Any) -> Decision:
        seen.append((cand.version, None if champ is None else champ.version))
        return _decision(True, 0.7, 0.5, window_end="2024-07-01", tags={"serve_policy": "ppo"})

    out = apply_decision(client, brain, NAME, "2", decide, notifier=rec)
    assert seen == [("2", "1")] and out.champion_version == "1"
    assert client.aliases == {STAGING: "2", PRODUCTION: "2"}
    tags = client.versions["2"].tags
    assert tags == {"huracan.gate": "promoted", "huracan.gate_reason": "promoted by hand",
                    "huracan.serve_policy": "ppo", "huracan.previous_production": "1",
                    "huracan.score_at_promotion": "0.7",
                    "huracan.promoted_window_end": "2024-07-01"}
    writes = [c for c in client.calls if c[1] == "2" or c[-1] == "2"]
    assert writes[-1] == ("alias", PRODUCTION, "2")  # every tag is written before the move
    assert rec.alerts == []  # a plain promotion is not announced
    assert "### Gate (production): promoted\n\npromoted by hand" in client.versions["2"].description
    assert "| production | v2 |" in client.description  # the model's alias table, refreshed
    assert "| staging | v2 |" in client.description
    last = events.history(brain, NAME)[-1]
    assert (last.event, last.candidate_version, last.champion_version) == ("promoted", "2", "1")
    assert (last.candidate_score, last.champion_score, last.run_id) == (0.7, 0.5, "run2")


def test_rejection_and_skip_leave_the_alias_and_alert(brain):
    client = FakeClient({"1": "run1", "2": "run2", "3": "run3"})
    client.aliases[PRODUCTION] = "1"
    rec = Recorder()
    apply_decision(client, brain, NAME, "2", lambda c, ch: _decision(False, 0.1, 0.5),
                   notifier=rec)
    skip = _decision(False, math.nan, None, event="skipped")
    apply_decision(client, brain, NAME, "3", lambda c, ch: skip, alias="regime-bull",
                   notifier=rec)
    assert client.aliases == {PRODUCTION: "1", STAGING: "2"}  # only production moves staging
    assert client.versions["2"].tags["huracan.gate"] == "rejected"
    assert client.versions["3"].tags == {"huracan.regime-bull.gate": "skipped"}  # reason:
    assert client.versions["3"].description.endswith("rejected by hand\n")  # the description
    assert [a.title for a in rec.alerts] == [f"{NAME}: candidate v2 rejected",
                                             f"{NAME}: candidate v3 for regime-bull skipped"]
    rejected, skipped = events.history(brain, NAME)
    assert rejected.champion_version == "1" and rejected.candidate_score == 0.1
    assert skipped.candidate_score is None and skipped.alias == "regime-bull"


def test_a_noted_promotion_alerts_and_a_version_without_run_is_refused(brain):
    client = FakeClient({"1": "run1", "2": None})
    rec = Recorder()
    apply_decision(client, brain, NAME, "1",
                   lambda c, ch: _decision(True, note=" (serving flat)"), notifier=rec)
    assert [a.title for a in rec.alerts] == [f"{NAME}: candidate v1 promoted (serving flat)"]
    with pytest.raises(RegistryError, match="no source run"):
        apply_decision(client, brain, NAME, "2", lambda c, ch: _decision(True))
    assert PRODUCTION in client.aliases and client.aliases[STAGING] == "1"


def test_a_decision_whose_event_contradicts_its_verdict_is_refused():
    with pytest.raises(ValueError, match="contradicts"):
        _decision(True, event="rejected")
    with pytest.raises(ValueError, match="unknown gate event"):
        _decision(False, event="rolled_back")


def test_two_decisions_at_once_are_serialized_and_the_second_sees_the_first(brain):
    """Thread A decides slowly (0.6 s inside ``decide``); thread B starts while A holds the
    lock: B's decide runs only after A's decision is applied, and B's champion is A's
    candidate."""
    client = FakeClient({"1": "run1", "2": "run2"})
    spans: dict[str, list[float]] = {}
    champions: dict[str, str | None] = {}
    a_inside = threading.Event()

    def decider(who: str, hold_s: float) -> Any:
        def decide(cand: Any, champ: Any) -> Decision:
            t0 = time.monotonic()
            champions[who] = None if champ is None else champ.version
            a_inside.set()
            time.sleep(hold_s)
            spans[who] = [t0, time.monotonic()]
            return _decision(True, 1.0 if who == "a" else 2.0, None if champ is None else 1.0)
        return decide

    errors: list[BaseException] = []

    def run(version: str, who: str, hold_s: float) -> None:
        try:
            apply_decision(client, brain, NAME, version, decider(who, hold_s))
            spans[who].append(time.monotonic())  # decision applied, lock released
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    a = threading.Thread(target=run, args=("1", "a", 0.6))
    a.start()
    assert a_inside.wait(10)
    b = threading.Thread(target=run, args=("2", "b", 0.0))
    b.start()
    a.join(30)
    b.join(30)
    assert not errors, errors
    assert spans["b"][0] >= spans["a"][1]  # B decided only after A's decide returned
    assert champions == {"a": None, "b": "1"}  # and saw A's promotion as its champion
    history = events.history(brain, NAME)
    assert [(e.candidate_version, e.champion_version) for e in history] == [("1", None),
                                                                            ("2", "1")]
    assert client.aliases[PRODUCTION] == "2"
