"""Typed settings of a job, built once at the edge from the resolved Hydra config.

Entry points (``python -m huracan.train``, the CLI) turn their ``DictConfig`` into a plain resolved
mapping (``OmegaConf.to_container(cfg, resolve=True)``) and call :meth:`JobSettings.from_dict`;
every stage below takes these dataclasses, never a ``DictConfig``.

Strict keys: every group is built by :func:`build`, which refuses a key its dataclass does not
know with one line (:class:`UnknownKeyError`) naming the dotted key, the group and the known keys,
so a misspelt key in a preset (``split.trian_bars: 30d``) fails the job instead of being ignored.
Keys a shipped config carries for Hydra only are named in :data:`CONFIG_ONLY_KEYS`.

Logged runs: ``registry monitor``, ``features analyze``, drift and the sizer rebuild a past run's
data from its ``config/resolved.yaml`` through :meth:`JobSettings.from_logged`, the one
compatibility path: keys listed in :data:`RETIRED_KEYS` are dropped there (with a debug line),
groups a run predates take their defaults (no ``regime`` node: no regimes; no
``split._target_``: the forward split those runs used), and the ``model`` / ``alerts`` nodes are
not checked against today's classes (a logged model is loaded from its artifact, never rebuilt
from the node). Any other unknown key still fails.
"""

from __future__ import annotations

import copy
import inspect
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from huracan.config import (  # re-exported: the strict keys moved below the evaluation
    CONFIG_ONLY_KEYS,  # noqa: F401
    UnknownKeyError,
    build,
    check_keys,
    known_fields,  # noqa: F401
)
from huracan.evaluation.backtest import BacktestConfig
from huracan.evaluation.selection import SelectionSettings
from huracan.features.build import FeatureConfig, LabelConfig
from huracan.models.base import Forecaster
from huracan.splits import ForwardSplitter, Splitter, WalkForwardSplitter

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- strict keys
#: Keys a run's logged ``config/resolved.yaml`` may carry that today's settings no longer have,
#: dropped (debug line) by :meth:`JobSettings.from_logged` and nowhere else: group (dotted for a
#: nested node, ``""`` for the top level) -> key -> the change that retired it. Composing every
#: revision of ``conf/`` in the repository's history (each group option and preset, 19 commits
#: from 9e0ae3f) shows no key removed so far: the groups older runs lack (``label``, ``rule``,
#: ``regime``, ``train``, ``selection``; ``split._target_``) take their defaults instead.
#: Removing or renaming a field means adding its old key here.
RETIRED_KEYS: dict[str, dict[str, str]] = {}

#: Hydra's own keys of an instantiable node (``_target_`` and its call options).
HYDRA_NODE_KEYS = ("_target_", "_recursive_", "_convert_", "_partial_", "_args_")


def check_target_kwargs(node: Mapping[str, Any] | None, group: str) -> None:
    """Refuse keys of a Hydra node (``_target_`` + keyword arguments) that its target's
    constructor does not take (checked on the signature, nothing instantiated; a target taking
    ``**kwargs`` accepts anything).

    Raises:
        UnknownKeyError: a keyword the target does not take.
        ValueError: no ``_target_``, or one that cannot be imported.
    """
    from hydra.utils import get_method

    node = dict(node or {})
    target = node.get("_target_")
    if not target:
        raise ValueError(f"{group}._target_ is missing: the {group} node names its class")
    try:
        obj = get_method(str(target))  # classes and functions alike
    except Exception as exc:
        raise ValueError(f"{group}._target_ {target!r} cannot be imported: {exc}") from None
    params = inspect.signature(obj).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    known = [p.name for p in params if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                  inspect.Parameter.KEYWORD_ONLY)]
    check_keys(node, group, ["_target_", *known], kind=str(target).rsplit(".", 1)[-1],
               unlisted=HYDRA_NODE_KEYS)


def drop_retired(cfg: Mapping[str, Any], source: str = "a logged run") -> dict[str, Any]:
    """A copy of ``cfg`` without the :data:`RETIRED_KEYS` it carries (one debug line each):
    the compatibility step of :meth:`JobSettings.from_logged`, never used on a fresh config."""
    out: dict[str, Any] = copy.deepcopy(dict(cfg))
    for group, keys in RETIRED_KEYS.items():
        node: Any = out
        for part in [p for p in group.split(".") if p]:  # a nested group: "rule.primary_params"
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            continue
        for key, why in keys.items():
            if key in node:
                del node[key]
                log.debug("%s: retired config key %s dropped (%s)", source,
                          f"{group}.{key}" if group else key, why)
    return out


