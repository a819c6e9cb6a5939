"""huracan.registry.manifest: the one module that writes and reads a version's manifest.

A fresh version carries a handful of short tags (at most 250 characters each); its whole
manifest is a JSON artifact of its run and its Markdown description; a version written the old
way (every manifest entry a tag) still reads. Real MLflow store (SQLite in tmp_path), a tiny
pyfunc that does nothing."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from huracan.registry.manifest import (
    MANIFEST_ARTIFACT,
    MANIFEST_TAG,
    MAX_TAG_CHARS,
    build_manifest,
    cut,
    manifest_value,
    model_description,
    read_manifest,
    refresh_model_description,
    set_version_tag,
    version_tags,
)
from huracan.registry.promotion import describe, seen_until
from huracan.registry.versions import register_version

NAME = "huracan-TESTUSDT-1h"
LONG = json.dumps({f"val_metric_{i:03d}": 0.123456789 * i for i in range(120)})  # ~3,400 chars


class _Nothing(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        return model_input


@pytest.fixture()
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    exp = mlflow.create_experiment("t", artifact_location=str(tmp_path / "artifacts"))
    mlflow.set_experiment(experiment_id=exp)
    return MlflowClient(uri)


def _run(tags: dict[str, str]) -> tuple[str, str]:
    """A finished run with ``tags``, a few metrics and a logged model: (run_id, model_uri)."""
    with mlflow.start_run() as run:
        mlflow.set_tags(tags)
        mlflow.log_params({"model.seed": "42", "model.n_estimators": "30"})
        mlflow.log_metrics({"val_composite_score": 0.5, "test_composite_score": 0.25,
                            **{f"val_m{i:03d}": 0.1 * i for i in range(150)}})
        info = mlflow.pyfunc.log_model(name="model", python_model=_Nothing(),
                                       pip_requirements=["mlflow"])
    return run.info.run_id, str(info.model_uri)


RUN_TAGS = {
    "model_type": "lightgbm", "symbol": "TEST/USDT", "timeframe": "1h",
    "dataset_sha256": "a" * 64, "train_frame_sha256": "b" * 64, "feature_list_sha256": "c" * 64,
    "code_version": "0.9.0+gdeadbeef", "train_start": "2024-01-01T00:00:00+00:00",
    "train_end": "2024-03-31T23:00:00+00:00", "val_start": "2024-04-01T00:00:00+00:00",
    "val_end": "2024-04-30T23:00:00+00:00", "test_start": "2024-05-01T00:00:00+00:00",
    "test_end": "2024-05-31T23:00:00+00:00", "split_scheme": "forward",
    "objective": "val_composite_score", "family_coverage": LONG, "regime_shares": LONG,
    "pooled": "true", "symbols": ",".join(f"SYM{i}/USDT" for i in range(60)),
    "cash_floor": LONG,
}


def test_a_fresh_version_has_few_short_tags_and_its_whole_manifest_elsewhere(client):
    run_id, uri = _run(RUN_TAGS)
    manifest = build_manifest(client, run_id, "composite_score")
    assert max(len(v) for v in manifest.values()) > 3000  # the evidence really is long
    mv = register_version(client, NAME, uri, manifest)
    tags = {k: v for k, v in mv.tags.items() if k.startswith("huracan.")}
    assert len(tags) <= 16, sorted(tags)  # was 34-44
    assert max(len(v) for v in tags.values()) <= MAX_TAG_CHARS
    assert tags["huracan.symbol"] == "TEST/USDT" and tags["huracan.model_type"] == "lightgbm"
    assert tags["huracan.selection_score"] == "0.5" and tags["huracan.objective"].startswith("val")
    assert tags["huracan.split"] == ("forward: train 2024-01-01..2024-03-31, val 2024-04-01.."
                                     "2024-04-30, test 2024-05-01..2024-05-31")
    assert tags[MANIFEST_TAG] == f"runs:/{run_id}/{MANIFEST_ARTIFACT}"
    for gone in ("huracan.metrics", "huracan.cash_floor", "huracan.symbols",
                 "huracan.family_coverage", "huracan.hyperparameters"):
        assert gone not in tags
    # the whole manifest: the run's JSON artifact, read back through the one reader
    stored = json.loads(Path(client.download_artifacts(run_id, MANIFEST_ARTIFACT)).read_text())
    assert stored["cash_floor"] == LONG and stored["symbols"] == RUN_TAGS["symbols"]
    read = read_manifest(client, mv)
    assert read["cash_floor"] == LONG and json.loads(read["hyperparameters"])["seed"] == "42"
    assert manifest_value(client, mv, "train_end") == RUN_TAGS["train_end"]
    assert seen_until(mv, client) == "2024-04-30T23:00:00+00:00"
    assert describe(client, NAME)["production"] is None
    # the description: headline, where the manifest is, the evidence as tables
    desc = client.get_model_version(NAME, mv.version).description
    assert desc.startswith(f"**{NAME} v1**: TEST/USDT · 1h · lightgbm")
    assert MANIFEST_ARTIFACT in desc and "### cash_floor" in desc and "SYM59/USDT" in desc
    assert "| production | (unset) |" in client.get_registered_model(NAME).description


def test_a_version_written_the_old_way_still_reads(client):
    run_id, uri = _run(RUN_TAGS)
    old = build_manifest(client, run_id, "composite_score")
    old = {k: v[:5000] for k, v in old.items()}  # what the old code tagged
    mv = mlflow.register_model(uri, NAME, tags=old)
    mv = client.get_model_version(NAME, mv.version)
    assert MANIFEST_TAG not in mv.tags
    read = read_manifest(client, mv)
    assert read["cash_floor"] == LONG and read["train_end"] == RUN_TAGS["train_end"]
    assert manifest_value(client, mv, "val_end") == RUN_TAGS["val_end"]
    assert seen_until(mv, client) == "2024-04-30T23:00:00+00:00"


def test_decision_tags_are_cut_and_the_model_description_lists_every_alias(client):
    run_id, uri = _run({"model_type": "xgboost", "symbol": "TEST/USDT", "timeframe": "1h"})
    mv = register_version(client, NAME, uri, build_manifest(client, run_id, "composite_score"))
    set_version_tag(client, NAME, mv.version, "gate_reason", "x" * 1000)
    value = client.get_model_version(NAME, mv.version).tags["huracan.gate_reason"]
    assert len(value) == MAX_TAG_CHARS and value.endswith("…")
    for alias in ("production", "regime-high", "rollback-2026"):
        client.set_registered_model_alias(NAME, alias, mv.version)
    refresh_model_description(client, NAME)
    text = client.get_registered_model(NAME).description
    for line in ("| production | v1 | the champion", "| staging | (unset) |",
                 "| regime-high | v1 | the model chosen for the high regime",
                 "| rollback-2026 | v1 | set outside Huracan's gate"):
        assert line in text, text


def test_cut_and_model_description_without_a_store():
    assert cut("abc", 3) == "abc" and cut("abcd", 3) == "ab…"
    text = model_description("m", {"production": "3"}, {"low": {
        "version": None, "model": "cash", "exposure": 0.0, "decision": "cash",
        "reason": "no | candidate"}})
    assert "| low | - | cash | 0.0 | cash | no \\| candidate |" in text
    assert version_tags({"huracan.symbol": "X", "metrics": "{}"}) == {"huracan.symbol": "X"}


def test_the_regime_map_is_an_artifact_linked_from_a_short_tag_and_old_maps_read(client):
    from huracan.regime.registry import MAP_ARTIFACT, REGIME_MAP_TAG, current_map, write_map

    run_id, uri = _run({"model_type": "xgboost", "symbol": "TEST/USDT", "timeframe": "1h"})
    register_version(client, NAME, uri, build_manifest(client, run_id, "composite_score"))
    assert current_map(client, NAME) == {}
    mapping = {r: {"version": None if r == "low" else "1", "model": "cash" if r == "low" else
                   "xgboost", "exposure": 0.0 if r == "low" else 1.0, "source": "evidence",
                   "decision": "cash" if r == "low" else "promoted", "reason": "why " * 120,
                   "gate_reason": "gate " * 100} for r in ("low", "normal", "high", "extreme")}
    assert len(json.dumps(mapping)) > 1700  # the map that used to be one tag
    write_map(client, NAME, mapping, run_id)
    rm = client.get_registered_model(NAME)
    assert rm.tags[REGIME_MAP_TAG] == f"runs:/{run_id}/{MAP_ARTIFACT}"
    assert max(len(v) for v in rm.tags.values()) <= MAX_TAG_CHARS
    assert current_map(client, NAME) == mapping
    assert "### Regime map" in rm.description and "| low | - | cash |" in rm.description
    client.set_registered_model_alias(NAME, "production", "1")
    refresh_model_description(client, NAME)  # an alias moved: the map's table is kept
    text = client.get_registered_model(NAME).description
    assert "| production | v1 |" in text and "| low | - | cash |" in text
    client.set_registered_model_tag(NAME, REGIME_MAP_TAG, json.dumps(mapping))  # the old way
    assert current_map(client, NAME) == mapping
