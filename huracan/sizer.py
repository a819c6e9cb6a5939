"""``python -m huracan.sizer [overrides]``: train the PPO position sizer on a forecaster's
walk-forward OOS predictions, compare it with simple sizing on unseen bars, log and register it.

Examples:
    python -m huracan.train split=walk_forward model=xgboost      # the forecaster first
    python -m huracan.sizer                                       # BTC sample, its production
    python -m huracan.sizer data=binance_1h data.base=BTC sizer.total_timesteps=200000
    python -m huracan.sizer sizer.forecaster_run=<run id> sizer.max_leverage=3

See :mod:`huracan.sizing.job` for the data, the split and the gate.
"""

from __future__ import annotations

# isort: off
import huracan.runtime  # noqa: F401  (first: sets the process defaults before anything heavy loads)
# isort: on

import logging
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from huracan.commands import exit_with
from huracan.config import register_resolvers
from huracan.resources import conf_dir

CONF_DIR = str(conf_dir())  # the checkout's conf/, or the installed copy (huracan.resources)
log = logging.getLogger("huracan.sizer")

register_resolvers()


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="sizer")
def main(cfg: DictConfig) -> float:
    """Hydra task: one sizer training; returns PPO's validation composite score."""
    from huracan.settings import UnknownKeyError
    from huracan.sizing.job import SizerError, run_sizer_job

    resolved: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    resolved.pop("hydra", None)
    try:
        out = run_sizer_job(resolved)
    except (SizerError, UnknownKeyError) as exc:
        log.error("%s", exc)  # the run's log file
        exit_with("huracan.sizer", exc, 1)  # one stderr line for the caller, no traceback
    return float(out["test"]["ppo"].get("composite_score", float("nan")))


if __name__ == "__main__":
    main()