# ---------------------------------------------------------------------------- groups
@dataclass(frozen=True)
class DataSettings:
    """The candle file of a job.

    Attributes:
        path: OHLCV Parquet/CSV file (any timeframe at or below ``timeframe``).
        symbol: market, ``BTC/USDT``.
        timeframe: bar size the job trains on (``1h``); finer candles are resampled.
        quality_log: JSON-lines data-quality log (``None``: no log).
        allow_degraded: train even when critical expectations fail (logged).
        fine_path: an OHLCV file of the same symbol at a finer timeframe, read by
            ``backtest.fill=delay`` (``None``: ``path`` itself when finer than ``timeframe``,
            else the candle lake; :func:`huracan.stages.fine_series`).
        symbols: the markets of a pooled job (two or more: one model trained on the rows of
            all of them, :func:`huracan.pooled.job.run_pooled_job`), in the model's encoding
            order; ``symbol`` must be one of them and stays the primary market (its ``path``
            locates the others, tags). Empty (or one symbol): a single-market job.
        paths: per symbol of ``symbols``, its candle file; a symbol not listed reads
            ``path`` with its pair swapped in (:func:`huracan.stages.symbol_data`).
    """

    path: str
    symbol: str
    timeframe: str
    quality_log: str | None = None
    allow_degraded: bool = False
    fine_path: str | None = None
    symbols: list[str] = field(default_factory=list)
    paths: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        symbols = [str(s) for s in (self.symbols or [])]
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"data.symbols lists a symbol twice: {symbols}")
        if len(symbols) >= 2 and self.symbol not in symbols:
            raise ValueError(f"data.symbols {symbols} must list data.symbol {self.symbol!r} "
                             "(the primary market)")
        unknown = sorted(set(self.paths or {}) - set(symbols))
        if unknown:
            raise ValueError(f"data.paths names symbol(s) {unknown} not in data.symbols "
                             f"{symbols}")
        # plain containers (a Hydra ListConfig/DictConfig never reaches a frozen dataclass)
        object.__setattr__(self, "symbols", symbols)
        object.__setattr__(self, "paths", {str(k): str(v) for k, v in (self.paths or {}).items()})

    @property
    def pooled(self) -> bool:
        """Two or more symbols: a pooled job."""
        return len(self.symbols) >= 2



@dataclass(frozen=True)
class ExplainSettings:
    """SHAP: ``max_rows`` rows explained (the last rows of the scored split of the last fold)."""

    max_rows: int = 100


@dataclass(frozen=True)
class ImportanceSettings:
    """Feature-importance loop after each job (see :mod:`huracan.analysis.analyzer`):
    permutation importance on the last ``max_rows`` scored rows (bounds its cost, which grows
    with rows x features x repeats), ``n_repeats`` shuffles each."""

    enabled: bool = True
    n_repeats: int = 5
    max_rows: int = 300
    seed: int = 42
    shift_threshold: float = 0.5
    top_n_compare: int = 10


@dataclass(frozen=True)
class TrainSettings:
    """Which train rows count, and how much (``train`` config node).

    Attributes:
        sample_weight: ``none``, or ``liquidation_density``: each train row weighs
            ``1 + liquidation_density`` (more in high-liquidation periods; needs the
            ``liquidations`` feature family), times the label uniqueness when that is on.
        rows: ``all``, ``cascade`` (only rows whose bar holds a liquidation cascade) or
            ``normal`` (only the others): the "cascade" and "normal" model variants, by zero
            weights (the scaler still sees every train row).
    """

    sample_weight: str = "none"
    rows: str = "all"

    def __post_init__(self) -> None:
        if self.sample_weight not in ("none", "liquidation_density"):
            raise ValueError(f"train.sample_weight must be none or liquidation_density, got "
                             f"{self.sample_weight!r}")
        if self.rows not in ("all", "cascade", "normal"):
            raise ValueError(f"train.rows must be all, cascade or normal, got {self.rows!r}")

    def row_weights(self, frame: Any) -> Any:
        """Per-row weights for a feature frame (``None`` for the defaults).

        Raises:
            ValueError: a needed liquidation column is missing (no ``liquidations`` family).
        """
        import numpy as np

        if self.sample_weight == "none" and self.rows == "all":
            return None
        w = np.ones(len(frame))
        if self.sample_weight == "liquidation_density":
            if "liquidation_density" not in frame:
                raise ValueError("train.sample_weight=liquidation_density needs the "
                                 "liquidations feature family (features=full)")
            w = w + np.nan_to_num(frame["liquidation_density"].to_numpy(np.float64), nan=0.0)
        if self.rows != "all":
            if "cascade_indicator" not in frame:
                raise ValueError(f"train.rows={self.rows} needs the liquidations feature "
                                 "family (features=full)")
            cascade = np.nan_to_num(frame["cascade_indicator"].to_numpy(np.float64)) > 0
            w = w * (cascade if self.rows == "cascade" else ~cascade)
        return w


