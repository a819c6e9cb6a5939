"""``python -m huracan.train [overrides] [-m]``: train zoo models, one MLflow run per Hydra job.

Examples:
    python -m huracan.train                                   # LightGBM on the shipped BTC sample
    python -m huracan.train model=lightgbm,xgboost,lstm,cnn,transformer -m   # the whole zoo
    python -m huracan.train split=walk_forward                # refit every 14 days, OOS metrics
    python -m huracan.train data.path=sol.parquet data.symbol=SOL/USDT data.timeframe=1h
    python -m huracan.train experiment=zoo_btc_1h -m

Returns (to Hydra and sweepers) the selection score: ``val_composite_score`` for the forward
split, ``oos_composite_score`` for walk-forward; selection never looks at test.
"""

from __future__ import annotations

# isort: off
import huracan.runtime  # noqa: F401  (first: sets the process defaults before anything heavy loads)
# isort: on

import logging
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from huracan import pipeline
from huracan.commands import fail_job
from huracan.config import register_resolvers
from huracan.data.ohlcv import DataValidationError
from huracan.db.migrate import SchemaNotCurrentError
from huracan.resources import conf_dir
from huracan.secrets import mask_text
from huracan.settings import JobSettings
from huracan.tracking.results import find_parent_run, sweep_parent, write_result

CONF_DIR = str(conf_dir())  # the checkout's conf/, or the installed copy (huracan.resources)
log = logging.getLogger("huracan.train")

register_resolvers()


def run_config(cfg: DictConfig, parent_run_id: str | None = None) -> pipeline.TrainResult:
    """Run one job from a composed ``train`` config, as :func:`main` does without its Hydra
    bookkeeping: resolve it, build typed settings, call :func:`huracan.pipeline.run_job`."""
    resolved: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    resolved.pop("hydra", None)
    return pipeline.run_job(JobSettings.from_dict(resolved), resolved=resolved,
                            parent_run_id=parent_run_id)


def _sweep_context(hc: Any) -> tuple[str | None, str | None]:
    """``(parent run id, sweep id)`` of the multirun this job belongs to; the parent is read
    from ``<sweep dir>/sweep.json``, else looked up by tag on the tracking store."""
    record = sweep_parent(hc.sweep.dir)
    if record is not None:
        return str(record["run_id"]), str(record["sweep_id"])
    return find_parent_run(hc.sweep.dir), None


def _unusable_input(exc: BaseException, settings_built: bool) -> bool:
    """Whether a job's failure is its input's fault (told in one line) rather than a fault of the
    code (told with Hydra's traceback): a data file breaking a rule, or a config value the
    typed settings refuse (raised before any training), a brain store not at the newest
    migration, or market data the execution model needs and does not have (e.g. no finer
    series for ``backtest.fill=delay``)."""
    from omegaconf.errors import OmegaConfBaseException

    from huracan.evaluation.execution import ExecutionInputError

    return isinstance(exc, (DataValidationError, SchemaNotCurrentError,
                            ExecutionInputError)) or (
        not settings_built and isinstance(
        exc, (ValueError, TypeError, KeyError, OmegaConfBaseException)))


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float:
    """Hydra task: run one job, write ``result.json`` (also on failure) in the job's output dir.

    Unusable input (a data file breaking a rule, a setting refused) ends the job with its reason
    on one stderr line, no traceback (:func:`huracan.commands.fail_job`): exit 1 at once in a
    single run; in a multirun the other jobs still run and the sweep exits 1 at its end (the
    gate is skipped). Any other exception keeps Hydra's traceback.
    """
    hc = HydraConfig.get()
    out = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    job = int(hc.job.num or 0) if multirun else 0
    model_name = str(cfg.model._target_).rsplit(".", 1)[-1].removesuffix("Forecaster").lower()
    parent_run_id, sweep_id = None, None
    settings: JobSettings | None = None
    try:
        if multirun:
            from huracan.tracking.run import configure

            configure(cfg.tracking.tracking_uri, Path(cfg.tracking.store_dir),
                      cfg.tracking.experiment_name, cfg.tracking.get("artifact_location"))
            parent_run_id, sweep_id = _sweep_context(hc)
        resolved: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
        resolved.pop("hydra", None)
        settings = JobSettings.from_dict(resolved)
        result = pipeline.run_job(settings, resolved=resolved, parent_run_id=parent_run_id)
    except Exception as exc:
        write_result(out, {"status": "failed", "job": job, "model_type": model_name,
                           "sweep_id": sweep_id,
                           "error": mask_text(f"{type(exc).__name__}: {exc}")[:500]})
        if _unusable_input(exc, settings is not None):
            log.error("%s", mask_text(str(exc)))  # the job's log file
            fail_job("huracan.train", exc, multirun=multirun)
        raise
    write_result(out, {**result.as_dict(), "job": job, "sweep_id": sweep_id})
    return float(result.objective_value)


if __name__ == "__main__":
    main()
