"""The nodes of ``conf/nightly.yaml``, typed: every key of a nightly config (a preset under
``experiments/nightly/`` included) must be one of these fields, so a misspelt key fails the night
before any work instead of being ignored. :func:`huracan.nightly.settings_from_config` turns them
into the flat, picklable :class:`~huracan.orchestration.steps.NightSettings`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from huracan.settings import DbSettings, TrackingSettings, build, check_keys, check_target_kwargs

#: the top-level keys of a composed ``nightly`` config (Hydra's own ``hydra`` node aside)
NIGHTLY_CONFIG_KEYS = ("alerts", "db", "nightly", "ray", "symbols", "timeframe", "tracking")


@dataclass(frozen=True)
class MonitorOptions:
    """``nightly.monitor``: drift and monitoring of production after the gate (``window`` of
    newest bars, alert above ``drift_share`` of drifted features, ``weekly_rescale`` of the
    logged scaler when its last refit is older than 7 days)."""

    enabled: bool = True
    window: str = "30d"
    drift_share: float = 0.5
    weekly_rescale: bool = False


@dataclass(frozen=True)
class SizerStepOptions:
    """``nightly.sizer``: the PPO sizer retrained every ``every_days`` days (needs a walk-forward
    production model), with extra ``huracan.sizer`` ``overrides``."""

    enabled: bool = True
    every_days: float = 7
    overrides: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PaperStepOptions:
    """``nightly.paper``: the paper loop's liveness check after the monitor. ``enabled``: run
    the step; ``expected``: a symbol without a live paper account fails the step (default: only
    accounts that exist are checked, a missing one is a skip); ``max_age``: the last decision
    older than this alerts (``None``: two bars of the timeframe, e.g. ``2h`` at 1h);
    ``daily_run``: log the account's daily MLflow monitoring run (yesterday's and today's)."""

    enabled: bool = True
    expected: bool = False
    max_age: str | None = None
    daily_run: bool = True


@dataclass(frozen=True)
class NightlyOptions:
    """``nightly``: the night's own settings (documented in ``conf/nightly.yaml``)."""

    run_id: str | None = None
    offline: bool = False
    lake: str = "data/lake"
    exchange: str = "binance"
    source_timeframe: str | None = None
    since: str = "2024-01-01"
    until: str | None = None
    history_days: int | None = None
    imports: list[Any] = field(default_factory=list)
    derivatives: list[str] = field(default_factory=lambda: ["funding", "open_interest"])
    allow_degraded: bool = False
    models: list[str] = field(
        default_factory=lambda: ["lightgbm", "xgboost", "lstm", "cnn", "transformer"])
    train_overrides: list[str] = field(default_factory=list)
    launcher: str = "basic"
    launcher_jobs: int = 2
    executor: str = "basic"
    n_jobs: int = 2
    threads: int | None = None
    work_dir: str = "outputs/nightly"
    monitor: MonitorOptions = field(default_factory=MonitorOptions)
    sizer: SizerStepOptions = field(default_factory=SizerStepOptions)
    paper: PaperStepOptions = field(default_factory=PaperStepOptions)


@dataclass(frozen=True)
class RayOptions:
    """``ray``: the Ray executor's cluster (``address``; ``None`` = a local Ray with
    ``num_cpus``), CPUs per symbol task and the local session directory."""

    address: str | None = None
    num_cpus: int | None = None
    cpus_per_task: int = 1
    temp_dir: str | None = None


@dataclass(frozen=True)
class NightlyConfig:
    """A resolved nightly config, every node typed and its keys checked."""

    symbols: list[str]
    timeframe: str
    nightly: NightlyOptions
    ray: RayOptions
    tracking: TrackingSettings
    db: DbSettings
    alerts: dict[str, Any]

    @classmethod
    def from_dict(cls, node: Mapping[str, Any]) -> NightlyConfig:
        """From the resolved ``nightly`` config (``OmegaConf.to_container(cfg, resolve=True)``).

        Raises:
            huracan.settings.UnknownKeyError: a key no setting knows, in one line naming it
                (``nightly.monitor.windw``), its group and the known keys.
            KeyError: ``timeframe`` missing.
        """
        check_keys({k: v for k, v in node.items() if k != "hydra"}, "", NIGHTLY_CONFIG_KEYS)
        n = dict(node.get("nightly") or {})
        monitor = build(MonitorOptions, n.pop("monitor", None), "nightly.monitor")
        sizer = build(SizerStepOptions, n.pop("sizer", None), "nightly.sizer")
        paper = build(PaperStepOptions, n.pop("paper", None), "nightly.paper")
        options = build(NightlyOptions, n, "nightly", extra=("monitor", "sizer", "paper"))
        alerts = dict(node.get("alerts") or {"_target_": "huracan.alerts.LogNotifier"})
        check_target_kwargs(alerts, "alerts")
        return cls(symbols=list(node.get("symbols") or []), timeframe=str(node["timeframe"]),
                   nightly=replace(options, monitor=monitor, sizer=sizer, paper=paper),
                   ray=build(RayOptions, node.get("ray"), "ray"),
                   tracking=build(TrackingSettings, node.get("tracking"), "tracking"),
                   db=build(DbSettings, node.get("db"), "db"), alerts=alerts)