@dataclass(frozen=True)
class DbSettings:
    """The brain store (``db`` config group): a SQLAlchemy ``url`` (``HURACAN_DB_URL`` wins in
    the shipped config)."""

    url: str = "sqlite:///huracan.db"


@dataclass(frozen=True)
class RegimeSettings:
    """Volatility regimes (``regime`` config group; :mod:`huracan.regime`).

    Attributes:
        kind: ``volatility`` (24h realised volatility against train-quantile thresholds),
            ``hmm`` (a Gaussian HMM's filtered state) or ``none``.
        quantiles: the train quantiles of the low / normal / high / extreme thresholds.
        n_components: HMM states.
        extreme_quantile: HMM: volatility above this train quantile is ``extreme``.
        min_bars: bars a regime needs for its metrics.
        extreme_exposure: exposure of the fallback model in ``extreme``.
        min_trades: trades a candidate needs in a regime to be chosen for it on evidence
            (default :attr:`SelectionSettings.min_trades`).
        min_eval_bars: bars of a regime the alias gate needs in its unseen window.
    """

    kind: str = "volatility"
    quantiles: tuple[float, float, float] = (0.33, 0.66, 0.95)
    n_components: int = 3
    extreme_quantile: float = 0.95
    min_bars: int = 50
    extreme_exposure: float = 0.25
    min_trades: int = SelectionSettings.min_trades
    min_eval_bars: int = 48

    def __post_init__(self) -> None:
        if self.kind not in ("volatility", "hmm", "none"):
            raise ValueError(f"regime.kind must be volatility, hmm or none, got {self.kind!r}")
        object.__setattr__(self, "quantiles", tuple(float(q) for q in self.quantiles))


@dataclass(frozen=True)
class TrackingSettings:
    """MLflow store: ``tracking_uri`` (``None``: SQLite under ``store_dir``), experiment name,
    whether the fitted model is logged (needed by the registry), and ``artifact_location``: the
    artifact root of an experiment Huracan creates (``None``: beside a SQLite store, e.g.
    ``sqlite:///elsewhere/m.db`` -> ``elsewhere/artifacts``; a URI as given; a relative path
    against the store's directory; :func:`huracan.tracking.run.artifact_root`)."""

    tracking_uri: str | None = None
    store_dir: str = "mlruns"
    experiment_name: str = "huracan"
    log_model: bool = True
    artifact_location: str | None = None


@dataclass(frozen=True)
class RegistrySettings:
    """Model registry: register every run; gate on ``metric`` with a relative ``tolerance`` on a
    window of at least ``min_eval_bars`` bars that both models forecast out of sample (each bar
    by a model fitted before it: the version's registered model after its last seen bar, else
    its run's stored walk-forward or test forecast; see
    :func:`huracan.registry.promotion.gate_candidate`), else the decision is skipped. A
    walk-forward run stores its last ``max(min_eval_bars, last OOS step)`` OOS bars for this.
    ``min_psr`` is the cash floor: a candidate is promoted only when its net return on that
    window is positive with a PSR of at least ``min_psr``
    (:func:`huracan.evaluation.evidence.beats_cash`). ``min_dsr`` (off by default) also demands
    a deflated Sharpe ratio, its N counted over every trial on the symbol and timeframe in the
    tracking store (:func:`huracan.callbacks.gate.store_trials`); the score difference gets
    a stationary-bootstrap interval of ``bootstrap_resamples`` resamples."""

    enabled: bool = True
    metric: str = "composite_score"
    tolerance: float = 0.05
    min_eval_bars: int = 168
    min_psr: float = 0.9
    min_dsr: float | None = None
    bootstrap_resamples: int = 500


#: the splitter classes a ``split._target_`` may name (by class name)
SPLITTERS: dict[str, type] = {"ForwardSplitter": ForwardSplitter,
                              "WalkForwardSplitter": WalkForwardSplitter}


