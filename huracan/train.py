"""``python -m huracan.train [overrides] [-m]``: train zoo models, one MLflow run per Hydra job.

Examples:
    python -m huracan.train                                   # LightGBM on the shipped BTC sample
    python -m huracan.train model=lightgbm,xgboost,lstm,cnn,transformer -m   # the whole zoo
    python -m huracan.train data.path=sol.parquet data.symbol=SOL/USDT data.timeframe=1h
    python -m huracan.train experiment=zoo_btc_1h -m

Returns (to Hydra and sweepers) the validation composite score: selection never looks at test.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported anywhere
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from huracan import pipeline
from huracan.config import register_resolvers
from huracan.data.ohlcv import DataValidationError
from huracan.tracking.callbacks import RESULT_FILE

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
log = logging.getLogger("huracan.train")

register_resolvers()


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float:
    """Hydra task: run one job, write ``result.json`` in the job's output dir."""
    try:
        result = pipeline.run(cfg)
    except DataValidationError as err:
        log.error("%s", err)  # one line: file, column/row, rule
        raise
    out = Path(HydraConfig.get().runtime.output_dir)
    (out / RESULT_FILE).write_text(json.dumps(result.as_dict(), indent=2, default=float))
    return float(result.metrics[str(cfg.objective)])


if __name__ == "__main__":
    main()
