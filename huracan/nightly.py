"""``python -m huracan.nightly [overrides]``: the nightly pipeline, one command.

Examples:
    python -m huracan.nightly experiment=nightly/sample            # shipped sample, offline
    python -m huracan.nightly symbols=[BTC/USDT,ETH/USDT] timeframe=1h
    python -m huracan.nightly symbols=[BTC/USDT,ETH/USDT] nightly.executor=joblib
    python -m huracan.nightly nightly.executor=ray ray.address=auto   # on a Ray cluster
    python -m huracan.nightly nightly.run_id=2026-11-30-1h           # resume that night

Per symbol: download (or, offline, the lake only) -> validate -> features -> train -> importance
-> gate and regime aliases -> drift and monitor -> the paper loop's liveness -> the weekly sizer
retrain when due; then the summary with the daily data-quality report, sent through the
configured notifier. Each step of each symbol is recorded in the brain store's
``pipeline_runs`` table: a rerun of the same night skips finished steps and resumes an
interrupted one (see :mod:`huracan.orchestration`).

Exit code: 0 when every symbol finished its night; 1 when any failed (named in the summary and
the alert); 2 for an unusable configuration.
"""

from __future__ import annotations

# isort: off
import huracan.runtime  # noqa: F401  (first: sets the process defaults before anything heavy loads)
# isort: on

import logging
import os
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from huracan.commands import exit_with
from huracan.config import register_resolvers
from huracan.resources import conf_dir

log = logging.getLogger("huracan.nightly")

register_resolvers()


def _abs(path: str | None, cwd: Path) -> str | None:
    if path is None:
        return None
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (cwd / p).resolve())


def _abs_url(url: str, cwd: Path) -> str:
    """A relative SQLite URL made absolute (workers may start in another directory)."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        return prefix + str((cwd / url[len(prefix):]).resolve())
    return url


def settings_from_config(cfg: DictConfig, cwd: Path | None = None) -> Any:
    """Typed :class:`~huracan.orchestration.steps.NightSettings` from the composed config, every
    key checked (:class:`~huracan.orchestration.config.NightlyConfig`); returns ``(settings,
    symbols, the nightly node as a dict, the ray node as a dict)``.

    Raises:
        ValueError: an unknown key (:class:`~huracan.settings.UnknownKeyError`, naming it), an
            unknown launcher/executor, no symbols, or a malformed ``imports`` entry.
    """
    from dataclasses import asdict

    from huracan.data.ohlcv import timeframe_to_timedelta
    from huracan.orchestration.config import NightlyConfig
    from huracan.orchestration.night import EXECUTORS, default_run_id
    from huracan.orchestration.steps import NightSettings

    cwd = cwd or Path.cwd()
    node: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    c = NightlyConfig.from_dict(node)
    n = c.nightly
    symbols = list(c.symbols)
    if not symbols:
        raise ValueError("symbols is empty: name at least one, e.g. symbols=[BTC/USDT]")
    timeframe = c.timeframe
    source_tf = str(n.source_timeframe or timeframe)
    for tf in (timeframe, source_tf):
        timeframe_to_timedelta(tf)  # raises ValueError naming the bad bar size
    if n.launcher not in ("basic", "joblib"):
        raise ValueError(f"nightly.launcher must be basic or joblib, got {n.launcher!r}")
    if n.executor not in EXECUTORS:
        raise ValueError(f"nightly.executor must be one of {EXECUTORS}, got {n.executor!r}")
    imports: dict[str, str] = {}
    for i, item in enumerate(n.imports or []):
        if not isinstance(item, dict) or not {"symbol", "file"} <= set(item):
            raise ValueError(f"nightly.imports[{i}] must be {{symbol: ..., file: ...}}")
        imports[str(item["symbol"])] = str(_abs(str(item["file"]), cwd))
    tr = c.tracking
    settings = NightSettings(
        run_id=str(n.run_id or default_run_id(timeframe)),
        timeframe=timeframe, offline=bool(n.offline), lake=str(_abs(n.lake, cwd)),
        exchange=str(n.exchange).lower(), source_timeframe=source_tf, since=str(n.since),
        until=str(n.until) if n.until else None,
        history_days=int(n.history_days) if n.history_days else None,
        imports=imports, derivatives=tuple(n.derivatives or ()),
        allow_degraded=bool(n.allow_degraded), models=tuple(n.models),
        train_overrides=tuple(str(o) for o in n.train_overrides or ()),
        launcher=str(n.launcher), launcher_jobs=int(n.launcher_jobs),
        threads=int(n.threads) if n.threads else None,
        monitor=bool(n.monitor.enabled), monitor_window=str(n.monitor.window),
        drift_share=float(n.monitor.drift_share),
        weekly_rescale=bool(n.monitor.weekly_rescale),
        paper=bool(n.paper.enabled), paper_expected=bool(n.paper.expected),
        paper_max_age=str(n.paper.max_age) if n.paper.max_age else None,
        paper_daily_run=bool(n.paper.daily_run),
        sizer=bool(n.sizer.enabled), sizer_every_days=float(n.sizer.every_days),
        sizer_overrides=tuple(str(o) for o in n.sizer.overrides or ()),
        work_dir=str(_abs(n.work_dir, cwd)), cwd=str(cwd),
        db_url=_abs_url(str(c.db.url), cwd), tracking_uri=tr.tracking_uri,
        store_dir=str(_abs(tr.store_dir, cwd)), experiment_name=str(tr.experiment_name),
        alerts=dict(c.alerts), python=sys.executable)
    if not settings.models:
        raise ValueError("nightly.models is empty")
    return settings, symbols, asdict(n), asdict(c.ray)


def prediction_log_on(db_url: str, environ: Any = None) -> str:
    """Turn the prediction log on for the night (:mod:`huracan.serving.prediction_log`): unless
    ``HURACAN_PREDICTION_LOG`` is already set, the night's processes (and the step
    subprocesses, which inherit the environment) record every raw-candle answer of a production
    model into the night's brain store ``db_url``. Returns the value in force."""
    from huracan.serving.prediction_log import LOG_ENV

    env = os.environ if environ is None else environ
    env.setdefault(LOG_ENV, db_url)
    return str(env[LOG_ENV])


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="nightly")
def main(cfg: DictConfig) -> int:
    """Hydra task: run or resume the night, print the summary, exit 1 when a symbol failed."""
    from huracan.orchestration.night import run_night

    for noisy in ("great_expectations", "py.warnings", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        settings, symbols, n, ray_cfg = settings_from_config(cfg)
    except (ValueError, KeyError) as exc:
        exit_with("huracan.nightly", exc, 2)  # one stderr line, masked, no traceback
    prediction_log_on(settings.db_url)
    if ray_cfg.get("temp_dir"):
        ray_cfg["temp_dir"] = _abs(str(ray_cfg["temp_dir"]), Path.cwd())
    night = run_night(settings, symbols, executor=str(n["executor"]), n_jobs=int(n["n_jobs"]),
                      ray_settings=ray_cfg)
    print(night.summary, flush=True)
    if night.exit_code:
        print(f"huracan.nightly: {len(night.failed)} symbol(s) failed: "
              f"{', '.join(night.failed)}", file=sys.stderr)
        raise SystemExit(night.exit_code)
    return 0


if __name__ == "__main__":
    main()