def make_splitter(node: Mapping[str, Any] | None) -> Splitter:
    """The splitter named by ``node["_target_"]`` (forward when absent: runs logged before the
    walk-forward scheme existed).

    Raises:
        ValueError: an unknown splitter.
        UnknownKeyError: a key the splitter does not take (``split.trian_bars``).
    """
    node = dict(node or {})
    target = str(node.pop("_target_", "huracan.splits.ForwardSplitter"))
    cls = SPLITTERS.get(target.rsplit(".", 1)[-1])
    if cls is None:
        raise ValueError(f"split._target_ {target!r} is not a known splitter "
                         "(huracan.splits.ForwardSplitter, huracan.splits.WalkForwardSplitter)")
    splitter: Splitter = build(cls, node, "split", extra=("_target_",), kind=cls.__name__)
    return splitter


def check_rule(node: Mapping[str, Any] | None) -> None:
    """Refuse unknown keys of a ``rule`` node (and of a meta rule's ``primary_params``) by
    building the rule once (cheap: nothing is fitted).

    Raises:
        UnknownKeyError: a key the rule of that ``kind`` does not take.
        ValueError: an unknown ``kind``.
    """
    from huracan.evaluation.rules import make_rule

    if node:
        make_rule(dict(node))


# ---------------------------------------------------------------------------- never on test
class SelectionOnTestError(ValueError):
    """A test-window metric named as what a selection (a sweep's ``objective``, a study's
    ``tune.metric``) ranks on: one line naming the key, the metric and the rule."""


def check_selection_metric(metric: str, key: str = "objective") -> str:
    """Refuse selecting on test rows: the one copy of the rule ``python -m huracan.train``
    (``objective``) and ``python -m huracan.tune`` (``tune.metric``) both apply (DESIGN.md
    convention 13: selection reads validation or walk-forward OOS results; the test window is
    what the gate judges the pick on, so picking on it would leave nothing unseen).

    Args:
        metric: the metric name (``val_composite_score``, ``oos_sharpe``...).
        key: the config key that named it, for the message.

    Returns:
        ``metric`` unchanged.

    Raises:
        SelectionOnTestError: a ``test_`` metric.
    """
    if metric.startswith("test_"):
        raise SelectionOnTestError(
            f"{key}={metric}: never select on test; a selection never looks at test rows, "
            "use a val_ or oos_ metric")
    return metric


#: The top-level keys of a composed ``train`` config (Hydra's own ``hydra`` node aside): the
#: groups and values :class:`JobSettings` reads.
TRAIN_CONFIG_KEYS = ("alerts", "backtest", "data", "db", "explain", "features", "importance",
                     "label", "model", "objective", "regime", "registry", "rule", "seed",
                     "selection", "split", "tracking", "train")


