"""Bayesian hyperparameter tuning with Optuna over ``huracan.train``'s jobs.

A study's objective runs one training job (:func:`huracan.pipeline.run_job`, the same stages as
``huracan.train``) with parameters sampled from a search-space file and returns its selection
metric: ``val_composite_score`` on a forward split, ``oos_composite_score`` walk-forward; a
``test_`` metric is refused. Optuna 5 (Akiba et al. 2019, "Optuna: A Next-generation
Hyperparameter Optimization Framework", KDD): TPE sampler (Bergstra et al. 2011), seeded; median
or Hyperband pruning (Li et al. 2018) on intermediate values.

Intermediate values: the fit's validation loss after each boosting round or epoch, reported
through :mod:`huracan.models.hooks` (forward split), or the last such loss of each fold
(walk-forward: pruning between folds). They are reported in the study's direction (negated when
it maximises), because Optuna's pruners compare intermediate values in the direction of the
objective: optuna-integration's ``LightGBMPruningCallback`` refuses a loss metric in a maximised
study, and its XGBoost and Keras callbacks would report the loss as is and prune the best trials.

Search-space files (``conf/hparams_search/<model>.yaml``) map a dotted config key to a
distribution: ``{type: float|int, low, high, log}`` or ``{type: categorical, choices: [...]}``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from huracan.resources import hparams_search_dir, tuned_presets_dir

#: where the search spaces live
SPACE_DIR = hparams_search_dir()
#: where the best trials' presets are written (``experiment=tuned/<name>``), as of import: the
#: checkout's experiments/tuned, else ./experiments/tuned (huracan.resources.tuned_presets_dir)
PRESET_DIR = tuned_presets_dir()


class TuneError(ValueError):
    """A tuning request that cannot run (bad search space, a test metric...): one line."""


@dataclass(frozen=True)
class TuneSettings:
    """The ``tune`` node of ``conf/tune.yaml`` (documented there), typed.

    Attributes:
        n_trials: trials of the study in total (a rerun resumes up to this count).
        metric: the objective (``None``: the job's selection metric; test metrics refused).
        direction: ``maximize`` or ``minimize``.
        sampler: ``tpe`` (seeded, after ``n_startup_trials`` random ones) or ``random``.
        pruner: ``median``, ``hyperband`` or ``none``; ``n_warmup_steps`` rounds/epochs first.
        storage: Optuna RDB URL (``None``: SQLite under ``tracking.store_dir``).
        study_name: default ``tune-<SYMBOL>-<tf>-<model>[-wf]``.
        search_space: YAML file (default ``conf/hparams_search/<model>.yaml``);
            ``search_labels`` adds ``labels.yaml``.
        preset_dir: where the best trial's preset is written (default ``experiments/tuned``).
        explain_rows: SHAP rows per trial.
        n_workers: local worker processes sharing the study.
        parent_run_id: set for workers: the study's MLflow parent run.
        worker_trials: set for workers: this worker's share of the remaining trials.

    Raises:
        TuneError: a direction other than maximize/minimize, or a non-positive count.
    """

    n_trials: int = 30
    metric: str | None = None
    direction: str = "maximize"
    sampler: str = "tpe"
    n_startup_trials: int = 5
    pruner: str = "median"
    n_warmup_steps: int = 10
    storage: str | None = None
    study_name: str | None = None
    search_space: str | None = None
    search_labels: bool = False
    preset_dir: str | None = None
    explain_rows: int = 20
    n_workers: int = 1
    parent_run_id: str | None = None
    worker_trials: int | None = None

    def __post_init__(self) -> None:
        if self.direction not in ("maximize", "minimize"):
            raise TuneError(f"tune.direction must be maximize or minimize, got "
                            f"{self.direction!r}")
        if int(self.n_trials) < 1 or int(self.n_workers) < 1:
            raise TuneError(f"tune.n_trials and tune.n_workers must be >= 1, got "
                            f"{self.n_trials} and {self.n_workers}")

    @classmethod
    def from_dict(cls, node: Mapping[str, Any] | None) -> TuneSettings:
        """From the resolved ``tune`` node.

        Raises:
            huracan.settings.UnknownKeyError: a key these settings do not know.
            TuneError: an invalid value.
        """
        from huracan.settings import build

        settings: TuneSettings = build(cls, node, "tune")
        return settings


@dataclass(frozen=True)
class Param:
    """One searched parameter: a dotted config key and its distribution."""

    key: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()


def load_space(path: str | Path) -> list[Param]:
    """Read a search-space file.

    Raises:
        TuneError: a missing file, or an entry without a known ``type``, with ``low >= high``,
            a non-positive bound on a log scale, or a categorical without choices (the message
            names the file and the key).
    """
    p = Path(path)
    if not p.is_file():
        raise TuneError(f"search space {p} does not exist")
    raw = yaml.safe_load(p.read_text()) or {}
    if not isinstance(raw, dict):
        raise TuneError(f"{p}: expected a mapping of config keys to distributions")
    out = []
    for key, spec in raw.items():
        if not isinstance(spec, dict) or spec.get("type") not in ("float", "int", "categorical"):
            raise TuneError(f"{p}: {key}: type must be float, int or categorical")
        if spec["type"] == "categorical":
            choices = tuple(spec.get("choices") or ())
            if not choices:
                raise TuneError(f"{p}: {key}: a categorical needs choices")
            out.append(Param(str(key), "categorical", choices=choices))
            continue
        low, high, log = float(spec["low"]), float(spec["high"]), bool(spec.get("log", False))
        if not low < high:
            raise TuneError(f"{p}: {key}: low {low} must be below high {high}")
        if log and low <= 0:
            raise TuneError(f"{p}: {key}: a log scale needs low > 0")
        out.append(Param(str(key), spec["type"], low, high, log))
    if not out:
        raise TuneError(f"{p}: empty search space")
    return out


def suggest(trial: Any, space: list[Param]) -> dict[str, Any]:
    """Sample one value per parameter from an Optuna trial: ``{dotted key: value}``."""
    values: dict[str, Any] = {}
    for prm in space:
        if prm.type == "categorical":
            values[prm.key] = trial.suggest_categorical(prm.key, list(prm.choices))
        elif prm.type == "int":
            values[prm.key] = trial.suggest_int(prm.key, int(prm.low or 0), int(prm.high or 0),
                                                log=prm.log)
        else:
            values[prm.key] = trial.suggest_float(prm.key, float(prm.low or 0.0),
                                                  float(prm.high or 0.0), log=prm.log)
    return values


def apply(resolved: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of a resolved config with dotted keys set.

    Raises:
        TuneError: a key whose parent is missing from the config (a typo in a search space).
    """
    import copy

    out: dict[str, Any] = copy.deepcopy(dict(resolved))
    for key, value in values.items():
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise TuneError(f"search-space key {key!r}: the config has no {part!r} section")
            node = node[part]
        if leaf not in node:
            raise TuneError(f"search-space key {key!r}: the config has no {leaf!r} there")
        node[leaf] = value
    return out


class IntermediateReporter:
    """The :mod:`huracan.models.hooks` listener of one trial.

    Forward split (``per_fold=False``): every round's/epoch's validation loss is reported at its
    step. Walk-forward (``per_fold=True``): a fold's last reported loss is reported at the fold's
    index when the next fold starts (its step counter goes back) and at :meth:`close`. Values are
    negated when the study maximises. ``trial.should_prune()`` raises ``optuna.TrialPruned``.
    """

    def __init__(self, trial: Any, maximize: bool, per_fold: bool) -> None:
        self.trial = trial
        self.sign = -1.0 if maximize else 1.0
        self.per_fold = per_fold
        self.fold = 0
        self._last_step = -1
        self._last_value: float | None = None
        self.reported: list[tuple[int, float]] = []

    def _report(self, step: int, value: float) -> None:
        import optuna

        if not math.isfinite(value):
            return
        self.trial.report(self.sign * value, step)
        self.reported.append((step, self.sign * value))
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step}: intermediate value "
                                     f"{self.sign * value:.6g}")

    def __call__(self, step: int, value: float) -> None:
        if not self.per_fold:
            self._report(step, value)
            return
        if step <= self._last_step and self._last_value is not None:  # a new fold began
            done, self._last_value = self._last_value, None
            self._report(self.fold, done)
            self.fold += 1
        self._last_step, self._last_value = step, value

    def close(self) -> None:
        """Report the last fold's value (walk-forward)."""
        if self.per_fold and self._last_value is not None:
            done, self._last_value = self._last_value, None
            self._report(self.fold, done)


