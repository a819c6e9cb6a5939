"""Typed settings of a job, built once at the edge from the resolved Hydra config.

Entry points (``python -m huracan.train``, the CLI) turn their ``DictConfig`` into a plain resolved
mapping (``OmegaConf.to_container(cfg, resolve=True)``) and call :meth:`JobSettings.from_dict`;
every stage below takes these dataclasses, never a ``DictConfig``. The same constructor reads the
``config/resolved.yaml`` a past run logged, so ``registry monitor`` and ``features analyze``
rebuild a run's data exactly as the run did (older runs without a ``split._target_`` are read as
the forward split they used).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from huracan.evaluation.backtest import BacktestConfig
from huracan.features.build import FeatureConfig, LabelConfig
from huracan.models.base import Forecaster
from huracan.splits import ForwardSplitter, Splitter, WalkForwardSplitter


@dataclass(frozen=True)
class DataSettings:
    """The candle file of a job.

    Attributes:
        path: OHLCV Parquet/CSV file (any timeframe at or below ``timeframe``).
        symbol: market, ``BTC/USDT``.
        timeframe: bar size the job trains on (``1h``); finer candles are resampled.
        quality_log: JSON-lines data-quality log (``None``: no log).
        allow_degraded: train even when critical expectations fail (logged).
    """

    path: str
    symbol: str
    timeframe: str
    quality_log: str | None = None
    allow_degraded: bool = False


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
        min_trades: trades a candidate needs in a regime to be chosen for it on evidence.
        min_eval_bars: bars of a regime the alias gate needs in its unseen window.
    """

    kind: str = "volatility"
    quantiles: tuple[float, float, float] = (0.33, 0.66, 0.95)
    n_components: int = 3
    extreme_quantile: float = 0.95
    min_bars: int = 50
    extreme_exposure: float = 0.25
    min_trades: int = 30
    min_eval_bars: int = 48

    def __post_init__(self) -> None:
        if self.kind not in ("volatility", "hmm", "none"):
            raise ValueError(f"regime.kind must be volatility, hmm or none, got {self.kind!r}")
        object.__setattr__(self, "quantiles", tuple(float(q) for q in self.quantiles))


@dataclass(frozen=True)
class TrackingSettings:
    """MLflow store: ``tracking_uri`` (``None``: SQLite under ``store_dir``), experiment name,
    and whether the fitted model is logged (needed by the registry)."""

    tracking_uri: str | None = None
    store_dir: str = "mlruns"
    experiment_name: str = "huracan"
    log_model: bool = True


@dataclass(frozen=True)
class RegistrySettings:
    """Model registry: register every run; gate on ``metric`` with a relative ``tolerance`` on a
    window of at least ``min_eval_bars`` bars unseen by both models (else the decision is
    skipped); ``min_dsr`` (off by default) also demands a deflated Sharpe ratio; the score
    difference gets a stationary-bootstrap interval of ``bootstrap_resamples`` resamples."""

    enabled: bool = True
    metric: str = "composite_score"
    tolerance: float = 0.05
    min_eval_bars: int = 168
    min_dsr: float | None = None
    bootstrap_resamples: int = 500


def _build(cls: type, node: Mapping[str, Any] | None) -> Any:
    """``cls(**node)`` keeping only the dataclass's fields (older configs may carry extra keys)."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in (node or {}).items() if k in names})


def make_splitter(node: Mapping[str, Any] | None) -> Splitter:
    """The splitter named by ``node["_target_"]`` (forward when absent: runs logged before the
    walk-forward scheme existed)."""
    node = dict(node or {})
    target = str(node.pop("_target_", "huracan.splits.ForwardSplitter"))
    cls = {"ForwardSplitter": ForwardSplitter,
           "WalkForwardSplitter": WalkForwardSplitter}.get(target.rsplit(".", 1)[-1])
    if cls is None:
        raise ValueError(f"split._target_ {target!r} is not a known splitter "
                         "(huracan.splits.ForwardSplitter, huracan.splits.WalkForwardSplitter)")
    splitter: Splitter = _build(cls, node)
    return splitter


@dataclass(frozen=True)
class JobSettings:
    """Everything one training job needs, typed.

    ``model`` and ``alerts`` stay Hydra nodes (``_target_`` + keyword arguments) and are built by
    :meth:`make_model` / :meth:`make_notifier`: the model's hyperparameters are exactly its
    ``get_params()`` and the params logged to MLflow.
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
    db_url: str = "sqlite:///huracan.db"
    alerts: Mapping[str, Any] = field(
        default_factory=lambda: {"_target_": "huracan.alerts.LogNotifier"})

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any]) -> JobSettings:
        """Settings from a resolved config mapping (the composed ``train`` config, or a run's
        ``config/resolved.yaml``).

        Raises:
            KeyError: ``data`` or ``model`` missing.
            ValueError: an invalid value (e.g. ``features.horizon < 1``, unknown splitter).
        """
        features = dict(cfg.get("features") or {})
        top_n = features.pop("top_n", None)
        return cls(
            data=_build(DataSettings, cfg["data"]),
            features=_build(FeatureConfig, features),
            split=make_splitter(cfg.get("split")),
            model=dict(cfg["model"]),
            backtest=_build(BacktestConfig, cfg.get("backtest")),
            label=_build(LabelConfig, cfg.get("label")),
            rule=dict(cfg["rule"]) if cfg.get("rule") else None,
            seed=int(cfg.get("seed", 42)),
            objective=str(cfg.get("objective", "val_composite_score")),
            top_n=None if top_n is None else int(top_n),
            explain=_build(ExplainSettings, cfg.get("explain")),
            train=_build(TrainSettings, cfg.get("train")),
            regime=_build(RegimeSettings, cfg.get("regime") or {"kind": "none"}),
            importance=_build(ImportanceSettings, cfg.get("importance")),
            tracking=_build(TrackingSettings, cfg.get("tracking")),
            registry=_build(RegistrySettings, cfg.get("registry")),
            db_url=str((cfg.get("db") or {}).get("url", "sqlite:///huracan.db")),
            alerts=dict(cfg.get("alerts") or {"_target_": "huracan.alerts.LogNotifier"}),
        )

    def make_model(self) -> Forecaster:
        """A fresh, unfitted forecaster from the ``model`` node."""
        from hydra.utils import instantiate

        model = instantiate(dict(self.model))
        if not isinstance(model, Forecaster):
            raise ValueError(f"model._target_ {self.model.get('_target_')!r} is not a Forecaster")
        return model

    def make_rule(self) -> Any:
        """The trading rule (``rule`` node; default today's fixed threshold of ``backtest``)."""
        from huracan.evaluation.rules import make_rule

        if not self.rule:
            return make_rule({"kind": "threshold", "threshold": self.backtest.threshold,
                              "long_only": self.backtest.long_only})
        return make_rule(dict(self.rule))

    def make_notifier(self) -> Any:
        """The configured alert notifier (``alerts`` node)."""
        from hydra.utils import instantiate

        return instantiate(dict(self.alerts))