@dataclass(frozen=True)
class JobSettings:
    """Everything one training job needs, typed.

    ``model`` and ``alerts`` stay Hydra nodes (``_target_`` + keyword arguments) and are built by
    :meth:`make_model` / :meth:`make_notifier`: the model's hyperparameters are exactly its
    ``get_params()`` and the params logged to MLflow. ``rule`` stays a node too
    (:func:`huracan.evaluation.rules.make_rule`). Their keys are checked against the target's
    constructor (and the rule's fields) when the settings are built.
    """

    data: DataSettings
    features: FeatureConfig
    split: Splitter
    model: Mapping[str, Any]
    backtest: BacktestConfig = field(default_factory=BacktestConfig)
    label: LabelConfig = field(default_factory=LabelConfig)
    rule: Mapping[str, Any] | None = None
    seed: int = 42
    objective: str = "val_composite_score"
    top_n: int | None = None
    explain: ExplainSettings = field(default_factory=ExplainSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    regime: RegimeSettings = field(default_factory=RegimeSettings)
    importance: ImportanceSettings = field(default_factory=ImportanceSettings)
    tracking: TrackingSettings = field(default_factory=TrackingSettings)
    registry: RegistrySettings = field(default_factory=RegistrySettings)
    selection: SelectionSettings = field(default_factory=SelectionSettings)
    db_url: str = DbSettings.url
    alerts: Mapping[str, Any] = field(
        default_factory=lambda: {"_target_": "huracan.alerts.LogNotifier"})

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any], *, _logged: bool = False) -> JobSettings:
        """Settings from a resolved, freshly composed config mapping (the ``train`` config;
        a ``hydra`` node is ignored). Every key must be known: see :data:`TRAIN_CONFIG_KEYS`,
        the groups' dataclasses and :data:`CONFIG_ONLY_KEYS`. A run's logged config is read
        with :meth:`from_logged`.

        Raises:
            KeyError: ``data`` or ``model`` missing.
            UnknownKeyError: a key no setting knows, in one line naming it (dotted), its group and
                the known keys.
            SelectionOnTestError: ``objective`` is a test metric (never select on test).
            ValueError: an invalid value (e.g. ``features.horizon < 1``, unknown splitter).
        """
        check_keys({k: v for k, v in cfg.items() if k != "hydra"}, "", TRAIN_CONFIG_KEYS)
        features = dict(cfg.get("features") or {})
        top_n = features.get("top_n")
        model = dict(cfg["model"])
        alerts = dict(cfg.get("alerts") or {"_target_": "huracan.alerts.LogNotifier"})
        rule = dict(cfg["rule"]) if cfg.get("rule") else None
        if not _logged:  # a logged run's model is loaded from its artifact, never rebuilt
            check_target_kwargs(model, "model")
            check_target_kwargs(alerts, "alerts")
        check_rule(rule)
        objective = str(cfg.get("objective", "val_composite_score"))
        if not _logged:  # a past run is rebuilt as it was
            check_selection_metric(objective)
        return cls(
            data=build(DataSettings, cfg["data"], "data"),
            features=build(FeatureConfig, features, "features", extra=("top_n",)),
            split=make_splitter(cfg.get("split")),
            model=model,
            backtest=build(BacktestConfig, cfg.get("backtest"), "backtest"),
            label=build(LabelConfig, cfg.get("label"), "label"),
            rule=rule,
            seed=int(cfg.get("seed", 42)),
            objective=objective,
            top_n=None if top_n is None else int(top_n),
            explain=build(ExplainSettings, cfg.get("explain"), "explain"),
            train=build(TrainSettings, cfg.get("train"), "train"),
            regime=build(RegimeSettings, cfg.get("regime") or {"kind": "none"}, "regime"),
            importance=build(ImportanceSettings, cfg.get("importance"), "importance"),
            tracking=build(TrackingSettings, cfg.get("tracking"), "tracking"),
            registry=build(RegistrySettings, cfg.get("registry"), "registry"),
            selection=build(SelectionSettings, cfg.get("selection"), "selection"),
            db_url=str(build(DbSettings, cfg.get("db"), "db").url),
            alerts=alerts,
        )

    @classmethod
    def from_logged(cls, cfg: Mapping[str, Any], source: str = "a logged run") -> JobSettings:
        """Settings of a past run from its logged ``config/resolved.yaml``: the compatibility
        path of the module docstring (:data:`RETIRED_KEYS` dropped with a debug line naming
        ``source``; missing groups default; ``model`` / ``alerts`` not checked against today's
        classes). Used by :func:`huracan.rebuild.run_settings` only.

        Raises:
            KeyError: ``data`` or ``model`` missing.
            UnknownKeyError: a key that is neither known nor retired (a run of another version:
                add its retired keys to :data:`RETIRED_KEYS`).
            ValueError: an invalid value.
        """
        try:
            return cls.from_dict(drop_retired(cfg, source), _logged=True)
        except UnknownKeyError as exc:
            raise UnknownKeyError(exc.group, exc.names, exc.known, kind=exc.kind,
                                  hint=f"in {source}; a key retired since belongs in "
                                       "huracan.settings.RETIRED_KEYS") from None

    def make_model(self) -> Forecaster:
        """A fresh, unfitted forecaster from the ``model`` node."""
        from hydra.utils import instantiate

        model = instantiate(dict(self.model))
        if not isinstance(model, Forecaster):
            raise ValueError(f"model._target_ {self.model.get('_target_')!r} is not a Forecaster")
        return model

    def make_rule(self) -> Any:
        """The trading rule (``rule`` node; default today's fixed threshold of ``backtest``).
        A node without ``min_psr`` (or a meta rule's ``primary_params`` without it) takes
        ``registry.min_psr``: the cash floor a grid threshold must clear on validation."""
        from huracan.evaluation.rules import make_rule

        floor = float(self.registry.min_psr)
        if not self.rule:
            return make_rule({"kind": "threshold", "threshold": self.backtest.threshold,
                              "long_only": self.backtest.long_only, "min_psr": floor})
        node = copy.deepcopy(dict(self.rule))
        if node.get("kind", "threshold") == "meta":
            node["primary_params"] = {"min_psr": floor, **dict(node.get("primary_params") or {})}
        else:
            node.setdefault("min_psr", floor)
        return make_rule(node)

    def make_notifier(self) -> Any:
        """The configured alert notifier (``alerts`` node)."""
        from hydra.utils import instantiate

        return instantiate(dict(self.alerts))