def make_sampler(kind: str, seed: int, n_startup_trials: int) -> Any:
    """TPE (default) or random sampler, seeded.

    Raises:
        TuneError: an unknown kind.
    """
    import optuna

    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise TuneError(f"tune.sampler must be tpe or random, got {kind!r}")


def make_pruner(kind: str, n_startup_trials: int, n_warmup_steps: int) -> Any:
    """``median`` (MedianPruner), ``hyperband`` (HyperbandPruner) or ``none`` (NopPruner).

    Raises:
        TuneError: an unknown kind.
    """
    import optuna

    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials,
                                           n_warmup_steps=n_warmup_steps)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner()
    if kind == "none":
        return optuna.pruners.NopPruner()
    raise TuneError(f"tune.pruner must be median, hyperband or none, got {kind!r}")


def check_metric(metric: str) -> str:
    """Refuse tuning on test rows (:func:`huracan.settings.check_selection_metric`, the one
    copy of the rule).

    Raises:
        TuneError: a ``test_`` metric.
    """
    from huracan.settings import SelectionOnTestError, check_selection_metric

    try:
        return check_selection_metric(metric, "tune.metric")
    except SelectionOnTestError as exc:
        raise TuneError(str(exc)) from None


def preset_text(model: str, values: Mapping[str, Any], *, study: str, n_trials: int,
                metric: str, value: float, storage: str) -> str:
    """An ``experiments/tuned/*.yaml`` preset: ``# @package _global_``, the study in a comment,
    the model group and every tuned key as nested YAML."""
    tree: dict[str, Any] = {}
    for key, v in values.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = v.item() if hasattr(v, "item") else v
    head = (f"# @package _global_\n"
            f"# Tuned by `python -m huracan.tune`: study {study}, {n_trials} trials, best "
            f"{metric} = {value:.6g}, written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n"
            f"# storage: {storage}\n"
            f"# Use: python -m huracan.train experiment=tuned/<this file's name>\n")
    body = yaml.safe_dump({"defaults": [{"override /model": model}], **tree}, sort_keys=False)
    return head + body


__all__ = ["PRESET_DIR", "SPACE_DIR", "IntermediateReporter", "Param", "TuneError", "TuneSettings",
           "apply", "check_metric", "load_space", "make_pruner", "make_sampler", "preset_text",
           "suggest"]
