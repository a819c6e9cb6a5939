"""A registered version's manifest: the ONE module that writes and reads it.

A version's manifest (:func:`huracan.registry.promotion.build_manifest`: model type,
hyperparameters, fingerprints, split ranges, metrics, cash-floor evidence, a pool's symbols...)
is about 40 entries, some thousands of characters long. Written as version tags it made the
registry pages unreadable, so since issue 26 it is stored in three places:

- **tags** (:data:`FILTER_KEYS`): the few a reader filters or sorts by (symbol, timeframe, model,
  split, selection metric and scores, data digest, code version, run, policy), each value cut to
  :data:`MAX_TAG_CHARS` characters, plus ``huracan.manifest``: where the whole manifest is;
- the **JSON artifact** :data:`MANIFEST_ARTIFACT` of the version's run (``registry/
  manifest.json``): every entry, uncut; it is what :func:`read_manifest` returns;
- the version's **Markdown description** (:func:`version_description`): the same entries as a
  table for the UI, and a section per gate decision (:func:`note_decision`).

Gate decisions add short tags (``huracan.gate``, ``huracan.gate_reason``...) through
:func:`set_version_tag`, which cuts the value; the full reason is in the description and the
``registry_events`` row. The registered model's description lists its aliases and what each
means (:func:`refresh_model_description`, called whenever an alias moves).

Versions registered before (every entry a tag, no ``huracan.manifest``) still read: their tags
are their manifest.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

#: the prefix of every Huracan tag on a registered version (``huracan.symbol``...)
TAG_PREFIX = "huracan."
#: the run artifact holding a version's whole manifest
MANIFEST_ARTIFACT = "registry/manifest.json"
#: the version tag naming where the manifest is (``runs:/<run_id>/registry/manifest.json``)
MANIFEST_TAG = f"{TAG_PREFIX}manifest"
#: the longest tag value written (characters); longer values are cut with an ellipsis
MAX_TAG_CHARS = 250
#: manifest entries kept as version tags (the ones a reader filters or sorts by)
FILTER_KEYS = (
    "symbol", "timeframe", "model_type", "split_scheme", "objective", "gate_metric",
    "selection_score", "val_score", "test_score", "dataset_sha256", "code_version", "run_id",
    "pooled", "policy", "cash_reason",
)
#: what each alias of a registered model means (``regime-<name>`` and others: :func:`alias_meaning`)
ALIAS_MEANINGS = {
    "production": "the champion: the version serving and paper-trading answer with "
                  "(moved only by the gate, a rollback or the monitor)",
    "staging": "the latest candidate put through the gate (promoted or not)",
    "champion": "the champion (kept for older tooling; production is the one served)",
}
_CACHE: dict[str, dict[str, str]] = {}
REGIME_HEADING = "### Regime map"

#: run tags copied into the version manifest
MANIFEST_RUN_TAGS = (
    "model_type", "symbol", "timeframe", "dataset_sha256", "train_frame_sha256",
    "feature_list_sha256", "n_features", "code_version", "train_start", "train_end",
    "val_start", "val_end", "test_start", "test_end", "n_folds", "oos_start", "oos_end",
    "split_scheme", "split_fractions", "split_train_bars", "split_val_bars", "split_step_bars",
    "split_embargo", "split_expanding", "split_oos_start", "split_oos_end", "objective",
    "label_kind", "rule_kind", "feature_families", "family_coverage", "regime_kind",
    "regime_shares", "pooled", "symbols", "cash_floor", "trade_symbols",
)


def build_manifest(client: MlflowClient, run_id: str, metric: str) -> dict[str, str]:
    """The version manifest from a finished run: model type, hyperparameters, fingerprints of the
    training frame and the feature list, split time ranges, code version, val/test/oos metrics,
    the gate metric and the selection score (the run's ``objective`` metric), all strings, keys
    ``huracan.<entry>`` (:func:`huracan.registry.versions.register_version` stores it:
    :func:`version_tags`, :func:`write_manifest`, :func:`describe_version`)."""
    run = client.get_run(run_id)
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    manifest = {k: tags[k] for k in MANIFEST_RUN_TAGS if k in tags}
    manifest["run_id"] = run_id
    manifest["hyperparameters"] = json.dumps(
        {k.removeprefix("model."): v for k, v in sorted(params.items()) if k.startswith("model.")})
    manifest["metrics"] = json.dumps(
        {k: v for k, v in sorted(metrics.items()) if k.startswith(("val_", "test_", "oos_"))})
    manifest["gate_metric"] = metric
    manifest["val_score"] = repr(metrics.get(f"val_{metric}", math.nan))
    manifest["test_score"] = repr(metrics.get(f"test_{metric}", math.nan))
    if tags.get("objective") in metrics:
        manifest["selection_score"] = repr(metrics[tags["objective"]])
    return {f"{TAG_PREFIX}{k}": v for k, v in manifest.items()}


def cut(value: Any, limit: int = MAX_TAG_CHARS) -> str:
    """``str(value)`` at most ``limit`` characters: a longer one ends in ``…``."""
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _strip(manifest: Mapping[str, Any]) -> dict[str, str]:
    return {str(k).removeprefix(TAG_PREFIX): str(v) for k, v in manifest.items()}


def manifest_uri(run_id: str) -> str:
    return f"runs:/{run_id}/{MANIFEST_ARTIFACT}"


def version_tags(manifest: Mapping[str, Any]) -> dict[str, str]:
    """The tags of a version with ``manifest`` (keys with or without ``huracan.``): its
    :data:`FILTER_KEYS` cut to :data:`MAX_TAG_CHARS`, a ``huracan.split`` summary (scheme and
    windows) and ``huracan.manifest`` (the artifact's ``runs:/`` URI) when it has a run and
    entries that are not tags."""
    m = _strip(manifest)
    tags = {f"{TAG_PREFIX}{k}": cut(m[k]) for k in FILTER_KEYS if k in m}
    split = split_summary(m)
    if split:
        tags[f"{TAG_PREFIX}split"] = cut(split)
    if m.get("run_id") and set(m) - set(FILTER_KEYS):
        tags[MANIFEST_TAG] = manifest_uri(m["run_id"])
    return tags


def split_summary(m: Mapping[str, str]) -> str:
    """``<scheme>: train a..b, val a..b, test a..b`` (dates only) from a manifest; ``""``
    without split entries."""
    parts = []
    for w in ("train", "val", "test", "oos"):
        start, end = m.get(f"{w}_start"), m.get(f"{w}_end")
        if start and end:
            parts.append(f"{w} {start[:10]}..{end[:10]}")
    scheme = m.get("split_scheme", "")
    if not parts:
        return scheme
    return f"{scheme or 'split'}: {', '.join(parts)}"


def write_manifest(client: MlflowClient, manifest: Mapping[str, Any]) -> None:
    """Log the whole manifest as :data:`MANIFEST_ARTIFACT` of its run (``run_id`` entry);
    nothing without one."""
    m = _strip(manifest)
    if m.get("run_id"):
        client.log_dict(m["run_id"], m, MANIFEST_ARTIFACT)
        _CACHE[m["run_id"]] = m


def read_manifest(client: MlflowClient, mv: ModelVersion) -> dict[str, str]:
    """A version's manifest, unprefixed keys (``symbol``, ``train_end``, ``metrics``...): the
    JSON artifact named by its ``huracan.manifest`` tag, over its ``huracan.`` tags (gate
    decisions, cash reason...); a version registered before the artifact existed: its tags.

    Raises:
        mlflow.exceptions.MlflowException: the artifact is named but cannot be read.
    """
    tags = _strip({k: v for k, v in (mv.tags or {}).items() if k.startswith(TAG_PREFIX)})
    uri = tags.pop("manifest", None)
    if not uri or not mv.run_id:
        return tags
    run_id = str(mv.run_id)
    if run_id not in _CACHE:
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(run_id, MANIFEST_ARTIFACT, tmp)
            _CACHE[run_id] = {str(k): str(v)
                              for k, v in json.loads(Path(path).read_text()).items()}
    return tags | _CACHE[run_id]


def manifest_value(client: MlflowClient, mv: ModelVersion | None, key: str) -> str | None:
    """One manifest entry of ``mv`` (``None`` when absent): the tag when it is one (uncut),
    else :func:`read_manifest`."""
    if mv is None:
        return None
    tag = (mv.tags or {}).get(f"{TAG_PREFIX}{key}")
    if tag is not None and not tag.endswith("…"):
        return str(tag)
    return read_manifest(client, mv).get(key)


def set_version_tag(client: MlflowClient, name: str, version: str | int, key: str,
                    value: Any) -> None:
    """Tag a version (``key`` with or without ``huracan.``), the value cut to
    :data:`MAX_TAG_CHARS`."""
    full = key if key.startswith(TAG_PREFIX) else f"{TAG_PREFIX}{key}"
    client.set_model_version_tag(name, str(version), full, cut(value))


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(rows: Mapping[str, Any], head: tuple[str, str] = ("entry", "value")) -> list[str]:
    out = [f"| {head[0]} | {head[1]} |", "|---|---|"]
    out += [f"| {_cell(k)} | {_cell(v)} |" for k, v in rows.items()]
    return out


def version_description(name: str, version: str | int, manifest: Mapping[str, Any]) -> str:
    """The Markdown description of a version: a headline (symbol, timeframe, model, split,
    selection score), where the whole manifest is, and its entries as tables (JSON entries such
    as ``metrics``, ``hyperparameters``, ``cash_floor`` as their own tables)."""
    m = _strip(manifest)
    head = " · ".join(x for x in (m.get("symbol"), m.get("timeframe"), m.get("model_type"))
                      if x)
    lines = [f"**{name} v{version}**: {head or 'Huracan version'}"]
    if split_summary(m):
        lines.append(f"\n{split_summary(m)}")
    if m.get("gate_metric"):
        lines.append(f"\nselection metric `{m['gate_metric']}`: val {m.get('val_score', '?')}, "
                     f"test {m.get('test_score', '?')}")
    if m.get("run_id"):
        lines.append(f"\nWhole manifest: artifact `{MANIFEST_ARTIFACT}` of run "
                     f"`{m['run_id']}` ({manifest_uri(m['run_id'])}).")
    plain: dict[str, str] = {}
    nested: dict[str, dict[str, Any]] = {}
    for k, v in sorted(m.items()):
        parsed = _json_object(v)
        if parsed is None:
            plain[k] = v
        else:
            nested[k] = parsed
    lines += ["", "### Manifest", "", *_table(plain)]
    for k, obj in nested.items():
        lines += ["", f"### {k}", "", *_table(obj, ("key", "value"))]
    return "\n".join(lines) + "\n"


def _json_object(value: str) -> dict[str, Any] | None:
    if not value.startswith("{"):
        return None
    try:
        obj = json.loads(value)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) and obj else None


def describe_version(client: MlflowClient, name: str, version: str | int,
                     manifest: Mapping[str, Any]) -> None:
    """Write :func:`version_description` as the version's description."""
    client.update_model_version(name, str(version),
                                description=version_description(name, version, manifest))


def note_decision(client: MlflowClient, name: str, version: str | int, alias: str,
                  event: str, reason: str) -> None:
    """Append a gate decision (alias, event, the whole reason) to the version's description."""
    mv = client.get_model_version(name, str(version))
    text = (mv.description or "").rstrip()
    text += f"\n\n### Gate ({alias}): {event}\n\n{reason}\n"
    client.update_model_version(name, str(version), description=text.lstrip())


def alias_meaning(alias: str) -> str:
    """What ``alias`` means (``regime-<name>``: the model chosen for that regime)."""
    if alias in ALIAS_MEANINGS:
        return ALIAS_MEANINGS[alias]
    if alias.startswith("regime-"):
        regime = alias.removeprefix("regime-")
        return (f"the model chosen for the {regime} regime (passed the gate on that regime's "
                f"unseen bars); `huracan select` serves it while the market is {regime}")
    return "set outside Huracan's gate (no documented meaning)"


def model_description(name: str, aliases: Mapping[str, Any],
                      regime_rows: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """The Markdown description of a registered model: what it is, every alias (set or not)
    with its version and meaning, and the per-regime map when there is one."""
    lines = [f"**{name}**: Huracan forecasts of one market (or pool) and timeframe. Each version "
             "is one trained run; its description and the artifact named by its "
             f"`{MANIFEST_TAG}` tag hold its whole manifest.", "", "### Aliases", "",
             "| alias | version | meaning |", "|---|---|---|"]
    names = ["production", "staging", *sorted(a for a in aliases
                                              if a not in ("production", "staging"))]
    for a in names:
        held = aliases.get(a)
        lines.append(f"| {a} | {'v' + str(held) if held is not None else '(unset)'} | "
                     f"{_cell(alias_meaning(a))} |")
    if regime_rows:
        lines += ["", REGIME_HEADING, "", "| regime | version | model | exposure | decision "
                  "| reason |", "|---|---|---|---|---|---|"]
        for regime, e in sorted(regime_rows.items()):
            lines.append(f"| {regime} | {e.get('version') or '-'} | {e.get('model')} | "
                         f"{e.get('exposure')} | {e.get('decision')} | "
                         f"{_cell(e.get('reason') or '')}"
                         f"{_cell(f' (gate: {gr})') if (gr := e.get('gate_reason')) else ''} |")
    return "\n".join(lines) + "\n"


def refresh_model_description(client: MlflowClient, name: str,
                              regime_rows: Mapping[str, Mapping[str, Any]] | None = None
                              ) -> None:
    """Rewrite the registered model's description from its current aliases and
    ``regime_rows`` (the per-regime map, :func:`huracan.regime.registry.write_map`); without
    them, the regime section the description already has is kept."""
    rm = client.get_registered_model(name)
    aliases = {str(k): str(v) for k, v in (rm.aliases or {}).items()}
    if regime_rows is None:
        old = str(rm.description or "")
        kept = old[old.index(REGIME_HEADING):] if REGIME_HEADING in old else ""
        client.update_registered_model(
            name, description=model_description(name, aliases) + ("\n" + kept if kept else ""))
        return
    client.update_registered_model(name, description=model_description(
        name, aliases, regime_rows))
